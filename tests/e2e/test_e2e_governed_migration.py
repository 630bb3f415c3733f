"""End to end, through the services only, as the people involved would:

snapshot → suggestions → steward review with four-eyes → crosswalk approval →
contract published from the reviewed mapping set → run → sign-offs by each
required role → gate → auditor's evidence bundle → verify_evidence passes;
then one flipped byte in the bundle, and one edited audit row, each fail
verification naming what was tampered with.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from connectors.services import connector_create
from governance.audit import Refused
from governance.evidence import evidence_export
from governance.gates import gate_evaluate
from governance.models import AuditEvent
from governance.signoffs import signoff_record
from migration.legacypas import generate
from migration.models import CrosswalkRow, FieldMapping, ReviewStatus, RunState
from migration.services.contracts import contract_blockers, contract_publish
from migration.services.crosswalks import (
    crosswalk_row_update,
    crosswalk_rows_bulk_approve,
    crosswalks_seed_defaults,
)
from migration.services.mappings import (
    field_mapping_approve,
    field_mapping_needs_rationale,
    field_mapping_propose,
    field_mapping_update,
    field_mappings_bulk_approve,
    mapping_set_create,
)
from migration.services.runs import run_start
from migration.services.snapshots import snapshot_extract
from migration.services.suggestions import mapping_suggestions_apply

pytestmark = pytest.mark.django_db


def _verify(bundle: Path) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("verify_evidence", str(bundle), stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + err.getvalue() + str(exc)
    return 0, out.getvalue() + err.getvalue()


def _rewrite_zip(src: Path, dst: Path, name: str, mutate: Any) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            zout.writestr(item, mutate(data) if item.filename == name else data)


def test_governed_migration_end_to_end(
    project: Any,
    dm_engineer: Any,
    steward: Any,
    steward2: Any,
    migration_lead: Any,
    ig_lead: Any,
    safety_officer: Any,
    auditor: Any,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    manifest = generate(
        patients=300, seed=5, out=str(tmp_path / "src"), fmt="sqlite", defect_rate=0.02
    )
    source = connector_create(
        actor=dm_engineer,
        project=project,
        name="Legacy PAS",
        kind="sqlite",
        role="source",
        config={"path": str(tmp_path / "src" / "legacy_pas.sqlite3")},
    )
    target = connector_create(
        actor=dm_engineer,
        project=project,
        name="EPR staging",
        kind="sqlite",
        role="target",
        config={"path": str(tmp_path / "target.sqlite3")},
    )

    # 1. Snapshot and suggestions (drafts, never approved automatically).
    snapshot = snapshot_extract(actor=dm_engineer, connector=source)
    crosswalks = crosswalks_seed_defaults(actor=dm_engineer, project=project)
    mapping_set = mapping_set_create(
        actor=dm_engineer, project=project, name="PAS to EPR", source_snapshot=snapshot
    )
    mapping_suggestions_apply(actor=steward, mapping_set=mapping_set)
    drafts = list(FieldMapping.objects.filter(table_mapping__mapping_set=mapping_set))
    assert drafts and all(fm.status == ReviewStatus.DRAFT for fm in drafts)

    # 2. The author explains and proposes; she cannot approve her own work.
    for fm in drafts:
        if field_mapping_needs_rationale(fm):
            fm = field_mapping_update(
                actor=steward,
                mapping=fm,
                rationale="Checked against the legacy data dictionary and samples.",
            )
        field_mapping_propose(actor=steward, mapping=fm)
    with pytest.raises(Refused) as four_eyes:
        field_mapping_approve(actor=steward, mapping=drafts[0])
    assert four_eyes.value.code == "four_eyes"
    field_mappings_bulk_approve(actor=steward2, ids=[fm.pk for fm in drafts])
    assert (
        not FieldMapping.objects.filter(table_mapping__mapping_set=mapping_set)
        .exclude(status=ReviewStatus.APPROVED)
        .exists()
    )

    # 3. Crosswalk rows: rationale where the grade needs one, second steward approves.
    rows = CrosswalkRow.objects.filter(crosswalk__in=crosswalks)
    for row in rows.exclude(equivalence__in=["equal", "equivalent"]):
        crosswalk_row_update(
            actor=steward, row=row, rationale="No national equivalent; agreed default."
        )
    crosswalk_rows_bulk_approve(
        actor=steward2, ids=list(rows.values_list("pk", flat=True))
    )

    # 4. The reviewed mapping set becomes a contract.
    assert contract_blockers(mapping_set=mapping_set) == []
    contract = contract_publish(actor=dm_engineer, mapping_set=mapping_set)
    assert len(contract.sha256) == 64 and contract.mapping_set_id == mapping_set.pk

    # 5. The run (on the q2 path, synchronous in tests).
    with django_capture_on_commit_callbacks(execute=True):
        run = run_start(
            actor=dm_engineer,
            contract=contract,
            source=source,
            target=target,
            profile="cutover_ready",
            # The source's extract date: "future" and "age" rules are judged on it.
            as_of=dt.date.fromisoformat(str(manifest.extract_date)),
        )
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.error
    tables = {t.target_table: t for t in run.tables.all()}
    assert tables["patient"].rows_loaded > 250
    assert all(t.ledger_balanced for t in tables.values())
    assert run.rejects.exists()

    # 6. Sign-offs by every required role, bound to this run and contract.
    for user, role in [
        (migration_lead, "migration_lead"),
        (safety_officer, "clinical_safety_officer"),
        (ig_lead, "ig_lead"),
        (steward2, "data_steward"),
    ]:
        signoff = signoff_record(
            actor=user,
            run=run,
            role=role,
            decision="approve",
            comment="Reviewed the ledger and rejects.",
        )
        assert signoff.contract_sha256 == contract.sha256
    evaluation = gate_evaluate(actor=migration_lead, run=run, profile="cutover_ready")
    assert not any("missing sign-off" in r for r in evaluation.reasons)

    # 7. The auditor's bundle verifies.
    bundle = tmp_path / "evidence.zip"
    evidence_export(actor=auditor, run=run, out_path=bundle)
    code, output = _verify(bundle)
    assert code == 0, output

    # 8a. One flipped byte in one file of the bundle: named.
    flipped = tmp_path / "flipped.zip"
    _rewrite_zip(
        bundle,
        flipped,
        "ledger.json",
        lambda data: data[:10] + bytes([data[10] ^ 0x01]) + data[11:],
    )
    code, output = _verify(flipped)
    assert code == 1
    assert "ledger.json" in output

    # 8b. One edited audit row in the database: named by its sequence number.
    event = AuditEvent.objects.filter(project_id=project.pk).order_by("seq")[3]
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER IF EXISTS audit_event_append_only ON governance_auditevent"
        )
        cursor.execute(
            "UPDATE governance_auditevent SET data = '{\"tampered\": true}' WHERE seq = %s",
            [event.seq],
        )
    code, output = _verify(bundle)
    assert code == 1
    assert f"#{event.seq}" in output
    with pytest.raises(CommandError) as broken:
        call_command("verify_audit", stdout=StringIO())
    assert f"event #{event.seq}" in str(broken.value)
