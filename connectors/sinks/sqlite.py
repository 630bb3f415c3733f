"""SQLite sink: the embedded target (WAL, one transaction per chunk)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from connectors.sinks.base import SqlSink, ident
from migration.engine.checksums import Hash32Sum
from migration.engine.errors import TerminalError, TransientError
from migration.engine.ports import StageTable

_TYPES = {"TEXT": "TEXT", "DATE": "TEXT", "TIMESTAMP": "TEXT", "BIGINT": "INTEGER"}


class SqliteSink(SqlSink):
    """Stage, checkpoint and publish into one SQLite database file.

    WAL lets readers keep reading the published tables while a run loads;
    ``synchronous=NORMAL`` in WAL mode keeps every committed chunk across a
    killed process. Foreign keys are declared against the final table names
    and ``legacy_alter_table=ON`` keeps renames from rewriting them, so after
    the swap they point at the new tables (enforcement stays off: the engine
    checks references itself before publishing).
    """

    ph = "?"

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        """Open (create) the target database at ``path``."""
        self.path = str(path)
        self.conn = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=OFF")
        self.conn.execute("PRAGMA legacy_alter_table=ON")
        self.conn.create_aggregate("pas_hash32_sum", 1, Hash32Sum)
        self._depth = 0
        self.create_control_tables()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Run the body in one IMMEDIATE transaction (nested calls join it)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransientError(f"sqlite target busy: {exc}") from exc
        self._depth = 1
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute one statement; return the affected row count."""
        cur = self.conn.execute(sql, tuple(params))
        return cur.rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Return all rows of one query."""
        return list(self.conn.execute(sql, tuple(params)).fetchall())

    def insert_frame(self, table: str, frame: pd.DataFrame) -> None:
        """Insert a frame with executemany (NA -> NULL)."""
        cols = list(frame.columns)
        obj = frame.astype(object)
        obj = obj.where(frame.notna(), None)
        sql = (
            f"INSERT INTO {ident(table)} ({', '.join(ident(c) for c in cols)}) "
            f"VALUES ({', '.join('?' for _ in cols)})"
        )
        try:
            self.conn.executemany(sql, obj.itertuples(index=False, name=None))
        except sqlite3.IntegrityError as exc:
            raise TerminalError(f"duplicate rows into {table}: {exc}") from exc

    def checksum_expr(self, column: str) -> str:
        """Return the SQL checksum sum of ``column`` (an aggregate in Python)."""
        return f"COALESCE(pas_hash32_sum(CAST({column} AS TEXT)), 0)"

    def column_type(self, sql_type: str) -> str:
        """Return the SQLite affinity of an engine SQL type."""
        return _TYPES.get(sql_type, "TEXT")

    def create_staging(self, run_id: str, table: StageTable) -> None:
        """Create a staging table whose FKs name the final tables (see class doc)."""
        fks = {fk.columns[0]: fk for fk in table.foreign_keys}
        parts = []
        for c in table.columns:
            ddl = f"{ident(c.name)} {self.column_type(c.sql_type)}"
            fk = fks.get(c.name)
            if fk is not None:
                ddl += f" REFERENCES {ident(fk.ref_table)} ({ident(fk.ref_columns[0])})"
            parts.append(ddl)
        name = ident(self.staged_name(run_id, table.name))
        self.execute(f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(parts)})")

    def table_exists(self, name: str) -> bool:
        """Return True when table ``name`` exists."""
        return bool(
            self.query(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
            )
        )

    def swap(self, run_id: str, tables: Sequence[str]) -> None:
        """Rename old tables away, staging into place, drop the old ones."""
        old = []
        for t in tables:
            if self.table_exists(t):
                o = f"_old_{self.staged_name(run_id, t)[5:]}"
                self.execute(f"ALTER TABLE {ident(t)} RENAME TO {ident(o)}")
                old.append(o)
        for t in tables:
            self.execute(
                f"ALTER TABLE {ident(self.staged_name(run_id, t))} RENAME TO {ident(t)}"
            )
        for o in old:
            self.execute(f"DROP TABLE {ident(o)}")
