"""Field-mapping review: every transition, every refusal, four-eyes (S4), IDOR (S2)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.http import Http404

from governance.audit import Refused
from migration.models import FieldMapping
from migration.selectors_mapping import (
    access_field_mapping,
    field_mappings_for_review,
    mapping_unmapped_report,
)
from migration.services.mappings import (
    field_mapping_approve,
    field_mapping_create,
    field_mapping_flag,
    field_mapping_propose,
    field_mapping_reject,
    field_mapping_revert,
    field_mapping_update,
    field_mappings_bulk_approve,
    field_mappings_bulk_revert,
    mapping_set_create,
    table_mapping_create,
)

pytestmark = pytest.mark.django_db

HOROLOG = [{"name": "horolog_to_date", "args": {}}]


def _state(fm: FieldMapping) -> tuple[Any, ...]:
    fm.refresh_from_db()
    return (fm.status, fm.reviewer_id, fm.last_changed_by_id, fm.transforms)


def test_full_happy_path_draft_propose_approve(
    steward: Any, steward2: Any, patient_table_mapping: Any, audit_log: Any
) -> None:
    fm = field_mapping_create(
        actor=steward,
        table_mapping=patient_table_mapping,
        target_field="family_name",
        source_columns=["PAPMI_Surname"],
        transforms=[{"name": "trim", "args": {}}],
    )
    assert (fm.status, fm.author, fm.last_changed_by) == ("draft", steward, steward)
    field_mapping_propose(actor=steward, mapping=fm)
    assert fm.status == "proposed"
    field_mapping_approve(actor=steward2, mapping=fm, comment="looks right")
    assert (fm.status, fm.reviewer, fm.review_comment) == (
        "approved",
        steward2,
        "looks right",
    )
    ev = audit_log("migration.field_mapping.approved", target_id=str(fm.pk))
    assert len(ev) == 1
    assert ev[0].data == {"from": "proposed", "to": "approved"}
    assert ev[0].project_id == patient_table_mapping.mapping_set.project_id
    assert len(audit_log("migration.field_mapping.proposed")) == 1
    assert len(audit_log("migration.field_mapping.created")) == 1


@pytest.mark.parametrize(
    ("verb", "start", "end"),
    [
        ("flag", "proposed", "flagged"),
        ("flag", "approved", "flagged"),
        ("reject", "proposed", "rejected"),
        ("reject", "flagged", "rejected"),
    ],
)
def test_flag_and_reject(
    steward: Any,
    steward2: Any,
    make_field_mapping: Any,
    audit_log: Any,
    verb: str,
    start: str,
    end: str,
) -> None:
    fm = make_field_mapping(steward, status=start)
    service = {"flag": field_mapping_flag, "reject": field_mapping_reject}[verb]
    service(actor=steward2, mapping=fm, comment="why")
    assert (fm.status, fm.reviewer) == (end, steward2)
    ev = audit_log(f"migration.field_mapping.{end}", target_id=str(fm.pk))
    assert [e.data for e in ev] == [{"from": start, "to": end}]


@pytest.mark.parametrize("to", ["draft", "proposed"])
def test_revert_approved_back(
    steward: Any, steward2: Any, make_field_mapping: Any, audit_log: Any, to: str
) -> None:
    fm = make_field_mapping(steward, status="approved")
    fm.reviewer = steward2
    fm.save()
    field_mapping_revert(actor=steward, mapping=fm, to=to)
    assert (fm.status, fm.reviewer) == (to, None)
    ev = audit_log("migration.field_mapping.reverted", target_id=str(fm.pk))
    assert [e.data for e in ev] == [{"from": "approved", "to": to}]


def test_revert_only_to_draft_or_proposed(
    steward: Any, make_field_mapping: Any
) -> None:
    fm = make_field_mapping(steward, status="proposed")
    with pytest.raises(ValidationError):
        field_mapping_revert(actor=steward, mapping=fm, to="approved")
    assert _state(fm)[0] == "proposed"


def _assert_refused(
    call: Any, code: str, fm: FieldMapping, action: str, audit_log: Any
) -> None:
    before = _state(fm)
    with pytest.raises(Refused) as exc:
        call()
    assert exc.value.code == code
    assert _state(fm) == before  # nothing changed
    ev = audit_log(action, target_id=str(fm.pk))
    assert ev and ev[-1].data["refused"] == code


def test_author_cannot_approve_own_mapping(
    steward: Any, make_field_mapping: Any, audit_log: Any
) -> None:
    fm = make_field_mapping(steward)
    _assert_refused(
        lambda: field_mapping_approve(actor=steward, mapping=fm),
        "four_eyes",
        fm,
        "migration.field_mapping.approve_refused",
        audit_log,
    )
    assert not audit_log("migration.field_mapping.approved")


def test_editor_of_someone_elses_mapping_cannot_approve_it(
    steward: Any, steward2: Any, make_field_mapping: Any, audit_log: Any
) -> None:
    fm = make_field_mapping(steward)
    field_mapping_update(
        actor=steward2,
        mapping=fm,
        transforms=[{"name": "trim", "args": {}}, {"name": "upper", "args": {}}],
    )
    assert fm.last_changed_by == steward2
    _assert_refused(
        lambda: field_mapping_approve(actor=steward2, mapping=fm),
        "four_eyes",
        fm,
        "migration.field_mapping.approve_refused",
        audit_log,
    )
    # ...and the original author still cannot either.
    with pytest.raises(Refused):
        field_mapping_approve(actor=steward, mapping=fm)


def test_non_trivial_transform_needs_rationale(
    steward: Any, steward2: Any, make_field_mapping: Any, audit_log: Any
) -> None:
    fm = make_field_mapping(steward, target_field="date_of_birth", transforms=HOROLOG)
    _assert_refused(
        lambda: field_mapping_approve(actor=steward2, mapping=fm),
        "rationale_required",
        fm,
        "migration.field_mapping.approve_refused",
        audit_log,
    )
    field_mapping_update(
        actor=steward, mapping=fm, rationale="PAPMI_DOB holds $HOROLOG day numbers"
    )
    field_mapping_approve(actor=steward2, mapping=fm)
    assert fm.status == "approved"


def test_trivial_transforms_need_no_rationale(
    steward: Any, steward2: Any, make_field_mapping: Any
) -> None:
    fm = make_field_mapping(
        steward,
        transforms=[
            {"name": "trim", "args": {}},
            {"name": "upper", "args": {}},
            {"name": "null_if_empty", "args": {}},
        ],
    )
    field_mapping_approve(actor=steward2, mapping=fm)
    assert fm.status == "approved"


@pytest.mark.parametrize("persona", ["dm_engineer", "auditor", "viewer", "ig_lead"])
def test_people_without_review_mapping_cannot_approve(
    request: Any,
    persona: str,
    steward: Any,
    make_field_mapping: Any,
    audit_log: Any,
) -> None:
    actor = request.getfixturevalue(persona)
    fm = make_field_mapping(steward)
    for service, action in [
        (field_mapping_approve, "approve"),
        (field_mapping_flag, "flag"),
        (field_mapping_reject, "reject"),
    ]:
        _assert_refused(
            lambda s=service: s(actor=actor, mapping=fm),
            "forbidden",
            fm,
            f"migration.field_mapping.{action}_refused",
            audit_log,
        )


def test_auditor_cannot_edit(
    auditor: Any, steward: Any, make_field_mapping: Any, audit_log: Any
) -> None:
    fm = make_field_mapping(steward)
    _assert_refused(
        lambda: field_mapping_update(actor=auditor, mapping=fm, rationale="x"),
        "forbidden",
        fm,
        "migration.field_mapping.update_refused",
        audit_log,
    )


def test_steward_of_another_project_gets_404_and_is_refused(
    other_steward: Any, steward: Any, make_field_mapping: Any, audit_log: Any
) -> None:
    fm = make_field_mapping(steward)
    with pytest.raises(Http404):
        access_field_mapping(other_steward, fm.pk, "review_mapping")
    assert access_field_mapping(steward, fm.pk, "review_mapping") == fm
    _assert_refused(
        lambda: field_mapping_approve(actor=other_steward, mapping=fm),
        "forbidden",
        fm,
        "migration.field_mapping.approve_refused",
        audit_log,
    )


def test_dm_engineer_can_edit_and_propose(
    dm_engineer: Any, steward: Any, make_field_mapping: Any
) -> None:
    fm = make_field_mapping(steward, status="draft")
    field_mapping_update(actor=dm_engineer, mapping=fm, source_columns=["PAPMI_Title"])
    field_mapping_propose(actor=dm_engineer, mapping=fm)
    assert (fm.status, fm.last_changed_by, fm.source_columns) == (
        "proposed",
        dm_engineer,
        ["PAPMI_Title"],
    )


@pytest.mark.parametrize("start", ["approved", "flagged", "rejected"])
def test_editing_a_reviewed_item_returns_it_to_proposed(
    steward: Any, steward2: Any, make_field_mapping: Any, audit_log: Any, start: str
) -> None:
    fm = make_field_mapping(steward, status=start)
    field_mapping_update(actor=steward2, mapping=fm, source_columns=["PAPMI_Forename"])
    assert (fm.status, fm.reviewer, fm.last_changed_by) == ("proposed", None, steward2)
    ev = audit_log("migration.field_mapping.updated", target_id=str(fm.pk))
    assert ev[-1].data == {
        "from": start,
        "to": "proposed",
        "changed": ["source_columns"],
    }


def test_update_rejects_unknown_transforms(
    steward: Any, make_field_mapping: Any
) -> None:
    fm = make_field_mapping(steward)
    with pytest.raises(ValidationError):
        field_mapping_update(actor=steward, mapping=fm, transforms=[{"name": "eval"}])
    with pytest.raises(ValidationError):
        field_mapping_update(
            actor=steward, mapping=fm, transforms=[{"name": "date_parse", "args": {}}]
        )
    with pytest.raises(ValidationError, match=r"51 transform steps; .* at most 50"):
        field_mapping_update(
            actor=steward, mapping=fm, transforms=[{"name": "trim", "args": {}}] * 51
        )
    assert _state(fm)[3] == [{"name": "trim", "args": {}}]


@pytest.mark.parametrize(
    ("verb", "start"),
    [("approve", "draft"), ("approve", "approved"), ("propose", "proposed")],
)
def test_invalid_transitions_are_refused(
    steward: Any,
    steward2: Any,
    make_field_mapping: Any,
    audit_log: Any,
    verb: str,
    start: str,
) -> None:
    fm = make_field_mapping(steward, status=start)
    service = {"approve": field_mapping_approve, "propose": field_mapping_propose}[verb]
    _assert_refused(
        lambda: service(actor=steward2, mapping=fm),
        "invalid_transition",
        fm,
        f"migration.field_mapping.{verb}_refused",
        audit_log,
    )


# --- bulk ---------------------------------------------------------------------


def test_bulk_approve_acts_only_on_the_listed_ids(
    steward: Any, steward2: Any, make_field_mapping: Any, audit_log: Any
) -> None:
    a = make_field_mapping(steward, target_field="family_name")
    b = make_field_mapping(steward, target_field="given_name")
    c = make_field_mapping(steward, target_field="title")
    done = field_mappings_bulk_approve(actor=steward2, ids=[a.pk, c.pk])
    assert {x.pk for x in done} == {a.pk, c.pk}
    assert [_state(x)[0] for x in (a, b, c)] == ["approved", "proposed", "approved"]
    ev = audit_log("migration.field_mapping.approved")
    assert sorted(int(e.target_id) for e in ev) == sorted([a.pk, c.pk])
    assert all(e.data["bulk"] is True for e in ev)
    assert field_mappings_bulk_approve(actor=steward2, ids=[]) == []


def test_bulk_approve_with_a_foreign_id_changes_nothing(
    steward: Any,
    steward2: Any,
    other_project: Any,
    make_field_mapping: Any,
    legacy_snapshot: Any,
    audit_log: Any,
) -> None:
    mine = make_field_mapping(steward)
    # A mapping of another project (its snapshot pointer is irrelevant here).
    legacy_snapshot.pk = None
    legacy_snapshot.project = other_project
    legacy_snapshot.save()
    ms = mapping_set_create(
        actor="tests",
        project=other_project,
        name="B",
        source_snapshot=legacy_snapshot,
    )
    tm = table_mapping_create(
        actor="tests",
        mapping_set=ms,
        target_table="patient",
        source_table="PA_PatMas",
        source_key="PAPMI_RowId",
    )
    foreign = make_field_mapping(None, table_mapping=tm)
    with pytest.raises(Refused) as exc:
        field_mappings_bulk_approve(actor=steward2, ids=[mine.pk, foreign.pk])
    assert exc.value.code == "forbidden"
    assert _state(mine)[0] == "proposed"
    assert _state(foreign)[0] == "proposed"
    assert not audit_log("migration.field_mapping.approved")
    ev = audit_log("migration.field_mapping.bulk_approve_refused")
    assert len(ev) == 1
    assert ev[0].data["problems"] == [{"id": foreign.pk, "code": "forbidden"}]
    # Unknown ids are refused the same way (no oracle for which ids exist).
    with pytest.raises(Refused):
        field_mappings_bulk_approve(actor=steward2, ids=[mine.pk, 10**9])
    assert _state(mine)[0] == "proposed"


def test_bulk_approve_refuses_whole_batch_on_four_eyes(
    steward: Any, steward2: Any, make_field_mapping: Any, audit_log: Any
) -> None:
    others = make_field_mapping(steward, target_field="family_name")
    own = make_field_mapping(steward2, target_field="given_name")
    with pytest.raises(Refused) as exc:
        field_mappings_bulk_approve(actor=steward2, ids=[others.pk, own.pk])
    assert exc.value.code == "four_eyes"
    assert [_state(x)[0] for x in (others, own)] == ["proposed", "proposed"]
    assert audit_log("migration.field_mapping.bulk_approve_refused")


def test_bulk_revert(
    steward: Any, steward2: Any, make_field_mapping: Any, dm_engineer: Any
) -> None:
    a = make_field_mapping(steward, target_field="family_name", status="approved")
    b = make_field_mapping(steward, target_field="given_name", status="approved")
    field_mappings_bulk_revert(actor=dm_engineer, ids=[a.pk], to="draft")
    assert [_state(x)[0] for x in (a, b)] == ["draft", "approved"]


def test_bulk_approve_refused_for_auditor(
    auditor: Any, steward: Any, make_field_mapping: Any, audit_log: Any
) -> None:
    fm = make_field_mapping(steward)
    with pytest.raises(Refused) as exc:
        field_mappings_bulk_approve(actor=auditor, ids=[fm.pk])
    assert exc.value.code == "forbidden"
    assert _state(fm)[0] == "proposed"
    assert audit_log("migration.field_mapping.bulk_approve_refused")


# --- selectors ----------------------------------------------------------------


def test_review_queue_excludes_own_work_and_other_projects(
    steward: Any, steward2: Any, other_steward: Any, make_field_mapping: Any
) -> None:
    mine = make_field_mapping(steward, target_field="family_name")
    theirs = make_field_mapping(steward2, target_field="given_name")
    assert list(field_mappings_for_review(user=steward)) == [theirs]
    assert list(field_mappings_for_review(user=steward2)) == [mine]
    assert list(field_mappings_for_review(user=other_steward)) == []


def test_unmapped_report(
    steward: Any, mapping_set: Any, make_field_mapping: Any
) -> None:
    make_field_mapping(steward, target_field="family_name")
    make_field_mapping(
        steward,
        target_field="nhs_number_status",
        transforms=[{"name": "constant", "args": {"value": "03"}}],
    )
    waived = make_field_mapping(steward, target_field="gender")
    waived.waived = True
    waived.save()
    report = {
        (r["table"], r["field"]): r["state"]
        for r in mapping_unmapped_report(mapping_set=mapping_set)
    }
    assert ("patient", "family_name") not in report
    assert report[("patient", "nhs_number_status")] == "defaulted"
    assert report[("patient", "gender")] == "waived"
    assert report[("patient", "date_of_birth")] == "unmapped"
    assert report[("inpatient_spell", "admission_date")] == "unmapped"
    # Optional, non-critical fields are not reported.
    assert ("patient", "title") not in report
