"""The governor: server-side cancellation on timeout, retry of transient errors
only, concurrency slots, page size and row caps -- and logs without values."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.governor import Governor, GovernorPolicy, QueryTimeout
from connectors.kinds import get_kind
from migration.engine.errors import TerminalError, TransientError

from .conftest import (
    JARS,
    load_mariadb,
    load_postgres,
    load_sqlite,
    mariadb_admin,
    pg_admin,
)

SLOW_PG = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c "
    "WHERE n < 200000000) SELECT COUNT(*) FROM c"
)
TIMEOUT = 1.0
POLICY = {"statement_timeout_s": TIMEOUT, "max_retries": 0}


def _pg_active(db: str) -> list[str]:
    conn = pg_admin()
    try:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
            "AND pid <> pg_backend_pid()",
            (db,),
        ).fetchall()
        return [r[0] for r in rows]
    finally:
        conn.close()


def _run_slow(src: Any, sql: str) -> float:
    t0 = time.monotonic()
    with pytest.raises(QueryTimeout, match="cancelled at the server"):
        src.query(sql)
    return time.monotonic() - t0


@pytest.mark.parametrize("kind", ["postgresql", "odbc", "jdbc"])
def test_pg_timeout_is_cancelled_at_the_server(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pasportal.connectors.governor")
    db, _role, _pw, cleanup = load_postgres(uuid.uuid4().hex[:8])
    try:
        base = {"user": "postgres", "governor": POLICY}
        cfg: dict[str, Any] = {
            "postgresql": {**base, "dbname": db},
            "odbc": {**base, "driver": "PostgreSQL Unicode", "host": "127.0.0.1",
                     "port": 5432, "database": db},
            "jdbc": {**base, "driver_class": "org.postgresql.Driver",
                     "url": f"jdbc:postgresql://127.0.0.1:5432/{db}",
                     "jars": [JARS["postgresql"]]},
        }[kind]  # fmt: skip
        src = get_kind(kind).open(cfg, name=f"gov-{kind}")
        src.connect()
        elapsed = _run_slow(src, SLOW_PG)
        assert elapsed < TIMEOUT + 1.0
        assert _pg_active(db) == []
        # The connection is still usable afterwards.
        assert src.count("PA_PatMas") == 60
        src.close()
        assert f"connector=gov-{kind} decision=statement_cancelled" in caplog.text
        assert "200000000" not in caplog.text  # no literal values in decisions
    finally:
        cleanup()


def test_sqlite_timeout_interrupts(tmp_path: Path) -> None:
    path = load_sqlite(tmp_path / "s.db")
    src = get_kind("sqlite").open({"path": str(path), "governor": POLICY}, name="gov-s")
    elapsed = _run_slow(src, SLOW_PG.replace("200000000", "2000000000"))
    assert elapsed < TIMEOUT + 1.0
    assert src.count("PA_PatMas") == 60


def test_mariadb_odbc_timeout_is_cancelled_at_the_server() -> None:
    db, user, pw, cleanup = load_mariadb(uuid.uuid4().hex[:8])
    import os

    os.environ["CX_GOV_MARIA"] = pw
    try:
        src = get_kind("odbc").open(
            {"driver": "MariaDB Unicode", "host": "127.0.0.1", "port": 3306,
             "database": db, "user": user, "password": "env:CX_GOV_MARIA",
             "governor": POLICY},
            name="gov-maria",
        )  # fmt: skip
        src.connect()
        elapsed = _run_slow(
            src,
            "SELECT SUM(a.seq * b.seq) FROM seq_1_to_100000 a, seq_1_to_100000 b",
        )
        assert elapsed < TIMEOUT + 1.0
        # KILL QUERY (what the driver's cancel sends) is asynchronous on the
        # server: allow it a moment to unwind, then nothing may be running.
        admin = mariadb_admin()
        deadline = time.monotonic() + 1.0
        while True:
            with admin.cursor() as cur:
                cur.execute(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                    "WHERE USER = %s AND COMMAND = 'Query'",
                    (user,),
                )
                running = cur.fetchone()[0]
            if running == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        admin.close()
        assert running == 0
        assert src.count("PA_PatMas") == 60
        src.close()
    finally:
        cleanup()


def test_retry_transient_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pasportal.connectors.governor")
    gov = Governor("gov-retry", GovernorPolicy(max_retries=3, backoff_base_s=0.01))
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("dropped")
        return "ok"

    assert gov.retry(flaky, "read") == "ok" and len(calls) == 3
    assert caplog.text.count("decision=retry ") == 2

    def broken() -> None:
        calls.append(1)
        raise TerminalError("bad contract")

    calls.clear()
    with pytest.raises(TerminalError):
        gov.retry(broken, "read")
    assert len(calls) == 1  # never retried

    def always() -> None:
        raise TransientError("down")

    with pytest.raises(TransientError):
        gov.retry(always, "read")
    assert "decision=retry_exhausted" in caplog.text


def test_concurrency_slots_are_per_connector() -> None:
    gov = Governor(
        f"gov-slots-{uuid.uuid4().hex[:6]}", GovernorPolicy(max_concurrency=2)
    )
    active, peak = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal active, peak
        with gov.slot("q"):
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.05)
            with lock:
                active -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2


def test_page_size_and_row_cap(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pasportal.connectors.governor")
    path = load_sqlite(tmp_path / "p.db")
    src = get_kind("sqlite").open(
        {"path": str(path), "governor": {"page_size": 20, "row_cap": 15}},
        name="gov-cap",
    )
    chunks = list(src.read_chunks("PA_PatMas", ["PAPMI_RowId"], "PAPMI_RowId",
                                  chunk_size=1000))  # fmt: skip
    assert [len(c) for c in chunks] == [20, 20, 20]
    assert "decision=page_size_clamped" in caplog.text
    assert len(src.query('SELECT * FROM "PA_PatMas"')) == 15
    assert "decision=rows_truncated" in caplog.text
    assert len(src.sample("PA_PatMas", 100)) == 15


def test_a_cancel_never_runs_after_the_governed_block_ended() -> None:
    """A timer firing as the statement finishes must not cancel afterwards.

    After the block the reader closes the cursor; a driver asked to cancel a
    freed handle can crash the whole process (seen: MariaDB ODBC, SIGSEGV in
    SQLCancel). Statements here end right around their deadline, hundreds of
    times; a cancel is allowed during a block, never after it.
    """

    gov = Governor("gov-race", GovernorPolicy(statement_timeout_s=0.002))
    late: list[int] = []
    fired = 0
    for i in range(300):
        ended = threading.Event()

        def cancel(i: int = i, ended: threading.Event = ended) -> None:
            time.sleep(0.001)  # a driver call takes a moment
            if ended.is_set():
                late.append(i)

        try:
            with gov.deadline("race", cancel):
                time.sleep(0.002)  # ends right around the deadline
        except QueryTimeout:
            fired += 1
        ended.set()
    time.sleep(0.05)  # any straggling timer thread would have run by now
    assert late == []
    assert fired > 0  # the deadline did fire inside some of the blocks
