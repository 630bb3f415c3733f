"""Gates: statuses, thresholds, waivers, sign-offs, re-evaluation from storage."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from engine_kit import sqlite_source

from connectors.sinks.sqlite import SqliteSink
from migration.engine.defaults import load_default_contract
from migration.engine.errors import ContractError
from migration.engine.gates import (
    FAIL,
    NOT_APPLICABLE,
    PASS,
    PASS_WITH_VIOLATIONS,
    GateProfile,
    Measurement,
    describe_measure,
    describe_threshold,
    evaluate_gate,
    load_profiles,
)
from migration.engine.runner import run_contract

NOW = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
ROLES = ["migration_lead", "clinical_safety_officer", "ig_lead", "data_steward"]


@pytest.fixture(scope="module")
def report(legacy_pas: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    src = sqlite_source(legacy_pas(1500, 7, 0.02) / "legacy_pas.sqlite3")
    sink = SqliteSink(tmp_path_factory.mktemp("gate") / "t.sqlite3")
    rep = run_contract(load_default_contract(), src, sink, "gate-run")
    assert rep.status == "succeeded"
    return rep


def signoffs(
    rep: Any, roles: list[str], sha: str | None = None
) -> list[dict[str, str]]:
    return [
        {"role": r, "signer": f"{r}@trust", "run_id": rep.run_id,
         "contract_sha256": sha or rep.contract_sha256}
        for r in roles
    ]  # fmt: skip


def test_default_profiles_pass_pre_production_and_fail_cutover(report: Any) -> None:
    pre = evaluate_gate(report, "pre_production", now=NOW)
    assert pre.status == PASS, pre.reasons
    assert any(r.status == PASS_WITH_VIOLATIONS for r in pre.results)
    cut = evaluate_gate(report, "cutover_ready", now=NOW)
    assert cut.status == FAIL
    assert cut.missing_signoffs == ROLES
    assert "missing sign-off: clinical_safety_officer" in cut.reasons
    dev = evaluate_gate(report, "development", now=NOW)
    assert dev.passed


def test_results_keep_numerator_denominator_and_kahn_category(report: Any) -> None:
    gate = evaluate_gate(report, "pre_production", now=NOW)
    rr = next(
        r for r in gate.results if r.check_id == "reject_rate" and r.scope == "patient"
    )
    t = report.table("patient")
    assert (rr.numerator, rr.denominator) == (t.rows_rejected, t.rows_read)
    assert (rr.category, rr.severity) == ("conformance", "convention")
    fk = [r for r in gate.results if r.check_id == "fk_completeness"]
    assert fk and all(r.status == PASS and r.category == "completeness" for r in fk)


def test_gate_is_re_evaluable_from_stored_results(report: Any) -> None:
    stored = json.loads(json.dumps(report.to_dict()))
    a = evaluate_gate(report, "pre_production", now=NOW)
    b = evaluate_gate(stored, "pre_production", now=NOW)
    assert [(r.check_id, r.scope, r.status) for r in a.results] == [
        (r.check_id, r.scope, r.status) for r in b.results
    ]
    # a stored GateResult re-evaluates under another profile without the run
    c = evaluate_gate(json.loads(json.dumps(a.to_dict())), "cutover_ready", now=NOW)
    assert c.status == FAIL and c.run_id == report.run_id


def test_signoffs_bound_to_run_and_contract(report: Any) -> None:
    tight = {
        name: GateProfile(p.name, p.version, {k: {"max_pct": 100} for k in p.thresholds},
                          p.required_signoffs, p.allow_fatal_waivers)
        for name, p in load_profiles().items()
    }  # fmt: skip
    ok = evaluate_gate(report, "cutover_ready", signoffs=signoffs(report, ROLES),
                       now=NOW, profiles=tight)  # fmt: skip
    assert ok.status == PASS, ok.reasons
    stale = signoffs(report, ROLES[:3]) + signoffs(report, ROLES[3:], sha="0" * 64)
    bad = evaluate_gate(
        report, "cutover_ready", signoffs=stale, now=NOW, profiles=tight
    )
    assert bad.status == FAIL
    assert bad.missing_signoffs == ["data_steward"]
    assert bad.signoffs_void and bad.signoffs_void[0]["role"] == "data_steward"


def _m(check: str, num: int, den: int) -> list[Measurement]:
    return [Measurement(check, "patient", num, den)]


def test_statuses_and_thresholds() -> None:
    prof = GateProfile(
        "p", "1", {"reject_rate": {"max_pct": 5}, "ledger_balance": {"max_count": 0}}
    )
    assert evaluate_gate(_m("reject_rate", 0, 100), prof).results[0].status == PASS
    assert (
        evaluate_gate(_m("reject_rate", 5, 100), prof).results[0].status
        == PASS_WITH_VIOLATIONS
    )
    r = evaluate_gate(_m("reject_rate", 6, 100), prof)
    assert r.results[0].status == FAIL and r.status == FAIL
    assert evaluate_gate(_m("ledger_balance", 1, 100), prof).status == FAIL
    na = evaluate_gate(_m("nhs_number_coverage", 50, 100), prof)
    assert na.results[0].status == NOT_APPLICABLE and na.status == PASS
    err = evaluate_gate(_m("reject_rate", 1, 0), prof)
    assert err.results[0].status == "ERROR" and err.status == FAIL


def test_characterisation_failures_do_not_block() -> None:
    prof = GateProfile("p", "1", {"possible_duplicates": {"max_pct": 0.1}})
    g = evaluate_gate(_m("possible_duplicates", 50, 100), prof)
    assert g.results[0].status == FAIL and g.status == PASS


def test_waivers() -> None:
    prof = GateProfile("p", "1", {"reject_rate": {"max_pct": 1}, "ledger_balance": {"max_count": 0}},
                       allow_fatal_waivers=False)  # fmt: skip
    w = {"check_id": "reject_rate", "reason": "known legacy debt", "approver": "lead",
         "expires": "2026-12-31"}  # fmt: skip
    g = evaluate_gate(_m("reject_rate", 5, 100), prof, [w], now=NOW)
    assert g.status == PASS and g.results[0].waived_by is not None
    expired = {**w, "expires": "2026-10-31"}
    g = evaluate_gate(_m("reject_rate", 5, 100), prof, [expired], now=NOW)
    assert g.status == FAIL and "expired" in g.waivers_refused[0]["refused"]
    anonymous = {**w, "approver": " "}
    assert (
        evaluate_gate(_m("reject_rate", 5, 100), prof, [anonymous], now=NOW).status
        == FAIL
    )
    fatal = {**w, "check_id": "ledger_balance"}
    g = evaluate_gate(_m("ledger_balance", 1, 100), prof, [fatal], now=NOW)
    assert g.status == FAIL and "cannot be waived" in g.waivers_refused[0]["refused"]
    scoped = {**w, "scope": "ward_stay"}
    assert (
        evaluate_gate(_m("reject_rate", 5, 100), prof, [scoped], now=NOW).status == FAIL
    )


def test_fatal_waiver_refused_at_cutover_ready(report: Any) -> None:
    broken = report.to_dict()
    broken["tables"][3]["ledger_balanced"] = False
    broken["tables"][3]["ledger_difference"] = 2
    w = {
        "check_id": "ledger_balance",
        "reason": "x",
        "approver": "y",
        "expires": "2027-01-01",
    }
    cut = evaluate_gate(broken, "cutover_ready", [w], now=NOW)
    assert cut.waivers_refused and not cut.waivers_applied
    assert any(r.startswith("ledger_balance [patient] FAIL") for r in cut.reasons)
    pre = evaluate_gate(broken, "pre_production", [w], now=NOW)
    assert pre.waivers_applied  # pre_production allows it (documented risk)


def test_unknown_profile() -> None:
    with pytest.raises(ContractError, match="unknown gate profile"):
        evaluate_gate([], "yolo")


def test_thresholds_and_measurements_read_as_a_person_would() -> None:
    assert describe_threshold({"max_count": 0}) == "none allowed"
    assert describe_threshold({"max_count": 1200}) == "at most 1,200"
    assert describe_threshold({"max_pct": 1}) == "at most 1 %"
    assert describe_threshold({"max_pct": 0.5}) == "at most 0.5 %"
    assert describe_threshold(None) == "not applicable"
    assert describe_measure(16, 1289) == "16 of 1,289 (1.24 %)"
    assert describe_measure(None, None) == "not measured"
    assert describe_measure(0, 0) == "0 of 0"
    # the reason a blocking check gives says what was measured and what is allowed
    failed = evaluate_gate(_m("reject_rate", 16, 1289), "cutover_ready", now=NOW)
    assert "reject_rate [patient] FAIL: 16 of 1,289 (1.24 %); at most 1 %" in (
        failed.reasons
    )
