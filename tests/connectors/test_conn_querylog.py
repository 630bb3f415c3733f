"""Issue 3 item 6: every statement a source runs is in the connector's query log
(who, when, statement without literal values, rows, duration, outcome)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.models import QueryLog
from connectors.services import connector_create, connector_open
from migration.engine.errors import ReadOnlyViolation
from migration.legacypas import generate
from migration.services.snapshots import snapshot_extract

pytestmark = pytest.mark.django_db


@pytest.fixture
def legacy(project: Any, dm_engineer: Any, tmp_path: Path) -> Any:
    generate(patients=50, seed=2, out=str(tmp_path), fmt="sqlite")
    return connector_create(
        actor=dm_engineer,
        project=project,
        name="legacy",
        kind="sqlite",
        role="source",
        config={"path": str(tmp_path / "legacy_pas.sqlite3")},
    )


def test_schema_extraction_is_logged_statement_by_statement(
    legacy: Any, dm_engineer: Any
) -> None:
    snapshot_extract(actor=dm_engineer, connector=legacy)
    logs = QueryLog.objects.filter(connector=legacy)
    assert logs.count() >= 10
    assert set(logs.values_list("actor", flat=True)) == {"dm.engineer"}
    assert set(logs.values_list("outcome", flat=True)) == {"ok"}
    assert all(log.rows is not None and log.duration_ms is not None for log in logs)


def test_literals_never_reach_the_log_and_refusals_are_logged(legacy: Any) -> None:
    source = connector_open(legacy, actor="tests")
    try:
        frame = source.query(
            'SELECT "PAPMI_Surname" FROM "PA_PatMas" WHERE "PAPMI_No" = \'RXX0000001\''
        )
        with pytest.raises(ReadOnlyViolation):
            source.query('DELETE FROM "PA_PatMas"')
    finally:
        source.close()
    assert len(frame) <= 1
    ok = QueryLog.objects.get(connector=legacy, outcome="ok")
    assert "RXX0000001" not in ok.statement
    assert "PA_PatMas" in ok.statement
    refused = QueryLog.objects.get(connector=legacy, outcome="refused")
    assert refused.message  # the guard's reason
