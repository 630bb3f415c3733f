"""Mapping sets, table and field mappings, and the four-eyes review workflow.

States of a reviewable item (field mapping or crosswalk row):
draft -> proposed -> approved | flagged | rejected; editing an approved,
flagged or rejected item returns it to proposed; revert sends an item back to
draft or proposed.

Every transition is one atomic function that writes one audit event in the
same transaction (data: from/to status, never patient data). A refused
attempt changes nothing and is itself audited through ``audit.refuse``
(codes: ``forbidden``, ``four_eyes``, ``rationale_required``,
``invalid_transition``, ``retired_target``). The review machinery here is
shared with crosswalk rows (``migration.services.crosswalks``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from governance import audit
from governance.access import projects_for_user, user_has_project_perm
from governance.models import MigrationProject
from migration.engine.contract import (
    ExcludeRule,
    contract_from_dict,
    exclude_rule_from_dict,
)
from migration.engine.defaults import default_contract_dict
from migration.engine.errors import ContractError
from migration.engine.transforms import REGISTRY, check_args
from migration.models import (
    Crosswalk,
    ExclusionRule,
    FieldMapping,
    MappingSet,
    ReviewStatus,
    SchemaSnapshot,
    TableMapping,
)
from migration.services.suggestions import target_model_for

__all__ = [
    "MAX_TRANSFORM_STEPS",
    "TRIVIAL_TRANSFORMS",
    "ReviewPolicy",
    "field_mapping_approve",
    "field_mapping_create",
    "field_mapping_draft",
    "field_mapping_flag",
    "field_mapping_needs_rationale",
    "field_mapping_propose",
    "field_mapping_reject",
    "field_mapping_revert",
    "field_mapping_update",
    "field_mappings_bulk_approve",
    "field_mappings_bulk_revert",
    "mapping_set_create",
    "mapping_set_import_contract",
    "review_bulk",
    "review_transition",
    "table_mapping_create",
]

#: Transforms that cannot change a value's meaning: no rationale needed.
TRIVIAL_TRANSFORMS = frozenset(
    {
        "trim",
        "upper",
        "lower",
        "null_if_empty",
        "nhs_number_normalise",
        "postcode_normalise",
    }
)

S = ReviewStatus
_UNSET: Any = object()


def _is_user(actor: Any) -> bool:
    return bool(getattr(actor, "is_authenticated", False)) and not isinstance(
        actor, str
    )


# --- the shared review machinery ------------------------------------------------


@dataclass(frozen=True)
class ReviewPolicy:
    """How one kind of reviewable item is reviewed."""

    model: type[models.Model]
    entity: str  # audit namespace: field_mapping / crosswalk_row
    project_id: Callable[[Any], int]
    needs_rationale: Callable[[Any], bool]
    extra_refusal: Callable[[Any, str], tuple[str, str] | None] = lambda item, verb: (
        None
    )


#: verb -> (target status, allowed from, permission(s), four-eyes applies)
_TRANSITIONS: dict[str, tuple[str | None, frozenset[str], tuple[str, ...], bool]] = {
    "propose": (S.PROPOSED, frozenset({S.DRAFT}), ("edit_mapping",), False),
    "approve": (S.APPROVED, frozenset({S.PROPOSED}), ("review_mapping",), True),
    "flag": (
        S.FLAGGED,
        frozenset({S.PROPOSED, S.APPROVED}),
        ("review_mapping",),
        False,
    ),
    "reject": (
        S.REJECTED,
        frozenset({S.PROPOSED, S.FLAGGED}),
        ("review_mapping",),
        False,
    ),
    # target chosen by the caller (draft or proposed)
    "revert": (
        None,
        frozenset({S.PROPOSED, S.APPROVED, S.FLAGGED, S.REJECTED}),
        ("edit_mapping", "review_mapping"),
        False,
    ),
}
_PAST = {
    "propose": "proposed",
    "approve": "approved",
    "flag": "flagged",
    "reject": "rejected",
    "revert": "reverted",
}


def _check(
    *,
    policy: ReviewPolicy,
    actor: Any,
    item: Any,
    verb: str,
    allowed_projects: set[int] | None = None,
) -> tuple[str, str] | None:
    """Return (code, reason) when ``actor`` may not do ``verb`` to ``item``."""
    _to, allowed_from, perms, four_eyes = _TRANSITIONS[verb]
    project_id = policy.project_id(item)
    if not _is_user(actor):
        return "forbidden", "only a signed-in person can review mappings"
    if allowed_projects is not None:
        if project_id not in allowed_projects:
            return "forbidden", f"you may not {verb} items of this project"
    elif not any(user_has_project_perm(actor, project_id, p) for p in perms):
        return "forbidden", f"you may not {verb} items of this project"
    if item.status not in allowed_from:
        return (
            "invalid_transition",
            f"a {item.status} item cannot be {_PAST[verb]}",
        )
    if four_eyes and actor.pk in {item.author_id, item.last_changed_by_id}:
        return (
            "four_eyes",
            "four-eyes: you authored or last changed this item, so someone "
            "else must approve it",
        )
    if (
        verb == "approve"
        and policy.needs_rationale(item)
        and not item.rationale.strip()
    ):
        return (
            "rationale_required",
            "this item needs a written rationale to be approved",
        )
    return policy.extra_refusal(item, verb)


def _apply(
    *,
    policy: ReviewPolicy,
    actor: Any,
    item: Any,
    verb: str,
    to: str,
    comment: str,
    bulk: bool = False,
) -> None:
    from_status = item.status
    item.status = to
    fields = ["status", "changed_at"]
    if verb in {"approve", "flag", "reject"}:
        item.reviewer = actor
        item.reviewed_at = timezone.now()
        fields += ["reviewer", "reviewed_at"]
    else:
        # A new review round starts: an earlier verdict no longer stands.
        item.reviewer = None
        item.reviewed_at = None
        fields += ["reviewer", "reviewed_at"]
    if comment or verb in {"approve", "flag", "reject"}:
        item.review_comment = comment
        fields.append("review_comment")
    item.save(update_fields=fields)
    data: dict[str, Any] = {"from": from_status, "to": to}
    if bulk:
        data["bulk"] = True
    audit.record(
        actor=actor,
        action=f"migration.{policy.entity}.{_PAST[verb]}",
        target=item,
        project=policy.project_id(item),
        data=data,
    )


def review_transition(
    *,
    policy: ReviewPolicy,
    actor: Any,
    item: Any,
    verb: str,
    comment: str = "",
    to: str | None = None,
) -> Any:
    """Move one item through ``verb``; return it refreshed.

    Raises Refused (audited, nothing changed) when the actor may not.
    """
    target_status = to or _TRANSITIONS[verb][0]
    if verb == "revert" and target_status not in {S.DRAFT, S.PROPOSED}:
        raise ValidationError("revert goes back to draft or proposed only")
    refusal = None
    with transaction.atomic():
        # Lock the row: two reviewers acting at once must see each other's result.
        locked = policy.model.objects.select_for_update().get(pk=item.pk)
        refusal = _check(policy=policy, actor=actor, item=locked, verb=verb)
        if refusal is None:
            _apply(
                policy=policy,
                actor=actor,
                item=locked,
                verb=verb,
                to=str(target_status),
                comment=comment,
            )
    if refusal is not None:
        raise audit.refuse(
            actor=actor,
            action=f"migration.{policy.entity}.{verb}_refused",
            reason=refusal[1],
            code=refusal[0],
            target=locked,
            project=policy.project_id(locked),
            data={"status": locked.status},
        )
    item.refresh_from_db()
    return item


def review_bulk(
    *,
    policy: ReviewPolicy,
    actor: Any,
    ids: Iterable[Any],
    verb: str,
    comment: str = "",
    to: str | None = None,
) -> list[Any]:
    """Apply ``verb`` to exactly the items ``ids``, all or nothing; return them.

    Any id that is unknown, of a project where the actor lacks the permission,
    or not allowed (four-eyes, rationale, state) refuses the whole batch
    (Refused, audited, nothing changed).
    """
    try:
        wanted = list(dict.fromkeys(int(i) for i in ids))
    except (TypeError, ValueError):
        raise ValidationError("ids must be integers") from None
    if not wanted:
        return []
    target_status = to or _TRANSITIONS[verb][0]
    if verb == "revert" and target_status not in {S.DRAFT, S.PROPOSED}:
        raise ValidationError("revert goes back to draft or proposed only")
    perms = _TRANSITIONS[verb][2]
    allowed: set[int] = set()
    if _is_user(actor):
        for perm in perms:
            allowed |= set(projects_for_user(actor, perm).values_list("pk", flat=True))
    problems: list[dict[str, Any]] = []
    with transaction.atomic():
        items = list(
            policy.model.objects.select_for_update()
            .filter(pk__in=wanted)
            .order_by("pk")
        )
        found = {i.pk for i in items}
        # Unknown and foreign ids look the same: neither may be acted upon,
        # and the answer must not reveal which ids exist elsewhere.
        problems += [{"id": i, "code": "forbidden"} for i in wanted if i not in found]
        for item in items:
            refusal = _check(
                policy=policy,
                actor=actor,
                item=item,
                verb=verb,
                allowed_projects=allowed,
            )
            if refusal is not None:
                problems.append({"id": item.pk, "code": refusal[0]})
        if not problems:
            for item in items:
                _apply(
                    policy=policy,
                    actor=actor,
                    item=item,
                    verb=verb,
                    to=str(target_status),
                    comment=comment,
                    bulk=True,
                )
    if problems:
        visible = sorted({policy.project_id(i) for i in items} & allowed)
        problems.sort(key=lambda p: wanted.index(p["id"]))
        raise audit.refuse(
            actor=actor,
            action=f"migration.{policy.entity}.bulk_{verb}_refused",
            reason=(
                f"{len(problems)} of the {len(wanted)} selected items cannot be "
                f"{_PAST[verb]}; nothing was changed"
            ),
            code=problems[0]["code"],
            project=visible[0] if len(visible) == 1 else None,
            data={"ids": wanted, "problems": problems},
        )
    return items


# --- field mappings -----------------------------------------------------------------


def field_mapping_needs_rationale(fm: FieldMapping) -> bool:
    """Return True when approving ``fm`` needs a written rationale.

    Any transform beyond the trivial clean-ups, a crosswalk, or a waiver is a
    judgement someone must explain.
    """
    names = {str(s.get("name")) for s in fm.transforms or [] if isinstance(s, dict)}
    return bool(names - TRIVIAL_TRANSFORMS) or fm.crosswalk_id is not None or fm.waived


def _fm_project(fm: FieldMapping) -> int:
    return int(
        MappingSet.objects.filter(table_mappings__pk=fm.table_mapping_id)
        .values_list("project_id", flat=True)
        .get()
    )


FIELD_MAPPING_POLICY = ReviewPolicy(
    model=FieldMapping,
    entity="field_mapping",
    project_id=_fm_project,
    needs_rationale=field_mapping_needs_rationale,
)


def _require_edit(
    *, actor: Any, project: MigrationProject | int, action: str, target: Any
) -> None:
    if isinstance(actor, str):
        return  # a system actor (management command, run machinery) is trusted
    if not user_has_project_perm(actor, project, "edit_mapping"):
        raise audit.refuse(
            actor=actor,
            action=action,
            reason="you may not edit mappings on this project",
            code="forbidden",
            target=target,
            project=project,
        )


def _crosswalk_step_needs_one(steps: Any, crosswalk: Crosswalk | None) -> None:
    """A crosswalk step translates with the mapping's crosswalk: it needs one."""
    if crosswalk is None and any(
        isinstance(s, dict) and s.get("name") == "crosswalk" for s in steps or []
    ):
        raise ValidationError(
            "a crosswalk step needs the crosswalk it translates with: choose one "
            "(or remove the step)"
        )


#: The longest transform chain a field mapping may have (the step editor's rows).
MAX_TRANSFORM_STEPS = 50


def _validate_transforms(steps: Any) -> list[dict[str, Any]]:
    if not isinstance(steps, list):
        raise ValidationError("transforms must be a list of {name, args} steps")
    if len(steps) > MAX_TRANSFORM_STEPS:
        raise ValidationError(
            f"{len(steps)} transform steps; a field mapping takes at most "
            f"{MAX_TRANSFORM_STEPS}"
        )
    out: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or "name" not in step:
            raise ValidationError(f"transform step {i + 1} has no name")
        name, args = str(step["name"]), dict(step.get("args") or {})
        if name == "lookup":
            if i != len(steps) - 1:
                raise ValidationError("lookup must be the last step")
            missing = {"table", "match", "take"} - args.keys()
            if missing:
                raise ValidationError(f"lookup needs {', '.join(sorted(missing))}")
        elif name not in REGISTRY:
            raise ValidationError(f"unknown transform {name!r}")
        elif name != "crosswalk":  # the crosswalk id comes from the FK
            try:
                check_args(name, args)
            except ContractError as exc:
                raise ValidationError(str(exc)) from None
        out.append({"name": name, "args": args})
    return out


def field_mapping_draft(
    *,
    mapping: FieldMapping,
    source_columns: Sequence[str],
    transforms: Any,
    crosswalk: Crosswalk | None,
    crosswalk_strict: bool,
) -> FieldMapping:
    """Return ``mapping`` as an edit would leave it, unsaved (for a preview).

    The same checks as ``field_mapping_update`` (ValidationError naming the
    problem); nothing is stored, nothing is audited.
    """
    project_id = _fm_project(mapping)
    steps = _validate_transforms(transforms)
    if crosswalk is not None and crosswalk.project_id != project_id:
        raise ValidationError("the crosswalk belongs to another project")
    _crosswalk_step_needs_one(steps, crosswalk)
    draft = copy.copy(mapping)
    draft.source_columns = [str(c) for c in source_columns]
    draft.transforms = steps
    draft.crosswalk = crosswalk
    draft.crosswalk_strict = bool(crosswalk_strict)
    return draft


def mapping_set_create(
    *,
    actor: Any,
    project: MigrationProject,
    name: str,
    source_snapshot: SchemaSnapshot,
    target_model_version: str = "1",
    options: dict[str, Any] | None = None,
) -> MappingSet:
    """Create a mapping set of ``source_snapshot``; Refused ``forbidden`` without edit.

    The refusal is checked, and audited, before the creating transaction opens
    (inside it, the rollback would erase the record of the attempt).
    """
    if source_snapshot.project_id != project.pk:
        raise ValidationError("the snapshot belongs to another project")
    _require_edit(
        actor=actor,
        project=project,
        action="migration.mapping_set.create_refused",
        target=project,
    )
    with transaction.atomic():
        ms = MappingSet.objects.create(
            project=project,
            name=name,
            source_snapshot=source_snapshot,
            target_model_version=target_model_version,
            options=options or {},
            created_by=actor if _is_user(actor) else None,
        )
        audit.record(
            actor=actor,
            action="migration.mapping_set.created",
            target=ms,
            data={"name": name, "snapshot": source_snapshot.pk},
        )
    return ms


def table_mapping_create(
    *,
    actor: Any,
    mapping_set: MappingSet,
    target_table: str,
    source_table: str,
    source_key: str,
) -> TableMapping:
    """Map a source table onto a target table; Refused ``forbidden`` without edit
    (checked and audited before the creating transaction opens)."""
    _require_edit(
        actor=actor,
        project=mapping_set.project_id,
        action="migration.table_mapping.create_refused",
        target=mapping_set,
    )
    return _table_mapping_store(
        actor=actor,
        mapping_set=mapping_set,
        target_table=target_table,
        source_table=source_table,
        source_key=source_key,
    )


def _table_mapping_store(
    *,
    actor: Any,
    mapping_set: MappingSet,
    target_table: str,
    source_table: str,
    source_key: str,
) -> TableMapping:
    """Create a table mapping and its audit event (permission already checked)."""
    with transaction.atomic():
        tm = TableMapping.objects.create(
            mapping_set=mapping_set,
            target_table=target_table,
            source_table=source_table,
            source_key=source_key,
        )
        audit.record(
            actor=actor,
            action="migration.table_mapping.created",
            target=mapping_set,
            data={
                "table_mapping": tm.pk,
                "target": target_table,
                "source": source_table,
            },
        )
    return tm


def field_mapping_create(
    *,
    actor: Any,
    table_mapping: TableMapping,
    target_field: str,
    source_columns: Sequence[str] = (),
    transforms: list[dict[str, Any]] | None = None,
    crosswalk: Crosswalk | None = None,
    rationale: str = "",
    waived: bool = False,
) -> FieldMapping:
    """Create a DRAFT field mapping authored by ``actor``.

    Refused ``forbidden`` without ``edit_mapping``; ValidationError on bad input
    (a field the target table does not have, one already mapped, bad steps).
    """
    project_id = table_mapping.mapping_set.project_id
    _require_edit(
        actor=actor,
        project=project_id,
        action="migration.field_mapping.create_refused",
        target=table_mapping.mapping_set,
    )
    try:
        fields = target_model_for(table_mapping.mapping_set).table(
            table_mapping.target_table
        )
    except (ContractError, KeyError) as exc:
        raise ValidationError(f"the target table cannot be read: {exc}") from None
    if target_field not in fields.field_names:
        raise ValidationError(
            f"{table_mapping.target_table} has no field {target_field!r}"
        )
    if table_mapping.field_mappings.filter(target_field=target_field).exists():
        raise ValidationError(
            f"{table_mapping.target_table}.{target_field} is already mapped: "
            "change that mapping instead"
        )
    steps = _validate_transforms(transforms or [])
    if crosswalk is not None and crosswalk.project_id != project_id:
        raise ValidationError("the crosswalk belongs to another project")
    _crosswalk_step_needs_one(steps, crosswalk)
    return _field_mapping_store(
        actor=actor,
        table_mapping=table_mapping,
        target_field=target_field,
        source_columns=source_columns,
        steps=steps,
        crosswalk=crosswalk,
        rationale=rationale,
        waived=waived,
        status=S.DRAFT,
    )


def _field_mapping_store(
    *,
    actor: Any,
    table_mapping: TableMapping,
    target_field: str,
    source_columns: Sequence[str],
    steps: list[dict[str, Any]],
    crosswalk: Crosswalk | None,
    status: str,
    crosswalk_strict: bool = True,
    rationale: str = "",
    waived: bool = False,
    event: Mapping[str, Any] | None = None,
) -> FieldMapping:
    """Create a field mapping authored by ``actor`` (no one for the system) and
    its audit event; permission and input already checked."""
    author = actor if _is_user(actor) else None
    with transaction.atomic():
        fm = FieldMapping.objects.create(
            table_mapping=table_mapping,
            target_field=target_field,
            source_columns=list(source_columns),
            transforms=steps,
            crosswalk=crosswalk,
            crosswalk_strict=crosswalk_strict,
            rationale=rationale,
            waived=waived,
            status=status,
            author=author,
            last_changed_by=author,
        )
        audit.record(
            actor=actor,
            action="migration.field_mapping.created",
            target=fm,
            project=table_mapping.mapping_set.project_id,
            data={
                "to": status,
                "target": f"{table_mapping.target_table}.{target_field}",
                **dict(event or {}),
            },
        )
    return fm


def field_mapping_update(
    *,
    actor: Any,
    mapping: FieldMapping,
    source_columns: Sequence[str] = _UNSET,
    transforms: list[dict[str, Any]] = _UNSET,
    crosswalk: Crosswalk | None = _UNSET,
    crosswalk_strict: bool = _UNSET,
    rationale: str = _UNSET,
    waived: bool = _UNSET,
) -> FieldMapping:
    """Edit a field mapping; return it. Approved/flagged/rejected go back to proposed.

    Records ``last_changed_by`` (so the editor cannot approve it). Refused
    ``forbidden`` without ``edit_mapping``; ValidationError on bad input.
    """
    project_id = _fm_project(mapping)
    if not _is_user(actor) or not user_has_project_perm(
        actor, project_id, "edit_mapping"
    ):
        raise audit.refuse(
            actor=actor,
            action="migration.field_mapping.update_refused",
            reason="you may not edit mappings on this project",
            code="forbidden",
            target=mapping,
            project=project_id,
        )
    changes: dict[str, Any] = {}
    if source_columns is not _UNSET:
        changes["source_columns"] = [str(c) for c in source_columns]
    if transforms is not _UNSET:
        changes["transforms"] = _validate_transforms(transforms)
    if crosswalk is not _UNSET:
        if crosswalk is not None and crosswalk.project_id != project_id:
            raise ValidationError("the crosswalk belongs to another project")
        changes["crosswalk"] = crosswalk
    if crosswalk_strict is not _UNSET:
        changes["crosswalk_strict"] = bool(crosswalk_strict)
    if rationale is not _UNSET:
        changes["rationale"] = str(rationale)
    if waived is not _UNSET:
        changes["waived"] = bool(waived)
    _crosswalk_step_needs_one(
        changes.get("transforms", mapping.transforms),
        changes["crosswalk"] if "crosswalk" in changes else mapping.crosswalk,
    )
    with transaction.atomic():
        fm = FieldMapping.objects.select_for_update().get(pk=mapping.pk)
        changed = [
            k
            for k, v in changes.items()
            if getattr(fm, "crosswalk_id" if k == "crosswalk" else k)
            != (v.pk if k == "crosswalk" and v is not None else v)
        ]
        if changed:
            from_status = fm.status
            for k in changed:
                setattr(fm, k, changes[k])
            fm.last_changed_by = actor
            if fm.status in {S.APPROVED, S.FLAGGED, S.REJECTED}:
                fm.status = S.PROPOSED
                fm.reviewer = None
                fm.reviewed_at = None
            fm.save()
            audit.record(
                actor=actor,
                action="migration.field_mapping.updated",
                target=fm,
                project=project_id,
                data={"from": from_status, "to": fm.status, "changed": changed},
            )
    mapping.refresh_from_db()
    return mapping


def field_mapping_propose(*, actor: Any, mapping: FieldMapping) -> FieldMapping:
    """Submit a draft for review (draft -> proposed); Refused when not allowed."""
    return review_transition(
        policy=FIELD_MAPPING_POLICY, actor=actor, item=mapping, verb="propose"
    )


def field_mapping_approve(
    *, actor: Any, mapping: FieldMapping, comment: str = ""
) -> FieldMapping:
    """Approve a proposed mapping; Refused (four_eyes, rationale_required, ...)."""
    return review_transition(
        policy=FIELD_MAPPING_POLICY,
        actor=actor,
        item=mapping,
        verb="approve",
        comment=comment,
    )


def field_mapping_flag(
    *, actor: Any, mapping: FieldMapping, comment: str = ""
) -> FieldMapping:
    """Flag a proposed or approved mapping for attention; Refused when not allowed."""
    return review_transition(
        policy=FIELD_MAPPING_POLICY,
        actor=actor,
        item=mapping,
        verb="flag",
        comment=comment,
    )


def field_mapping_reject(
    *, actor: Any, mapping: FieldMapping, comment: str = ""
) -> FieldMapping:
    """Reject a proposed or flagged mapping; Refused when not allowed."""
    return review_transition(
        policy=FIELD_MAPPING_POLICY,
        actor=actor,
        item=mapping,
        verb="reject",
        comment=comment,
    )


def field_mapping_revert(
    *, actor: Any, mapping: FieldMapping, to: str = S.PROPOSED, comment: str = ""
) -> FieldMapping:
    """Send a mapping back to draft or proposed; Refused when not allowed."""
    return review_transition(
        policy=FIELD_MAPPING_POLICY,
        actor=actor,
        item=mapping,
        verb="revert",
        comment=comment,
        to=to,
    )


def field_mappings_bulk_approve(
    *, actor: Any, ids: Iterable[Any], comment: str = ""
) -> list[FieldMapping]:
    """Approve exactly the mappings ``ids`` (all or nothing); Refused otherwise."""
    return review_bulk(
        policy=FIELD_MAPPING_POLICY,
        actor=actor,
        ids=ids,
        verb="approve",
        comment=comment,
    )


def field_mappings_bulk_revert(
    *, actor: Any, ids: Iterable[Any], to: str = S.PROPOSED
) -> list[FieldMapping]:
    """Revert exactly the mappings ``ids`` to draft/proposed (all or nothing)."""
    return review_bulk(
        policy=FIELD_MAPPING_POLICY, actor=actor, ids=ids, verb="revert", to=to
    )


# --- exclusion rules (which source rows a table leaves out) ------------------------


def _er_project(rule: ExclusionRule) -> int:
    return int(
        MappingSet.objects.filter(table_mappings__pk=rule.table_mapping_id)
        .values_list("project_id", flat=True)
        .get()
    )


EXCLUSION_RULE_POLICY = ReviewPolicy(
    model=ExclusionRule,
    entity="exclusion_rule",
    project_id=_er_project,
    needs_rationale=lambda rule: False,  # its reason code says why
)


def _exclusion_rule_store(
    *,
    actor: Any,
    table_mapping: TableMapping,
    rule: ExcludeRule,
    author: Any,
    event: Mapping[str, Any],
) -> ExclusionRule:
    """Create a PROPOSED exclusion rule and its audit event (checks done)."""
    er = ExclusionRule.objects.create(
        table_mapping=table_mapping,
        rule_id=rule.id,
        column=rule.column or "",
        field=rule.field or "",
        op=rule.op,
        values=list(rule.values),
        reason=rule.reason,
        status=S.PROPOSED,
        author=author,
        last_changed_by=author,
    )
    audit.record(
        actor=actor,
        action="migration.exclusion_rule.created",
        target=er,
        project=table_mapping.mapping_set.project_id,
        data={
            "table_mapping": table_mapping.pk,
            "rule": rule.as_dict(),
            "to": S.PROPOSED,
            **event,
        },
    )
    return er


_REASON = re.compile(r"^[a-z][a-z0-9_]{0,79}$")


def exclusion_rule_create(
    *,
    actor: Any,
    table_mapping: TableMapping,
    column: str,
    op: str,
    values: Sequence[str] = (),
    reason: str,
) -> ExclusionRule:
    """Leave out the rows of a table mapping's source whose ``column`` (as
    read, trimmed) matches: a PROPOSED rule authored by ``actor``, which
    someone else approves before a contract may be published.

    Refused ``forbidden`` without ``edit_mapping``; ValidationError naming the
    problem -- a column the snapshot's source table does not have, an unknown
    operator, values the operator cannot take, a reason that is not a
    lower-case code -- before anything is stored. The rule id is the table's
    next ``EX-<n>``.
    """
    mapping_set = table_mapping.mapping_set
    _require_edit(
        actor=actor,
        project=mapping_set.project_id,
        action="migration.exclusion_rule.create_refused",
        target=mapping_set,
    )
    columns = _snapshot_columns(mapping_set.source_snapshot).get(
        table_mapping.source_table, set()
    )
    if column not in columns:
        raise ValidationError(
            f"{table_mapping.source_table} has no column {column!r} in the snapshot"
        )
    if not _REASON.match(reason):
        raise ValidationError(
            "the reason is a short lower-case code, e.g. not_an_inpatient_encounter"
        )
    texts = [str(v).strip() for v in values if str(v).strip()]
    with transaction.atomic():
        # Lock the table mapping: two stewards adding rules at once get two ids.
        TableMapping.objects.select_for_update().filter(pk=table_mapping.pk).first()
        taken = set(table_mapping.exclusion_rules.values_list("rule_id", flat=True))
        n = len(taken) + 1
        while f"EX-{n}" in taken:
            n += 1
        try:
            rule = exclude_rule_from_dict(
                {
                    "id": f"EX-{n}",
                    "column": column,
                    "op": op,
                    "values": [] if op in {"is_null", "not_null"} else texts,
                    "reason": reason,
                }
            )
        except ContractError as exc:
            raise ValidationError(str(exc)) from None
        return _exclusion_rule_store(
            actor=actor,
            table_mapping=table_mapping,
            rule=rule,
            author=actor if _is_user(actor) else None,
            event={},
        )


def exclusion_rule_propose(*, actor: Any, rule: ExclusionRule) -> ExclusionRule:
    """Submit a draft rule for review; Refused when not allowed."""
    return review_transition(
        policy=EXCLUSION_RULE_POLICY, actor=actor, item=rule, verb="propose"
    )


def _rule_review(verb: str) -> Callable[..., ExclusionRule]:
    def review(*, actor: Any, rule: ExclusionRule, comment: str = "") -> ExclusionRule:
        return review_transition(
            policy=EXCLUSION_RULE_POLICY,
            actor=actor,
            item=rule,
            verb=verb,
            comment=comment,
        )

    review.__name__ = f"exclusion_rule_{verb}"
    review.__doc__ = (
        f"{verb.capitalize()} an exclusion rule (four-eyes on approval, audited); "
        "Refused, with nothing changed, when not allowed."
    )
    return review


exclusion_rule_approve = _rule_review("approve")
exclusion_rule_flag = _rule_review("flag")
exclusion_rule_reject = _rule_review("reject")


def exclusion_rule_revert(
    *, actor: Any, rule: ExclusionRule, comment: str = ""
) -> ExclusionRule:
    """Send a flagged, approved or rejected rule back for review (proposed)."""
    return review_transition(
        policy=EXCLUSION_RULE_POLICY,
        actor=actor,
        item=rule,
        verb="revert",
        comment=comment,
        to=S.PROPOSED,
    )


# Exactly the rules ``ids``, all or nothing (``actor=``, ``ids=``, then
# ``comment=`` / ``to=``): Refused, audited, with nothing changed otherwise.
exclusion_rules_bulk_approve = partial(
    review_bulk, policy=EXCLUSION_RULE_POLICY, verb="approve"
)
exclusion_rules_bulk_revert = partial(
    review_bulk, policy=EXCLUSION_RULE_POLICY, verb="revert", to=S.PROPOSED
)


def _snapshot_columns(snapshot: SchemaSnapshot) -> dict[str, set[str]]:
    return {
        str(t["name"]): {str(c["name"]) for c in t.get("columns", [])}
        for t in snapshot.tables or []
    }


def mapping_set_import_contract(
    *,
    actor: Any,
    project: MigrationProject,
    source_snapshot: SchemaSnapshot,
    contract: Mapping[str, Any] | None = None,
    name: str = "",
) -> MappingSet:
    """Start a mapping set from an engine contract (default: the packaged one).

    Every table mapping, field mapping and exclusion rule of the contract is
    created, each field and rule PROPOSED for review: authored by ``actor`` when a person imports it
    (so someone else must approve it: four-eyes), by no one when the system
    does (any steward may approve). A crosswalk step is bound to the
    project's crosswalk of the same id, which must exist (seed or create it
    first). Raises ValidationError naming the first problem -- an invalid
    contract, a source table or column the snapshot does not have, a
    crosswalk the project does not manage -- before anything is stored;
    Refused ``forbidden`` without ``edit_mapping``. One audit event for the
    set (with the contract's name, version and hash) and one per table and
    field mapping, in one transaction.
    """
    if source_snapshot.project_id != project.pk:
        raise ValidationError("the snapshot belongs to another project")
    _require_edit(
        actor=actor,
        project=project,
        action="migration.mapping_set.import_refused",
        target=project,
    )
    data = dict(contract) if contract is not None else default_contract_dict()
    try:
        engine = contract_from_dict(data)
    except ContractError as exc:
        raise ValidationError(f"the contract is not valid: {exc}") from None
    columns = _snapshot_columns(source_snapshot)
    crosswalks = {x.slug: x for x in Crosswalk.objects.filter(project=project)}
    for table in data["tables"]:
        have = columns.get(str(table["source"]))
        if have is None:
            raise ValidationError(
                f"table {table['target']}: the snapshot has no source table "
                f"{table['source']!r}"
            )
        for fld in table["fields"]:
            for col in fld.get("source") or []:
                if col not in have:
                    raise ValidationError(
                        f"{table['target']}.{fld['target']}: the snapshot's "
                        f"{table['source']} has no column {col!r}"
                    )
            for step in fld.get("transforms") or []:
                ref = (step.get("args") or {}).get("id")
                if step.get("name") == "crosswalk" and ref not in crosswalks:
                    raise ValidationError(
                        f"{table['target']}.{fld['target']}: crosswalk {ref!r} is "
                        "not managed in this project; seed or create it first"
                    )
    author = actor if _is_user(actor) else None
    options = {"rules": data.get("rules", {}), "chunk_size": data.get("chunk_size")}
    target = data.get("target") or {}
    source = f"{data.get('name')}@{data.get('version')}"
    with transaction.atomic():
        ms = MappingSet.objects.create(
            project=project,
            name=name or f"{data.get('name', 'contract')} v{data.get('version', '')}",
            source_snapshot=source_snapshot,
            target_model_version=f"{target.get('model')}@{target.get('version')}",
            options={k: v for k, v in options.items() if v is not None},
            created_by=author,
        )
        audit.record(
            actor=actor,
            action="migration.mapping_set.imported",
            target=ms,
            data={
                "name": ms.name,
                "snapshot": source_snapshot.pk,
                "contract": source,
                "contract_sha256": engine.sha256,
                "to": S.PROPOSED,
            },
        )
        for table in data["tables"]:
            tm = _table_mapping_store(
                actor=actor,
                mapping_set=ms,
                target_table=table["target"],
                source_table=table["source"],
                source_key=table["key"],
            )
            parsed = next(t for t in engine.tables if t.target == table["target"])
            for rule in parsed.exclude:
                _exclusion_rule_store(
                    actor=actor,
                    table_mapping=tm,
                    rule=rule,
                    author=author,
                    event={"from_contract": source},
                )
            for fld in table["fields"]:
                steps = _validate_transforms(list(fld.get("transforms") or []))
                crosswalk, strict = None, True
                for step in steps:
                    if step["name"] == "crosswalk":
                        crosswalk = crosswalks[step["args"]["id"]]
                        strict = step["args"].get("mode", "strict") == "strict"
                if fld.get("lookup"):
                    steps.append({"name": "lookup", "args": dict(fld["lookup"])})
                _field_mapping_store(
                    actor=actor,
                    table_mapping=tm,
                    target_field=fld["target"],
                    source_columns=list(fld.get("source") or []),
                    steps=steps,
                    crosswalk=crosswalk,
                    crosswalk_strict=strict,
                    status=S.PROPOSED,
                    event={"from_contract": source},
                )
    return ms
