"""Schema snapshots: extraction, diff classes, drift back to review, PID masking."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.http import Http404

from governance.audit import Refused
from migration.models import FieldMapping, SchemaSnapshot
from migration.selectors_mapping import (
    access_snapshot,
    pid_mask,
    snapshot_diff,
    snapshot_profile_for,
)
from migration.services.snapshots import (
    schema_fingerprint,
    snapshot_apply_drift,
    snapshot_extract,
)

pytestmark = pytest.mark.django_db


def test_extract_stores_tables_profiles_and_fingerprint(
    legacy_connector: Any, dm_engineer: Any, audit_log: Any
) -> None:
    snap = snapshot_extract(actor=dm_engineer, connector=legacy_connector)
    names = {t["name"] for t in snap.tables}
    assert {"PA_PatMas", "PA_Adm", "PA_WardStay", "RB_Appointment"} <= names
    patmas = next(t for t in snap.tables if t["name"] == "PA_PatMas")
    assert patmas["primary_key"] == ["PAPMI_RowId"]
    assert patmas["row_count"] == 60
    assert snap.profiles["PA_PatMas"]["PAPMI_NHSNo"]["semantic"] == "nhs_number"
    assert snap.profiles["PA_PatMas"]["PAPMI_DOB"]["semantic"] == "horolog_date"
    assert snap.fingerprint == schema_fingerprint(snap.tables)
    assert len(snap.fingerprint) == 64
    ev = audit_log("migration.snapshot.extracted", target_id=str(snap.pk))
    assert len(ev) == 1 and ev[0].data["fingerprint"] == snap.fingerprint
    # Same schema, same fingerprint; row counts do not matter.
    tables = copy.deepcopy(snap.tables)
    tables[0]["row_count"] = 999
    assert schema_fingerprint(tables) == snap.fingerprint


@pytest.mark.parametrize("persona", ["steward", "auditor", "other_steward", "outsider"])
def test_extract_needs_extract_schema(
    request: Any, persona: str, legacy_connector: Any, audit_log: Any
) -> None:
    actor = request.getfixturevalue(persona)
    with pytest.raises(Refused) as exc:
        snapshot_extract(actor=actor, connector=legacy_connector)
    assert exc.value.code == "forbidden"
    assert not SchemaSnapshot.objects.exists()
    assert audit_log("migration.snapshot.extract_refused")


def _copy(snap: SchemaSnapshot, mutate: Any) -> SchemaSnapshot:
    by_name = {t["name"]: t for t in copy.deepcopy(snap.tables)}
    mutate(by_name)
    tables = list(by_name.values())
    return SchemaSnapshot.objects.create(
        project=snap.project,
        connector=snap.connector,
        tables=tables,
        profiles=snap.profiles,
        fingerprint=schema_fingerprint(tables),
    )


def _col(table: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in table["columns"] if c["name"] == name)


def _mutate(t: dict[str, dict[str, Any]]) -> None:
    pat, adm = t["PA_PatMas"], t["PA_Adm"]
    pat["columns"] = [c for c in pat["columns"] if c["name"] != "PAPMI_Title"]
    pat["columns"].append(
        {"name": "PAPMI_Email", "type": "TEXT", "nullable": True, "primary_key": False}
    )
    _col(pat, "PAPMI_DOB")["type"] = "TEXT"  # integer -> text: breaking
    _col(pat, "PAPMI_RowId")["type"] = "BIGINT"  # integer -> integer: fine
    _col(pat, "PAPMI_Surname")["nullable"] = False  # null -> not null: breaking
    _col(pat, "PAPMI_Forename")["nullable"] = True  # already nullable: no change
    _col(adm, "PAADM_AdmNo")["nullable"] = True
    adm["primary_key"] = ["PAADM_AdmNo"]  # breaking
    del t["CT_Ward"]  # breaking
    t["PA_Extra"] = {"name": "PA_Extra", "columns": [], "primary_key": []}


def test_diff_classes_changes(legacy_snapshot: Any) -> None:
    new = _copy(legacy_snapshot, _mutate)
    diff = snapshot_diff(old=legacy_snapshot, new=new)
    got = {(c.kind, c.table, c.column): c.breaking for c in diff.changes}
    assert got == {
        ("table_removed", "CT_Ward", ""): True,
        ("table_added", "PA_Extra", ""): False,
        ("column_removed", "PA_PatMas", "PAPMI_Title"): True,
        ("column_added", "PA_PatMas", "PAPMI_Email"): False,
        ("type_changed", "PA_PatMas", "PAPMI_DOB"): True,
        ("type_changed", "PA_PatMas", "PAPMI_RowId"): False,
        ("nullability_changed", "PA_PatMas", "PAPMI_Surname"): True,
        ("primary_key_changed", "PA_Adm", ""): True,
    }
    assert snapshot_diff(old=legacy_snapshot, new=legacy_snapshot).changes == ()


def test_nullable_widening_is_not_breaking(legacy_snapshot: Any) -> None:
    def loosen(t: dict[str, dict[str, Any]]) -> None:
        _col(t["PA_PatMas"], "PAPMI_RowId")["nullable"] = True

    diff = snapshot_diff(old=legacy_snapshot, new=_copy(legacy_snapshot, loosen))
    assert [(c.kind, c.breaking) for c in diff.changes] == [
        ("nullability_changed", False)
    ]


def test_drift_returns_approved_mappings_touching_broken_columns(
    steward: Any,
    steward2: Any,
    dm_engineer: Any,
    mapping_set: Any,
    make_field_mapping: Any,
    audit_log: Any,
) -> None:
    dob = make_field_mapping(steward, target_field="date_of_birth", status="approved")
    dob.source_columns = ["PAPMI_DOB"]
    dob.save()
    surname = make_field_mapping(steward, target_field="family_name", status="approved")
    city = make_field_mapping(steward, target_field="city", status="approved")
    city.source_columns = ["PAPMI_City"]
    city.save()
    draft = make_field_mapping(steward, target_field="title", status="draft")
    draft.source_columns = ["PAPMI_Title"]
    draft.save()
    new = _copy(mapping_set.source_snapshot, _mutate)
    returned = snapshot_apply_drift(
        actor=dm_engineer, mapping_set=mapping_set, new_snapshot=new
    )
    assert {fm.pk for fm in returned} == {dob.pk, surname.pk}
    states = {
        fm.target_field: fm.status
        for fm in FieldMapping.objects.filter(
            pk__in=[dob.pk, surname.pk, city.pk, draft.pk]
        )
    }
    assert states == {
        "date_of_birth": "proposed",
        "family_name": "proposed",
        "city": "approved",
        "title": "draft",
    }
    dob.refresh_from_db()
    assert "PAPMI_DOB" in dob.review_comment and "type changed" in dob.review_comment
    mapping_set.refresh_from_db()
    assert mapping_set.source_snapshot == new
    ev = audit_log("migration.field_mapping.drift_returned")
    assert sorted(int(e.target_id) for e in ev) == sorted([dob.pk, surname.pk])
    assert all(e.data["from"] == "approved" and e.data["to"] == "proposed" for e in ev)
    assert audit_log("migration.mapping_set.drift_applied")


def test_drift_pk_change_returns_the_whole_table(
    steward: Any, mapping_set: Any, make_field_mapping: Any
) -> None:
    from migration.services.mappings import table_mapping_create

    tm = table_mapping_create(
        actor="tests",
        mapping_set=mapping_set,
        target_table="inpatient_spell",
        source_table="PA_Adm",
        source_key="PAADM_RowId",
    )
    fm = make_field_mapping(
        steward, target_field="spell_number", status="approved", table_mapping=tm
    )
    new = _copy(mapping_set.source_snapshot, _mutate)
    returned = snapshot_apply_drift(
        actor="tests", mapping_set=mapping_set, new_snapshot=new
    )
    assert fm.pk in {r.pk for r in returned}
    fm.refresh_from_db()
    assert fm.status == "proposed" and "primary key changed" in fm.review_comment


def test_drift_refused_without_edit_mapping(
    auditor: Any,
    steward: Any,
    mapping_set: Any,
    make_field_mapping: Any,
    audit_log: Any,
) -> None:
    fm = make_field_mapping(steward, status="approved")
    new = _copy(mapping_set.source_snapshot, _mutate)
    with pytest.raises(Refused) as exc:
        snapshot_apply_drift(actor=auditor, mapping_set=mapping_set, new_snapshot=new)
    assert exc.value.code == "forbidden"
    fm.refresh_from_db()
    assert fm.status == "approved"
    assert audit_log("migration.mapping_set.drift_refused")


# --- PID masking --------------------------------------------------------------------


def test_pid_mask() -> None:
    assert pid_mask("9434765919") == "943•••••19"
    assert pid_mask("M") == "•"
    assert pid_mask(None) is None


def test_profiles_are_masked_without_view_pid(
    legacy_snapshot: Any, dm_engineer: Any, audit_log: Any
) -> None:
    prof = snapshot_profile_for(
        user=dm_engineer, snapshot=legacy_snapshot, table="PA_PatMas"
    )
    raw = legacy_snapshot.profiles["PA_PatMas"]
    for col in (
        "PAPMI_NHSNo",
        "PAPMI_No",
        "PAPMI_Surname",
        "PAPMI_Forename",
        "PAPMI_DOB",
        "PAPMI_Postcode",
        "PAPMI_Address1",
    ):
        assert prof[col]["masked"] is True, col
        assert prof[col]["pid"] is True, col
        assert prof[col]["min"] != raw[col]["min"], col
        assert "•" in str(prof[col]["max"]), col
    # Codes are not PID: shown as they are.
    assert prof["PAPMI_Sex_DR"]["masked"] is False
    assert prof["PAPMI_Sex_DR"]["top"] == raw["PAPMI_Sex_DR"]["top"]
    assert not audit_log("migration.snapshot.pid_viewed")


def test_steward_with_view_pid_sees_values_and_is_audited(
    legacy_snapshot: Any, steward: Any, audit_log: Any
) -> None:
    prof = snapshot_profile_for(
        user=steward, snapshot=legacy_snapshot, table="PA_PatMas"
    )
    raw = legacy_snapshot.profiles["PA_PatMas"]
    assert prof["PAPMI_NHSNo"]["min"] == raw["PAPMI_NHSNo"]["min"]
    assert prof["PAPMI_NHSNo"]["masked"] is False
    ev = audit_log("migration.snapshot.pid_viewed", target_id=str(legacy_snapshot.pk))
    assert len(ev) == 1
    assert ev[0].data["table"] == "PA_PatMas"
    assert "PAPMI_NHSNo" in ev[0].data["columns"]
    # A table without PID writes no audit event.
    snapshot_profile_for(user=steward, snapshot=legacy_snapshot, table="CT_LocalCode")
    assert len(audit_log("migration.snapshot.pid_viewed")) == 1


def test_profiles_of_another_project_are_404(
    legacy_snapshot: Any, other_steward: Any, outsider: Any, steward: Any
) -> None:
    for user in (other_steward, outsider):
        with pytest.raises(Http404):
            snapshot_profile_for(user=user, snapshot=legacy_snapshot, table="PA_PatMas")
        with pytest.raises(Http404):
            access_snapshot(user, legacy_snapshot.pk)
    with pytest.raises(Http404):
        snapshot_profile_for(user=steward, snapshot=legacy_snapshot, table="nope")
