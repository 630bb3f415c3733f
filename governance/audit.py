"""The only writer of AuditEvent: an append-only, HMAC-SHA256-chained trail.

Each event's ``chain_hash`` is HMAC(key, prev_hash || canonical(event)). The key
comes from the environment or a file (``PAS_AUDIT_KEY`` / ``PAS_AUDIT_KEY_FILE``),
never the database, so someone who can write the table still cannot forge a
link. Deletion, insertion, reorder and edits break the chain; truncation of the
tail is caught against the chain head exported to ``PAS_AUDIT_HEAD_FILE`` after
every commit (outside the table) and the head row.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction

from pasportal.middleware import current_request_id

GENESIS = "0" * 64
_SECRET_KEY_NAMES = re.compile(r"pass(word)?|passwd|pwd|secret|token|api[_-]?key", re.I)
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$")


class AuditError(ValueError):
    """An audit event was malformed (bad action name, secret-looking data)."""


def _check_no_secrets(value: Any, path: str = "data") -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if _SECRET_KEY_NAMES.search(str(key)):
                raise AuditError(
                    f"audit {path}.{key}: secret-like keys are not allowed"
                )
            _check_no_secrets(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_no_secrets(item, f"{path}[{index}]")


def canonical(fields: Mapping[str, Any]) -> bytes:
    """Return the canonical JSON bytes of an event's hashed fields."""
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def hashed_fields(event: Mapping[str, Any]) -> dict[str, Any]:
    """Return the fields of an event row that the chain covers."""
    created = event["created_at"]
    if isinstance(created, datetime):
        created = created.astimezone(UTC).isoformat(timespec="microseconds")
    return {
        "seq": int(event["seq"]),
        "created_at": created,
        "actor_id": event["actor_id"],
        "actor": event["actor"],
        "request_id": event["request_id"],
        "action": event["action"],
        "target_type": event["target_type"],
        "target_id": event["target_id"],
        "project_id": event["project_id"],
        "data": event["data"],
    }


def chain_hash(key: str, prev_hash: str, fields: Mapping[str, Any]) -> str:
    """Return the HMAC-SHA256 link of an event given its predecessor's hash."""
    mac = hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)
    mac.update(prev_hash.encode("ascii"))
    mac.update(b"\x1f")
    mac.update(canonical(fields))
    return mac.hexdigest()


def _actor_snapshot(actor: Any) -> tuple[int | None, dict[str, Any]]:
    if actor is None:
        return None, {"username": "system", "kind": "system"}
    if isinstance(actor, str):
        return None, {"username": actor, "kind": "system"}
    if not getattr(actor, "is_authenticated", False):
        return None, {"username": "anonymous", "kind": "anonymous"}
    roles = (
        sorted({f"{m.project_id}:{m.role}" for m in actor.memberships.all()})
        if hasattr(actor, "memberships")
        else []
    )
    return int(actor.pk), {
        "username": actor.get_username(),
        "name": actor.get_full_name(),
        "kind": "user",
        "roles": roles,
    }


def _target(target: Any) -> tuple[str, str, int | None]:
    if target is None:
        return "", "", None
    if isinstance(target, models.Model):
        label = f"{target._meta.app_label}.{target._meta.model_name}"
        project_id: int | None
        if label == "governance.migrationproject":
            project_id = int(target.pk)
        else:
            project_id = getattr(target, "project_id", None)
        return label, str(target.pk), project_id
    if isinstance(target, tuple) and len(target) == 2:
        return str(target[0]), str(target[1]), None
    raise AuditError("audit target must be a model instance, a (type, id) pair or None")


def record(
    *,
    actor: Any,
    action: str,
    target: Any = None,
    data: Mapping[str, Any] | None = None,
    project: Any = None,
    request_id: str | None = None,
) -> Any:
    """Append one event to the chain inside the caller's transaction; return it.

    Raises AuditError on a malformed action name or secret-looking data keys.
    """
    from governance.models import AuditChainHead, AuditEvent

    if not _ACTION.match(action):
        raise AuditError(
            f"audit action {action!r} must be namespaced like app.entity.verb"
        )
    payload = json.loads(json.dumps(dict(data or {}), cls=DjangoJSONEncoder))
    _check_no_secrets(payload)
    actor_id, actor_snapshot = _actor_snapshot(actor)
    target_type, target_id, project_id = _target(target)
    if project is not None:
        project_id = int(project.pk if isinstance(project, models.Model) else project)
    with transaction.atomic():
        # The head row is the lock that serialises writers (row lock on
        # PostgreSQL; SQLite runs IMMEDIATE transactions, one writer at a time).
        AuditChainHead.objects.get_or_create(id=1)
        head = AuditChainHead.objects.select_for_update().get(id=1)
        now = datetime.now(UTC)
        row = {
            "seq": head.seq + 1,
            "created_at": now,
            "actor_id": actor_id,
            "actor": actor_snapshot,
            "request_id": request_id or current_request_id() or "",
            "action": action,
            "target_type": target_type,
            "target_id": target_id,
            "project_id": project_id,
            "data": payload,
        }
        digest = chain_hash(settings.PAS_AUDIT_KEY, head.chain_hash, hashed_fields(row))
        event = AuditEvent.objects.create(
            **row, prev_hash=head.chain_hash, chain_hash=digest
        )
        AuditChainHead.objects.filter(id=1).update(seq=event.seq, chain_hash=digest)
        seq = event.seq
        transaction.on_commit(lambda: export_head(seq=seq, chain_hash=digest))
    return event


def export_head(*, seq: int, chain_hash: str, path: Path | None = None) -> None:
    """Write the chain head to the head file if it is newer than what is there."""
    target = Path(path or settings.PAS_AUDIT_HEAD_FILE)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.with_suffix(target.suffix + ".lock")
    with open(lock_path, "a+") as lock:
        # Two processes committing at once must not let an older head win.
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read_head(target)
        if current is not None and current["seq"] >= seq:
            return
        tmp = target.with_suffix(target.suffix + f".{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps(
                {
                    "seq": seq,
                    "chain_hash": chain_hash,
                    "written_at": datetime.now(UTC).isoformat(),
                }
            ),
            encoding="utf-8",
        )
        os.replace(tmp, target)


def read_head(path: Path | None = None) -> dict[str, Any] | None:
    """Return the exported head ``{seq, chain_hash}``, or None if there is none."""
    target = Path(path or settings.PAS_AUDIT_HEAD_FILE)
    try:
        head = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AuditError(f"audit head file {target} is unreadable: {exc}") from None
    return {"seq": int(head["seq"]), "chain_hash": str(head["chain_hash"])}


@dataclass(frozen=True)
class ChainVerdict:
    """Outcome of verifying a chain: ok, or the first bad event and why."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""

    def describe(self) -> str:
        """Return a one-line human summary."""
        if self.ok:
            return f"audit chain intact: {self.checked} events verified"
        where = f"event #{self.first_bad_seq}" if self.first_bad_seq else "chain"
        return f"audit chain broken at {where}: {self.problem}"


def verify_chain(
    events: Iterable[Mapping[str, Any]],
    *,
    key: str,
    heads: Iterable[Mapping[str, Any] | None] = (),
) -> ChainVerdict:
    """Verify events (in seq order) and the recorded heads; return a ChainVerdict."""
    expected_seq = 1
    prev = GENESIS
    checked = 0
    hashes: dict[int, str] = {}
    for event in events:
        seq = int(event["seq"])
        if seq != expected_seq:
            if seq > expected_seq:
                problem = f"events #{expected_seq}..#{seq - 1} are missing (deleted)"
            else:
                problem = f"sequence goes back from #{expected_seq - 1} to #{seq}"
            return ChainVerdict(False, checked, seq, problem)
        if event["prev_hash"] != prev:
            return ChainVerdict(
                False, checked, seq, "previous-hash link does not match"
            )
        if not hmac.compare_digest(
            chain_hash(key, prev, hashed_fields(event)), str(event["chain_hash"])
        ):
            return ChainVerdict(False, checked, seq, "content does not match its HMAC")
        prev = str(event["chain_hash"])
        hashes[seq] = prev
        expected_seq += 1
        checked += 1
    last = expected_seq - 1
    for head in heads:
        if head is None:
            continue
        head_seq = int(head["seq"])
        if head_seq > last:
            return ChainVerdict(
                False,
                checked,
                last + 1,
                f"truncated: the recorded head is #{head_seq} but the table ends at #{last}",
            )
        if head_seq > 0 and hashes.get(head_seq) != head["chain_hash"]:
            return ChainVerdict(
                False, checked, head_seq, "event does not match the recorded chain head"
            )
    return ChainVerdict(True, checked)


def verify_database(head_file: Path | None = None) -> ChainVerdict:
    """Verify the whole AuditEvent table against the head row and head file."""
    from governance.models import AuditChainHead, AuditEvent

    rows = AuditEvent.objects.order_by("seq").values(
        "seq",
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
    )
    db_head = AuditChainHead.objects.filter(id=1).values("seq", "chain_hash").first()
    return verify_chain(
        rows.iterator(chunk_size=2000),
        key=settings.PAS_AUDIT_KEY,
        heads=[db_head, read_head(head_file)],
    )


class Refused(Exception):
    """A person's attempt was refused; the refusal has already been audited.

    ``code`` is a stable machine-readable reason (e.g. ``four_eyes``) that views
    and the API map to a status and message; ``str(exc)`` is the human message.
    """

    def __init__(self, message: str, *, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code


def refuse(
    *,
    actor: Any,
    action: str,
    reason: str,
    code: str = "refused",
    target: Any = None,
    data: Mapping[str, Any] | None = None,
    project: Any = None,
) -> Refused:
    """Record a refused attempt as an audit event, commit it, and return Refused to raise.

    Call it OUTSIDE the transaction of the change that was refused (check inside
    ``transaction.atomic()``, leave the block, then ``raise refuse(...)``): an
    enclosing rollback would otherwise erase the record of the attempt.
    """
    with transaction.atomic():
        record(
            actor=actor,
            action=action,
            target=target,
            project=project,
            data={**dict(data or {}), "refused": code, "reason": reason},
        )
    return Refused(reason, code=code)
