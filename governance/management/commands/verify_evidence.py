"""Verify an evidence bundle: exit 0 when intact, 1 naming each bad file or event."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from governance.evidence import evidence_verify
from pasportal.commands import require_migrated


def _key(key_file: Path | None) -> str | None:
    """Return the audit HMAC key: --key-file, the environment, then settings."""
    if key_file is not None:
        return key_file.read_text(encoding="utf-8").strip()
    if os.environ.get("PAS_AUDIT_KEY"):
        return os.environ["PAS_AUDIT_KEY"]
    if os.environ.get("PAS_AUDIT_KEY_FILE"):
        return Path(os.environ["PAS_AUDIT_KEY_FILE"]).read_text("utf-8").strip()
    return getattr(settings, "PAS_AUDIT_KEY", None) or None


class Command(BaseCommand):
    help = (
        "Check every file of an evidence bundle against its manifest, the "
        "manifest's own hash, and re-verify the audit chain segment (HMACs when "
        "the key is available; the live database chain unless --offline)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("bundle", type=Path, help="FILE.zip")
        parser.add_argument("--key-file", type=Path, default=None)
        parser.add_argument(
            "--offline",
            action="store_true",
            help="do not compare against this installation's database",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bundle: Path = options["bundle"]
        if not bundle.is_file():
            raise CommandError(f"{bundle}: no such file", returncode=2)
        key = _key(options["key_file"])
        if not options["offline"]:
            try:
                require_migrated()
            except CommandError as exc:
                raise CommandError(
                    f"{exc}; or verify without it: --offline", returncode=2
                ) from None
        try:
            verdict = evidence_verify(
                path=bundle, key=key, database=not options["offline"]
            )
        except DatabaseError as exc:
            raise CommandError(
                f"cannot reach the database to compare the chain ({exc}); "
                "use --offline",
                returncode=2,
            ) from None
        for note in verdict.notes:
            self.stdout.write(f"note: {note}")
        if not verdict.ok:
            for problem in verdict.problems:
                self.stderr.write(problem)
            raise CommandError(
                f"{bundle}: {len(verdict.problems)} problem(s) found", returncode=1
            )
        self.stdout.write(
            f"{bundle}: intact — {verdict.checked_files} files and "
            f"{verdict.checked_events} audit events verified"
        )
