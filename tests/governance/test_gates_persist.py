"""Gate evaluation from stored results, persisted as rows; waivers and their refusals."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone

from governance.audit import Refused
from governance.gates import (
    gate_evaluate,
    waiver_approve,
    waiver_request,
    waiver_revoke,
)
from governance.models import AuditEvent, CheckResult, GateEvaluation, Waiver
from governance.signoffs import signoff_record
from migration.engine import gates as engine_gates
from migration.models import Run


def _later(days: int = 30) -> dt.datetime:
    return timezone.now() + dt.timedelta(days=days)


def test_development_gate_passes_and_stores_every_check(
    run: Any, dm_engineer: Any, last_event: Callable[[str], Any]
) -> None:
    evaluation = gate_evaluate(actor=dm_engineer, run=run, profile="development")
    assert evaluation.status == "PASS"
    assert evaluation.profile_version == "1.1"
    assert evaluation.evaluated_by == dm_engineer
    run.refresh_from_db()
    assert run.gate_outcome == "passed"
    reject = CheckResult.objects.get(
        evaluation=evaluation, check_id="reject_rate", target_table="patient"
    )
    assert (reject.numerator, reject.denominator) == (8, 1000)
    assert reject.threshold == {"max_pct": 100}
    assert reject.status == "PASS_WITH_VIOLATIONS"
    assert (reject.category, reject.severity) == ("conformance", "convention")
    fk = CheckResult.objects.get(evaluation=evaluation, check_id="fk_completeness")
    assert (fk.numerator, fk.denominator, fk.status) == (0, 497, "PASS")
    assert fk.severity == "fatal"
    # The rows are exactly the engine's result on the stored report.
    expected = engine_gates.evaluate_gate(run.report, "development")
    assert CheckResult.objects.filter(evaluation=evaluation).count() == len(
        expected.results
    )
    event = last_event("governance.gate.evaluated")
    assert event.data["evaluation"] == evaluation.pk
    assert event.data["status"] == "PASS"


def test_gate_reevaluates_from_stored_results_without_a_report(
    make_run: Callable[..., Any], dm_engineer: Any
) -> None:
    run = make_run()
    # Only the per-table ledger rows remain: the gate still sees every table.
    Run.objects.filter(pk=run.pk).update(report={})
    run.refresh_from_db()
    evaluation = gate_evaluate(actor=dm_engineer, run=run, profile="pre_production")
    scopes = set(
        evaluation.checks.filter(check_id="reject_rate").values_list(
            "target_table", flat=True
        )
    )
    assert scopes == {"patient", "inpatient_spell"}


def test_cutover_fails_without_signoffs_and_passes_with_them(
    run: Any,
    migration_lead: Any,
    steward: Any,
    ig_lead: Any,
    safety_officer: Any,
) -> None:
    first = gate_evaluate(actor=migration_lead, run=run, profile="cutover_ready")
    assert first.status == "FAIL"
    assert "missing sign-off: migration_lead" in first.reasons
    run.refresh_from_db()
    assert run.gate_outcome == "gate_failed"
    for person, role in (
        (migration_lead, "migration_lead"),
        (steward, "data_steward"),
        (ig_lead, "ig_lead"),
        (safety_officer, "clinical_safety_officer"),
    ):
        signoff_record(
            actor=person, run=run, role=role, decision="approve", comment="ok"
        )
    second = gate_evaluate(actor=migration_lead, run=run, profile="cutover_ready")
    assert second.status == "PASS", second.reasons
    run.refresh_from_db()
    assert run.gate_outcome == "passed"
    assert GateEvaluation.objects.filter(run=run).count() == 2


def test_a_failing_convention_check_passes_once_waived(
    make_run: Callable[..., Any], dm_engineer: Any, migration_lead: Any
) -> None:
    run = make_run(patient_rejects=30)  # 3% > 1% at cutover_ready
    before = gate_evaluate(actor=dm_engineer, run=run, profile="cutover_ready")
    failing = before.checks.get(check_id="reject_rate", target_table="patient")
    assert failing.status == "FAIL"
    waiver = waiver_request(
        actor=dm_engineer, project=run.project, check_id="reject_rate",
        profile="cutover_ready", reason="legacy test patients", expires_at=_later(),
        target_table="patient",
    )  # fmt: skip
    waiver_approve(actor=migration_lead, waiver=waiver)
    after = gate_evaluate(actor=dm_engineer, run=run, profile="cutover_ready")
    waived = after.checks.get(check_id="reject_rate", target_table="patient")
    assert waived.status == "FAIL"
    assert waived.waiver == waiver
    assert not any("reject_rate" in r for r in after.reasons)


def test_a_fatal_failure_fails_the_gate(
    make_run: Callable[..., Any], dm_engineer: Any
) -> None:
    run = make_run(orphans=4)
    evaluation = gate_evaluate(actor=dm_engineer, run=run, profile="development")
    assert evaluation.status == "FAIL"
    fk = evaluation.checks.get(check_id="fk_completeness")
    assert (fk.numerator, fk.denominator, fk.status) == (4, 497, "FAIL")


@pytest.mark.parametrize("who", ["steward", "viewer", "auditor", "other_steward"])
def test_evaluate_refused_without_evaluate_gate(
    run: Any, who: str, request: pytest.FixtureRequest
) -> None:
    person = request.getfixturevalue(who)
    with pytest.raises(Refused) as exc:
        gate_evaluate(actor=person, run=run, profile="development")
    assert exc.value.code == "permission"
    assert GateEvaluation.objects.count() == 0
    run.refresh_from_db()
    assert run.gate_outcome == ""
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.action == "governance.gate.refused"
    assert event.actor_id == person.pk


def test_evaluate_refused_on_a_running_run_and_unknown_profile(
    make_run: Callable[..., Any], dm_engineer: Any
) -> None:
    running = make_run(state="running")
    with pytest.raises(Refused) as exc:
        gate_evaluate(actor=dm_engineer, run=running, profile="development")
    assert exc.value.code == "run_not_finished"
    with pytest.raises(Refused) as exc:
        gate_evaluate(actor=dm_engineer, run=make_run(), profile="golive")
    assert exc.value.code == "unknown_profile"
    assert GateEvaluation.objects.count() == 0


def test_waiver_on_a_fatal_check_at_cutover_is_refused(
    project: Any, dm_engineer: Any, migration_lead: Any
) -> None:
    with pytest.raises(Refused) as exc:
        waiver_request(
            actor=dm_engineer, project=project, check_id="fk_completeness",
            profile="cutover_ready", reason="orphans", expires_at=_later(),
        )  # fmt: skip
    assert exc.value.code == "fatal_check"
    assert Waiver.objects.count() == 0
    # Even a fatal waiver that exists (e.g. requested for pre_production and
    # edited) cannot be approved at cutover_ready.
    waiver = Waiver.objects.create(
        project=project, check_id="ledger_balance", profile="cutover_ready",
        reason="x", requested_by=dm_engineer, expires_at=_later(),
    )  # fmt: skip
    with pytest.raises(Refused) as exc:
        waiver_approve(actor=migration_lead, waiver=waiver)
    assert exc.value.code == "fatal_check"
    waiver.refresh_from_db()
    assert waiver.approved_at is None
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.action == "governance.waiver.approve_refused"
    assert event.data["refused"] == "fatal_check"


def test_fatal_waiver_allowed_where_the_profile_allows_it(
    project: Any, dm_engineer: Any, migration_lead: Any
) -> None:
    waiver = waiver_request(
        actor=dm_engineer, project=project, check_id="fk_completeness",
        profile="pre_production", reason="orphans known", expires_at=_later(),
    )  # fmt: skip
    approved = waiver_approve(actor=migration_lead, waiver=waiver)
    assert approved.approver == migration_lead
    assert approved.approved_at is not None
    actions = list(
        AuditEvent.objects.filter(target_type="governance.waiver").values_list(
            "action", flat=True
        )
    )
    assert actions == ["governance.waiver.requested", "governance.waiver.approved"]


def test_approver_cannot_be_the_requester(project: Any, migration_lead: Any) -> None:
    waiver = waiver_request(
        actor=migration_lead, project=project, check_id="reject_rate",
        profile="cutover_ready", reason="known", expires_at=_later(),
    )  # fmt: skip
    with pytest.raises(Refused) as exc:
        waiver_approve(actor=migration_lead, waiver=waiver)
    assert exc.value.code == "four_eyes"
    waiver.refresh_from_db()
    assert waiver.approver is None and waiver.approved_at is None


def test_waiver_expiry_must_be_in_the_future(
    project: Any, dm_engineer: Any, ig_lead: Any
) -> None:
    with pytest.raises(Refused) as exc:
        waiver_request(
            actor=dm_engineer, project=project, check_id="reject_rate",
            profile="cutover_ready", reason="known", expires_at=_later(-1),
        )  # fmt: skip
    assert exc.value.code == "expired"
    lapsed = Waiver.objects.create(
        project=project, check_id="reject_rate", profile="cutover_ready",
        reason="x", requested_by=dm_engineer, expires_at=_later(-1),
    )  # fmt: skip
    with pytest.raises(Refused) as exc:
        waiver_approve(actor=ig_lead, waiver=lapsed)
    assert exc.value.code == "expired"


@pytest.mark.parametrize("who", ["steward", "dm_engineer", "other_steward"])
def test_approve_refused_without_approve_waiver(
    project: Any, migration_lead: Any, who: str, request: pytest.FixtureRequest
) -> None:
    waiver = waiver_request(
        actor=migration_lead, project=project, check_id="reject_rate",
        profile="cutover_ready", reason="known", expires_at=_later(),
    )  # fmt: skip
    with pytest.raises(Refused) as exc:
        waiver_approve(actor=request.getfixturevalue(who), waiver=waiver)
    assert exc.value.code == "permission"
    waiver.refresh_from_db()
    assert waiver.approved_at is None


def test_request_refused_for_a_steward_and_an_outsider(
    project: Any, steward: Any, outsider: Any
) -> None:
    for person in (steward, outsider):
        with pytest.raises(Refused) as exc:
            waiver_request(
                actor=person, project=project, check_id="reject_rate",
                profile="cutover_ready", reason="x", expires_at=_later(),
            )  # fmt: skip
        assert exc.value.code == "permission"
    assert Waiver.objects.count() == 0


def test_a_revoked_waiver_no_longer_applies_and_history_stays(
    make_run: Callable[..., Any],
    dm_engineer: Any,
    migration_lead: Any,
    ig_lead: Any,
    last_event: Callable[[str], Any],
) -> None:
    run = make_run(patient_rejects=30)  # 3% > 1% at cutover_ready
    waiver = waiver_request(
        actor=dm_engineer, project=run.project, check_id="reject_rate",
        profile="cutover_ready", reason="legacy test patients", expires_at=_later(),
        target_table="patient",
    )  # fmt: skip
    waiver_approve(actor=migration_lead, waiver=waiver)
    waived = gate_evaluate(actor=dm_engineer, run=run, profile="cutover_ready")
    assert not any("reject_rate" in r for r in waived.reasons)

    revoked = waiver_revoke(
        actor=ig_lead, waiver=waiver, reason="the clean-up was not done"
    )
    assert revoked.revoked_by == ig_lead and revoked.revoked_at is not None
    assert revoked.revoke_reason == "the clean-up was not done"
    event = last_event("governance.waiver.revoked")
    assert event.target_id == str(waiver.pk) and event.data["was_approved"] is True
    # The reason is on the waiver, not copied into the audit trail.
    assert "clean-up" not in str(event.data)

    after = gate_evaluate(actor=dm_engineer, run=run, profile="cutover_ready")
    check = after.checks.get(check_id="reject_rate", target_table="patient")
    assert check.waiver is None
    assert any("reject_rate" in r for r in after.reasons)
    # The evaluation made while the waiver stood keeps what it recorded.
    kept = waived.checks.get(check_id="reject_rate", target_table="patient")
    assert kept.waiver == waiver


@pytest.mark.parametrize(
    ("who", "reason", "code"),
    [
        ("dm_engineer", "no longer needed", "permission"),
        ("steward", "no longer needed", "permission"),
        ("other_steward", "no longer needed", "permission"),
        ("ig_lead", "   ", "no_reason"),
    ],
)
def test_revoke_refusals_are_audited_and_change_nothing(
    project: Any,
    dm_engineer: Any,
    who: str,
    reason: str,
    code: str,
    request: pytest.FixtureRequest,
) -> None:
    waiver = waiver_request(
        actor=dm_engineer, project=project, check_id="reject_rate",
        profile="cutover_ready", reason="known", expires_at=_later(),
    )  # fmt: skip
    with pytest.raises(Refused) as exc:
        waiver_revoke(actor=request.getfixturevalue(who), waiver=waiver, reason=reason)
    assert exc.value.code == code
    waiver.refresh_from_db()
    assert waiver.revoked_at is None and waiver.revoked_by is None
    refused = AuditEvent.objects.order_by("-seq").first()
    assert refused.action == "governance.waiver.revoke_refused"


def test_a_waiver_is_revoked_once_and_never_after_it_expired(
    project: Any, dm_engineer: Any, ig_lead: Any
) -> None:
    waiver = waiver_request(
        actor=dm_engineer, project=project, check_id="reject_rate",
        profile="cutover_ready", reason="known", expires_at=_later(),
    )  # fmt: skip
    waiver_revoke(actor=ig_lead, waiver=waiver, reason="withdrawn")  # still pending
    with pytest.raises(Refused) as exc:
        waiver_revoke(actor=ig_lead, waiver=waiver, reason="again")
    assert exc.value.code == "not_active"
    with pytest.raises(Refused) as exc:
        waiver_approve(actor=ig_lead, waiver=waiver)  # revoked: not pending
    assert exc.value.code == "not_pending"
    lapsed = Waiver.objects.create(
        project=project, check_id="reject_rate", profile="cutover_ready",
        reason="x", requested_by=dm_engineer, expires_at=_later(-1),
    )  # fmt: skip
    with pytest.raises(Refused) as exc:
        waiver_revoke(actor=ig_lead, waiver=lapsed, reason="tidy up")
    assert exc.value.code == "expired"
