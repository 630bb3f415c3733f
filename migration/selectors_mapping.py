"""Read side of mappings, crosswalks, snapshots and the miss queue.

Guarded lookups (``access_*``) answer Http404 when the user may not see the
object, so a person of another project cannot even learn that it exists.
``snapshot_profile_for`` masks patient-identifiable values unless the reader
holds ``view_pid`` and audits every unmasked read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.db import models, transaction
from django.http import Http404

from connectors.kinds.base import type_family
from governance import audit
from governance.access import (
    access_object,
    scoped,
    user_has_project_perm,
)
from governance.roles import VIEW
from migration.engine.defaults import default_contract_dict
from migration.models import (
    Crosswalk,
    CrosswalkRow,
    FieldMapping,
    MappingSet,
    MissQueueEntry,
    ReviewStatus,
    SchemaSnapshot,
)
from migration.services.suggestions import (
    column_tokens,
    shared_prefix,
    table_tokens,
    target_model_for,
)

__all__ = [
    "CSV_COLUMNS",
    "SchemaChange",
    "SnapshotDiff",
    "access_crosswalk",
    "access_crosswalk_row",
    "access_field_mapping",
    "access_mapping_set",
    "access_missqueue_entry",
    "access_snapshot",
    "crosswalk_export_csv",
    "crosswalk_rows_for",
    "crosswalks_default_missing",
    "field_mappings_for_review",
    "mapping_unmapped_report",
    "missqueue_entries",
    "missqueue_groups",
    "missqueue_open_values",
    "pid_mask",
    "snapshot_diff",
    "snapshot_profile_for",
]

FIELD_MAPPING_PROJECT = "table_mapping__mapping_set__project"
CROSSWALK_ROW_PROJECT = "crosswalk__project"
MISS_PROJECT = "crosswalk__project"


@cache
def _default_crosswalk_slugs() -> frozenset[str]:
    return frozenset(str(x["id"]) for x in default_contract_dict()["crosswalks"])


def crosswalks_default_missing(*, project: Any) -> bool:
    """True while any of the generated legacy PAS's crosswalks is not in ``project``."""
    have = set(Crosswalk.objects.filter(project=project).values_list("slug", flat=True))
    return bool(_default_crosswalk_slugs() - have)


#: Columns of the crosswalk CSV format (import and export).
CSV_COLUMNS = ("local_code", "local_display", "target_code", "equivalence", "rationale")


# --- guarded lookups ----------------------------------------------------------------


def access_field_mapping(user: Any, pk: Any, perm: str = VIEW) -> FieldMapping:
    """Return field mapping ``pk`` if ``user`` holds ``perm`` on its project; else 404."""
    return access_object(
        user,
        FieldMapping.objects.select_related("table_mapping__mapping_set"),
        pk,
        perm,
        FIELD_MAPPING_PROJECT,
    )


def access_crosswalk_row(user: Any, pk: Any, perm: str = VIEW) -> CrosswalkRow:
    """Return crosswalk row ``pk`` if ``user`` holds ``perm`` on its project; else 404."""
    return access_object(
        user,
        CrosswalkRow.objects.select_related("crosswalk"),
        pk,
        perm,
        CROSSWALK_ROW_PROJECT,
    )


def access_crosswalk(user: Any, pk: Any, perm: str = VIEW) -> Crosswalk:
    """Return crosswalk ``pk`` if ``user`` holds ``perm`` on its project; else 404."""
    return access_object(user, Crosswalk.objects.all(), pk, perm)


def access_mapping_set(user: Any, pk: Any, perm: str = VIEW) -> MappingSet:
    """Return mapping set ``pk`` if ``user`` holds ``perm`` on its project; else 404."""
    return access_object(user, MappingSet.objects.all(), pk, perm)


def access_snapshot(user: Any, pk: Any, perm: str = VIEW) -> SchemaSnapshot:
    """Return snapshot ``pk`` if ``user`` holds ``perm`` on its project; else 404."""
    return access_object(user, SchemaSnapshot.objects.all(), pk, perm)


def access_missqueue_entry(
    user: Any, pk: Any, perm: str = VIEW, project: Any = None
) -> MissQueueEntry:
    """Return miss-queue entry ``pk`` (of ``project``, if given) if ``user``
    holds ``perm``; else 404."""
    qs = MissQueueEntry.objects.select_related("crosswalk")
    if project is not None:
        qs = qs.filter(crosswalk__project=project)
    return access_object(user, qs, pk, perm, MISS_PROJECT)


# --- lists ------------------------------------------------------------------------------


def field_mappings_for_review(
    *, user: Any, mapping_set: MappingSet | None = None
) -> models.QuerySet[FieldMapping]:
    """Return proposed field mappings the user may review, excluding their own work."""
    qs = scoped(
        user,
        FieldMapping.objects.filter(status=ReviewStatus.PROPOSED),
        "review_mapping",
        FIELD_MAPPING_PROJECT,
    )
    if mapping_set is not None:
        qs = qs.filter(table_mapping__mapping_set=mapping_set)
    # Four-eyes: what one wrote or last changed is not one's to approve.
    qs = qs.exclude(author=user).exclude(last_changed_by=user)
    return qs.select_related("table_mapping").order_by(
        "table_mapping__target_table", "target_field"
    )


def crosswalk_rows_for(
    *, user: Any, crosswalk: Crosswalk, status: str | None = None
) -> models.QuerySet[CrosswalkRow]:
    """Return the rows of ``crosswalk`` (optionally of one status); 404 if not visible."""
    if not user_has_project_perm(user, crosswalk.project_id, VIEW):
        raise Http404("Not found")
    qs = CrosswalkRow.objects.filter(crosswalk=crosswalk)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("local_code")


def missqueue_entries(
    *,
    user: Any,
    state: str = MissQueueEntry.State.OPEN,
    crosswalk: Crosswalk | None = None,
) -> models.QuerySet[MissQueueEntry]:
    """Return miss-queue entries in ``state`` (open unless said) of the user's
    projects, most frequent first."""
    qs = scoped(user, MissQueueEntry.objects.filter(state=state), VIEW, MISS_PROJECT)
    if crosswalk is not None:
        qs = qs.filter(crosswalk=crosswalk)
    return qs.select_related("crosswalk").order_by("-frequency", "local_value")


def missqueue_open_values(*, project: Any) -> int:
    """Return how many values (crosswalk and local value) are open in the queue."""
    return (
        MissQueueEntry.objects.filter(
            crosswalk__project=project, state=MissQueueEntry.State.OPEN
        )
        .order_by()
        .values("crosswalk", "local_value")
        .distinct()
        .count()
    )


@dataclass(frozen=True)
class MissGroup:
    """One local value of one crosswalk in the queue, over every run that met it.

    ``entry`` is the latest run's entry (what the page acts on: resolving or
    ignoring it settles the value's entries of every run); ``runs`` are the
    runs that met it, latest first.
    """

    entry: MissQueueEntry
    runs: tuple[int, ...]


MISS_GROUPS_SCANNED = 5000


def missqueue_groups(
    *, user: Any, project: Any, state: str = MissQueueEntry.State.OPEN, limit: int = 200
) -> list[MissGroup]:
    """Return the project's miss-queue values in ``state``, most frequent first.

    One group per (crosswalk, value), however many runs met it; frequency is
    the latest run's. At most ``limit`` groups, from the newest
    ``MISS_GROUPS_SCANNED`` entries.
    """
    entries = (
        missqueue_entries(user=user, state=state)
        .filter(crosswalk__project=project)
        .select_related("crosswalk__code_system", "decided_by")
        .order_by("-run_id", "pk")
    )
    groups: dict[tuple[int, str], list[MissQueueEntry]] = {}
    for e in entries[:MISS_GROUPS_SCANNED]:
        groups.setdefault((e.crosswalk_id, e.local_value), []).append(e)
    out = [MissGroup(es[0], tuple(e.run_id for e in es)) for es in groups.values()]
    out.sort(key=lambda g: (-g.entry.frequency, g.entry.local_value, g.entry.pk))
    return out[:limit]


def crosswalk_export_csv(*, crosswalk: Crosswalk) -> bytes:
    """Return the crosswalk's rows as UTF-8 CSV (the import format plus ``status``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, "status"])
    for row in crosswalk.rows.order_by("local_code"):
        writer.writerow(
            [
                row.local_code,
                row.local_display,
                row.target_code,
                row.equivalence,
                row.rationale,
                row.status,
            ]
        )
    return buf.getvalue().encode("utf-8")


# --- unmapped report ------------------------------------------------------------------

_DEFAULTING = frozenset({"constant", "default"})


def mapping_unmapped_report(*, mapping_set: MappingSet) -> list[dict[str, Any]]:
    """Return required/business-critical target fields unmapped, defaulted or waived.

    Each entry: ``table``, ``field``, ``required``, ``business_critical``,
    ``state`` (``unmapped`` | ``defaulted`` | ``waived``). Raises ContractError
    for an unknown target model.
    """
    model = target_model_for(mapping_set)
    mapped: dict[tuple[str, str], FieldMapping] = {
        (fm.table_mapping.target_table, fm.target_field): fm
        for fm in FieldMapping.objects.filter(
            table_mapping__mapping_set=mapping_set
        ).select_related("table_mapping")
    }
    out: list[dict[str, Any]] = []
    for table in model.tables:
        for f in table.fields:
            if not (f.required or f.business_critical):
                continue
            fm = mapped.get((table.name, f.name))
            state = None
            if fm is None:
                state = "unmapped"
            elif fm.waived:
                state = "waived"
            else:
                names = {str(s.get("name")) for s in fm.transforms or []}
                if (names and names <= _DEFAULTING) or (
                    not fm.source_columns and not fm.crosswalk_id
                ):
                    state = "defaulted"
            if state is not None:
                out.append(
                    {
                        "table": table.name,
                        "field": f.name,
                        "required": f.required,
                        "business_critical": f.business_critical,
                        "state": state,
                    }
                )
    return out


# --- snapshot diff --------------------------------------------------------------------

_GROUPS = {
    "integer": "numeric",
    "float": "numeric",
    "decimal": "numeric",
    "date": "temporal",
    "datetime": "temporal",
}


def _group(declared: str) -> str:
    family = type_family(declared)
    return _GROUPS.get(family, family if family != "other" else declared.lower())


@dataclass(frozen=True)
class SchemaChange:
    """One difference between two snapshots."""

    kind: str  # table_added/removed, column_added/removed, type/nullability/pk_changed
    table: str
    column: str = ""
    old: str = ""
    new: str = ""
    breaking: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Return the change as a JSON-safe dict."""
        return {
            "kind": self.kind,
            "table": self.table,
            "column": self.column,
            "old": self.old,
            "new": self.new,
            "breaking": self.breaking,
        }


@dataclass(frozen=True)
class SnapshotDiff:
    """All changes from an old to a new snapshot, in table/column order."""

    changes: tuple[SchemaChange, ...] = field(default_factory=tuple)

    @property
    def breaking(self) -> tuple[SchemaChange, ...]:
        """Return the changes that can break an approved mapping."""
        return tuple(c for c in self.changes if c.breaking)

    def of_kind(self, kind: str) -> tuple[SchemaChange, ...]:
        """Return the changes of one kind."""
        return tuple(c for c in self.changes if c.kind == kind)


def _by_name(items: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {str(i["name"]): i for i in items}


def snapshot_diff(*, old: SchemaSnapshot, new: SchemaSnapshot) -> SnapshotDiff:
    """Return what changed between two snapshots, each change classed breaking or not.

    Breaking: a removed table or column, a type change to another family
    (numeric / temporal / text ...), a primary-key change, a column becoming
    NOT NULL. Additions and widenings within a family are not breaking.
    """
    changes: list[SchemaChange] = []
    old_t, new_t = _by_name(old.tables or []), _by_name(new.tables or [])
    for name in sorted(old_t.keys() - new_t.keys()):
        changes.append(SchemaChange("table_removed", name, breaking=True))
    for name in sorted(new_t.keys() - old_t.keys()):
        changes.append(SchemaChange("table_added", name))
    for name in sorted(old_t.keys() & new_t.keys()):
        ot, nt = old_t[name], new_t[name]
        old_pk, new_pk = (
            list(ot.get("primary_key") or []),
            list(nt.get("primary_key") or []),
        )
        if old_pk != new_pk:
            changes.append(
                SchemaChange(
                    "primary_key_changed",
                    name,
                    old=",".join(old_pk),
                    new=",".join(new_pk),
                    breaking=True,
                )
            )
        oc, nc = _by_name(ot.get("columns") or []), _by_name(nt.get("columns") or [])
        for col in sorted(oc.keys() - nc.keys()):
            changes.append(SchemaChange("column_removed", name, col, breaking=True))
        for col in sorted(nc.keys() - oc.keys()):
            changes.append(
                SchemaChange("column_added", name, col, new=str(nc[col].get("type")))
            )
        for col in sorted(oc.keys() & nc.keys()):
            a, b = oc[col], nc[col]
            ta, tb = str(a.get("type") or ""), str(b.get("type") or "")
            if ta.lower() != tb.lower():
                changes.append(
                    SchemaChange(
                        "type_changed",
                        name,
                        col,
                        old=ta,
                        new=tb,
                        breaking=_group(ta) != _group(tb),
                    )
                )
            na, nb = bool(a.get("nullable", True)), bool(b.get("nullable", True))
            if na != nb:
                changes.append(
                    SchemaChange(
                        "nullability_changed",
                        name,
                        col,
                        old="null" if na else "not null",
                        new="null" if nb else "not null",
                        # Existing rows with NULLs / a mapping that relied on
                        # optional values can fail once the source insists.
                        breaking=na and not nb,
                    )
                )
    return SnapshotDiff(tuple(changes))


# --- PID masking of profiles --------------------------------------------------------

_PID_SEMANTICS = frozenset({"nhs_number", "postcode"})
_PID_TOKENS = frozenset(
    {
        "nhs",
        "surname",
        "forename",
        "first",
        "last",
        "family",
        "given",
        "maiden",
        "birth",
        "death",
        "postcode",
        "address",
        "street",
        "city",
        "town",
        "mrn",
        "pas",
        "ssn",
        "passport",
        "drivers",
        "phone",
        "telephone",
        "email",
    }
)
_PATIENT_IDS = (
    frozenset({"number"}),
    frozenset({"id"}),
    frozenset({"hospital", "number"}),
)
_NAME = frozenset({"name"})


def _pid_columns(table: Mapping[str, Any], profiles: Mapping[str, Any]) -> set[str]:
    """Return the columns of ``table`` that hold patient-identifiable values."""
    names = [str(c["name"]) for c in table.get("columns") or []]
    prefix = shared_prefix(names)
    patient_table = bool(
        table_tokens(str(table.get("name", ""))) & {"patient", "person", "pmi"}
    )
    out: set[str] = set()
    for name in names:
        toks, _ = column_tokens(name, prefix)
        prof = profiles.get(name) or {}
        if prof.get("semantic") in _PID_SEMANTICS or toks & _PID_TOKENS:
            out.add(name)
        elif patient_table and (
            toks in _PATIENT_IDS or toks == _NAME or "name" in toks
        ):
            # In a patient table a bare number/id is the PAS number, a name is a name.
            out.add(name)
    return out


def pid_mask(value: Any) -> Any:
    """Return ``value`` masked for display: ``9434765919`` -> ``943•••••19``."""
    if value is None:
        return None
    text = str(value)
    if len(text) <= 5:
        return "•" * len(text)
    return text[:3] + "•" * (len(text) - 5) + text[-2:]


def _masked(profile: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(profile)
    for key in ("min", "max"):
        if out.get(key) is not None:
            out[key] = pid_mask(out[key])
    out["top"] = [
        {**item, "value": pid_mask(item.get("value"))} for item in out.get("top") or []
    ]
    out["masked"] = True
    return out


def snapshot_profile_for(
    *, user: Any, snapshot: SchemaSnapshot, table: str
) -> dict[str, dict[str, Any]]:
    """Return ``{column: profile}`` of one table, PID values masked without view_pid.

    Raises Http404 when the user may not see the snapshot's project or the
    table does not exist. An unmasked read of PID columns is audited
    (``migration.snapshot.pid_viewed``).
    """
    if not user_has_project_perm(user, snapshot.project_id, VIEW):
        raise Http404("Not found")
    tables = _by_name(snapshot.tables or [])
    if table not in tables:
        raise Http404("No such table")
    profiles: Mapping[str, Any] = (snapshot.profiles or {}).get(table) or {}
    pid = _pid_columns(tables[table], profiles)
    may_see = user_has_project_perm(user, snapshot.project_id, "view_pid")
    out: dict[str, dict[str, Any]] = {}
    for name, prof in profiles.items():
        if name in pid and not may_see:
            out[name] = _masked(prof)
        else:
            out[name] = {**prof, "masked": False, "pid": name in pid}
    if pid and may_see:
        with transaction.atomic():
            audit.record(
                actor=user,
                action="migration.snapshot.pid_viewed",
                target=snapshot,
                data={"table": table, "columns": sorted(pid)},
            )
    for name in pid & out.keys():
        out[name]["pid"] = True
    return out
