"""The migration contract: frozen, JSON-serialisable, hashed, validated up front.

A contract says, per target table, which source table and key feed it and,
per target field, which source columns and which transform chain produce it;
plus the crosswalks it uses (embedded, versioned), the rule packs and their
settings, and the chunk size. ``contract.sha256`` hashes its canonical JSON so
sign-offs can be bound to exactly this contract.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from migration.engine.crosswalk import Crosswalk, crosswalk_from_dict
from migration.engine.errors import ContractError
from migration.engine.ports import TableInfo
from migration.engine.rules import rule_pack
from migration.engine.targets import TargetModel, load_target
from migration.engine.transforms import REGISTRY, check_args

CONTRACT_FORMAT = 1
MAX_CHUNK = 1_000_000
EXCLUDE_OPS = ("in", "not_in", "eq", "is_null", "not_null")


@dataclass(frozen=True)
class Step:
    """One transform in a field's chain: registry name and arguments."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lookup:
    """Resolve a value from another target table staged in the same run.

    The chain's output is matched against ``table.match`` (a field or
    ``_source_key``) and replaced by ``table.take``; a row without a match is
    rejected with ``reason``. Resolution happens in SQL on staged data, so it
    stays memory-bounded whatever the size of the referenced table.
    """

    table: str
    match: str
    take: str
    reason: str


@dataclass(frozen=True)
class FieldMapping:
    """How one target field is produced from source columns."""

    target: str
    source: tuple[str, ...]
    transforms: tuple[Step, ...] = ()
    lookup: Lookup | None = None


@dataclass(frozen=True)
class ExcludeRule:
    """Rows matching this rule are excluded (counted, recorded, not loaded).

    A rule tests either a target ``field`` after its transforms, or a source
    ``column`` of the table as read (its text, trimmed): a table fed by part
    of a source table (inpatient encounters of an extract holding every
    encounter) says which part without mapping the deciding column anywhere.
    Exactly one of the two is set.
    """

    id: str
    field: str | None
    op: str
    values: tuple[Any, ...] = ()
    reason: str = "excluded_by_rule"
    column: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the rule's JSON form (only the key it tests: field or column)."""
        out: dict[str, Any] = {"id": self.id}
        if self.column is not None:
            out["column"] = self.column
        else:
            out["field"] = self.field
        out.update(op=self.op, values=list(self.values), reason=self.reason)
        return out


@dataclass(frozen=True)
class TableMapping:
    """One target table fed by one source table read in key order."""

    target: str
    source: str
    key: str
    fields: tuple[FieldMapping, ...]
    exclude: tuple[ExcludeRule, ...] = ()

    def field(self, target: str) -> FieldMapping | None:
        """Return the mapping of target field ``target`` or None."""
        for f in self.fields:
            if f.target == target:
                return f
        return None

    def source_columns(self) -> list[str]:
        """Return the source columns to read: the key first, no duplicates."""
        cols = [self.key]
        for f in self.fields:
            for c in f.source:
                if c not in cols:
                    cols.append(c)
        for e in self.exclude:
            if e.column is not None and e.column not in cols:
                cols.append(e.column)
        return cols


@dataclass(frozen=True)
class AsOf:
    """Where the run's as-of date comes from: a fixed date or a source cell."""

    date: str | None = None
    source_table: str | None = None
    source_column: str | None = None
    format: str = "%Y-%m-%d"


@dataclass(frozen=True)
class RuleSettings:
    """Which rule packs run, their parameters and the as-of date source."""

    packs: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    as_of: AsOf = field(default_factory=AsOf)


@dataclass(frozen=True)
class Contract:
    """A frozen migration contract (see module docstring)."""

    name: str
    version: str
    target_model: str
    target_version: str
    tables: tuple[TableMapping, ...]
    crosswalks: tuple[Crosswalk, ...] = ()
    rules: RuleSettings = field(default_factory=RuleSettings)
    chunk_size: int = 50_000
    description: str = ""

    @cached_property
    def target(self) -> TargetModel:
        """Return the target model this contract maps into."""
        return load_target(self.target_model, self.target_version)

    def table(self, target: str) -> TableMapping:
        """Return the mapping of target table ``target``; raises ContractError."""
        for t in self.tables:
            if t.target == target:
                return t
        raise ContractError(f"contract maps no table {target!r}")

    def crosswalk_map(self) -> dict[str, Crosswalk]:
        """Return the embedded crosswalks by id."""
        return {x.id: x for x in self.crosswalks}

    def table_order(self) -> list[str]:
        """Return mapped tables parents-first; raises ContractError on a cycle."""
        mapped = [t.target for t in self.tables]
        deps: dict[str, set[str]] = {}
        for tm in self.tables:
            tt = self.target.table(tm.target)
            parents = {p for p in tt.parents() if p in mapped and p != tm.target}
            parents |= {f.lookup.table for f in tm.fields if f.lookup is not None}
            deps[tm.target] = parents
        order: list[str] = []
        remaining = list(mapped)
        while remaining:
            ready = [n for n in remaining if deps[n] <= set(order)]
            if not ready:
                raise ContractError(f"cycle in table order among {sorted(remaining)}")
            order.append(ready[0])
            remaining.remove(ready[0])
        return order

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-serialisable form (round-trips via contract_from_json)."""
        return {
            "format": CONTRACT_FORMAT,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "target": {"model": self.target_model, "version": self.target_version},
            "chunk_size": self.chunk_size,
            "rules": {
                "packs": list(self.rules.packs),
                "params": dict(self.rules.params),
                "as_of": {
                    "date": self.rules.as_of.date,
                    "source_table": self.rules.as_of.source_table,
                    "source_column": self.rules.as_of.source_column,
                    "format": self.rules.as_of.format,
                },
            },
            "crosswalks": [x.to_dict() for x in self.crosswalks],
            "tables": [
                {
                    "target": t.target,
                    "source": t.source,
                    "key": t.key,
                    "fields": [
                        {
                            "target": f.target,
                            "source": list(f.source),
                            "transforms": [
                                {"name": s.name, "args": dict(s.args)}
                                for s in f.transforms
                            ],
                            "lookup": None
                            if f.lookup is None
                            else {
                                "table": f.lookup.table,
                                "match": f.lookup.match,
                                "take": f.lookup.take,
                                "reason": f.lookup.reason,
                            },
                        }
                        for f in t.fields
                    ],
                    "exclude": [e.as_dict() for e in t.exclude],
                }
                for t in self.tables
            ],
        }

    def canonical_json(self) -> str:
        """Return the canonical JSON text (sorted keys, no whitespace, UTF-8)."""
        return canonical_json(self.to_dict())

    @cached_property
    def sha256(self) -> str:
        """Return the SHA-256 hex digest of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


def canonical_json(data: Any) -> str:
    """Return ``data`` as canonical JSON (sorted keys, compact, UTF-8)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def exclude_rule_from_dict(e: Mapping[str, Any]) -> ExcludeRule:
    """Return an exclusion rule from its JSON form; ContractError when malformed."""
    rid = str(_req(e, "id", "exclude rule"))
    where = f"exclude rule {rid}"
    if ("field" in e) == ("column" in e):
        raise ContractError(f"{where}: give either 'field' or 'column', not both")
    values = e.get("values", [])
    if not isinstance(values, list):
        raise ContractError(f"{where}: 'values' must be a list")
    op = str(_req(e, "op", where))
    if op not in EXCLUDE_OPS:
        raise ContractError(f"{where}: unknown op {op}")
    if op == "eq" and len(values) != 1:
        raise ContractError(f"{where}: eq takes exactly one value")
    if op in ("in", "not_in") and not values:
        raise ContractError(f"{where}: {op} needs values")
    return ExcludeRule(
        id=rid,
        field=str(e["field"]) if "field" in e else None,
        column=str(e["column"]) if "column" in e else None,
        op=op,
        values=tuple(values),
        reason=str(e.get("reason", "excluded_by_rule")),
    )


def _req(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise ContractError(f"{where}: missing {key!r}")
    return data[key]


def contract_from_dict(
    data: Mapping[str, Any], *, source_tables: Sequence[TableInfo] | None = None
) -> Contract:
    """Build and validate a Contract; raises ContractError naming the problem."""
    if not isinstance(data, Mapping):
        raise ContractError("contract must be a JSON object")
    target = _req(data, "target", "contract")
    rules = data.get("rules", {}) or {}
    as_of = rules.get("as_of", {}) or {}
    chunk_size = data.get("chunk_size", 50_000)
    try:
        tables = tuple(
            TableMapping(
                target=str(_req(t, "target", "table")),
                source=str(_req(t, "source", f"table {t.get('target')}")),
                key=str(_req(t, "key", f"table {t.get('target')}")),
                fields=tuple(
                    FieldMapping(
                        target=str(_req(f, "target", f"table {t.get('target')}")),
                        source=tuple(
                            [f["source"]]
                            if isinstance(f.get("source"), str)
                            else f.get("source", [])
                        ),
                        transforms=tuple(
                            Step(name=str(s["name"]), args=dict(s.get("args") or {}))
                            for s in f.get("transforms", [])
                        ),
                        lookup=None
                        if not f.get("lookup")
                        else Lookup(
                            table=str(f["lookup"]["table"]),
                            match=str(f["lookup"]["match"]),
                            take=str(f["lookup"]["take"]),
                            reason=str(
                                f["lookup"].get(
                                    "reason", f"{f['lookup']['table']}_not_migrated"
                                )
                            ),
                        ),
                    )
                    for f in _req(t, "fields", f"table {t.get('target')}")
                ),
                exclude=tuple(exclude_rule_from_dict(e) for e in t.get("exclude", [])),
            )
            for t in _req(data, "tables", "contract")
        )
        contract = Contract(
            name=str(_req(data, "name", "contract")),
            version=str(data.get("version", "1")),
            description=str(data.get("description", "")),
            target_model=str(_req(target, "model", "target")),
            target_version=str(_req(target, "version", "target")),
            chunk_size=chunk_size,
            tables=tables,
            crosswalks=tuple(
                crosswalk_from_dict(x) for x in data.get("crosswalks", [])
            ),
            rules=RuleSettings(
                packs=tuple(rules.get("packs", [])),
                params=dict(rules.get("params", {}) or {}),
                as_of=AsOf(
                    date=as_of.get("date"),
                    source_table=as_of.get("source_table"),
                    source_column=as_of.get("source_column"),
                    format=as_of.get("format", "%Y-%m-%d"),
                ),
            ),
        )
    except (TypeError, KeyError, AttributeError) as exc:
        raise ContractError(f"malformed contract: {exc!r}") from exc
    validate_contract(contract, source_tables=source_tables)
    return contract


def contract_from_json(
    text: str | bytes | Mapping[str, Any],
    *,
    source_tables: Sequence[TableInfo] | None = None,
) -> Contract:
    """Parse and validate a contract; raises ContractError naming the problem.

    With ``source_tables`` (a source's ``discover()``), every source table and
    column the contract reads must exist.
    """
    if isinstance(text, Mapping):
        return contract_from_dict(text, source_tables=source_tables)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ContractError(f"contract is not valid JSON: {exc}") from exc
    return contract_from_dict(data, source_tables=source_tables)


def validate_contract(
    contract: Contract, *, source_tables: Sequence[TableInfo] | None = None
) -> None:
    """Check a contract against its target model (and source); raises ContractError."""
    if (
        not isinstance(contract.chunk_size, int)
        or isinstance(contract.chunk_size, bool)
        or not 1 <= contract.chunk_size <= MAX_CHUNK
    ):
        raise ContractError(
            f"bad chunk size {contract.chunk_size!r} (integer 1..{MAX_CHUNK})"
        )
    model = contract.target
    xws = contract.crosswalk_map()
    if len(xws) != len(contract.crosswalks):
        raise ContractError("a crosswalk id is declared twice")
    for xw in contract.crosswalks:
        _check_crosswalk_targets(xw)
    for pack in contract.rules.packs:
        rule_pack(pack)
    a = contract.rules.as_of
    if a.date is not None:
        try:
            dt.date.fromisoformat(a.date)
        except ValueError:
            raise ContractError(f"rules.as_of.date is not ISO: {a.date!r}") from None
    seen: set[str] = set()
    for tm in contract.tables:
        if tm.target in seen:
            raise ContractError(f"target table {tm.target!r} mapped twice")
        seen.add(tm.target)
        tt = model.table(tm.target)
        names = set(tt.field_names)
        mapped: set[str] = set()
        for fm in tm.fields:
            where = f"{tm.target}.{fm.target}"
            if fm.target not in names:
                raise ContractError(f"unknown target field {where}")
            if fm.target in mapped:
                raise ContractError(f"target field {where} mapped twice")
            mapped.add(fm.target)
            if not fm.source and not (
                fm.transforms and fm.transforms[0].name == "constant"
            ):
                raise ContractError(f"{where}: no source column")
            for i, step in enumerate(fm.transforms):
                tdef = check_args(step.name, step.args)
                if tdef.multi_input and i > 0:
                    raise ContractError(f"{where}: {step.name} must be the first step")
                if step.name == "crosswalk":
                    _check_crosswalk_use(contract, tm.target, fm, step, xws)
            if len(fm.source) > 1 and not (
                fm.transforms and REGISTRY[fm.transforms[0].name].multi_input
            ):
                raise ContractError(
                    f"{where}: {len(fm.source)} source columns need a combining "
                    "first step (concat)"
                )
            if fm.lookup is not None:
                lk = fm.lookup
                ref = model.table(lk.table)
                if lk.table not in [t.target for t in contract.tables]:
                    raise ContractError(f"{where}: lookup table {lk.table} not mapped")
                for col in (lk.match, lk.take):
                    if col != "_source_key" and col not in ref.field_names:
                        raise ContractError(
                            f"{where}: lookup column {lk.table}.{col} unknown"
                        )
        for f in tt.fields:
            if f.required and f.name not in mapped:
                raise ContractError(
                    f"required target field {tm.target}.{f.name} is not mapped"
                )
        for e in tm.exclude:
            if e.column is None and e.field not in names:
                raise ContractError(f"exclude rule {e.id}: unknown field {e.field}")
    contract.table_order()
    if source_tables is not None:
        _check_source(contract, source_tables)


def _check_crosswalk_targets(xw: Crosswalk) -> None:
    from migration.engine.codesystems import code_system

    valid = code_system(xw.target_system, xw.target_version).code_set()
    bad = sorted(
        {e.national for e in xw.entries if e.national and e.national not in valid}
        | ({xw.default} if xw.default and xw.default not in valid else set())
    )
    if bad:
        raise ContractError(
            f"crosswalk {xw.ref} maps to codes not in "
            f"{xw.target_system}@{xw.target_version}: {bad}"
        )


def _check_crosswalk_use(
    contract: Contract,
    table: str,
    fm: FieldMapping,
    step: Step,
    xws: Mapping[str, Crosswalk],
) -> None:
    xid = step.args.get("id")
    if xid not in xws:
        raise ContractError(f"{table}.{fm.target}: unknown crosswalk {xid!r}")
    mode = step.args.get("mode", "strict")
    if mode not in ("strict", "lenient"):
        raise ContractError(f"{table}.{fm.target}: crosswalk mode {mode!r}")
    xw = xws[str(xid)]
    tf = contract.target.table(table).field(fm.target)
    system = tf.code_system
    if system is not None:
        pinned = contract.target.code_system_version(system)
        if (xw.target_system, xw.target_version) != (system, pinned):
            raise ContractError(
                f"{table}.{fm.target} is {system}@{pinned} but crosswalk "
                f"{xw.ref} targets {xw.target_system}@{xw.target_version}"
            )


def _check_source(contract: Contract, source_tables: Sequence[TableInfo]) -> None:
    by_name = {t.name.lower(): t for t in source_tables}
    for tm in contract.tables:
        info = by_name.get(tm.source.lower())
        if info is None:
            raise ContractError(f"missing source table {tm.source!r}")
        cols = {c.name.lower() for c in info.columns}
        for e in tm.exclude:
            if e.column is not None and e.column.lower() not in cols:
                raise ContractError(
                    f"exclude rule {e.id}: missing source column {tm.source}.{e.column}"
                )
        for col in tm.source_columns():
            if col.lower() not in cols:
                raise ContractError(f"missing source column {tm.source}.{col}")
    a = contract.rules.as_of
    if a.source_table is not None:
        info = by_name.get(a.source_table.lower())
        if info is None or (a.source_column or "").lower() not in {
            c.name.lower() for c in info.columns
        }:
            raise ContractError(
                f"missing as-of source column {a.source_table}.{a.source_column}"
            )
