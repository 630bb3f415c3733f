"""Live mapping preview: a few sampled source rows through the real engine.

The preview compiles the mapping's table into an engine contract (the same
``contract_dict_build`` a publish uses, restricted to that table and the
tables its lookups read), samples rows from the source connector through the
governed ``sample`` call, and runs them through
``migration.engine.pipeline.process_chunk``: the transformed values and
reject reasons are what a run would produce for those rows once the
crosswalk rows still under review are approved as proposed (the preview
translates with them, and says how many it used; a published contract holds
approved rows only).

Sampled rows are patient data: values are masked unless the reader holds
``view_pid`` on the project, and every unmasked preview is audited (which
mapping, how many rows; never the values).
"""

from __future__ import annotations

import datetime as dt
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
from django.db import transaction
from django.http import Http404

from connectors.services import connector_open
from governance import audit
from governance.access import user_has_project_perm
from governance.roles import VIEW
from migration.engine.contract import contract_from_dict
from migration.engine.crosswalk import crosswalk_from_dict
from migration.engine.errors import EngineError
from migration.engine.pipeline import build_plan, process_chunk
from migration.engine.rules import RuleContext
from migration.engine.transforms import TransformContext, apply_chain, check_args
from migration.models import CrosswalkRow, FieldMapping, ReviewStatus
from migration.selectors_mapping import pid_mask
from migration.services.contracts import ContractBuildError, contract_dict_build
from migration.services.suggestions import target_model_for

PREVIEW_ROWS = 20


@dataclass(frozen=True)
class PreviewRow:
    """One sampled source row: its key, inputs, output value or reject reason."""

    source_key: str
    inputs: tuple[Any, ...]
    value: Any
    rejected: bool
    reason: str = ""
    column: str = ""
    rule_id: str = ""
    #: rejected for a column that is not this field's (another field's check)
    other_field: bool = False
    #: left out by one of the table's exclusion rules (``reason`` says which)
    excluded: bool = False


@dataclass
class MappingPreview:
    """The outcome of previewing one field mapping on sampled rows."""

    target: str
    source_columns: tuple[str, ...]
    rows: list[PreviewRow] = field(default_factory=list)
    masked: bool = True
    error: str = ""
    #: crosswalk rows still under review that the preview translated with
    pending_rows: int = 0
    #: why the table's checks were not applied (only the field's own steps)
    table_checks: str = ""

    @property
    def rejected(self) -> int:
        """Return how many sampled rows the table's rules would reject."""
        return sum(1 for r in self.rows if r.rejected)

    @property
    def excluded(self) -> int:
        """Return how many sampled rows the table's exclusion rules leave out."""
        return sum(1 for r in self.rows if r.excluded)


def _text(value: Any, sql_type: str = "") -> Any:
    """Return ``value`` as the text a target column of ``sql_type`` would hold."""
    if value is None:
        return None
    with suppress(TypeError, ValueError):
        if pd.isna(value):  # NaN, NA, NaT
            return None
    if sql_type == "DATE" and isinstance(value, dt.datetime):
        return value.date().isoformat()  # a pandas Timestamp is a datetime
    if sql_type == "TIMESTAMP" and isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


def _with_lookup_parents(
    tables: list[dict[str, Any]], target: str
) -> list[dict[str, Any]]:
    """Return ``target``'s table and every table its lookups reach, in order.

    Only ``target`` is previewed, but a contract names the tables its lookups
    read (a spell's patient, a ward stay's spell): without them it is not a
    contract, and no table with a lookup could be previewed at all.
    """
    by_name = {t["target"]: t for t in tables}
    wanted: set[str] = set()
    todo = [target]
    while todo:
        name = todo.pop()
        if name in wanted or name not in by_name:
            continue
        wanted.add(name)
        todo += [
            f["lookup"]["table"]
            for f in by_name[name].get("fields", [])
            if f.get("lookup")
        ]
    return [t for t in tables if t["target"] in wanted]


def mapping_preview(
    *,
    user: Any,
    mapping: FieldMapping,
    rows: int = PREVIEW_ROWS,
    draft: FieldMapping | None = None,
) -> MappingPreview:
    """Return ``mapping`` applied to ``rows`` sampled source rows, PID masked.

    ``draft`` (``field_mapping_draft``: the mapping as an edit would leave
    it, unsaved) is previewed in its place. Raises Http404 when ``user`` may
    not see the mapping's project. Problems with the mapping or the source
    are returned in ``error``, not raised: the preview is there to show a
    steward what is wrong.
    """
    shown = draft if draft is not None else mapping
    tm = mapping.table_mapping
    mapping_set = tm.mapping_set
    project_id = mapping_set.project_id
    if not user_has_project_perm(user, project_id, VIEW):
        raise Http404("Not found")
    unmasked = user_has_project_perm(user, project_id, "view_pid")
    preview = MappingPreview(
        target=f"{tm.target_table}.{mapping.target_field}",
        source_columns=tuple(shown.source_columns or ()),
        masked=not unmasked,
    )
    try:
        data = contract_dict_build(
            mapping_set=mapping_set, version="preview", draft=draft, pending_rows=True
        )
        data["tables"] = _with_lookup_parents(data["tables"], tm.target_table)
        table = next(t for t in data["tables"] if t["target"] == tm.target_table)
        field_spec = next(
            f for f in table["fields"] if f["target"] == shown.target_field
        )
        steps = [
            (str(s["name"]), dict(s.get("args") or {}))
            for s in field_spec["transforms"]
        ]
        for name, args in steps:
            check_args(name, args)
        xctx = TransformContext(
            crosswalks={x["id"]: crosswalk_from_dict(x) for x in data["crosswalks"]}
        )
    except (
        ContractBuildError,
        EngineError,
        KeyError,
        ValueError,
        StopIteration,
    ) as exc:
        preview.error = f"the mapping cannot be compiled yet: {exc}"
        return preview
    preview.pending_rows = (
        CrosswalkRow.objects.filter(
            crosswalk__project_id=project_id,
            crosswalk__slug__in=[x["id"] for x in data["crosswalks"]],
        )
        .exclude(status__in=[ReviewStatus.APPROVED, ReviewStatus.REJECTED])
        .count()
    )
    # The table's checks need the whole table mapped (every required field);
    # this field's own chain does not, so a steward sees what it does from
    # the first mapping on.
    as_of = dt.date.today()
    plan = contract = None
    try:
        contract = contract_from_dict(data)
        plan = build_plan(contract, tm.target_table, as_of)
    except (EngineError, KeyError, ValueError) as exc:
        preview.table_checks = f"the table's checks are not applied yet: {exc}"
    connector = mapping_set.source_snapshot.connector
    source = connector_open(connector, actor=user)
    try:
        source.connect()
        sample = source.sample(tm.source_table, n=rows)
    except Exception as exc:  # the connector redacts; show the kind of failure only
        preview.error = f"the source could not be sampled ({type(exc).__name__})"
        return preview
    finally:
        with suppress(Exception):
            source.close()
    sample = sample.reset_index(drop=True)
    missing = [
        c for c in [tm.source_key, *field_spec["source"]] if c not in sample.columns
    ]
    if missing:
        preview.error = f"the source table has no column {', '.join(missing)}"
        return preview
    try:
        inputs = [sample[c] for c in field_spec["source"]] or [
            pd.Series([None] * len(sample), dtype=object)
        ]
        own_values, own_steps = apply_chain(inputs, steps, xctx)
        result = (
            None
            if plan is None or contract is None
            else process_chunk(
                plan,
                sample,
                run_id="preview",
                xctx=xctx,
                rctx=RuleContext(
                    as_of=as_of,
                    params=dict(contract.rules.params),
                    valid_codes=plan.valid_codes,
                ),
            )
        )
    except (EngineError, KeyError, ValueError, TypeError) as exc:
        preview.error = f"the sample could not be processed: {exc}"
        return preview

    try:
        sql_type = (
            target_model_for(mapping_set)
            .table(tm.target_table)
            .field(shown.target_field)
            .sql_type
        )
    except (EngineError, KeyError, ValueError):
        sql_type = ""

    def show(value: Any) -> Any:
        text = _text(value, sql_type)
        return text if unmasked else pid_mask(text)

    # The first step of this field's own chain that failed each row, if any.
    own_failure: dict[int, str] = {}
    for step in own_steps:
        if step.failed is None:
            continue
        for i in np.flatnonzero(step.failed.to_numpy(dtype=bool, na_value=False)):
            own_failure.setdefault(int(i), str(step.reason or "transform_failed"))
    loaded: dict[str, Any] = {}
    rejects: dict[str, Any] = {}
    exclusions: dict[str, Any] = {}
    if result is not None:
        loaded = {
            str(k): v
            for k, v in zip(
                result.rows["_source_key"],
                result.rows.get(shown.target_field, [None] * len(result.rows)),
                strict=False,
            )
        }
        records = result.rejects.to_dict("records")
        rejects = {
            str(r["source_key"]): r for r in records if r.get("action") == "reject"
        }
        exclusions = {
            str(r["source_key"]): r for r in records if r.get("action") == "exclude"
        }
    own_columns = {*preview.source_columns, shown.target_field}
    keys = sample[tm.source_key].astype(str).tolist() if len(sample) else []
    for i, key in enumerate(keys):
        row_inputs = tuple(
            show(sample[c].iloc[i]) if c in sample.columns else None
            for c in preview.source_columns
        )
        chain_value = None if i in own_failure else own_values.iloc[i]
        if result is None:
            # Only this field's own steps can be judged.
            reason = own_failure.get(i, "")
            preview.rows.append(
                PreviewRow(
                    source_key=key,
                    inputs=row_inputs,
                    value=show(chain_value),
                    rejected=bool(reason),
                    reason=reason,
                )
            )
            continue
        out = exclusions.get(key)
        if out is not None:
            preview.rows.append(
                PreviewRow(
                    source_key=key,
                    inputs=row_inputs,
                    value=None,
                    rejected=False,
                    reason=str(out["reason"]),
                    column=str(out.get("column_name") or ""),
                    rule_id=str(out.get("rule_id") or ""),
                    excluded=True,
                )
            )
            continue
        rej = rejects.get(key)
        column = str(rej.get("column_name") or "") if rej else ""
        other = bool(rej) and bool(column) and column not in own_columns
        if rej is None:
            value = show(loaded.get(key))
        elif other:  # this field was fine: show what it gave
            value = show(chain_value)
        else:
            value = None
        preview.rows.append(
            PreviewRow(
                source_key=key,
                inputs=row_inputs,
                value=value,
                rejected=rej is not None,
                reason=str(rej["reason"]) if rej else "",
                column=column,
                other_field=other,
                rule_id=str(rej.get("rule_id") or "") if rej else "",
            )
        )
    if unmasked and preview.rows:
        with transaction.atomic():
            audit.record(
                actor=user,
                action="migration.preview.pid_viewed",
                target=mapping,
                project=project_id,
                data={
                    "mapping": mapping.pk,
                    "rows": len(preview.rows),
                    **({"draft": True} if draft is not None else {}),
                },
            )
    return preview
