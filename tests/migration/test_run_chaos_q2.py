"""Chaos through the real q2 path (R1, R4): SIGKILL the worker cluster mid-run.

A real ``manage.py qcluster`` subprocess (ORM broker on the test database)
executes the run into a real PostgreSQL target; the test kills the whole
cluster process group at random points. Each time, ``run_monitor`` must take
the run out of ``running`` within lease + heartbeat + 10 s; the run is then
resumed through the broker and finally ends with 0 duplicated and 0 lost rows.
"""

from __future__ import annotations

import os
import random
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
from migration.engine.contract import contract_from_dict
from migration.engine.defaults import default_contract_dict
from migration.legacypas import generate
from migration.models import Contract, Run, RunState, RunTable
from migration.services.runs import run_resume, run_start

ROOT = Path(__file__).resolve().parents[2]
PG = "postgresql://postgres@127.0.0.1:5432/postgres"
LEASE, HEARTBEAT = 6, 1
KILLS = 3

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _env(tmp_path: Path) -> dict[str, str]:
    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAS_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="pasportal.settings",
        DATABASE_URL=f"postgres://{db['USER']}@127.0.0.1:5432/{db['NAME']}",
        PAS_VAR_DIR=str(tmp_path / "var"),
        PAS_AUDIT_KEY=settings.PAS_AUDIT_KEY,
        # q2 signs task payloads with SECRET_KEY: the cluster must share it.
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        PAS_AUDIT_HEAD_FILE=str(settings.PAS_AUDIT_HEAD_FILE),
        PAS_RUN_LEASE_SECONDS=str(LEASE),
        PAS_HEARTBEAT_SECONDS=str(HEARTBEAT),
        PAS_Q_WORKERS="1",
        PAS_Q_TIMEOUT="600",
        PAS_Q_RETRY="700",
        PAS_LOG_LEVEL="WARNING",
    )
    return env


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    for attempt in (sig, signal.SIGKILL):
        try:
            os.killpg(proc.pid, attempt)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue  # a graceful stop that does not come: kill it


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"chaos_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _wait(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_sigkill_the_cluster_then_resume_loses_and_duplicates_nothing(
    transactional_db: Any,
    project: Any,
    dm_engineer: Any,
    tmp_path: Path,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django_q.conf import Conf

    # This test drives a real cluster: enqueue to the broker, never inline.
    monkeypatch.setattr(Conf, "SYNC", False)
    generate(
        patients=25_000,
        seed=11,
        out=str(tmp_path / "src"),
        fmt="sqlite",
        defect_rate=0.02,
    )
    source = Connector.objects.create(
        project=project,
        name="legacy",
        kind="sqlite",
        role="source",
        config={"path": str(tmp_path / "src" / "legacy_pas.sqlite3")},
    )
    target = Connector.objects.create(
        project=project,
        name="target",
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
    body = default_contract_dict()
    body["chunk_size"] = 1500  # many commits: many places to be killed at
    contract = Contract.objects.create(
        project=project, version=1, body=body, sha256=contract_from_dict(body).sha256
    )
    env = _env(tmp_path)
    spawned: list[subprocess.Popen[bytes]] = []

    def spawn(args: list[str]) -> subprocess.Popen[bytes]:
        proc = _spawn(args, env)
        spawned.append(proc)
        return proc

    spawn(["run_monitor", "--interval", "1"])
    rng = random.Random(20261127)
    try:
        run = run_start(
            actor=dm_engineer,
            contract=contract,
            source=source,
            target=target,
            profile="development",
        )
        detection: list[float] = []
        for kill in range(KILLS + 1):
            cluster = spawn(["qcluster"])
            if kill == KILLS:
                _wait(
                    lambda: (
                        Run.objects.get(pk=run.pk).state
                        in (RunState.SUCCEEDED, RunState.FAILED)
                    ),
                    300,
                    "the run to finish",
                )
                _kill_group(cluster, signal.SIGTERM)
                break
            loaded_before = sum(
                RunTable.objects.filter(run=run).values_list("rows_read", flat=True)
            )
            threshold = loaded_before + rng.randint(1_500, 25_000)

            def progressed(threshold: int = threshold) -> bool:
                read = sum(
                    RunTable.objects.filter(run=run).values_list("rows_read", flat=True)
                )
                state = Run.objects.get(pk=run.pk).state
                return read >= threshold or state == RunState.SUCCEEDED

            _wait(progressed, 300, "progress")
            if Run.objects.get(pk=run.pk).state == RunState.SUCCEEDED:
                _kill_group(cluster, signal.SIGTERM)
                break
            _kill_group(cluster)  # SIGKILL mid-chunk, no goodbye
            detection.append(
                _wait(
                    lambda: Run.objects.get(pk=run.pk).state != RunState.RUNNING,
                    LEASE + HEARTBEAT + 10 + 5,
                    "the monitor to notice",
                )
            )
            run.refresh_from_db()
            assert run.state == RunState.FAILED and "lease expired" in run.error
            run_resume(actor=dm_engineer, run=run)
        run.refresh_from_db()
        assert run.state == RunState.SUCCEEDED, run.error
        assert detection, "the run finished before any kill: make the source bigger"
        # R4: from the kill, out of `running` within lease + heartbeat + 10 s.
        assert max(detection) <= LEASE + HEARTBEAT + 10, detection
    finally:
        for proc in spawned:
            _kill_group(proc)
    with psycopg.connect(PG) as conn:
        for table in RunTable.objects.filter(run=run):
            total, distinct = conn.execute(
                f'SELECT count(*), count(DISTINCT _source_key) FROM "{schema}"."{table.target_table}"'
            ).fetchone()
            assert total == distinct == table.rows_loaded, table.target_table  # 0 dup
            # 0 lost: every source row is loaded, rejected or excluded.
            assert (
                table.rows_total
                == table.rows_loaded + table.rows_rejected + table.rows_excluded
            ), table.target_table
            assert table.ledger_balanced
    assert run.attempts == len(detection) + 1
