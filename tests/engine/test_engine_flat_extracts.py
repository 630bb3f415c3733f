"""The default contract from flat extracts in any row order, as from the database.

The generator's CSV extract (its reference tables are not in key order) and a
copy with every file's rows shuffled run through the real csv kind; each
publishes the same rows, rejects and ledger as the SQLite extract of the same
seed, and a run killed part-way through a shuffled extract resumes from the
same landed copy without losing or duplicating a row.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from engine_kit import CrashAfter, assert_ledger, sqlite_source, target_rows
from synthea_kit import SYNTHEA, synthea_contract

from connectors.kinds import get_kind
from connectors.sinks.sqlite import SqliteSink
from migration.engine.contract import contract_from_dict
from migration.engine.defaults import load_default_contract
from migration.engine.errors import TransientError
from migration.engine.runner import run_contract


def _published(sink: Any, contract: Any) -> dict[str, Any]:
    out = {}
    for t in contract.target.tables:
        rows = target_rows(sink, t.name, [*t.field_names, "_source_key"])
        out[t.name] = [tuple(None if v is None else str(v) for v in r) for r in rows]
    return out


def _rejects(sink: Any, run_id: str) -> Counter[tuple[Any, ...]]:
    return Counter(
        (r["target_table"], r["source_key"], r["rule_id"], r["reason"])
        for r in sink.rejects(run_id)
    )


@pytest.fixture(scope="module")
def extracts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from migration.legacypas.core import generate

    base = tmp_path_factory.mktemp("flat")
    generate(400, 11, str(base / "csv"), fmt="csv", defect_rate=0.05)
    generate(400, 11, str(base / "db"), fmt="sqlite", defect_rate=0.05)
    shuffled = base / "shuffled"
    shuffled.mkdir()
    rng = random.Random(11)
    for f in sorted((base / "csv").glob("*.csv")):
        head, *body = f.read_text(encoding="utf-8").splitlines(keepends=True)
        rng.shuffle(body)
        (shuffled / f.name).write_text(head + "".join(body), encoding="utf-8")
    return {"csv": base / "csv", "shuffled": shuffled, "db": base / "db"}


def test_flat_extracts_in_any_order_publish_what_the_database_does(
    extracts: dict[str, Path], tmp_path: Path
) -> None:
    contract = load_default_contract(chunk_size=150)
    ref_sink = SqliteSink(tmp_path / "ref.sqlite3")
    ref = run_contract(
        contract, sqlite_source(extracts["db"] / "legacy_pas.sqlite3"), ref_sink, "r"
    )
    assert ref.status == "succeeded", ref.failure_reasons
    want = _published(ref_sink, contract)
    want_rejects = _rejects(ref_sink, "r")
    assert sum(want_rejects.values()) > 0
    for name in ("csv", "shuffled"):
        src = get_kind("csv").open(
            {"path": str(extracts[name]), "landing_dir": str(tmp_path / "land")},
            name=name,
        )
        sink = SqliteSink(tmp_path / f"{name}.sqlite3")
        rep = run_contract(contract, src, sink, "r")
        assert rep.status == "succeeded", (name, rep.failure_reasons)
        assert_ledger(rep)
        assert [
            (t.table, t.source_rows, t.rows_loaded, t.rows_rejected) for t in rep.tables
        ] == [
            (t.table, t.source_rows, t.rows_loaded, t.rows_rejected) for t in ref.tables
        ], name
        assert _published(sink, contract) == want, name
        assert _rejects(sink, "r") == want_rejects, name


def test_a_killed_run_over_a_shuffled_extract_resumes_exactly(
    extracts: dict[str, Path], tmp_path: Path
) -> None:
    contract = load_default_contract(chunk_size=100)
    cfg = {"path": str(extracts["shuffled"]), "landing_dir": str(tmp_path / "land")}
    clean = SqliteSink(tmp_path / "clean.sqlite3")
    ref = run_contract(contract, get_kind("csv").open(cfg, name="a"), clean, "r")
    assert ref.status == "succeeded", ref.failure_reasons
    landed = sorted(p.name for p in (tmp_path / "land").iterdir())

    target = tmp_path / "target.sqlite3"
    for n in (5, 13):  # die part-way (patients, then later tables), then finish
        with pytest.raises(TransientError, match="source read of"):
            run_contract(
                contract,
                CrashAfter(get_kind("csv").open(cfg, name="b"), n),
                SqliteSink(target),
                "r",
            )
    sink = SqliteSink(target)
    rep = run_contract(contract, get_kind("csv").open(cfg, name="c"), sink, "r")
    assert rep.status == "succeeded", rep.failure_reasons
    assert rep.resumed
    assert_ledger(rep)
    assert _published(sink, contract) == _published(clean, contract)
    # The resumes read the copies landed by the first run: none landed again.
    assert sorted(p.name for p in (tmp_path / "land").iterdir()) == landed


def test_a_source_we_never_saw_runs_synthea_patients(tmp_path: Path) -> None:
    """Synthea's patients.csv (rows in no key order, UUID keys) through the
    mapping a DM engineer writes for it: every row accounted for."""
    if not (SYNTHEA / "patients.csv").exists():
        pytest.fail(f"the Synthea extract is missing at {SYNTHEA}")
    data = synthea_contract(("patient",))
    data["chunk_size"] = 10  # several chunks over 27 rows
    assert data["rules"]["packs"] == ["pmi"]
    contract = contract_from_dict(data)
    src = get_kind("csv").open(
        {"path": str(SYNTHEA), "landing_dir": str(tmp_path / "land")}, name="synthea"
    )
    sink = SqliteSink(tmp_path / "target.sqlite3")
    rep = run_contract(contract, src, sink, "syn-1")
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    raw = pd.read_csv(SYNTHEA / "patients.csv", dtype=str, keep_default_na=False)
    pat = rep.table("patient")
    assert pat.source_rows == len(raw) and pat.rows_loaded + pat.rows_rejected == len(
        raw
    )
    got = {
        r[0]: r[1:]
        for r in sink.query(
            f"SELECT pas_number, date_of_birth, gender, nhs_number_status "
            f"FROM {sink.qualified('patient')}"
        )
    }
    rejected = {r["source_key"] for r in sink.rejects("syn-1")}
    for _, row in raw.iterrows():
        if row["Id"] in rejected:
            continue
        dob, gender, status = got[row["Id"].upper()]
        assert str(dob)[:10] == row["BIRTHDATE"]
        assert gender == {"M": "1", "F": "2"}[row["GENDER"]]
        assert status == "03"
    assert len(got) + len(rejected) == len(raw)
