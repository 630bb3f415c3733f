"""``sqlite`` kind: a SQLite file opened read-only (``mode=ro`` URI + query_only).

Keyset pages over the table's primary key are read through the ADBC SQLite
driver, which hands back Arrow columns without building a Python object per
value (about twice the rate of ``sqlite3`` + conversion). Everything else --
the catalog, counts, samples, profiles without a key, ad-hoc queries -- goes
through ``sqlite3``, whose statements the governor can interrupt. A key page
is bounded by its ``LIMIT`` over the key's index, so the one statement the
governor cannot interrupt (ADBC's SQLite driver has no cancel) cannot run
away. SQLite is dynamically typed: where a page's values do not fit one
type per column, the driver refuses the page and that page is read again
through ``sqlite3``, which keeps such values (as text if need be).

Framework-free: no Django import.
"""

from __future__ import annotations

import importlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
from pydantic import Field

from connectors.kinds import register
from connectors.kinds.base import CheckResult, KindConfig, SqlSource, to_pandas
from migration.engine.errors import TerminalError
from migration.engine.ports import ColumnInfo, ForeignKey, TableInfo

__all__ = ["SqliteConfig", "SqliteSource"]

log = logging.getLogger("pasportal.connectors")

try:  # pinned in requirements.txt; without it every read takes sqlite3
    import adbc_driver_sqlite.dbapi as _adbc
except ImportError:  # pragma: no cover - the product installs it
    _adbc = None


class SqliteConfig(KindConfig):
    """Config of a SQLite source (or embedded target)."""

    path: str = Field(min_length=1, description="path of the SQLite database file")
    busy_timeout_s: float = Field(5.0, ge=0, le=600)
    arrow_pages: bool = Field(
        True,
        description="read keyset pages over the primary key as Arrow (ADBC); "
        "false reads every statement through sqlite3",
    )


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class SqliteSource(SqlSource):
    """Read-only SQLite source."""

    kind = "sqlite"
    read_ahead = True  # check_same_thread=False; ADBC fetches without the GIL

    def __init__(self, config: SqliteConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.config: SqliteConfig = config
        self.dialect = "sqlite"
        self._arrow_conn: Any = None
        #: Column -> SQLite affinity, only while a key page is being fetched
        #: (per thread: the engine may read ahead on a thread of its own).
        self._local = threading.local()
        #: How many pages were read as Arrow / fell back to sqlite3.
        self.arrow_page_reads = 0
        self.arrow_page_fallbacks = 0

    def _uri(self) -> str:
        path = Path(self.config.path)
        if not path.is_file():
            raise TerminalError(
                f"sqlite connector {self.name!r}: database file {path} does not exist"
            )
        return f"file:{quote(str(path.resolve()))}?mode=ro"

    def _open(self) -> sqlite3.Connection:
        # mode=ro: the file cannot be written through this connection whatever
        # the statement; query_only: a second, engine-level refusal.
        uri = self._uri()
        conn = sqlite3.connect(
            uri,
            uri=True,
            timeout=self.config.busy_timeout_s,
            check_same_thread=False,  # interrupt() comes from the governor's timer
            isolation_level=None,
        )
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _cancel(self) -> None:
        if self._conn is not None:
            self._conn.interrupt()

    def close(self) -> None:
        """Close both connections (idempotent)."""
        conn, self._arrow_conn = self._arrow_conn, None
        if conn is not None:
            with suppress(Exception):
                conn.close()
        super().close()

    # ------------------------------------------------------ Arrow key pages

    def read_chunks(  # type: ignore[override]
        self,
        table: str,
        columns: Sequence[str],
        order_key: str,
        *args: Any,
        **kwargs: Any,
    ) -> Iterator[pd.DataFrame]:
        """Yield key pages as the base does; pages over the primary key come as Arrow."""
        info = self._table_info(table)
        arrow = (
            self.config.arrow_pages
            and _adbc is not None
            and info.primary_key == (order_key,)
        )
        affinity = {c.name: _affinity(c.type) for c in info.columns}
        pages = super().read_chunks(table, columns, order_key, *args, **kwargs)
        with closing(pages):
            while True:
                self._local.key_page = affinity if arrow else None
                try:
                    frame = next(pages)
                except StopIteration:
                    return
                finally:
                    self._local.key_page = None
                yield frame

    def _execute(
        self,
        sql: str,
        what: str,
        batch: int,
        types: Sequence[pa.DataType | None] | None = None,
    ) -> Iterator[pd.DataFrame]:
        key_page = getattr(self._local, "key_page", None)
        if key_page is not None and what == "read_chunks":
            page = self._arrow_page(sql)
            table = None if page is None else _fit(page, types, key_page)
            if table is not None:
                self.arrow_page_reads += 1
                frame = to_pandas(table)
                for start in range(0, len(frame), batch):  # none when empty
                    yield frame.iloc[start : start + batch].reset_index(drop=True)
                return
            self.arrow_page_fallbacks += 1
        yield from super()._execute(sql, what, batch, types)

    def _arrow_page(self, sql: str) -> pa.Table | None:
        """Return the page as Arrow, or None when its values do not fit one type."""
        if self._arrow_conn is None:
            self._arrow_conn = _adbc.connect(self._uri())
            cur = self._arrow_conn.cursor()
            try:
                cur.execute("PRAGMA query_only = ON")
            finally:
                cur.close()
        cur = self._arrow_conn.cursor()
        try:
            cur.execute(sql)
            table: pa.Table = cur.fetch_arrow_table()
        except Exception as exc:
            if "type mismatch" in str(exc).lower():
                log.info(
                    "connector=%s decision=arrow_page_fallback reason=mixed_types",
                    self.name,
                )
                return None
            raise
        finally:
            with suppress(Exception):
                cur.close()
        return table

    def _end_transaction(self) -> None:
        pass  # autocommit reads: nothing to end

    def _server_version(self) -> str:
        df = self._run("SELECT sqlite_version()", "check", batch=1, catalog=True)
        return f"SQLite {df[0].iat[0, 0]}"

    def _can_write(self) -> bool:
        return False  # mode=ro: this connection cannot write

    def check(self):  # type: ignore[override]
        """Return the check result, noting whether the file itself is writable."""
        res = super().check()
        if res.ok:
            res.details["file_writable"] = os.access(self.config.path, os.W_OK)
        return res

    def check_target(self) -> CheckResult:
        """Check the file as a target: writable, or creatable by the first run.

        Checks read through a read-only connection, so the account question
        is the file's (or, before the first run, its folder's) permission.
        """
        path = Path(self.config.path)
        writable = os.access(path if path.exists() else path.parent, os.W_OK)
        if path.exists():
            res = self.check()
            if not res.ok:
                return res
        else:
            res = CheckResult(
                connector=self.name,
                kind=self.kind,
                ok=path.parent.is_dir(),
                reachable=path.parent.is_dir(),
                authenticated=True,
                can_write=None,
                read_only_session=False,
                server="SQLite (the first run creates the file)",
            )
            if not res.ok:
                return replace(
                    res, problems=(f"no folder {str(path.parent)!r} for the target",)
                )
        problems = (
            () if writable else ("the target file or its folder is not writable",)
        )
        return replace(res, can_write=writable, problems=problems)

    def _discover(self) -> list[TableInfo]:
        names = self._run(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name",
            "discover",
            batch=10_000,
            catalog=True,
        )
        tables: list[TableInfo] = []
        for name in [n for f in names for n in f.iloc[:, 0].tolist()]:
            cols = self._run(
                f'SELECT name, type, "notnull", pk FROM pragma_table_info({_lit(name)}) '
                "ORDER BY cid",
                "discover",
                batch=10_000,
                catalog=True,
            )
            rows = [r for f in cols for r in f.itertuples(index=False)]
            pk = tuple(
                r[0] for r in sorted((r for r in rows if r[3]), key=lambda r: r[3])
            )
            columns = tuple(
                ColumnInfo(
                    name=str(r[0]),
                    type=str(r[1] or ""),
                    nullable=not bool(r[2]) and str(r[0]) not in pk,
                    primary_key=str(r[0]) in pk,
                )
                for r in rows
            )
            fks = self._run(
                f'SELECT id, seq, "table", "from", "to" FROM '
                f"pragma_foreign_key_list({_lit(name)}) ORDER BY id, seq",
                "discover",
                batch=10_000,
                catalog=True,
            )
            groups: dict[int, list[Any]] = {}
            for f in fks:
                for r in f.itertuples(index=False):
                    groups.setdefault(int(r[0]), []).append(r)
            foreign = tuple(
                ForeignKey(
                    columns=tuple(str(r[3]) for r in g),
                    ref_table=str(g[0][2]),
                    ref_columns=tuple(str(r[4]) for r in g),
                )
                for g in groups.values()
            )
            tables.append(
                TableInfo(
                    name=str(name),
                    columns=columns,
                    primary_key=pk,
                    foreign_keys=foreign,
                )
            )
        return tables

    def sink(self) -> Any:
        """Return ``connectors.sinks.sqlite`` (the embedded target); raises TerminalError."""
        try:
            return importlib.import_module("connectors.sinks.sqlite")
        except ModuleNotFoundError:
            raise TerminalError(
                "sqlite sink (connectors.sinks.sqlite) is not installed"
            ) from None


def _affinity(declared: str) -> str:
    """Return SQLite's column affinity for a declared type (its own rules, 3.1)."""
    d = (declared or "").upper()
    if "INT" in d:
        return "INTEGER"
    if any(k in d for k in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in d or not d:
        return "BLOB"
    if any(k in d for k in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _fit(
    table: pa.Table,
    types: Sequence[pa.DataType | None] | None,
    affinity: dict[str, str],
) -> pa.Table | None:
    """Return an Arrow page with the column types the sqlite3 path gives, or None.

    The driver infers one type per column and turns what does not fit it
    into text or bytes its own way (a REAL as ``2.500000e+00``, text beside
    a BLOB as bytes), where sqlite3's path keeps Python's forms. So a column
    is taken as the driver read it only where no value can have been
    converted: text only from a TEXT-affinity column (SQLite stores every
    value there as text), numbers only where the declared type is numeric
    or unknown. Anything else -- bytes, text from a column of another
    affinity -- returns None, and the page is read through sqlite3.
    """
    want_types = list(types) if types is not None else [None] * table.num_columns
    arrays = []
    for name, arr, want in zip(
        table.column_names, table.columns, want_types, strict=True
    ):
        if arr.null_count == len(arr):
            # No value to infer from: the declared type (as sqlite3's path);
            # undeclared, Arrow's null type (as sqlite3's path), or text when
            # the page is empty.
            target = want or (pa.null() if len(arr) else pa.string())
            if arr.type != target:
                arr = pa.chunked_array([pa.nulls(len(arr), target)])
        elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            if affinity.get(name) != "TEXT" or want not in (None, pa.string()):
                return None
            arr = arr.cast(pa.string())
        elif pa.types.is_integer(arr.type):
            if want is not None and pa.types.is_floating(want):
                arr = arr.cast(want)
            elif want not in (None, pa.int64()):
                return None
        elif pa.types.is_floating(arr.type):
            if want is not None and not (
                pa.types.is_floating(want) or pa.types.is_integer(want)
            ):
                return None
        else:
            return None  # bytes, or a type sqlite3 would not have given
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, names=table.column_names)


register("sqlite", SqliteConfig, SqliteSource, roles=("source", "target"))
