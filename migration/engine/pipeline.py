"""Per-chunk work: map, transform, crosswalk, validate -> rows + rejects.

Everything here is vectorised over one chunk and pure: the same chunk gives
the same rows and rejects, which is what makes a resumed run exact.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from migration.engine.arrowtext import (
    TEXT,
    arrow_text,
    blank,
    mask_series,
    text_series,
)
from migration.engine.codesystems import code_system
from migration.engine.contract import Contract, TableMapping
from migration.engine.ports import (
    REJECT_COLUMNS,
    ForeignKey,
    StageColumn,
    StagedStep,
    StageTable,
)
from migration.engine.rules import RowCheck, RuleContext, StagedCheck, rule_pack
from migration.engine.targets import PROVENANCE_COLUMNS, TargetTable
from migration.engine.transforms import (
    TransformContext,
    apply_chain,
    as_text,
    date_parse,
    datetime_parse,
    to_integer,
)

#: Reason when a row's reference to a parent table finds no staged parent.
NOT_MIGRATED = {"inpatient_spell": "spell_not_migrated"}


def not_migrated_reason(table: str) -> str:
    """Return the reject reason for a missing parent in ``table``."""
    return NOT_MIGRATED.get(table, f"{table}_not_migrated")


def lk(name: str) -> str:
    """Return the staging column holding a lookup field's unresolved value."""
    return f"_lk_{name}"


@dataclass
class TablePlan:
    """Everything needed to process one table, compiled once per run."""

    mapping: TableMapping
    target: TargetTable
    stage: StageTable
    chains: list[tuple[str, tuple[str, ...], list[tuple[str, dict[str, Any]]]]]
    row_checks: list[RowCheck]
    staged_checks: list[StagedCheck]
    valid_codes: dict[str, frozenset[str]]
    crosswalk_defaults: dict[str, str]
    crosswalk_fields: list[str]
    source_column_of: dict[str, str]
    lookups: dict[str, str] = field(default_factory=dict)


def build_plan(contract: Contract, table: str, as_of: dt.date) -> TablePlan:
    """Return the compiled plan of one mapped target table."""
    tm = contract.table(table)
    tt = contract.target.table(table)
    xws = contract.crosswalk_map()
    chains = []
    crosswalk_defaults: dict[str, str] = {}
    crosswalk_fields: list[str] = []
    source_column_of: dict[str, str] = {}
    for fm in tm.fields:
        steps = [(s.name, dict(s.args)) for s in fm.transforms]
        chains.append((fm.target, fm.source, steps))
        source_column_of[fm.target] = "+".join(fm.source)
        for name, args in steps:
            if name == "crosswalk":
                if fm.source:
                    crosswalk_fields.append(fm.target)
                default = xws[str(args["id"])].default
                if default is not None:
                    crosswalk_defaults[fm.target] = default
    valid_codes: dict[str, frozenset[str]] = {}
    for f in tt.fields:
        system = f.code_system
        if system is not None:
            cs = code_system(system, contract.target.code_system_version(system))
            valid_codes[f.name] = cs.code_set()
    packs = [rule_pack(p) for p in contract.rules.packs]
    row_checks = [c for p in packs for c in p.row_checks if c.table == table]
    staged = [c for p in packs for c in p.staged_checks if c.table == table]
    lookups = {fm.target: lk(fm.target) for fm in tm.fields if fm.lookup is not None}
    mapped = {t.target for t in contract.tables}
    columns = [StageColumn(f.name, f.sql_type) for f in tt.fields]
    columns += [StageColumn(n, t) for n, t in PROVENANCE_COLUMNS]
    columns += [StageColumn(c, "TEXT") for c in lookups.values()]
    fks = []
    for f in tt.fields:
        ref = f.references
        if ref is not None and ref in mapped and ref != table:
            ref_t = contract.target.table(ref)
            fks.append(ForeignKey((f.name,), ref, ref_t.key))
    checksum_cols = tuple(
        f.name
        for f in tt.fields
        if f.business_critical and f.name not in lookups and tm.field(f.name)
    )
    stage = StageTable(
        name=table,
        columns=tuple(columns),
        key=tt.key,
        foreign_keys=tuple(fks),
        checksum_columns=checksum_cols,
    )
    return TablePlan(
        mapping=tm,
        target=tt,
        stage=stage,
        chains=chains,
        row_checks=row_checks,
        staged_checks=staged,
        valid_codes=valid_codes,
        crosswalk_defaults=crosswalk_defaults,
        crosswalk_fields=crosswalk_fields,
        source_column_of=source_column_of,
        lookups=lookups,
    )


def staged_steps(contract: Contract, plan: TablePlan) -> list[StagedStep]:
    """Return the cross-table phase of one table, in the order it must run.

    Duplicate business keys go first (the unique index needs them gone), then
    references to parents (so later checks can join on resolved keys), then
    the rule packs' set-based checks, then foreign keys.
    """
    table = plan.target.name
    t = "{" + table + "}"
    key = plan.target.key
    key_cols = ", ".join(key)
    src = plan.source_column_of
    # Reject steps report the checksums of the rows they move out, so the
    # reconciliation can subtract them from what the engine sent.
    cs = plan.stage.checksum_columns
    steps: list[StagedStep] = [
        StagedStep(
            kind="reject",
            columns=cs,
            rule_id="ENG-KEY",
            reason="duplicate_key",
            column=src.get(key[0], key[0]),
            sql=(
                f"SELECT _source_key, _source_table, {key[0]} FROM {t} "
                f"WHERE ({key_cols}) IN (SELECT {key_cols} FROM {t} "
                f"GROUP BY {key_cols} HAVING COUNT(*) > 1)"
                if len(key) == 1
                else f"SELECT _source_key, _source_table, {key[0]} FROM ("
                f"SELECT _source_key, _source_table, {key[0]}, COUNT(*) OVER "
                f"(PARTITION BY {key_cols}) AS n FROM {t}) x WHERE n > 1"
            ),
        ),
    ]
    # Unique indexes come after the lookup UPDATEs: an UPDATE rewrites every
    # row, and indexes present during it are maintained row by row.
    indexes = [
        StagedStep(kind="unique_index", columns=("_source_key",)),
        StagedStep(kind="unique_index", columns=key),
    ]
    for fm in plan.mapping.fields:
        if fm.lookup is None:
            continue
        lkc = lk(fm.target)
        p = "{" + fm.lookup.table + "}"
        steps.append(
            StagedStep(
                kind="reject",
                columns=cs,
                rule_id=f"ENG-LOOKUP-{fm.target}",
                reason=fm.lookup.reason,
                column=src[fm.target],
                sql=(
                    f"SELECT c._source_key, c._source_table, c.{lkc} FROM {t} c "
                    f"WHERE c.{lkc} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {p} r "
                    f"WHERE r.{fm.lookup.match} = c.{lkc})"
                ),
            )
        )
        steps.append(
            StagedStep(
                kind="resolve",
                rule_id=f"ENG-RESOLVE-{fm.target}",
                columns=(fm.target, lkc),
                ref_table=fm.lookup.table,
                ref_columns=(fm.lookup.match, fm.lookup.take),
            )
        )
        steps.append(StagedStep(kind="drop_column", columns=(lkc,)))
    if plan.lookups:
        # The statistics taken after the load saw the resolved columns all
        # NULL; without fresh ones the planner picks nested loops for the
        # FK anti-joins and constraint checks below.
        steps.append(
            StagedStep(kind="update", rule_id="ENG-ANALYZE", sql=f"ANALYZE {t}")
        )
    steps += indexes
    for fk in plan.stage.foreign_keys:
        col = fk.columns[0]
        if col in plan.lookups:
            continue
        p = "{" + fk.ref_table + "}"
        steps.append(
            StagedStep(
                kind="reject",
                columns=cs,
                rule_id=f"ENG-FK-{col}",
                reason=not_migrated_reason(fk.ref_table),
                column=src.get(col, col),
                sql=(
                    f"SELECT c._source_key, c._source_table, c.{col} FROM {t} c "
                    f"WHERE c.{col} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {p} r "
                    f"WHERE r.{fk.ref_columns[0]} = c.{col})"
                ),
            )
        )
    for chk in plan.staged_checks:
        steps.append(
            StagedStep(
                kind=chk.action,
                columns=cs if chk.action == "reject" else (),
                rule_id=chk.rule_id,
                reason=chk.reason,
                column=src.get(chk.field, chk.field),
                sql=chk.sql,
            )
        )
    for fk in plan.stage.foreign_keys:
        steps.append(
            StagedStep(
                kind="foreign_key",
                columns=fk.columns,
                ref_table=fk.ref_table,
                ref_columns=fk.ref_columns,
            )
        )
    return steps


@dataclass
class ChunkResult:
    """The outcome of one chunk: staged rows, rejects and counters."""

    rows: pd.DataFrame
    rejects: pd.DataFrame
    read: int
    loaded: int
    rejected: int
    excluded: int
    last_key: Any
    source_nulls: Counter[str]
    defaults_used: Counter[str]
    lenient_fills: Counter[str]
    field_rejects: Counter[str]
    #: crosswalk id -> local codes a lenient lookup filled with its default
    defaulted_codes: dict[str, Counter[str]] = field(default_factory=dict)


def _native(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value


def _coerce(
    values: pd.Series, sql_type: str
) -> tuple[pd.Series, pd.Series | None, str]:
    """Bring a field to its SQL type's pandas form; returns failures if any."""
    ctx = TransformContext()
    if sql_type == "DATE" and not pd.api.types.is_datetime64_any_dtype(values.dtype):
        r = date_parse(values, ctx=ctx, format="%Y-%m-%d")
        return r.values, r.failed, "date_unparseable"
    if sql_type == "TIMESTAMP" and not pd.api.types.is_datetime64_any_dtype(
        values.dtype
    ):
        r = datetime_parse(values, ctx=ctx, format="%Y-%m-%d %H:%M:%S")
        return r.values, r.failed, "date_unparseable"
    if sql_type in ("BIGINT", "INTEGER") and not pd.api.types.is_integer_dtype(
        values.dtype
    ):
        r = to_integer(values, ctx=ctx)
        return r.values, r.failed, "integer_unparseable"
    if sql_type == "TEXT" and values.dtype != TEXT:
        return as_text(values), None, ""
    return values, None, ""


def wire(values: pd.Series, sql_type: str) -> pd.Series:
    """Return the canonical text/int form the sinks receive for ``sql_type``."""
    if sql_type in ("DATE", "TIMESTAMP"):
        # Arrow's casts print ISO forms, YYYY-MM-DD and YYYY-MM-DD HH:MM:SS
        # at second resolution (as strftime would, 20x faster).
        stamps = pa.array(values.astype("datetime64[s]"), pa.timestamp("s"))
        if sql_type == "DATE":
            stamps = stamps.cast(pa.date32())
        return text_series(stamps.cast(pa.string()), values.index)
    if sql_type in ("BIGINT", "INTEGER"):
        return values.astype("Int64")
    return as_text(values)


def _exclude_mask(values: pd.Series, op: str, wanted: tuple[Any, ...]) -> np.ndarray:
    if op == "is_null":
        m = values.isna()
    elif op == "not_null":
        m = values.notna()
    elif op == "eq":
        m = values == wanted[0]
    elif op == "in":
        m = values.isin(list(wanted))
    else:
        m = values.notna() & ~values.isin(list(wanted))
    return np.asarray(m.astype("boolean").fillna(False), dtype=bool)


def process_chunk(
    plan: TablePlan,
    chunk: pd.DataFrame,
    *,
    run_id: str,
    xctx: TransformContext,
    rctx: RuleContext,
) -> ChunkResult:
    """Return the staged rows, rejects and counters of one source chunk.

    Column checksums of the staged rows are not computed here: the runner
    folds them in on its writer thread, just before each commit.
    """
    tm = plan.mapping
    chunk = chunk.reset_index(drop=True)
    n = len(chunk)
    index = chunk.index
    failed = np.zeros(n, dtype=bool)
    reason = np.full(n, None, dtype=object)
    rule = np.full(n, None, dtype=object)
    column = np.full(n, None, dtype=object)
    raw = np.full(n, None, dtype=object)
    xw_id = np.full(n, None, dtype=object)
    xw_ver = np.full(n, None, dtype=object)
    field_rejects: Counter[str] = Counter()

    def raw_at(fname: str, rows: np.ndarray, *, source: bool = False) -> np.ndarray:
        # The raw source text of a field's rejected rows only: a reject is
        # rare, turning a whole column into Python strings is not. ``source``:
        # ``fname`` names a source column, not a target field.
        fm = None if source else tm.field(fname)
        cols = [fname] if source else list(fm.source) if fm is not None else []
        if not cols:
            return np.full(len(rows), None, dtype=object)
        text = as_text(chunk[cols[0]].iloc[rows])
        for c in cols[1:]:
            text = text.str.cat(as_text(chunk[c].iloc[rows]), sep="|", na_rep="")
        return np.asarray(text.astype(object).where(text.notna()), dtype=object)

    def record(
        m: Any,
        why: str,
        rule_id: str,
        fname: str,
        xw: tuple[str, str] | None = None,
    ) -> None:
        m = np.asarray(m, dtype=bool)
        new = m & ~failed
        if not new.any():
            return
        failed[new] = True
        reason[new] = why
        rule[new] = rule_id
        column[new] = plan.source_column_of.get(fname, fname)
        raw[new] = raw_at(fname, np.flatnonzero(new))
        field_rejects[fname] += int(new.sum())
        if xw is not None:
            xw_id[new] = xw[0]
            xw_ver[new] = xw[1]

    values: dict[str, pd.Series] = {}
    lenient_fills: Counter[str] = Counter()
    defaulted_codes: dict[str, Counter[str]] = {}
    for fname, sources, steps in plan.chains:
        inputs = [chunk[c] for c in sources] or [pd.Series(pd.NA, index=index)]
        out, results = apply_chain(inputs, steps, xctx)
        for (sname, _), res in zip(steps, results, strict=False):
            if res.failed is not None:
                record(
                    res.failed,
                    res.reason or "transform_failed",
                    f"{res.crosswalk[0]}@{res.crosswalk[1]}"
                    if res.crosswalk
                    else f"T:{sname}",
                    fname,
                    res.crosswalk,
                )
            lenient_fills[fname] += res.defaults_filled
            if res.defaulted_codes and res.crosswalk is not None:
                defaulted_codes.setdefault(res.crosswalk[0], Counter()).update(
                    res.defaulted_codes
                )
        values[fname] = out
    frame: dict[str, pd.Series] = {}
    for f in plan.target.fields:
        v = values.get(f.name)
        if v is None:
            v = pd.Series(pd.NA, index=index, dtype=TEXT)
        if f.name in plan.lookups:
            frame[f.name] = as_text(v)
            continue
        v, bad, why = _coerce(v.reset_index(drop=True), f.sql_type)
        if bad is not None:
            record(bad, why, f"T:coerce_{f.sql_type.lower()}", f.name)
        frame[f.name] = v
    # Blank (NULL, empty, whitespace) source cells: one Arrow pass per text
    # column, shared by the presence flags and the source null counts.
    blanks: dict[str, Any] = {}

    def blank_of(c: str) -> Any:
        if c not in blanks:
            blanks[c] = blank(arrow_text(as_text(chunk[c])))
        return blanks[c]

    # Rules about "was a value recorded" must not be fooled by a crosswalk
    # that maps an unmatched local code to NULL.
    for fname in plan.crosswalk_fields:
        src = tm.field(fname).source[0]  # type: ignore[union-attr]
        frame[f"_present_{fname}"] = mask_series(pc.invert(blank_of(src)), index)
    df = pd.DataFrame(frame, index=index)

    excluded = np.zeros(n, dtype=bool)
    excl_rule = np.full(n, None, dtype=object)
    excl_reason = np.full(n, None, dtype=object)
    excl_column = np.full(n, None, dtype=object)
    excl_raw = np.full(n, None, dtype=object)
    for e in tm.exclude:
        if e.column is None:
            tested = df[e.field]
            wanted: tuple[Any, ...] = e.values
        else:  # a source column as read: its text, trimmed, "" as NULL
            tested = as_text(chunk[e.column].reset_index(drop=True)).str.strip()
            tested = tested.mask(tested == "")
            wanted = tuple(str(v).strip() for v in e.values)
        m = _exclude_mask(tested, e.op, wanted) & ~excluded
        excluded |= m
        excl_rule[m] = e.id
        excl_reason[m] = e.reason
        if e.column is not None and m.any():
            excl_column[m] = e.column
            excl_raw[m] = raw_at(e.column, np.flatnonzero(m), source=True)

    for f in plan.target.fields:
        if f.required:
            record(df[f.name].isna().to_numpy(), "required_missing", "REQ", f.name)
    for chk in plan.row_checks:
        record(chk.fn(df, rctx).to_numpy(), chk.reason, chk.rule_id, chk.field)
    for fname, valid in plan.valid_codes.items():
        col = df[fname]
        if col.dtype == TEXT:
            codes = arrow_text(col)
            known = pc.is_in(codes, value_set=pa.array(sorted(valid), codes.type))
            bad = mask_series(pc.and_(pc.is_valid(codes), pc.invert(known)), index)
        else:
            bad = col.notna() & ~col.isin(list(valid))
        record(bad.to_numpy(dtype=bool), "code_invalid", "CODE", fname)

    failed &= ~excluded
    ok = ~failed & ~excluded
    keys = as_text(chunk[tm.key])

    # One filter for every field, then the staged frame built in one go
    # (column by column inserts into a DataFrame cost more than the wiring).
    kept = df[ok].reset_index(drop=True)
    at = kept.index
    staged: dict[str, pd.Series] = {}
    for f in plan.target.fields:
        if f.name in plan.lookups:
            staged[f.name] = pd.Series(pd.NA, index=at, dtype=TEXT)
        else:
            staged[f.name] = wire(kept[f.name], f.sql_type)
    staged["_source_table"] = pd.Series(tm.source, index=at, dtype=TEXT)
    staged["_source_key"] = keys[ok].reset_index(drop=True)
    staged["_run_id"] = pd.Series(run_id, index=at, dtype=TEXT)
    for fname, lkc in plan.lookups.items():
        staged[lkc] = kept[fname]
    rows = pd.DataFrame(staged, index=at)

    bad_rows = failed | excluded
    n_bad = int(bad_rows.sum())
    nothing = np.full(n, None, dtype=object)
    rej_cols: dict[str, np.ndarray] = {
        "run_id": np.full(n_bad, run_id, dtype=object),
        "target_table": np.full(n_bad, plan.target.name, dtype=object),
        "source_table": np.full(n_bad, tm.source, dtype=object),
        "source_key": keys[bad_rows].to_numpy(dtype=object, na_value=None),
        "column_name": np.where(excluded, excl_column, column)[bad_rows],
        "raw_value": np.where(excluded, excl_raw, raw)[bad_rows],
        "rule_id": np.where(excluded, excl_rule, rule)[bad_rows],
        "reason": np.where(excluded, excl_reason, reason)[bad_rows],
        # An excluded row's record names its rule, not a check it also failed.
        "crosswalk_id": np.where(excluded, nothing, xw_id)[bad_rows],
        "crosswalk_version": np.where(excluded, nothing, xw_ver)[bad_rows],
        "action": np.where(excluded, "exclude", "reject")[bad_rows].astype(object),
        "stage": np.full(n_bad, "row", dtype=object),
    }
    for arr in rej_cols.values():
        missing = pd.isna(arr)  # NaN or NA from a text column: None, as SQL NULL
        if missing.any():
            arr[missing] = None
    rej = pd.DataFrame(rej_cols, columns=list(REJECT_COLUMNS), dtype=object)

    source_nulls: Counter[str] = Counter()
    for c in tm.source_columns():
        col = chunk[c]
        if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
            source_nulls[c] = int(pc.sum(blank_of(c)).as_py() or 0)
        else:
            source_nulls[c] = int(col.isna().sum())
    defaults_used: Counter[str] = Counter()
    for fname, dflt in plan.crosswalk_defaults.items():
        defaults_used[fname] = int((df[fname][ok] == dflt).fillna(False).sum())

    return ChunkResult(
        rows=rows,
        rejects=rej,
        read=n,
        loaded=int(ok.sum()),
        rejected=int(failed.sum()),
        excluded=int(excluded.sum()),
        last_key=_native(chunk[tm.key].iloc[-1]) if n else None,
        source_nulls=source_nulls,
        defaults_used=defaults_used,
        lenient_fills=lenient_fills,
        field_rejects=field_rejects,
        defaulted_codes=defaulted_codes,
    )
