"""A source the product never saw, end to end through the services: Synthea's
CSV extract (UUID keys, ISO timestamps with a ``Z``, its own codes, every kind
of encounter in one file) into the PMI, ADT and OPD tables of the target.

As a migration team would: register the extract as a CSV connector and
snapshot it; let the suggestions propose what they can; the DM engineer
writes the mapping the extract needs -- spells are the inpatient encounters,
appointments the outpatient and ambulatory ones (exclusions on a column no
target field holds), appointment numbers from the encounters' UUIDs
(``stable_number``), the codes the extract lacks set as agreed constants --
and a steward imports it and builds the gender crosswalk; a second steward
approves it all, the exclusion rules included (four-eyes); the contract is published and run. Every source
row is accounted for, and the published rows are the rows the CSV files
hold, counted here independently of the product.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from connectors.services import connector_create
from connectors.sinks.sqlite import SqliteSink
from governance.audit import Refused
from migration.adapters import engine_run_id
from migration.models import (
    CrosswalkRow,
    ExclusionRule,
    FieldMapping,
    ReviewStatus,
    RunState,
)
from migration.services.contracts import (
    contract_blockers,
    contract_publish,
    contract_spec_html,
    contract_spec_markdown,
)
from migration.services.crosswalks import (
    codesystem_load_packaged,
    crosswalk_create,
    crosswalk_row_create,
    crosswalk_row_propose,
    crosswalk_rows_bulk_approve,
)
from migration.services.mappings import (
    exclusion_rule_approve,
    exclusion_rules_bulk_approve,
    field_mapping_needs_rationale,
    field_mapping_update,
    field_mappings_bulk_approve,
    mapping_set_create,
    mapping_set_import_contract,
)
from migration.services.runs import run_start
from migration.services.snapshots import snapshot_extract
from migration.services.suggestions import mapping_suggestions_apply
from tests.engine.synthea_kit import (
    INPATIENT,
    OUTPATIENT,
    SYNTHEA,
    synthea_contract,
)

pytestmark = pytest.mark.django_db


def _csv(name: str) -> list[dict[str, str]]:
    with (SYNTHEA / f"{name}.csv").open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _stable(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def test_a_synthea_extract_migrates_into_pmi_adt_and_opd(
    project: Any,
    dm_engineer: Any,
    steward: Any,
    steward2: Any,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    if not (SYNTHEA / "encounters.csv").exists():
        pytest.fail(f"the Synthea extract is missing at {SYNTHEA}")
    extract = tmp_path / "synthea"
    shutil.copytree(SYNTHEA, extract, ignore=shutil.ignore_patterns("*.md"))
    source = connector_create(
        actor=dm_engineer,
        project=project,
        name="Synthea extract",
        kind="csv",
        role="source",
        config={"path": str(extract), "landing_dir": str(tmp_path / "land")},
    )
    target = connector_create(
        actor=dm_engineer,
        project=project,
        name="EPR staging",
        kind="sqlite",
        role="target",
        config={"path": str(tmp_path / "target.sqlite3")},
    )
    snapshot = snapshot_extract(actor=dm_engineer, connector=source)

    # The suggestions see the UUID keys for what they are: a BIGINT key gets
    # a stable number, not a to_integer that would reject every row.
    suggested = mapping_set_create(
        actor=dm_engineer, project=project, name="Suggested", source_snapshot=snapshot
    )
    mapping_suggestions_apply(actor=steward, mapping_set=suggested)
    appt_id = FieldMapping.objects.get(
        table_mapping__mapping_set=suggested,
        table_mapping__target_table="outpatient_appointment",
        target_field="appointment_id",
    )
    assert appt_id.source_columns == ["Id"]
    assert [s["name"] for s in appt_id.transforms] == ["trim", "stable_number"]
    # A reference table's key named just "Id" is found too.
    code = FieldMapping.objects.get(
        table_mapping__mapping_set=suggested,
        target_field="care_professional_code",
    )
    assert (code.table_mapping.source_table, code.source_columns) == (
        "providers",
        ["Id"],
    )

    # A steward builds the gender crosswalk and imports the mapping the DM
    # engineer wrote; a second steward approves both.
    gender = crosswalk_create(
        actor=steward,
        project=project,
        slug="synthea.GENDER",
        name="Synthea GENDER",
        # National code systems are loaded by staff or the system, not stewards.
        code_system=codesystem_load_packaged(
            actor="system", slug="person_stated_gender", version="2024.1"
        ),
        local_table="patients.GENDER",
    )
    for local, national in [("M", "1"), ("F", "2")]:
        row = crosswalk_row_create(
            actor=steward,
            crosswalk=gender,
            local_code=local,
            target_code=national,
            equivalence="equal",
        )
        crosswalk_row_propose(actor=steward, row=row)
    mapping_set = mapping_set_import_contract(
        actor=steward,
        project=project,
        source_snapshot=snapshot,
        contract=synthea_contract(),
        name="Synthea to EPR",
    )
    fields = FieldMapping.objects.filter(table_mapping__mapping_set=mapping_set)
    assert {fm.status for fm in fields} == {ReviewStatus.PROPOSED}
    # Constants and codes without a crosswalk need the author's reason first.
    for fm in fields:
        if field_mapping_needs_rationale(fm):
            field_mapping_update(
                actor=steward,
                mapping=fm,
                rationale="Not in the extract: agreed with the clinical safety officer.",
            )
    field_mappings_bulk_approve(actor=steward2, ids=[fm.pk for fm in fields])
    crosswalk_rows_bulk_approve(
        actor=steward2,
        ids=list(
            CrosswalkRow.objects.filter(crosswalk=gender).values_list("pk", flat=True)
        ),
    )
    # Which encounters each table takes is reviewed like a field: the rules
    # came in proposed, their importer may not approve them, another may.
    rules = ExclusionRule.objects.filter(table_mapping__mapping_set=mapping_set)
    assert sorted(r.rule_id for r in rules) == ["SYN-IP", "SYN-OP"]
    assert contract_blockers(mapping_set=mapping_set) == [
        "exclusion rule SYN-IP of inpatient_spell is proposed, not approved",
        "exclusion rule SYN-OP of outpatient_appointment is proposed, not approved",
    ]
    with pytest.raises(Refused) as four_eyes:
        exclusion_rule_approve(actor=steward, rule=rules[0])
    assert four_eyes.value.code == "four_eyes"
    exclusion_rules_bulk_approve(actor=steward2, ids=[r.pk for r in rules])
    assert contract_blockers(mapping_set=mapping_set) == []
    contract = contract_publish(actor=dm_engineer, mapping_set=mapping_set)
    body = {t["target"]: t.get("exclude", []) for t in contract.body["tables"]}
    assert body["inpatient_spell"][0]["column"] == "ENCOUNTERCLASS"
    # The published specification says which encounters each table takes.
    said = (
        "Exclusion rule `SYN-OP`: rows where source column ENCOUNTERCLASS is "
        'none of "ambulatory", "outpatient" are excluded '
        "(not_an_outpatient_encounter)."
    )
    assert said in contract_spec_markdown(contract)
    assert (
        "rows where source column ENCOUNTERCLASS is none of &quot;inpatient&quot;"
        in (contract_spec_html(contract))
    )

    with django_capture_on_commit_callbacks(execute=True):
        run = run_start(
            actor=dm_engineer,
            contract=contract,
            source=source,
            target=target,
            profile="development",
            as_of=dt.date(2026, 11, 1),
        )
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.error
    ledger = {t.target_table: t for t in run.tables.all()}
    assert set(ledger) == {
        "care_professional",
        "clinic",
        "patient",
        "inpatient_spell",
        "outpatient_appointment",
    }
    assert all(t.ledger_balanced for t in ledger.values())

    # What the CSV files hold, counted here without the product.
    patients = _csv("patients")
    encounters = _csv("encounters")
    inpatient = [e for e in encounters if e["ENCOUNTERCLASS"] in INPATIENT]
    outpatient = [e for e in encounters if e["ENCOUNTERCLASS"] in OUTPATIENT]
    expected = {
        "care_professional": (len(_csv("providers")), 0),
        "clinic": (len(_csv("organizations")), 0),
        "patient": (len(patients), 0),
        "inpatient_spell": (len(encounters), len(encounters) - len(inpatient)),
        "outpatient_appointment": (len(encounters), len(encounters) - len(outpatient)),
    }
    for table, (source_rows, excluded) in expected.items():
        t = ledger[table]
        assert (t.rows_total, t.rows_excluded) == (source_rows, excluded), table
        assert t.rows_loaded + t.rows_rejected == source_rows - excluded, table
    # Clean data: nothing rejected, so every in-scope row is published.
    rejected = {t: ledger[t].rows_rejected for t in ledger}
    assert rejected == dict.fromkeys(ledger, 0), list(
        run.rejects.values_list("target_table", "reason")[:10]
    )

    sink = SqliteSink(tmp_path / "target.sqlite3")

    def published(table: str, column: str) -> dict[str, Any]:
        return dict(
            sink.query(f"SELECT _source_key, {column} FROM {sink.qualified(table)}")
        )

    assert published("inpatient_spell", "spell_number") == {
        e["Id"]: e["Id"].upper() for e in inpatient
    }
    assert published("outpatient_appointment", "appointment_id") == {
        e["Id"]: _stable(e["Id"]) for e in outpatient
    }
    assert published("patient", "gender") == {
        p["Id"]: {"M": "1", "F": "2"}[p["GENDER"]] for p in patients
    }
    # The excluded encounters are on record with the value that excluded them.
    records = sink.rejects(engine_run_id(run))
    excluded = [r for r in records if r["target_table"] == "inpatient_spell"]
    assert len(excluded) == len(encounters) - len(inpatient)
    assert {(r["action"], r["rule_id"], r["column_name"]) for r in excluded} == {
        ("exclude", "SYN-IP", "ENCOUNTERCLASS")
    }
    assert {r["raw_value"] for r in excluded} == {
        e["ENCOUNTERCLASS"] for e in encounters if e["ENCOUNTERCLASS"] not in INPATIENT
    }
    # The run's page says why the rows left out were left out.
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(steward)
    page = client.get(
        reverse("migration:run-detail", args=[project.pk, run.pk])
    ).content.decode()
    n_ip = len(encounters) - len(inpatient)
    n_op = len(encounters) - len(outpatient)
    assert f"inpatient_spell: not_an_inpatient_encounter {n_ip}" in page
    assert f"outpatient_appointment: not_an_outpatient_encounter {n_op}" in page
