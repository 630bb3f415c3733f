"""django-q2 tasks: thin. Ids in, claim, call the engine through the adapters.

No patient data or credentials ever appear in task arguments or results.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from connectors.secrets import scrub
from migration import adapters
from migration.engine.errors import TerminalError, TransientError
from migration.engine.report import RunReport
from migration.engine.runner import (
    ProgressEvent,
    finalize,
    load_range,
    plan_run_ranges,
    prepare_run,
    run_contract,
)
from migration.models import RangeState, Run, RunRange, RunState, RunTable
from migration.services.runs import (
    range_claim,
    range_done,
    range_heartbeat,
    range_release,
    ranges_dispatch,
    ranges_settle,
    run_claim,
    run_claim_finalize,
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

    def beat(self) -> bool:
        return run_heartbeat(run_id=self.run_id, worker=self.worker)

    def run(self) -> None:
        try:
            while not self.stop.wait(settings.PAS_HEARTBEAT_SECONDS):
                if not self.beat():
                    self.lost = True
                    return
        finally:
            connection.close()


class _RangeHeartbeat(_Heartbeat):
    """Renews a range's lease and, with it, its run's."""

    def __init__(self, run_id: int, range_pk: int, worker: str) -> None:
        super().__init__(run_id, worker)
        self.range_pk = range_pk

    def beat(self) -> bool:
        return range_heartbeat(
            run_id=self.run_id, range_pk=self.range_pk, worker=self.worker
        )


def _worker_id() -> str:
    cluster = settings.Q_CLUSTER.get("name", "q")
    return f"{socket.gethostname()}:{cluster}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _min_rows_per_range() -> int:
    return int(settings.PAS_RANGE_MIN_ROWS)


def _key_json(value: Any) -> str:
    return "" if value is None else json.dumps(value)


def _key_value(text: str) -> Any:
    return None if text == "" else json.loads(text)


def _engine_with_retries(run: Run, call: Callable[[Any, Any], RunReport]) -> RunReport:
    """Open the run's source and sink, call the engine, persist report and rejects.

    Transient errors (a dropped connection, a timeout) are retried with
    backoff; the engine resumes from its checkpoints, so a retry is safe.
    """
    for attempt in range(1, TRANSIENT_RETRIES + 1):
        try:
            with (
                adapters.source_for(run.source, run_id=run.pk) as source,
                adapters.sink_for(run.target) as sink,
            ):
                report = call(source, sink)
                adapters.report_persist(run, report)
                adapters.rejects_persist(run, sink)
                return report
        except TransientError as exc:
            if attempt == TRANSIENT_RETRIES:
                raise
            log.warning(
                "run %s: transient error, retrying: %s", run.pk, scrub(str(exc))
            )
            time.sleep(2**attempt)
    raise AssertionError("unreachable: the last attempt returns or raises")


def run_execute(run_id: int, *, progress_hook: Any = None) -> str:
    """Execute (or resume) run ``run_id`` if this worker can claim it; return the outcome.

    ``progress_hook`` is for in-process callers (a CLI progress bar); q2 passes
    only the id.
    """
    worker = _worker_id()
    if not run_claim(run_id=run_id, worker=worker):
        return "not claimed"
    run = Run.objects.select_related("contract", "source", "target").get(pk=run_id)
    if run.parallel_ranges > 0:
        return _scale_out(run, worker)
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
        report = _engine_with_retries(
            run,
            lambda source, sink: run_contract(
                contract,
                source,
                sink,
                adapters.engine_run_id(run),
                as_of=run.as_of,
                on_progress=on_progress,
                should_cancel=should_cancel,
                reject_csv=adapters.reject_csv_path(run),
            ),
        )
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


# --- scale-out -------------------------------------------------------------------


def _scale_out(run: Run, worker: str) -> str:
    """Plan key ranges (first time), hand them to range tasks, or finalize."""
    state, error = RunState.FAILED, ""
    heartbeat = _Heartbeat(run.pk, worker)
    heartbeat.start()
    try:
        contract = adapters.engine_contract(run)
        plan: list[tuple[str, str, str, str]] | None = None
        if not RunRange.objects.filter(run=run).exists():
            with (
                adapters.source_for(run.source, run_id=run.pk) as source,
                adapters.sink_for(run.target) as sink,
            ):
                prepare_run(
                    contract, source, sink, adapters.engine_run_id(run), as_of=run.as_of
                )
                ranges = plan_run_ranges(
                    contract,
                    source,
                    max_ranges=run.parallel_ranges,
                    min_rows_per_range=_min_rows_per_range(),
                )
            plan = [
                (t, r.range_id, _key_json(r.after_key), _key_json(r.upto_key))
                for t, rs in ranges.items()
                for r in rs
            ]
            for order, t in enumerate(ranges):
                RunTable.objects.get_or_create(
                    run=run, target_table=t, defaults={"order": order}
                )
        heartbeat.stop.set()
        heartbeat.join(timeout=5)
        if heartbeat.lost:
            return "lease lost"
        n = ranges_dispatch(run_id=run.pk, worker=worker, plan=plan)
        if n < 0:
            return "lease lost"
        if n > 0:
            return f"dispatched {n} ranges"
        # every range is done already (a resumed run): finalize here
        return _finalize(run, worker)
    except (TerminalError, TransientError) as exc:
        error = scrub(str(exc))
    except Exception as exc:
        log.exception("run %s: planning crashed", run.pk)
        error = f"internal error ({type(exc).__name__}); see the worker log"
    finally:
        heartbeat.stop.set()
        heartbeat.join(timeout=5)
    run_finish(run_id=run.pk, worker=worker, state=state, error=error)
    return state


def run_execute_range(run_id: int, range_pk: int) -> str:
    """Load one key range of a scaled-out run if this worker can claim it.

    Resumes from the range's own checkpoint; the last range to finish enqueues
    ``run_finalize``. Ids only in and out.
    """
    worker = _worker_id()
    if not range_claim(run_id=run_id, range_pk=range_pk, worker=worker):
        ranges_settle(run_id=run_id)  # a cancel with nothing left running
        return "not claimed"
    rr = RunRange.objects.select_related(
        "run", "run__contract", "run__source", "run__target"
    ).get(pk=range_pk)
    run = rr.run
    heartbeat = _RangeHeartbeat(run_id, range_pk, worker)
    heartbeat.start()
    last_check = [0.0]
    cancelled = [False]

    def should_cancel() -> bool:
        if heartbeat.lost:
            return True
        now = time.monotonic()
        if now - last_check[0] >= 1.0:
            last_check[0] = now
            cancelled[0] = Run.objects.filter(pk=run_id, cancel_requested=True).exists()
        return cancelled[0]

    def on_progress(event: ProgressEvent) -> None:
        adapters.range_progress_persist(run_id, range_pk, worker, event)

    error = ""
    result = None
    try:
        contract = adapters.engine_contract(run)
        for attempt in range(1, TRANSIENT_RETRIES + 1):
            try:
                with (
                    adapters.source_for(run.source, run_id=run.pk) as source,
                    adapters.sink_for(run.target) as sink,
                ):
                    result = load_range(
                        contract,
                        source,
                        sink,
                        adapters.engine_run_id(run),
                        rr.target_table,
                        range_id=rr.range_id,
                        after_key=_key_value(rr.after_key),
                        upto_key=_key_value(rr.upto_key),
                        as_of=run.as_of,
                        on_progress=on_progress,
                        should_cancel=should_cancel,
                    )
                break
            except TransientError as exc:
                if attempt == TRANSIENT_RETRIES:
                    raise
                log.warning(
                    "run %s range %s: transient error, retrying: %s",
                    run_id,
                    range_pk,
                    scrub(str(exc)),
                )
                time.sleep(2**attempt)
    except (TerminalError, TransientError) as exc:
        error = f"{rr.target_table}/{rr.range_id}: {scrub(str(exc))}"
    except Exception as exc:  # never leak driver text
        log.exception("run %s range %s crashed", run_id, range_pk)
        error = f"internal error ({type(exc).__name__}); see the worker log"
    finally:
        heartbeat.stop.set()
        heartbeat.join(timeout=5)
    if result is not None and result.status == "done" and not heartbeat.lost:
        counts = {
            "rows_read": result.rows_read,
            "rows_loaded": result.rows_loaded,
            "rows_rejected": result.rows_rejected,
            "rows_excluded": result.rows_excluded,
        }
        last = range_done(
            run_id=run_id, range_pk=range_pk, worker=worker, counts=counts
        )
        return "done, finalize enqueued" if last else RangeState.DONE
    range_release(run_id=run_id, range_pk=range_pk, worker=worker, error=error)
    return "failed" if error else "stopped"


def run_finalize(run_id: int) -> str:
    """Cross-table phase, publish and reconciliation once every range is done."""
    worker = f"finalize-worker:{_worker_id()}"
    if not run_claim_finalize(run_id=run_id, worker=worker):
        return "not claimed"
    run = Run.objects.select_related("contract", "source", "target").get(pk=run_id)
    return _finalize(run, worker)


def _finalize(run: Run, worker: str) -> str:
    heartbeat = _Heartbeat(run.pk, worker)
    heartbeat.start()
    state, error = RunState.FAILED, ""
    ranges: dict[str, list[str]] = {}
    for table, range_id in RunRange.objects.filter(run=run).values_list(
        "target_table", "range_id"
    ):
        ranges.setdefault(table, []).append(range_id)

    def on_progress(event: ProgressEvent) -> None:
        adapters.progress_persist(run.pk, event)

    try:
        contract = adapters.engine_contract(run)
        report = _engine_with_retries(
            run,
            lambda source, sink: finalize(
                contract,
                source,
                sink,
                adapters.engine_run_id(run),
                as_of=run.as_of,
                ranges=ranges,
                on_progress=on_progress,
                reject_csv=adapters.reject_csv_path(run),
            ),
        )
        if heartbeat.lost:
            return "lease lost"
        if report.status == "succeeded":
            state = RunState.SUCCEEDED
        else:
            error = "; ".join(report.failure_reasons)
    except (TerminalError, TransientError) as exc:
        error = scrub(str(exc))
    except Exception as exc:
        log.exception("run %s finalize crashed", run.pk)
        error = f"internal error ({type(exc).__name__}); see the worker log"
    finally:
        heartbeat.stop.set()
        heartbeat.join(timeout=5)
    run_finish(run_id=run.pk, worker=worker, state=state, error=error)
    return state


def snapshot_extract_task(connector_id: int, user_id: int | None, job_id: str) -> str:
    """Extract a connector's schema for a person, reporting progress per table."""
    from django.contrib.auth import get_user_model

    from connectors.models import Connector
    from governance.audit import Refused
    from migration.engine.errors import EngineError
    from migration.services.snapshots import snapshot_extract, snapshot_job_update

    connector = Connector.objects.get(pk=connector_id)
    actor: Any = "worker"
    if user_id is not None:
        actor = get_user_model().objects.get(pk=user_id)
    snapshot_job_update(job_id, state="running")

    def progress(done: int, total: int, table: str) -> None:
        snapshot_job_update(job_id, done=done, total=total, table=table)

    try:
        snapshot = snapshot_extract(
            actor=actor, connector=connector, on_progress=progress
        )
    except (Refused, EngineError) as exc:
        snapshot_job_update(job_id, state="failed", error=scrub(str(exc))[:500])
        return "failed"
    snapshot_job_update(job_id, state="done", snapshot=snapshot.pk)
    return "done"
