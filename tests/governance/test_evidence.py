"""Evidence bundles: round trip through verify_evidence, and every tamper is named."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from governance.audit import Refused
from governance.evidence import evidence_export, evidence_verify
from governance.gates import gate_evaluate
from governance.models import AuditEvent, EvidenceExport
from governance.signoffs import signoff_record

EXPECTED_FILES = {
    "manifest.json",
    "manifest.sha256",
    "run.json",
    "contract.json",
    "contract-spec.md",
    "contract-spec.html",
    "crosswalks.json",
    "gate-results.json",
    "ledger.json",
    "reconciliation.json",
    "rejects-summary.json",
    "signoffs.json",
    "audit-events.jsonl",
    "audit-chain.json",
}


@pytest.fixture
def bundle(
    run: Any,
    auditor: Any,
    dm_engineer: Any,
    ig_lead: Any,
    steward: Any,
    tmp_path: Path,
    other_steward: Any,
) -> Path:
    """An exported bundle of a run with a gate evaluation, sign-offs and rejects."""
    signoff_record(actor=ig_lead, run=run, role="ig_lead", decision="approve",
                   comment="")  # fmt: skip
    gate_evaluate(actor=dm_engineer, run=run, profile="cutover_ready")
    out = tmp_path / "evidence.zip"
    call_command("export_evidence", run=str(run.pk), out=str(out), user="auditor")
    return out


def _verify(path: Path) -> tuple[int, str]:
    try:
        call_command("verify_evidence", str(path))
    except CommandError as exc:
        return int(exc.returncode), str(exc)
    return 0, ""


def _rewrite(src: Path, dst: Path, name: str, change: Callable[[bytes], bytes]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info, change(data) if info.filename == name else data)


def test_export_contents_and_round_trip(
    bundle: Path, run: Any, auditor: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with zipfile.ZipFile(bundle) as zf:
        assert set(zf.namelist()) == EXPECTED_FILES
        manifest = json.loads(zf.read("manifest.json"))
        files = {f["name"]: f["sha256"] for f in manifest["files"]}
        assert set(files) == EXPECTED_FILES - {"manifest.json", "manifest.sha256"}
        for name, digest in files.items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == digest
        # The contract file's hash is the contract hash sign-offs bind to.
        assert files["contract.json"] == run.contract.sha256
        gates = json.loads(zf.read("gate-results.json"))
        reject = next(
            c
            for c in gates[0]["checks"]
            if c["check_id"] == "reject_rate" and c["scope"] == "patient"
        )
        assert (reject["numerator"], reject["denominator"]) == (8, 1000)
        summary = json.loads(zf.read("rejects-summary.json"))
        assert summary["total"] == 8 and summary["by_table"] == {"patient": 8}
        # Counts only: no raw values ever leave the database.
        for name in zf.namelist():
            assert b"943456780" not in zf.read(name), name
        signoffs = json.loads(zf.read("signoffs.json"))
        assert [s["role"] for s in signoffs] == ["ig_lead"]
        events = [json.loads(x) for x in zf.read("audit-events.jsonl").splitlines()]
        assert {e["project_id"] for e in events} == {run.project_id}
        assert "governance.signoff.recorded" in {e["action"] for e in events}
        chain = json.loads(zf.read("audit-chain.json"))
        assert chain["verdict_at_export"]["ok"] is True
        # Other projects' events are present only as links, never as content.
        segment = chain["segment"]
        others = AuditEvent.objects.filter(
            seq__gte=segment["from_seq"], seq__lte=segment["to_seq"]
        ).exclude(project_id=run.project_id)
        assert others.exists()
        assert not {e["seq"] for e in events} & set(
            others.values_list("seq", flat=True)
        )
        assert len(segment["links"]) == segment["to_seq"] - segment["from_seq"] + 1
        ledger = json.loads(zf.read("ledger.json"))
        assert [t["target_table"] for t in ledger] == ["patient", "inpatient_spell"]
    export = EvidenceExport.objects.get()
    assert export.created_by == auditor
    assert export.sha256 == hashlib.sha256(bundle.read_bytes()).hexdigest()
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.action == "governance.evidence.exported"
    assert event.data["zip_sha256"] == export.sha256

    capsys.readouterr()
    assert _verify(bundle) == (0, "")
    assert "intact" in capsys.readouterr().out
    verdict = evidence_verify(path=bundle, key=None, database=False)
    assert verdict.ok and verdict.notes  # links only without the key


def test_one_flipped_byte_in_one_file_is_named(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def flip(data: bytes) -> bytes:
        i = len(data) // 2
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]

    tampered = tmp_path / "tampered.zip"
    _rewrite(bundle, tampered, "ledger.json", flip)
    capsys.readouterr()
    code, _ = _verify(tampered)
    err = capsys.readouterr().err
    assert code == 1
    assert "ledger.json: SHA-256" in err
    assert "reconciliation.json" not in err and "contract.json" not in err


def test_a_tampered_audit_row_is_named(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(data: bytes) -> bytes:
        rows = [json.loads(x) for x in data.splitlines()]
        victim = next(r for r in rows if r["action"] == "governance.signoff.recorded")
        victim["data"]["decision"] = "reject"
        return b"".join(
            json.dumps(r, sort_keys=True, ensure_ascii=False).encode() + b"\n"
            for r in rows
        )

    with zipfile.ZipFile(bundle) as zf:
        rows = [json.loads(x) for x in zf.read("audit-events.jsonl").splitlines()]
    seq = next(r["seq"] for r in rows if r["action"] == "governance.signoff.recorded")
    tampered = tmp_path / "tampered-audit.zip"
    _rewrite(bundle, tampered, "audit-events.jsonl", edit)
    capsys.readouterr()
    code, _ = _verify(tampered)
    err = capsys.readouterr().err
    assert code == 1
    assert (
        f"audit event #{seq} (governance.signoff.recorded): content does not match "
        "its HMAC" in err
    )
    assert "audit-events.jsonl: SHA-256" in err
    # Offline and without the key, the manifest still catches the file change,
    # and the live database comparison alone also names the event.
    offline = evidence_verify(path=tampered, key=None, database=False)
    assert any(p.startswith("audit-events.jsonl: SHA-256") for p in offline.problems)
    live = evidence_verify(path=tampered, key=None, database=True)
    assert any(
        p.startswith(f"audit event #{seq} ") and "live database" in p
        for p in live.problems
    )


def test_a_rewritten_manifest_is_caught(bundle: Path, tmp_path: Path) -> None:
    def rewrite(data: bytes) -> bytes:
        manifest = json.loads(data)
        manifest["created_by"] = "someone.else"
        return json.dumps(manifest, indent=2).encode()

    tampered = tmp_path / "manifest.zip"
    _rewrite(bundle, tampered, "manifest.json", rewrite)
    verdict = evidence_verify(path=tampered, key=None, database=True)
    assert any(p.startswith("manifest.json: SHA-256") for p in verdict.problems)
    assert any("no export of run" in p for p in verdict.problems)


def test_an_added_file_is_named(bundle: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.zip"
    _rewrite(bundle, extra, "", lambda d: d)
    with zipfile.ZipFile(extra, "a") as zf:
        zf.writestr("notes.txt", b"unlisted")
    verdict = evidence_verify(path=extra, key=None, database=False)
    assert verdict.problems == ["notes.txt: in the bundle but not in the manifest"]


@pytest.mark.parametrize("who", ["steward", "dm_engineer", "other_steward", "outsider"])
def test_export_refused_without_export_evidence(
    run: Any, who: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    person = request.getfixturevalue(who)
    out = tmp_path / "no.zip"
    with pytest.raises(Refused) as exc:
        evidence_export(actor=person, run=run, out_path=out)
    assert exc.value.code == "permission"
    assert not out.exists()
    assert EvidenceExport.objects.count() == 0
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.action == "governance.evidence.refused"


def test_export_command_bad_ids(
    run: Any, auditor: Any, steward: Any, tmp_path: Path
) -> None:
    out = str(tmp_path / "x.zip")
    with pytest.raises(CommandError, match="no run with id '999999'") as exc:
        call_command("export_evidence", run="999999", out=out, user="auditor")
    assert exc.value.returncode == 2
    with pytest.raises(CommandError, match="no run with id 'abc'") as exc:
        call_command("export_evidence", run="abc", out=out, user="auditor")
    assert exc.value.returncode == 2
    with pytest.raises(CommandError, match="no user 'nobody'") as exc:
        call_command("export_evidence", run=str(run.pk), out=out, user="nobody")
    assert exc.value.returncode == 2
    with pytest.raises(CommandError, match="refused") as exc:
        call_command("export_evidence", run=str(run.pk), out=out, user=steward.username)
    assert exc.value.returncode == 1


def test_verify_command_on_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such file") as exc:
        call_command("verify_evidence", str(tmp_path / "missing.zip"))
    assert exc.value.returncode == 2


def test_bundle_names_who_requested_approved_and_revoked_an_applied_waiver(
    make_run: Callable[..., Any],
    dm_engineer: Any,
    migration_lead: Any,
    ig_lead: Any,
    auditor: Any,
    tmp_path: Path,
) -> None:
    import datetime as dt

    from django.utils import timezone

    from governance.gates import waiver_approve, waiver_request, waiver_revoke

    run = make_run(patient_rejects=30)  # 3% > 1% at cutover_ready: needs a waiver
    waiver = waiver_request(
        actor=dm_engineer, project=run.project, check_id="reject_rate",
        profile="cutover_ready", reason="legacy test patients",
        expires_at=timezone.now() + dt.timedelta(days=30), target_table="patient",
    )  # fmt: skip
    waiver_approve(actor=migration_lead, waiver=waiver)
    gate_evaluate(actor=dm_engineer, run=run, profile="cutover_ready")
    waiver_revoke(actor=ig_lead, waiver=waiver, reason="clean-up not done")
    out = tmp_path / "evidence.zip"
    call_command("export_evidence", run=str(run.pk), out=str(out), user="auditor")
    with zipfile.ZipFile(out) as zf:
        (gate,) = json.loads(zf.read("gate-results.json"))
    (applied,) = gate["waivers"]
    assert applied["id"] == waiver.pk and applied["scope"] == "patient"
    assert applied["requested_by"] == dm_engineer.get_username()
    assert applied["approver"] == migration_lead.get_username()
    assert applied["revoked_by"] == ig_lead.get_username()
    assert applied["revoke_reason"] == "clean-up not done"
    assert _verify(out) == (0, "")
