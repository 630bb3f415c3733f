"""Contracts: build from an approved mapping set, publish (and its refusals), export."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from governance.audit import Refused
from governance.models import AuditEvent
from migration.engine.contract import contract_from_dict
from migration.engine.defaults import load_default_contract
from migration.models import (
    CodeSystem,
    Contract,
    Crosswalk,
    CrosswalkRow,
    FieldMapping,
    MappingSet,
    SchemaSnapshot,
    TableMapping,
)
from migration.services.contracts import (
    ContractBuildError,
    contract_build,
    contract_export_json,
    contract_import_default,
    contract_publish,
    contract_spec_html,
    contract_spec_markdown,
)

APPROVED = "approved"


@pytest.fixture
def mapping_set(project: Any, steward: Any, steward2: Any, connectors: Any) -> Any:
    """A small, fully approved mapping set: ward + patient, a strict sex crosswalk."""
    snapshot = SchemaSnapshot.objects.create(
        project=project, connector=connectors[0], tables=[], fingerprint="f" * 64
    )
    ms = MappingSet.objects.create(
        project=project,
        name="trust-a-pas",
        source_snapshot=snapshot,
        target_model_version="nhs_pas_target@1",
        options={"rule_packs": ["pmi"], "as_of": "2026-11-01", "chunk_size": 10_000},
    )
    review = {"status": APPROVED, "author": steward, "reviewer": steward2}
    system = CodeSystem.objects.create(
        slug="person_stated_gender", name="Person stated gender", version="2024.1"
    )
    sex = Crosswalk.objects.create(
        project=project, slug="sex", name="Local sex codes", code_system=system,
        version=3, default_code="X", local_table="CT_LocalCode SEX",
    )  # fmt: skip
    for local, national, grade in (("M", "1", "equal"), ("F", "2", "equal")):
        CrosswalkRow.objects.create(
            crosswalk=sex, local_code=local, local_display=local,
            target_code=national, equivalence=grade, **review,
        )  # fmt: skip
    ward = TableMapping.objects.create(
        mapping_set=ms, target_table="ward", source_table="CT_Ward",
        source_key="WARD_Code",
    )  # fmt: skip
    FieldMapping.objects.create(
        table_mapping=ward, target_field="ward_code", source_columns=["WARD_Code"],
        transforms=[{"name": "trim"}, {"name": "upper"}], **review,
    )  # fmt: skip
    patient = TableMapping.objects.create(
        mapping_set=ms, target_table="patient", source_table="PA_PatMas",
        source_key="PAPMI_RowId",
    )  # fmt: skip
    fields: list[tuple[str, list[str], list[dict[str, Any]]]] = [
        ("pas_number", ["PAPMI_No"], [{"name": "trim"}]),
        ("family_name", ["PAPMI_Surname"], [{"name": "trim"}]),
        ("given_name", ["PAPMI_Forename"], [{"name": "trim"}]),
        ("date_of_birth", ["PAPMI_DOB"], [{"name": "horolog_to_date"}]),
    ]
    for target, source, steps in fields:
        FieldMapping.objects.create(
            table_mapping=patient, target_field=target, source_columns=source,
            transforms=steps, **review,
        )  # fmt: skip
    FieldMapping.objects.create(
        table_mapping=patient, target_field="gender", source_columns=["PAPMI_Sex_DR"],
        transforms=[{"name": "trim"}, {"name": "upper"}], crosswalk=sex,
        crosswalk_strict=True, **review,
    )  # fmt: skip
    # Resolution policy: the trust has no NHS number status; left unmapped on purpose.
    FieldMapping.objects.create(
        table_mapping=patient, target_field="nhs_number_status", waived=True,
        rationale="not held by the legacy PAS", **review,
    )  # fmt: skip
    return ms


def test_build_turns_the_mapping_set_into_a_valid_engine_contract(
    mapping_set: Any,
) -> None:
    contract = contract_build(mapping_set=mapping_set)
    assert [t.target for t in contract.tables] == ["ward", "patient"]
    gender = contract.table("patient").field("gender")
    assert gender is not None
    assert gender.transforms[-1].name == "crosswalk"
    assert dict(gender.transforms[-1].args) == {"id": "sex", "mode": "strict"}
    waived = contract.table("patient").field("nhs_number_status")
    assert waived is not None and waived.source == ()
    assert waived.transforms[0].name == "constant"
    xw = contract.crosswalk_map()["sex"]
    assert (xw.version, xw.target_system, xw.target_version) == (
        "3",
        "person_stated_gender",
        "2024.1",
    )
    assert [(e.local, e.national) for e in xw.entries] == [("F", "2"), ("M", "1")]
    assert contract.rules.packs == ("pmi",)
    assert contract.rules.as_of.date == "2026-11-01"
    assert contract.chunk_size == 10_000
    # The JSON form round-trips through the engine to the same hash.
    assert contract_from_dict(contract.to_dict()).sha256 == contract.sha256


def test_build_names_the_problem_when_the_engine_rejects_it(
    mapping_set: Any,
) -> None:
    fm = FieldMapping.objects.get(target_field="family_name")
    fm.transforms = [{"name": "no_such_transform"}]
    fm.save()
    with pytest.raises(ContractBuildError, match="no_such_transform"):
        contract_build(mapping_set=mapping_set)


def test_publish_stores_body_hash_next_version_and_audits(
    mapping_set: Any, dm_engineer: Any, last_event: Callable[[str], Any]
) -> None:
    first = contract_publish(actor=dm_engineer, mapping_set=mapping_set)
    second = contract_publish(actor=dm_engineer, mapping_set=mapping_set)
    assert (first.version, second.version) == (1, 2)
    assert first.published_by == dm_engineer
    engine = contract_from_dict(first.body)
    assert engine.sha256 == first.sha256
    assert engine.version == "1"
    event = last_event("migration.contract.published")
    assert event.target_id == str(second.pk)
    assert event.data["sha256"] == second.sha256
    assert event.project_id == mapping_set.project_id


def test_publish_refused_while_a_field_mapping_is_not_approved(
    mapping_set: Any, dm_engineer: Any, last_event: Callable[[str], Any]
) -> None:
    FieldMapping.objects.filter(target_field="given_name").update(status="proposed")
    with pytest.raises(Refused) as exc:
        contract_publish(actor=dm_engineer, mapping_set=mapping_set)
    assert exc.value.code == "not_approved"
    assert "patient.given_name is proposed" in str(exc.value)
    assert Contract.objects.count() == 0
    event = last_event("migration.contract.publish_refused")
    assert event.data["refused"] == "not_approved"
    assert event.actor_id == dm_engineer.pk


def test_publish_refused_while_a_used_crosswalk_row_is_not_approved(
    mapping_set: Any, dm_engineer: Any, steward: Any
) -> None:
    sex = Crosswalk.objects.get(slug="sex")
    CrosswalkRow.objects.create(
        crosswalk=sex, local_code="U", target_code="X", equivalence="equivalent",
        status="draft", author=steward,
    )  # fmt: skip
    with pytest.raises(Refused) as exc:
        contract_publish(actor=dm_engineer, mapping_set=mapping_set)
    assert "crosswalk sex v3 row 'U' is draft" in str(exc.value)
    assert Contract.objects.count() == 0


def test_publish_refused_when_a_required_field_is_unmapped(
    mapping_set: Any, dm_engineer: Any
) -> None:
    FieldMapping.objects.filter(target_field="nhs_number_status").delete()
    with pytest.raises(Refused) as exc:
        contract_publish(actor=dm_engineer, mapping_set=mapping_set)
    assert "required target field patient.nhs_number_status is unmapped" in str(
        exc.value
    )
    assert Contract.objects.count() == 0


@pytest.mark.parametrize("who", ["steward", "other_steward", "outsider", "auditor"])
def test_publish_refused_without_publish_contract(
    mapping_set: Any, who: str, request: pytest.FixtureRequest
) -> None:
    person = request.getfixturevalue(who)
    before = AuditEvent.objects.count()
    with pytest.raises(Refused) as exc:
        contract_publish(actor=person, mapping_set=mapping_set)
    assert exc.value.code == "permission"
    assert Contract.objects.count() == 0
    refused = AuditEvent.objects.order_by("-seq").first()
    assert AuditEvent.objects.count() == before + 1
    assert refused.action == "migration.contract.publish_refused"
    assert refused.actor_id == person.pk


def test_import_default_stores_the_engine_default_and_audits(
    project: Any, migration_lead: Any, last_event: Callable[[str], Any]
) -> None:
    stored = contract_import_default(actor=migration_lead, project=project)
    engine = contract_from_dict(stored.body)
    assert stored.sha256 == engine.sha256
    assert engine.name == load_default_contract().name
    assert stored.mapping_set is None
    assert last_event("migration.contract.imported").target_id == str(stored.pk)


def test_import_default_again_stores_nothing_new_unless_it_changed(
    project: Any, migration_lead: Any
) -> None:
    first = contract_import_default(actor=migration_lead, project=project)
    events = AuditEvent.objects.count()
    again = contract_import_default(actor=migration_lead, project=project)
    assert again.pk == first.pk and Contract.objects.count() == 1
    assert AuditEvent.objects.count() == events  # no change, no event
    changed = contract_import_default(
        actor=migration_lead, project=project, chunk_size=1234
    )
    assert changed.version == first.version + 1
    assert contract_from_dict(changed.body).chunk_size == 1234
    assert Contract.objects.count() == 2


def test_import_default_refused_for_a_viewer(project: Any, viewer: Any) -> None:
    with pytest.raises(Refused):
        contract_import_default(actor=viewer, project=project)
    assert Contract.objects.count() == 0


def test_exports_come_from_the_same_engine_contract(contract: Any) -> None:
    text = contract_export_json(contract)
    # The exported file's own SHA-256 is the contract hash a sign-off binds to.
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == contract.sha256
    assert json.loads(text)["name"] == "legacy-pas-default"
    md = contract_spec_markdown(contract)
    html = contract_spec_html(contract)
    for doc in (md, html):
        assert contract.sha256 in doc
        assert "PA_PatMas" in doc and "PAPMI_RowId" in doc
        assert "legacypas.SEX" in doc
        assert "pmi" in doc
    assert md.index(contract.sha256) < md.index("## ward")
    assert (
        "translate through crosswalk legacypas.SEX@1 (strict: a miss rejects the row)"
        in md
    )
    assert "convert Caché $HOROLOG day number to a date" in md
    assert "| `M` | 1 | equal | Male |" in md
    assert "<td><code>M</code></td><td>1</td><td>equal</td><td>Male</td>" in html


def test_a_stored_body_edited_behind_our_back_is_caught(contract: Any) -> None:
    body = dict(contract.body)
    body["chunk_size"] = 7
    Contract.objects.filter(pk=contract.pk).update(body=body)
    contract.refresh_from_db()
    with pytest.raises(ContractBuildError, match="does not match the recorded"):
        contract_spec_markdown(contract)
