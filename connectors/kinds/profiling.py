"""Column profiling shared by every kind: streamed over DataFrame chunks, so a
profile costs bounded memory and means the same thing on every backend
(collations, empty-string handling and type quirks of the server do not
change the numbers).

Framework-free: no Django import.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "HOROLOG_RANGE",
    "ColumnProfile",
    "Profiler",
    "TableProfile",
    "ValueCount",
    "mod11_valid",
]

#: Values seen fewer than this many times are never shown (small-number
#: suppression, NHS disclosure control).
SUPPRESS_BELOW = 5
TOP_N = 10
#: Exact value counting stops at this many distinct values per column.
MAX_TRACKED = 100_000

_EPOCH = dt.date(1840, 12, 31)
#: $HOROLOG day numbers of 1880-01-01 .. 2100-12-31: plausible PAS dates.
HOROLOG_RANGE = (
    (dt.date(1880, 1, 1) - _EPOCH).days,
    (dt.date(2100, 12, 31) - _EPOCH).days,
)

_POSTCODE = re.compile(
    r"^\s*(GIR ?0AA|[A-PR-UWYZ][A-HK-Y]?[0-9][0-9A-HJKMNPR-Y]? ?[0-9][ABD-HJLNP-UW-Z]{2})\s*$",
    re.IGNORECASE,
)
_DATE = re.compile(
    r"^\s*(\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?|\d{2}/\d{2}/\d{4})\s*$"
)
_WEIGHTS = np.arange(10, 1, -1)


@dataclass(frozen=True)
class ValueCount:
    """One frequent value and how often it was seen (never below the threshold)."""

    value: Any
    count: int


@dataclass(frozen=True)
class ColumnProfile:
    """Profile of one column."""

    name: str
    type: str
    count: int
    nulls: int
    null_pct: float
    empty: int
    empty_pct: float
    distinct: int
    distinct_exact: bool
    min: Any
    max: Any
    min_length: int | None
    max_length: int | None
    top: tuple[ValueCount, ...]
    suppressed_values: int
    semantic: str
    semantic_score: float


@dataclass(frozen=True)
class TableProfile:
    """Profile of one table (``rows_profiled`` < ``row_count`` when capped)."""

    table: str
    rows_profiled: int
    columns: tuple[ColumnProfile, ...]
    capped: bool = False

    def column(self, name: str) -> ColumnProfile:
        """Return the profile of column ``name``; raises KeyError."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def mod11_valid(values: pd.Series) -> pd.Series:
    """Return a boolean Series: True where the value is a Modulus 11 valid NHS number."""
    s = values.astype("string").str.replace(r"\s", "", regex=True)
    ok = s.str.fullmatch(r"\d{10}").fillna(False).astype(bool)
    out = pd.Series(False, index=values.index)
    if not ok.any():
        return out
    digits = np.array(
        [list(map(int, v)) for v in s[ok].tolist()], dtype=np.int64
    ).reshape(-1, 10)
    check = 11 - (digits[:, :9] @ _WEIGHTS) % 11
    check = np.where(check == 11, 0, check)
    good = (check != 10) & (check == digits[:, 9])
    out.loc[ok[ok].index] = good
    return out


@dataclass
class _ColState:
    name: str
    type: str
    count: int = 0
    nulls: int = 0
    empty: int = 0
    min: Any = None
    max: Any = None
    min_len: int | None = None
    max_len: int | None = None
    counts: Counter[Any] = field(default_factory=Counter)
    overflow: bool = False
    nonempty: int = 0
    numeric: int = 0
    integer: int = 0
    nhs_ok: int = 0
    postcode_ok: int = 0
    date_ok: int = 0
    horolog_ok: int = 0
    native_date: bool = False


def _py(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


class Profiler:
    """Accumulates column statistics over DataFrame chunks of one table."""

    def __init__(self, table: str, types: dict[str, str] | None = None) -> None:
        self.table = table
        self.types = types or {}
        self.rows = 0
        self._cols: dict[str, _ColState] = {}

    def add(self, frame: pd.DataFrame) -> None:
        """Fold one chunk into the statistics."""
        self.rows += len(frame)
        for name in frame.columns:
            st = self._cols.get(name)
            if st is None:
                st = self._cols[name] = _ColState(name, self.types.get(name, ""))
            self._add_column(st, frame[name])

    def _add_column(self, st: _ColState, col: pd.Series) -> None:
        st.count += len(col)
        isna = col.isna()
        st.nulls += int(isna.sum())
        vals = col[~isna]
        if vals.empty:
            return
        if pd.api.types.is_datetime64_any_dtype(vals.dtype):
            st.native_date = True
        is_str = pd.api.types.is_string_dtype(vals.dtype) or vals.dtype == object
        if is_str:
            vals = vals.astype(str)
            empty = vals == ""
            st.empty += int(empty.sum())
            vals = vals[~empty]
            if vals.empty:
                return
            lengths = vals.str.len()
            lo, hi = int(lengths.min()), int(lengths.max())
            st.min_len = lo if st.min_len is None else min(st.min_len, lo)
            st.max_len = hi if st.max_len is None else max(st.max_len, hi)
            st.nhs_ok += int(mod11_valid(vals).sum())
            st.postcode_ok += int(vals.str.match(_POSTCODE).sum())
            st.date_ok += int(vals.str.match(_DATE).sum())
            nums = pd.to_numeric(vals, errors="coerce")
            st.numeric += int(nums.notna().sum())
        elif pd.api.types.is_numeric_dtype(
            vals.dtype
        ) and not pd.api.types.is_bool_dtype(vals.dtype):
            st.numeric += len(vals)
            as_float = vals.astype("float64")
            whole = (as_float % 1 == 0).to_numpy()
            st.integer += int(whole.sum())
            lo_h, hi_h = HOROLOG_RANGE
            st.horolog_ok += int(
                ((as_float >= lo_h) & (as_float <= hi_h) & whole).sum()
            )
            ints = vals[whole]
            if len(ints):
                st.nhs_ok += int(mod11_valid(ints.astype("int64").astype(str)).sum())
        st.nonempty += len(vals)
        lo_v, hi_v = _py(vals.min()), _py(vals.max())
        st.min = lo_v if st.min is None else min(st.min, lo_v)
        st.max = hi_v if st.max is None else max(st.max, hi_v)
        if not st.overflow:
            for value, n in vals.value_counts(dropna=True).items():
                st.counts[_py(value)] += int(n)
            if len(st.counts) > MAX_TRACKED:
                # Beyond this, exact distinct counting would cost unbounded
                # memory; report a lower bound and keep the frequent values.
                st.overflow = True
                keep = st.counts.most_common(MAX_TRACKED // 10)
                st.distinct_floor = len(st.counts)  # type: ignore[attr-defined]
                st.counts = Counter(dict(keep))

    def result(self, *, capped: bool = False) -> TableProfile:
        """Return the TableProfile of everything added so far."""
        cols = []
        for st in self._cols.values():
            distinct = getattr(st, "distinct_floor", len(st.counts))
            shown = [
                ValueCount(v, n)
                for v, n in sorted(
                    st.counts.items(), key=lambda kv: (-kv[1], str(kv[0]))
                )
                if n >= SUPPRESS_BELOW
            ][:TOP_N]
            suppressed = sum(1 for n in st.counts.values() if n < SUPPRESS_BELOW)
            semantic, score = _guess(st, distinct)
            cols.append(
                ColumnProfile(
                    name=st.name,
                    type=st.type,
                    count=st.count,
                    nulls=st.nulls,
                    null_pct=_pct(st.nulls, st.count),
                    empty=st.empty,
                    empty_pct=_pct(st.empty, st.count),
                    distinct=distinct,
                    distinct_exact=not st.overflow,
                    min=st.min,
                    max=st.max,
                    min_length=st.min_len,
                    max_length=st.max_len,
                    top=tuple(shown),
                    suppressed_values=suppressed,
                    semantic=semantic,
                    semantic_score=score,
                )
            )
        return TableProfile(self.table, self.rows, tuple(cols), capped)


def _pct(n: int, d: int) -> float:
    return round(100.0 * n / d, 2) if d else 0.0


def _guess(st: _ColState, distinct: int) -> tuple[str, float]:
    n = st.nonempty
    if n == 0:
        return "empty", 0.0
    rate = lambda k: k / n  # noqa: E731
    if rate(st.nhs_ok) >= 0.9:
        return "nhs_number", round(rate(st.nhs_ok), 4)
    if rate(st.postcode_ok) >= 0.9:
        return "postcode", round(rate(st.postcode_ok), 4)
    if st.native_date or rate(st.date_ok) >= 0.9:
        return "date", 1.0 if st.native_date else round(rate(st.date_ok), 4)
    if st.integer == n and rate(st.horolog_ok) >= 0.95 and distinct > 1:
        return "horolog_date", round(rate(st.horolog_ok), 4)
    if distinct <= 50 and distinct <= max(1, 0.2 * n):
        return "code", round(1 - distinct / n, 4)
    if st.numeric == n:
        return "number", 1.0
    return "text", 1.0


def profile_frames(
    table: str, frames: Iterable[pd.DataFrame], types: dict[str, str] | None = None
) -> TableProfile:
    """Return the TableProfile of a stream of chunks."""
    p = Profiler(table, types)
    for f in frames:
        p.add(f)
    return p.result()
