"""Scale-out in the engine: key-range planning, per-range loads, finalize.

A run loaded as key ranges (in any order, concurrently, resumed after a crash)
publishes exactly what the single-process ``run_contract`` publishes, and its
per-table ledger (the sum over ranges) balances.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from engine_kit import (
    CrashAfter,
    assert_ledger,
    sqlite_source,
    target_rows,
    write_sqlite,
)

from connectors.sinks.sqlite import SqliteSink
from migration.engine.defaults import load_default_contract
from migration.engine.errors import TransientError
from migration.engine.ports import KeyRange
from migration.engine.report import RunReport
from migration.engine.runner import (
    finalize,
    load_range,
    plan_ranges,
    plan_run_ranges,
    prepare_run,
    run_contract,
    table_checkpoint,
)


def snapshot(sink: Any, contract: Any) -> dict[str, Any]:
    out = {}
    for t in contract.target.tables:
        rows = target_rows(sink, t.name, [*t.field_names, "_source_key"])
        out[t.name] = [tuple(None if v is None else str(v) for v in r) for r in rows]
    return out


def summary(rep: RunReport) -> dict[str, Any]:
    """What must not depend on how the run was split."""
    return {
        t.table: (
            t.source_rows,
            t.rows_read,
            t.rows_loaded,
            t.rows_rejected,
            t.rows_excluded,
            t.rows_flagged,
            dict(t.rejects_by_reason),
            dict(t.excluded_by_rule),
            {c.name: (c.checksum_source, c.checksum_target) for c in t.columns},
        )
        for t in rep.tables
    }


def _keys(path: Path, table: str, key: str) -> list[Any]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute(f'SELECT "{key}" FROM "{table}" ORDER BY 1')]


def test_plan_ranges_cover_the_table_exactly_once(legacy_pas: Any) -> None:
    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract()
    tm = contract.table("patient")
    src = sqlite_source(path)
    ranges = plan_ranges(src, tm.source, tm.key, target_rows_per_range=400)
    assert len(ranges) == 4  # 400 + 400 + 400 + 300
    assert ranges[0].after_key is None and ranges[-1].upto_key is None
    assert [r.upto_key for r in ranges[:-1]] == [r.after_key for r in ranges[1:]]
    seen: list[Any] = []
    for r in ranges:
        for chunk in src.read_chunks(
            tm.source, [tm.key], tm.key, after_key=r.after_key, upto_key=r.upto_key
        ):
            seen += [int(k) for k in chunk[tm.key]]
    assert sorted(seen) == sorted(_keys(path, tm.source, tm.key))
    assert len(seen) == len(set(seen)) == 1500


def test_plan_ranges_edges(tmp_path: Path) -> None:
    path = write_sqlite(
        tmp_path / "t.sqlite3",
        {"T": pd.DataFrame({"k": [f"K{i:03d}" for i in range(10)], "v": range(10)})},
    )
    src = sqlite_source(path)
    # an exact multiple gives no empty last range; text keys keep their type
    assert plan_ranges(src, "T", "k", target_rows_per_range=5) == [
        KeyRange("r00000", None, "K004"),
        KeyRange("r00001", "K004", None),
    ]
    assert plan_ranges(src, "T", "k", target_rows_per_range=10) == [KeyRange("all")]
    assert plan_ranges(src, "T", "k", target_rows_per_range=50) == [KeyRange("all")]
    assert len(plan_ranges(src, "T", "k", target_rows_per_range=3)) == 4


def _load_all(
    contract: Any,
    path: Path,
    make_sink: Any,
    run_id: str,
    plan: dict[str, list[KeyRange]],
    *,
    threads: int = 1,
    seed: int = 3,
) -> None:
    units = [(t, r) for t, rs in plan.items() for r in rs]
    random.Random(seed).shuffle(units)  # any order: children before parents too
    errors: list[BaseException] = []

    def work(mine: list[tuple[str, KeyRange]]) -> None:
        sink = make_sink()
        try:
            for t, r in mine:
                rr = load_range(
                    contract, sqlite_source(path), sink, run_id, t,
                    range_id=r.range_id, after_key=r.after_key, upto_key=r.upto_key,
                )  # fmt: skip
                assert rr.status == "done"
                assert rr.rows_read == (
                    rr.rows_loaded + rr.rows_rejected + rr.rows_excluded
                )
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    parts = [units[i::threads] for i in range(threads)]
    pool = [threading.Thread(target=work, args=(p,)) for p in parts]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors


def test_ranged_run_publishes_what_run_contract_publishes(
    legacy_pas: Any, make_sink: Any
) -> None:
    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=150)
    single = run_contract(contract, sqlite_source(path), make_sink(), "run-single")
    assert single.status == "succeeded", single.failure_reasons
    expected = snapshot(make_sink(), contract)

    sink = make_sink()
    prepare_run(contract, sqlite_source(path), sink, "run-ranged")
    plan = plan_run_ranges(
        contract, sqlite_source(path), max_ranges=3, min_rows_per_range=200
    )
    assert len(plan["patient"]) == 3 and plan["clinic"] == [KeyRange("all")]
    _load_all(contract, path, make_sink, "run-ranged", plan, threads=3)
    ids = {t: [r.range_id for r in rs] for t, rs in plan.items()}
    rep = finalize(contract, sqlite_source(path), sink, "run-ranged", ranges=ids)
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    assert summary(rep) == summary(single)
    assert snapshot(make_sink(), contract) == expected
    cp = table_checkpoint(sink, "run-ranged", "patient")
    assert cp is not None and cp.extra["done"] and cp.rows_read == 1500
    # finalizing again (a re-delivered task) changes nothing
    again = finalize(
        contract, sqlite_source(path), make_sink(), "run-ranged", ranges=ids
    )
    assert again.status == "succeeded" and summary(again) == summary(single)
    assert snapshot(make_sink(), contract) == expected


def test_a_crashed_range_resumes_from_its_own_checkpoint(
    legacy_pas: Any, make_sink: Any
) -> None:
    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=100)
    ref = run_contract(contract, sqlite_source(path), make_sink(), "run-ref")
    sink = make_sink()
    prepare_run(contract, sqlite_source(path), sink, "run-rc")
    plan = plan_run_ranges(
        contract, sqlite_source(path), max_ranges=3, min_rows_per_range=200
    )
    victim = plan["patient"][1]
    with pytest.raises(TransientError):
        load_range(
            contract, CrashAfter(sqlite_source(path), 2), sink, "run-rc", "patient",
            range_id=victim.range_id, after_key=victim.after_key,
            upto_key=victim.upto_key,
        )  # fmt: skip
    part = sink.range_checkpoint("run-rc", "patient", victim.range_id)
    assert part is not None and 0 < part.rows_read < 500 and not part.extra["done"]
    # finalize refuses to publish while a range is unfinished
    ids = {t: [r.range_id for r in rs] for t, rs in plan.items()}
    early = finalize(contract, sqlite_source(path), sink, "run-rc", ranges=ids)
    assert early.status == "failed" and not sink.is_published("run-rc")
    _load_all(contract, path, make_sink, "run-rc", plan)
    rep = finalize(contract, sqlite_source(path), sink, "run-rc", ranges=ids)
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    assert summary(rep) == summary(ref)


def test_cancel_stops_a_range_at_a_chunk_boundary(
    legacy_pas: Any, make_sink: Any
) -> None:
    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=100)
    sink = make_sink()
    prepare_run(contract, sqlite_source(path), sink, "run-cx")
    r = plan_ranges(
        sqlite_source(path), "PA_PatMas", "PAPMI_RowId", target_rows_per_range=500
    )[0]
    calls = iter(range(1000))
    rr = load_range(
        contract, sqlite_source(path), sink, "run-cx", "patient",
        range_id=r.range_id, after_key=r.after_key, upto_key=r.upto_key,
        should_cancel=lambda: next(calls) >= 2,
    )  # fmt: skip
    assert rr.status == "cancelled" and rr.rows_read == 200
    rr = load_range(
        contract, sqlite_source(path), sink, "run-cx", "patient",
        range_id=r.range_id, after_key=r.after_key, upto_key=r.upto_key,
    )  # fmt: skip
    assert rr.status == "done" and rr.resumed and rr.rows_read == 500


def test_old_checkpoint_tables_upgrade_to_range_all(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE _pas_checkpoints (run_id TEXT NOT NULL, table_name TEXT "
            "NOT NULL, last_key TEXT, rows_read BIGINT NOT NULL, rows_loaded BIGINT "
            "NOT NULL, rows_rejected BIGINT NOT NULL, rows_excluded BIGINT NOT NULL, "
            "extra TEXT NOT NULL, PRIMARY KEY (run_id, table_name))"
        )
        conn.execute(
            "INSERT INTO _pas_checkpoints VALUES ('r1', 'patient', '7', 7, 5, 1, 1, "
            "'{\"done\": false}')"
        )
    sink = SqliteSink(db)
    cp = sink.checkpoint("r1", "patient")
    assert cp is not None and cp.range_id == "all" and cp.last_key == 7
    assert cp.rows_loaded == 5 and sink.range_checkpoints("r1", "patient") == [cp]
    SqliteSink(db)  # idempotent
