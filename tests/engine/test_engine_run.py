"""The run loop on both sinks: ledger, resume, rerun, cancel, publish, rejects."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import itertools
import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from engine_kit import (
    PG_DSN,
    CrashAfter,
    assert_ledger,
    mini_pas,
    patient,
    sqlite_source,
    target_rows,
)

from connectors.sinks.postgresql import PostgresSink
from migration.engine.contract import contract_from_json
from migration.engine.defaults import default_contract_dict, load_default_contract
from migration.engine.errors import TerminalError, TransientError
from migration.engine.runner import ProgressEvent, run_contract


def snapshot(sink: Any, contract: Any) -> dict[str, Any]:
    """Return every published row of every table (sorted), for equality checks."""
    out = {}
    for t in contract.target.tables:
        rows = target_rows(sink, t.name, [*t.field_names, "_source_key"])
        # PostgreSQL returns dates, SQLite ISO text: compare canonical text
        out[t.name] = [tuple(None if v is None else str(v) for v in r) for r in rows]
    return out


def test_generated_pas_runs_and_balances(
    legacy_pas: Any, make_sink: Any, tmp_path: Path
) -> None:
    src = sqlite_source(legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3")
    contract = load_default_contract(chunk_size=400)
    events: list[ProgressEvent] = []
    sink = make_sink()
    rep = run_contract(
        contract, src, sink, "run-a", on_progress=events.append,
        reject_csv=tmp_path / "rejects.csv",
    )  # fmt: skip
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    assert rep.as_of == "2026-11-01"  # from PAS_Extract.ExtractDate
    pat = rep.table("patient")
    assert pat.rows_rejected > 0 and pat.rows_flagged > 0
    assert all(
        c.checksum_match for t in rep.tables for c in t.columns if c.checksum_source
    )
    assert {c.orphans for c in rep.fk_chains} == {0}
    chains = {(c.table, c.ref_table) for c in rep.fk_chains}
    assert {("inpatient_spell", "patient"), ("ward_stay", "inpatient_spell"),
            ("outpatient_appointment", "patient"),
            ("outpatient_appointment", "clinic")} <= chains  # fmt: skip
    assert set(pat.dqmi) == {"coverage", "completeness", "validity", "default_use"}
    # one progress event per committed chunk, counts only grow
    loads = [e for e in events if e.table == "patient" and e.stage == "load"]
    assert len(loads) == -(-1500 // 400)
    assert [e.rows_read for e in loads] == sorted(e.rows_read for e in loads)
    # the per-run reject CSV holds every reject and flag record
    with open(tmp_path / "rejects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    total = sum(t.rows_rejected + t.rows_flagged + t.rows_excluded for t in rep.tables)
    assert len(rows) == total
    assert {r["reason"] for r in rows} >= {"nhs_number_invalid", "possible_duplicate"}
    assert rep.to_dict()["tables"][3]["table"] == "patient"


def test_rerun_of_a_finished_run_changes_nothing(
    legacy_pas: Any, make_sink: Any
) -> None:
    src = sqlite_source(legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3")
    contract = load_default_contract()
    sink = make_sink()
    first = run_contract(contract, src, sink, "run-r")
    assert_ledger(first)
    before = snapshot(sink, contract)
    sums = {c: sink.checksum("patient", c) for c in ("pas_number", "nhs_number")}
    again = run_contract(contract, src, make_sink(), "run-r")
    assert again.status == "succeeded" and again.resumed
    assert_ledger(again)
    assert snapshot(sink, contract) == before
    assert {c: sink.checksum("patient", c) for c in sums} == sums
    assert [t.rows_rejected for t in again.tables] == [
        t.rows_rejected for t in first.tables
    ]


def test_resume_after_a_crash_loses_and_duplicates_nothing(
    legacy_pas: Any, make_sink: Any, tmp_path: Path
) -> None:
    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=300)
    sink = make_sink()
    for n in (2, 7, 11):  # dies in patient, then spells, then later tables
        with pytest.raises(TransientError, match="source read"):
            run_contract(
                contract, CrashAfter(sqlite_source(path), n), make_sink(), "run-c"
            )
    rep = run_contract(contract, sqlite_source(path), make_sink(), "run-c")
    assert rep.status == "succeeded", rep.failure_reasons
    assert rep.resumed
    assert_ledger(rep)
    for t in contract.target.tables:
        keys = [r[0] for r in target_rows(sink, t.name, ["_source_key"])]
        assert len(keys) == len(set(keys)), f"duplicates in {t.name}"
    # the same rows as a run that never crashed
    from connectors.sinks.sqlite import SqliteSink

    clean = SqliteSink(tmp_path / "clean.sqlite3")
    ref = run_contract(contract, sqlite_source(path), clean, "run-clean")
    assert_ledger(ref)
    assert snapshot(sink, contract) == snapshot(clean, contract)
    assert sorted(sink.reject_counts("run-c")) == sorted(
        clean.reject_counts("run-clean")
    )


def test_cancel_at_a_chunk_boundary_then_resume(
    legacy_pas: Any, make_sink: Any
) -> None:
    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=250)
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    sink = make_sink()
    rep = run_contract(
        contract, sqlite_source(path), sink, "run-x", should_cancel=cancel
    )
    assert rep.status == "cancelled"
    assert not sink.is_published("run-x")
    cp = sink.checkpoint("run-x", "patient")
    assert (cp is not None and cp.rows_read == 0) or cp is None or cp.rows_read > 0
    rep = run_contract(contract, sqlite_source(path), make_sink(), "run-x")
    assert rep.status == "succeeded"
    assert_ledger(rep)


def test_lost_staged_rows_restart_the_table(legacy_pas: Any, make_sink: Any) -> None:
    """An UNLOGGED staging table emptied by a server crash must not pass silently."""
    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=300)
    sink = make_sink()
    with pytest.raises(TransientError):
        run_contract(contract, CrashAfter(sqlite_source(path), 3), sink, "run-l")
    staged = sink.qualified(sink.staged_name("run-l", "patient"))
    with sink.transaction():
        sink.execute(f"DELETE FROM {staged} WHERE _source_key IN ('5', '6', '7')")
    rep = run_contract(contract, sqlite_source(path), make_sink(), "run-l")
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)


def test_exclusions_and_lenient_crosswalks_are_counted(
    tmp_path: Path, make_sink: Any
) -> None:
    data = copy.deepcopy(default_contract_dict())
    pat = next(t for t in data["tables"] if t["target"] == "patient")
    pat["exclude"] = [
        {"id": "EX-TEST", "field": "pas_number", "op": "in", "values": ["RXX0000003"],
         "reason": "test_patient"}
    ]  # fmt: skip
    gender = next(f for f in pat["fields"] if f["target"] == "gender")
    gender["transforms"][-1]["args"]["mode"] = "lenient"
    contract = contract_from_json(data)
    pats = [
        patient(1),
        patient(2, Sex_DR="Q"),  # unknown local code: lenient -> X
        patient(3),  # excluded by rule
        patient(4, Sex_DR=" u "),  # messy, maps to X explicitly
        patient(5, DeceasedDate="2019-02-30"),
        patient(6, Surname=None),
    ]
    src = sqlite_source(mini_pas(tmp_path / "s.sqlite3", patients=pats))
    sink = make_sink()
    rep = run_contract(contract, src, sink, "run-e")
    assert_ledger(rep)
    t = rep.table("patient")
    assert t.rows_excluded == 1 and t.excluded_by_rule == {"test_patient": 1}
    assert t.rejects_by_reason == {"date_unparseable": 1, "required_missing": 1}
    g = next(c for c in t.columns if c.name == "gender")
    assert g.lenient_fills == 1
    assert g.defaults_used == 2
    # The defaulted local code is listed (by crosswalk) for the miss queue.
    xw = gender["transforms"][-1]["args"]["id"]
    assert t.defaulted_codes == {xw: {"Q": 1}}
    recs = {r["source_key"]: r for r in sink.rejects("run-e")}
    assert recs["3"]["action"] == "exclude"
    assert recs["5"]["column_name"] == "PAPMI_DeceasedDate"
    assert recs["5"]["raw_value"] == "2019-02-30"


def test_exclusion_on_a_source_column_the_contract_maps_nowhere(
    tmp_path: Path, make_sink: Any
) -> None:
    """A table fed by part of a source table: rows whose (trimmed) source
    text matches are excluded with the column and raw value recorded, the
    column is read without being mapped, and the ledger still balances."""
    import sqlite3

    data = copy.deepcopy(default_contract_dict())
    pat = next(t for t in data["tables"] if t["target"] == "patient")
    pat["exclude"] = [
        {"id": "EX-TEST", "column": "PAPMI_Status", "op": "eq", "values": ["TEST"],
         "reason": "test_patient"}
    ]  # fmt: skip
    contract = contract_from_json(data)
    path = mini_pas(
        tmp_path / "s.sqlite3",
        patients=[
            patient(1),
            patient(2),
            patient(3, DeceasedDate="2019-02-30", Sex_DR="Q"),  # excluded, not rejected
            patient(4),
            patient(5),
        ],
    )
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE PA_PatMas ADD COLUMN PAPMI_Status TEXT")
    for row_id, status in [(2, "TEST"), (3, " TEST "), (4, "test"), (5, "")]:
        conn.execute(
            "UPDATE PA_PatMas SET PAPMI_Status = ? WHERE PAPMI_RowId = ?",
            (status, row_id),
        )
    conn.commit()
    conn.close()
    sink = make_sink()
    rep = run_contract(contract, sqlite_source(path), sink, "run-x")
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    t = rep.table("patient")
    assert (t.source_rows, t.rows_loaded, t.rows_excluded, t.rows_rejected) == (
        5, 3, 2, 0,
    )  # fmt: skip
    assert t.excluded_by_rule == {"test_patient": 2}
    recs = {r["source_key"]: r for r in sink.rejects("run-x")}
    assert set(recs) == {"2", "3"}
    for key, raw in [("2", "TEST"), ("3", " TEST ")]:
        assert recs[key]["action"] == "exclude"
        assert recs[key]["rule_id"] == "EX-TEST"
        assert recs[key]["crosswalk_id"] is None  # "Q" missed the crosswalk too
        assert (recs[key]["column_name"], recs[key]["raw_value"]) == (
            "PAPMI_Status",
            raw,
        )
    loaded = {r[0] for r in target_rows(sink, "patient", ["_source_key"])}
    assert loaded == {"1", "4", "5"}


def test_crosswalk_miss_records_crosswalk_id_version_and_raw_value(
    tmp_path: Path, make_sink: Any
) -> None:
    src = sqlite_source(
        mini_pas(tmp_path / "s.sqlite3", patients=[patient(1, Ethnic_DR="zz9 ")])
    )
    sink = make_sink()
    rep = run_contract(load_default_contract(), src, sink, "run-m")
    assert_ledger(rep)
    (rec,) = sink.rejects("run-m")
    assert rec["reason"] == "crosswalk_miss"
    assert (rec["crosswalk_id"], rec["crosswalk_version"]) == ("legacypas.ETHNIC", "1")
    assert rec["raw_value"] == "zz9 "
    assert rec["column_name"] == "PAPMI_Ethnic_DR"


def test_readers_never_see_an_empty_or_partial_table(
    legacy_pas: Any, make_sink: Any
) -> None:
    small = sqlite_source(legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3")
    large = sqlite_source(legacy_pas(3000, 8, 0.03) / "legacy_pas.sqlite3")
    contract = load_default_contract()
    first = run_contract(contract, small, make_sink(), "pub-1")
    n1 = first.table("patient").rows_loaded
    n1s = first.table("inpatient_spell").rows_loaded
    reader = make_sink()  # its own connection
    seen: set[tuple[int, int]] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                row = reader.query(
                    f"SELECT (SELECT COUNT(*) FROM {reader.qualified('patient')}), "
                    f"(SELECT COUNT(*) FROM {reader.qualified('inpatient_spell')})"
                )[0]
                seen.add((int(row[0]), int(row[1])))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    th = threading.Thread(target=read)
    th.start()
    try:
        time.sleep(0.05)
        second = run_contract(contract, large, make_sink(), "pub-2")
        time.sleep(0.05)
    finally:
        stop.set()
        th.join(30)
    assert not errors, errors
    n2 = second.table("patient").rows_loaded
    n2s = second.table("inpatient_spell").rows_loaded
    # every read saw one whole published state: never empty, partial or mixed
    assert seen <= {(n1, n1s), (n2, n2s)}, (seen, n1, n2)
    assert (n2, n2s) in seen
    assert len(seen) >= 1


def test_write_behind_commits_each_checkpoint_as_it_was_when_sent(
    legacy_pas: Any, tmp_path: Path
) -> None:
    """The writer thread stores chunk N's state, not state already holding N+1.

    A slow writer (it waits before committing) lets the engine fold the next
    chunk in while chunk N is in flight; every committed checkpoint must still
    count exactly the rows committed with it (else a resume after a kill would
    double-count the next chunk's checksums and fail reconciliation).
    """
    import json
    import uuid

    from connectors.sinks.postgresql import PostgresSink

    seen: list[tuple[str, int, int]] = []

    class SlowWriter(PostgresSink):
        def write_chunk(self, run_id, table, rows, rejects, checkpoint):  # type: ignore[no-untyped-def]
            time.sleep(0.05)
            state = json.loads(json.dumps(checkpoint.extra))  # as it is stored
            if table == "patient" and not state["done"]:
                count = state["checksums"]["pas_number"][0]
                seen.append((checkpoint.range_id, checkpoint.rows_loaded, count))
            super().write_chunk(run_id, table, rows, rejects, checkpoint)

    out = legacy_pas(600, 21, 0.02)
    sink = SlowWriter(PG_DSN, schema=f"eng_{uuid.uuid4().hex[:8]}")
    assert sink.write_behind is True
    try:
        contract = load_default_contract(chunk_size=50)
        rep = run_contract(
            contract, sqlite_source(out / "legacy_pas.sqlite3"), sink, "run-wb"
        )
        assert rep.status == "succeeded", rep.failure_reasons
        assert len(seen) >= 10  # many chunks went through the writer thread
        # pas_number is required: every loaded row has one, so the checksum's
        # count must equal the rows the checkpoint says are loaded.
        assert all(loaded == count for _, loaded, count in seen), seen
    finally:
        sink.drop_schema()
        sink.close()


class ReadAheadCrash(CrashAfter):
    """CrashAfter for a source the engine reads ahead of (on its own thread)."""

    read_ahead = True

    def __init__(self, inner: Any, n: int) -> None:
        super().__init__(inner, n)
        self.threads: set[str] = set()

    def read_chunks(
        self, table: str, columns: Sequence[str], order_key: str, **kw: Any
    ) -> Iterator[pd.DataFrame]:
        for chunk in super().read_chunks(table, columns, order_key, **kw):
            if table != "PAS_Extract":  # the as-of date is read before the load
                self.threads.add(threading.current_thread().name)
            yield chunk


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pas-read"]


def test_read_ahead_crash_resume_and_cancel_lose_and_duplicate_nothing(
    legacy_pas: Any, make_sink: Any, tmp_path: Path
) -> None:
    """Chunks read on the engine's reader thread: a source failure surfaces
    in the run as the same TransientError, at the chunk it belongs to; a
    cancel stops the reader; no reader thread outlives its table; the rows
    are those of a run without read-ahead."""
    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=300)
    for n in (3, 9):
        src = ReadAheadCrash(sqlite_source(path), n)
        with pytest.raises(TransientError, match="source read"):
            run_contract(contract, src, make_sink(), "run-ra")
        assert src.threads == {"pas-read"}  # every chunk came from the reader
        assert _reader_threads() == []
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    rep = run_contract(
        contract,
        ReadAheadCrash(sqlite_source(path), 10**6),
        make_sink(),
        "run-ra",
        should_cancel=cancel,
    )
    assert rep.status == "cancelled"
    assert _reader_threads() == []
    rep = run_contract(
        contract, ReadAheadCrash(sqlite_source(path), 10**6), make_sink(), "run-ra"
    )
    assert rep.status == "succeeded", rep.failure_reasons
    assert rep.resumed
    assert_ledger(rep)
    from connectors.sinks.sqlite import SqliteSink

    clean = SqliteSink(tmp_path / "clean-ra.sqlite3")
    plain = CrashAfter(sqlite_source(path), 10**6)  # no read_ahead attribute
    ref = run_contract(contract, plain, clean, "run-plain")
    assert_ledger(ref)
    assert snapshot(make_sink(), contract) == snapshot(clean, contract)


def test_no_chunk_commits_after_an_earlier_commit_failed(legacy_pas: Any) -> None:
    """Two chunks may be in flight behind the transform (checksums of N+1
    while N commits). When N's commit fails, N+1 must not commit: its
    checkpoint would count rows that are not there."""
    import uuid

    from connectors.sinks.postgresql import PostgresSink

    commits: list[int] = []

    class FailingWriter(PostgresSink):
        calls = 0

        def write_chunk(self, run_id, table, rows, rejects, checkpoint):  # type: ignore[no-untyped-def]
            if table == "patient" and not checkpoint.extra.get("done"):
                FailingWriter.calls += 1
                time.sleep(0.05)  # let the next chunk queue up behind this one
                if FailingWriter.calls == 3:
                    raise TransientError("PostgreSQL target failed: OperationalError")
                commits.append(checkpoint.rows_read)
            super().write_chunk(run_id, table, rows, rejects, checkpoint)

    out = legacy_pas(600, 21, 0.02)
    sink = FailingWriter(PG_DSN, schema=f"eng_{uuid.uuid4().hex[:8]}")
    try:
        contract = load_default_contract(chunk_size=50)
        with pytest.raises(TransientError, match="target failed"):
            run_contract(
                contract, sqlite_source(out / "legacy_pas.sqlite3"), sink, "run-wf"
            )
        assert commits == [50, 100]  # the third failed; nothing after it
        cp = sink.checkpoint("run-wf", "patient")
        assert cp is not None and cp.rows_read == 100
        assert sink.count("patient", run_id="run-wf") == cp.rows_loaded
        rep = run_contract(
            contract, sqlite_source(out / "legacy_pas.sqlite3"), sink, "run-wf"
        )
        assert rep.status == "succeeded", rep.failure_reasons
        assert_ledger(rep)
    finally:
        sink.drop_schema()
        sink.close()


def _assert_rows_of_a_plain_run(
    sink: Any, contract: Any, path: Path, tmp_path: Path
) -> None:
    """The published rows equal those of a plain run (no read-ahead, no
    write-behind) of the same source into a fresh SQLite target."""
    from connectors.sinks.sqlite import SqliteSink

    clean = SqliteSink(tmp_path / "clean-plain.sqlite3")
    ref = run_contract(
        contract, CrashAfter(sqlite_source(path), 10**9), clean, "run-plain"
    )
    assert_ledger(ref)
    assert snapshot(sink, contract) == snapshot(clean, contract)


class _Recorder:
    """Events from the reader, writer and caller threads, in one total order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, bool]] = []

    def add(self, kind: str, table: str, done: bool = False) -> None:
        with self.lock:
            self.events.append((kind, table, done))


class _RecordingSource(CrashAfter):
    """A read-ahead source that records each chunk read and can fail on one table."""

    read_ahead = True

    def __init__(self, inner: Any, rec: _Recorder, fail_on: str | None = None) -> None:
        super().__init__(inner, 10**9)
        self.rec, self.fail_on = rec, fail_on

    def read_chunks(
        self, table: str, columns: Sequence[str], order_key: str, **kw: Any
    ) -> Iterator[pd.DataFrame]:
        for chunk in self.inner.read_chunks(table, columns, order_key, **kw):
            if table == self.fail_on:
                raise RuntimeError("connection reset by peer")
            self.rec.add("read", table)
            yield chunk


def _slow_pg_sink(rec: _Recorder) -> Any:
    import uuid

    from connectors.sinks.postgresql import PostgresSink

    class SlowRecordingSink(PostgresSink):
        def write_chunk(self, run_id, table, rows, rejects, checkpoint):  # type: ignore[no-untyped-def]
            time.sleep(0.02)  # a slow target: the reader and transform run ahead
            super().write_chunk(run_id, table, rows, rejects, checkpoint)
            rec.add("commit", table, bool(checkpoint.extra.get("done")))

    return SlowRecordingSink(PG_DSN, schema=f"eng_{uuid.uuid4().hex[:8]}")


def test_tables_stream_into_each_other_and_commit_in_order(
    legacy_pas: Any, tmp_path: Path
) -> None:
    """One read-ahead stream and one writer serve every table: the next
    table's first chunk is read while the table before is still committing,
    yet commits keep table order, each table's done checkpoint is its last
    commit, progress says so in order, and the rows are a plain run's."""
    path = legacy_pas(600, 21, 0.02) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=50)
    order = contract.table_order()
    source_of = {t: contract.table(t).source for t in order}
    rec = _Recorder()
    progress: list[ProgressEvent] = []
    sink = _slow_pg_sink(rec)
    try:
        rep = run_contract(
            contract,
            _RecordingSource(sqlite_source(path), rec),
            sink,
            "run-stream",
            on_progress=progress.append,
        )
        assert rep.status == "succeeded", rep.failure_reasons
        assert_ledger(rep)
        commits = [(t, done) for kind, t, done in rec.events if kind == "commit"]
        # Commits in table order; each table ends with exactly one done commit.
        assert [t for t, _ in commits] == sorted(
            (t for t, _ in commits), key=order.index
        )
        for t in order:
            mine = [done for c, done in commits if c == t]
            assert mine[-1] is True and mine.count(True) == 1, (t, mine)
        # The overlap itself: some table's first read came before the done
        # commit of the table before it.
        overlapped = []
        for a, b in itertools.pairwise(order):
            first_read_b = rec.events.index(("read", source_of[b], False))
            done_a = rec.events.index(("commit", a, True))
            overlapped.append(first_read_b < done_a)
        assert any(overlapped), rec.events
        # Progress: per table, "loaded" after its chunks, tables in order.
        stages = [(e.table, e.stage) for e in progress if e.stage in ("load", "loaded")]
        loaded = [t for t, s in stages if s == "loaded"]
        assert loaded == order
        for t in order:
            last_load = max(
                (i for i, (tt, s) in enumerate(stages) if tt == t and s == "load"),
                default=-1,
            )
            assert last_load < stages.index((t, "loaded"))
        # Per-table load times are reported (overlapping), and the phase's.
        assert rep.timings["load"] > 0
        assert all(rep.timings[f"load:{t}"] > 0 for t in order)
        assert all(tr.seconds == rep.timings[f"load:{tr.table}"] for tr in rep.tables)
        _assert_rows_of_a_plain_run(sink, contract, path, tmp_path)
    finally:
        sink.drop_schema()
        sink.close()


def test_a_failed_read_of_the_next_table_while_commits_are_in_flight(
    legacy_pas: Any, tmp_path: Path
) -> None:
    """The reader fails on the next table's first chunk while the table
    before still has commits in flight: the run raises the source error,
    every staged table holds exactly what its checkpoint counts, nothing of
    the failed table is staged, and a resume finishes with a plain run's
    rows."""
    path = legacy_pas(600, 21, 0.02) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=50)
    failing = contract.table("inpatient_spell").source
    rec = _Recorder()
    sink = _slow_pg_sink(rec)
    try:
        with pytest.raises(TransientError, match=f"source read of {failing}"):
            run_contract(
                contract,
                _RecordingSource(sqlite_source(path), rec, fail_on=failing),
                sink,
                "run-xfail",
            )
        assert _reader_threads() == []
        for t in contract.table_order():
            cp = sink.checkpoint("run-xfail", t)
            staged = sink.count(t, run_id="run-xfail")
            assert staged == (cp.rows_loaded if cp else 0), t
        assert sink.checkpoint("run-xfail", "inpatient_spell") is None
        rep = run_contract(
            contract, _RecordingSource(sqlite_source(path), rec), sink, "run-xfail"
        )
        assert rep.status == "succeeded", rep.failure_reasons
        assert rep.resumed
        assert_ledger(rep)
        _assert_rows_of_a_plain_run(sink, contract, path, tmp_path)
    finally:
        sink.drop_schema()
        sink.close()


def test_a_published_table_gone_missing_is_a_ledger_gap_not_a_crash(
    legacy_pas: Any, make_sink: Any
) -> None:
    """Reconciliation reads each published table's rows and nulls in one
    scan; a table dropped behind the engine's back profiles as empty, so a
    re-reconcile reports the gap by name instead of failing on the query."""
    sink = make_sink()
    assert sink.table_profile("no_such_table", ["a"], ["b"]) == {
        "rows": 0,
        "nulls": {"a": 0},
        "checksums": {"b": [0, 0]},
    }
    path = legacy_pas(300, 3, 0.02) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=100)
    rep = run_contract(contract, sqlite_source(path), sink, "run-gone")
    assert rep.status == "succeeded", rep.failure_reasons
    spells = next(t for t in rep.tables if t.table == "inpatient_spell")
    assert spells.rows_loaded > 0
    cascade = " CASCADE" if make_sink.kind == "postgresql" else ""  # its FK
    sink.execute(f"DROP TABLE {sink.qualified('inpatient_spell')}{cascade}")
    again = run_contract(contract, sqlite_source(path), sink, "run-gone")
    assert again.status == "failed"
    reasons = again.failure_reasons
    assert any(r.startswith("inpatient_spell: ledger: source") for r in reasons)
    # Its children's references now point at nothing: every one is an orphan.
    assert any(
        r.startswith("ward_stay.") and r.endswith("rows without inpatient_spell")
        for r in reasons
    ), reasons
    gone = next(t for t in again.tables if t.table == "inpatient_spell")
    assert gone.rows_loaded == 0 and not gone.ledger_balanced


def test_postgres_resolves_lookups_by_a_compact_rewrite(
    legacy_pas: Any, pg_schema: str, tmp_path: Path
) -> None:
    """On PostgreSQL a lookup rewrites the staged table instead of UPDATing
    every row: the published child tables hold no dead lookup column (a
    dropped column would stay in every row of an UPDATEd table), and the
    rows are the same as the SQLite sink's, which resolves by UPDATE."""
    from connectors.sinks.postgresql import PostgresSink
    from connectors.sinks.sqlite import SqliteSink

    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=400)
    pg = PostgresSink(PG_DSN, schema=pg_schema)
    rep = run_contract(contract, sqlite_source(path), pg, "run-lk")
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    children = ("inpatient_spell", "ward_stay", "outpatient_appointment")
    for table in children:
        attrs = pg.query(
            "SELECT attname, attisdropped FROM pg_attribute WHERE attrelid = "
            "to_regclass(%s) AND attnum > 0",
            (pg.qualified(table),),
        )
        assert attrs, table
        assert not [a for a, dropped in attrs if dropped], table
        assert not [a for a, _ in attrs if a.startswith("_lk_")], table
    # every child row found its parent (nothing lost or NULLed by the join)
    assert {c.orphans for c in rep.fk_chains} == {0}
    nulls = pg.query(
        f"SELECT COUNT(*) FROM {pg.qualified('ward_stay')} WHERE spell_number IS NULL"
    )
    assert nulls[0][0] == 0
    clean = SqliteSink(tmp_path / "by-update.sqlite3")
    ref = run_contract(contract, sqlite_source(path), clean, "run-lk-ref")
    assert_ledger(ref)
    assert snapshot(pg, contract) == snapshot(clean, contract)
    pg.close()


def test_postgres_lookup_refuses_a_parent_match_that_is_not_unique(
    pg_schema: str,
) -> None:
    """A lookup whose match column repeats in the parent would multiply the
    child's rows in a join: the phase fails, naming it, and rolls back."""
    from connectors.sinks.postgresql import PostgresSink
    from migration.engine.errors import TerminalError
    from migration.engine.ports import StagedStep

    sink = PostgresSink(PG_DSN, schema=pg_schema)
    parent = sink.qualified(sink.staged_name("run-dup", "patient"))
    child = sink.qualified(sink.staged_name("run-dup", "inpatient_spell"))
    sink.execute(f"CREATE TABLE {parent} (_source_key TEXT, pas_number TEXT)")
    sink.execute(f"INSERT INTO {parent} VALUES ('1', 'P1'), ('1', 'P9'), ('2', 'P2')")
    sink.execute(
        f"CREATE TABLE {child} (spell_number TEXT, patient_pas_number TEXT, "
        "_source_key TEXT, _lk_patient_pas_number TEXT)"
    )
    sink.execute(
        f"INSERT INTO {child} VALUES ('S1', NULL, 'a', '1'), ('S2', NULL, 'b', '2')"
    )
    step = StagedStep(
        kind="resolve",
        rule_id="ENG-RESOLVE-patient_pas_number",
        columns=("patient_pas_number", "_lk_patient_pas_number"),
        ref_table="patient",
        ref_columns=("_source_key", "pas_number"),
    )
    with pytest.raises(
        TerminalError, match="match column '_source_key' must be unique"
    ):
        sink.apply_staged_steps("run-dup", "inpatient_spell", [step])
    # rolled back: the staged table is as it was, lookup column and all
    rows = sink.query(
        f"SELECT spell_number, patient_pas_number, _lk_patient_pas_number "
        f"FROM {child} ORDER BY 1"
    )
    assert rows == [("S1", None, "1"), ("S2", None, "2")]
    assert sink.marker("run-dup", "xt:inpatient_spell") is None
    # with a unique parent the same step resolves, and the lookup column goes
    sink.execute(f"DELETE FROM {parent} WHERE pas_number = 'P9'")
    sink.apply_staged_steps("run-dup", "inpatient_spell", [step])
    assert sink.query(
        f"SELECT spell_number, patient_pas_number FROM {child} ORDER BY 1"
    ) == [("S1", "P1"), ("S2", "P2")]
    sink.close()


def test_postgres_unlogged_staging_publishes_logged_tables(
    legacy_pas: Any, pg_schema: str
) -> None:
    """``unlogged=True``: staging (lookup rewrites included) is UNLOGGED, the
    foreign keys between staged tables hold, and publish makes every table
    LOGGED again, with the same ledger as a logged run."""
    from connectors.sinks.postgresql import PostgresSink

    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=400)
    sink = PostgresSink(PG_DSN, schema=pg_schema, unlogged=True)
    rep = run_contract(contract, sqlite_source(path), sink, "run-ul")
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    kinds = dict(
        sink.query(
            "SELECT c.relname, c.relpersistence FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
            (pg_schema,),
        )
    )
    published = [t.name for t in contract.target.tables]
    assert {t: kinds[t] for t in published} == {t: "p" for t in published}
    assert {c.orphans for c in rep.fk_chains} == {0}
    sink.close()


def _as_an_earlier_version_left_it(sink: Any, run_id: str) -> None:
    """Rewrite a run's stored sums as the md5-era engine stored them: no
    scheme name, and sums of another hash."""
    with sink.transaction():
        for run, table, rng, extra in sink.query(
            sink.q(
                "SELECT run_id, table_name, range_id, extra FROM "
                f"{sink.qualified('_pas_checkpoints')} WHERE run_id = ?"
            ),
            (run_id,),
        ):
            state = json.loads(extra)
            state.pop("checksum_scheme", None)
            state["checksums"] = {
                c: [n, s + 1] for c, (n, s) in state["checksums"].items()
            }
            sink.execute(
                sink.q(
                    f"UPDATE {sink.qualified('_pas_checkpoints')} SET extra = ? "
                    "WHERE run_id = ? AND table_name = ? AND range_id = ?"
                ),
                (json.dumps(state), run, table, rng),
            )


def test_a_load_resumed_across_the_checksum_change_redoes_its_table(
    legacy_pas: Any, make_sink: Any
) -> None:
    """A run killed mid-table by the md5-era engine, resumed by this one: the
    table's sums so far cannot be carried on, so the table is staged again
    from its first row -- nothing lost or duplicated, and the checksums match."""
    path = legacy_pas(300, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=4)
    first = contract.table_order()[0]
    sink = make_sink()
    with pytest.raises(TransientError):
        run_contract(contract, CrashAfter(sqlite_source(path), 2), sink, "run-u")
    cp = sink.checkpoint("run-u", first)
    assert cp is not None and cp.rows_read > 0 and not cp.extra.get("done")
    _as_an_earlier_version_left_it(sink, "run-u")
    rep = run_contract(contract, sqlite_source(path), make_sink(), "run-u")
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    t = rep.table(first)
    assert t.rows_read == t.source_rows
    assert [c.name for c in t.columns if c.checksum_source]
    assert all(c.checksum_match for c in t.columns if c.checksum_source)
    assert rep.to_dict()["checksum_scheme"] == "hashtext-32"
    keys = [r[0] for r in target_rows(sink, first, ["_source_key"])]
    assert len(keys) == len(set(keys)) == t.rows_loaded


def test_sums_of_an_earlier_checksum_scheme_are_not_compared(
    legacy_pas: Any, make_sink: Any
) -> None:
    """A run whose load finished under the md5-era engine and whose
    reconciliation runs under this one: its sums are not compared with the
    target's (they would differ for the wrong reason) -- the run fails and
    says why, naming the table and what to do."""
    path = legacy_pas(400, 3, 0.0) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=300)
    sink = make_sink()
    ok = run_contract(contract, sqlite_source(path), sink, "run-v")
    assert ok.status == "succeeded", ok.failure_reasons
    # The same run's sums as the earlier version stored them, then the
    # reconciliation again (a finished run re-run reconciles, moves nothing).
    _as_an_earlier_version_left_it(sink, "run-v")
    rep = run_contract(contract, sqlite_source(path), make_sink(), "run-v")
    assert rep.status == "failed"
    why = [r for r in rep.failure_reasons if "earlier version (md5-32)" in r]
    assert {r.split(":")[0] for r in why} == {t.name for t in contract.target.tables}
    assert not any(
        c.checksum_match for t in rep.tables for c in t.columns if c.checksum_source
    )


class PhaseClock(PostgresSink):
    """The PostgreSQL sink, noting when each table's cross-table phase ran
    (its first call: later ones return the stored result) -- and slowed a
    little, so two phases started together are sure to overlap."""

    def __init__(self, *args: Any, fail: str | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.spans: dict[str, tuple[float, float]] = {}
        self.fail = fail

    def apply_staged_steps(self, run_id: str, table: str, steps: Any) -> Any:
        started = time.monotonic()
        if table == self.fail:
            self.fail = None
            raise TerminalError(f"{table}: the phase failed")
        first = table not in self.spans
        out = super().apply_staged_steps(run_id, table, steps)
        if first:
            time.sleep(0.15)
            self.spans[table] = (started, time.monotonic())
        return out


def test_cross_table_phases_overlap_only_where_they_share_no_table(
    legacy_pas: Any, pg_schema: str, tmp_path: Path
) -> None:
    """Two connections run the phases of tables that share nothing side by
    side (spells and appointments both hang off patients only); a table's
    phase never starts before the phase of any earlier table it reads or
    changes has finished; and the published rows and rejects are exactly a
    one-connection run's."""
    from connectors.sinks.sqlite import SqliteSink
    from migration.engine.runner import _tables_touched

    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=400)
    sink = PhaseClock(PG_DSN, schema=pg_schema)
    rep = run_contract(contract, sqlite_source(path), sink, "run-xt")
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    order = contract.table_order()
    assert set(sink.spans) == set(order)
    from migration.engine.pipeline import build_plan, staged_steps

    plans = {
        t: build_plan(contract, t, dt.date.fromisoformat(rep.as_of)) for t in order
    }
    touched = {t: _tables_touched(t, staged_steps(contract, plans[t])) for t in order}
    assert "patient" in touched["inpatient_spell"]
    assert "inpatient_spell" in touched["ward_stay"]
    overlapped = set()
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            (a0, a1), (b0, b1) = sink.spans[a], sink.spans[b]
            if a in touched[b] or b in touched[a]:
                assert b0 >= a1, f"{b}'s phase started before {a}'s finished"
            elif a0 < b1 and b0 < a1:
                overlapped.add((a, b))
    assert ("inpatient_spell", "outpatient_appointment") in overlapped
    # The same rows and rejects as the one-connection engine gives.
    clean = SqliteSink(tmp_path / "serial.sqlite3")
    ref = run_contract(contract, sqlite_source(path), clean, "run-serial")
    assert snapshot(sink, contract) == snapshot(clean, contract)
    assert sorted(sink.reject_counts("run-xt")) == sorted(
        clean.reject_counts("run-serial")
    )
    assert [t.rows_rejected for t in rep.tables] == [
        t.rows_rejected for t in ref.tables
    ]


def test_a_failing_cross_table_phase_lets_the_others_finish_then_resumes(
    legacy_pas: Any, pg_schema: str, tmp_path: Path
) -> None:
    """The appointments' phase fails while the spells' runs beside it: the
    spells' phase still commits, the error is raised, nothing is published;
    the resumed run skips what is done and ends as a clean run does."""
    from connectors.sinks.sqlite import SqliteSink

    path = legacy_pas(1500, 7, 0.03) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=400)
    sink = PhaseClock(PG_DSN, schema=pg_schema, fail="outpatient_appointment")
    with pytest.raises(TerminalError, match="the phase failed"):
        run_contract(contract, sqlite_source(path), sink, "run-xf")
    assert "inpatient_spell" in sink.spans
    assert "outpatient_appointment" not in sink.spans
    assert not sink.is_published("run-xf")
    again = PhaseClock(PG_DSN, schema=pg_schema)
    rep = run_contract(contract, sqlite_source(path), again, "run-xf")
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    clean = SqliteSink(tmp_path / "clean.sqlite3")
    run_contract(contract, sqlite_source(path), clean, "run-clean")
    assert snapshot(again, contract) == snapshot(clean, contract)
    assert sorted(again.reject_counts("run-xf")) == sorted(
        clean.reject_counts("run-clean")
    )


class OneConnection(PostgresSink):
    """The PostgreSQL sink without a second connection: every reconciliation
    query on its one connection, one after another."""

    clone = None  # type: ignore[assignment]


def test_reconciliation_catches_a_published_value_changed_after_the_run(
    legacy_pas: Any, make_sink: Any
) -> None:
    """The target's column sums are taken in the reconciliation's one scan of
    each published table: a family name changed in the target after the run
    fails the next reconciliation on exactly that column's checksum, with
    the ledger still balanced and every other checksum matching."""
    path = legacy_pas(400, 4, 0.0) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=300)
    sink = make_sink()
    ok = run_contract(contract, sqlite_source(path), sink, "run-tamper")
    assert ok.status == "succeeded", ok.failure_reasons
    patient = sink.qualified("patient")
    sink.execute(
        f"UPDATE {patient} SET family_name = family_name || 'x' "
        f"WHERE pas_number = (SELECT MIN(pas_number) FROM {patient})"
    )
    rep = run_contract(contract, sqlite_source(path), make_sink(), "run-tamper")
    assert rep.status == "failed"
    assert rep.ledger_balanced
    assert [r.split(":")[0] for r in rep.failure_reasons] == ["patient.family_name"]
    assert "checksum source" in rep.failure_reasons[0]
    bad = [
        (t.table, c.name)
        for t in rep.tables
        for c in t.columns
        if c.checksum_source and not c.checksum_match
    ]
    assert bad == [("patient", "family_name")]
    assert {c.orphans for c in rep.fk_chains} == {0}


def test_reconciliation_on_two_connections_reports_as_on_one(
    legacy_pas: Any, pg_schema: str
) -> None:
    """On PostgreSQL the FK chains' counts run on a second connection beside
    the profile scans: the report -- chains in order, their counts, the
    failure reasons in order -- is the one a single connection gives, here
    with orphans in two child tables (their parent table dropped)."""
    path = legacy_pas(500, 8, 0.02) / "legacy_pas.sqlite3"
    contract = load_default_contract(chunk_size=200)
    sink = PostgresSink(PG_DSN, schema=pg_schema)
    ok = run_contract(contract, sqlite_source(path), sink, "run-two")
    assert ok.status == "succeeded", ok.failure_reasons
    sink.execute(f"DROP TABLE {sink.qualified('patient')} CASCADE")
    two = run_contract(contract, sqlite_source(path), sink, "run-two")
    one = run_contract(
        contract,
        sqlite_source(path),
        OneConnection(PG_DSN, schema=pg_schema),
        "run-two",
    )
    assert two.status == one.status == "failed"
    assert two.to_dict()["fk_chains"] == one.to_dict()["fk_chains"]
    assert two.failure_reasons == one.failure_reasons
    orphaned = {(c.table, c.column) for c in two.fk_chains if c.orphans}
    assert orphaned == {
        ("inpatient_spell", "patient_pas_number"),
        ("outpatient_appointment", "patient_pas_number"),
    }
    assert all(
        c.orphans == c.rows > 0
        for c in two.fk_chains
        if (c.table, c.column) in orphaned
    )
    sink.close()
