"""Crosswalks: code-system releases, row review, CSV import/export, defaults,
and the miss queue. Every refusal leaves the data unchanged and is audited.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.http import Http404

from connectors.models import Connector
from governance.audit import Refused
from migration.models import (
    CodeSystem,
    Contract,
    CrosswalkRow,
    MissQueueEntry,
    Run,
)
from migration.selectors_mapping import (
    access_crosswalk_row,
    crosswalk_export_csv,
    crosswalk_rows_for,
    missqueue_entries,
    missqueue_groups,
)
from migration.services.crosswalks import (
    codesystem_load,
    crosswalk_import_csv,
    crosswalk_row_approve,
    crosswalk_row_create,
    crosswalk_row_flag,
    crosswalk_row_propose,
    crosswalk_row_reject,
    crosswalk_row_revert,
    crosswalk_row_update,
    crosswalk_rows_bulk_approve,
    crosswalk_rows_bulk_revert,
    crosswalks_seed_defaults,
    missqueue_ignore,
    missqueue_record,
    missqueue_reopen,
    missqueue_resolve,
)

pytestmark = pytest.mark.django_db

HEADER = "local_code,local_display,target_code,equivalence,rationale\n"


def _rows(xw: Any) -> list[tuple[str, str, str, str]]:
    return list(
        xw.rows.order_by("local_code").values_list(
            "local_code", "target_code", "equivalence", "status"
        )
    )


def _row(xw: Any, author: Any, code: str = "M", target: str = "1", **kw: Any) -> Any:
    return CrosswalkRow.objects.create(
        crosswalk=xw,
        local_code=code,
        target_code=target,
        equivalence=kw.pop("equivalence", "equal"),
        status=kw.pop("status", "proposed"),
        author=author,
        last_changed_by=author,
        **kw,
    )


# --- row review -----------------------------------------------------------------


def test_row_lifecycle_and_audit(
    steward: Any, steward2: Any, sex_crosswalk: Any, audit_log: Any
) -> None:
    row = crosswalk_row_create(
        actor=steward,
        crosswalk=sex_crosswalk,
        local_code="M",
        target_code="1",
        equivalence="equal",
    )
    assert row.status == "draft"
    crosswalk_row_propose(actor=steward, row=row)
    crosswalk_row_approve(actor=steward2, row=row)
    assert (row.status, row.reviewer) == ("approved", steward2)
    crosswalk_row_flag(actor=steward2, row=row, comment="check the 2025 release")
    crosswalk_row_reject(actor=steward2, row=row)
    crosswalk_row_revert(actor=steward, row=row, to="draft")
    assert row.status == "draft"
    actions = [
        "created",
        "proposed",
        "approved",
        "flagged",
        "rejected",
        "reverted",
    ]
    for action in actions:
        ev = audit_log(f"migration.crosswalk_row.{action}", target_id=str(row.pk))
        assert len(ev) == 1, action
        assert ev[0].project_id == sex_crosswalk.project_id


def test_row_author_cannot_approve(
    steward: Any, sex_crosswalk: Any, audit_log: Any
) -> None:
    row = _row(sex_crosswalk, steward)
    with pytest.raises(Refused) as exc:
        crosswalk_row_approve(actor=steward, row=row)
    assert exc.value.code == "four_eyes"
    row.refresh_from_db()
    assert row.status == "proposed"
    assert audit_log("migration.crosswalk_row.approve_refused", target_id=str(row.pk))


def test_row_editor_cannot_approve(
    steward: Any, steward2: Any, sex_crosswalk: Any, audit_log: Any
) -> None:
    row = _row(sex_crosswalk, steward, status="approved")
    crosswalk_row_update(actor=steward2, row=row, local_display="Male (local)")
    assert (row.status, row.last_changed_by) == ("proposed", steward2)
    with pytest.raises(Refused) as exc:
        crosswalk_row_approve(actor=steward2, row=row)
    assert exc.value.code == "four_eyes"
    row.refresh_from_db()
    assert row.status == "proposed"


def test_non_plain_grade_needs_rationale(
    steward: Any, steward2: Any, sex_crosswalk: Any, audit_log: Any
) -> None:
    row = _row(sex_crosswalk, steward, code="U", target="X", equivalence="inexact")
    with pytest.raises(Refused) as exc:
        crosswalk_row_approve(actor=steward2, row=row)
    assert exc.value.code == "rationale_required"
    row.refresh_from_db()
    assert row.status == "proposed"
    assert audit_log("migration.crosswalk_row.approve_refused", target_id=str(row.pk))
    crosswalk_row_update(actor=steward, row=row, rationale="U is unknown, not stated")
    crosswalk_row_approve(actor=steward2, row=row)
    assert row.status == "approved"


@pytest.mark.parametrize("persona", ["dm_engineer", "auditor", "other_steward"])
def test_people_without_review_mapping_cannot_approve_rows(
    request: Any, persona: str, steward: Any, sex_crosswalk: Any, audit_log: Any
) -> None:
    actor = request.getfixturevalue(persona)
    row = _row(sex_crosswalk, steward)
    with pytest.raises(Refused) as exc:
        crosswalk_row_approve(actor=actor, row=row)
    assert exc.value.code == "forbidden"
    row.refresh_from_db()
    assert (row.status, row.reviewer) == ("proposed", None)
    assert audit_log("migration.crosswalk_row.approve_refused", target_id=str(row.pk))


def test_other_project_cannot_see_rows(
    other_steward: Any, steward: Any, sex_crosswalk: Any
) -> None:
    row = _row(sex_crosswalk, steward)
    with pytest.raises(Http404):
        access_crosswalk_row(other_steward, row.pk)
    with pytest.raises(Http404):
        crosswalk_rows_for(user=other_steward, crosswalk=sex_crosswalk)
    assert list(crosswalk_rows_for(user=steward, crosswalk=sex_crosswalk)) == [row]


def test_bulk_row_approve_and_revert(
    steward: Any, steward2: Any, sex_crosswalk: Any, audit_log: Any
) -> None:
    m = _row(sex_crosswalk, steward, "M", "1")
    f = _row(sex_crosswalk, steward, "F", "2")
    own = _row(sex_crosswalk, steward2, "I", "9")
    with pytest.raises(Refused) as exc:
        crosswalk_rows_bulk_approve(actor=steward2, ids=[m.pk, own.pk])
    assert exc.value.code == "four_eyes"
    assert [s for *_, s in _rows(sex_crosswalk)] == ["proposed"] * 3
    assert audit_log("migration.crosswalk_row.bulk_approve_refused")
    crosswalk_rows_bulk_approve(actor=steward2, ids=[m.pk, f.pk])
    assert _rows(sex_crosswalk) == [
        ("F", "2", "equal", "approved"),
        ("I", "9", "equal", "proposed"),
        ("M", "1", "equal", "approved"),
    ]
    crosswalk_rows_bulk_revert(actor=steward, ids=[f.pk])
    assert _rows(sex_crosswalk)[0][3] == "proposed"


# --- code system releases ---------------------------------------------------------


def _release(version: str, codes: list[list[Any]]) -> dict[str, Any]:
    return {
        "id": "person_stated_gender",
        "version": version,
        "name": "Person Stated Gender Code",
        "release": "test",
        "verified": True,
        "codes": codes,
    }


def test_new_release_flags_rows_pointing_at_retired_or_missing_codes(
    steward: Any, steward2: Any, sex_crosswalk: Any, audit_log: Any
) -> None:
    m = _row(sex_crosswalk, steward, "M", "1", status="approved")
    i = _row(sex_crosswalk, steward, "I", "9", status="approved")
    u = _row(sex_crosswalk, steward, "U", "X", status="approved")
    f = _row(sex_crosswalk, steward, "F", "2", status="proposed")
    new = codesystem_load(
        actor="tests",
        data=_release(
            "2026.1",
            [
                ["1", "Male"],
                ["2", "Female"],
                ["9", "Indeterminate", None, "2025-01-01"],  # retired
                # "X" is missing from the new release
            ],
        ),
    )
    assert new.concepts.get(code="9").retired is True
    for row in (m, i, u, f):
        row.refresh_from_db()
    assert (m.status, m.retired_target) == ("approved", False)
    assert (i.status, i.retired_target) == ("flagged", True)
    assert (u.status, u.retired_target) == ("flagged", True)
    assert (f.status, f.retired_target) == ("proposed", False)  # only approved rows
    ev = audit_log("migration.crosswalk_row.flagged")
    assert sorted(int(e.target_id) for e in ev) == sorted([i.pk, u.pk])
    assert all(e.data["reason"] == "retired_target" for e in ev)
    assert audit_log("migration.codesystem.loaded", target_id=str(new.pk))
    # A flagged row with a retired target cannot be approved without an edit.
    crosswalk_row_revert(actor=steward, row=i)
    with pytest.raises(Refused) as exc:
        crosswalk_row_approve(actor=steward2, row=i)
    assert exc.value.code == "retired_target"


def test_reloading_a_release(steward: Any, dm_engineer: Any, audit_log: Any) -> None:
    first = codesystem_load(actor="tests", data=_release("9.9", [["1", "Male"]]))
    again = codesystem_load(actor=dm_engineer, data=_release("9.9", [["1", "Male"]]))
    assert again == first
    with pytest.raises(Refused) as exc:
        codesystem_load(actor="tests", data=_release("9.9", [["1", "Man"]]))
    assert exc.value.code == "release_exists"
    with pytest.raises(Refused) as exc:
        codesystem_load(actor=steward, data=_release("9.8", [["1", "Male"]]))
    assert exc.value.code == "forbidden"
    assert not CodeSystem.objects.filter(version="9.8").exists()
    assert len(audit_log("migration.codesystem.load_refused")) == 2


# --- CSV import / export ------------------------------------------------------------


def test_csv_import_creates_proposed_rows_and_round_trips(
    steward: Any, steward2: Any, sex_crosswalk: Any, audit_log: Any
) -> None:
    body = HEADER + (
        "M,Male,1,equal,\n"
        "F,Female,2,equal,\n"
        "U,Unknown,X,inexact,Unknown is not recorded\n"
        "Q,Queried,,unmatched,No national meaning\n"
    )
    counts = crosswalk_import_csv(
        actor=steward, crosswalk=sex_crosswalk, file_bytes=body.encode()
    )
    assert counts == {"created": 4, "updated": 0, "unchanged": 0}
    assert _rows(sex_crosswalk) == [
        ("F", "2", "equal", "proposed"),
        ("M", "1", "equal", "proposed"),
        ("Q", "", "unmatched", "proposed"),
        ("U", "X", "inexact", "proposed"),
    ]
    assert {r.author for r in sex_crosswalk.rows.all()} == {steward}
    assert audit_log("migration.crosswalk.imported", target_id=str(sex_crosswalk.pk))
    exported = crosswalk_export_csv(crosswalk=sex_crosswalk).decode()
    parsed = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["local_code"], r["target_code"], r["status"]) for r in parsed] == [
        ("F", "2", "proposed"),
        ("M", "1", "proposed"),
        ("Q", "", "proposed"),
        ("U", "X", "proposed"),
    ]
    # Re-importing the export changes nothing.
    again = crosswalk_import_csv(
        actor=steward2, crosswalk=sex_crosswalk, file_bytes=exported.encode()
    )
    assert again == {"created": 0, "updated": 0, "unchanged": 4}


def test_csv_import_edit_returns_approved_row_to_review(
    steward: Any, steward2: Any, sex_crosswalk: Any
) -> None:
    row = _row(sex_crosswalk, steward, "U", "9", status="approved")
    crosswalk_import_csv(
        actor=steward2,
        crosswalk=sex_crosswalk,
        file_bytes=(HEADER + "U,Unknown,X,equivalent,\n").encode(),
    )
    row.refresh_from_db()
    assert (row.target_code, row.status, row.last_changed_by) == (
        "X",
        "proposed",
        steward2,
    )


@pytest.mark.parametrize(
    ("body", "code", "where"),
    [
        (
            HEADER + "M,Male,1,equal,\nF,Female,7,equal,\n",
            "unknown_target_code",
            "line 3",
        ),
        (
            HEADER + "M,Male,1,equal,\nM,Man,1,equal,\n",
            "duplicate_local_code",
            "line 3",
        ),
        (HEADER + "M,Male,1,same-ish,\n", "bad_equivalence", "line 2"),
        ("code,display\nM,Male\n", "bad_header", "line 1"),
    ],
)
def test_csv_import_refuses_the_whole_file(
    steward: Any,
    sex_crosswalk: Any,
    audit_log: Any,
    body: str,
    code: str,
    where: str,
) -> None:
    before = _rows(sex_crosswalk)
    with pytest.raises(Refused) as exc:
        crosswalk_import_csv(
            actor=steward, crosswalk=sex_crosswalk, file_bytes=body.encode()
        )
    assert exc.value.code == code
    assert where in str(exc.value)
    assert _rows(sex_crosswalk) == before == []
    ev = audit_log("migration.crosswalk.import_refused")
    assert len(ev) == 1
    assert ev[0].data["refused"] == code


def test_csv_import_wrong_encoding_names_line_and_byte(
    steward: Any, sex_crosswalk: Any, audit_log: Any
) -> None:
    body = (HEADER + "M,Male,1,equal,\nF,Fémale,2,equal,\n").encode("latin-1")
    with pytest.raises(Refused) as exc:
        crosswalk_import_csv(actor=steward, crosswalk=sex_crosswalk, file_bytes=body)
    assert exc.value.code == "wrong_encoding"
    offset = body.index("é".encode("latin-1"))
    assert f"line 3, byte {offset}" in str(exc.value)
    assert _rows(sex_crosswalk) == []
    ev = audit_log("migration.crosswalk.import_refused")
    assert ev[0].data["problems"] == [
        {"code": "wrong_encoding", "line": 3, "byte": offset}
    ]
    # The same bytes declared as latin-1 import fine.
    crosswalk_import_csv(
        actor=steward, crosswalk=sex_crosswalk, file_bytes=body, encoding="latin-1"
    )
    assert sex_crosswalk.rows.get(local_code="F").local_display == "Fémale"


@pytest.mark.parametrize("persona", ["auditor", "other_steward", "viewer"])
def test_csv_import_needs_edit_mapping(
    request: Any, persona: str, sex_crosswalk: Any, audit_log: Any
) -> None:
    actor = request.getfixturevalue(persona)
    with pytest.raises(Refused) as exc:
        crosswalk_import_csv(
            actor=actor,
            crosswalk=sex_crosswalk,
            file_bytes=(HEADER + "M,Male,1,equal,\n").encode(),
        )
    assert exc.value.code == "forbidden"
    assert _rows(sex_crosswalk) == []
    assert audit_log("migration.crosswalk.import_refused")


# --- defaults for the generated legacy PAS -----------------------------------------


def test_seed_defaults_are_proposed_system_rows_a_steward_can_approve(
    project: Any, steward: Any, audit_log: Any
) -> None:
    from migration.legacypas.codes import LOCAL_CODES, LOCAL_TABLES

    xws = crosswalks_seed_defaults(actor="tests", project=project)
    assert [x.slug for x in xws] == [f"legacypas.{t}" for t in LOCAL_TABLES]
    rows = CrosswalkRow.objects.filter(crosswalk__project=project)
    assert rows.count() == len(LOCAL_CODES)
    assert set(rows.values_list("status", flat=True)) == {"proposed"}
    assert not rows.filter(author__isnull=False).exists()
    sex = next(x for x in xws if x.slug == "legacypas.SEX")
    assert sex.code_system.slug == "person_stated_gender"
    assert _rows(sex)[0] == ("F", "2", "equal", "proposed")
    crosswalk_row_approve(actor=steward, row=sex.rows.get(local_code="F"))
    # Unmatched rows have no rationale yet: a steward must write one.
    unmatched = rows.filter(equivalence="unmatched").first()
    assert unmatched is not None
    with pytest.raises(Refused) as exc:
        crosswalk_row_approve(actor=steward, row=unmatched)
    assert exc.value.code == "rationale_required"
    assert len(audit_log("migration.crosswalk.seeded")) == len(LOCAL_TABLES)
    # Seeding again adds nothing.
    crosswalks_seed_defaults(actor="tests", project=project)
    assert rows.count() == len(LOCAL_CODES)


def test_seed_defaults_refused_without_edit_mapping(
    project: Any, auditor: Any, audit_log: Any
) -> None:
    with pytest.raises(Refused):
        crosswalks_seed_defaults(actor=auditor, project=project)
    assert not CrosswalkRow.objects.exists()
    assert audit_log("migration.crosswalk.seed_refused")


# --- miss queue ------------------------------------------------------------------------


@pytest.fixture
def run(project: Any, legacy_connector: Any) -> Run:
    contract = Contract.objects.create(
        project=project, version=1, body={}, sha256="0" * 64
    )
    target = Connector.objects.create(
        project=project, name="target", kind="sqlite", role="target", config={}
    )
    return Run.objects.create(
        project=project, contract=contract, source=legacy_connector, target=target
    )


def test_missqueue_record_and_resolve(
    run: Any,
    steward: Any,
    steward2: Any,
    other_steward: Any,
    sex_crosswalk: Any,
    audit_log: Any,
) -> None:
    missqueue_record(run=run, crosswalk=sex_crosswalk, counts={"Z": 12, "m ": 3})
    missqueue_record(run=run, crosswalk=sex_crosswalk, counts={"Z": 14, "m ": 3})
    open_entries = list(missqueue_entries(user=steward, crosswalk=sex_crosswalk))
    assert [(e.local_value, e.frequency) for e in open_entries] == [
        ("Z", 14),
        ("m ", 3),
    ]
    assert list(missqueue_entries(user=other_steward)) == []
    ev = audit_log("migration.missqueue.recorded")
    assert ev[-1].data == {
        "run": run.pk,
        "distinct": 2,
        "total": 17,
        "defaulted": 0,
        "open": 2,
    }
    assert "Z" not in str(ev[-1].data)  # values never enter the audit trail

    entry = open_entries[0]
    with pytest.raises(Refused) as exc:
        missqueue_resolve(
            actor=steward,
            entry=entry,
            target_code="7",
            equivalence="equal",
            rationale="",
        )
    assert exc.value.code == "unknown_target_code"
    with pytest.raises(Refused) as exc:
        missqueue_resolve(
            actor=other_steward,
            entry=entry,
            target_code="X",
            equivalence="equal",
            rationale="",
        )
    assert exc.value.code == "forbidden"
    assert MissQueueEntry.objects.get(pk=entry.pk).state == "open"
    assert not sex_crosswalk.rows.exists()
    assert len(audit_log("migration.missqueue.resolve_refused")) == 2

    row = missqueue_resolve(
        actor=steward,
        entry=entry,
        target_code="X",
        equivalence="inexact",
        rationale="Z is the old 'not recorded' code",
    )
    assert (row.local_code, row.status, row.author) == ("Z", "proposed", steward)
    entry.refresh_from_db()
    assert entry.state == "resolved"
    assert audit_log("migration.missqueue.resolved", target_id=str(entry.pk))
    crosswalk_row_approve(actor=steward2, row=row)
    assert row.status == "approved"
    with pytest.raises(Refused) as exc:
        missqueue_resolve(
            actor=steward,
            entry=entry,
            target_code="X",
            equivalence="equal",
            rationale="",
        )
    assert exc.value.code == "not_open"


def test_a_value_left_untranslated_stays_so_in_later_runs_until_reopened(
    run: Any,
    project: Any,
    steward: Any,
    auditor: Any,
    sex_crosswalk: Any,
    audit_log: Any,
) -> None:
    later = Run.objects.create(
        project=project, contract=run.contract, source=run.source, target=run.target
    )
    missqueue_record(run=run, crosswalk=sex_crosswalk, counts={"Z": 5, "m ": 3})
    missqueue_record(run=later, crosswalk=sex_crosswalk, counts={"Z": 6, "U": 1})
    groups = missqueue_groups(user=steward, project=project)
    # One line per value, however many runs met it; the latest run's figures.
    assert [(g.entry.local_value, g.entry.frequency, g.runs) for g in groups] == [
        ("Z", 6, (later.pk, run.pk)),
        ("m ", 3, (run.pk,)),
        ("U", 1, (later.pk,)),
    ]
    z = groups[0].entry
    for actor, note, code in (
        (auditor, "typo", "forbidden"),
        (steward, "  ", "no_reason"),
        (steward, "x" * 501, "invalid"),
    ):
        with pytest.raises(Refused) as exc:
            missqueue_ignore(actor=actor, entry=z, note=note)
        assert exc.value.code == code
    assert len(audit_log("migration.missqueue.ignore_refused")) == 3
    assert MissQueueEntry.objects.filter(local_value="Z", state="open").count() == 2

    assert missqueue_ignore(actor=steward, entry=z, note="Data-entry error") == 2
    [event] = audit_log("migration.missqueue.ignored")
    assert event.data == {
        "entries": 2,
        "from": "open",
        "to": "ignored",
        "reason": "Data-entry error",
    }
    assert '"Z"' not in str(event.data)  # the value stays out of the trail
    assert [
        g.entry.local_value for g in missqueue_groups(user=steward, project=project)
    ] == [
        "m ",
        "U",
    ]
    with pytest.raises(Refused) as exc:
        missqueue_ignore(actor=steward, entry=z, note="again")
    assert exc.value.code == "not_open"

    # A later run: Z arrives ignored, with the decision; U has a row by now.
    third = Run.objects.create(
        project=project, contract=run.contract, source=run.source, target=run.target
    )
    _row(sex_crosswalk, steward, code="U", target="X", equivalence="inexact")
    _row(sex_crosswalk, steward, code="R", target="X", status="rejected")
    missqueue_record(
        run=third, crosswalk=sex_crosswalk, counts={"Z": 2, "U": 1, "Q": 4, "R": 1}
    )
    states = {
        e.local_value: (e.state, e.note, e.decided_by)
        for e in MissQueueEntry.objects.filter(run=third)
    }
    assert states == {
        "Z": ("ignored", "Data-entry error", steward),
        "U": ("resolved", "", None),
        "Q": ("open", "", None),
        "R": ("open", "", None),  # its row was rejected: it needs a steward again
    }
    ignored = missqueue_groups(user=steward, project=project, state="ignored")
    assert [(g.entry.local_value, g.runs) for g in ignored] == [
        ("Z", (third.pk, later.pk, run.pk))
    ]

    assert missqueue_reopen(actor=steward, entry=ignored[0].entry) == 3
    assert not MissQueueEntry.objects.filter(state="ignored").exists()
    assert audit_log("migration.missqueue.reopened")[-1].data == {
        "entries": 3,
        "from": "ignored",
        "to": "open",
    }


def test_missqueue_record_rejects_foreign_crosswalk(
    run: Any, other_project: Any
) -> None:
    from migration.services.crosswalks import (
        codesystem_load_packaged,
        crosswalk_create,
    )

    system = codesystem_load_packaged(
        actor="tests", slug="person_stated_gender", version="2024.1"
    )
    foreign = crosswalk_create(
        actor="tests",
        project=other_project,
        slug="b.SEX",
        name="B",
        code_system=system,
    )
    with pytest.raises(ValueError):
        missqueue_record(run=run, crosswalk=foreign, counts={"Z": 1})
    assert not MissQueueEntry.objects.exists()
