"""Code systems, crosswalks and their rows, CSV import, defaults, the miss queue.

Crosswalk rows follow the same four-eyes review as field mappings (see
``migration.services.mappings``); a row graded other than ``equal`` or
``equivalent`` needs a rationale to be approved, and a row whose target was
retired by a newer code-system release cannot be approved until it is edited.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance import audit
from governance.access import user_has_project_perm
from governance.models import MigrationProject
from migration.engine.codesystems import code_systems
from migration.engine.defaults import default_contract_dict
from migration.legacypas.codes import LOCAL_CODES, LOCAL_TABLES
from migration.models import (
    CodeSystem,
    Concept,
    Crosswalk,
    CrosswalkRow,
    Equivalence,
    MissQueueEntry,
    ReviewStatus,
    Run,
)
from migration.selectors_mapping import CSV_COLUMNS
from migration.services.mappings import ReviewPolicy, review_bulk, review_transition

__all__ = [
    "SYSTEM_ACTOR",
    "codesystem_load",
    "codesystem_load_packaged",
    "crosswalk_create",
    "crosswalk_import_csv",
    "crosswalk_row_approve",
    "crosswalk_row_create",
    "crosswalk_row_flag",
    "crosswalk_row_propose",
    "crosswalk_row_reject",
    "crosswalk_row_revert",
    "crosswalk_row_update",
    "crosswalk_rows_bulk_approve",
    "crosswalk_rows_bulk_revert",
    "crosswalks_seed_defaults",
    "missqueue_record",
    "missqueue_resolve",
]

#: The actor of machine-made changes (seeded defaults, run machinery).
SYSTEM_ACTOR = "system:pasportal"
S = ReviewStatus
_PLAIN_GRADES = frozenset({Equivalence.EQUAL, Equivalence.EQUIVALENT})
_UNSET: Any = object()


def _is_user(actor: Any) -> bool:
    return bool(getattr(actor, "is_authenticated", False)) and not isinstance(
        actor, str
    )


def _edit_refusal(actor: Any, project_id: int) -> tuple[str, str] | None:
    """Return the (code, reason) refusing a person without edit_mapping, or None."""
    if _is_user(actor) and user_has_project_perm(actor, project_id, "edit_mapping"):
        return None
    return ("forbidden", "you may not edit crosswalks on this project")


def _require_edit(
    *, actor: Any, project: MigrationProject | int, action: str, target: Any
) -> None:
    if isinstance(actor, str):
        return  # a system actor (management command, run machinery) is trusted
    if not user_has_project_perm(actor, project, "edit_mapping"):
        raise audit.refuse(
            actor=actor,
            action=action,
            reason="you may not edit crosswalks on this project",
            code="forbidden",
            target=target,
            project=project,
        )


# --- code systems ---------------------------------------------------------------------


def _date(value: Any) -> dt.date | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def _codes(
    data: Mapping[str, Any],
) -> list[tuple[str, str, dt.date | None, dt.date | None]]:
    out = []
    for c in data.get("codes") or []:
        if isinstance(c, Mapping):
            row = (
                c["code"],
                c.get("display", ""),
                c.get("valid_from"),
                c.get("valid_to"),
            )
        else:
            row = (
                c[0],
                c[1],
                c[2] if len(c) > 2 else None,
                c[3] if len(c) > 3 else None,
            )
        out.append((str(row[0]), str(row[1]), _date(row[2]), _date(row[3])))
    return out


def codesystem_load(*, actor: Any, data: Mapping[str, Any]) -> CodeSystem:
    """Load one code-system release (engine JSON form) into CodeSystem/Concept.

    Returns the stored release. Loading a NEW release of a system flags every
    approved crosswalk row of that system whose target code is missing or
    retired in it (``retired_target``, back to ``flagged``, audited). Reloading
    an identical release changes nothing; a different body under an existing
    version is refused (``release_exists``). Users must be staff (else
    ``forbidden``); a system actor is trusted. KeyError/ValueError on bad data.
    """
    slug, version = str(data["id"]), str(data["version"])
    codes = _codes(data)
    today = timezone.localdate()
    existing = CodeSystem.objects.filter(slug=slug, version=version).first()
    refusal: tuple[str, str] | None = None
    if not isinstance(actor, str) and not getattr(actor, "is_staff", False):
        refusal = ("forbidden", "only staff may load code systems")
    elif existing is not None:
        stored = sorted(existing.concepts.values_list("code", "display"))
        if stored == sorted((c[0], c[1]) for c in codes):
            return existing
        refusal = (
            "release_exists",
            f"{slug}@{version} is already loaded with other codes: a new "
            "release needs a new version",
        )
    if refusal is not None:
        raise audit.refuse(
            actor=actor,
            action="migration.codesystem.load_refused",
            reason=refusal[1],
            code=refusal[0],
            target=("migration.codesystem", f"{slug}@{version}"),
        )
    with transaction.atomic():
        system = CodeSystem.objects.create(
            slug=slug,
            name=str(data.get("name") or slug),
            version=version,
            release=str(data.get("release") or ""),
            valid_from=_date(data.get("valid_from")),
            valid_to=_date(data.get("valid_to")),
            verified=bool(data.get("verified", True)),
        )
        Concept.objects.bulk_create(
            Concept(
                code_system=system,
                code=code,
                display=display,
                valid_from=vf,
                valid_to=vt,
                retired=vt is not None and vt < today,
            )
            for code, display, vf, vt in codes
        )
        audit.record(
            actor=actor,
            action="migration.codesystem.loaded",
            target=system,
            data={"slug": slug, "version": version, "codes": len(codes)},
        )
        live = {code for code, _, _, vt in codes if vt is None or vt >= today}
        rows = (
            CrosswalkRow.objects.select_for_update(of=("self",))
            .filter(
                crosswalk__code_system__slug=slug,
                status=S.APPROVED,
            )
            .exclude(crosswalk__code_system=system)
            .exclude(target_code="")
            .select_related("crosswalk")
            .order_by("pk")
        )
        for row in rows:
            if row.target_code in live:
                continue
            row.retired_target = True
            row.status = S.FLAGGED
            row.review_comment = (
                f"Target code {row.target_code!r} is retired or missing in "
                f"{slug}@{version}: choose a current code"
            )
            row.save(
                update_fields=[
                    "retired_target",
                    "status",
                    "review_comment",
                    "changed_at",
                ]
            )
            audit.record(
                actor=actor,
                action="migration.crosswalk_row.flagged",
                target=row,
                project=row.crosswalk.project_id,
                data={
                    "from": S.APPROVED,
                    "to": S.FLAGGED,
                    "reason": "retired_target",
                    "release": f"{slug}@{version}",
                },
            )
    return system


def codesystem_load_packaged(*, actor: Any, slug: str, version: str) -> CodeSystem:
    """Load one release shipped with the engine; KeyError when it is not packaged."""
    cs = code_systems()[(slug, version)]
    return codesystem_load(
        actor=actor,
        data={
            "id": cs.id,
            "version": cs.version,
            "name": cs.name,
            "release": cs.release,
            "verified": cs.verified,
            "valid_from": cs.valid_from,
            "valid_to": cs.valid_to,
            "codes": [[c.code, c.display, c.valid_from, c.valid_to] for c in cs.codes],
        },
    )


# --- crosswalks and rows ------------------------------------------------------------


def _target_codes(crosswalk: Crosswalk) -> set[str]:
    return set(
        Concept.objects.filter(code_system=crosswalk.code_system_id).values_list(
            "code", flat=True
        )
    )


def _live_codes(crosswalk: Crosswalk) -> set[str]:
    return set(
        Concept.objects.filter(
            code_system=crosswalk.code_system_id, retired=False
        ).values_list("code", flat=True)
    )


def crosswalk_create(
    *,
    actor: Any,
    project: MigrationProject,
    slug: str,
    name: str,
    code_system: CodeSystem,
    local_table: str = "",
    default_code: str = "",
) -> Crosswalk:
    """Create an empty crosswalk into ``code_system``; Refused without edit_mapping."""
    _require_edit(
        actor=actor,
        project=project,
        action="migration.crosswalk.create_refused",
        target=project,
    )
    if default_code and not code_system.concepts.filter(code=default_code).exists():
        raise ValidationError(f"default {default_code!r} is not in {code_system}")
    with transaction.atomic():
        xw = Crosswalk.objects.create(
            project=project,
            slug=slug,
            name=name,
            code_system=code_system,
            local_table=local_table,
            default_code=default_code,
        )
        audit.record(
            actor=actor,
            action="migration.crosswalk.created",
            target=xw,
            data={
                "slug": slug,
                "code_system": f"{code_system.slug}@{code_system.version}",
            },
        )
    return xw


def _validate_row(
    crosswalk: Crosswalk, target_code: str, equivalence: str
) -> tuple[str, str] | None:
    """Return (code, message) when a row's target/grade is unacceptable."""
    if equivalence not in Equivalence.values:
        return "bad_equivalence", f"unknown equivalence {equivalence!r}"
    if equivalence == Equivalence.UNMATCHED:
        if target_code:
            return "bad_equivalence", "an unmatched row has no target code"
        return None
    if not target_code:
        return "unknown_target_code", "a target code is required"
    if target_code not in _target_codes(crosswalk):
        return (
            "unknown_target_code",
            f"{target_code!r} is not a code of {crosswalk.code_system}",
        )
    return None


def crosswalk_row_create(
    *,
    actor: Any,
    crosswalk: Crosswalk,
    local_code: str,
    target_code: str,
    equivalence: str,
    local_display: str = "",
    rationale: str = "",
) -> CrosswalkRow:
    """Create a DRAFT crosswalk row authored by ``actor``.

    Refused ``forbidden`` without edit_mapping; ValidationError on an unknown
    target code, a bad grade or a duplicate local code.
    """
    _require_edit(
        actor=actor,
        project=crosswalk.project_id,
        action="migration.crosswalk_row.create_refused",
        target=crosswalk,
    )
    problem = _validate_row(crosswalk, target_code, equivalence)
    if problem is not None:
        raise ValidationError(problem[1], code=problem[0])
    if crosswalk.rows.filter(local_code=local_code).exists():
        raise ValidationError(f"{local_code!r} is already mapped", code="duplicate")
    author = actor if _is_user(actor) else None
    with transaction.atomic():
        row = CrosswalkRow.objects.create(
            crosswalk=crosswalk,
            local_code=local_code,
            local_display=local_display,
            target_code=target_code,
            equivalence=equivalence,
            rationale=rationale,
            status=S.DRAFT,
            author=author,
            last_changed_by=author,
        )
        audit.record(
            actor=actor,
            action="migration.crosswalk_row.created",
            target=row,
            project=crosswalk.project_id,
            data={"to": S.DRAFT, "crosswalk": crosswalk.slug},
        )
    return row


def crosswalk_row_update(
    *,
    actor: Any,
    row: CrosswalkRow,
    target_code: str = _UNSET,
    equivalence: str = _UNSET,
    local_display: str = _UNSET,
    rationale: str = _UNSET,
) -> CrosswalkRow:
    """Edit a row; approved/flagged/rejected go back to proposed. Returns it.

    Records ``last_changed_by``. Refused ``forbidden`` without edit_mapping;
    ValidationError on an unknown target code or bad grade.
    """
    crosswalk = row.crosswalk
    if not _is_user(actor) or not user_has_project_perm(
        actor, crosswalk.project_id, "edit_mapping"
    ):
        raise audit.refuse(
            actor=actor,
            action="migration.crosswalk_row.update_refused",
            reason="you may not edit crosswalks on this project",
            code="forbidden",
            target=row,
            project=crosswalk.project_id,
        )
    with transaction.atomic():
        locked = CrosswalkRow.objects.select_for_update().get(pk=row.pk)
        changes = {
            k: v
            for k, v in {
                "target_code": target_code,
                "equivalence": equivalence,
                "local_display": local_display,
                "rationale": rationale,
            }.items()
            if v is not _UNSET and getattr(locked, k) != v
        }
        if changes:
            new_target = changes.get("target_code", locked.target_code)
            new_grade = changes.get("equivalence", locked.equivalence)
            problem = _validate_row(crosswalk, new_target, new_grade)
            if problem is not None:
                raise ValidationError(problem[1], code=problem[0])
            from_status = locked.status
            for k, v in changes.items():
                setattr(locked, k, v)
            if "target_code" in changes or "equivalence" in changes:
                locked.retired_target = bool(
                    new_target
                ) and new_target not in _live_codes(crosswalk)
            locked.last_changed_by = actor
            if locked.status in {S.APPROVED, S.FLAGGED, S.REJECTED}:
                locked.status = S.PROPOSED
                locked.reviewer = None
                locked.reviewed_at = None
            locked.save()
            audit.record(
                actor=actor,
                action="migration.crosswalk_row.updated",
                target=locked,
                project=crosswalk.project_id,
                data={
                    "from": from_status,
                    "to": locked.status,
                    "changed": sorted(changes),
                },
            )
    row.refresh_from_db()
    return row


def _row_project(row: CrosswalkRow) -> int:
    return int(
        Crosswalk.objects.filter(pk=row.crosswalk_id)
        .values_list("project_id", flat=True)
        .get()
    )


def _row_extra(row: CrosswalkRow, verb: str) -> tuple[str, str] | None:
    if verb == "approve" and row.retired_target:
        return (
            "retired_target",
            "the target code is retired in the current release: edit the row first",
        )
    return None


CROSSWALK_ROW_POLICY = ReviewPolicy(
    model=CrosswalkRow,
    entity="crosswalk_row",
    project_id=_row_project,
    needs_rationale=lambda row: row.equivalence not in _PLAIN_GRADES,
    extra_refusal=_row_extra,
)


def crosswalk_row_propose(*, actor: Any, row: CrosswalkRow) -> CrosswalkRow:
    """Submit a draft row for review; Refused when not allowed."""
    return review_transition(
        policy=CROSSWALK_ROW_POLICY, actor=actor, item=row, verb="propose"
    )


def crosswalk_row_approve(
    *, actor: Any, row: CrosswalkRow, comment: str = ""
) -> CrosswalkRow:
    """Approve a proposed row; Refused (four_eyes, rationale_required, ...)."""
    return review_transition(
        policy=CROSSWALK_ROW_POLICY,
        actor=actor,
        item=row,
        verb="approve",
        comment=comment,
    )


def crosswalk_row_flag(
    *, actor: Any, row: CrosswalkRow, comment: str = ""
) -> CrosswalkRow:
    """Flag a proposed or approved row; Refused when not allowed."""
    return review_transition(
        policy=CROSSWALK_ROW_POLICY, actor=actor, item=row, verb="flag", comment=comment
    )


def crosswalk_row_reject(
    *, actor: Any, row: CrosswalkRow, comment: str = ""
) -> CrosswalkRow:
    """Reject a proposed or flagged row; Refused when not allowed."""
    return review_transition(
        policy=CROSSWALK_ROW_POLICY,
        actor=actor,
        item=row,
        verb="reject",
        comment=comment,
    )


def crosswalk_row_revert(
    *, actor: Any, row: CrosswalkRow, to: str = S.PROPOSED, comment: str = ""
) -> CrosswalkRow:
    """Send a row back to draft or proposed; Refused when not allowed."""
    return review_transition(
        policy=CROSSWALK_ROW_POLICY,
        actor=actor,
        item=row,
        verb="revert",
        comment=comment,
        to=to,
    )


def crosswalk_rows_bulk_approve(
    *, actor: Any, ids: Iterable[Any], comment: str = ""
) -> list[CrosswalkRow]:
    """Approve exactly the rows ``ids`` (all or nothing); Refused otherwise."""
    return review_bulk(
        policy=CROSSWALK_ROW_POLICY,
        actor=actor,
        ids=ids,
        verb="approve",
        comment=comment,
    )


def crosswalk_rows_bulk_revert(
    *, actor: Any, ids: Iterable[Any], to: str = S.PROPOSED
) -> list[CrosswalkRow]:
    """Revert exactly the rows ``ids`` to draft/proposed (all or nothing)."""
    return review_bulk(
        policy=CROSSWALK_ROW_POLICY, actor=actor, ids=ids, verb="revert", to=to
    )


# --- CSV import ----------------------------------------------------------------------


def _decode(
    file_bytes: bytes, encoding: str
) -> tuple[str | None, dict[str, Any] | None]:
    codec = (
        "utf-8-sig"
        if encoding.lower().replace("_", "-") in {"utf-8", "utf8"}
        else encoding
    )
    try:
        return file_bytes.decode(codec), None
    except UnicodeDecodeError as exc:
        line = file_bytes.count(b"\n", 0, exc.start) + 1
        return None, {
            "code": "wrong_encoding",
            "line": line,
            "byte": exc.start,
            "message": f"line {line}, byte {exc.start}: not valid {encoding}",
        }
    except LookupError:
        return None, {
            "code": "wrong_encoding",
            "message": f"unknown encoding {encoding!r}",
        }


def _parse_csv(
    crosswalk: Crosswalk, text: str
) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Return (rows, problems) of a crosswalk CSV."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        return [], [
            {
                "code": "bad_header",
                "line": 1,
                "message": f"line 1: missing column(s) {', '.join(missing)}",
            }
        ]
    reader.fieldnames = header
    codes = _target_codes(crosswalk)
    rows: list[dict[str, str]] = []
    problems: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    try:
        for raw in reader:
            line = reader.line_num
            row = {c: (raw.get(c) or "").strip() for c in CSV_COLUMNS}
            local = row["local_code"]
            grade = row["equivalence"].lower() or Equivalence.EQUIVALENT
            row["equivalence"] = grade
            if not local:
                problems.append(
                    {
                        "code": "missing_local_code",
                        "line": line,
                        "message": f"line {line}: no local_code",
                    }
                )
                continue
            if local in first_line:
                problems.append(
                    {
                        "code": "duplicate_local_code",
                        "line": line,
                        "message": f"line {line}: local code {local!r} repeats line "
                        f"{first_line[local]}",
                    }
                )
                continue
            first_line[local] = line
            if grade not in Equivalence.values:
                problems.append(
                    {
                        "code": "bad_equivalence",
                        "line": line,
                        "message": f"line {line}: unknown equivalence {grade!r}",
                    }
                )
            elif grade == Equivalence.UNMATCHED and row["target_code"]:
                problems.append(
                    {
                        "code": "bad_equivalence",
                        "line": line,
                        "message": f"line {line}: an unmatched row has no target code",
                    }
                )
            elif grade != Equivalence.UNMATCHED and row["target_code"] not in codes:
                problems.append(
                    {
                        "code": "unknown_target_code",
                        "line": line,
                        "message": f"line {line}: target code {row['target_code']!r} "
                        f"is not in {crosswalk.code_system}",
                    }
                )
            rows.append({**row, "line": str(line)})
    except csv.Error as exc:
        problems.append(
            {
                "code": "malformed_csv",
                "line": reader.line_num,
                "message": f"line {reader.line_num}: {exc}",
            }
        )
    return rows, problems


def crosswalk_import_csv(
    *,
    actor: Any,
    crosswalk: Crosswalk,
    file_bytes: bytes,
    encoding: str = "utf-8",
) -> dict[str, int]:
    """Import rows from CSV as PROPOSED rows; return ``{created, updated, unchanged}``.

    Columns: local_code, local_display, target_code, equivalence, rationale.
    New local codes become proposed rows authored by ``actor``; a changed
    existing row is an edit (last_changed_by, back to proposed). The whole file
    is refused (Refused, audited, nothing changed) on a wrong encoding, a bad
    header, duplicate local codes, unknown target codes or bad grades, naming
    the line (and byte). Refused ``forbidden`` without edit_mapping.
    """
    project_id = crosswalk.project_id
    if not _is_user(actor) or not user_has_project_perm(
        actor, project_id, "edit_mapping"
    ):
        raise audit.refuse(
            actor=actor,
            action="migration.crosswalk.import_refused",
            reason="you may not edit crosswalks on this project",
            code="forbidden",
            target=crosswalk,
        )
    text, problem = _decode(file_bytes, encoding)
    problems = [problem] if problem else []
    rows: list[dict[str, str]] = []
    if text is not None:
        rows, problems = _parse_csv(crosswalk, text)
    if problems:
        raise audit.refuse(
            actor=actor,
            action="migration.crosswalk.import_refused",
            reason="; ".join(p["message"] for p in problems[:10])
            + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""),
            code=problems[0]["code"],
            target=crosswalk,
            data={
                "problems": [
                    {k: v for k, v in p.items() if k in {"code", "line", "byte"}}
                    for p in problems[:100]
                ],
                "encoding": encoding,
            },
        )
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    with transaction.atomic():
        existing = {
            r.local_code: r
            for r in CrosswalkRow.objects.select_for_update().filter(
                crosswalk=crosswalk
            )
        }
        live = _live_codes(crosswalk)
        for row in rows:
            fields = {
                "local_display": row["local_display"],
                "target_code": row["target_code"],
                "equivalence": row["equivalence"],
                "rationale": row["rationale"],
            }
            current = existing.get(row["local_code"])
            if current is None:
                CrosswalkRow.objects.create(
                    crosswalk=crosswalk,
                    local_code=row["local_code"],
                    status=S.PROPOSED,
                    author=actor,
                    last_changed_by=actor,
                    retired_target=bool(fields["target_code"])
                    and fields["target_code"] not in live,
                    **fields,
                )
                counts["created"] += 1
                continue
            if all(getattr(current, k) == v for k, v in fields.items()):
                counts["unchanged"] += 1
                continue
            for k, v in fields.items():
                setattr(current, k, v)
            current.retired_target = bool(current.target_code) and (
                current.target_code not in live
            )
            current.last_changed_by = actor
            if current.status in {S.APPROVED, S.FLAGGED, S.REJECTED}:
                current.status = S.PROPOSED
                current.reviewer = None
                current.reviewed_at = None
            current.save()
            counts["updated"] += 1
        audit.record(
            actor=actor,
            action="migration.crosswalk.imported",
            target=crosswalk,
            data={**counts, "to": S.PROPOSED, "format": "csv", "encoding": encoding},
        )
    return counts


# --- defaults for the generated legacy PAS ----------------------------------------


def crosswalks_seed_defaults(
    *, actor: Any, project: MigrationProject
) -> list[Crosswalk]:
    """Create the generated legacy PAS crosswalks (one per CT_LocalCode table).

    Rows come from ``migration.legacypas.codes`` and are PROPOSED, authored by
    the system (no person), so any steward can approve them; rows graded
    ``unmatched`` carry no rationale on purpose: a steward must write one.
    Existing crosswalks/rows are left alone. Returns the project's seeded
    crosswalks. Refused ``forbidden`` for a user without edit_mapping.
    """
    _require_edit(
        actor=actor,
        project=project,
        action="migration.crosswalk.seed_refused",
        target=project,
    )
    contract_xws = {
        str(x["source_system"]).removeprefix("CT_LocalCode:"): x
        for x in default_contract_dict()["crosswalks"]
    }
    out: list[Crosswalk] = []
    for table in LOCAL_TABLES:
        spec = contract_xws[table]
        system = CodeSystem.objects.filter(
            slug=spec["target_system"], version=spec["target_version"]
        ).first() or codesystem_load_packaged(
            actor=SYSTEM_ACTOR,
            slug=spec["target_system"],
            version=spec["target_version"],
        )
        grades = {e["local"]: e["equivalence"] for e in spec["entries"]}
        with transaction.atomic():
            xw, created = Crosswalk.objects.get_or_create(
                project=project,
                slug=str(spec["id"]),
                defaults={
                    "name": str(spec.get("description") or spec["id"]),
                    "code_system": system,
                    "local_table": f"CT_LocalCode:{table}",
                    "default_code": spec.get("default") or "",
                },
            )
            have = set(xw.rows.values_list("local_code", flat=True))
            new_rows = [
                CrosswalkRow(
                    crosswalk=xw,
                    local_code=c.code,
                    local_display=c.desc,
                    target_code=c.national or "",
                    equivalence=grades.get(
                        c.code,
                        Equivalence.UNMATCHED
                        if c.national is None
                        else Equivalence.EQUIVALENT,
                    ),
                    status=S.PROPOSED,
                )
                for c in LOCAL_CODES
                if c.table == table and c.code not in have
            ]
            CrosswalkRow.objects.bulk_create(new_rows)
            if created or new_rows:
                audit.record(
                    actor=actor,
                    action="migration.crosswalk.seeded",
                    target=xw,
                    data={
                        "created": created,
                        "rows": len(new_rows),
                        "to": S.PROPOSED,
                        "source": "migration.legacypas.codes",
                        "authored_by": SYSTEM_ACTOR,
                    },
                )
        out.append(xw)
    return out


# --- the miss queue --------------------------------------------------------------------


def missqueue_record(
    *,
    run: Run,
    crosswalk: Crosswalk,
    counts: Mapping[str, int],
    defaulted: Mapping[str, int] | None = None,
) -> list[MissQueueEntry]:
    """Record a run's distinct unmapped local values with their frequency.

    ``counts`` are all rows per value; ``defaulted`` those of them a lenient
    lookup filled with the crosswalk default (loaded rather than rejected).
    Idempotent per run (frequencies are replaced, not added). Returns the
    entries. ValueError when the crosswalk is not of the run's project.
    """
    defaulted = defaulted or {}
    if crosswalk.project_id != run.project_id:
        raise ValueError("the crosswalk belongs to another project than the run")
    entries: list[MissQueueEntry] = []
    values = {str(v)[:200] for v in counts}
    # A value a steward left untranslated stays so in later runs (until
    # reopened); one that already has a crosswalk row under review or
    # approved after this run's contract is resolved: neither needs the queue
    # again. A row stewards rejected leaves the value open.
    ignored = {
        e.local_value: e
        for e in MissQueueEntry.objects.filter(
            crosswalk=crosswalk,
            local_value__in=values,
            state=MissQueueEntry.State.IGNORED,
        ).order_by("decided_at", "pk")  # the latest decision wins
    }
    has_row = set(
        crosswalk.rows.filter(local_code__in=values)
        .exclude(status=S.REJECTED)
        .values_list("local_code", flat=True)
    )

    def first_state(local: str) -> str:
        if local in has_row:
            return MissQueueEntry.State.RESOLVED
        if local in ignored:
            return MissQueueEntry.State.IGNORED
        return MissQueueEntry.State.OPEN

    with transaction.atomic():
        for value, n in sorted(counts.items()):
            local = str(value)[:200]
            entry, _ = MissQueueEntry.objects.update_or_create(
                crosswalk=crosswalk,
                run=run,
                local_value=local,
                defaults={
                    "frequency": int(n),
                    "defaulted": min(int(defaulted.get(value, 0)), int(n)),
                },
                create_defaults={
                    "frequency": int(n),
                    "defaulted": min(int(defaulted.get(value, 0)), int(n)),
                    "state": first_state(local),
                    **_decision_of(
                        ignored.get(local) if local not in has_row else None
                    ),
                },
            )
            entries.append(entry)
        # The values themselves stay out of the trail: an unmapped "code" can
        # be anything a source column held, including patient data.
        audit.record(
            actor=f"{SYSTEM_ACTOR}:run",
            action="migration.missqueue.recorded",
            target=crosswalk,
            data={
                "run": run.pk,
                "distinct": len(entries),
                "total": sum(int(n) for n in counts.values()),
                "defaulted": sum(int(n) for n in defaulted.values()),
                "open": sum(e.state == MissQueueEntry.State.OPEN for e in entries),
            },
        )
    return entries


def _decision_of(entry: MissQueueEntry | None) -> dict[str, Any]:
    """Return the steward's decision on ``entry``, to carry to a later run's entry."""
    if entry is None:
        return {}
    return {
        "note": entry.note,
        "decided_by_id": entry.decided_by_id,
        "decided_at": entry.decided_at,
    }


def _note_refusal(verb: str, note: str) -> tuple[str, str] | None:
    """Return the (code, reason) refusing the decision's note, or None."""
    if verb == "ignore" and not note:
        return (
            "no_reason",
            "say why the value stays untranslated (e.g. not a code: a data-entry error)",
        )
    if len(note) > 500:
        return ("invalid", "the reason is longer than 500 characters")
    return None


def _miss_decision(
    *,
    actor: Any,
    entry: MissQueueEntry,
    verb: str,
    done: str,
    from_state: str,
    to_state: str,
    note: str = "",
) -> int:
    """Move every ``from_state`` entry of the entry's value (all runs) to ``to_state``."""
    crosswalk = entry.crosswalk
    project_id = crosswalk.project_id
    refusal = _edit_refusal(actor, project_id) or _note_refusal(verb, note)
    n = 0
    if refusal is None:
        with transaction.atomic():
            locked = MissQueueEntry.objects.select_for_update().get(pk=entry.pk)
            if locked.state != from_state:
                refusal = ("not_" + from_state, f"this entry is {locked.state}")
            else:
                n = MissQueueEntry.objects.filter(
                    crosswalk=crosswalk,
                    local_value=locked.local_value,
                    state=from_state,
                ).update(
                    state=to_state,
                    note=note,
                    decided_by=actor,
                    decided_at=timezone.now(),
                )
                # The value stays out of the trail (see missqueue_record).
                audit.record(
                    actor=actor,
                    action=f"migration.missqueue.{done}",
                    target=locked,
                    project=project_id,
                    data={
                        "entries": n,
                        "from": from_state,
                        "to": to_state,
                        **({"reason": note} if note else {}),
                    },
                )
    if refusal is not None:
        raise audit.refuse(
            actor=actor,
            action=f"migration.missqueue.{verb}_refused",
            reason=refusal[1],
            code=refusal[0],
            target=entry,
            project=project_id,
        )
    entry.refresh_from_db()
    return n


def missqueue_ignore(*, actor: Any, entry: MissQueueEntry, note: str) -> int:
    """Leave a missed value untranslated, saying why; return the entries changed.

    Every open entry of the value in that crosswalk (any run) becomes
    ``ignored``, and so will the value's entries from later runs, until
    reopened: its rows are still rejected (strict) or defaulted (lenient) as
    the contract says -- this is the stewards' triage, not a translation.
    Refused ``forbidden`` without edit_mapping, ``no_reason`` without a
    reason, ``not_open`` when the entry is not open.
    """
    return _miss_decision(
        actor=actor,
        entry=entry,
        verb="ignore",
        done="ignored",
        from_state=MissQueueEntry.State.OPEN,
        to_state=MissQueueEntry.State.IGNORED,
        note=note.strip(),
    )


def missqueue_reopen(*, actor: Any, entry: MissQueueEntry) -> int:
    """Put an ignored value back in the queue; return the entries changed."""
    return _miss_decision(
        actor=actor,
        entry=entry,
        verb="reopen",
        done="reopened",
        from_state=MissQueueEntry.State.IGNORED,
        to_state=MissQueueEntry.State.OPEN,
    )


def missqueue_resolve(
    *,
    actor: Any,
    entry: MissQueueEntry,
    target_code: str,
    equivalence: str,
    rationale: str,
) -> CrosswalkRow:
    """Add a PROPOSED crosswalk row for a missed value and resolve its entries.

    Every open entry of the same value in that crosswalk is resolved. Refused
    ``forbidden`` without edit_mapping; Refused (``unknown_target_code``,
    ``bad_equivalence``, ``duplicate_local_code``, ``not_open``) on bad input.
    """
    crosswalk = entry.crosswalk
    project_id = crosswalk.project_id
    refusal = _edit_refusal(actor, project_id)
    row: CrosswalkRow | None = None
    if refusal is None:
        with transaction.atomic():
            locked = MissQueueEntry.objects.select_for_update().get(pk=entry.pk)
            if locked.state != MissQueueEntry.State.OPEN:
                refusal = ("not_open", f"this entry is already {locked.state}")
            elif len(locked.local_value) > 80:
                refusal = ("bad_local_code", "the value is too long to be a local code")
            elif crosswalk.rows.filter(local_code=locked.local_value).exists():
                refusal = ("duplicate_local_code", "this value already has a row")
            else:
                refusal = _validate_row(crosswalk, target_code, equivalence)
            if refusal is None:
                row = CrosswalkRow.objects.create(
                    crosswalk=crosswalk,
                    local_code=locked.local_value,
                    target_code=target_code,
                    equivalence=equivalence,
                    rationale=rationale,
                    status=S.PROPOSED,
                    author=actor,
                    last_changed_by=actor,
                )
                resolved = MissQueueEntry.objects.filter(
                    crosswalk=crosswalk,
                    local_value=locked.local_value,
                    state=MissQueueEntry.State.OPEN,
                )
                n = resolved.update(state=MissQueueEntry.State.RESOLVED)
                audit.record(
                    actor=actor,
                    action="migration.missqueue.resolved",
                    target=locked,
                    project=project_id,
                    data={
                        "crosswalk_row": row.pk,
                        "entries": n,
                        "from": MissQueueEntry.State.OPEN,
                        "to": MissQueueEntry.State.RESOLVED,
                        "row_status": S.PROPOSED,
                    },
                )
    if refusal is not None:
        raise audit.refuse(
            actor=actor,
            action="migration.missqueue.resolve_refused",
            reason=refusal[1],
            code=refusal[0],
            target=entry,
            project=project_id,
        )
    assert row is not None
    entry.refresh_from_db()
    return row
