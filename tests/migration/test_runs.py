"""Run state machine through the real q2 task function, real SQLite source and target.

R5: two simultaneous claims, exactly one wins. Illegal transitions are refused
and audited. A run whose worker vanished is marked failed after its lease and
resumes from the engine's checkpoints with nothing lost or duplicated.
"""

from __future__ import annotations

import csv
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from connectors.models import Connector, QueryLog
from governance.audit import Refused
from governance.models import AuditEvent
from migration.engine.contract import contract_from_dict
from migration.engine.defaults import default_contract_dict
from migration.legacypas import generate
from migration.models import Contract, RejectRecord, Run, RunState, RunTable
from migration.services.runs import (
    run_cancel,
    run_claim,
    run_resume,
    run_start,
    runs_mark_stale,
)
from migration.tasks import run_execute


@pytest.fixture
def legacy(tmp_path_factory: Any) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("legacy")
    manifest = generate(
        patients=400, seed=7, out=str(out), fmt="sqlite", defect_rate=0.03
    )
    return {"path": out / "legacy_pas.sqlite3", "manifest": manifest}


@pytest.fixture
def wiring(
    db: Any, project: Any, legacy: dict[str, Any], tmp_path: Path
) -> dict[str, Any]:
    source = Connector.objects.create(
        project=project,
        name="legacy",
        kind="sqlite",
        role="source",
        config={"path": str(legacy["path"])},
    )
    target = Connector.objects.create(
        project=project,
        name="target",
        kind="sqlite",
        role="target",
        config={"path": str(tmp_path / "target.sqlite3")},
    )
    body = default_contract_dict()
    contract = Contract.objects.create(
        project=project, version=1, body=body, sha256=contract_from_dict(body).sha256
    )
    return {
        "source": source,
        "target": target,
        "contract": contract,
        "target_path": tmp_path / "target.sqlite3",
    }


def _target_count(path: Path, table: str) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        total, distinct = conn.execute(
            f'SELECT count(*), count(DISTINCT "_source_key") FROM "{table}"'
        ).fetchone()
    return int(total), int(distinct)


def test_started_run_executes_on_commit_and_balances(
    wiring: dict[str, Any], dm_engineer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = run_start(
            actor=dm_engineer,
            contract=wiring["contract"],
            source=wiring["source"],
            target=wiring["target"],
            profile="pre_production",
        )
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.error
    tables = {t.target_table: t for t in RunTable.objects.filter(run=run)}
    assert set(tables) >= {
        "patient",
        "inpatient_spell",
        "ward_stay",
        "outpatient_appointment",
    }
    for table in tables.values():
        assert table.ledger_balanced is True
        assert (
            table.rows_read
            == table.rows_loaded + table.rows_rejected + table.rows_excluded
        )
        loaded, distinct = _target_count(wiring["target_path"], table.target_table)
        assert loaded == distinct == table.rows_loaded
    rejected = sum(t.rows_rejected for t in tables.values())
    assert rejected > 0
    assert RejectRecord.objects.filter(run=run).count() == rejected
    reject_csv = Path(run.report["reject_csv"])
    with reject_csv.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["action"] == "reject"]
    assert len(rows) == rejected
    actions = list(
        AuditEvent.objects.filter(
            target_type="migration.run", target_id=str(run.pk)
        ).values_list("action", flat=True)
    )
    assert actions == [
        "migration.run.created",
        "migration.run.started",
        "migration.run.succeeded",
        "governance.gate.evaluated",  # the run's own profile, as its starter
    ]
    assert run.gates.get().profile == "pre_production"
    # Every source statement of the run is in the connector's query log.
    reads = QueryLog.objects.filter(connector=wiring["source"], run_id=run.pk)
    assert reads.count() >= len(tables)
    assert set(reads.values_list("outcome", flat=True)) == {"ok"}
    run.refresh_from_db()
    assert run.gate_outcome in ("passed", "gate_failed")


def test_a_user_without_start_run_is_refused_and_audited(
    wiring: dict[str, Any], steward: Any
) -> None:
    with pytest.raises(Refused) as refused:
        run_start(
            actor=steward,
            contract=wiring["contract"],
            source=wiring["source"],
            target=wiring["target"],
        )
    assert refused.value.code == "forbidden"
    assert Run.objects.count() == 0
    assert AuditEvent.objects.filter(action="migration.run.start_refused").count() == 1


def test_wrong_connector_roles_are_refused(
    wiring: dict[str, Any], dm_engineer: Any
) -> None:
    with pytest.raises(Refused) as refused:
        run_start(
            actor=dm_engineer,
            contract=wiring["contract"],
            source=wiring["target"],
            target=wiring["source"],
        )
    assert refused.value.code == "invalid"
    assert Run.objects.count() == 0


def test_illegal_transitions_are_refused_without_side_effects(
    wiring: dict[str, Any], dm_engineer: Any
) -> None:
    run = run_start(
        actor=dm_engineer,
        contract=wiring["contract"],
        source=wiring["source"],
        target=wiring["target"],
    )  # not committed: stays queued
    run_cancel(actor=dm_engineer, run=run)
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED
    with pytest.raises(Refused) as again:
        run_cancel(actor=dm_engineer, run=run)
    assert again.value.code == "illegal_transition"
    run.state = RunState.SUCCEEDED
    run.save(update_fields=["state"])
    with pytest.raises(Refused) as resume:
        run_resume(actor=dm_engineer, run=run)
    assert resume.value.code == "illegal_transition"
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED
    assert AuditEvent.objects.filter(action="migration.run.resume_refused").exists()


def test_two_simultaneous_claims_exactly_one_wins(
    transactional_db: Any, wiring: dict[str, Any]
) -> None:
    # Created directly: run_start would enqueue (and, with sync q2, execute) on commit.
    run = Run.objects.create(
        project=wiring["contract"].project,
        contract=wiring["contract"],
        source=wiring["source"],
        target=wiring["target"],
    )
    barrier = threading.Barrier(2)
    results: list[bool] = []

    def claim(worker: str) -> None:
        barrier.wait()
        try:
            results.append(run_claim(run_id=run.pk, worker=worker))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    run.refresh_from_db()
    assert run.attempts == 1


def test_a_dead_workers_run_is_failed_then_resumes_without_loss(
    wiring: dict[str, Any],
    dm_engineer: Any,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    run = run_start(
        actor=dm_engineer,
        contract=wiring["contract"],
        source=wiring["source"],
        target=wiring["target"],
    )
    # A worker claims the run and dies at once: no heartbeat ever renews the lease.
    settings.PAS_RUN_LEASE_SECONDS = 5
    assert run_claim(run_id=run.pk, worker="ghost")
    assert runs_mark_stale(grace_seconds=0) == []  # lease still valid
    Run.objects.filter(pk=run.pk).update(
        lease_expires_at=run.created_at.replace(year=2000)
    )
    assert runs_mark_stale(grace_seconds=10) == [run.pk]
    run.refresh_from_db()
    assert run.state == RunState.FAILED
    assert "lease expired" in run.error
    with django_capture_on_commit_callbacks(execute=True):
        run_resume(actor=dm_engineer, run=run)
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.error
    for table in RunTable.objects.filter(run=run):
        loaded, distinct = _target_count(wiring["target_path"], table.target_table)
        assert loaded == distinct == table.rows_loaded


def test_a_redelivered_task_for_a_finished_run_does_nothing(
    wiring: dict[str, Any], dm_engineer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        run = run_start(
            actor=dm_engineer,
            contract=wiring["contract"],
            source=wiring["source"],
            target=wiring["target"],
        )
    before = _target_count(wiring["target_path"], "patient")
    assert run_execute(run.pk) == "not claimed"
    assert _target_count(wiring["target_path"], "patient") == before


def _range_tasks(callbacks: list[Any]) -> list[Any]:
    """The on-commit callbacks that enqueue range tasks (not audit exports)."""
    return [c for c in callbacks if "_ranges_lost_in_the_queue" in c.__qualname__]


def test_a_stalled_scaled_out_run_gets_its_lost_range_tasks_again(
    wiring: dict[str, Any],
    dm_engineer: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Queued ranges whose tasks a killed cluster took along are enqueued again.

    Only when the run is stalled (nothing running under a live lease): while
    a range runs, queued ranges are just waiting their turn.
    """
    import datetime as dt

    from django.utils import timezone

    from migration.models import RangeState, RunRange
    from migration.services.runs import ranges_mark_stale, ranges_token

    run = run_start(
        actor=dm_engineer,
        contract=wiring["contract"],
        source=wiring["source"],
        target=wiring["target"],
        enqueue=False,
    )
    now = timezone.now()
    lease = now + dt.timedelta(seconds=60)
    Run.objects.filter(pk=run.pk).update(
        state=RunState.RUNNING, lease_owner=ranges_token(run.pk), lease_expires_at=lease
    )
    lost = RunRange.objects.create(
        run=run, target_table="patient", range_id="r00001", order=1,
        state=RangeState.QUEUED, lease_expires_at=now - dt.timedelta(minutes=5),
    )  # fmt: skip
    busy = RunRange.objects.create(
        run=run, target_table="patient", range_id="r00000", order=0,
        state=RangeState.RUNNING, lease_owner="w1", lease_expires_at=lease,
    )  # fmt: skip
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        assert ranges_mark_stale(grace_seconds=10) == []
    assert _range_tasks(enqueued) == []  # the queue is moving
    RunRange.objects.filter(pk=busy.pk).update(state=RangeState.DONE)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        assert ranges_mark_stale(grace_seconds=10) == [lost.pk]
    assert len(_range_tasks(enqueued)) == 1  # its task, once more
    lost.refresh_from_db()
    assert lost.state == RangeState.QUEUED and lost.lease_expires_at > now
    event = AuditEvent.objects.filter(action="migration.run.ranges_requeued").get()
    assert event.target_id == str(run.pk) and event.data["ranges"] == [lost.pk]
    # No q2 cluster is alive here: the run's lease is not extended, so a run
    # whose every worker died still goes stale in time (R4).
    assert event.data["run_lease_extended"] is False
    run.refresh_from_db()
    assert run.lease_expires_at == lease
    # Within its new take-by time it is not enqueued again.
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        assert ranges_mark_stale(grace_seconds=10) == []
    assert _range_tasks(enqueued) == []
