"""Shared SQL of the sinks: control tables, cross-table steps, reconciliation.

Subclasses provide a connection, a transaction context, the bulk insert of a
chunk, the checksum expression and the publish swap; everything else is
portable SQL that runs on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import csv
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from migration.engine.checksums import SCHEME
from migration.engine.errors import TerminalError
from migration.engine.ports import (
    REJECT_COLUMNS,
    WHOLE_TABLE,
    Checkpoint,
    StagedStep,
    StageTable,
)

CHECKPOINTS = "_pas_checkpoints"
MARKERS = "_pas_markers"
REJECTS = "_pas_rejects"
PUBLISHED = "published"


def run_hash(run_id: str) -> str:
    """Return a short identifier-safe hash of a run id (staging names)."""
    return hashlib.sha256(run_id.encode("utf-8")).hexdigest()[:10]


def ident(name: str) -> str:
    """Return ``name`` double-quoted as an SQL identifier."""
    if not name or "\x00" in name:
        raise TerminalError("empty or NUL identifier")
    return '"' + name.replace('"', '""') + '"'


def jdump(data: Any) -> str:
    """Return compact JSON."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)


class _StagedNames(dict[str, str]):
    """``{table}`` -> quoted staged table name, for any table of the run."""

    def __init__(self, sink: SqlSink, run_id: str) -> None:
        super().__init__()
        self.sink = sink
        self.run_id = run_id

    def __missing__(self, key: str) -> str:
        return self.sink.qualified(self.sink.staged_name(self.run_id, key))


class SqlSink(ABC):
    """Base class: the Sink port over a DB-API connection (see subclasses)."""

    #: DB-API parameter placeholder of the driver
    ph = "?"

    # -- to be provided by subclasses ---------------------------------------
    @abstractmethod
    def transaction(self) -> AbstractContextManager[Any]:
        """Return a context manager running its body in ONE transaction."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute one statement; return the affected row count."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Return all rows of one query."""

    @abstractmethod
    def insert_frame(self, table: str, frame: pd.DataFrame) -> None:
        """Bulk insert a frame into ``table`` (inside the current transaction)."""

    @abstractmethod
    def checksum_expr(self, column: str) -> str:
        """Return the SQL aggregate of the checksum sum of ``column``."""

    def qualified(self, name: str) -> str:
        """Return the quoted, schema-qualified name of a table."""
        return ident(name)

    def column_type(self, sql_type: str) -> str:
        """Return the DDL type of an engine SQL type."""
        return sql_type

    def add_foreign_key(  # noqa: B027 (an optional hook: SQLite has no ALTER ADD FK)
        self, run_id: str, table: str, step: StagedStep
    ) -> None:
        """Add a foreign key to a staged table (no-op where unsupported)."""

    def drop_column(self, table_sql: str, column: str) -> None:
        """Drop a column of a staged table."""
        self.execute(f"ALTER TABLE {table_sql} DROP COLUMN {ident(column)}")

    def resolve_lookup(
        self, run_id: str, table: str, step: StagedStep, names: Mapping[str, str]
    ) -> None:
        """Set a staged field from its parent row (a ``resolve`` step), by UPDATE."""
        field, lkc = step.columns
        match, take = step.ref_columns
        me = names[table]
        self.execute(
            f"UPDATE {me} SET {ident(field)} = r.{ident(take)} "
            f"FROM {names[step.ref_table]} r WHERE r.{ident(match)} = {me}.{ident(lkc)}"
        )

    @abstractmethod
    def swap(self, run_id: str, tables: Sequence[str]) -> None:
        """Rename staging into place (inside the publish transaction)."""

    @abstractmethod
    def table_exists(self, name: str) -> bool:
        """Return True when a table ``name`` exists."""

    # -- names ----------------------------------------------------------------
    def staged_name(self, run_id: str, table: str) -> str:
        """Return the run-scoped staging table name of ``table``."""
        return f"_stg_{run_hash(run_id)}_{table}"

    def q(self, sql: str) -> str:
        """Return ``sql`` with ``?`` placeholders in the driver's style."""
        return sql if self.ph == "?" else sql.replace("?", self.ph)

    # -- control tables -------------------------------------------------------
    def create_control_tables(self) -> None:
        """Create checkpoint, marker and reject tables if missing."""
        with self.transaction():
            self.execute(self._checkpoints_ddl(self.qualified(CHECKPOINTS)))
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {self.qualified(MARKERS)} ("
                "run_id TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL, "
                "PRIMARY KEY (run_id, name))"
            )
            cols = ", ".join(f"{c} TEXT" for c in REJECT_COLUMNS)
            self.execute(
                f"CREATE TABLE IF NOT EXISTS {self.qualified(REJECTS)} ({cols})"
            )
            # One record per (row, action, reason): a replayed chunk would fail
            # loudly here instead of double counting.
            self.execute(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {ident(REJECTS + '_uk')} ON "
                f"{self.qualified(REJECTS)} "
                "(run_id, target_table, source_key, action, reason)"
            )
        self._upgrade_checkpoints()

    @staticmethod
    def _checkpoints_ddl(name: str) -> str:
        """Return the DDL of the checkpoint table (one row per table range)."""
        return (
            f"CREATE TABLE IF NOT EXISTS {name} ("
            "run_id TEXT NOT NULL, table_name TEXT NOT NULL, "
            "range_id TEXT NOT NULL DEFAULT 'all', last_key TEXT, "
            "rows_read BIGINT NOT NULL, rows_loaded BIGINT NOT NULL, "
            "rows_rejected BIGINT NOT NULL, rows_excluded BIGINT NOT NULL, "
            "extra TEXT NOT NULL, PRIMARY KEY (run_id, table_name, range_id))"
        )

    def _checkpoint_columns(self) -> set[str]:
        """Return the column names of the checkpoint table."""
        if self.ph == "?":
            rows = self.query("SELECT name FROM pragma_table_info(?)", (CHECKPOINTS,))
        else:
            rows = self.query(
                self.q(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = ? AND table_name = ?"
                ),
                (getattr(self, "schema", "public"), CHECKPOINTS),
            )
        return {str(r[0]) for r in rows}

    def _upgrade_checkpoints(self) -> None:
        """Rebuild a checkpoint table of before key ranges (rows become range "all")."""
        if "range_id" in self._checkpoint_columns():
            return
        new = CHECKPOINTS + "_v2"
        cols = (
            "run_id, table_name, last_key, rows_read, rows_loaded, rows_rejected, "
            "rows_excluded, extra"
        )
        with self.transaction():
            self.execute(f"DROP TABLE IF EXISTS {self.qualified(new)}")
            self.execute(self._checkpoints_ddl(self.qualified(new)))
            self.execute(
                f"INSERT INTO {self.qualified(new)} ({cols}, range_id) "
                f"SELECT {cols}, 'all' FROM {self.qualified(CHECKPOINTS)}"
            )
            self.execute(f"DROP TABLE {self.qualified(CHECKPOINTS)}")
            self.execute(
                f"ALTER TABLE {self.qualified(new)} RENAME TO {ident(CHECKPOINTS)}"
            )

    def marker(self, run_id: str, name: str) -> dict[str, Any] | None:
        """Return the data of a run marker, or None."""
        rows = self.query(
            self.q(
                f"SELECT data FROM {self.qualified(MARKERS)} WHERE run_id = ? AND name = ?"
            ),
            (run_id, name),
        )
        return json.loads(rows[0][0]) if rows else None

    def set_marker(self, run_id: str, name: str, data: Mapping[str, Any]) -> None:
        """Insert a run marker (inside the caller's transaction)."""
        self.execute(
            self.q(
                f"INSERT INTO {self.qualified(MARKERS)} (run_id, name, data) VALUES (?, ?, ?)"
            ),
            (run_id, name, jdump(data)),
        )

    # -- Sink port ------------------------------------------------------------
    def prepare(self, run_id: str, tables: Sequence[Any]) -> None:
        """Create the run's staging tables if missing (keeps staged rows)."""
        if self.is_published(run_id):
            return
        with self.transaction():
            for t in tables:
                self.create_staging(run_id, t)

    def create_staging(self, run_id: str, table: StageTable) -> None:
        """Create one staging table without indexes (built after the load)."""
        cols = ", ".join(
            f"{ident(c.name)} {self.column_type(c.sql_type)}" for c in table.columns
        )
        name = self.qualified(self.staged_name(run_id, table.name))
        self.execute(f"CREATE TABLE IF NOT EXISTS {name} ({cols})")

    def checkpoint(self, run_id: str, table: str) -> Checkpoint | None:
        """Return the last committed checkpoint of ``table`` (range "all") in this run."""
        return self.range_checkpoint(run_id, table, WHOLE_TABLE)

    def range_checkpoint(
        self, run_id: str, table: str, range_id: str
    ) -> Checkpoint | None:
        """Return the last committed checkpoint of one key range of ``table``."""
        found = self._checkpoints(run_id, table, range_id)
        return found[0] if found else None

    def range_checkpoints(self, run_id: str, table: str) -> list[Checkpoint]:
        """Return the checkpoints of every key range of ``table``, by range id."""
        return self._checkpoints(run_id, table, None)

    def _checkpoints(
        self, run_id: str, table: str, range_id: str | None
    ) -> list[Checkpoint]:
        sql = (
            "SELECT last_key, rows_read, rows_loaded, rows_rejected, "
            f"rows_excluded, extra, range_id FROM {self.qualified(CHECKPOINTS)} "
            "WHERE run_id = ? AND table_name = ?"
        )
        params: tuple[Any, ...] = (run_id, table)
        if range_id is not None:
            sql += " AND range_id = ?"
            params += (range_id,)
        rows = self.query(self.q(sql + " ORDER BY range_id"), params)
        return [
            Checkpoint(
                run_id=run_id,
                table=table,
                last_key=json.loads(last) if last is not None else None,
                rows_read=int(r),
                rows_loaded=int(lo),
                rows_rejected=int(rj),
                rows_excluded=int(ex),
                extra=json.loads(extra),
                range_id=str(rid),
            )
            for last, r, lo, rj, ex, extra, rid in rows
        ]

    def store_checkpoint(self, run_id: str, table: str, checkpoint: Checkpoint) -> None:
        """Upsert the checkpoint of ``checkpoint.range_id`` (in the caller's transaction)."""
        params = (
            jdump(checkpoint.last_key),
            checkpoint.rows_read,
            checkpoint.rows_loaded,
            checkpoint.rows_rejected,
            checkpoint.rows_excluded,
            jdump(dict(checkpoint.extra)),
            run_id,
            table,
            checkpoint.range_id,
        )
        n = self.execute(
            self.q(
                f"UPDATE {self.qualified(CHECKPOINTS)} SET last_key = ?, "
                "rows_read = ?, rows_loaded = ?, rows_rejected = ?, "
                "rows_excluded = ?, extra = ? WHERE run_id = ? AND table_name = ? "
                "AND range_id = ?"
            ),
            params,
        )
        if n == 0:
            self.execute(
                self.q(
                    f"INSERT INTO {self.qualified(CHECKPOINTS)} (last_key, "
                    "rows_read, rows_loaded, rows_rejected, rows_excluded, "
                    "extra, run_id, table_name, range_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                params,
            )

    def write_chunk(
        self,
        run_id: str,
        table: str,
        rows: pd.DataFrame,
        rejects: pd.DataFrame,
        checkpoint: Checkpoint,
    ) -> None:
        """Stage rows and rejects and upsert the checkpoint in ONE transaction."""
        with self.transaction():
            if len(rows):
                self.insert_frame(self.staged_name(run_id, table), rows)
            if len(rejects):
                self.insert_frame(REJECTS, rejects[list(REJECT_COLUMNS)])
            self.store_checkpoint(run_id, table, checkpoint)

    def reset_table(self, run_id: str, table: str) -> None:
        """Drop a table's staged rows, rejects, checkpoint and phase marker."""
        with self.transaction():
            name = self.qualified(self.staged_name(run_id, table))
            if self.table_exists(self.staged_name(run_id, table)):
                self.execute(f"DELETE FROM {name}")
            self.execute(
                self.q(
                    f"DELETE FROM {self.qualified(REJECTS)} "
                    "WHERE run_id = ? AND target_table = ?"
                ),
                (run_id, table),
            )
            self.execute(
                self.q(
                    f"DELETE FROM {self.qualified(CHECKPOINTS)} "
                    "WHERE run_id = ? AND table_name = ?"
                ),
                (run_id, table),
            )
            self.execute(
                self.q(
                    f"DELETE FROM {self.qualified(MARKERS)} WHERE run_id = ? AND name = ?"
                ),
                (run_id, f"xt:{table}"),
            )

    def apply_staged_steps(
        self, run_id: str, table: str, steps: Sequence[StagedStep]
    ) -> Mapping[str, Any]:
        """Run a table's cross-table phase once, in one transaction."""
        done = self.marker(run_id, f"xt:{table}")
        if done is not None:
            return done
        names = _StagedNames(self, run_id)
        me = names[table]
        result: dict[str, Any] = {
            "moved": {},
            "flagged": {},
            "moved_checksums": {},
            "checksum_scheme": SCHEME,
        }
        with self.transaction():
            done = self.marker(run_id, f"xt:{table}")
            if done is not None:
                return done
            for i, step in enumerate(steps):
                if step.kind in ("reject", "flag"):
                    self._move(run_id, table, me, step, names, result)
                elif step.kind == "update":
                    self.execute(step.sql.format_map(names))
                elif step.kind == "resolve":
                    self.resolve_lookup(run_id, table, step, names)
                elif step.kind == "unique_index":
                    idx = ident(f"{self.staged_name(run_id, table)}_u{i}"[:60])
                    cols = ", ".join(ident(c) for c in step.columns)
                    self.execute(
                        f"CREATE UNIQUE INDEX IF NOT EXISTS {idx} ON {me} ({cols})"
                    )
                elif step.kind == "drop_column":
                    for c in step.columns:
                        self.drop_column(me, c)
                elif step.kind == "foreign_key":
                    self.add_foreign_key(run_id, table, step)
                else:
                    raise TerminalError(f"unknown staged step kind {step.kind!r}")
            self.set_marker(run_id, f"xt:{table}", result)
        return result

    def _move(
        self,
        run_id: str,
        table: str,
        me: str,
        step: StagedStep,
        names: _StagedNames,
        result: dict[str, Any],
    ) -> None:
        """Reject (move out of staging) or flag the rows ``step.sql`` selects."""
        tmp = self.temp_name()
        self.execute(f"DROP TABLE IF EXISTS {tmp}")
        self.execute(f"CREATE TEMP TABLE {tmp} (k TEXT PRIMARY KEY, st TEXT, raw TEXT)")
        self.execute(
            f"INSERT INTO {tmp} (k, st, raw) SELECT CAST(q1 AS TEXT), MIN(q2), "
            f"MIN(CAST(q3 AS TEXT)) FROM ("
            f"SELECT * FROM ({step.sql.format_map(names)}) q0(q1, q2, q3)"
            ") z GROUP BY q1"
            if self.ph != "?"
            else f"INSERT INTO {tmp} (k, st, raw) SELECT CAST(q1 AS TEXT), MIN(q2), "
            f"MIN(CAST(q3 AS TEXT)) FROM (SELECT * FROM ("
            f"{self._aliased(step.sql.format_map(names))})) z GROUP BY q1"
        )
        action = "reject" if step.kind == "reject" else "flag"
        n = self.execute(
            self.q(
                f"INSERT INTO {self.qualified(REJECTS)} ("
                + ", ".join(REJECT_COLUMNS)
                + ") SELECT ?, ?, st, k, ?, raw, ?, ?, NULL, NULL, ?, 'cross' "
                f"FROM {tmp}"
            ),
            (run_id, table, step.column, step.rule_id, step.reason, action),
        )
        if action == "reject" and step.columns and n:
            # One pass over the moved rows for every checksum column.
            parts = [
                f"COUNT({ident(col)}), {self.checksum_expr(ident(col))}"
                for col in step.columns
            ]
            row = self.query(
                f"SELECT {', '.join(parts)} FROM {me} "
                f"WHERE _source_key IN (SELECT k FROM {tmp})"
            )[0]
            for j, col in enumerate(step.columns):
                prev = result["moved_checksums"].get(col, [0, 0])
                result["moved_checksums"][col] = [
                    prev[0] + int(row[2 * j]),
                    prev[1] + int(row[2 * j + 1] or 0),
                ]
        if action == "reject":
            moved = self.execute(
                f"DELETE FROM {me} WHERE _source_key IN (SELECT k FROM {tmp})"
            )
            if moved != n:
                raise TerminalError(
                    f"{table}: {step.reason} rejected {n} rows but moved {moved}"
                )
            bucket = result["moved"]
        else:
            bucket = result["flagged"]
        if n:
            bucket[step.reason] = bucket.get(step.reason, 0) + n
        self.execute(f"DROP TABLE {tmp}")

    def _aliased(self, sql: str) -> str:
        """Return ``sql`` wrapped so its three columns are named q1, q2, q3."""
        return (
            "SELECT column1 AS q1, column2 AS q2, column3 AS q3 FROM (VALUES (NULL, "
            f"NULL, NULL)) WHERE 0 UNION ALL {sql}"
        )

    def temp_name(self) -> str:
        """Return the name of the scratch table of a step."""
        return ident("_pas_move")

    def publish(self, run_id: str, tables: Sequence[Any]) -> None:
        """Swap every staged table into place in ONE transaction (idempotent)."""
        if self.is_published(run_id):
            return
        names = [t.name if isinstance(t, StageTable) else str(t) for t in tables]
        with self.transaction():
            if self.marker(run_id, PUBLISHED) is not None:
                return
            self.swap(run_id, names)
            self.set_marker(run_id, PUBLISHED, {"tables": names})

    def is_published(self, run_id: str) -> bool:
        """Return True once this run's publish has committed."""
        return self.marker(run_id, PUBLISHED) is not None

    def count(self, table: str, run_id: str | None = None) -> int:
        """Return the rows of a published table or, with run_id, a staged one."""
        name = table if run_id is None else self.staged_name(run_id, table)
        if not self.table_exists(name):
            return 0
        return int(self.query(f"SELECT COUNT(*) FROM {self.qualified(name)}")[0][0])

    def reject_counts(self, run_id: str) -> list[tuple[str, str, str, int]]:
        """Return (target_table, action, reason, rows) of the run's reject store."""
        rows = self.query(
            self.q(
                "SELECT target_table, action, reason, COUNT(*) FROM "
                f"{self.qualified(REJECTS)} WHERE run_id = ? "
                "GROUP BY target_table, action, reason ORDER BY 1, 2, 3"
            ),
            (run_id,),
        )
        return [(str(a), str(b), str(c), int(d)) for a, b, c, d in rows]

    def rejects(self, run_id: str, limit: int = 100_000) -> list[dict[str, Any]]:
        """Return up to ``limit`` reject records of a run as dicts."""
        rows = self.query(
            self.q(
                "SELECT "
                + ", ".join(REJECT_COLUMNS)
                + f" FROM {self.qualified(REJECTS)} "
                "WHERE run_id = ? ORDER BY target_table, source_key LIMIT ?"
            ),
            (run_id, limit),
        )
        return [dict(zip(REJECT_COLUMNS, r, strict=True)) for r in rows]

    def flags(self, run_id: str, limit: int = 1000) -> list[dict[str, Any]]:
        """Return up to ``limit`` flagged rows of a run."""
        rows = self.query(
            self.q(
                "SELECT target_table, source_table, source_key, reason, rule_id, "
                f"raw_value FROM {self.qualified(REJECTS)} WHERE run_id = ? "
                "AND action = 'flag' ORDER BY target_table, source_key LIMIT ?"
            ),
            (run_id, limit),
        )
        keys = ("table", "source_table", "source_key", "reason", "rule_id", "value")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def table_profile(
        self, table: str, columns: Sequence[str], checksum_columns: Sequence[str]
    ) -> dict[str, Any]:
        """Return rows, nulls per column and checksums of a published table.

        One scan for all of them. A table that does not exist profiles as
        empty (as ``count`` counts it 0), so the ledger reports the gap.
        """
        if not self.table_exists(table):
            return {
                "rows": 0,
                "nulls": dict.fromkeys(columns, 0),
                "checksums": {c: [0, 0] for c in checksum_columns},
            }
        parts = ["COUNT(*)"]
        parts += [f"COUNT(*) - COUNT({ident(c)})" for c in columns]
        for c in checksum_columns:
            parts += [f"COUNT({ident(c)})", self.checksum_expr(ident(c))]
        row = self.query(f"SELECT {', '.join(parts)} FROM {self.qualified(table)}")[0]
        n = len(columns)
        nulls = {c: int(row[1 + i]) for i, c in enumerate(columns)}
        sums = {}
        for j, c in enumerate(checksum_columns):
            sums[c] = [int(row[1 + n + 2 * j]), int(row[2 + n + 2 * j] or 0)]
        return {"rows": int(row[0]), "nulls": nulls, "checksums": sums}

    def checksum(self, table: str, column: str) -> tuple[int, int]:
        """Return (count, checksum) of one column of a published table."""
        row = self.query(
            f"SELECT COUNT({ident(column)}), {self.checksum_expr(ident(column))} "
            f"FROM {self.qualified(table)}"
        )[0]
        return int(row[0]), int(row[1] or 0)

    def orphan_count(
        self, table: str, column: str, ref_table: str, ref_column: str
    ) -> int:
        """Return published rows whose ``column`` matches no ``ref_table`` row.

        A missing table has no rows; with the referenced table missing, every
        non-NULL reference is an orphan.
        """
        c, r = ident(column), ident(ref_column)
        if not self.table_exists(table):
            return 0
        if not self.table_exists(ref_table):
            return int(
                self.query(f"SELECT COUNT({c}) FROM {self.qualified(table)}")[0][0]
            )
        sql = (
            f"SELECT COUNT(*) FROM {self.qualified(table)} c WHERE c.{c} IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {self.qualified(ref_table)} p "
            f"WHERE p.{r} = c.{c})"
        )
        return int(self.query(sql)[0][0])

    def iter_rejects(self, run_id: str) -> Iterator[tuple[Any, ...]]:
        """Yield the run's reject records (override to stream)."""
        yield from self.query(
            self.q(
                "SELECT "
                + ", ".join(REJECT_COLUMNS)
                + f" FROM {self.qualified(REJECTS)} "
                "WHERE run_id = ? ORDER BY target_table, action, source_key"
            ),
            (run_id,),
        )

    def export_rejects(self, run_id: str, path: str) -> int:
        """Write the run's reject store to a CSV file; return rows written."""
        n = 0
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(REJECT_COLUMNS)
            for row in self.iter_rejects(run_id):
                w.writerow(["" if v is None else v for v in row])
                n += 1
        return n
