"""R1: kill -9 the worker at random points >= 20 times over 3 seeds on >= 100k rows.

After the kills the run is finished; the target must hold exactly the rows of
a run that was never killed: 0 duplicate and 0 lost target rows, and the
ledger balances. Run alone with ``pytest -p no:django -m chaos tests/engine``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from engine_kit import PG_DSN, sqlite_source, target_rows

from connectors.sinks.postgresql import PostgresSink
from connectors.sinks.sqlite import SqliteSink
from migration.engine.defaults import load_default_contract
from migration.engine.runner import run_contract

WORKER = Path(__file__).resolve().parent / "engine_chaos_worker.py"
PATIENTS = 23_000  # ~106k source rows over the seven tables
KILLS_PER_SEED = 7
CHUNK = "500"  # ~200 committed chunks per run: many kill points


def _snapshot(sink: Any) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for t in load_default_contract().target.tables:
        rows = target_rows(sink, t.name, [*t.field_names, "_source_key"])
        out[t.name] = [tuple(None if v is None else str(v) for v in r) for r in rows]
    return out


@pytest.mark.chaos
@pytest.mark.parametrize(
    ("seed", "kind"), [(11, "postgresql"), (12, "sqlite"), (13, "postgresql")]
)
def test_sigkill_chaos(
    legacy_pas: Any, tmp_path: Path, pg_schema: str, seed: int, kind: str
) -> None:
    out = legacy_pas(PATIENTS, seed, 0.02)
    source = str(out / "legacy_pas.sqlite3")
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(manifest["tables"].values()) >= 100_000
    target = (
        str(tmp_path / "t.sqlite3") if kind == "sqlite" else f"{PG_DSN}|{pg_schema}"
    )
    rnd = random.Random(seed)
    cmd = [sys.executable, str(WORKER), source, kind, target, f"chaos-{seed}", CHUNK]

    run_id = f"chaos-{seed}"

    def published() -> bool:
        probe: Any = (
            SqliteSink(target)
            if kind == "sqlite"
            else PostgresSink(PG_DSN, schema=pg_schema)
        )
        try:
            return bool(probe.is_published(run_id))
        finally:
            probe.close()

    kills = 0
    final = None
    # Kill points are counted in commits, not seconds, so they land inside
    # the run however fast this machine (or the engine) is: each attempt
    # waits for a random share of the commits still to come, then a random
    # few milliseconds more (mid-read, mid-transform, mid-COPY, mid-commit),
    # and now and then reaches the cross-table phase.
    remaining = sum(manifest["tables"].values()) // int(CHUNK) + 14
    for _ in range(3 * KILLS_PER_SEED):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if kills < KILLS_PER_SEED:
            share = max(1, remaining // (KILLS_PER_SEED - kills + 1))
            goal, seen = rnd.randint(1, share), 0
            assert proc.stderr is not None
            while seen < goal:
                line = proc.stderr.readline()
                if not line:
                    break  # the process ended first
                seen += line.strip() == b"progress"
            remaining -= seen
            time.sleep(rnd.uniform(0, 0.05))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                # Only kills of an unfinished run count as chaos.
                kills += 0 if published() else 1
                continue
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        final = json.loads(stdout)
        if kills >= KILLS_PER_SEED:
            break
    assert kills >= KILLS_PER_SEED, f"only {kills} kills landed before the publish"
    assert final is not None, "the run never finished"
    assert final["status"] == "succeeded", final["failure_reasons"]
    for t in final["tables"]:
        assert t["ledger_balanced"], t
        assert (
            t["source_rows"]
            == t["rows_loaded"] + t["rows_rejected"] + t["rows_excluded"]
        )
    sink: Any = (
        SqliteSink(target)
        if kind == "sqlite"
        else PostgresSink(PG_DSN, schema=pg_schema)
    )
    got = _snapshot(sink)
    for name, rows in got.items():
        keys = [r[-1] for r in rows]
        assert len(keys) == len(set(keys)), f"duplicate target rows in {name}"
    clean = SqliteSink(tmp_path / "clean.sqlite3")
    ref = run_contract(load_default_contract(), sqlite_source(source), clean, "clean")
    assert ref.status == "succeeded"
    want = _snapshot(clean)
    for name in want:
        assert len(got[name]) == len(want[name]), name
        assert got[name] == want[name], f"lost or changed rows in {name}"
    assert sorted(sink.reject_counts(run_id)) == sorted(clean.reject_counts("clean"))
