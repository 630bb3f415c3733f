"""``manage.py make_legacy_pas``: write a synthetic legacy PAS source (thin wrapper)."""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from migration.legacypas import FORMATS, GeneratorError, generate


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected YYYY-MM-DD, got {value!r}"
        ) from None


class Command(BaseCommand):
    help = (
        "Generate a legacy (Caché/IRIS, TrakCare-style) PAS source and its "
        "manifest.json as specified in docs/legacy-pas.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patients", type=int, required=True, help="N > 0")
        parser.add_argument("--seed", type=int, required=True)
        parser.add_argument(
            "--out",
            required=True,
            help="directory for the files (sqlite/csv) and manifest.json",
        )
        parser.add_argument("--format", choices=FORMATS, default="sqlite")
        parser.add_argument("--defect-rate", type=float, default=0.0)
        parser.add_argument("--extract-date", type=_iso_date, default=date(2026, 11, 1))
        parser.add_argument(
            "--dsn",
            default=None,
            help="server URL for postgresql/mariadb (default: the local server)",
        )
        parser.add_argument(
            "--schema",
            default="legacy_pas",
            help="PostgreSQL schema / MariaDB database to write (default legacy_pas)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            manifest = generate(
                options["patients"],
                options["seed"],
                options["out"],
                fmt=options["format"],
                defect_rate=options["defect_rate"],
                extract_date=options["extract_date"],
                dsn=options["dsn"],
                schema=options["schema"],
            )
        except GeneratorError as e:
            raise CommandError(str(e), returncode=2) from None
        out = self.stdout
        out.write(f"legacy PAS written to {manifest.target}")
        for table, rows in manifest.tables.items():
            out.write(f"  {table:<16} {rows:>10,} rows")
        for (table, type_), n in sorted(manifest.defect_counts().items()):
            out.write(f"  defect {table}.{type_}: {n:,}")
        out.write(
            f"{manifest.defect_count:,} defects; manifest {manifest.path}; "
            f"{manifest.seconds:.1f} s"
        )
