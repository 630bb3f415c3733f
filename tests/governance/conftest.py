"""Runs, reports, contracts and mapping sets for the governance tests.

Runs are created as rows (no engine run): their report is a real engine
``RunReport`` built from the engine's own dataclasses, so the gate code reads
exactly the shape a finished run stores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from migration.engine.report import ColumnMetrics, FkChain, RunReport, TableReport


def _columns(
    names: list[str], *, nulls: dict[str, int] | None = None, defaults: int = 0
) -> list[ColumnMetrics]:
    nulls = nulls or {}
    out = []
    for name in names:
        dqmi = {"coverage": 100.0, "completeness": 100.0, "validity": 100.0}
        used = 0
        if name in ("gender", "admission_method"):
            dqmi["default_use"] = 0.5
            used = defaults
        out.append(
            ColumnMetrics(
                name=name,
                source_columns=name.upper(),
                source_nulls=nulls.get(name, 0),
                target_nulls=nulls.get(name, 0),
                defaults_used=used,
                checksum_source=[1, 2],
                checksum_target=[1, 2],
                checksum_match=True,
                dqmi=dqmi,
            )
        )
    return out


def build_report(
    *,
    run_id: str,
    sha256: str,
    patient_rejects: int = 8,
    orphans: int = 0,
    status: str = "succeeded",
) -> RunReport:
    """Return a realistic two-table RunReport whose ledgers balance."""
    patient = TableReport(
        table="patient",
        source_table="PA_PatMas",
        source_rows=1000,
        rows_read=1000,
        rows_loaded=1000 - patient_rejects - 2,
        rows_rejected=patient_rejects,
        rows_excluded=2,
        rows_flagged=3,
        ledger_balanced=True,
        rejects_by_reason={
            "nhs_number_invalid": patient_rejects // 2,
            "crosswalk_miss": patient_rejects - patient_rejects // 2,
        },
        flags_by_reason={"possible_duplicate": 3},
        excluded_by_rule={"test_patient": 2},
        columns=_columns(
            ["pas_number", "nhs_number", "gender", "date_of_birth"],
            nulls={"nhs_number": 20},
            defaults=5,
        ),
        dqmi={"coverage": 98.0},
        seconds=1.5,
    )
    spell = TableReport(
        table="inpatient_spell",
        source_table="PA_Adm",
        source_rows=500,
        rows_read=500,
        rows_loaded=497,
        rows_rejected=3,
        ledger_balanced=True,
        rejects_by_reason={"patient_not_migrated": 3},
        columns=_columns(["spell_number", "admission_method"], defaults=2),
        seconds=0.7,
    )
    return RunReport(
        run_id=run_id,
        contract_name="legacy-pas-default",
        contract_version="1",
        contract_sha256=sha256,
        target_model="nhs_pas_target@1",
        as_of="2026-11-01",
        status=status,
        tables=[patient, spell],
        fk_chains=[
            FkChain(
                "inpatient_spell",
                "patient_pas_number",
                "patient",
                "pas_number",
                497,
                orphans,
            )
        ],
        started_at="2026-11-27T10:00:00+00:00",
        finished_at="2026-11-27T10:00:03+00:00",
    )


@pytest.fixture
def connectors(project: Any) -> tuple[Any, Any]:
    from connectors.models import Connector

    source = Connector.objects.create(
        project=project, name="legacy", kind="sqlite", role="source", config={}
    )
    target = Connector.objects.create(
        project=project, name="target", kind="sqlite", role="target", config={}
    )
    return source, target


@pytest.fixture
def contract(project: Any) -> Any:
    from migration.services.contracts import contract_import_default

    return contract_import_default(actor="tests", project=project)


@pytest.fixture
def make_run(project: Any, contract: Any, connectors: Any) -> Callable[..., Any]:
    """Return a factory of finished runs with stored report, ledger and rejects."""
    from django.utils import timezone

    from migration.models import RejectRecord, Run, RunTable

    source, target = connectors

    def _make(
        *,
        state: str = "succeeded",
        patient_rejects: int = 8,
        orphans: int = 0,
        run_contract: Any = None,
        profile: str = "cutover_ready",
    ) -> Any:
        used = run_contract or contract
        run = Run.objects.create(
            project=project,
            contract=used,
            source=source,
            target=target,
            profile=profile,
            state=state,
            started_at=timezone.now(),
            finished_at=timezone.now(),
        )
        report = build_report(
            run_id=f"run-{run.pk}",
            sha256=used.sha256,
            patient_rejects=patient_rejects,
            orphans=orphans,
            status=state if state != "running" else "running",
        )
        data = report.to_dict()
        run.report = data
        run.save(update_fields=["report"])
        for order, (table, td) in enumerate(
            zip(report.tables, data["tables"], strict=True)
        ):
            RunTable.objects.create(
                run=run,
                target_table=table.table,
                source_table=table.source_table,
                order=order,
                rows_total=table.source_rows,
                rows_read=table.rows_read,
                rows_loaded=table.rows_loaded,
                rows_rejected=table.rows_rejected,
                rows_excluded=table.rows_excluded,
                rows_flagged=table.rows_flagged,
                ledger_balanced=table.ledger_balanced,
                stage="done",
                metrics={
                    "columns": td["columns"],
                    "dqmi": td["dqmi"],
                    "rejects_by_reason": td["rejects_by_reason"],
                    "flags_by_reason": td["flags_by_reason"],
                    "excluded_by_rule": td["excluded_by_rule"],
                    "reject_rate": td["reject_rate"],
                    "ledger_difference": td["ledger_difference"],
                },
            )
        rejects = [
            RejectRecord(
                run=run,
                target_table="patient",
                source_table="PA_PatMas",
                source_key=str(1000 + i),
                column="PAPMI_NHSNo",
                raw_value=f"94345678{i:02d}",
                rule_id="PMI-002",
                reason_code="nhs_number_invalid",
            )
            for i in range(patient_rejects // 2)
        ] + [
            RejectRecord(
                run=run,
                target_table="patient",
                source_table="PA_PatMas",
                source_key=str(2000 + i),
                column="PAPMI_Sex_DR",
                raw_value="Q",
                reason_code="crosswalk_miss",
                crosswalk_ref="legacypas.SEX",
                crosswalk_version="1",
            )
            for i in range(patient_rejects - patient_rejects // 2)
        ]
        RejectRecord.objects.bulk_create(rejects)
        return run

    return _make


@pytest.fixture
def run(make_run: Callable[..., Any]) -> Any:
    return make_run()


@pytest.fixture
def last_event(db: Any) -> Callable[[str], Any]:
    """Return a finder of the newest audit event with a given action (or None)."""
    from governance.models import AuditEvent

    def _find(action: str) -> Any:
        return AuditEvent.objects.filter(action=action).order_by("-seq").first()

    return _find
