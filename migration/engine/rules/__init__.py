"""Rule packs: vectorised row checks and set-based checks on staged data.

A row check returns a boolean mask of failing rows over one transformed chunk
(columns are target field names). A staged check is a portable SQL SELECT over
the run's staged tables (placeholders ``{patient}`` etc.) returning
``(_source_key, _source_table, raw_value)`` of the rows to reject or flag; it
runs in the cross-table phase, where duplicates and overlaps that span chunks
are visible, without loading a table into memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from migration.engine.errors import ContractError


@dataclass(frozen=True)
class RuleContext:
    """What checks may read: the as-of date, pack parameters, valid codes."""

    as_of: dt.date
    params: Mapping[str, Any] = field(default_factory=dict)
    #: target field -> codes valid in the pinned code-system version
    valid_codes: Mapping[str, frozenset[str]] = field(default_factory=dict)


MaskFn = Callable[[pd.DataFrame, RuleContext], pd.Series]


@dataclass(frozen=True)
class RowCheck:
    """One vectorised check of one target table."""

    rule_id: str
    reason: str
    table: str
    field: str
    fn: MaskFn
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class StagedCheck:
    """One set-based check run as SQL over staged tables in the cross-table phase."""

    rule_id: str
    reason: str
    table: str
    field: str
    sql: str
    action: str = "reject"
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class RulePack:
    """A named set of checks for one clinical domain."""

    name: str
    version: str
    row_checks: tuple[RowCheck, ...]
    staged_checks: tuple[StagedCheck, ...] = ()


def mask(values: pd.Series) -> pd.Series:
    """Return a plain bool mask with NULL comparisons counted as passing."""
    return values.astype("boolean").fillna(False).astype(bool)


def rule_packs() -> dict[str, RulePack]:
    """Return the packaged rule packs by name."""
    from migration.engine.rules import adt, opd, pmi

    return {p.name: p for p in (pmi.PACK, adt.PACK, opd.PACK)}


def rule_pack(name: str) -> RulePack:
    """Return one rule pack; raises ContractError when unknown."""
    packs = rule_packs()
    if name not in packs:
        raise ContractError(f"unknown rule pack {name!r}")
    return packs[name]
