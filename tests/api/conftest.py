"""Objects every API route needs, for two projects, built through services/ORM.

``world`` holds project A's objects (the personas' project) and ``world_b``
project B's (``other_steward``'s), each with: connectors (source + target), a
schema snapshot, a mapping set with a table and a field mapping, a code system
with a crosswalk, a row and a miss-queue entry, a contract, runs in every state
an action needs (succeeded with tables, report and rejects; failed; queued), a
gate evaluation, a pending waiver, a sign-off and an evidence export.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from connectors.models import Connector
from governance.evidence import evidence_export
from governance.gates import gate_evaluate, waiver_request
from governance.models import MigrationProject
from governance.services import membership_grant
from governance.signoffs import signoff_record
from migration.engine.report import ColumnMetrics, FkChain, RunReport, TableReport
from migration.models import (
    CodeSystem,
    Concept,
    Crosswalk,
    CrosswalkRow,
    ExclusionRule,
    FieldMapping,
    MappingSet,
    MissQueueEntry,
    RejectRecord,
    Run,
    RunState,
    RunTable,
    SchemaSnapshot,
    TableMapping,
)
from migration.services.contracts import contract_import_default

#: A patient-identifiable value planted in rejects: must never show unmasked to
#: anyone without view_pid.
PID_VALUE = "9434765919"
#: A secret-looking reference planted in connector configs: never shown.
SECRET_REF = "env:PAS_CANARY_LEGACY_PASSWORD"


def _report(run: Run) -> dict[str, Any]:
    table = TableReport(
        table="patient",
        source_table="PA_PatMas",
        source_rows=100,
        rows_read=100,
        rows_loaded=97,
        rows_rejected=2,
        rows_excluded=1,
        ledger_balanced=True,
        rejects_by_reason={"nhs_number_invalid": 2},
        excluded_by_rule={"test_patient": 1},
        columns=[
            ColumnMetrics(
                name="nhs_number",
                source_columns="NHSNo",
                checksum_source=[1],
                checksum_target=[1],
                checksum_match=True,
                dqmi={"coverage": 98.0},
            )
        ],
        seconds=0.5,
    )
    report = RunReport(
        run_id=f"run-{run.pk}",
        contract_name="legacy_pas_default",
        contract_version=str(run.contract.version),
        contract_sha256=run.contract.sha256,
        target_model="nhs_pas_target 1",
        as_of="2025-01-01",
        status="succeeded",
        tables=[table],
        fk_chains=[FkChain("inpatient_spell", "patient_id", "patient", "id", 10, 0)],
        flagged=[{"source_key": "P1", "value": PID_VALUE}],
        reject_csv="/srv/secret/path/rejects.csv",
    )
    return report.to_dict()


def build_world(
    project: MigrationProject, suffix: str, tmp_path: Any
) -> dict[str, Any]:
    """Return a dict of named objects of ``project`` (see the module docstring)."""
    w: dict[str, Any] = {"project": project}
    legacy = tmp_path / f"legacy-{suffix}.sqlite3"
    with sqlite3.connect(legacy) as db:
        db.execute("CREATE TABLE PA_PatMas (PatID INTEGER PRIMARY KEY, NHSNo TEXT)")
        db.executemany(
            "INSERT INTO PA_PatMas VALUES (?, ?)", [(1, "943 476 5919"), (2, None)]
        )
    w["source"] = Connector.objects.create(
        project=project,
        name=f"legacy-{suffix}",
        kind="sqlite",
        role="source",
        config={"path": str(legacy)},
    )
    w["target"] = Connector.objects.create(
        project=project,
        name=f"target-{suffix}",
        kind="postgresql",
        role="target",
        config={
            "host": "127.0.0.1",
            "dbname": "target",
            "user": "loader",
            "password": SECRET_REF,
        },
        secret_refs={"password": SECRET_REF},
    )
    w["snapshot"] = SchemaSnapshot.objects.create(
        project=project,
        connector=w["source"],
        tables=[
            {
                "name": "PA_PatMas",
                "columns": [
                    {"name": "PatID", "type": "INTEGER", "nullable": False},
                    {"name": "NHSNo", "type": "TEXT", "nullable": True},
                ],
                "primary_key": ["PatID"],
                "foreign_keys": [],
                "row_count": 100,
            }
        ],
        fingerprint="f" * 64,
    )
    w["snapshot2"] = SchemaSnapshot.objects.create(
        project=project,
        connector=w["source"],
        tables=[
            {
                "name": "PA_PatMas",
                "columns": [{"name": "PatID", "type": "INTEGER", "nullable": False}],
                "primary_key": ["PatID"],
                "foreign_keys": [],
                "row_count": 101,
            }
        ],
        fingerprint="e" * 64,
    )
    w["mapping_set"] = MappingSet.objects.create(
        project=project,
        name=f"PAS to target {suffix}",
        source_snapshot=w["snapshot"],
        target_model_version="1",
    )
    w["table_mapping"] = TableMapping.objects.create(
        mapping_set=w["mapping_set"],
        target_table="patient",
        source_table="PA_PatMas",
        source_key="PatID",
    )
    w["field_mapping"] = FieldMapping.objects.create(
        table_mapping=w["table_mapping"],
        target_field="nhs_number",
        source_columns=["NHSNo"],
        transforms=[{"name": "trim", "args": {}}],
        status="proposed",
    )
    w["field_mapping_draft"] = FieldMapping.objects.create(
        table_mapping=w["table_mapping"],
        target_field="pas_number",
        source_columns=["PatID"],
        status="draft",
    )
    w["exclusion_rule"] = ExclusionRule.objects.create(
        table_mapping=w["table_mapping"],
        rule_id="EX-1",
        field="nhs_number",
        op="is_null",
        reason="no_nhs_number",
        status="proposed",
    )
    w["exclusion_rule_draft"] = ExclusionRule.objects.create(
        table_mapping=w["table_mapping"],
        rule_id="EX-2",
        column="Status",
        op="eq",
        values=["TEST"],
        reason="test_patient",
        status="draft",
    )
    w["code_system"], _ = CodeSystem.objects.get_or_create(
        slug="api_test_sex", version="1", defaults={"name": "Sex (test)"}
    )
    Concept.objects.get_or_create(
        code_system=w["code_system"], code="1", defaults={"display": "Male"}
    )
    w["crosswalk"] = Crosswalk.objects.create(
        project=project,
        slug=f"sex-{suffix}",
        name="Sex",
        code_system=w["code_system"],
    )
    w["crosswalk_row"] = CrosswalkRow.objects.create(
        crosswalk=w["crosswalk"],
        local_code="M",
        target_code="1",
        equivalence="equal",
        status="proposed",
    )
    w["crosswalk_row_draft"] = CrosswalkRow.objects.create(
        crosswalk=w["crosswalk"],
        local_code="U",
        target_code="1",
        equivalence="equal",
        status="draft",
    )
    w["contract"] = contract_import_default(actor="tests", project=project)
    w["run_ok"] = Run.objects.create(
        project=project,
        contract=w["contract"],
        source=w["source"],
        target=w["target"],
        state=RunState.SUCCEEDED,
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )
    w["run_ok"].report = _report(w["run_ok"])
    w["run_ok"].save(update_fields=["report"])
    RunTable.objects.create(
        run=w["run_ok"],
        target_table="patient",
        source_table="PA_PatMas",
        rows_total=100,
        rows_read=100,
        rows_loaded=97,
        rows_rejected=2,
        rows_excluded=1,
        ledger_balanced=True,
        stage="done",
        metrics={"columns": [], "dqmi": {}, "rejects_by_reason": {}},
    )
    for key in ("P1", "P2"):
        RejectRecord.objects.create(
            run=w["run_ok"],
            target_table="patient",
            source_table="PA_PatMas",
            source_key=key,
            column="NHSNo",
            raw_value=PID_VALUE,
            rule_id="pmi.nhs_number",
            reason_code="nhs_number_invalid",
        )
    w["run_failed"] = Run.objects.create(
        project=project,
        contract=w["contract"],
        source=w["source"],
        target=w["target"],
        state=RunState.FAILED,
        error="worker lost",
    )
    w["run_queued"] = Run.objects.create(
        project=project,
        contract=w["contract"],
        source=w["source"],
        target=w["target"],
    )
    w["miss"] = MissQueueEntry.objects.create(
        crosswalk=w["crosswalk"], local_value="X", frequency=3, run=w["run_ok"]
    )
    w["miss_ignored"] = MissQueueEntry.objects.create(
        crosswalk=w["crosswalk"],
        local_value="Y",
        frequency=1,
        run=w["run_ok"],
        state=MissQueueEntry.State.IGNORED,
        note="a data-entry error",
    )
    return w


def _grant(project: MigrationProject, user: Any, role: str) -> Any:
    membership_grant(actor="tests", project=project, user=user, role=role)
    return user


@pytest.fixture
def world(
    project: Any,
    dm_engineer: Any,
    steward: Any,
    auditor: Any,
    migration_lead: Any,
    ig_lead: Any,
    tmp_path: Any,
    settings: Any,
) -> dict[str, Any]:
    settings.PAS_DATA_DIR = tmp_path / "data"
    w = build_world(project, "a", tmp_path)
    w["gate"] = gate_evaluate(actor=dm_engineer, run=w["run_ok"], profile="development")
    w["waiver"] = waiver_request(
        actor=migration_lead,
        project=project,
        check_id="reject_rate",
        profile="pre_production",
        reason="known legacy defect",
        expires_at=timezone.now() + dt.timedelta(days=7),
    )
    w["signoff"] = signoff_record(
        actor=ig_lead, run=w["run_ok"], role="ig_lead", decision="approve"
    )
    w["evidence"] = evidence_export(
        actor=auditor, run=w["run_ok"], out_path=tmp_path / "evidence-a.zip"
    )
    w["audit_event"] = _last_event(project)
    return w


def _last_event(project: MigrationProject) -> Any:
    from governance.models import AuditEvent

    return AuditEvent.objects.filter(project_id=project.pk).order_by("-seq").first()


@pytest.fixture
def world_b(
    other_project: Any, other_steward: Any, make_user: Any, tmp_path: Any
) -> dict[str, Any]:
    w = build_world(other_project, "b", tmp_path)
    lead = _grant(other_project, make_user("lead.b"), "migration_lead")
    ig = _grant(other_project, make_user("ig.b"), "ig_lead")
    aud = _grant(other_project, make_user("auditor.b"), "auditor")
    w["gate"] = gate_evaluate(actor=lead, run=w["run_ok"], profile="development")
    w["waiver"] = waiver_request(
        actor=lead,
        project=other_project,
        check_id="reject_rate",
        profile="pre_production",
        reason="known legacy defect",
        expires_at=timezone.now() + dt.timedelta(days=7),
    )
    w["signoff"] = signoff_record(
        actor=ig, run=w["run_ok"], role="ig_lead", decision="approve"
    )
    w["evidence"] = evidence_export(
        actor=aud, run=w["run_ok"], out_path=tmp_path / "evidence-b.zip"
    )
    w["audit_event"] = _last_event(other_project)
    return w


@pytest.fixture
def token_user(make_user: Any, project: Any) -> Any:
    """A REST client account holding the DM engineer role, with a DRF token."""
    user = _grant(project, make_user("ci.client"), "dm_engineer")
    user.api_token = Token.objects.create(user=user).key
    return user


@pytest.fixture
def clients(
    dm_engineer: Any,
    steward: Any,
    other_steward: Any,
    auditor: Any,
    token_user: Any,
) -> dict[str, APIClient]:
    """One API client per matrix role; the token client authenticates by header."""
    out: dict[str, APIClient] = {"anon": APIClient()}
    for role, user in (
        ("dm", dm_engineer),
        ("steward", steward),
        ("other", other_steward),
        ("auditor", auditor),
    ):
        client = APIClient()
        client.force_login(user)
        out[role] = client
    token = APIClient()
    token.credentials(HTTP_AUTHORIZATION=f"Token {token_user.api_token}")
    out["token"] = token
    return out
