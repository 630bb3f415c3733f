"""Reject records for people: patient-identifiable raw values masked by default.

A reject's ``raw_value`` is the offending source cell — an NHS number, a date
of birth, a name. Only holders of ``view_pid`` on the run's project see it
unmasked, and every such read is audited (run, filters and count; never the
values), so an IG lead can see who looked at patient data and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.http import Http404

from governance import audit
from governance.access import user_has_project_perm
from governance.roles import VIEW
from migration.models import RejectRecord, Run

MASK = "•"


def mask_value(value: str) -> str:
    """Return ``value`` masked but keeping its shape (length, first and last char)."""
    if not value:
        return value
    if len(value) <= 3:
        return MASK * 3
    return value[0] + MASK * (len(value) - 2) + value[-1]


@dataclass(frozen=True)
class RejectView:
    """One reject as shown to a reader; ``raw_value`` is masked unless allowed."""

    id: int
    target_table: str
    source_table: str
    source_key: str
    column: str
    raw_value: str
    masked: bool
    rule_id: str
    reason_code: str
    crosswalk_ref: str
    crosswalk_version: str


def rejects_for(
    *,
    user: Any,
    run: Run,
    table: str | None = None,
    reason: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[RejectView]:
    """Return the run's rejects (optionally one table / reason), PID masked.

    Values are unmasked only for holders of ``view_pid`` on the run's project,
    and each unmasked read writes ``migration.rejects.pid_viewed``.
    Raises Http404 when ``user`` may not see the run's project at all.
    """
    if not user_has_project_perm(user, run.project_id, VIEW):
        raise Http404("Not found")
    qs = RejectRecord.objects.filter(run=run)
    if table:
        qs = qs.filter(target_table=table)
    if reason:
        qs = qs.filter(reason_code=reason)
    qs = qs.order_by("target_table", "source_key", "pk")
    if limit is not None:
        qs = qs[offset : offset + limit]
    elif offset:
        qs = qs[offset:]
    records = list(qs)
    unmasked = user_has_project_perm(user, run.project_id, "view_pid")
    if unmasked and records:
        with transaction.atomic():
            audit.record(
                actor=user,
                action="migration.rejects.pid_viewed",
                target=run,
                data={
                    "run": run.pk,
                    "table": table or "",
                    "reason": reason or "",
                    "count": len(records),
                    "first_id": records[0].pk,
                    "last_id": records[-1].pk,
                },
            )
    return [
        RejectView(
            id=r.pk,
            target_table=r.target_table,
            source_table=r.source_table,
            source_key=r.source_key,
            column=r.column,
            raw_value=r.raw_value if unmasked else mask_value(r.raw_value),
            masked=not unmasked,
            rule_id=r.rule_id,
            reason_code=r.reason_code,
            crosswalk_ref=r.crosswalk_ref,
            crosswalk_version=r.crosswalk_version,
        )
        for r in records
    ]
