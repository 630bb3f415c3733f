"""django-q2 tasks: thin. Ids in, claim, call the engine through the adapters.

No patient data or credentials ever appear in task arguments or results.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from connectors.secrets import scrub
from migration import adapters
from migration.engine.errors import TerminalError, TransientError
from migration.engine.runner import ProgressEvent, run_contract
from migration.models import Run, RunState
from migration.services.runs import (
    run_claim,
    run_finish,
    run_heartbeat,
    runs_mark_stale,
)

log = logging.getLogger("pasportal.runs")
TRANSIENT_RETRIES = 3


class _Heartbeat(threading.Thread):
    """Renews the run's lease while the engine works; notices a lost lease."""

    def __init__(self, run_id: int, worker: str) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.run_id = run_id
        self.worker = worker
        self.stop = threading.Event()
        self.lost = False

    def run(self) -> None:
        try:
            while not self.stop.wait(settings.PAS_HEARTBEAT_SECONDS):
                if not run_heartbeat(run_id=self.run_id, worker=self.worker):
                    self.lost = True
                    return
        finally:
            connection.close()


def run_execute(run_id: int, *, progress_hook: Any = None) -> str:
    """Execute (or resume) run ``run_id`` if this worker can claim it; return the outcome.

    ``progress_hook`` is for in-process callers (a CLI progress bar); q2 passes
    only the id.
    """
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not run_claim(run_id=run_id, worker=worker):
        return "not claimed"
    run = Run.objects.select_related("contract", "source", "target").get(pk=run_id)
    heartbeat = _Heartbeat(run_id, worker)
    heartbeat.start()
    last_cancel_check = [0.0]
    cancelled = [False]

    def should_cancel() -> bool:
        if heartbeat.lost:
            return True
        now = time.monotonic()
        if now - last_cancel_check[0] >= 1.0:
            last_cancel_check[0] = now
            cancelled[0] = Run.objects.filter(pk=run_id, cancel_requested=True).exists()
        return cancelled[0]

    def on_progress(event: ProgressEvent) -> None:
        adapters.progress_persist(run_id, event)
        if progress_hook is not None:
            progress_hook(event)

    state, error = RunState.FAILED, ""
    try:
        contract = adapters.engine_contract(run)
        for attempt in range(1, TRANSIENT_RETRIES + 1):
            try:
                with (
                    adapters.source_for(run.source) as source,
                    adapters.sink_for(run.target) as sink,
                ):
                    report = run_contract(
                        contract,
                        source,
                        sink,
                        adapters.engine_run_id(run),
                        as_of=run.as_of,
                        on_progress=on_progress,
                        should_cancel=should_cancel,
                        reject_csv=adapters.reject_csv_path(run),
                    )
                    adapters.report_persist(run, report)
                    adapters.rejects_persist(run, sink)
                break
            except TransientError as exc:
                if attempt == TRANSIENT_RETRIES:
                    raise
                log.warning(
                    "run %s: transient error, retrying: %s", run_id, scrub(str(exc))
                )
                time.sleep(2**attempt)
        if heartbeat.lost:
            return "lease lost"
        if report.status == "cancelled":
            state = RunState.CANCELLED
        elif report.status == "succeeded":
            state = RunState.SUCCEEDED
        else:
            state = RunState.FAILED
            error = "; ".join(report.failure_reasons)
    except (TerminalError, TransientError) as exc:
        error = scrub(str(exc))
    except Exception as exc:  # never leak driver text: it may hold a DSN
        log.exception("run %s crashed", run_id)
        error = f"internal error ({type(exc).__name__}); see the worker log"
    finally:
        heartbeat.stop.set()
        heartbeat.join(timeout=5)
    run_finish(run_id=run_id, worker=worker, state=state, error=error)
    return state


def runs_detect_stale() -> list[int]:
    """Scheduled: fail runs whose worker died (lease expired); return their ids."""
    close_old_connections()
    return runs_mark_stale(grace_seconds=10)
