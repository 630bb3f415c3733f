"""``manage.py run_monitor``: fail runs whose worker died, every few seconds.

Idempotent (a conditional UPDATE per run), so any number of hosts may run it;
the q2 schedule of the same check is the safety net when none does.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import CommandParser
from django.db import close_old_connections

from migration.services.runs import runs_mark_stale
from pasportal.commands import ControlPlaneCommand


class Command(ControlPlaneCommand):
    help = "Watch running runs and fail those whose lease expired (worker died)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=5.0)
        parser.add_argument("--grace", type=int, default=10)
        parser.add_argument("--once", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        while True:
            close_old_connections()
            failed = runs_mark_stale(grace_seconds=options["grace"])
            for run_id in failed:
                self.stdout.write(
                    f"run {run_id}: worker lost, marked failed (resumable)"
                )
            if options["once"] or stop.wait(options["interval"]):
                return
