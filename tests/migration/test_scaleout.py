"""Scale-out: a run split into key ranges that are separate q2 tasks.

Inline (q2 sync): ``parallel_ranges=3`` publishes exactly what the same
contract publishes single-process. Two real ``manage.py qcluster`` processes
on one Redis broker share the ranges of one run and finish it with the same
result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from connectors.models import Connector
from connectors.sinks.postgresql import PostgresSink
from migration.engine.contract import contract_from_dict
from migration.engine.defaults import default_contract_dict
from migration.legacypas import generate
from migration.models import (
    Contract,
    RangeState,
    RejectRecord,
    Run,
    RunRange,
    RunState,
    RunTable,
)
from migration.services.runs import run_start

ROOT = Path(__file__).resolve().parents[2]
PG = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def schemas() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    with psycopg.connect(PG, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _target(project: Any, schemas: list[str], name: str) -> Connector:
    schema = f"so_{uuid.uuid4().hex[:8]}"
    schemas.append(schema)
    return Connector.objects.create(
        project=project,
        name=name,
        kind="postgresql",
        role="target",
        config={
            "host": "127.0.0.1",
            "port": 5432,
            "dbname": "postgres",
            "user": "postgres",
            "schema": schema,
        },
    )


def _wiring(project: Any, tmp_path: Path, patients: int, seed: int) -> tuple[Any, Any]:
    generate(
        patients=patients, seed=seed, out=str(tmp_path / "src"), fmt="sqlite",
        defect_rate=0.03,
    )  # fmt: skip
    source = Connector.objects.create(
        project=project,
        name="legacy",
        kind="sqlite",
        role="source",
        config={"path": str(tmp_path / "src" / "legacy_pas.sqlite3")},
    )
    body = default_contract_dict()
    body["chunk_size"] = 1000
    contract = Contract.objects.create(
        project=project, version=1, body=body, sha256=contract_from_dict(body).sha256
    )
    return source, contract


def outcome(run: Run) -> dict[str, Any]:
    """Published rows, keys, checksums, ledger and rejects of a finished run."""
    schema = run.target.config["schema"]
    sink = PostgresSink(PG, schema=schema)
    contract = contract_from_dict(run.contract.body)
    out: dict[str, Any] = {}
    try:
        for t in contract.target.tables:
            keys = sink.query(f'SELECT "_source_key" FROM "{schema}"."{t.name}"')
            out[t.name] = {
                "rows": sink.count(t.name),
                "keys": sorted(str(k[0]) for k in keys),
                "checksums": {f.name: sink.checksum(t.name, f.name) for f in t.fields},
            }
    finally:
        sink.close()
    for rt in RunTable.objects.filter(run=run):
        out[rt.target_table]["ledger"] = (
            rt.rows_total,
            rt.rows_read,
            rt.rows_loaded,
            rt.rows_rejected,
            rt.rows_excluded,
            rt.rows_flagged,
            rt.ledger_balanced,
            rt.metrics["rejects_by_reason"],
        )
        assert rt.rows_total == rt.rows_loaded + rt.rows_rejected + rt.rows_excluded
        assert rt.ledger_balanced, rt.target_table
    reasons: dict[str, int] = {}
    for r in RejectRecord.objects.filter(run=run).values_list("reason_code", flat=True):
        reasons[r] = reasons.get(r, 0) + 1
    out["rejects"] = reasons
    return out


def test_parallel_ranges_inline_publish_what_one_worker_publishes(
    transactional_db: Any,
    project: Any,
    dm_engineer: Any,
    tmp_path: Path,
    schemas: list[str],
) -> None:
    settings.PAS_RANGE_MIN_ROWS = 300
    source, contract = _wiring(project, tmp_path, 1500, 5)
    runs = {}
    for parallel in (0, 3):
        run = run_start(
            actor=dm_engineer,
            contract=contract,
            source=source,
            target=_target(project, schemas, f"target{parallel}"),
            enqueue=False,
        )
        Run.objects.filter(pk=run.pk).update(parallel_ranges=parallel)
        from migration.tasks import run_execute

        run_execute(run.pk)  # q2 sync: ranges and finalize run inline
        run.refresh_from_db()
        assert run.state == RunState.SUCCEEDED, run.error
        runs[parallel] = run
    ranges = RunRange.objects.filter(run=runs[3])
    per_table: dict[str, int] = {}
    for rr in ranges:
        assert rr.state == RangeState.DONE and rr.worker
        per_table[rr.target_table] = per_table.get(rr.target_table, 0) + 1
    assert per_table["patient"] == 3 and per_table["clinic"] == 1
    assert not RunRange.objects.filter(run=runs[0]).exists()
    assert outcome(runs[3]) == outcome(runs[0])


# --- two real clusters on one Redis ------------------------------------------------


def _env(
    tmp_path: Path, qname: str, redis_db: int, lease: int = 20, heartbeat: int = 2
) -> dict[str, str]:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAS_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="pasportal.settings",
        DATABASE_URL=f"postgres://{db['USER']}@127.0.0.1:5432/{db['NAME']}",
        PAS_VAR_DIR=str(tmp_path / "var"),
        PAS_AUDIT_KEY=settings.PAS_AUDIT_KEY,
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        PAS_AUDIT_HEAD_FILE=str(settings.PAS_AUDIT_HEAD_FILE),
        PAS_REDIS_URL=f"redis://127.0.0.1:6379/{redis_db}",
        PAS_Q_NAME=qname,
        PAS_RUN_LEASE_SECONDS=str(lease),
        PAS_HEARTBEAT_SECONDS=str(heartbeat),
        PAS_Q_WORKERS="1",
        PAS_Q_TIMEOUT="600",
        PAS_Q_RETRY="700",
        PAS_LOG_LEVEL="WARNING",
    )
    return env


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def _reference(
    project: Any, dm_engineer: Any, source: Any, contract: Any, schemas: list[str]
) -> Run:
    """The single-process reference run, inline."""
    ref = run_start(
        actor=dm_engineer,
        contract=contract,
        source=source,
        target=_target(project, schemas, "reference"),
        enqueue=False,
    )
    from migration.tasks import run_execute

    run_execute(ref.pk)
    ref.refresh_from_db()
    assert ref.state == RunState.SUCCEEDED, ref.error
    return ref


def _route_to_clusters(
    monkeypatch: pytest.MonkeyPatch, qname: str, redis_db: int
) -> None:
    """Make this test process enqueue to the Redis list the clusters read."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "REDIS", f"redis://127.0.0.1:6379/{redis_db}")
    # django-q2 salts the payload signature with the cluster name (PREFIX): the
    # enqueuing process must use the clusters' name or they cannot read tasks.
    monkeypatch.setattr(Conf, "PREFIX", qname)
    monkeypatch.setattr(Conf, "CLUSTER_NAME", qname)
    from django_q.brokers.redis_broker import Redis as RedisBroker

    broker = RedisBroker(list_key=qname)  # the clusters' list: django_q:<name>:q
    monkeypatch.setattr("django_q.tasks.get_broker", lambda *a, **k: broker)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _start_scaled(
    project: Any,
    dm_engineer: Any,
    source: Any,
    contract: Any,
    schemas: list[str],
    ranges: int = 6,
) -> Run:
    """Start a run split into up to ``ranges`` key ranges, queued to the clusters."""
    from migration.services.runs import _enqueue

    run = run_start(
        actor=dm_engineer,
        contract=contract,
        source=source,
        target=_target(project, schemas, "scaled"),
        enqueue=False,
    )
    Run.objects.filter(pk=run.pk).update(parallel_ranges=ranges)
    _enqueue(run.pk)
    return run


def _wait_state(run: Run, states: set[str], seconds: float, logs: list[Path]) -> None:
    """Wait until ``run`` is in one of ``states``; fail with the process logs."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        run.refresh_from_db()
        if run.state in states:
            return
        time.sleep(0.2)
    tails = "\n".join(p.read_text(errors="replace")[-1500:] for p in logs)
    raise AssertionError((run.state, run.error, tails))


ENDED = {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}


@pytest.mark.slow
def test_two_clusters_share_the_ranges_of_one_run(
    transactional_db: Any,
    project: Any,
    dm_engineer: Any,
    tmp_path: Path,
    schemas: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redis

    redis_db = 11
    qname = f"scaleout-{uuid.uuid4().hex[:6]}"
    r = redis.Redis.from_url(f"redis://127.0.0.1:6379/{redis_db}")
    r.flushdb()
    source, contract = _wiring(project, tmp_path, 30_000, 17)
    ref = _reference(project, dm_engineer, source, contract, schemas)

    # The test process enqueues to the same Redis list the clusters read.
    _route_to_clusters(monkeypatch, qname, redis_db)
    env = _env(tmp_path, qname, redis_db)
    logs = [tmp_path / f"cluster-{i}.log" for i in range(2)]
    procs = [_spawn(["qcluster"], env, log) for log in logs]
    try:
        run = _start_scaled(project, dm_engineer, source, contract, schemas)
        _wait_state(run, ENDED, 150, logs)
        assert run.state == RunState.SUCCEEDED, (run.state, run.error)
    finally:
        for p in procs:
            _kill_group(p)
        r.flushdb()
    ranges = list(RunRange.objects.filter(run=run))
    assert len(ranges) > 6 and {x.state for x in ranges} == {RangeState.DONE}
    pids = {x.worker.split(":")[2] for x in ranges}
    assert len(pids) >= 2, pids  # both clusters loaded ranges
    assert outcome(run) == outcome(ref)


@pytest.mark.slow
@pytest.mark.chaos
def test_a_cluster_killed_mid_range_hands_its_range_to_the_other(
    transactional_db: Any,
    project: Any,
    dm_engineer: Any,
    tmp_path: Path,
    schemas: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGKILL one of two clusters while it loads a range of a scaled-out run.

    The range's lease expires, ``run_monitor`` re-queues it, the surviving
    cluster resumes it from the range's own checkpoint, and the run publishes
    exactly what a single-process run of the same contract publishes.
    """
    import redis

    from governance.models import AuditEvent

    redis_db = 12
    qname = f"scalekill-{uuid.uuid4().hex[:6]}"
    r = redis.Redis.from_url(f"redis://127.0.0.1:6379/{redis_db}")
    r.flushdb()
    source, contract = _wiring(project, tmp_path, 30_000, 19)
    ref = _reference(project, dm_engineer, source, contract, schemas)
    _route_to_clusters(monkeypatch, qname, redis_db)
    env = _env(tmp_path, qname, redis_db, lease=6, heartbeat=1)
    logs = [tmp_path / f"cluster-{i}.log" for i in range(2)]
    procs = [_spawn(["qcluster"], env, log) for log in logs]
    monitor = _spawn(
        ["run_monitor", "--interval", "1", "--grace", "2"], env, tmp_path / "mon.log"
    )
    killed: RunRange | None = None
    try:
        run = _start_scaled(project, dm_engineer, source, contract, schemas)
        groups = {p.pid for p in procs}
        started = time.monotonic()
        # Kill the cluster whose worker holds a range of the big tables.
        while killed is None and time.monotonic() - started < 120:
            for rr in RunRange.objects.filter(
                run=run, state=RangeState.RUNNING, target_table="outpatient_appointment"
            ):
                pid = int(rr.worker.split(":")[2])
                try:
                    group = os.getpgid(pid)
                except ProcessLookupError:
                    continue
                if group in groups:
                    os.killpg(group, signal.SIGKILL)
                    killed = rr
                    break
            time.sleep(0.05)
        assert killed is not None, "no range was seen running"
        _wait_state(run, ENDED, 240, [*logs, tmp_path / "mon.log"])
        assert run.state == RunState.SUCCEEDED, (run.state, run.error)
    finally:
        for p in [*procs, monitor]:
            _kill_group(p)
        r.flushdb()
    redone = RunRange.objects.get(pk=killed.pk)
    assert redone.state == RangeState.DONE and redone.attempts >= 2
    assert redone.worker != killed.worker  # finished by the surviving cluster
    assert AuditEvent.objects.filter(
        action="migration.run.range_worker_lost", target_id=str(run.pk)
    ).exists()
    # Nothing lost, nothing duplicated: the same rows, keys, checksums, ledger
    # and rejects as the single-process run.
    assert outcome(run) == outcome(ref)


@pytest.mark.slow
def test_cancel_stops_both_clusters_and_a_resume_finishes_exactly(
    transactional_db: Any,
    project: Any,
    dm_engineer: Any,
    tmp_path: Path,
    schemas: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancel a scaled-out run while two clusters load it, then resume it.

    Every range worker stops at its next chunk, no range is left running, the
    run ends ``cancelled``; resumed, it continues from the ranges' checkpoints
    and publishes exactly the single-process result.
    """
    import redis

    from migration.services.runs import run_cancel, run_resume

    redis_db = 13
    qname = f"scalecancel-{uuid.uuid4().hex[:6]}"
    r = redis.Redis.from_url(f"redis://127.0.0.1:6379/{redis_db}")
    r.flushdb()
    source, contract = _wiring(project, tmp_path, 30_000, 23)
    ref = _reference(project, dm_engineer, source, contract, schemas)
    _route_to_clusters(monkeypatch, qname, redis_db)
    env = _env(tmp_path, qname, redis_db, lease=6, heartbeat=1)
    logs = [tmp_path / f"cluster-{i}.log" for i in range(2)]
    procs = [_spawn(["qcluster"], env, log) for log in logs]

    try:
        run = _start_scaled(project, dm_engineer, source, contract, schemas)
        started = time.monotonic()
        while time.monotonic() - started < 120:
            if RunRange.objects.filter(run=run, state=RangeState.DONE).count() >= 3:
                break
            time.sleep(0.05)
        run.refresh_from_db()
        assert run.state == RunState.RUNNING, (run.state, run.error)
        run_cancel(actor=dm_engineer, run=run)
        _wait_state(run, ENDED, 60, logs)
        assert run.state == RunState.CANCELLED, (run.state, run.error)
        ranges = RunRange.objects.filter(run=run)
        assert not ranges.filter(state=RangeState.RUNNING).exists()
        assert ranges.exclude(state=RangeState.DONE).exists()  # it did stop early
        run_resume(actor=dm_engineer, run=run)
        _wait_state(run, ENDED, 120, logs)
        assert run.state == RunState.SUCCEEDED, (run.state, run.error)
    finally:
        for p in procs:
            _kill_group(p)
        r.flushdb()
    assert outcome(run) == outcome(ref)
