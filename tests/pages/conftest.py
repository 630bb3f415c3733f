"""A small, real world for the page tests: generated legacy PAS, connectors, a
snapshot, suggested mappings, seeded crosswalks, a miss queue, a finished run
with rejects, a gate evaluation and a waiver — all through the services.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

# Playwright's sync API runs an event loop in this thread; Django's ORM must
# be allowed to run beside it (tests only).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

PATIENTS = 200
SCREENSHOTS = Path(os.environ.get("PAS_SCREENSHOTS", "var/screenshots")).resolve()


@pytest.fixture(scope="session")
def legacy_db(tmp_path_factory: Any) -> Path:
    from migration.legacypas import generate

    out = tmp_path_factory.mktemp("legacy")
    generate(patients=PATIENTS, seed=11, out=str(out), fmt="sqlite", defect_rate=0.03)
    return out / "legacy_pas.sqlite3"


def imported_field(
    project: Any, snapshot: Any, table: str, field: str, *, seed: bool = True
) -> Any:
    """Return ``table.field`` of a mapping set started from the default contract.

    ``seed`` first adds the packaged crosswalks the contract translates with.
    """
    from migration.models import FieldMapping
    from migration.services.crosswalks import crosswalks_seed_defaults
    from migration.services.mappings import mapping_set_import_contract

    if seed:
        crosswalks_seed_defaults(actor="tests", project=project)
    ms = mapping_set_import_contract(
        actor="tests", project=project, source_snapshot=snapshot
    )
    return FieldMapping.objects.select_related("table_mapping__mapping_set").get(
        table_mapping__mapping_set=ms,
        table_mapping__target_table=table,
        target_field=field,
    )


def build_world(
    *,
    project: Any,
    legacy_db: Path,
    work: Path,
    steward: Any,
    steward2: Any,
    dm_engineer: Any,
    migration_lead: Any,
    execute_run: bool = True,
) -> dict[str, Any]:
    """Create everything the pages show, through the services; return the objects."""
    from django.utils import timezone

    from connectors.models import Connector
    from governance.gates import gate_evaluate, waiver_request
    from migration.models import FieldMapping, ReviewStatus
    from migration.services.contracts import contract_import_default
    from migration.services.crosswalks import crosswalks_seed_defaults, missqueue_record
    from migration.services.mappings import (
        field_mapping_propose,
        mapping_set_create,
    )
    from migration.services.runs import run_start
    from migration.services.snapshots import snapshot_extract
    from migration.services.suggestions import mapping_suggestions_apply
    from migration.tasks import run_execute

    source = Connector.objects.create(
        project=project,
        name="Legacy PAS",
        kind="sqlite",
        role="source",
        config={"path": str(legacy_db)},
    )
    target = Connector.objects.create(
        project=project,
        name="EPR staging",
        kind="sqlite",
        role="target",
        config={"path": str(work / "target.sqlite3")},
    )
    snapshot = snapshot_extract(actor=dm_engineer, connector=source)
    crosswalks = crosswalks_seed_defaults(actor=dm_engineer, project=project)
    mapping_set = mapping_set_create(
        actor=dm_engineer,
        project=project,
        name="PAS to EPR v1",
        source_snapshot=snapshot,
    )
    mapping_suggestions_apply(actor=steward2, mapping_set=mapping_set)
    # steward2 authored the suggestions; propose a few for steward to review,
    # and one authored by steward herself (four-eyes: she cannot approve it).
    drafts = list(
        FieldMapping.objects.filter(
            table_mapping__mapping_set=mapping_set, status=ReviewStatus.DRAFT
        ).order_by("table_mapping__target_table", "target_field")
    )
    theirs = [fm for fm in drafts if fm.author_id == steward2.pk][:4]
    for fm in theirs:
        field_mapping_propose(actor=steward2, mapping=fm)
    mine = next(fm for fm in drafts if fm not in theirs)
    FieldMapping.objects.filter(pk=mine.pk).update(
        author=steward, last_changed_by=steward
    )
    mine.refresh_from_db()
    field_mapping_propose(actor=steward, mapping=mine)
    # A rule leaving some source rows out, proposed by steward2 (as an import
    # of a contract with exclusions leaves it): steward reviews it.
    from migration.models import ExclusionRule

    exclusion = ExclusionRule.objects.create(
        table_mapping=theirs[0].table_mapping,
        rule_id="EX-TEST",
        field=theirs[0].target_field,
        op="eq",
        values=["a value no row holds"],  # the pages' other checks see every row
        reason="test_rows",
        status=ReviewStatus.PROPOSED,
        author=steward2,
        last_changed_by=steward2,
    )
    contract = contract_import_default(actor=dm_engineer, project=project)
    world: dict[str, Any] = {
        "project": project,
        "source": source,
        "target": target,
        "snapshot": snapshot,
        "crosswalks": crosswalks,
        "mapping_set": mapping_set,
        "theirs": [FieldMapping.objects.get(pk=fm.pk) for fm in theirs],
        "mine": FieldMapping.objects.get(pk=mine.pk),
        "exclusion": exclusion,
        "contract": contract,
    }
    if not execute_run:
        return world
    run = run_start(
        actor=dm_engineer,
        contract=contract,
        source=source,
        target=target,
        profile="cutover_ready",
    )
    run_execute(run.pk)
    run.refresh_from_db()
    assert run.state == "succeeded", run.error
    world["run"] = run
    xw = crosswalks[0]
    world["misses"] = missqueue_record(
        run=run, crosswalk=xw, counts={"ZZQ": 7, "XQ1": 2}
    )
    world["evaluation"] = gate_evaluate(
        actor=migration_lead, run=run, profile="pre_production"
    )
    world["waiver"] = waiver_request(
        actor=dm_engineer,
        project=project,
        check_id=world["evaluation"]
        .checks.filter(severity="convention")
        .values_list("check_id", flat=True)
        .first()
        or "reject_rate",
        profile="pre_production",
        reason="Known legacy defects, cleansing planned before cut-over",
        expires_at=timezone.now() + dt.timedelta(days=30),
    )
    return world


@pytest.fixture
def world(
    db: Any,
    project: Any,
    other_project: Any,
    steward: Any,
    steward2: Any,
    other_steward: Any,
    dm_engineer: Any,
    migration_lead: Any,
    ig_lead: Any,
    safety_officer: Any,
    auditor: Any,
    legacy_db: Path,
    tmp_path: Path,
) -> dict[str, Any]:
    return build_world(
        project=project,
        legacy_db=legacy_db,
        work=tmp_path,
        steward=steward,
        steward2=steward2,
        dm_engineer=dm_engineer,
        migration_lead=migration_lead,
    )
