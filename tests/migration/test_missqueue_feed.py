"""A finished run feeds the miss queue with its untranslatable local codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.models import Connector
from migration.engine.contract import contract_from_dict
from migration.engine.defaults import default_contract_dict
from migration.legacypas import generate
from migration.models import Contract, MissQueueEntry, RejectRecord
from migration.services.crosswalks import crosswalks_seed_defaults
from migration.services.runs import run_start

pytestmark = pytest.mark.django_db


def test_crosswalk_misses_reach_the_miss_queue_with_frequencies(
    project: Any,
    dm_engineer: Any,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    generate(
        patients=400, seed=9, out=str(tmp_path / "src"), fmt="sqlite", defect_rate=0.08
    )
    crosswalks_seed_defaults(actor=dm_engineer, project=project)
    source = Connector.objects.create(
        project=project,
        name="legacy",
        kind="sqlite",
        role="source",
        config={"path": str(tmp_path / "src" / "legacy_pas.sqlite3")},
    )
    target = Connector.objects.create(
        project=project,
        name="target",
        kind="sqlite",
        role="target",
        config={"path": str(tmp_path / "target.sqlite3")},
    )
    body = default_contract_dict()
    contract = Contract.objects.create(
        project=project, version=1, body=body, sha256=contract_from_dict(body).sha256
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = run_start(
            actor=dm_engineer, contract=contract, source=source, target=target
        )
    misses = RejectRecord.objects.filter(run=run, reason_code="crosswalk_miss")
    assert misses.exists()
    entries = MissQueueEntry.objects.filter(run=run)
    assert (
        entries.count()
        == misses.values("crosswalk_ref", "raw_value").distinct().count()
    )
    assert sum(e.frequency for e in entries) == misses.count()
    assert {e.crosswalk.slug for e in entries} <= set(
        misses.values_list("crosswalk_ref", flat=True)
    )
