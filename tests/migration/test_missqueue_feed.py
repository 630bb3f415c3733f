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


def _connectors(project: Any, tmp_path: Path) -> tuple[Connector, Connector]:
    generate(
        patients=400, seed=9, out=str(tmp_path / "src"), fmt="sqlite", defect_rate=0.08
    )
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
    return source, target


def test_crosswalk_misses_reach_the_miss_queue_with_frequencies(
    project: Any,
    dm_engineer: Any,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    source, target = _connectors(project, tmp_path)
    crosswalks_seed_defaults(actor=dm_engineer, project=project)
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


def test_codes_a_lenient_lookup_defaulted_reach_the_miss_queue_too(
    project: Any,
    dm_engineer: Any,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Lenient lookups load the default instead of rejecting: still queued."""
    source, target = _connectors(project, tmp_path)
    crosswalks_seed_defaults(actor=dm_engineer, project=project)
    body = default_contract_dict()
    with_default = {x["id"] for x in body["crosswalks"] if x.get("default")}
    for table in body["tables"]:
        for f in table["fields"]:
            for step in f.get("transforms", []):
                if step["name"] == "crosswalk" and step["args"]["id"] in with_default:
                    step["args"]["mode"] = "lenient"
    contract = Contract.objects.create(
        project=project, version=1, body=body, sha256=contract_from_dict(body).sha256
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = run_start(
            actor=dm_engineer, contract=contract, source=source, target=target
        )
    run.refresh_from_db()
    assert run.state == "succeeded", run.error
    # Nothing of a lenient crosswalk was rejected as a miss ...
    assert not RejectRecord.objects.filter(
        run=run, reason_code="crosswalk_miss", crosswalk_ref__in=with_default
    ).exists()
    # ... yet its defaulted codes are in the queue, marked as defaulted, and
    # add up to the default fills the run report counted.
    lenient = MissQueueEntry.objects.filter(run=run, crosswalk__slug__in=with_default)
    assert lenient.exists()
    assert all(e.defaulted == e.frequency > 0 for e in lenient)
    fills = sum(c["lenient_fills"] for t in run.report["tables"] for c in t["columns"])
    assert sum(e.frequency for e in lenient) == fills
    # Strict crosswalks (no default) still queue their rejected misses.
    strict = MissQueueEntry.objects.filter(run=run).exclude(
        crosswalk__slug__in=with_default
    )
    assert all(e.defaulted == 0 for e in strict)
