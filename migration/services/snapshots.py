"""Schema snapshots: extract (discover + profile), and apply schema drift.

``snapshot_diff`` (the read side of drift) lives in ``migration.selectors_mapping``;
``snapshot_apply_drift`` uses it to send approved field mappings that touch a
broken column back to review.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from django.core.cache import cache
from django.db import transaction

from connectors.models import Connector
from connectors.services import connector_open
from governance import audit
from governance.access import user_has_project_perm
from migration.models import FieldMapping, MappingSet, ReviewStatus, SchemaSnapshot
from migration.selectors_mapping import SchemaChange, snapshot_diff

__all__ = [
    "profile_to_json",
    "schema_fingerprint",
    "schema_read",
    "snapshot_apply_drift",
    "snapshot_extract",
    "table_to_json",
]


def _jsonable(value: Any) -> Any:
    # Profiles carry numpy/pandas scalars and dates: store them as JSON values.
    return json.loads(json.dumps(value, default=str))


def table_to_json(info: Any) -> dict[str, Any]:
    """Return a discovered ``TableInfo`` as the snapshot's JSON form."""
    return {
        "name": info.name,
        "columns": [
            {
                "name": c.name,
                "type": c.type,
                "nullable": bool(c.nullable),
                "primary_key": bool(c.primary_key),
            }
            for c in info.columns
        ],
        "primary_key": list(info.primary_key),
        "foreign_keys": [
            {
                "columns": list(fk.columns),
                "ref_table": fk.ref_table,
                "ref_columns": list(fk.ref_columns),
            }
            for fk in info.foreign_keys
        ],
        "row_count": info.row_count,
    }


def profile_to_json(profile: Any) -> dict[str, dict[str, Any]]:
    """Return a ``TableProfile`` as ``{column: profile dict}`` (JSON-safe)."""
    out: dict[str, dict[str, Any]] = {}
    for col in profile.columns:
        data = dataclasses.asdict(col)
        data["top"] = [{"value": v["value"], "count": v["count"]} for v in data["top"]]
        out[col.name] = _jsonable(data)
    return out


def schema_fingerprint(tables: list[dict[str, Any]]) -> str:
    """Return the sha256 of the canonical schema JSON (row counts excluded).

    Row counts change with every extract; the fingerprint answers "did the
    SCHEMA change", so it covers names, types, nullability and keys only.
    """
    shape = [
        {k: v for k, v in t.items() if k != "row_count"}
        for t in sorted(tables, key=lambda t: t["name"])
    ]
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def schema_read(
    source: Any,
    *,
    profile_rows: int | None = None,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Return (tables, profiles) JSON read from an open source connection.

    ``on_progress(done, total, table)`` is called after each table is profiled.
    Raises the kind's TerminalError / TransientError on a source problem.
    """
    tables: list[dict[str, Any]] = []
    profiles: dict[str, dict[str, Any]] = {}
    found = source.discover()
    for done, info in enumerate(found, start=1):
        tables.append(table_to_json(info))
        prof = source.profile(info.name, max_rows=profile_rows)
        profiles[info.name] = profile_to_json(prof)
        if on_progress is not None:
            on_progress(done, len(found), info.name)
    return tables, profiles


def snapshot_extract(
    *,
    actor: Any,
    connector: Connector,
    profile_rows: int | None = 100_000,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> SchemaSnapshot:
    """Discover and profile ``connector``'s source and store a SchemaSnapshot.

    Needs ``extract_schema`` on the connector's project (else Refused
    ``forbidden``, audited); raises TerminalError/TransientError from the
    connector (nothing stored).
    """
    project = connector.project
    if not isinstance(actor, str) and not user_has_project_perm(
        actor, project, "extract_schema"
    ):
        raise audit.refuse(
            actor=actor,
            action="migration.snapshot.extract_refused",
            reason="you may not extract schemas on this project",
            code="forbidden",
            target=connector,
        )
    # Read the source BEFORE opening a database transaction: a slow source
    # must not hold control-plane locks (the audit head row among them).
    source = connector_open(connector, actor=actor)
    try:
        source.connect()
        tables, profiles = schema_read(
            source, profile_rows=profile_rows, on_progress=on_progress
        )
    finally:
        with suppress(Exception):  # closing a broken connection may fail too
            source.close()
    with transaction.atomic():
        snapshot = SchemaSnapshot.objects.create(
            project=project,
            connector=connector,
            created_by=None if isinstance(actor, str) else actor,
            tables=tables,
            profiles=profiles,
            fingerprint=schema_fingerprint(tables),
        )
        audit.record(
            actor=actor,
            action="migration.snapshot.extracted",
            target=snapshot,
            data={
                "connector": connector.pk,
                "tables": len(tables),
                "columns": sum(len(t["columns"]) for t in tables),
                "fingerprint": snapshot.fingerprint,
            },
        )
    return snapshot


SNAPSHOT_JOB_TTL = 24 * 3600


def _job_key(job_id: str) -> str:
    return f"pasportal:snapshot-job:{job_id}"


def snapshot_job(job_id: str) -> dict[str, Any] | None:
    """Return the state of an extraction job (queued/running/done/failed), if known."""
    state: dict[str, Any] | None = cache.get(_job_key(job_id))
    return state


def snapshot_job_update(job_id: str, **state: Any) -> None:
    """Merge ``state`` into an extraction job's record (shared cache, all processes)."""
    current = snapshot_job(job_id) or {}
    cache.set(_job_key(job_id), {**current, **state}, SNAPSHOT_JOB_TTL)


def snapshot_extract_request(*, actor: Any, connector: Connector) -> str:
    """Queue a schema extraction as a q2 task; return its job id (progress in cache).

    Refused (audited) without ``extract_schema``; the task checks again.
    """
    if not isinstance(actor, str) and not user_has_project_perm(
        actor, connector.project_id, "extract_schema"
    ):
        raise audit.refuse(
            actor=actor,
            action="migration.snapshot.extract_refused",
            reason="you may not extract schemas on this project",
            code="forbidden",
            target=connector,
        )
    from django_q.tasks import async_task

    job_id = uuid.uuid4().hex
    snapshot_job_update(
        job_id,
        state="queued",
        project=connector.project_id,
        connector=connector.pk,
        done=0,
        total=None,
    )
    user_id = None if isinstance(actor, str) else actor.pk
    # Ids only in the task arguments.
    transaction.on_commit(
        lambda: async_task(
            "migration.tasks.snapshot_extract_task",
            connector.pk,
            user_id,
            job_id,
            task_name=f"snapshot-{job_id[:8]}",
        )
    )
    return job_id


def _why(change: SchemaChange) -> str:
    where = f"{change.table}.{change.column}" if change.column else change.table
    detail = f" ({change.old} -> {change.new})" if change.old or change.new else ""
    return f"{change.kind.replace('_', ' ')} at {where}{detail}"


def snapshot_apply_drift(
    *, actor: Any, mapping_set: MappingSet, new_snapshot: SchemaSnapshot
) -> list[FieldMapping]:
    """Return approved field mappings sent back to ``proposed`` by breaking drift.

    Moves the mapping set onto ``new_snapshot``. Needs ``edit_mapping`` (else
    Refused ``forbidden``, audited); a snapshot of another project is refused
    (``wrong_project``).
    """
    project = mapping_set.project
    refusal: tuple[str, str] | None = None
    if not isinstance(actor, str) and not user_has_project_perm(
        actor, project, "edit_mapping"
    ):
        refusal = ("forbidden", "you may not edit mappings on this project")
    elif new_snapshot.project_id != mapping_set.project_id:
        refusal = ("wrong_project", "the snapshot belongs to another project")
    if refusal is not None:
        raise audit.refuse(
            actor=actor,
            action="migration.mapping_set.drift_refused",
            reason=refusal[1],
            code=refusal[0],
            target=mapping_set,
        )
    old = mapping_set.source_snapshot
    diff = snapshot_diff(old=old, new=new_snapshot)
    broken_tables: dict[str, SchemaChange] = {}
    broken_columns: dict[tuple[str, str], SchemaChange] = {}
    for change in diff.breaking:
        if change.column:
            broken_columns.setdefault((change.table, change.column), change)
        else:
            broken_tables.setdefault(change.table, change)
    returned: list[FieldMapping] = []
    with transaction.atomic():
        approved = (
            FieldMapping.objects.select_for_update(of=("self",))
            .filter(
                table_mapping__mapping_set=mapping_set, status=ReviewStatus.APPROVED
            )
            .select_related("table_mapping")
            .order_by("pk")
        )
        for fm in approved:
            table = fm.table_mapping.source_table
            reasons = [_why(broken_tables[table])] if table in broken_tables else []
            cols = [fm.table_mapping.source_key, *(fm.source_columns or [])]
            if not reasons:
                reasons = [
                    _why(broken_columns[(table, c)])
                    for c in dict.fromkeys(cols)
                    if (table, c) in broken_columns
                ]
            if not reasons:
                continue
            fm.status = ReviewStatus.PROPOSED
            fm.reviewer = None
            fm.reviewed_at = None
            fm.review_comment = (
                f"Returned to review by schema drift (snapshot #{old.pk} -> "
                f"#{new_snapshot.pk}): " + "; ".join(reasons)
            )
            fm.save(
                update_fields=[
                    "status",
                    "reviewer",
                    "reviewed_at",
                    "review_comment",
                    "changed_at",
                ]
            )
            audit.record(
                actor=actor,
                action="migration.field_mapping.drift_returned",
                target=fm,
                project=project,
                data={
                    "from": ReviewStatus.APPROVED,
                    "to": ReviewStatus.PROPOSED,
                    "reasons": reasons,
                },
            )
            returned.append(fm)
        mapping_set.source_snapshot = new_snapshot
        mapping_set.save(update_fields=["source_snapshot"])
        audit.record(
            actor=actor,
            action="migration.mapping_set.drift_applied",
            target=mapping_set,
            data={
                "old_snapshot": old.pk,
                "new_snapshot": new_snapshot.pk,
                "breaking_changes": len(diff.breaking),
                "changes": len(diff.changes),
                "returned_to_review": [fm.pk for fm in returned],
            },
        )
    return returned
