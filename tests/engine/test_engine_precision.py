"""Rejects vs the generator's manifest: 100% precision and recall, exact reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from engine_kit import assert_ledger, sqlite_source

from migration.engine.defaults import load_default_contract
from migration.engine.runner import run_contract


@pytest.mark.parametrize(
    ("patients", "seed", "rate"),
    [(1500, 1, 0.02), (1500, 2, 0.05), (2500, 3, 0.1), (800, 4, 0.2)],
)
def test_rejects_and_flags_match_the_manifest(
    legacy_pas: Any, tmp_path: Path, patients: int, seed: int, rate: float
) -> None:
    from connectors.sinks.sqlite import SqliteSink

    out = legacy_pas(patients, seed, rate)
    manifest = json.loads((out / "manifest.json").read_text())
    sink = SqliteSink(tmp_path / "t.sqlite3")
    rep = run_contract(
        load_default_contract(), sqlite_source(out / "legacy_pas.sqlite3"), sink, "p"
    )
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    check(manifest, sink.rejects("p", limit=10**7), rep)


def test_precision_on_postgresql(legacy_pas: Any, make_sink: Any) -> None:
    out = legacy_pas(1500, 2, 0.05)
    manifest = json.loads((out / "manifest.json").read_text())
    sink = make_sink()
    rep = run_contract(
        load_default_contract(), sqlite_source(out / "legacy_pas.sqlite3"), sink, "p"
    )
    assert_ledger(rep)
    check(manifest, sink.rejects("p", limit=10**7), rep)


def check(manifest: dict[str, Any], records: list[dict[str, Any]], rep: Any) -> None:
    expected = {
        (d["table"], str(d["key"])): d
        for d in manifest["defects"]
        if d["expected_action"] == "reject"
    }
    expected_flags = {
        (d["table"], str(d["key"]), d["expected_reason"])
        for d in manifest["defects"]
        if d["expected_action"] == "flag"
    }
    got = {
        (r["source_table"], r["source_key"]): r
        for r in records
        if r["action"] == "reject"
    }
    assert expected, "the generator injected no defect"
    false_pos = sorted(set(got) - set(expected))
    false_neg = sorted(set(expected) - set(got))
    tp = len(set(got) & set(expected))
    precision = tp / len(got) if got else 1.0
    recall = tp / len(expected)
    assert (precision, recall) == (1.0, 1.0), (
        [(k, got[k]["reason"]) for k in false_pos[:10]],
        [(k, expected[k]["expected_reason"]) for k in false_neg[:10]],
    )
    wrong = [
        (k, got[k]["reason"], e["expected_reason"])
        for k, e in expected.items()
        if got[k]["reason"] != e["expected_reason"]
    ]
    assert not wrong, wrong[:10]
    cols = [
        (k, got[k]["column_name"], e["column"])
        for k, e in expected.items()
        if got[k]["column_name"] != e["column"]
    ]
    assert not cols, cols[:10]
    flagged = {("PA_PatMas", f["source_key"], f["reason"]) for f in rep.flagged}
    assert flagged == expected_flags
