"""S5: the audit chain verifier catches every tamper and raises no false alarm."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from governance import audit
from governance.models import AuditChainHead, AuditEvent

KEY = "k" * 40


def _generated_chain(n: int) -> list[dict[str, Any]]:
    """A chain built exactly as record() builds it, without a database."""
    rows: list[dict[str, Any]] = []
    prev = audit.GENESIS
    for seq in range(1, n + 1):
        row: dict[str, Any] = {
            "seq": seq,
            "created_at": f"2026-11-27T12:00:{seq % 60:02d}.000000+00:00",
            "actor_id": seq % 3 or None,
            "actor": {"username": f"user{seq % 3}", "kind": "user"},
            "request_id": f"req{seq:08d}",
            "action": ["migration.run.started", "governance.signoff.recorded"][seq % 2],
            "target_type": "migration.run",
            "target_id": str(seq // 4),
            "project_id": 1,
            "data": {"n": seq, "note": "é ünïcode", "nested": {"k": [1, 2, seq]}},
        }
        row["prev_hash"] = prev
        row["chain_hash"] = audit.chain_hash(KEY, prev, audit.hashed_fields(row))
        prev = row["chain_hash"]
        rows.append(row)
    return rows


def _head(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"seq": rows[-1]["seq"], "chain_hash": rows[-1]["chain_hash"]}


def test_intact_chain_verifies_with_no_false_alarm() -> None:
    rows = _generated_chain(50)
    verdict = audit.verify_chain(rows, key=KEY, heads=[_head(rows)])
    assert verdict.ok, verdict.describe()
    assert verdict.checked == 50


def _mutations(
    rows: list[dict[str, Any]],
) -> list[tuple[str, list[dict[str, Any]], int]]:
    """Every single edit, deletion, insertion, reorder and truncation.

    Returns (description, tampered rows, first bad seq expected).
    """
    out: list[tuple[str, list[dict[str, Any]], int]] = []
    n = len(rows)
    fields = [
        "created_at",
        "actor_id",
        "actor",
        "request_id",
        "action",
        "target_type",
        "target_id",
        "project_id",
        "data",
        "prev_hash",
        "chain_hash",
    ]
    for i in range(n):
        for field in fields:
            tampered = copy.deepcopy(rows)
            value = tampered[i][field]
            if isinstance(value, dict):
                value = {**value, "tampered": True}
            elif isinstance(value, int):
                value = value + 1
            elif value is None:
                value = 99
            else:
                value = str(value)[:-1] + ("0" if not str(value).endswith("0") else "1")
            tampered[i][field] = value
            out.append((f"edit #{i + 1}.{field}", tampered, i + 1))
        if i < n - 1:  # deleting the last row is truncation, covered below
            deleted = copy.deepcopy(rows)
            del deleted[i]
            out.append((f"delete #{i + 1}", deleted, i + 2))
        # Insert a forged event before row i, renumbering what follows (the
        # forger cannot compute the HMAC without the key).
        inserted = copy.deepcopy(rows)
        forged = copy.deepcopy(rows[i])
        forged["data"] = {"forged": True}
        inserted.insert(i, forged)
        for j, row in enumerate(inserted):
            row["seq"] = j + 1
        out.append((f"insert before #{i + 1}", inserted, i + 1))
        if i < n - 1:
            swapped = copy.deepcopy(rows)
            swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
            # The verifier meets #i+2 where #i+1 should be, and names it.
            out.append(
                (f"swap #{i + 1} and #{i + 2} keeping their seq", swapped, i + 2)
            )
            renumbered = copy.deepcopy(swapped)
            renumbered[i]["seq"], renumbered[i + 1]["seq"] = i + 1, i + 2
            out.append((f"reorder #{i + 1} and #{i + 2} renumbered", renumbered, i + 1))
    for keep in range(0, n):
        out.append((f"truncate to {keep}", copy.deepcopy(rows[:keep]), keep + 1))
    return out


def test_every_single_tamper_is_detected_at_the_right_event() -> None:
    rows = _generated_chain(24)
    head = _head(rows)
    mutations = _mutations(rows)
    assert len(mutations) > 300
    for description, tampered, first_bad in mutations:
        verdict = audit.verify_chain(tampered, key=KEY, heads=[head])
        assert not verdict.ok, f"undetected: {description}"
        assert verdict.first_bad_seq == first_bad, (description, verdict.describe())


def test_wrong_key_is_detected() -> None:
    rows = _generated_chain(3)
    assert not audit.verify_chain(rows, key="another-key" * 4).ok


# --- the database chain and the verify_audit command -----------------------


def _record_some(n: int) -> None:
    for i in range(n):
        audit.record(actor="tests", action="tests.thing.happened", data={"i": i})


def _drop_triggers() -> None:
    """What an attacker with database access does first."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "DROP TRIGGER IF EXISTS audit_event_append_only ON governance_auditevent"
            )
        else:
            cursor.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
            cursor.execute("DROP TRIGGER IF EXISTS audit_event_no_delete")


def _verify(tmp_head: Path) -> tuple[int, str]:
    try:
        call_command("verify_audit", "--head", str(tmp_head))
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, ""


@pytest.fixture
def chain(
    db: Any, tmp_path: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> Path:
    """Eight events and their exported head; rolled back after the test.

    Tampering (triggers dropped, rows edited) happens inside the test's
    transaction, so it is undone with it.
    """
    settings.PAS_AUDIT_HEAD_FILE = tmp_path / "head.json"
    with django_capture_on_commit_callbacks(execute=True):
        _record_some(8)
    assert (tmp_path / "head.json").exists()  # exported on commit
    return tmp_path / "head.json"


def test_record_builds_a_verifiable_chain(chain: Path) -> None:
    assert AuditEvent.objects.count() == 8
    assert list(AuditEvent.objects.values_list("seq", flat=True)) == list(range(1, 9))
    head = json.loads(chain.read_text())
    assert head["seq"] == 8
    assert _verify(chain) == (0, "")


def test_orm_refuses_updates_and_deletes(chain: Path) -> None:
    event = AuditEvent.objects.first()
    assert event is not None
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().update(action="x.y.z")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()


def test_database_triggers_refuse_raw_updates(chain: Path) -> None:
    with pytest.raises(Exception, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE governance_auditevent SET action = 'x.y.z' WHERE seq = 2"
            )


@pytest.mark.parametrize(
    ("sql", "first_bad"),
    [
        ("UPDATE governance_auditevent SET data = '{\"i\": 99}' WHERE seq = 3", "#3"),
        ("DELETE FROM governance_auditevent WHERE seq = 4", "#5"),
        ("UPDATE governance_auditevent SET seq = seq + 100 WHERE seq = 6", "#7"),
    ],
    ids=["edit", "delete", "reorder"],
)
def test_verify_audit_names_the_first_bad_event(
    chain: Path, sql: str, first_bad: str
) -> None:
    _drop_triggers()
    with connection.cursor() as cursor:
        cursor.execute(sql)
    code, message = _verify(chain)
    assert code == 1
    assert f"event {first_bad}" in message


def test_verify_audit_detects_insertion(chain: Path) -> None:
    _drop_triggers()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE governance_auditevent SET seq = seq + 1000 WHERE seq >= 5"
        )
        cursor.execute(
            "UPDATE governance_auditevent SET seq = seq - 999 WHERE seq >= 1005"
        )
        cursor.execute(
            "INSERT INTO governance_auditevent (seq, created_at, actor_id, actor, request_id,"
            " action, target_type, target_id, project_id, data, prev_hash, chain_hash)"
            " SELECT 5, created_at, actor_id, actor, request_id, action, target_type,"
            " target_id, project_id, data, chain_hash, chain_hash"
            " FROM governance_auditevent WHERE seq = 4"
        )
    code, message = _verify(chain)
    assert code == 1
    assert "event #5" in message


def test_verify_audit_detects_truncation_against_the_head_file(chain: Path) -> None:
    _drop_triggers()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM governance_auditevent WHERE seq >= 7")
    # Even a careful attacker who also rewinds the head row is caught by the file.
    sixth = AuditEvent.objects.get(seq=6)
    AuditChainHead.objects.filter(id=1).update(seq=6, chain_hash=sixth.chain_hash)
    code, message = _verify(chain)
    assert code == 1
    assert "truncated" in message


def test_secret_like_data_is_refused(db: Any) -> None:
    with pytest.raises(audit.AuditError):
        audit.record(
            actor="tests", action="tests.thing.happened", data={"password": "x"}
        )
    with pytest.raises(audit.AuditError):
        audit.record(actor="tests", action="no-namespace", data={})


@pytest.fixture
def committed_chain(transactional_db: Any, tmp_path: Path, settings: Any) -> Any:
    settings.PAS_AUDIT_HEAD_FILE = tmp_path / "head.json"
    _record_some(8)
    yield tmp_path / "head.json"
    # Put the append-only triggers back for the tests that follow.
    from importlib import import_module

    trig = import_module("governance.migrations.0002_audit_append_only_triggers")
    statements = trig.POSTGRES if connection.vendor == "postgresql" else trig.SQLITE
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "DROP TRIGGER IF EXISTS audit_event_append_only ON governance_auditevent"
            )
        for sql in statements:
            cursor.execute(sql)


def test_verify_audit_command_exit_codes_in_a_subprocess(committed_chain: Path) -> None:
    """The command's process exit code is what operators and CI see."""
    chain = committed_chain
    assert connection.vendor == "postgresql", "the suite's control plane is PostgreSQL"
    db = connection.settings_dict
    env = {
        "DJANGO_SETTINGS_MODULE": "pasportal.settings",
        "PAS_VAR_DIR": str(settings.VAR_DIR),
        "PAS_AUDIT_KEY": settings.PAS_AUDIT_KEY,
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
            f"/{db['NAME']}"
        ),
    }
    ok = subprocess.run(
        [sys.executable, "manage.py", "verify_audit", "--head", str(chain)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "8 events verified" in ok.stdout
    _drop_triggers()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE governance_auditevent SET action = 'x.y.z' WHERE seq = 2"
        )
    bad = subprocess.run(
        [sys.executable, "manage.py", "verify_audit", "--head", str(chain)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "event #2" in bad.stderr
