"""A mapping set started from an engine contract (the packaged default by default)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from governance.audit import Refused
from governance.models import AuditEvent
from migration.engine.defaults import default_contract_dict
from migration.models import FieldMapping, MappingSet, ReviewStatus
from migration.services.contracts import contract_dict_build
from migration.services.crosswalks import crosswalks_seed_defaults
from migration.services.mappings import (
    field_mapping_approve,
    mapping_set_import_contract,
)

pytestmark = pytest.mark.django_db


def _fields(tables: list[dict[str, Any]]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        t["target"]: [
            (
                t["source"],
                t["key"],
                f["target"],
                list(f.get("source") or []),
                [(s["name"], s.get("args") or {}) for s in f.get("transforms") or []],
                f.get("lookup") or None,
            )
            for f in t["fields"]
        ]
        for t in tables
    }


def test_the_default_contract_becomes_a_mapping_set_for_review(
    project: Any, legacy_snapshot: Any, steward: Any, steward2: Any
) -> None:
    crosswalks_seed_defaults(actor="tests", project=project)
    ms = mapping_set_import_contract(
        actor=steward, project=project, source_snapshot=legacy_snapshot
    )
    default = default_contract_dict()
    fields = FieldMapping.objects.filter(table_mapping__mapping_set=ms)
    assert fields.count() == sum(len(t["fields"]) for t in default["tables"])
    assert set(fields.values_list("status", flat=True)) == {ReviewStatus.PROPOSED}
    assert set(fields.values_list("author", flat=True)) == {steward.pk}
    # What the set would freeze into is the contract it came from.
    built = contract_dict_build(mapping_set=ms)
    assert _fields(built["tables"]) == _fields(default["tables"])
    assert built["rules"] == default["rules"]
    assert built["target"] == default["target"]
    assert built["chunk_size"] == default["chunk_size"]
    # Four-eyes: the importer authored every field, so someone else approves.
    gender = fields.get(table_mapping__target_table="patient", target_field="gender")
    assert gender.crosswalk is not None and gender.crosswalk.slug == "legacypas.SEX"
    with pytest.raises(Refused) as refused:
        field_mapping_approve(actor=steward, mapping=gender)
    assert refused.value.code == "four_eyes"
    pas = fields.get(table_mapping__target_table="patient", target_field="pas_number")
    field_mapping_approve(actor=steward2, mapping=pas)
    pas.refresh_from_db()
    assert pas.status == ReviewStatus.APPROVED and pas.reviewer == steward2
    event = AuditEvent.objects.get(action="migration.mapping_set.imported")
    assert event.data["contract_sha256"] and event.data["to"] == "proposed"
    assert AuditEvent.objects.filter(
        action="migration.field_mapping.created", target_id=str(gender.pk)
    ).exists()


def test_an_import_that_cannot_work_names_the_problem_and_stores_nothing(
    project: Any, legacy_snapshot: Any, dm_engineer: Any, auditor: Any
) -> None:
    # no managed crosswalks yet
    with pytest.raises(ValidationError, match=r"crosswalk 'legacypas\.NHSSTAT' is not"):
        mapping_set_import_contract(
            actor=dm_engineer, project=project, source_snapshot=legacy_snapshot
        )
    crosswalks_seed_defaults(actor="tests", project=project)
    body = default_contract_dict()
    body["tables"][3]["fields"][1]["source"] = ["PAPMI_NHSNumber"]
    with pytest.raises(
        ValidationError, match=r"PA_PatMas has no column 'PAPMI_NHSNumber'"
    ):
        mapping_set_import_contract(
            actor=dm_engineer,
            project=project,
            source_snapshot=legacy_snapshot,
            contract=body,
        )
    body = default_contract_dict()
    body["tables"][3]["fields"][0]["transforms"] = [{"name": "eval", "args": {}}]
    with pytest.raises(ValidationError, match="the contract is not valid"):
        mapping_set_import_contract(
            actor=dm_engineer,
            project=project,
            source_snapshot=legacy_snapshot,
            contract=body,
        )
    with pytest.raises(Refused):
        mapping_set_import_contract(
            actor=auditor, project=project, source_snapshot=legacy_snapshot
        )
    assert not MappingSet.objects.filter(project=project).exists()


def test_refused_creations_of_sets_and_table_mappings_stay_in_the_trail(
    project: Any, legacy_snapshot: Any, mapping_set: Any, auditor: Any
) -> None:
    """The refusal is audited outside the creating transaction, so it survives."""
    from migration.services.mappings import mapping_set_create, table_mapping_create

    with pytest.raises(Refused):
        mapping_set_create(
            actor=auditor, project=project, name="x", source_snapshot=legacy_snapshot
        )
    with pytest.raises(Refused):
        table_mapping_create(
            actor=auditor,
            mapping_set=mapping_set,
            target_table="patient",
            source_table="PA_PatMas",
            source_key="PAPMI_RowId",
        )
    for action in (
        "migration.mapping_set.create_refused",
        "migration.table_mapping.create_refused",
    ):
        event = AuditEvent.objects.get(action=action)
        assert event.actor["username"] == auditor.username
        assert event.data["refused"] == "forbidden"
