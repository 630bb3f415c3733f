"""PostgreSQL sink: COPY into run-scoped staging, atomic rename publish.

The connection runs with ``autocommit=True`` and every chunk is one explicit
``with conn.transaction()``: without autocommit psycopg 3 turns that block
into a savepoint of an implicit transaction that only commits at close, and
a killed worker would lose every "committed" chunk (QUALITY.md, traps).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import psycopg
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.csv as pacsv  # type: ignore[import-untyped, unused-ignore]

from connectors.sinks.base import REJECTS, SqlSink, ident
from migration.engine.checksums import PG_HASH32
from migration.engine.errors import TerminalError, TransientError
from migration.engine.ports import REJECT_COLUMNS, StagedStep, StageTable

_TEXT = "string[pyarrow]"


def _copy_payload(frame: pd.DataFrame) -> bytes:
    """Return ``frame`` as COPY CSV: strings quoted, NULL as an unquoted empty.

    Written by Arrow's C++ CSV writer, not row by row: with ``quoting_style
    needed`` every string is quoted (so ``""`` stays an empty string, and
    tabs, newlines, quotes and backslashes travel as data) and a NULL is an
    empty unquoted field, which COPY's CSV format reads as NULL.
    """
    cols: dict[str, Any] = {}
    for c in frame.columns:
        s = frame[c]
        if pd.api.types.is_integer_dtype(s.dtype):
            cols[str(c)] = pa.array(s, type=pa.int64(), from_pandas=True)
        else:
            t = s.astype(_TEXT) if s.dtype != _TEXT else s
            cols[str(c)] = pa.array(t, type=pa.large_string(), from_pandas=True)
    table = pa.table(cols)
    sink = pa.BufferOutputStream()
    pacsv.write_csv(
        table,
        sink,
        pacsv.WriteOptions(include_header=False, quoting_style="needed"),
    )
    return bytes(sink.getvalue().to_pybytes())


class EncodedRows:
    """A frame already encoded as the COPY payload (see ``encode_rows``)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.columns = [str(c) for c in frame.columns]
        self.payload = _copy_payload(frame) if len(frame) else b""
        self.rows = len(frame)

    def __len__(self) -> int:
        return self.rows


class PostgresSink(SqlSink):
    """Stage, checkpoint and publish into one schema of a PostgreSQL database.

    ``unlogged=True`` stages into UNLOGGED tables (faster COPY) and sets them
    LOGGED inside the publish transaction; a server crash empties unlogged
    tables, which the engine detects on resume (staged count != checkpoint)
    and answers by restarting that table.
    """

    ph = "%s"
    #: The engine may commit chunk N on a writer thread while it transforms
    #: chunk N+1 (psycopg connections may be shared between threads; the
    #: engine never uses this one from two threads at once).
    write_behind = True

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        unlogged: bool = False,
        connect_timeout: int = 10,
    ) -> None:
        """Connect (autocommit) and create the schema and control tables."""
        self.schema = schema
        self.unlogged = unlogged
        # Kept for ``clone`` only, in memory like the connection itself: the
        # connection string can hold the password, so it is never printed.
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self.conn = self._connect()
        self._depth = 0
        self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}")
        self.create_control_tables()

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=self._connect_timeout
            )
        except psycopg.OperationalError as exc:
            # No driver text: it can carry the connection string.
            raise TransientError("cannot connect to the PostgreSQL target") from exc
        conn.execute("SET DateStyle = 'ISO, YMD'")
        conn.execute("SET TimeZone = 'UTC'")
        return conn

    def clone(self) -> PostgresSink:
        """Return this sink on a connection of its own (same target and schema).

        The engine runs the cross-table phases of tables that share nothing
        side by side, one connection each: the server's work is what that
        phase waits on, and one connection uses one of its cores. Close the
        clone when done.
        """
        other = copy.copy(self)
        other.conn = self._connect()
        other._depth = 0
        return other

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the body in ONE real transaction (autocommit connection)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            with self.conn.transaction():
                yield
        except psycopg.errors.UniqueViolation as exc:
            raise TerminalError(f"duplicate rows refused by the target: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise TransientError(
                f"PostgreSQL target failed: {type(exc).__name__}"
            ) from exc
        finally:
            self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute one statement; return the affected row count."""
        cur = self.conn.execute(sql, tuple(params) or None)  # type: ignore[call-overload]
        return int(cur.rowcount)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Return all rows of one query."""
        cur = self.conn.execute(sql, tuple(params) or None)  # type: ignore[call-overload]
        return list(cur.fetchall())

    def qualified(self, name: str) -> str:
        """Return ``"schema"."name"``."""
        return f"{ident(self.schema)}.{ident(name)}"

    def encode_rows(self, frame: pd.DataFrame) -> EncodedRows:
        """Return a chunk's rows encoded for COPY, ahead of their commit.

        The engine calls this on a thread of its own (beside the checksums)
        so that the writer thread only streams bytes and commits: building
        the payload no longer waits for the previous chunk's COPY, nor the
        COPY for the payload.
        """
        return EncodedRows(frame)

    def insert_frame(self, table: str, frame: pd.DataFrame | EncodedRows) -> None:
        """COPY a frame (or its encoded rows) into ``table`` (current transaction)."""
        enc = frame if isinstance(frame, EncodedRows) else EncodedRows(frame)
        cols = ", ".join(ident(c) for c in enc.columns)
        with self.conn.cursor() as cur:
            with cur.copy(
                f"COPY {self.qualified(table)} ({cols}) FROM STDIN (FORMAT csv)"
            ) as cp:
                cp.write(enc.payload)

    def checksum_expr(self, column: str) -> str:
        """Return the SQL checksum sum of ``column`` (the server's ``hashtext``)."""
        value = PG_HASH32.format(f"CAST({column} AS TEXT)")
        return f"COALESCE(SUM({value}), 0)"

    def create_staging(self, run_id: str, table: StageTable) -> None:
        """Create one staging table (UNLOGGED if configured), no indexes."""
        cols = ", ".join(f"{ident(c.name)} {c.sql_type}" for c in table.columns)
        kind = "UNLOGGED TABLE" if self.unlogged else "TABLE"
        name = self.qualified(self.staged_name(run_id, table.name))
        self.execute(f"CREATE {kind} IF NOT EXISTS {name} ({cols})")

    def table_exists(self, name: str) -> bool:
        """Return True when ``schema.name`` exists."""
        row = self.query("SELECT to_regclass(%s)", (self.qualified(name),))
        return row[0][0] is not None

    def apply_staged_steps(
        self, run_id: str, table: str, steps: Sequence[StagedStep]
    ) -> Any:
        """Analyze the freshly loaded staging table, then run the phase."""
        if self.marker(run_id, f"xt:{table}") is not None:
            return super().apply_staged_steps(run_id, table, steps)
        # Planner statistics for the anti-joins and window scans (here and in
        # the phase's own ANALYZE steps): row counts and rough distinct counts
        # are all those plans need, so a small sample (statistics target 10:
        # 3,000 rows instead of 30,000) keeps ANALYZE ~10x cheaper. Autovacuum
        # refines the published tables' statistics later.
        self.execute("SET default_statistics_target = 10")
        try:
            staged = self.staged_name(run_id, table)
            if self.table_exists(staged):
                self.execute(f"ANALYZE {self.qualified(staged)}")
            return super().apply_staged_steps(run_id, table, steps)
        finally:
            self.execute("RESET default_statistics_target")

    def drop_column(self, table_sql: str, column: str) -> None:
        """Drop a column of a staged table (a lookup's rewrite may have dropped it)."""
        self.execute(f"ALTER TABLE {table_sql} DROP COLUMN IF EXISTS {ident(column)}")

    def resolve_lookup(
        self, run_id: str, table: str, step: StagedStep, names: Mapping[str, str]
    ) -> None:
        """Resolve a lookup by rewriting the staged table, not by UPDATE.

        An UPDATE writes a new version of every row and leaves the old ones
        dead: the table doubles, and the unique indexes, checks, publish,
        reconciliation and checksums that follow read both. A new table
        filled by one INSERT ... SELECT with the parent joined in is written
        once, compact, without the lookup column, and takes the old one's
        name in the same transaction (no index, constraint or reference to
        the staged table exists yet at this point of the phase). A match
        column that is not unique in the parent would multiply rows: the
        row count is checked, and a difference fails the phase (rolled back).
        """
        field, lkc = step.columns
        match, take = step.ref_columns
        name = self.staged_name(run_id, table)
        me = self.qualified(name)
        new = self.qualified(f"{name[:56]}_lookup")
        cols = [
            (str(c), str(t))
            for c, t in self.query(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
                "ORDER BY attnum",
                (me,),
            )
            if c != lkc
        ]
        kind = "UNLOGGED TABLE" if self.unlogged else "TABLE"
        self.execute(
            f"CREATE {kind} {new} ("
            + ", ".join(f"{ident(c)} {t}" for c, t in cols)
            + ")"
        )
        r_match, r_take = f"r.{ident(match)}", f"r.{ident(take)}"
        picked = [
            f"CASE WHEN {r_match} IS NOT NULL THEN {r_take} ELSE c.{ident(c)} END"
            if c == field
            else f"c.{ident(c)}"
            for c, _ in cols
        ]
        copied = self.execute(
            f"INSERT INTO {new} ({', '.join(ident(c) for c, _ in cols)}) "
            f"SELECT {', '.join(picked)} FROM {me} c "
            f"LEFT JOIN {names[step.ref_table]} r ON {r_match} = c.{ident(lkc)}"
        )
        had = int(self.query(f"SELECT COUNT(*) FROM {me}")[0][0])
        if copied != had:
            raise TerminalError(
                f"{table}: the lookup of {field} in {step.ref_table} matched "
                f"several {step.ref_table} rows for one {lkc} ({copied} rows "
                f"from {had}); its match column {match!r} must be unique there"
            )
        self.execute(f"DROP TABLE {me}")
        self.execute(f"ALTER TABLE {new} RENAME TO {ident(name)}")

    def add_foreign_key(self, run_id: str, table: str, step: StagedStep) -> None:
        """Add the FK between staging tables (renames keep it pointing right)."""
        me = self.qualified(self.staged_name(run_id, table))
        parent = self.qualified(self.staged_name(run_id, step.ref_table))
        name = ident(f"{self.staged_name(run_id, table)}_{step.columns[0]}_fk"[:63])
        cols = ", ".join(ident(c) for c in step.columns)
        refs = ", ".join(ident(c) for c in step.ref_columns)
        self.execute(
            f"ALTER TABLE {me} ADD CONSTRAINT {name} FOREIGN KEY ({cols}) "
            f"REFERENCES {parent} ({refs})"
        )

    def swap(self, run_id: str, tables: Sequence[str]) -> None:
        """Rename old tables away and staging into place; drop the old ones.

        All in the caller's transaction: readers block on the ACCESS
        EXCLUSIVE locks for the instant of the swap, then see the new tables.
        """
        if self.unlogged:
            for t in tables:  # parents first: a logged table cannot reference
                self.execute(  # an unlogged one
                    f"ALTER TABLE {self.qualified(self.staged_name(run_id, t))} "
                    "SET LOGGED"
                )
        old = []
        for t in tables:
            if self.table_exists(t):
                o = f"_old_{self.staged_name(run_id, t)[5:]}"
                self.execute(f"ALTER TABLE {self.qualified(t)} RENAME TO {ident(o)}")
                old.append(o)
        for t in tables:
            self.execute(
                f"ALTER TABLE {self.qualified(self.staged_name(run_id, t))} "
                f"RENAME TO {ident(t)}"
            )
        for o in old:
            self.execute(f"DROP TABLE {self.qualified(o)} CASCADE")

    def export_rejects(self, run_id: str, path: str) -> int:
        """Stream the run's rejects to a CSV file with COPY TO; return rows."""
        cols = ", ".join(REJECT_COLUMNS)
        sql = (
            f"COPY (SELECT {cols} FROM {self.qualified(REJECTS)} WHERE run_id = "
            f"{psycopg.sql.quote(run_id)} ORDER BY target_table, action, source_key) "
            "TO STDOUT WITH (FORMAT csv, HEADER true)"
        )
        lines = 0
        with open(path, "wb") as fh, self.conn.cursor() as cur:
            with cur.copy(sql) as cp:
                for block in cp:
                    fh.write(block)
                    lines += bytes(block).count(b"\n")
        return max(lines - 1, 0)

    def drop_schema(self) -> None:
        """Drop the whole target schema (tests and throwaway targets)."""
        self.execute(f"DROP SCHEMA IF EXISTS {ident(self.schema)} CASCADE")
