"""Connector write services. Each is atomic and writes one audit event.

Secrets: a kind's secret fields (pydantic ``SecretRef``) hold references only.
Callers pass secrets separately (``secrets={"password": ...}``): a reference
(``env:``/``file:``/``fernet:``) is stored as is, anything else is encrypted
to a ``fernet:`` token first. The reference lives in ``config`` (so the kind
can open it) and is mirrored in ``secret_refs``; neither the value nor the
reference is ever written to the audit trail, only the field names.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from pydantic import SecretStr
from pydantic import ValidationError as PydanticValidationError

from connectors.kinds import get_kind
from connectors.models import (
    Connector,
    ConnectorHealth,
    ConnectorRole,
    HealthStatus,
    QueryLog,
)
from connectors.secrets import encrypt, is_reference, scrub
from governance import audit
from governance.access import user_has_project_perm
from migration.engine.errors import EngineError

__all__ = [
    "connector_check",
    "connector_create",
    "connector_delete",
    "connector_open",
    "connector_secrets_rewrap",
    "connector_update",
    "query_log_record",
    "secret_fields",
]


def secret_fields(kind: str) -> list[str]:
    """Return the names of the config fields of ``kind`` that hold secrets."""
    model = get_kind(kind).config_model
    out = []
    for name, info in model.model_fields.items():
        if info.annotation is not None and "SecretStr" in str(info.annotation):
            out.append(info.alias or name)
    return sorted(out)


def _validate(kind: str, role: str, config: dict[str, Any]) -> dict[str, Any]:
    try:
        spec = get_kind(kind)
    except EngineError as exc:
        raise ValidationError({"kind": str(exc)}) from None
    if role not in spec.roles:
        raise ValidationError({"role": f"kind {kind!r} cannot be a {role}"})
    try:
        model = spec.validate(config)
    except PydanticValidationError as exc:
        # hide_input_in_errors: messages name fields, never values.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValidationError({"config": problems}) from None
    stored = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    for field in secret_fields(kind):
        value = getattr(model, field, None) or config.get(field)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value:
            stored[field] = value  # the reference, not the masked dump
    return stored


def _merge_secrets(
    kind: str, config: dict[str, Any], secrets: dict[str, str] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    allowed = set(secret_fields(kind))
    merged = dict(config)
    for field in allowed & set(merged):
        # A secret in plain config is treated like one passed in ``secrets``.
        secrets = {field: str(merged.pop(field)), **(secrets or {})}
    refs: dict[str, str] = {}
    for field, value in (secrets or {}).items():
        if field not in allowed:
            raise ValidationError(
                {"secrets": f"{field} is not a secret field of {kind}"}
            )
        if value in ("", None):
            continue
        refs[field] = value if is_reference(value) else encrypt(value)
    merged.update(refs)
    return merged, refs


def _actor_user(actor: Any) -> Any:
    return actor if getattr(actor, "is_authenticated", False) else None


@transaction.atomic
def connector_create(
    *,
    actor: Any,
    project: Any,
    name: str,
    kind: str,
    role: str,
    config: dict[str, Any],
    secrets: dict[str, str] | None = None,
) -> Connector:
    """Create and audit a connector; raise ValidationError on a bad kind/config."""
    try:
        get_kind(kind)
    except EngineError as exc:
        raise ValidationError({"kind": str(exc)}) from None
    merged, refs = _merge_secrets(kind, config, secrets)
    stored = _validate(kind, role, merged)
    connector = Connector(
        project=project,
        name=name,
        kind=kind,
        role=role,
        config=stored,
        secret_refs=refs,
        created_by=_actor_user(actor),
    )
    connector.full_clean()
    connector.save()
    audit.record(
        actor=actor,
        action="connectors.connector.created",
        target=connector,
        data={
            "name": name,
            "kind": kind,
            "role": role,
            "config_keys": sorted(k for k in stored if k not in refs),
            "credential_fields": sorted(refs),
        },
    )
    return connector


@transaction.atomic
def connector_update(
    *,
    actor: Any,
    connector: Connector,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
) -> Connector:
    """Update and audit a connector; secrets left out (or blank) stay unchanged."""
    connector = Connector.objects.select_for_update().get(pk=connector.pk)
    kind_secrets = set(secret_fields(connector.kind))
    base = dict(config if config is not None else connector.config)
    old_refs = dict(connector.secret_refs or {})
    for field in kind_secrets:
        if field not in base and field in old_refs:
            base[field] = old_refs[field]  # write-only: keep what was set
    merged, new_refs = _merge_secrets(connector.kind, base, secrets)
    stored = _validate(connector.kind, connector.role, merged)
    refs = {**old_refs, **new_refs}
    for field in kind_secrets:
        if merged.get(field):
            refs[field] = merged[field]
    changed = sorted(
        k
        for k in set(stored) | set(connector.config)
        if k not in kind_secrets and stored.get(k) != connector.config.get(k)
    )
    rotated = sorted(f for f in refs if refs.get(f) != old_refs.get(f))
    data: dict[str, Any] = {"changed": changed, "credential_fields_changed": rotated}
    # The landed copies are named after the extract's path and how it is
    # read, and kept in the landing folder: once any of those changes,
    # nothing would read (or list, or purge) them again, and they hold
    # patient rows. Found under the config as it was; deleted once the new
    # one is saved.
    before = (
        connector_open_plain(connector) if connector_lands_extracts(connector) else None
    )
    if name is not None:
        connector.name = name
    connector.config = stored
    connector.secret_refs = refs
    connector.full_clean()
    connector.save()
    if before is not None and (
        before.landing_identity() != connector_open_plain(connector).landing_identity()
    ):
        data.update(_purge_unshared(connector, before))
    audit.record(
        actor=actor,
        action="connectors.connector.updated",
        target=connector,
        data=data,
    )
    return connector


def _purge_unshared(connector: Connector, source: Any) -> dict[str, Any]:
    """Purge ``source``'s landed copies unless another connector reads them.

    Two connectors on the same extract, read the same way into the same
    landing folder, share their copies: deleting or moving one must not
    take the other's away (its next run would land again, and a read under
    way would lose its file between pages). Returns the audit fields: how
    many copies went, or which connectors keep them.
    """
    sharing = _sharing_landed_copies(connector, source)
    if sharing:
        return {"landed_copies_deleted": 0, "landed_copies_kept_for": sharing}
    return {"landed_copies_deleted": _purge_quietly(source)}


def _sharing_landed_copies(connector: Connector, source: Any) -> list[int]:
    """Return the other connectors that read ``source``'s landed copies."""
    identity = source.landing_identity()
    return sorted(
        other.pk
        for other in Connector.objects.filter(kind=connector.kind).exclude(
            pk=connector.pk
        )
        if _landing_identity_of(other) == identity
    )


def _landing_identity_of(connector: Connector) -> tuple[str, str] | None:
    """Return where a connector's landed copies are; None if its config cannot open."""
    try:
        return connector_open_plain(connector).landing_identity()  # type: ignore[no-any-return, unused-ignore]
    except (EngineError, ValueError, OSError):
        return None


def _purge_quietly(source: Any) -> int | None:
    """Delete a flat-extract source's landed copies; return how many went.

    None when the folder could not be read (the copies then age out with the
    connector's retention).
    """
    try:
        return len(source.purge_landed())
    except (EngineError, OSError):
        return None


@transaction.atomic
def connector_delete(*, actor: Any, connector: Connector) -> None:
    """Delete and audit a connector (the audit row keeps its id and name).

    A flat-extract connector's landed copies (patient rows) go with it.
    """
    data: dict[str, Any] = {"name": connector.name, "kind": connector.kind}
    if connector_lands_extracts(connector):
        data.update(_purge_unshared(connector, connector_open_plain(connector)))
    audit.record(
        actor=actor,
        action="connectors.connector.deleted",
        target=connector,
        data=data,
    )
    connector.delete()


def connector_open(
    connector: Connector, *, actor: Any = "system", run_id: int | None = None
) -> Any:
    """Return an unconnected source/target for ``connector`` whose every statement
    is written to the connector's query log (who, when, shape, rows, time, outcome).
    """
    source = _open_kind(connector)
    if hasattr(source, "on_query"):
        source.on_query = query_observer(
            connector=connector,
            actor=actor if isinstance(actor, str) else actor.get_username(),
            dialect=getattr(source, "dialect", None),
            run_id=run_id,
        )
    return source


def query_observer(
    *, connector: Connector, actor: str, dialect: Any, run_id: int | None = None
) -> Any:
    """Return a callback that records each QueryEvent of a source as a QueryLog row."""

    def record(event: Any) -> None:
        query_log_record(
            connector=connector,
            actor=actor,
            statement=event.statement,
            purpose=event.purpose,
            outcome=event.outcome,
            rows=event.rows,
            duration_ms=event.duration_ms,
            message=event.message,
            run_id=run_id,
            dialect=dialect,
        )

    return record


def _require_manage(actor: Any, connector: Connector, refused_action: str) -> None:
    """Raise Refused (audited as ``refused_action``) for a person without
    manage_connectors on the connector's project; a system actor is trusted."""
    if not isinstance(actor, str) and not user_has_project_perm(
        actor, connector.project_id, "manage_connectors"
    ):
        raise audit.refuse(
            actor=actor,
            action=refused_action,
            reason="you need the manage_connectors permission on this project",
            code="forbidden",
            target=connector,
        )


def connector_check(*, actor: Any, connector: Connector) -> ConnectorHealth:
    """Run the kind's check() (outside any transaction) and record + audit it.

    Raises Refused (audited) when a person without manage_connectors asks; a
    system actor (the scheduler, a command) is trusted.
    """
    _require_manage(actor, connector, "connectors.connector.check_refused")
    t0 = time.monotonic()
    try:
        source = connector_open(connector)
        try:
            # A source must be SELECT-only, a target must be able to write.
            if connector.role == ConnectorRole.TARGET:
                result = source.check_target()
            else:
                result = source.check()
        finally:
            source.close()
        ok, can_write = result.ok, result.can_write
        message = "; ".join(result.problems)
        details = {
            "server": result.server,
            "reachable": result.reachable,
            "authenticated": result.authenticated,
            "read_only_session": result.read_only_session,
            "can_write": can_write,
        }
    except Exception as exc:  # a bad config is a failed check, not a crash
        ok, can_write = False, None
        message = f"{type(exc).__name__}: {exc}"
        details = {}
    message = scrub(message)
    if not ok:
        status = HealthStatus.DOWN
    elif message:
        status = HealthStatus.DEGRADED
    else:
        status = HealthStatus.OK
    latency = int((time.monotonic() - t0) * 1000)
    with transaction.atomic():
        health = ConnectorHealth.objects.create(
            connector=connector,
            status=status,
            read_only=None if can_write is None else not can_write,
            latency_ms=latency,
            message=message,
            details=details,
        )
        Connector.objects.filter(pk=connector.pk).update(
            health_status=status, health_checked_at=timezone.now()
        )
        audit.record(
            actor=actor,
            action="connectors.connector.checked",
            target=connector,
            data={"status": status, "read_only": health.read_only},
        )
    return health


def connector_lands_extracts(connector: Connector) -> bool:
    """Return whether the connector's kind lands unsorted extracts (flat files)."""
    return hasattr(get_kind(connector.kind).connection_class, "landed_copies")


def connector_landed_copies(connector: Connector) -> list[Any]:
    """Return the landed copies of a flat-extract connector (none for other kinds)."""
    source = connector_open_plain(connector)
    listing = getattr(source, "landed_copies", None)
    return list(listing()) if listing is not None else []


def connector_purge_landing(*, actor: Any, connector: Connector) -> list[Any]:
    """Delete a flat-extract connector's landed copies (patient rows); audited.

    The copies are caches: the next run lands again from the extract. Raises
    Refused (audited) for a person without manage_connectors; a system actor
    (a command, the scheduler) is trusted.
    """
    _require_manage(actor, connector, "connectors.connector.landing_purge_refused")
    source = connector_open_plain(connector)
    purge = getattr(source, "purge_landed", None)
    gone = list(purge()) if purge is not None else []
    data: dict[str, Any] = {"copies": len(gone), "bytes": sum(c.bytes for c in gone)}
    if gone:
        # Asked for, so deleted even when shared: the audit says whose next
        # read lands again.
        shared = _sharing_landed_copies(connector, source)
        if shared:
            data["also_read_by"] = shared
    audit.record(
        actor=actor,
        action="connectors.connector.landing_purged",
        target=connector,
        data=data,
    )
    return gone


_UNSET_DIALECT: Any = object()


def connector_open_plain(connector: Connector) -> Any:
    """Return the kind object of ``connector`` without a query log observer."""
    return _open_kind(connector)


def _open_kind(connector: Connector) -> Any:
    """Open ``connector``'s kind; flat extracts land (when unsorted) in the data dir.

    A landed copy holds the extract's rows: it goes under ``PAS_DATA_DIR``
    (the product's data folder, beside the reject files and evidence), not
    the system temporary directory, unless the connector names its own.
    """
    spec = get_kind(connector.kind)
    config = dict(connector.config or {})
    if "landing_dir" in spec.config_model.model_fields and not config.get(
        "landing_dir"
    ):
        config["landing_dir"] = str(Path(settings.PAS_DATA_DIR) / "landing")
    return spec.open(config, name=connector.name)


def query_log_record(
    *,
    connector: Connector,
    actor: str,
    statement: str,
    purpose: str,
    outcome: str,
    rows: int | None = None,
    duration_ms: int | None = None,
    message: str = "",
    run_id: int | None = None,
    dialect: Any = _UNSET_DIALECT,
) -> QueryLog:
    """Store one QueryLog row with the statement's literals stripped."""
    from connectors.guard import strip_literals

    if dialect is _UNSET_DIALECT:
        dialect = getattr(connector_open_plain(connector), "dialect", None)
    return QueryLog.objects.create(
        connector=connector,
        actor=actor,
        run_id=run_id,
        statement=strip_literals(statement, dialect),
        purpose=purpose,
        rows=rows,
        duration_ms=duration_ms,
        outcome=outcome,
        message=scrub(message),
    )


@transaction.atomic
def connector_secrets_rewrap(*, actor: Any) -> int:
    """Re-encrypt every fernet: secret under the newest key; return how many changed."""
    from connectors.secrets import rewrap

    changed = 0
    for connector in Connector.objects.select_for_update().order_by("pk"):
        fields = []
        config = dict(connector.config)
        refs = dict(connector.secret_refs or {})
        for field in secret_fields(connector.kind):
            token = config.get(field)
            if isinstance(token, str) and token.startswith("fernet:"):
                new = rewrap(token)
                config[field] = new
                if field in refs:
                    refs[field] = new
                fields.append(field)
        if fields:
            Connector.objects.filter(pk=connector.pk).update(
                config=config, secret_refs=refs
            )
            audit.record(
                actor=actor,
                action="connectors.connector.rewrapped",
                target=connector,
                data={"credential_fields": sorted(fields)},
            )
            changed += 1
    return changed
