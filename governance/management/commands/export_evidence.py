"""Export a run's evidence bundle as a named user (audited like the page's export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser

from governance.audit import Refused
from governance.evidence import evidence_export
from migration.models import Run
from pasportal.commands import ControlPlaneCommand


class Command(ControlPlaneCommand):
    help = "Write a verifiable evidence bundle (zip) for one run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run", required=True, help="run id")
        parser.add_argument("--out", required=True, type=Path, help="FILE.zip")
        parser.add_argument(
            "--user",
            required=True,
            help="username to act as (needs export_evidence on the run's project)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = Run.objects.get(pk=int(options["run"]))
        except (Run.DoesNotExist, ValueError):
            raise CommandError(
                f"no run with id {options['run']!r}", returncode=2
            ) from None
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: options["user"]})
        except User.DoesNotExist:
            raise CommandError(f"no user {options['user']!r}", returncode=2) from None
        try:
            export = evidence_export(actor=user, run=run, out_path=options["out"])
        except Refused as exc:
            raise CommandError(f"refused: {exc}", returncode=1) from None
        self.stdout.write(f"evidence for run {run.pk} written to {export.path}")
        self.stdout.write(f"sha256 {export.sha256}")
