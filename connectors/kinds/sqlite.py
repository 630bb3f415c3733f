"""``sqlite`` kind: a SQLite file opened read-only (``mode=ro`` URI + query_only).

Framework-free: no Django import.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import Field

from connectors.kinds import register
from connectors.kinds.base import CheckResult, KindConfig, SqlSource
from migration.engine.errors import TerminalError
from migration.engine.ports import ColumnInfo, ForeignKey, TableInfo

__all__ = ["SqliteConfig", "SqliteSource"]


class SqliteConfig(KindConfig):
    """Config of a SQLite source (or embedded target)."""

    path: str = Field(min_length=1, description="path of the SQLite database file")
    busy_timeout_s: float = Field(5.0, ge=0, le=600)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class SqliteSource(SqlSource):
    """Read-only SQLite source."""

    kind = "sqlite"

    def __init__(self, config: SqliteConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.config: SqliteConfig = config
        self.dialect = "sqlite"

    def _open(self) -> sqlite3.Connection:
        path = Path(self.config.path)
        if not path.is_file():
            raise TerminalError(
                f"sqlite connector {self.name!r}: database file {path} does not exist"
            )
        # mode=ro: the file cannot be written through this connection whatever
        # the statement; query_only: a second, engine-level refusal.
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
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


register("sqlite", SqliteConfig, SqliteSource, roles=("source", "target"))
