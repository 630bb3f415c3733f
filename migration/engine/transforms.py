"""Registry of named, pure, vectorised transforms (no eval).

A transform takes a pandas Series (``concat`` takes several) and its
arguments and returns a :class:`StepResult`: the new values plus, when some
rows could not be transformed, a mask of those rows and the reject reason.
A failing row never raises; it becomes a reject with a reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from migration.engine.arrowtext import TEXT, arrow_text, blank, text_series
from migration.engine.crosswalk import Crosswalk
from migration.engine.errors import ContractError

#: Python's ``\s`` spelt out as literal characters: the same matches, but a
#: pattern pyarrow's RE2 runs in C++ (pandas falls back to a Python call per
#: value for ``\s``, whose RE2 meaning is ASCII-only).
WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
HOROLOG_EPOCH = np.datetime64("1840-12-31", "D")
#: $HOROLOG day numbers beyond this are not dates (year > 9999).
HOROLOG_MAX = 2_980_000


@dataclass
class StepResult:
    """Values after one step, plus the rows the step failed and why."""

    values: pd.Series
    failed: pd.Series | None = None
    reason: str | None = None
    crosswalk: tuple[str, str] | None = None
    defaults_filled: int = 0
    #: local codes a lenient crosswalk filled with its default (code -> rows)
    defaulted_codes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TransformContext:
    """What transforms may read besides their input: crosswalks by id."""

    crosswalks: Mapping[str, Crosswalk] = field(default_factory=dict)


TransformFn = Callable[..., StepResult]


@dataclass(frozen=True)
class TransformDef:
    """A registered transform: function, required and optional arguments."""

    name: str
    fn: TransformFn
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    multi_input: bool = False


REGISTRY: dict[str, TransformDef] = {}


def register(
    name: str,
    *,
    required: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    multi_input: bool = False,
) -> Callable[[TransformFn], TransformFn]:
    """Return a decorator registering a transform under ``name``."""

    def deco(fn: TransformFn) -> TransformFn:
        REGISTRY[name] = TransformDef(name, fn, required, optional, multi_input)
        return fn

    return deco


def as_text(values: pd.Series) -> pd.Series:
    """Return ``values`` as nullable pyarrow strings (integral floats as ints)."""
    if values.dtype == TEXT:
        return values
    if pd.api.types.is_float_dtype(values.dtype):
        # A NULL in an INTEGER column turns the chunk into float64: "12.0"
        # must still read as "12".
        nonnull = values.dropna()
        if bool((nonnull == np.floor(nonnull)).all()):
            values = values.astype("Int64")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return values.dt.strftime("%Y-%m-%d").astype(TEXT)
    return values.astype(TEXT)


def _blank_to_na(text: pd.Series) -> pd.Series:
    arr = arrow_text(text)
    return text_series(
        pc.if_else(blank(arr), pa.scalar(None, arr.type), arr), text.index
    )


def _per_distinct(
    text: pd.Series, parse: Callable[[pd.Series], pd.Series]
) -> pd.Series:
    """Return ``parse`` of each value, calling it once per distinct value.

    Dates and numbers in a source repeat (a birth date, an admission day):
    parsing each distinct text once and spreading the results by position
    gives exactly what parsing every row gives, for a fraction of the work.
    NULLs come back as ``parse``'s missing value.
    """
    codes, uniques = pd.factorize(text)
    parsed = parse(pd.Series(np.asarray(uniques, dtype=object), dtype=object))
    out = parsed.reset_index(drop=True).reindex(codes)
    out.index = text.index
    return out


def check_args(name: str, args: Mapping[str, Any]) -> TransformDef:
    """Return the definition of ``name``; raises ContractError on bad arguments."""
    tdef = REGISTRY.get(name)
    if tdef is None:
        raise ContractError(f"unknown transform {name!r}")
    missing = [a for a in tdef.required if a not in args]
    unknown = [a for a in args if a not in tdef.required + tdef.optional]
    if missing or unknown:
        raise ContractError(
            f"transform {name!r}: missing args {missing}, unknown args {unknown}"
        )
    return tdef


def apply_chain(
    inputs: Sequence[pd.Series],
    steps: Sequence[tuple[str, Mapping[str, Any]]],
    ctx: TransformContext,
) -> tuple[pd.Series, list[StepResult]]:
    """Apply ``steps`` to ``inputs``; returns final values and per-step results."""
    results: list[StepResult] = []
    if len(inputs) > 1:
        if not steps or not check_args(steps[0][0], steps[0][1]).multi_input:
            raise ContractError("several source columns need a combining first step")
        res = REGISTRY[steps[0][0]].fn(list(inputs), ctx=ctx, **steps[0][1])
        results.append(res)
        values = res.values
        steps = steps[1:]
    else:
        values = inputs[0]
    for name, args in steps:
        tdef = check_args(name, args)
        res = tdef.fn([values] if tdef.multi_input else values, ctx=ctx, **args)
        results.append(res)
        values = res.values
    return values, results


# -- text ---------------------------------------------------------------------


@register("trim")
def trim(values: pd.Series, *, ctx: TransformContext) -> StepResult:
    """Return values without leading/trailing whitespace."""
    return StepResult(as_text(values).str.strip())


@register("upper")
def upper(values: pd.Series, *, ctx: TransformContext) -> StepResult:
    """Return values upper-cased."""
    return StepResult(as_text(values).str.upper())


@register("lower")
def lower(values: pd.Series, *, ctx: TransformContext) -> StepResult:
    """Return values lower-cased."""
    return StepResult(as_text(values).str.lower())


@register("title")
def title(values: pd.Series, *, ctx: TransformContext) -> StepResult:
    """Return values title-cased."""
    return StepResult(as_text(values).str.title())


@register("null_if_empty")
def null_if_empty(values: pd.Series, *, ctx: TransformContext) -> StepResult:
    """Return values with '' and all-blank strings as NULL (Caché N/E)."""
    return StepResult(_blank_to_na(as_text(values)))


@register("concat", optional=("sep",), multi_input=True)
def concat(
    values: list[pd.Series], *, ctx: TransformContext, sep: str = " "
) -> StepResult:
    """Return the non-null inputs joined with ``sep`` (NULL when all are NULL)."""
    parts = [_blank_to_na(as_text(v)) for v in values]
    out = parts[0]
    for nxt in parts[1:]:
        both = out.notna() & nxt.notna()
        joined = out.str.cat(nxt, sep=sep)
        out = joined.where(both, out.fillna(nxt))
    return StepResult(out.astype(TEXT))


@register("split", required=("sep", "index"))
def split(
    values: pd.Series, *, ctx: TransformContext, sep: str, index: int
) -> StepResult:
    """Return part ``index`` of each value split on ``sep`` (NULL if absent)."""
    parts = as_text(values).astype(object).str.split(sep, regex=False)
    return StepResult(parts.str[int(index)].astype(TEXT))


@register("default", required=("value",))
def default(values: pd.Series, *, ctx: TransformContext, value: Any) -> StepResult:
    """Return values with NULLs replaced by ``value``."""
    return StepResult(values.fillna(value))


@register("constant", required=("value",))
def constant(values: pd.Series, *, ctx: TransformContext, value: Any) -> StepResult:
    """Return ``value`` for every row."""
    return StepResult(pd.Series(value, index=values.index).astype(TEXT))


# -- dates --------------------------------------------------------------------


def _to_date(parsed: pd.Series) -> pd.Series:
    return parsed.dt.normalize().astype("datetime64[s]")


@register("date_parse", required=("format",), optional=("reason",))
def date_parse(
    values: pd.Series,
    *,
    ctx: TransformContext,
    format: str,
    reason: str = "date_unparseable",
) -> StepResult:
    """Return dates parsed with ``format``; unparseable non-blank -> reject."""
    text = _blank_to_na(as_text(values)).str.strip()
    parsed = _per_distinct(
        text, lambda u: pd.to_datetime(u, format=format, errors="coerce")
    )
    failed = text.notna() & parsed.isna()
    return StepResult(_to_date(parsed), failed.astype(bool), reason)


@register("datetime_parse", required=("format",), optional=("reason",))
def datetime_parse(
    values: pd.Series,
    *,
    ctx: TransformContext,
    format: str,
    reason: str = "date_unparseable",
) -> StepResult:
    """Return timestamps parsed with ``format``; unparseable non-blank -> reject."""
    text = _blank_to_na(as_text(values)).str.strip()
    parsed = _per_distinct(
        text, lambda u: pd.to_datetime(u, format=format, errors="coerce")
    )
    failed = text.notna() & parsed.isna()
    return StepResult(parsed.astype("datetime64[s]"), failed.astype(bool), reason)


@register("horolog_to_date", optional=("reason",))
def horolog_to_date(
    values: pd.Series, *, ctx: TransformContext, reason: str = "date_unparseable"
) -> StepResult:
    """Return Caché $HOROLOG day numbers (1 = 1841-01-01) as dates."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        num = pd.to_numeric(values, errors="coerce")
        present = values.notna()
    else:
        text = _blank_to_na(as_text(values)).str.strip()
        present = text.notna()
        num = pd.to_numeric(text.astype(object), errors="coerce")
    num = num.astype("float64")
    ok = num.notna() & (num == np.floor(num)) & (num >= 0) & (num <= HOROLOG_MAX)
    days = num.where(ok, 0).astype("int64").to_numpy()
    dates = HOROLOG_EPOCH + days.astype("timedelta64[D]")
    out = pd.Series(dates.astype("datetime64[s]"), index=values.index)
    out = out.where(ok)
    failed = present & ~ok
    return StepResult(out, failed.astype(bool), reason)


# -- integers -----------------------------------------------------------------


@register("to_integer", optional=("reason",))
def to_integer(
    values: pd.Series, *, ctx: TransformContext, reason: str = "integer_unparseable"
) -> StepResult:
    """Return values as nullable integers; non-integral non-blank -> reject."""
    if pd.api.types.is_signed_integer_dtype(values.dtype):
        # Already integers (an INTEGER column read as such): nothing to parse,
        # nothing to fail, and no float round trip to lose digits beyond 2**53.
        return StepResult(
            values.astype("Int64"), pd.Series(False, index=values.index), reason
        )
    text = _blank_to_na(as_text(values)).str.strip()
    num = _per_distinct(
        text, lambda u: pd.to_numeric(u, errors="coerce").astype("float64")
    ).astype("float64")
    # Integral and inside BIGINT: a larger number is a reject, not a crash.
    ok = num.notna() & (num == np.floor(num)) & (num.abs() < 2.0**63)
    failed = text.notna() & ~ok
    return StepResult(num.where(ok).astype("Int64"), failed.astype(bool), reason)


def _stable_numbers(uniques: pd.Series) -> pd.Series:
    def number(text: str) -> int:
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") >> 1  # 0 .. 2**63 - 1: a BIGINT

    return pd.Series(
        [pd.NA if pd.isna(v) else number(str(v)) for v in uniques], dtype="Int64"
    )


@register("stable_number")
def stable_number(values: pd.Series, *, ctx: TransformContext) -> StepResult:
    """Return a stable whole number (0 .. 2**63 - 1) for each value's text.

    For a numeric target key (BIGINT) fed by a source whose keys are not
    numbers -- a third-party extract's UUIDs: the same text gives the same
    number on every run and machine (the first 8 bytes of its BLAKE2b
    digest), blank stays NULL. The source key itself stays in every target
    row's provenance; two keys meeting one number (odds of about 1 in 10^7
    at a million keys) are both rejected by the duplicate-key check.
    """
    text = _blank_to_na(as_text(values))
    return StepResult(_per_distinct(text, _stable_numbers).astype("Int64"))


# -- NHS identifiers ----------------------------------------------------------


@register("nhs_number_normalise")
def nhs_number_normalise(values: pd.Series, *, ctx: TransformContext) -> StepResult:
    """Return NHS numbers without spaces or hyphens (validity is a rule, not this)."""
    text = as_text(values).str.replace(f"[{WHITESPACE}\\-]", "", regex=True)
    return StepResult(_blank_to_na(text))


@register("postcode_normalise")
def postcode_normalise(values: pd.Series, *, ctx: TransformContext) -> StepResult:
    """Return postcodes upper-cased with one space before the inward code."""
    text = _blank_to_na(
        as_text(values).str.upper().str.replace(f"[{WHITESPACE}]", "", regex=True)
    )
    spaced = text.str.slice(0, -3) + " " + text.str.slice(-3)
    return StepResult(spaced.where(text.str.len() >= 5, text).astype(TEXT))


# -- crosswalk ----------------------------------------------------------------


@register("crosswalk", required=("id",), optional=("mode",))
def crosswalk(
    values: pd.Series, *, ctx: TransformContext, id: str, mode: str = "strict"
) -> StepResult:
    """Return national codes; strict miss -> reject ``crosswalk_miss``."""
    xw = ctx.crosswalks.get(id)
    if xw is None:
        raise ContractError(f"unknown crosswalk {id!r}")
    mapped, miss, filled, defaulted = xw.apply(as_text(values), mode)
    return StepResult(
        mapped, miss, "crosswalk_miss", (xw.id, xw.version), filled, defaulted
    )
