"""Contracts: build an engine contract from an approved mapping set, publish it,
and render it for people (Markdown / HTML specification) and machines (JSON).

The engine's ``Contract`` is the single source of truth: the stored body is its
``to_dict()``, the stored hash its ``sha256``, and both specifications are
rendered from the very object the engine validated, so what a steward reads is
what a run executes.

Conventions the mapping tables use for things the engine needs but the ORM has
no column for (kept in JSON so no model change was needed):

- ``FieldMapping.transforms`` is a list of ``{"name", "args"}`` steps from the
  engine's transform registry; a last step named ``lookup`` (args ``table``,
  ``match``, ``take``, ``reason``) becomes the engine's ``Lookup``.
- ``FieldMapping.crosswalk`` (+ ``crosswalk_strict``) adds or completes the
  chain's ``crosswalk`` step, so the id and mode always come from the row the
  steward approved.
- A ``waived`` field mapping (resolution policy: deliberately left unmapped) is
  written as ``constant null`` so the contract states the decision explicitly.
- A table mapping's ``ExclusionRule`` rows (not rejected) are the table's
  engine exclusion rules, reviewed like field mappings.
- ``MappingSet.options``: ``rule_packs``, ``rule_params``, ``as_of`` (an ISO
  date or ``{"date"|"source_table","source_column","format"}``), ``chunk_size``
  (or the engine's own ``{"rules": {...}}`` shape).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.template.loader import render_to_string

from governance import audit
from governance.access import user_has_project_perm
from governance.audit import Refused
from governance.models import MigrationProject
from migration.engine.contract import Contract as EngineContract
from migration.engine.contract import ExcludeRule, Step, contract_from_dict
from migration.engine.crosswalk import Crosswalk as EngineCrosswalk
from migration.engine.defaults import default_contract_dict
from migration.engine.errors import ContractError
from migration.engine.rules import rule_pack
from migration.engine.targets import dependency_order, load_target
from migration.models import (
    Contract,
    Crosswalk,
    ExclusionRule,
    FieldMapping,
    MappingSet,
    ReviewStatus,
)

DEFAULT_TARGET = ("nhs_pas_target", "1")


class ContractBuildError(ValueError):
    """The mapping set cannot become a valid engine contract; the message says why."""


# --- build -------------------------------------------------------------------


#: How the contract's pages and Markdown say each exclusion operator.
EXCLUSION_OPS = {
    "in": "is one of",
    "not_in": "is none of",
    "eq": "is",
    "is_null": "is empty",
    "not_null": "is not empty",
}


def _target_ref(value: str) -> tuple[str, str]:
    """Parse ``MappingSet.target_model_version`` into (model name, version).

    Accepts ``nhs_pas_target@1``, ``nhs_pas_target_v1`` or a bare ``1`` (the
    packaged NHS PAS target), so a hand-typed value still resolves.
    """
    text = (value or "").strip()
    if not text:
        return DEFAULT_TARGET
    if "@" in text:
        name, version = text.split("@", 1)
        return name.strip(), version.strip()
    if "_v" in text:
        name, version = text.rsplit("_v", 1)
        if version.isdigit():
            return name, version
    return DEFAULT_TARGET[0], text.removeprefix("v")


def _rules(options: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(options.get("rules"), Mapping):
        rules = dict(options["rules"])
        return {
            "packs": list(rules.get("packs", [])),
            "params": dict(rules.get("params", {}) or {}),
            "as_of": dict(rules.get("as_of", {}) or {}),
        }
    as_of = options.get("as_of") or {}
    if isinstance(as_of, str):
        as_of = {"date": as_of}
    return {
        "packs": list(options.get("rule_packs", [])),
        "params": dict(options.get("rule_params", {}) or {}),
        "as_of": {
            "date": as_of.get("date"),
            "source_table": as_of.get("source_table"),
            "source_column": as_of.get("source_column"),
            "format": as_of.get("format", "%Y-%m-%d"),
        },
    }


def _crosswalk_dict(crosswalk: Crosswalk, *, pending: bool = False) -> dict[str, Any]:
    # Only approved rows go into a contract: a pending row must not translate
    # a patient's code, and publish refuses while any is pending anyway. A
    # preview (``pending``) translates with the rows under review as well,
    # as the contract will once they are approved; never a rejected one.
    rows = (
        crosswalk.rows.exclude(status=ReviewStatus.REJECTED)
        if pending
        else crosswalk.rows.filter(status=ReviewStatus.APPROVED)
    ).order_by("local_code")
    return {
        "id": crosswalk.slug,
        "version": str(crosswalk.version),
        "source_system": crosswalk.local_table,
        "target_system": crosswalk.code_system.slug,
        "target_version": crosswalk.code_system.version,
        "default": crosswalk.default_code or None,
        "description": crosswalk.name,
        "entries": [
            {
                "local": row.local_code,
                "national": row.target_code or None,
                "equivalence": row.equivalence,
                "display": row.local_display,
            }
            for row in rows
        ],
    }


def _field_dict(fm: FieldMapping) -> dict[str, Any]:
    where = f"{fm.table_mapping.target_table}.{fm.target_field}"
    if fm.waived:
        return {
            "target": fm.target_field,
            "source": [],
            "transforms": [{"name": "constant", "args": {"value": None}}],
            "lookup": None,
        }
    steps: list[dict[str, Any]] = []
    lookup: dict[str, Any] | None = None
    raw = fm.transforms or []
    if not isinstance(raw, list):
        raise ContractBuildError(f"{where}: transforms must be a list of steps")
    for i, step in enumerate(raw):
        if not isinstance(step, Mapping) or "name" not in step:
            raise ContractBuildError(f"{where}: step {i + 1} has no transform name")
        args = dict(step.get("args") or {})
        if step["name"] == "lookup":
            if i != len(raw) - 1:
                raise ContractBuildError(f"{where}: lookup must be the last step")
            lookup = args
            continue
        steps.append({"name": str(step["name"]), "args": args})
    if fm.crosswalk_id is not None:
        mode = "strict" if fm.crosswalk_strict else "lenient"
        xw_steps = [s for s in steps if s["name"] == "crosswalk"]
        if not xw_steps:
            steps.append({"name": "crosswalk", "args": {}})
            xw_steps = steps[-1:]
        for s in xw_steps:
            s["args"] = {"id": fm.crosswalk.slug, "mode": mode}
    source = fm.source_columns or []
    if isinstance(source, str):
        source = [source]
    return {
        "target": fm.target_field,
        "source": [str(c) for c in source],
        "transforms": steps,
        "lookup": lookup,
    }


def _used_crosswalks(
    mapping_set: MappingSet, draft: FieldMapping | None = None
) -> list[Crosswalk]:
    ids = set(
        FieldMapping.objects.filter(
            table_mapping__mapping_set=mapping_set,
            crosswalk__isnull=False,
            waived=False,
        )
        .values_list("crosswalk_id", flat=True)
        .distinct()
    )
    if draft is not None and draft.crosswalk_id is not None and not draft.waived:
        ids.add(draft.crosswalk_id)
    return list(
        Crosswalk.objects.filter(pk__in=list(ids))
        .select_related("code_system")
        .order_by("slug")
    )


def contract_dict_build(
    *,
    mapping_set: MappingSet,
    version: str = "draft",
    draft: FieldMapping | None = None,
    pending_rows: bool = False,
) -> dict[str, Any]:
    """Return the engine JSON form of ``mapping_set`` (not yet validated).

    ``draft``, an unsaved edit of one of its field mappings, stands in for
    the stored one (a preview of the edit before it is saved);
    ``pending_rows`` translates with crosswalk rows still under review too
    (previews only: a published contract holds approved rows alone).
    """
    options = mapping_set.options or {}
    model, model_version = _target_ref(mapping_set.target_model_version)
    tables = []
    table_mappings = mapping_set.table_mappings.prefetch_related(
        "field_mappings__crosswalk", "exclusion_rules"
    ).order_by("target_table")
    for tm in table_mappings:
        if tm.joins:
            raise ContractBuildError(
                f"table {tm.target_table}: joins are not supported by the engine "
                "contract; map a view or an extract instead"
            )
        tables.append(
            {
                "target": tm.target_table,
                "source": tm.source_table,
                "key": tm.source_key,
                "fields": [
                    _field_dict(
                        draft if draft is not None and fm.pk == draft.pk else fm
                    )
                    for fm in sorted(tm.field_mappings.all(), key=_field_order)
                ],
                # Rejected rules are dropped (those rows migrate); publishing
                # waits for every other rule's approval (contract_blockers).
                "exclude": [
                    r.engine_dict()
                    for r in tm.exclusion_rules.all()
                    if r.status != ReviewStatus.REJECTED
                ],
            }
        )
    # Target-model order (parents first) reads naturally and keeps the body,
    # hence the hash, independent of the order tables were mapped in.
    try:
        declared = dependency_order(load_target(model, model_version))
    except ContractError:
        declared = []
    rank = {name: i for i, name in enumerate(declared)}
    tables.sort(key=lambda t: (rank.get(t["target"], len(rank)), t["target"]))
    return {
        "format": 1,
        "name": mapping_set.name,
        "version": str(version),
        "description": (
            f"Mapping set #{mapping_set.pk} of project {mapping_set.project.slug}"
        ),
        "target": {"model": model, "version": model_version},
        "chunk_size": options.get("chunk_size", 50_000),
        "rules": _rules(options),
        "crosswalks": [
            _crosswalk_dict(x, pending=pending_rows)
            for x in _used_crosswalks(mapping_set, draft=draft)
        ],
        "tables": tables,
    }


def _field_order(fm: FieldMapping) -> tuple[int, str]:
    # Declared target-model order reads naturally in the specification.
    return (fm.pk or 0, fm.target_field)


def contract_build(
    *, mapping_set: MappingSet, version: str = "draft"
) -> EngineContract:
    """Return the validated engine Contract of ``mapping_set``.

    Raises ContractBuildError naming the problem (engine validation included).
    """
    data = contract_dict_build(mapping_set=mapping_set, version=version)
    try:
        return contract_from_dict(data)
    except ContractError as exc:
        raise ContractBuildError(
            f"mapping set {mapping_set.name!r} is not a valid contract: {exc}"
        ) from exc


# --- publish -----------------------------------------------------------------


#: What can block publishing, as the mapping set page counts them.
BLOCKER_FIELD = "field mappings not approved"
BLOCKER_ROW = "crosswalk rows not approved"
BLOCKER_EXCLUSION = "exclusion rules not approved"
BLOCKER_REQUIRED = "required fields unmapped"
BLOCKER_MODEL = "target model problems"


def contract_blockers(*, mapping_set: MappingSet) -> list[str]:
    """Return why ``mapping_set`` cannot be published yet (empty when it can)."""
    return [
        message for _, message in contract_blockers_by_kind(mapping_set=mapping_set)
    ]


def contract_blockers_by_kind(*, mapping_set: MappingSet) -> list[tuple[str, str]]:
    """Return ``(kind, message)`` for each reason ``mapping_set`` cannot be published."""
    problems: list[tuple[str, str]] = []
    model_name, model_version = _target_ref(mapping_set.target_model_version)
    try:
        model = load_target(model_name, model_version)
    except ContractError as exc:
        return [(BLOCKER_MODEL, str(exc))]
    fms = FieldMapping.objects.filter(
        table_mapping__mapping_set=mapping_set
    ).select_related("table_mapping")
    mapped: dict[str, set[str]] = {}
    for fm in fms.order_by("table_mapping__target_table", "target_field"):
        table = fm.table_mapping.target_table
        mapped.setdefault(table, set()).add(fm.target_field)
        if fm.status != ReviewStatus.APPROVED:
            problems.append(
                (
                    BLOCKER_FIELD,
                    f"field mapping {table}.{fm.target_field} is {fm.status}, "
                    "not approved",
                )
            )
    rules = ExclusionRule.objects.filter(
        table_mapping__mapping_set=mapping_set
    ).select_related("table_mapping")
    for rule in rules.exclude(
        status__in=[ReviewStatus.APPROVED, ReviewStatus.REJECTED]
    ).order_by("table_mapping__target_table", "rule_id"):
        problems.append(
            (
                BLOCKER_EXCLUSION,
                f"exclusion rule {rule.rule_id} of {rule.table_mapping.target_table} "
                f"is {rule.status}, not approved",
            )
        )
    for xw in _used_crosswalks(mapping_set):
        for row in xw.rows.exclude(status=ReviewStatus.APPROVED).order_by("local_code"):
            problems.append(
                (
                    BLOCKER_ROW,
                    f"crosswalk {xw.slug} v{xw.version} row {row.local_code!r} is "
                    f"{row.status}, not approved",
                )
            )
    for tm in mapping_set.table_mappings.order_by("target_table"):
        try:
            table = model.table(tm.target_table)
        except ContractError as exc:
            problems.append((BLOCKER_MODEL, str(exc)))
            continue
        for f in table.fields:
            if f.required and f.name not in mapped.get(tm.target_table, set()):
                problems.append(
                    (
                        BLOCKER_REQUIRED,
                        f"required target field {tm.target_table}.{f.name} is "
                        "unmapped and not waived",
                    )
                )
    return problems


def _next_version(project: MigrationProject) -> int:
    # Lock the project row: two simultaneous publishes must not both take N+1.
    MigrationProject.objects.select_for_update().filter(pk=project.pk).first()
    current = Contract.objects.filter(project=project).aggregate(v=Max("version"))
    return int(current["v"] or 0) + 1


def contract_publish(*, actor: Any, mapping_set: MappingSet) -> Contract:
    """Freeze ``mapping_set`` as the project's next contract version and audit it.

    Raises Refused (already audited, nothing created) without ``publish_contract``,
    while anything is unapproved or a required field is unmapped, or when the
    engine rejects the contract.
    """
    project = mapping_set.project
    refusal: tuple[str, str, dict[str, Any]] | None = None
    with transaction.atomic():
        if not user_has_project_perm(actor, project, "publish_contract"):
            refusal = (
                "permission",
                "you may not publish contracts on this project",
                {},
            )
        elif problems := contract_blockers(mapping_set=mapping_set):
            refusal = (
                "not_approved",
                "the mapping set cannot be published: " + "; ".join(problems),
                {"problems": problems},
            )
        else:
            version = _next_version(project)
            try:
                engine = contract_build(mapping_set=mapping_set, version=str(version))
            except ContractBuildError as exc:
                refusal = ("invalid_contract", str(exc), {})
            else:
                contract = _store(
                    actor=actor,
                    project=project,
                    mapping_set=mapping_set,
                    version=version,
                    engine=engine,
                    action="migration.contract.published",
                )
                return contract
    code, reason, data = refusal
    raise audit.refuse(
        actor=actor,
        action="migration.contract.publish_refused",
        reason=reason,
        code=code,
        target=mapping_set,
        project=project,
        data={"mapping_set": mapping_set.pk, **data},
    )


def _store(
    *,
    actor: Any,
    project: MigrationProject,
    mapping_set: MappingSet | None,
    version: int,
    engine: EngineContract,
    action: str,
) -> Contract:
    contract = Contract.objects.create(
        project=project,
        mapping_set=mapping_set,
        version=version,
        body=engine.to_dict(),
        sha256=engine.sha256,
        published_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit.record(
        actor=actor,
        action=action,
        target=contract,
        data={
            "version": version,
            "sha256": engine.sha256,
            "name": engine.name,
            "mapping_set": mapping_set.pk if mapping_set else None,
            "tables": [t.target for t in engine.tables],
            "crosswalks": [x.ref for x in engine.crosswalks],
        },
    )
    return contract


def contract_import_default(
    *, actor: Any, project: MigrationProject, chunk_size: int | None = None
) -> Contract:
    """Store the engine's default legacy-PAS contract as the project's next version.

    Idempotent: when the project's latest imported default contract already
    says exactly this (same body but for its version number), that contract
    is returned and nothing is stored, so repeated ``run_lifecycle`` / ``make
    run`` calls do not pile up identical versions (and sign-offs bound to it
    stay valid). A user actor needs ``publish_contract`` (else Refused,
    audited); a system actor (a string, e.g. a management command) is
    trusted. Raises ContractBuildError if the packaged contract does not
    validate.
    """
    if getattr(actor, "is_authenticated", False) and not user_has_project_perm(
        actor, project, "publish_contract"
    ):
        raise audit.refuse(
            actor=actor,
            action="migration.contract.import_refused",
            reason="you may not publish contracts on this project",
            code="permission",
            target=project,
        )
    data = default_contract_dict()
    if chunk_size is not None:
        data["chunk_size"] = chunk_size
    with transaction.atomic():
        # Lock the project row first: two simultaneous imports agree.
        MigrationProject.objects.select_for_update().filter(pk=project.pk).first()
        latest = (
            Contract.objects.filter(project=project, mapping_set__isnull=True)
            .order_by("-version")
            .first()
        )
        if latest is not None:
            try:
                same = contract_from_dict({**data, "version": str(latest.version)})
            except ContractError:
                same = None
            if same is not None and same.sha256 == latest.sha256:
                return latest
        version = _next_version(project)
        data["version"] = str(version)
        try:
            engine = contract_from_dict(data)
        except ContractError as exc:
            raise ContractBuildError(f"the default contract is invalid: {exc}") from exc
        return _store(
            actor=actor,
            project=project,
            mapping_set=None,
            version=version,
            engine=engine,
            action="migration.contract.imported",
        )


# --- exports -----------------------------------------------------------------


def contract_engine(contract: Contract | EngineContract) -> EngineContract:
    """Return the engine Contract of a stored contract; raises ContractBuildError.

    The stored hash is re-checked, so a body edited behind the service's back is
    caught before anyone renders or runs it.
    """
    if isinstance(contract, EngineContract):
        return contract
    try:
        engine = contract_from_dict(contract.body)
    except ContractError as exc:
        raise ContractBuildError(f"stored contract is invalid: {exc}") from exc
    if engine.sha256 != contract.sha256:
        raise ContractBuildError(
            f"contract v{contract.version}: body hash {engine.sha256} does not "
            f"match the recorded {contract.sha256}"
        )
    return engine


def contract_export_json(contract: Contract | EngineContract) -> str:
    """Return the contract's canonical JSON: its SHA-256 is the contract hash."""
    return contract_engine(contract).canonical_json()


_WORDS: dict[str, str] = {
    "trim": "trim surrounding spaces",
    "upper": "upper-case",
    "lower": "lower-case",
    "title": "title-case",
    "null_if_empty": "treat blank as missing (NULL)",
    "nhs_number_normalise": "normalise NHS number (digits only)",
    "postcode_normalise": "normalise postcode (upper-case, single space)",
    "horolog_to_date": "convert Caché $HOROLOG day number to a date",
    "stable_number": "give each value a stable whole number (its hash)",
}


def _lit(value: Any) -> str:
    return "NULL" if value is None else json.dumps(value, ensure_ascii=False)


def exclusion_in_words(rule: ExcludeRule) -> str:
    """Return which rows an exclusion rule leaves out, in a reviewer's words."""
    tested = (
        f"source column {rule.column}"
        if rule.column is not None
        else f"target field {rule.field}"
    )
    values = ", ".join(_lit(v) for v in rule.values)
    said = " ".join(x for x in (EXCLUSION_OPS.get(rule.op, rule.op), values) if x)
    return f"rows where {tested} {said} are excluded ({rule.reason})"


def step_in_words(step: Step, crosswalks: Mapping[str, EngineCrosswalk]) -> str:
    """Return one transform step as a short English phrase."""
    a = dict(step.args)
    name = step.name
    reason = f" (else reject: {a['reason']})" if a.get("reason") else ""
    if name in _WORDS:
        return _WORDS[name] + reason
    if name == "concat":
        return f"join the columns with {_lit(a.get('sep', ''))}"
    if name == "split":
        return f"split on {_lit(a['sep'])} and take part {a['index']}"
    if name == "default":
        return f"use {_lit(a['value'])} when missing"
    if name == "constant":
        return f"set to the constant {_lit(a['value'])}"
    if name in ("date_parse", "datetime_parse"):
        kind = "date" if name == "date_parse" else "date-time"
        return f"parse as {kind} with format {a['format']}{reason}"
    if name == "to_integer":
        return "convert to a whole number" + reason
    if name == "crosswalk":
        xw = crosswalks.get(str(a.get("id")))
        ref = xw.ref if xw else str(a.get("id"))
        mode = a.get("mode", "strict")
        rule = (
            "a miss rejects the row"
            if mode == "strict"
            else f"a miss becomes {_lit(xw.default if xw else None)}"
        )
        return f"translate through crosswalk {ref} ({mode}: {rule})"
    args = ", ".join(f"{k}={_lit(v)}" for k, v in sorted(a.items()))
    return f"{name}({args})"


def _spec(contract: Contract | EngineContract) -> dict[str, Any]:
    """Return the specification as plain data, from the engine contract only."""
    engine = contract_engine(contract)
    xws = engine.crosswalk_map()
    packs: list[dict[str, Any]] = []
    for name in engine.rules.packs:
        pack = rule_pack(name)
        packs.append(
            {
                "name": pack.name,
                "version": pack.version,
                "checks": [
                    {
                        "rule_id": c.rule_id,
                        "reason": c.reason,
                        "table": c.table,
                        "field": c.field,
                        "kind": "row",
                        "action": "reject",
                    }
                    for c in pack.row_checks
                ]
                + [
                    {
                        "rule_id": c.rule_id,
                        "reason": c.reason,
                        "table": c.table,
                        "field": c.field,
                        "kind": "cross-table",
                        "action": c.action,
                    }
                    for c in pack.staged_checks
                ],
            }
        )
    tables = []
    for name in engine.table_order():
        tm = engine.table(name)
        target_table = engine.target.table(name)
        fields = []
        used_xw: list[str] = []
        for fm in tm.fields:
            chain = [step_in_words(s, xws) for s in fm.transforms]
            if fm.lookup is not None:
                chain.append(
                    f"look up {fm.lookup.table} by {fm.lookup.match} and take "
                    f"{fm.lookup.take} (no match: reject {fm.lookup.reason})"
                )
            for s in fm.transforms:
                if s.name == "crosswalk" and str(s.args.get("id")) not in used_xw:
                    used_xw.append(str(s.args.get("id")))
            try:
                required = target_table.field(fm.target).required
            except KeyError:
                required = False
            fields.append(
                {
                    "target": fm.target,
                    "required": required,
                    "source": list(fm.source),
                    "chain": chain,
                }
            )
        crosswalks = []
        for xid in used_xw:
            xw = xws[xid]
            modes = sorted(
                {
                    str(s.args.get("mode", "strict"))
                    for f in tm.fields
                    for s in f.transforms
                    if s.name == "crosswalk" and s.args.get("id") == xid
                }
            )
            crosswalks.append(
                {
                    "id": xw.id,
                    "version": xw.version,
                    "ref": xw.ref,
                    "target": f"{xw.target_system}@{xw.target_version}",
                    "default": xw.default,
                    "modes": modes,
                    "rows": [
                        {
                            "local": e.local,
                            "national": e.national,
                            "equivalence": e.equivalence,
                            "display": e.display,
                        }
                        for e in xw.entries
                    ],
                }
            )
        tables.append(
            {
                "target": name,
                "source": tm.source,
                "key": tm.key,
                "fields": fields,
                "exclude": [
                    {**e.as_dict(), "words": exclusion_in_words(e)} for e in tm.exclude
                ],
                "crosswalks": crosswalks,
                "rules": [
                    {**c, "pack": p["name"]}
                    for p in packs
                    for c in p["checks"]
                    if c["table"] == name
                ],
            }
        )
    a = engine.rules.as_of
    as_of = a.date or (
        f"{a.source_table}.{a.source_column} ({a.format})"
        if a.source_table
        else "the run's as-of date"
    )
    return {
        "name": engine.name,
        "version": engine.version,
        "description": engine.description,
        "sha256": engine.sha256,
        "target": engine.target.ref,
        "target_title": engine.target.title,
        "chunk_size": engine.chunk_size,
        "packs": packs,
        "params": dict(engine.rules.params),
        "as_of": as_of,
        "tables": tables,
    }


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def contract_spec_markdown(contract: Contract | EngineContract) -> str:
    """Return the human-readable specification in Markdown; raises ContractBuildError."""
    s = _spec(contract)
    out = [
        f"# Migration contract {s['name']} v{s['version']}",
        "",
        f"- **SHA-256:** `{s['sha256']}`",
        f"- **Target model:** {s['target_title']} (`{s['target']}`)",
        "- **Rule packs:** "
        + (", ".join(f"{p['name']} v{p['version']}" for p in s["packs"]) or "none"),
        "- **Rule parameters:** "
        + (
            ", ".join(f"{k} = {_lit(v)}" for k, v in sorted(s["params"].items()))
            or "none"
        ),
        f"- **As-of date:** {s['as_of']}",
        f"- **Chunk size:** {s['chunk_size']}",
    ]
    if s["description"]:
        out += ["", s["description"]]
    for t in s["tables"]:
        out += [
            "",
            f"## {t['target']}",
            "",
            f"Source table `{t['source']}`, read in order of key `{t['key']}`.",
            "",
            "| target field | required | source columns | transform chain |",
            "|---|---|---|---|",
        ]
        for f in t["fields"]:
            src = ", ".join(f"`{c}`" for c in f["source"]) or "—"
            chain = "; then ".join(f["chain"]) or "copy as is"
            out.append(
                f"| `{f['target']}` | {'yes' if f['required'] else 'no'} | "
                f"{_md_cell(src)} | {_md_cell(chain)} |"
            )
        for e in t["exclude"]:
            out.append(f"\nExclusion rule `{e['id']}`: {e['words']}.")
        for x in t["crosswalks"]:
            out += [
                "",
                f"### Crosswalk {x['id']} version {x['version']}",
                "",
                f"Target {x['target']}; mode {', '.join(x['modes'])}; "
                f"default {_lit(x['default'])}.",
                "",
                "| local code | national code | equivalence | local display |",
                "|---|---|---|---|",
            ]
            for r in x["rows"]:
                out.append(
                    f"| `{_md_cell(r['local'])}` | {_md_cell(r['national'] or '—')} "
                    f"| {r['equivalence']} | {_md_cell(r['display'])} |"
                )
        if t["rules"]:
            out += [
                "",
                "### Rules",
                "",
                "| rule | pack | field | kind | outcome | reason |",
                "|---|---|---|---|---|---|",
            ]
            for r in t["rules"]:
                out.append(
                    f"| {r['rule_id']} | {r['pack']} | `{r['field']}` | {r['kind']} "
                    f"| {r['action']} | {r['reason']} |"
                )
    return "\n".join(out) + "\n"


def contract_spec_html(contract: Contract | EngineContract) -> str:
    """Return the specification as a standalone HTML page; raises ContractBuildError."""
    spec = _spec(contract)
    return render_to_string("migration/contract_spec.html", {"spec": spec})


__all__ = [
    "ContractBuildError",
    "Refused",
    "contract_blockers",
    "contract_blockers_by_kind",
    "contract_build",
    "contract_dict_build",
    "contract_engine",
    "contract_export_json",
    "contract_import_default",
    "contract_publish",
    "contract_spec_html",
    "contract_spec_markdown",
]
