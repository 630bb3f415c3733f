"""REST clients start review work as the pages do: crosswalks, then a mapping set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from connectors.models import Connector
from migration.legacypas import generate
from migration.models import FieldMapping, MappingSet
from migration.services.snapshots import snapshot_extract

pytestmark = pytest.mark.django_db


def _legacy_snapshot(project: Any, tmp_path: Path) -> Any:
    """Return the schema snapshot of a small generated legacy PAS source."""
    generate(patients=40, seed=3, out=str(tmp_path), fmt="sqlite")
    source = Connector.objects.create(
        project=project,
        name="legacy",
        kind="sqlite",
        role="source",
        config={"path": str(tmp_path / "legacy_pas.sqlite3")},
    )
    return snapshot_extract(actor="tests", connector=source)


def test_a_client_seeds_crosswalks_and_starts_the_default_mapping_set(
    project: Any, dm_engineer: Any, tmp_path: Path
) -> None:
    snapshot = _legacy_snapshot(project, tmp_path)
    client = APIClient()
    client.force_login(dm_engineer)
    early = client.post(
        "/api/v1/mapping-sets/import-default/",
        {"source_snapshot": snapshot.pk},
        format="json",
    )
    assert early.status_code == 400, early.content
    (problem,) = early.json()["error"]["fields"]["non_field_errors"]
    assert "crosswalk 'legacypas.NHSSTAT' is not managed in this project" in problem
    seeded = client.post(
        "/api/v1/crosswalks/seed-defaults/", {"project": project.pk}, format="json"
    )
    assert seeded.status_code == 200, seeded.content
    assert len(seeded.json()) == 11
    made = client.post(
        "/api/v1/mapping-sets/import-default/",
        {"source_snapshot": snapshot.pk, "name": "From the default"},
        format="json",
    )
    assert made.status_code == 201, made.content
    ms = MappingSet.objects.get(pk=made.json()["id"])
    assert ms.name == "From the default"
    fields = FieldMapping.objects.filter(table_mapping__mapping_set=ms)
    assert fields.count() == 47
    assert set(fields.values_list("author", flat=True)) == {dm_engineer.pk}


def test_a_client_proposes_an_exclusion_rule_and_another_approves_it(
    project: Any, steward: Any, steward2: Any, tmp_path: Path
) -> None:
    from migration.services.crosswalks import crosswalks_seed_defaults
    from migration.services.mappings import mapping_set_import_contract

    snapshot = _legacy_snapshot(project, tmp_path)
    crosswalks_seed_defaults(actor="tests", project=project)
    ms = mapping_set_import_contract(
        actor="tests", project=project, source_snapshot=snapshot
    )
    tm = ms.table_mappings.get(target_table="inpatient_spell")
    client = APIClient()
    client.force_login(steward)
    bad = client.post(
        "/api/v1/exclusion-rules/",
        {"table_mapping": tm.pk, "column": "PAADM_Type", "op": "eq",
         "values": ["D"], "reason": "day_case"},
        format="json",
    )  # fmt: skip
    assert bad.status_code == 400, bad.content
    assert "PA_Adm has no column 'PAADM_Type' in the snapshot" in bad.content.decode()
    made = client.post(
        "/api/v1/exclusion-rules/",
        {"table_mapping": tm.pk, "column": "PAADM_AdmMethod", "op": "in",
         "values": ["81", "82"], "reason": "transfer_not_migrated"},
        format="json",
    )  # fmt: skip
    assert made.status_code == 201, made.content
    rule = made.json()
    assert (rule["rule_id"], rule["status"], rule["author"]) == (
        "EX-1",
        "proposed",
        steward.pk,
    )
    own = client.post(f"/api/v1/exclusion-rules/{rule['id']}/approve/", {})
    assert own.status_code == 409 and "four_eyes" in own.content.decode()
    other = APIClient()
    other.force_login(steward2)
    ok = other.post(f"/api/v1/exclusion-rules/{rule['id']}/approve/", {})
    assert ok.status_code == 200 and ok.json()["status"] == "approved", ok.content
    listed = client.get(f"/api/v1/table-mappings/{tm.pk}/").json()
    assert [r["rule_id"] for r in listed["exclusion_rules"]] == ["EX-1"]
