"""Fixtures of the mapping workflow: a generated legacy PAS, its connector,
snapshot, mapping set, and factories for field mappings and crosswalks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

LEGACY_PATIENTS = 60
LEGACY_SEED = 7


@pytest.fixture(scope="session")
def legacy_pas_sqlite(tmp_path_factory: Any) -> Path:
    """A small generated legacy PAS as SQLite (read-only use: shared per session)."""
    from migration.legacypas import generate

    out = tmp_path_factory.mktemp("legacy_pas")
    generate(patients=LEGACY_PATIENTS, seed=LEGACY_SEED, out=str(out), fmt="sqlite")
    return out / "legacy_pas.sqlite3"


@pytest.fixture
def legacy_connector(db: Any, project: Any, legacy_pas_sqlite: Path) -> Any:
    from connectors.models import Connector

    return Connector.objects.create(
        project=project,
        name="legacy PAS",
        kind="sqlite",
        role="source",
        config={"path": str(legacy_pas_sqlite)},
    )


@pytest.fixture
def legacy_snapshot(legacy_connector: Any) -> Any:
    from migration.services.snapshots import snapshot_extract

    return snapshot_extract(actor="tests", connector=legacy_connector)


@pytest.fixture
def mapping_set(project: Any, legacy_snapshot: Any) -> Any:
    from migration.services.mappings import mapping_set_create

    return mapping_set_create(
        actor="tests",
        project=project,
        name="Legacy PAS to NHS PAS v1",
        source_snapshot=legacy_snapshot,
    )


@pytest.fixture
def patient_table_mapping(mapping_set: Any) -> Any:
    from migration.services.mappings import table_mapping_create

    return table_mapping_create(
        actor="tests",
        mapping_set=mapping_set,
        target_table="patient",
        source_table="PA_PatMas",
        source_key="PAPMI_RowId",
    )


@pytest.fixture
def make_field_mapping(patient_table_mapping: Any) -> Any:
    """Return a factory: a field mapping authored by ``author`` in ``status``."""
    from migration.models import FieldMapping

    def _make(
        author: Any,
        target_field: str = "family_name",
        status: str = "proposed",
        transforms: list[dict[str, Any]] | None = None,
        rationale: str = "",
        table_mapping: Any = None,
    ) -> Any:
        return FieldMapping.objects.create(
            table_mapping=table_mapping or patient_table_mapping,
            target_field=target_field,
            source_columns=["PAPMI_Surname"],
            transforms=transforms
            if transforms is not None
            else [{"name": "trim", "args": {}}],
            status=status,
            author=author,
            last_changed_by=author,
            rationale=rationale,
        )

    return _make


@pytest.fixture
def sex_crosswalk(db: Any, project: Any) -> Any:
    """An empty crosswalk of ``project`` into Person Stated Gender 2024.1."""
    from migration.services.crosswalks import (
        codesystem_load_packaged,
        crosswalk_create,
    )

    system = codesystem_load_packaged(
        actor="tests", slug="person_stated_gender", version="2024.1"
    )
    return crosswalk_create(
        actor="tests",
        project=project,
        slug="local.SEX",
        name="Local sex codes",
        code_system=system,
        default_code="X",
    )


@pytest.fixture
def audit_log(db: Any) -> Any:
    """Return a function listing the audit events of one action (plain asserts)."""
    from governance.models import AuditEvent

    def _events(action: str, **filters: Any) -> list[Any]:
        return list(AuditEvent.objects.filter(action=action, **filters))

    return _events
