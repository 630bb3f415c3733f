"""The only bridge between the ORM and the framework-free engine.

Turns stored connectors into engine ``Source``/``Sink`` objects, a stored
contract into the engine's ``Contract``, and the engine's progress events,
report and rejects back into ``Run``, ``RunTable`` and ``RejectRecord`` rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from connectors.kinds import get_kind
from connectors.models import Connector
from connectors.secrets import resolve
from connectors.services import connector_open
from migration.engine.contract import Contract as EngineContract
from migration.engine.contract import contract_from_dict
from migration.engine.errors import TerminalError
from migration.engine.ports import REJECT_COLUMNS
from migration.engine.report import RunReport
from migration.engine.runner import ProgressEvent
from migration.models import RejectRecord, Run, RunRange, RunTable

REJECT_BATCH = 5000


def connection_for(connector: Connector, *, run_id: int | None = None) -> Any:
    """Return an unconnected kind connection for ``connector`` (validates config).

    Every statement it runs lands in the connector's query log, tagged with the run.
    """
    return connector_open(connector, actor="worker", run_id=run_id)


@contextmanager
def source_for(connector: Connector, *, run_id: int | None = None) -> Iterator[Any]:
    """Yield the engine Source of a source connector, closed afterwards."""
    connection = connection_for(connector, run_id=run_id)
    try:
        yield connection
    finally:
        close = getattr(connection, "close", None)
        if close is not None:
            close()


def _sink_instance(connector: Connector) -> Any:
    """Build the target sink of a connector from its validated kind config."""
    spec = get_kind(connector.kind)
    if "target" not in spec.roles:
        raise TerminalError(
            f"connector {connector.name!r}: kind {connector.kind} is not a target"
        )
    config = spec.validate(connector.config)
    if connector.kind == "sqlite":
        from connectors.sinks.sqlite import SqliteSink

        return SqliteSink(config.path)
    if connector.kind == "postgresql":
        from psycopg.conninfo import make_conninfo

        from connectors.sinks.postgresql import PostgresSink

        password = resolve(
            config.password, what=f"connector {connector.name!r} password"
        )
        dsn = make_conninfo(
            host=config.host,
            port=config.port,
            dbname=config.dbname,
            user=config.user,
            password=password or None,
            sslmode=config.sslmode,
            connect_timeout=config.connect_timeout_s,
        )
        return PostgresSink(dsn, schema=config.schema_)
    raise TerminalError(
        f"connector {connector.name!r}: no sink for kind {connector.kind}"
    )


@contextmanager
def sink_for(connector: Connector) -> Iterator[Any]:
    """Yield the engine Sink of a target connector, closed afterwards."""
    sink = _sink_instance(connector)
    try:
        yield sink
    finally:
        close = getattr(sink, "close", None)
        if close is not None:
            close()


def engine_contract(run: Run) -> EngineContract:
    """Return the engine Contract frozen in the run's stored contract."""
    return contract_from_dict(run.contract.body)


def engine_run_id(run: Run) -> str:
    """Return the engine's run id: stable across resumes of the same Run."""
    return f"run-{run.pk}"


def reject_csv_path(run: Run) -> Path:
    """Return where the per-run reject CSV is written."""
    directory = Path(settings.PAS_DATA_DIR) / "rejects"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"run-{run.pk}-rejects.csv"


def progress_persist(run_id: int, event: ProgressEvent) -> None:
    """Store one progress tick on the run's table row (counts, stage, rate)."""
    now = timezone.now()
    table, _ = RunTable.objects.get_or_create(run_id=run_id, target_table=event.table)
    if table.started_at is None:
        table.started_at = now
    table.stage = event.stage
    table.rows_read = event.rows_read
    table.rows_loaded = event.rows_loaded
    table.rows_rejected = event.rows_rejected
    table.rows_excluded = event.rows_excluded
    if event.source_rows is not None:
        table.rows_total = event.source_rows
    elapsed = (now - table.started_at).total_seconds()
    table.rate_rows_per_s = event.rows_read / elapsed if elapsed > 0 else None
    table.save()
    Run.objects.filter(pk=run_id).update(stage=f"{event.table}:{event.stage}")


def range_counts(event: ProgressEvent) -> dict[str, int]:
    """Return a range progress event's counts as RunRange field values."""
    return {
        "rows_read": event.rows_read,
        "rows_loaded": event.rows_loaded,
        "rows_rejected": event.rows_rejected,
        "rows_excluded": event.rows_excluded,
    }


def range_progress_persist(
    run_id: int, range_pk: int, worker: str, event: ProgressEvent
) -> None:
    """Store a range's counts; the table's row shows the sum over its ranges."""
    RunRange.objects.filter(pk=range_pk, lease_owner=worker).update(
        **range_counts(event)
    )
    sums = RunRange.objects.filter(run_id=run_id, target_table=event.table).aggregate(
        read=Sum("rows_read"),
        loaded=Sum("rows_loaded"),
        rejected=Sum("rows_rejected"),
        excluded=Sum("rows_excluded"),
    )
    total = ProgressEvent(
        run_id=event.run_id,
        table=event.table,
        stage=event.stage,
        rows_read=int(sums["read"] or 0),
        rows_loaded=int(sums["loaded"] or 0),
        rows_rejected=int(sums["rejected"] or 0),
        rows_excluded=int(sums["excluded"] or 0),
        source_rows=event.source_rows,
    )
    progress_persist(run_id, total)


@transaction.atomic
def report_persist(run: Run, report: RunReport) -> None:
    """Store the engine's report on the run and its per-table ledger rows."""
    data = report.to_dict()
    run.report = data
    run.save(update_fields=["report"])
    for order, table in enumerate(report.tables):
        td = data["tables"][order]
        RunTable.objects.update_or_create(
            run=run,
            target_table=table.table,
            defaults={
                "source_table": table.source_table,
                "order": order,
                "rows_total": table.source_rows,
                "rows_read": table.rows_read,
                "rows_loaded": table.rows_loaded,
                "rows_rejected": table.rows_rejected,
                "rows_excluded": table.rows_excluded,
                "rows_flagged": table.rows_flagged,
                "ledger_balanced": table.ledger_balanced,
                "finished_at": timezone.now(),
                "stage": "done",
                "metrics": {
                    "columns": td["columns"],
                    "dqmi": td["dqmi"],
                    "rejects_by_reason": td["rejects_by_reason"],
                    "flags_by_reason": td["flags_by_reason"],
                    "excluded_by_rule": td["excluded_by_rule"],
                    "reject_rate": td["reject_rate"],
                    "ledger_difference": td["ledger_difference"],
                },
                "timings": {"seconds": table.seconds},
            },
        )


def rejects_persist(run: Run, sink: Any) -> int:
    """Copy the sink's reject store into RejectRecord rows (replacing, so idempotent)."""
    count = 0
    with transaction.atomic():
        RejectRecord.objects.filter(run=run).delete()
        batch: list[RejectRecord] = []
        for row in sink.iter_rejects(engine_run_id(run)):
            values = dict(zip(REJECT_COLUMNS, row, strict=False))
            if values.get("action", "reject") != "reject":
                continue  # flags and rule exclusions are in the report, not rejects
            batch.append(
                RejectRecord(
                    run=run,
                    target_table=str(values.get("target_table") or ""),
                    source_table=str(values.get("source_table") or ""),
                    source_key=str(values.get("source_key") or ""),
                    column=str(values.get("column_name") or ""),
                    raw_value=""
                    if values.get("raw_value") is None
                    else str(values["raw_value"]),
                    rule_id=str(values.get("rule_id") or ""),
                    reason_code=str(values.get("reason") or ""),
                    crosswalk_ref=str(values.get("crosswalk_id") or ""),
                    crosswalk_version=str(values.get("crosswalk_version") or ""),
                )
            )
            if len(batch) >= REJECT_BATCH:
                RejectRecord.objects.bulk_create(batch)
                count += len(batch)
                batch = []
        if batch:
            RejectRecord.objects.bulk_create(batch)
            count += len(batch)
    return count
