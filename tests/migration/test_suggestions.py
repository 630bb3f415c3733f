"""Mapping suggestions on the generated legacy PAS and on a Synthea CSV extract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.kinds import get_kind
from governance.audit import Refused
from migration.engine.targets import load_target
from migration.models import FieldMapping, TableMapping
from migration.services.snapshots import schema_read
from migration.services.suggestions import (
    column_tokens,
    mapping_suggestions_apply,
    suggestions_for_snapshot,
)

# shared/ sits beside the checkout (CI lays a copy there too).
SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "synthea"

#: The right source column of every target field of nhs_pas_target v1 on the
#: generated legacy PAS (docs/legacy-pas.md), written down independently of
#: the suggester: (target table, field) -> (source table, column).
EXPECTED: dict[tuple[str, str], tuple[str, str]] = {
    ("ward", "ward_code"): ("CT_Ward", "WARD_Code"),
    ("ward", "ward_name"): ("CT_Ward", "WARD_Desc"),
    ("ward", "local_specialty_code"): ("CT_Ward", "WARD_Specialty"),
    ("clinic", "clinic_code"): ("CT_Clinic", "CLN_Code"),
    ("clinic", "clinic_name"): ("CT_Clinic", "CLN_Desc"),
    ("clinic", "local_specialty_code"): ("CT_Clinic", "CLN_Specialty"),
    ("care_professional", "care_professional_code"): ("CT_CareProv", "CTPCP_Code"),
    ("care_professional", "name"): ("CT_CareProv", "CTPCP_Desc"),
    ("care_professional", "gmc_number"): ("CT_CareProv", "CTPCP_GMCNo"),
    ("patient", "pas_number"): ("PA_PatMas", "PAPMI_No"),
    ("patient", "nhs_number"): ("PA_PatMas", "PAPMI_NHSNo"),
    ("patient", "nhs_number_status"): ("PA_PatMas", "PAPMI_NHSNoStatus"),
    ("patient", "title"): ("PA_PatMas", "PAPMI_Title"),
    ("patient", "family_name"): ("PA_PatMas", "PAPMI_Surname"),
    ("patient", "given_name"): ("PA_PatMas", "PAPMI_Forename"),
    ("patient", "date_of_birth"): ("PA_PatMas", "PAPMI_DOB"),
    ("patient", "date_of_death"): ("PA_PatMas", "PAPMI_DeceasedDate"),
    ("patient", "gender"): ("PA_PatMas", "PAPMI_Sex_DR"),
    ("patient", "ethnic_category"): ("PA_PatMas", "PAPMI_Ethnic_DR"),
    ("patient", "address_line_1"): ("PA_PatMas", "PAPMI_Address1"),
    ("patient", "address_line_2"): ("PA_PatMas", "PAPMI_Address2"),
    ("patient", "city"): ("PA_PatMas", "PAPMI_City"),
    ("patient", "postcode"): ("PA_PatMas", "PAPMI_Postcode"),
    ("patient", "gp_practice_code"): ("PA_PatMas", "PAPMI_GPPractice"),
    ("inpatient_spell", "spell_number"): ("PA_Adm", "PAADM_AdmNo"),
    ("inpatient_spell", "patient_pas_number"): ("PA_Adm", "PAADM_PAPMI_DR"),
    ("inpatient_spell", "admission_date"): ("PA_Adm", "PAADM_AdmDate"),
    ("inpatient_spell", "admission_method"): ("PA_Adm", "PAADM_AdmMethod"),
    ("inpatient_spell", "admission_source"): ("PA_Adm", "PAADM_AdmSource"),
    ("inpatient_spell", "discharge_date"): ("PA_Adm", "PAADM_DischDate"),
    ("inpatient_spell", "discharge_method"): ("PA_Adm", "PAADM_DischMethod"),
    ("inpatient_spell", "discharge_destination"): ("PA_Adm", "PAADM_DischDest"),
    ("inpatient_spell", "treatment_function"): ("PA_Adm", "PAADM_Specialty"),
    ("inpatient_spell", "consultant_code"): ("PA_Adm", "PAADM_Consultant_DR"),
    ("ward_stay", "ward_stay_id"): ("PA_WardStay", "WS_RowId"),
    ("ward_stay", "spell_number"): ("PA_WardStay", "WS_PAADM_DR"),
    ("ward_stay", "ward_code"): ("PA_WardStay", "WS_Ward_DR"),
    ("ward_stay", "start_date"): ("PA_WardStay", "WS_StartDate"),
    ("ward_stay", "end_date"): ("PA_WardStay", "WS_EndDate"),
    ("outpatient_appointment", "appointment_id"): ("RB_Appointment", "APPT_RowId"),
    ("outpatient_appointment", "patient_pas_number"): (
        "RB_Appointment",
        "APPT_PAPMI_DR",
    ),
    ("outpatient_appointment", "clinic_code"): ("RB_Appointment", "APPT_Clinic_DR"),
    ("outpatient_appointment", "appointment_at"): ("RB_Appointment", "APPT_DateTime"),
    ("outpatient_appointment", "attendance"): ("RB_Appointment", "APPT_Status"),
    ("outpatient_appointment", "outcome"): ("RB_Appointment", "APPT_Outcome"),
    ("outpatient_appointment", "priority"): ("RB_Appointment", "APPT_Priority"),
    ("outpatient_appointment", "treatment_function"): (
        "RB_Appointment",
        "APPT_Specialty",
    ),
}


def _read(kind: str, config: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    source = get_kind(kind).open(config, name="suggestion-test")
    source.connect()
    try:
        return schema_read(source)
    finally:
        source.close()


@pytest.fixture(scope="module")
def legacy_suggestions(legacy_pas_sqlite: Path) -> dict[str, Any]:
    tables, profiles = _read("sqlite", {"path": str(legacy_pas_sqlite)})
    return suggestions_for_snapshot(
        tables=tables, profiles=profiles, model=load_target()
    )


@pytest.fixture(scope="module")
def synthea_suggestions() -> dict[str, Any]:
    tables, profiles = _read("csv", {"path": str(SYNTHEA)})
    return suggestions_for_snapshot(
        tables=tables, profiles=profiles, model=load_target()
    )


def _top(suggestions: dict[str, Any], table: str, field: str) -> Any:
    ts = suggestions.get(table)
    return ts.best(field) if ts is not None else None


def test_every_target_field_has_an_expected_source() -> None:
    model = load_target()
    assert set(EXPECTED) == {(t.name, f.name) for t in model.tables for f in t.fields}


def test_legacy_pas_top_suggestion_accuracy(legacy_suggestions: dict[str, Any]) -> None:
    right, wrong = 0, []
    for (table, field), expected in EXPECTED.items():
        top = _top(legacy_suggestions, table, field)
        got = (top.source_table, top.source_column) if top else None
        if got == expected:
            right += 1
        else:
            wrong.append((table, field, got))
    rate = right / len(EXPECTED)
    print(f"legacy PAS top-1 accuracy: {right}/{len(EXPECTED)} = {rate:.3f}; {wrong}")
    assert rate >= 0.9, wrong


def test_legacy_pas_transforms_and_crosswalks(
    legacy_suggestions: dict[str, Any],
) -> None:
    def names(table: str, field: str) -> list[str]:
        return [s["name"] for s in _top(legacy_suggestions, table, field).transforms]

    assert names("patient", "date_of_birth") == ["horolog_to_date"]  # $HOROLOG ints
    adm = _top(legacy_suggestions, "inpatient_spell", "admission_date").transforms
    assert adm[-1] == {"name": "date_parse", "args": {"format": "%d/%m/%Y"}}
    assert names("patient", "nhs_number") == ["nhs_number_normalise"]
    assert names("patient", "postcode") == ["postcode_normalise"]
    assert names("inpatient_spell", "patient_pas_number") == ["lookup"]
    gender = _top(legacy_suggestions, "patient", "gender")
    assert gender.crosswalk_system == "person_stated_gender"
    assert 0 < gender.confidence <= 1


def test_nhs_number_found_by_values_when_the_name_says_nothing(
    legacy_suggestions: dict[str, Any], legacy_pas_sqlite: Path
) -> None:
    tables, profiles = _read("sqlite", {"path": str(legacy_pas_sqlite)})
    for t in tables:
        if t["name"] == "PA_PatMas":
            for c in t["columns"]:
                if c["name"] == "PAPMI_NHSNo":
                    c["name"] = "PAPMI_Fld7"
    profiles["PA_PatMas"]["PAPMI_Fld7"] = profiles["PA_PatMas"].pop("PAPMI_NHSNo")
    best = suggestions_for_snapshot(
        tables=tables, profiles=profiles, model=load_target()
    )
    assert best["patient"].best("nhs_number").source_column == "PAPMI_Fld7"


def test_tokeniser_understands_trakcare_names() -> None:
    assert column_tokens("PAPMI_NHSNo", "PAPMI") == (
        frozenset({"nhs", "number"}),
        False,
    )
    assert column_tokens("PAADM_PAPMI_DR", "PAADM") == (frozenset({"patient"}), True)
    assert column_tokens("BIRTHDATE")[0] == frozenset({"birth", "date"})
    assert column_tokens("PAPMI_Sex_DR", "PAPMI") == (frozenset({"gender"}), True)


def test_synthea_suggestions(synthea_suggestions: dict[str, Any]) -> None:
    s = synthea_suggestions
    assert s["patient"].source_table == "patients"
    assert _top(s, "patient", "date_of_birth").source_column == "BIRTHDATE"
    gender = _top(s, "patient", "gender")
    assert gender.source_column == "GENDER"
    assert gender.crosswalk_system == "person_stated_gender"
    assert _top(s, "patient", "pas_number").source_column == "Id"
    for table, start, end in [
        ("inpatient_spell", "admission_date", "discharge_date"),
        ("outpatient_appointment", "appointment_at", None),
    ]:
        assert s[table].source_table == "encounters"
        assert _top(s, table, start).source_column == "START"
        if end:
            assert _top(s, table, end).source_column == "STOP"
        assert _top(s, table, "patient_pas_number").source_column == "PATIENT"
    # ISO timestamps with a Z: parsed with that exact format.
    assert _top(s, "inpatient_spell", "admission_date").transforms[-1] == {
        "name": "date_parse",
        "args": {"format": "%Y-%m-%dT%H:%M:%SZ"},
    }


# --- the service ---------------------------------------------------------------------


@pytest.mark.django_db
def test_apply_creates_drafts_only_and_keeps_existing_work(
    mapping_set: Any,
    dm_engineer: Any,
    steward: Any,
    make_field_mapping: Any,
    audit_log: Any,
) -> None:
    from migration.services.crosswalks import crosswalks_seed_defaults

    crosswalks_seed_defaults(actor="tests", project=mapping_set.project)
    mine = make_field_mapping(steward, target_field="family_name", status="approved")
    created = mapping_suggestions_apply(actor=dm_engineer, mapping_set=mapping_set)
    assert len(created) == len(EXPECTED) - 1  # every field but the existing one
    assert {fm.status for fm in created} == {"draft"}
    assert all(fm.author == dm_engineer for fm in created)
    assert all(0 < fm.suggestion_confidence <= 1 for fm in created)
    mine.refresh_from_db()
    assert (mine.status, mine.source_columns) == ("approved", ["PAPMI_Surname"])
    tables = dict(
        TableMapping.objects.filter(mapping_set=mapping_set).values_list(
            "target_table", "source_table"
        )
    )
    assert tables["inpatient_spell"] == "PA_Adm"
    gender = FieldMapping.objects.get(
        table_mapping__mapping_set=mapping_set, target_field="gender"
    )
    assert gender.crosswalk is not None and gender.crosswalk.slug == "legacypas.SEX"
    assert gender.transforms[-1]["name"] == "crosswalk"
    assert len(audit_log("migration.field_mapping.suggested")) == len(created)
    # Running it again creates nothing new.
    assert mapping_suggestions_apply(actor=dm_engineer, mapping_set=mapping_set) == []


@pytest.mark.django_db
def test_apply_refused_without_edit_mapping(
    mapping_set: Any, auditor: Any, audit_log: Any
) -> None:
    with pytest.raises(Refused) as exc:
        mapping_suggestions_apply(actor=auditor, mapping_set=mapping_set)
    assert exc.value.code == "forbidden"
    assert not FieldMapping.objects.exists()
    assert audit_log("migration.mapping_set.suggest_refused")


def test_a_source_column_is_suggested_for_one_field_of_a_table(
    synthea_suggestions: dict[str, Any], legacy_suggestions: dict[str, Any]
) -> None:
    from migration.services.suggestions import MIN_CONFIDENCE

    patients = synthea_suggestions["patient"]
    # Top-1 alone maps the one ADDRESS column to both address lines.
    assert patients.best("address_line_1").source_column == "ADDRESS"
    assert patients.best("address_line_2").source_column == "ADDRESS"
    chosen = patients.assign(MIN_CONFIDENCE)
    assert chosen["address_line_1"].source_column == "ADDRESS"
    assert chosen.get("address_line_2") is None or (
        chosen["address_line_2"].source_column != "ADDRESS"
    )
    for suggestions in (synthea_suggestions, legacy_suggestions):
        for table in suggestions.values():
            columns = [s.source_column for s in table.assign(MIN_CONFIDENCE).values()]
            assert len(columns) == len(set(columns)), table.target_table
    # On the legacy PAS, where every field has its own column, it costs nothing.
    right = sum(
        1
        for (table, field), (src, col) in EXPECTED.items()
        if (s := legacy_suggestions[table].assign(MIN_CONFIDENCE).get(field))
        and (s.source_table, s.source_column) == (src, col)
    )
    top1 = sum(
        1
        for (table, field), (src, col) in EXPECTED.items()
        if (t := _top(legacy_suggestions, table, field))
        and (t.source_table, t.source_column) == (src, col)
    )
    assert right >= top1
    # Columns a person already mapped are no one else's.
    taken = patients.assign(MIN_CONFIDENCE, taken=["ADDRESS"])
    assert "ADDRESS" not in {s.source_column for s in taken.values()}
