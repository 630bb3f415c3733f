"""Verify the audit chain: exit 0 when intact, 1 naming the first bad event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, CommandParser

from governance.audit import AuditError, verify_database
from pasportal.commands import ControlPlaneCommand


class Command(ControlPlaneCommand):
    help = "Verify the HMAC chain of audit events against the exported chain head."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--head",
            type=Path,
            default=None,
            help="chain head file to check truncation against (default: PAS_AUDIT_HEAD_FILE)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            verdict = verify_database(options["head"])
        except AuditError as exc:
            raise CommandError(str(exc), returncode=2) from None
        if not verdict.ok:
            raise CommandError(verdict.describe(), returncode=1)
        self.stdout.write(verdict.describe())
