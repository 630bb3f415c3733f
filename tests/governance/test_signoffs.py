"""Sign-offs: role held, bound to run + contract hash, one role per person, voiding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from governance.audit import Refused
from governance.gates import gate_evaluate
from governance.models import AuditEvent, SignOff
from governance.services import membership_grant
from governance.signoffs import signoff_record, signoffs_status, signoffs_void_for
from migration.models import Run
from migration.services.contracts import contract_import_default


def _refused(
    code: str, *, actor: Any, run: Any, role: str, profile: str = "cutover_ready"
) -> None:
    """Assert the attempt is refused with ``code``, audited, and stores nothing."""
    before = SignOff.objects.count()
    with pytest.raises(Refused) as exc:
        signoff_record(
            actor=actor, run=run, role=role, decision="approve", comment="",
            profile=profile,
        )  # fmt: skip
    assert exc.value.code == code, str(exc.value)
    assert SignOff.objects.count() == before
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.action == "governance.signoff.refused"
    assert event.data["refused"] == code
    assert event.actor_id == actor.pk
    assert event.target_id == str(run.pk)


def test_record_binds_to_run_and_contract_hash_and_audits(
    run: Any, ig_lead: Any, last_event: Callable[[str], Any]
) -> None:
    signoff = signoff_record(
        actor=ig_lead, run=run, role="ig_lead", decision="approve", comment="DPIA ok"
    )
    assert signoff.run == run
    assert signoff.contract_sha256 == run.contract.sha256
    assert (signoff.profile, signoff.role, signoff.user) == (
        "cutover_ready",
        "ig_lead",
        ig_lead,
    )
    event = last_event("governance.signoff.recorded")
    assert event.data["signoff"] == signoff.pk
    assert event.data["contract_sha256"] == run.contract.sha256
    assert event.project_id == run.project_id


def test_sign_as_a_role_you_do_not_hold(run: Any, ig_lead: Any) -> None:
    _refused("wrong_role", actor=ig_lead, run=run, role="clinical_safety_officer")


def test_sign_for_a_role_the_profile_does_not_ask_for(run: Any, ig_lead: Any) -> None:
    _refused("role_not_required", actor=ig_lead, run=run, role="auditor")
    _refused("role_not_required", actor=ig_lead, run=run, role="ig_lead",
             profile="development")  # fmt: skip


@pytest.mark.parametrize("who", ["auditor", "viewer", "dm_engineer", "other_steward"])
def test_sign_without_sign_off_permission(
    run: Any, who: str, request: pytest.FixtureRequest
) -> None:
    _refused("permission", actor=request.getfixturevalue(who), run=run,
             role="data_steward")  # fmt: skip


def test_one_person_cannot_sign_for_two_roles(run: Any, migration_lead: Any) -> None:
    membership_grant(
        actor="tests", project=run.project, user=migration_lead, role="ig_lead"
    )
    signoff_record(actor=migration_lead, run=run, role="migration_lead",
                   decision="approve", comment="")  # fmt: skip
    _refused("second_role", actor=migration_lead, run=run, role="ig_lead")
    _refused("already_signed", actor=migration_lead, run=run, role="migration_lead")


def test_a_role_is_signed_once(run: Any, steward: Any, steward2: Any) -> None:
    signoff_record(actor=steward, run=run, role="data_steward", decision="approve",
                   comment="")  # fmt: skip
    _refused("role_taken", actor=steward2, run=run, role="data_steward")


def test_superseded_run_cannot_be_signed(
    make_run: Callable[..., Any], ig_lead: Any
) -> None:
    old, new = make_run(), make_run()
    Run.objects.filter(pk=old.pk).update(superseded_by=new)
    old.refresh_from_db()
    _refused("superseded", actor=ig_lead, run=old, role="ig_lead")


@pytest.mark.parametrize("state", ["queued", "running", "failed", "cancelled"])
def test_unfinished_or_failed_run_cannot_be_signed(
    make_run: Callable[..., Any], ig_lead: Any, state: str
) -> None:
    _refused("run_not_finished", actor=ig_lead, run=make_run(state=state),
             role="ig_lead")  # fmt: skip


def test_signoffs_voided_when_the_contract_changes(
    run: Any,
    migration_lead: Any,
    steward: Any,
    ig_lead: Any,
    safety_officer: Any,
    last_event: Callable[[str], Any],
) -> None:
    people = (
        (migration_lead, "migration_lead"),
        (steward, "data_steward"),
        (ig_lead, "ig_lead"),
        (safety_officer, "clinical_safety_officer"),
    )
    for person, role in people:
        signoff_record(actor=person, run=run, role=role, decision="approve",
                       comment="")  # fmt: skip
    assert signoffs_status(run=run)["complete"]
    assert (
        gate_evaluate(actor=migration_lead, run=run, profile="cutover_ready").status
        == "PASS"
    )

    # The run is re-pointed at a new contract version: every sign-off is stale
    # even before anyone voids it, and the gate no longer counts them.
    newer = contract_import_default(actor="tests", project=run.project, chunk_size=999)
    Run.objects.filter(pk=run.pk).update(contract=newer)
    run.refresh_from_db()
    status = signoffs_status(run=run)
    assert status["signed"] == [] and len(status["stale"]) == 4
    assert not status["complete"]
    gate = gate_evaluate(actor=migration_lead, run=run, profile="cutover_ready")
    assert gate.status == "FAIL"
    assert len(gate.result["signoffs_void"]) == 4

    assert signoffs_void_for(run=run, reason="contract changed") == 4
    assert SignOff.objects.filter(run=run, voided_at__isnull=True).count() == 0
    assert set(SignOff.objects.values_list("void_reason", flat=True)) == {
        "contract changed"
    }
    voided = AuditEvent.objects.filter(action="governance.signoff.voided")
    assert voided.count() == 4
    assert last_event("governance.signoff.voided").data["reason"] == "contract changed"
    status = signoffs_status(run=run)
    assert status["missing"] == status["required"]
    # The places are free again for sign-offs bound to the new contract.
    again = signoff_record(actor=ig_lead, run=run, role="ig_lead", decision="approve",
                           comment="re-signed")  # fmt: skip
    assert again.contract_sha256 == newer.sha256


def test_void_on_supersede_frees_nothing_to_sign(
    make_run: Callable[..., Any], ig_lead: Any
) -> None:
    old, new = make_run(), make_run()
    signoff_record(actor=ig_lead, run=old, role="ig_lead", decision="approve",
                   comment="")  # fmt: skip
    Run.objects.filter(pk=old.pk).update(superseded_by=new)
    old.refresh_from_db()
    assert signoffs_void_for(run=old, reason=f"superseded by run {new.pk}") == 1
    assert signoffs_void_for(run=old, reason="again") == 0
    _refused("superseded", actor=ig_lead, run=old, role="ig_lead")


def test_status_lists_required_signed_missing_and_rejected(
    run: Any, ig_lead: Any, safety_officer: Any
) -> None:
    signoff_record(actor=ig_lead, run=run, role="ig_lead", decision="approve",
                   comment="")  # fmt: skip
    signoff_record(actor=safety_officer, run=run, role="clinical_safety_officer",
                   decision="reject", comment="hazard log open")  # fmt: skip
    status = signoffs_status(run=run, profile="cutover_ready")
    assert status["required"] == [
        "migration_lead",
        "clinical_safety_officer",
        "ig_lead",
        "data_steward",
    ]
    assert [s["user"] for s in status["signed"]] == ["safety.officer", "ig.lead"]
    assert status["missing"] == ["migration_lead", "data_steward"]
    assert status["rejected"] == ["clinical_safety_officer"]
    assert not status["complete"]


def test_supersede_signal_voids_the_old_runs_signoffs(
    make_run: Callable[..., Any], ig_lead: Any
) -> None:
    from migration.signals import run_superseded

    old, new = make_run(), make_run()
    signoff_record(actor=ig_lead, run=old, role="ig_lead", decision="approve",
                   comment="")  # fmt: skip
    run_superseded.send(sender=Run, run=old, by=new)
    voided = SignOff.objects.get(run=old)
    assert voided.voided_at is not None
    assert voided.void_reason == f"superseded by run {new.pk}"


def test_status_of_an_unknown_profile_is_404(run: Any) -> None:
    from django.http import Http404

    with pytest.raises(Http404):
        signoffs_status(run=run, profile="golive")
