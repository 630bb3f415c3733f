"""What every kind shares: the config base, the check result, error wrapping
(with redaction), type families, Arrow/pandas conversion, and ``SqlSource`` --
the governed, guarded, keyset-paginated reader the SQL kinds build on.

Every statement an SqlSource runs passes the guard first and the text that
runs is the guard's regenerated statement; the only exceptions are the fixed
session-setup statements in each kind's ``_open`` (``SET TRANSACTION READ
ONLY`` and friends), which take no input.

Framework-free: no Django import.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, suppress
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field
from sqlglot import exp

from connectors.governor import Governor, GovernorPolicy
from connectors.guard import Guard
from connectors.kinds.profiling import Profiler, TableProfile
from connectors.secrets import scrub
from migration.engine.errors import (
    EngineError,
    ReadOnlyViolation,
    TerminalError,
    TransientError,
)
from migration.engine.ports import TableInfo

__all__ = [
    "CheckResult",
    "KindConfig",
    "QueryEvent",
    "SqlSource",
    "arrow_type_for",
    "frame_from_rows",
    "to_pandas",
    "type_family",
]

log = logging.getLogger("pasportal.connectors")


@dataclass(frozen=True)
class QueryEvent:
    """One statement a source ran: its shape, purpose, size, time and outcome."""

    statement: str
    purpose: str
    rows: int
    duration_ms: int
    outcome: str  # ok / refused / timeout / error
    message: str = ""


class KindConfig(BaseModel):
    """Base of every kind's config: strict, secrets hidden from errors and repr."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)

    governor: GovernorPolicy = Field(default_factory=GovernorPolicy)
    #: Optional table allow-list for the guard (None = every table).
    allowed_tables: tuple[str, ...] | None = None


@dataclass(frozen=True)
class CheckResult:
    """Outcome of ``check()``: reachability, auth and read-only status."""

    connector: str
    kind: str
    ok: bool
    reachable: bool
    authenticated: bool
    #: Whether the ACCOUNT could write if the session were not read-only
    #: (None when the engine gives no way to tell).
    can_write: bool | None
    #: Whether our own session/transaction is read-only.
    read_only_session: bool
    server: str = ""
    latency_ms: float = 0.0
    problems: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------- type help

_FAMILIES = (
    ("boolean", re.compile(r"\b(bool|boolean)\b|^bit$", re.I)),
    ("integer", re.compile(r"int|serial|\blong\b|counter", re.I)),
    ("float", re.compile(r"real|floa|doub", re.I)),
    ("decimal", re.compile(r"numeric|decimal|number|money", re.I)),
    ("datetime", re.compile(r"timestamp|datetime", re.I)),
    ("date", re.compile(r"^date$", re.I)),
    ("time", re.compile(r"^time", re.I)),
    ("binary", re.compile(r"blob|bytea|binary|raw", re.I)),
    ("text", re.compile(r"char|clob|text|string|varchar|uuid|enum|json", re.I)),
)


def type_family(declared: str) -> str:
    """Return integer/float/decimal/text/date/datetime/time/boolean/binary/other."""
    d = (declared or "").strip()
    if not d:
        return "other"
    if re.search(r"point|interval", d, re.I):
        return "other"
    for family, rx in _FAMILIES:
        if rx.search(d):
            return family
    return "other"


def arrow_type_for(declared: str) -> pa.DataType | None:
    """Return the Arrow type a column of ``declared`` type is read as (None: infer)."""
    return {
        "integer": pa.int64(),
        "float": pa.float64(),
        "text": pa.string(),
        "boolean": pa.bool_(),
    }.get(type_family(declared))


_PANDAS_TYPES = {
    pa.int64(): pd.Int64Dtype(),
    pa.int32(): pd.Int64Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.string(): pd.StringDtype("pyarrow"),
    pa.large_string(): pd.StringDtype("pyarrow"),
    pa.bool_(): pd.BooleanDtype(),
}


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Return ``table`` as a DataFrame with nullable pandas dtypes (no object ints)."""
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


def _column_array(values: Sequence[Any], typ: pa.DataType | None) -> pa.Array:
    if typ is not None:
        try:
            return pa.array(values, type=typ, from_pandas=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass  # e.g. SQLite dynamic typing: fall back to inference
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # Mixed Python types in one column: keep them as text, never drop them.
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def frame_from_rows(
    rows: Sequence[Sequence[Any]],
    columns: Sequence[str],
    types: Sequence[pa.DataType | None] | None = None,
) -> pd.DataFrame:
    """Return a DataFrame built column-wise (bulk, through Arrow) from DB-API rows."""
    n = len(columns)
    types = list(types) if types is not None else [None] * n
    if rows and type(rows[0]) is tuple and all(t is not None for t in types):
        # Fast path: Arrow converts the row tuples as one struct array in C++,
        # with no Python-level transposition (~4x faster than per column).
        # The same converters as below; any value that does not fit its
        # declared type (SQLite's dynamic typing) falls back to per column.
        fields = [pa.field(f"c{i}", t) for i, t in enumerate(types)]
        try:
            struct = pa.array(rows, type=pa.struct(fields))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            pass
        else:
            return to_pandas(
                pa.Table.from_arrays(struct.flatten(), names=list(columns))
            )
    if rows:
        cols = list(zip(*rows, strict=True))
    else:
        cols = [() for _ in range(n)]
    arrays = [
        _column_array(c, t if t is not None or rows else pa.string())
        for c, t in zip(cols, types, strict=True)
    ]
    return to_pandas(pa.Table.from_arrays(arrays, names=list(columns)))


def _native(value: Any) -> Any:
    """Return a plain Python scalar for numpy/pandas scalars (for SQL literals)."""
    if value is None:
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


# ------------------------------------------------------------------ sources


class SqlSource(ABC):
    """A read-only SQL source: guarded statements, governor, keyset pagination."""

    kind: ClassVar[str] = "sql"
    #: What the catalog can report (used by the conformance suite).
    capabilities: ClassVar[frozenset[str]] = frozenset({"pk", "fk"})
    #: Whether the engine may read the next chunk on another thread while it
    #: transforms this one: the kind's connection may be used from one other
    #: thread at a time and its driver reads without holding the GIL.
    read_ahead: ClassVar[bool] = False

    def __init__(
        self,
        config: KindConfig,
        *,
        name: str = "connector",
        governor: Governor | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.governor = governor or Governor(name, config.governor)
        self.dialect: str | None = None
        self._conn: Any = None
        self._secrets: list[str] = []
        self._tables: dict[str, TableInfo] | None = None
        self._guard: Guard | None = None
        #: Called after every statement with a QueryEvent (the Django side
        #: writes the connector's query log from it); never with values.
        self.on_query: Callable[[QueryEvent], None] | None = None

    # --------------------------------------------------------- to implement

    @abstractmethod
    def _open(self) -> Any:
        """Return a new read-only DB-API-like connection (secrets resolved here)."""

    @abstractmethod
    def _discover(self) -> list[TableInfo]:
        """Return the catalog (without row counts)."""

    def _can_write(self) -> bool | None:
        """Return whether the account could write (None: cannot tell)."""
        return None

    def _session_read_only(self) -> bool:
        return True

    def _server_version(self) -> str:
        return ""

    def _schema(self) -> str | None:
        return getattr(self.config, "schema_", None)

    def _execute(
        self,
        sql: str,
        what: str,
        batch: int,
        types: Sequence[pa.DataType | None] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Run one guarded statement and yield frames of up to ``batch`` rows."""
        cur = self._conn.cursor()
        try:
            cur.execute(sql)
            names = [d[0] for d in cur.description]
            if types is None:
                types = self._result_types(cur.description)
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                yield frame_from_rows(rows, names, types)
        finally:
            with suppress(Exception):  # a cancelled cursor may refuse to close
                cur.close()

    def _result_types(self, description: Sequence[Any]) -> list[pa.DataType | None]:
        mapping: dict[Any, pa.DataType] = {
            int: pa.int64(),
            float: pa.float64(),
            str: pa.string(),
            bool: pa.bool_(),
        }
        return [mapping.get(d[1]) for d in description]

    def _cancel(self) -> None:  # noqa: B027 - optional hook
        """Cancel the running statement at the server (called from a timer thread)."""

    def _end_transaction(self) -> None:
        """End the read-only transaction (rollback: nothing to commit)."""
        with suppress(Exception):  # a broken connection has nothing to end
            self._conn.rollback()

    def _begin(self, what: str) -> None:  # noqa: B027 - optional hook
        """Start a read-only transaction with the server-side timeout, if any."""

    # ------------------------------------------------------------ plumbing

    @property
    def guard(self) -> Guard:
        """The guard for this source (dialect + optional table allow-list)."""
        if self._guard is None:
            self._guard = Guard(self.dialect, allowed_tables=self.config.allowed_tables)
        return self._guard

    def _problem(self, exc: BaseException, op: str) -> EngineError:
        """Return a classified, redacted error naming the connector and operation."""
        if isinstance(exc, EngineError):
            return exc
        text = scrub(f"{type(exc).__name__}: {exc}", self._secrets)
        text = " ".join(text.split())[:500]
        msg = f"{self.kind} connector {self.name!r}: {op} failed: {text}"
        return (TransientError if self._is_transient(exc) else TerminalError)(msg)

    def _is_transient(self, exc: BaseException) -> bool:
        t = f"{type(exc).__name__} {exc}".lower()
        if any(
            k in t
            for k in (
                "password",
                "authenticat",
                "access denied",
                "no such table",
                "does not exist",
                "syntax",
                "permission",
                "not found",
            )
        ):
            return False
        return any(
            k in t
            for k in (
                "timeout",
                "timed out",
                "connection refused",
                "could not connect",
                "connection reset",
                "broken pipe",
                "server closed",
                "lost connection",
                "communication link",
                "connection is closed",
                "unable to connect",
                "network",
                "08001",
                "08s01",
                "can't connect",
                "connect to",
            )
        )

    def _call(self, op: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except EngineError:
            raise
        except Exception as exc:
            err = self._problem(exc, op)
        # Raised outside the except block: the driver's exception (which may
        # quote a connection string) is not chained as __context__.
        raise err

    def connect(self) -> SqlSource:
        """Open the read-only connection if needed; raises Terminal/TransientError."""
        if self._conn is None:
            self._conn = self._call("connect", self._open)
        return self

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):  # already closed by the server
                conn.close()

    def __enter__(self) -> SqlSource:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # The config's secrets are SecretStr, so this never shows them.
        return f"<{type(self).__name__} {self.name!r} {self.config!r}>"

    def _stream(
        self,
        sql: str,
        what: str,
        *,
        batch: int,
        catalog: bool = False,
        types: Sequence[pa.DataType | None] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Guard, govern and run one statement, yielding frames as they arrive."""
        started = time.monotonic()
        rows = 0
        outcome, message = "ok", ""
        stmt = sql
        try:
            guard = self.guard.with_catalog() if catalog else self.guard
            stmt = guard.check(sql).sql
            self.connect()
            err: EngineError | None = None
            with self.governor.slot(what):
                try:
                    with self.governor.deadline(what, self._cancel):
                        self._begin(what)
                        for frame in self._execute(stmt, what, batch, types):
                            rows += len(frame)
                            yield frame
                except EngineError:
                    raise
                except Exception as exc:
                    err = self._problem(exc, what)
                finally:
                    self._end_transaction()
            if err is not None:
                # Raised outside the except block: the driver's exception (which
                # may quote a connection string) is not chained as __context__.
                raise err
        except ReadOnlyViolation as exc:
            outcome, message = "refused", str(exc)
            raise
        except TransientError as exc:
            outcome = "timeout" if "timeout" in type(exc).__name__.lower() else "error"
            message = str(exc)
            raise
        except EngineError as exc:
            outcome, message = "error", str(exc)
            raise
        finally:
            if self.on_query is not None:
                with suppress(Exception):  # the query log must never break a read
                    self.on_query(
                        QueryEvent(
                            statement=stmt,
                            purpose=what,
                            rows=rows,
                            duration_ms=int((time.monotonic() - started) * 1000),
                            outcome=outcome,
                            message=scrub(message, self._secrets)[:500],
                        )
                    )

    def _run(
        self,
        sql: str,
        what: str,
        *,
        batch: int,
        catalog: bool = False,
        max_rows: int | None = None,
        types: Sequence[pa.DataType | None] | None = None,
    ) -> list[pd.DataFrame]:
        """Run one statement with retry; return its frames (bounded by max_rows)."""

        def attempt() -> list[pd.DataFrame]:
            out: list[pd.DataFrame] = []
            rows = 0
            with closing(
                self._stream(sql, what, batch=batch, catalog=catalog, types=types)
            ) as frames:
                for frame in frames:
                    out.append(frame)
                    rows += len(frame)
                    if max_rows is not None and rows >= max_rows:
                        break
            return out

        return self.governor.retry(attempt, what)

    # ----------------------------------------------------------- SQL build

    def _table_expr(self, table: str) -> exp.Table:
        schema = self._schema()
        return exp.Table(
            this=exp.to_identifier(table, quoted=True),
            db=exp.to_identifier(schema, quoted=True) if schema else None,
        )

    def _col(self, name: str) -> exp.Column:
        return exp.Column(this=exp.to_identifier(name, quoted=True))

    def _sql(self, tree: exp.Expression) -> str:
        return tree.sql(dialect=self.dialect)

    def _table_info(self, table: str) -> TableInfo:
        tables = self._tables_by_name()
        info = tables.get(table)
        if info is None:
            self._tables = None  # the catalog may have changed: look again
            info = self._tables_by_name().get(table)
        if info is None:
            raise TerminalError(
                f"{self.kind} connector {self.name!r}: table {table!r} not found"
            )
        return info

    def _tables_by_name(self) -> dict[str, TableInfo]:
        if self._tables is None:
            self.connect()
            found = self._call("discover", self._discover)
            self._tables = {t.name: t for t in found}
        return self._tables

    def _types(
        self, info: TableInfo, columns: Sequence[str]
    ) -> list[pa.DataType | None]:
        by = {c.name: c.type for c in info.columns}
        return [arrow_type_for(by.get(c, "")) for c in columns]

    # ------------------------------------------------------------- public

    def check(self) -> CheckResult:
        """Return reachability, auth and read-only status (never raises for a bad source)."""
        t0 = time.monotonic()
        try:
            self.connect()
            server = self._call("check", self._server_version)
            can_write = self._call("check", self._can_write)
            ro = self._call("check", self._session_read_only)
        except EngineError as exc:
            msg = str(exc)
            auth = not any(
                k in msg.lower() for k in ("password", "authenticat", "denied")
            )
            reachable = isinstance(exc, TerminalError) and auth
            return CheckResult(
                connector=self.name,
                kind=self.kind,
                ok=False,
                reachable=reachable,
                authenticated=False,
                can_write=None,
                read_only_session=False,
                latency_ms=round((time.monotonic() - t0) * 1000, 1),
                problems=(msg,),
            )
        problems = []
        if can_write:
            problems.append(
                "the account can write: use a SELECT-only account for sources"
            )
        return CheckResult(
            connector=self.name,
            kind=self.kind,
            ok=True,
            reachable=True,
            authenticated=True,
            can_write=can_write,
            read_only_session=ro,
            server=server,
            latency_ms=round((time.monotonic() - t0) * 1000, 1),
            problems=tuple(problems),
        )

    def check_target(self) -> CheckResult:
        """Return the check of this connector used as a target.

        A source must be SELECT-only; a target must be able to write (the
        first run creates its schema and tables, so their absence is fine).
        """
        res = self.check()
        if not res.ok:
            return res
        problems = []
        if res.can_write is False:
            problems.append(
                "the account cannot write: a target needs CREATE on its schema "
                "(or on the database, to create the schema)"
            )
        return replace(res, problems=tuple(problems))

    def discover(self) -> list[TableInfo]:
        """Return tables, columns, types, keys and exact row counts."""
        self._tables = None
        tables = list(self._tables_by_name().values())
        out = []
        for t in tables:
            out.append(
                TableInfo(
                    name=t.name,
                    columns=t.columns,
                    primary_key=t.primary_key,
                    foreign_keys=t.foreign_keys,
                    row_count=self.count(t.name),
                )
            )
        self._tables = {t.name: t for t in out}
        return sorted(out, key=lambda t: t.name)

    def count(self, table: str) -> int:
        """Return the number of rows of ``table``; raises TerminalError if missing."""
        self._table_info(table)
        q = exp.select(exp.Count(this=exp.Star())).from_(self._table_expr(table))
        frames = self._run(self._sql(q), "count", batch=1)
        return int(frames[0].iat[0, 0])

    def sample(self, table: str, n: int = 100, page: int = 0) -> pd.DataFrame:
        """Return page ``page`` (0-based) of ``n`` rows, ordered by the key if any."""
        info = self._table_info(table)
        n = self.governor.row_cap(n)
        cols = [c.name for c in info.columns]
        q = exp.select(*[self._col(c) for c in cols]).from_(self._table_expr(table))
        order = info.primary_key or (cols[0],)
        q = q.order_by(*[exp.Ordered(this=self._col(c)) for c in order]).limit(n)
        if page:
            q = q.offset(int(page) * n)
        types = self._types(info, cols)
        frames = self._run(self._sql(q), "sample", batch=n, max_rows=n, types=types)
        return self._concat(frames, cols, types).head(n)

    def query(self, sql: str, max_rows: int | None = None) -> pd.DataFrame:
        """Return the rows of a guarded ad-hoc SELECT, truncated at the row cap."""
        cap = self.governor.row_cap(max_rows)
        frames = self._run(sql, "query", batch=min(cap, 10_000) or 1, max_rows=cap + 1)
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if len(df) > cap:
            self.governor.note_truncated("query", cap)
            df = df.head(cap)
        return df

    def profile(self, table: str, max_rows: int | None = None) -> TableProfile:
        """Return per-column statistics of ``table`` (streamed, bounded memory)."""
        info = self._table_info(table)
        cols = [c.name for c in info.columns]
        types = {c.name: c.type for c in info.columns}
        prof = Profiler(table, types)
        capped = False
        if len(info.primary_key) == 1:
            seen = 0
            for frame in self.read_chunks(table, cols, info.primary_key[0]):
                if max_rows is not None and seen + len(frame) > max_rows:
                    frame = frame.head(max_rows - seen)
                    capped = True
                prof.add(frame)
                seen += len(frame)
                if capped:
                    break
        else:
            # No single-column key to page on: one streamed statement.
            q = exp.select(*[self._col(c) for c in cols]).from_(self._table_expr(table))
            seen = 0
            with closing(
                self._stream(
                    self._sql(q),
                    "profile",
                    batch=self.governor.page_size(None),
                    types=self._types(info, cols),
                )
            ) as frames:
                for frame in frames:
                    if max_rows is not None and seen + len(frame) > max_rows:
                        frame = frame.head(max_rows - seen)
                        capped = True
                    prof.add(frame)
                    seen += len(frame)
                    if capped:
                        break
        return prof.result(capped=capped)

    def read_chunks(
        self,
        table: str,
        columns: Sequence[str],
        order_key: str,
        after_key: Any | None = None,
        chunk_size: int = 50_000,
        upto_key: Any | None = None,
    ) -> Iterator[pd.DataFrame]:
        """Yield DataFrames ordered by ``order_key`` (keyset pages, never OFFSET)."""
        info = self._table_info(table)
        known = {c.name for c in info.columns}
        missing = [c for c in [*columns, order_key] if c not in known]
        if missing:
            raise TerminalError(
                f"{self.kind} connector {self.name!r}: unknown column(s) "
                f"{', '.join(missing)} in table {table!r}"
            )
        size = self.governor.page_size(chunk_size)
        cols = list(columns)
        select_cols = cols if order_key in cols else [*cols, order_key]
        types = self._types(info, select_cols)
        last = _native(after_key)
        upto = _native(upto_key)
        key = self._col(order_key)
        while True:
            q = exp.select(*[self._col(c) for c in select_cols]).from_(
                self._table_expr(table)
            )
            conds: list[exp.Expression] = []
            if last is not None:
                conds.append(exp.GT(this=key.copy(), expression=exp.convert(last)))
            if upto is not None:
                conds.append(exp.LTE(this=key.copy(), expression=exp.convert(upto)))
            if conds:
                q = q.where(exp.and_(*conds))
            q = q.order_by(exp.Ordered(this=key.copy())).limit(size)
            frames = self._run(self._sql(q), "read_chunks", batch=size, types=types)
            frame = self._concat(frames, select_cols, types)
            if frame.empty:
                return
            new_last = _native(frame[order_key].iloc[-1])
            if last is not None and new_last is not None and not new_last > last:
                raise TerminalError(
                    f"{self.kind} connector {self.name!r}: order key {order_key!r} of "
                    f"{table!r} did not advance (is it unique and sortable?)"
                )
            last = new_last
            yield frame[cols] if select_cols != cols else frame
            if len(frame) < size:
                return

    def _concat(
        self,
        frames: list[pd.DataFrame],
        cols: Sequence[str],
        types: Sequence[pa.DataType | None],
    ) -> pd.DataFrame:
        if not frames:
            return frame_from_rows([], cols, [t or pa.string() for t in types])
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        frame.columns = list(cols)
        return frame

    def sink(self) -> Any:
        """Return the target sink module for this kind; raises TerminalError if none."""
        raise TerminalError(
            f"{self.kind} connector {self.name!r}: no sink for this kind"
        )


def refuse(message: str) -> ReadOnlyViolation:
    """Return a ReadOnlyViolation (helper for kinds)."""
    return ReadOnlyViolation(message)
