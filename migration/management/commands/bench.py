"""``manage.py bench``: speed and memory as ratios against baselines run beside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from migration import bench


class Command(BaseCommand):
    help = "Benchmark the pipeline against raw COPY, naive pandas and count(*)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patients", type=int, default=100_000)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument(
            "--dsn",
            default=bench.DEFAULT_DSN,
            help="PostgreSQL for the target (a scratch schema is used)",
        )
        parser.add_argument(
            "--rss-patients",
            default="",
            help="comma-separated sizes for the peak-RSS flatness run, "
            "e.g. 1000000,5000000",
        )
        parser.add_argument("--no-connectors", action="store_true")
        parser.add_argument(
            "--p5-patients",
            type=int,
            default=1_000_000,
            help="source size for the P5 connector reads (1M patients: ~2M "
            "appointment rows, enough for steady-state JDBC/ODBC throughput)",
        )
        parser.add_argument(
            "--repeat",
            type=int,
            default=1,
            help="rounds of the side-by-side figures; each is reported as its "
            "median round (a shared machine is noisy)",
        )
        parser.add_argument("--json", type=Path, default=None)
        parser.add_argument("--work", type=Path, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["patients"] <= 0:
            raise CommandError("--patients must be positive", returncode=2)
        if options["repeat"] <= 0:
            raise CommandError("--repeat must be positive", returncode=2)
        try:
            sizes = tuple(
                int(s) for s in options["rss_patients"].split(",") if s.strip()
            )
        except ValueError:
            raise CommandError(
                "--rss-patients takes whole numbers", returncode=2
            ) from None
        work = options["work"] or Path(settings.VAR_DIR) / "bench"
        results = bench.run(
            patients=options["patients"],
            seed=options["seed"],
            work=work,
            dsn=options["dsn"],
            rss_patients=sizes,
            with_connectors=not options["no_connectors"],
            p5_patients=options["p5_patients"],
            repeat=options["repeat"],
        )
        self.stdout.write(bench.table(results))
        if options["json"]:
            options["json"].write_text(json.dumps(results, indent=2, default=str))
            self.stdout.write(f"wrote {options['json']}")
