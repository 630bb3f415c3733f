"""``odbc`` kind (pyodbc + unixODBC): the way to a Caché/IRIS PAS, tested with
the SQLite3, PostgreSQL Unicode and MariaDB Unicode drivers.

Read-only layers on our side: ``readonly=True`` on the connection (a hint
only, pyodbc#403), the engine's read-only session/transaction where there is
one (PostgreSQL ``SET SESSION CHARACTERISTICS ... READ ONLY`` and ``SET
TRANSACTION READ ONLY``; MariaDB ``SET SESSION TRANSACTION READ ONLY``;
SQLite ``mode=ro`` URI and ``PRAGMA query_only``), and the guard.

Memory: psqlODBC buffers a whole result unless ``UseDeclareFetch=1`` (697 MB
vs 45 MB measured), so the PostgreSQL connection string always carries
``UseDeclareFetch=1;Fetch=<fetch_size>``; MariaDB gets ``NO_CACHE=1``
(streamed results). psqlODBC's ``CommLog``/``Debug`` logs have leaked
passwords in the past, so they are forced off.

Framework-free: no Django import.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import suppress
from typing import Any

import pandas as pd
import pyarrow as pa
import pyodbc
from pydantic import ConfigDict, Field, field_validator

from connectors.kinds import register
from connectors.kinds.base import KindConfig, SqlSource, frame_from_rows
from connectors.secrets import SecretRef, resolve
from migration.engine.errors import TerminalError
from migration.engine.ports import ColumnInfo, ForeignKey, TableInfo

__all__ = ["OdbcConfig", "OdbcSource"]

# Attributes that must come from typed fields (so secrets stay references).
_RESERVED = {"pwd", "password", "uid", "user", "driver", "dsn"}


class OdbcConfig(KindConfig):
    """Config of an ODBC source: a driver (or DSN) plus connection attributes."""

    model_config = ConfigDict(populate_by_name=True)

    driver: str | None = Field(None, description="driver name as in odbcinst.ini")
    dsn: str | None = None
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    database: str | None = Field(None, description="database name, or file for SQLite")
    user: str | None = None
    password: SecretRef | None = None
    schema_: str | None = Field(None, alias="schema")
    catalog: str | None = None
    options: dict[str, str] = Field(default_factory=dict)
    dialect: str | None = Field(None, description="sqlglot dialect; default by DBMS")
    fetch_size: int = Field(50_000, ge=100, le=1_000_000)
    login_timeout_s: int = Field(10, ge=1, le=300)

    @field_validator("options")
    @classmethod
    def _no_secret_options(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in v if k.lower() in _RESERVED)
        if bad:
            raise ValueError(
                f"use the typed fields, not options, for: {', '.join(bad)}"
            )
        return v


def _brace(value: str) -> str:
    """Return an ODBC attribute value, braced when ; { } or edge spaces would leak."""
    if re.search(r"[;{}]", value) or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def _family(name: str) -> str:
    n = name.lower()
    if "sqlite" in n:
        return "sqlite"
    if "postgres" in n:
        return "postgresql"
    if "maria" in n or "mysql" in n:
        return "mariadb"
    return "generic"


_DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres", "mariadb": "mysql"}


class OdbcSource(SqlSource):
    """Read-only source over an ODBC driver."""

    kind = "odbc"

    def __init__(self, config: OdbcConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.config: OdbcConfig = config
        self.family = _family(config.driver or config.dsn or "")
        self.dialect = config.dialect or _DIALECTS.get(self.family)
        self._cursor: Any = None
        #: Serialises a timeout's cancel (timer thread) with closing the
        #: cursor (reader thread): SQLCancel on a statement handle being
        #: freed crashes some drivers (seen with MariaDB's).
        self._cursor_lock = threading.Lock()

    def _schema(self) -> str | None:
        if self.config.schema_:
            return self.config.schema_
        return "public" if self.family == "postgresql" else None

    # ----------------------------------------------------------- connect

    def connection_string(self, password: str | None) -> str:
        """Return the ODBC connection string (holds the password: never log it)."""
        c = self.config
        parts: list[tuple[str, str]] = []
        if c.dsn:
            parts.append(("DSN", c.dsn))
        if c.driver:
            parts.append(("DRIVER", c.driver))
        if self.family == "sqlite":
            if not c.database:
                raise TerminalError(
                    f"odbc connector {self.name!r}: database file not set"
                )
            parts += [
                ("Database", f"file:{c.database}?mode=ro"),
                ("NoCreat", "1"),
                ("FKSupport", "1"),
            ]
        else:
            if c.host:
                parts.append(("SERVER", c.host))
            if c.port:
                parts.append(("PORT", str(c.port)))
            if c.database:
                parts.append(("DATABASE", c.database))
            if c.user:
                parts.append(("UID", c.user))
            if password:
                parts.append(("PWD", password))
        if self.family == "postgresql":
            parts += [
                ("UseDeclareFetch", "1"),
                ("Fetch", str(c.fetch_size)),
                ("CommLog", "0"),
                ("Debug", "0"),
                # Not ReadOnly=1: psqlODBC then refuses our own SET TRANSACTION
                # READ ONLY / SET LOCAL statement_timeout statements.
            ]
        if self.family == "mariadb":
            parts.append(("NO_CACHE", "1"))
        parts += list(c.options.items())
        return ";".join(f"{k}={_brace(v)}" for k, v in parts) + ";"

    def _open(self) -> Any:
        c = self.config
        if c.driver and c.driver not in pyodbc.drivers():
            installed = ", ".join(pyodbc.drivers()) or "none"
            raise TerminalError(
                f"odbc connector {self.name!r}: ODBC driver {c.driver!r} is not "
                f"installed (installed: {installed})"
            )
        if not c.driver and not c.dsn:
            raise TerminalError(f"odbc connector {self.name!r}: set driver or dsn")
        password = resolve(c.password, what=f"odbc connector {self.name!r} password")
        if password:
            self._secrets.append(password)
        conn = pyodbc.connect(
            self.connection_string(password),
            readonly=True,  # SQL_ATTR_ACCESS_MODE: a hint, not a guarantee
            autocommit=False,
            timeout=c.login_timeout_s,
        )
        dbms = str(conn.getinfo(pyodbc.SQL_DBMS_NAME) or "")
        if self.family == "generic":
            self.family = _family(dbms)
            self.dialect = c.dialect or _DIALECTS.get(self.family)
        self._guard = None
        # Fixed session-setup statements (no input): outside the guard.
        cur = conn.cursor()
        if self.family == "postgresql":
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        elif self.family == "mariadb":
            cur.execute("SET SESSION TRANSACTION READ ONLY")
            # The server ends any statement itself when the time is up. (The
            # driver does not treat SET STATEMENT ... FOR SELECT as a query.)
            cur.execute(f"SET SESSION max_statement_time = {self.governor.timeout_s:g}")
        elif self.family == "sqlite":
            cur.execute("PRAGMA query_only = ON")
        cur.close()
        conn.commit()
        # A driver-side cap where the driver supports it (psqlODBC does not:
        # there SET LOCAL statement_timeout in _begin does the job).
        with suppress(pyodbc.Error):
            conn.timeout = int(self.governor.timeout_s) + 1
        return conn

    def _begin(self, what: str) -> None:
        if self.family == "postgresql":
            ms = int(self.governor.timeout_s * 1000)
            cur = self._conn.cursor()
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(f"SET LOCAL statement_timeout = {ms}")
            cur.close()

    def _cancel(self) -> None:
        with self._cursor_lock:
            cur = self._cursor
            if cur is not None:
                cur.cancel()

    def _end_transaction(self) -> None:
        with self._cursor_lock:
            self._cursor = None
        super()._end_transaction()

    def _execute(
        self,
        sql: str,
        what: str,
        batch: int,
        types: Sequence[pa.DataType | None] | None = None,
    ) -> Iterator[pd.DataFrame]:
        cur = self._conn.cursor()
        self._cursor = cur
        try:
            cur.execute(sql)
            names = [d[0] for d in cur.description]
            if types is None:
                types = self._result_types(cur.description)
            fetch = max(1, min(batch, self.config.fetch_size))
            buf: list[Any] = []
            while True:
                rows = cur.fetchmany(fetch)
                if rows:
                    buf.extend(rows)
                if buf and (len(buf) >= batch or not rows):
                    yield frame_from_rows(buf, names, types)
                    buf = []
                if not rows:
                    break
        finally:
            with self._cursor_lock:
                self._cursor = None
                try:
                    cur.close()
                except Exception:  # noqa: S110 - a cancelled cursor may refuse to close
                    pass

    # ----------------------------------------------------------- catalog

    def _scalar(self, sql: str) -> Any:
        frames = self._run(sql, "check", batch=1, catalog=True)
        return frames[0].iat[0, 0] if frames and len(frames[0]) else None

    def _flag(self, sql: str) -> bool:
        # psqlODBC returns booleans as '0'/'1' text (BoolsAsChar).
        return str(self._scalar(sql)).strip().lower() in ("1", "t", "true", "on", "y")

    def _server_version(self) -> str:
        conn = self._conn
        return (
            f"{conn.getinfo(pyodbc.SQL_DBMS_NAME)} {conn.getinfo(pyodbc.SQL_DBMS_VER)} "
            f"via {conn.getinfo(pyodbc.SQL_DRIVER_NAME)}"
        )

    def _session_read_only(self) -> bool:
        if self.family == "postgresql":
            return (
                self._scalar("SELECT current_setting('transaction_read_only')") == "on"
            )
        if self.family == "mariadb":
            v = self._scalar(
                "SELECT VARIABLE_VALUE FROM information_schema.SESSION_VARIABLES "
                "WHERE VARIABLE_NAME = 'TX_READ_ONLY'"
            )
            return str(v).upper() in ("ON", "1")
        if self.family == "sqlite":
            return True  # mode=ro URI
        return str(self._conn.getinfo(pyodbc.SQL_DATA_SOURCE_READ_ONLY)) == "Y"

    def _can_write(self) -> bool | None:
        if self.family == "sqlite":
            return False
        if self.family == "postgresql":
            s = "'" + (self._schema() or "public").replace("'", "''") + "'"
            superuser = self._flag(
                "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
            )
            create = self._flag(f"SELECT has_schema_privilege({s}, 'CREATE')")
            n = self._scalar(
                "SELECT COUNT(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace"
                f" n ON n.oid = c.relnamespace WHERE n.nspname = {s} "
                "AND c.relkind IN ('r', 'p') AND (has_table_privilege(c.oid, 'INSERT') "
                "OR has_table_privilege(c.oid, 'UPDATE') "
                "OR has_table_privilege(c.oid, 'DELETE'))"
            )
            return superuser or create or int(n or 0) > 0
        if self.family == "mariadb":
            return self._mariadb_can_write()
        return None

    def _mariadb_can_write(self) -> bool:
        user = str(self._scalar("SELECT CURRENT_USER()") or "")
        name, _, host = user.partition("@")
        grantee = f"'{name}'@'{host}'"
        db = (self.config.database or "").replace("'", "''")
        frames = self._run(
            "SELECT GRANTEE, PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES "
            "UNION ALL SELECT GRANTEE, PRIVILEGE_TYPE FROM "
            f"information_schema.SCHEMA_PRIVILEGES WHERE TABLE_SCHEMA = '{db}' "
            "UNION ALL SELECT GRANTEE, PRIVILEGE_TYPE FROM "
            f"information_schema.TABLE_PRIVILEGES WHERE TABLE_SCHEMA = '{db}'",
            "check",
            batch=10_000,
            catalog=True,
        )
        writes = {
            "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "INDEX",
            "CREATE VIEW", "TRIGGER", "FILE", "SUPER", "ALL PRIVILEGES",
        }  # fmt: skip
        return any(
            str(g) == grantee and str(p).upper() in writes
            for f in frames
            for g, p in f.itertuples(index=False)
        )

    def _mariadb_fks(self) -> dict[str, list[ForeignKey]]:
        # MariaDB's SQLForeignKeys reads REFERENTIAL_CONSTRAINTS, which hides
        # the constraints of tables a SELECT-only account merely reads;
        # KEY_COLUMN_USAGE still shows them.
        db = (self.config.database or "").replace("'", "''")
        frames = self._run(
            "SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME, ORDINAL_POSITION, "
            "REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME FROM "
            f"information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = '{db}' "
            "AND REFERENCED_TABLE_NAME IS NOT NULL",
            "discover",
            batch=10_000,
            catalog=True,
        )
        return _group_fks([tuple(r) for f in frames for r in f.itertuples(index=False)])

    def _catalog_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.family == "mariadb":
            args["catalog"] = self.config.catalog or self.config.database
        elif self.config.catalog:
            args["catalog"] = self.config.catalog
        schema = self._schema()
        if schema:
            args["schema"] = schema
        return args

    def _discover(self) -> list[TableInfo]:
        # ODBC catalog functions (SQLTables/SQLColumns/SQLPrimaryKeys/
        # SQLForeignKeys) are not SQL text: the guard does not apply to them.
        cur = self._conn.cursor()
        try:
            where = self._catalog_args()
            names = [
                r.table_name
                for r in cur.tables(tableType="TABLE,VIEW", **where).fetchall()
                if not str(r.table_name).lower().startswith("sqlite_")
            ]
            tables = []
            extra_fks = self._mariadb_fks() if self.family == "mariadb" else {}
            for name in sorted(names):
                rows = cur.columns(table=name, **where).fetchall()
                cols = sorted(rows, key=lambda r: r.ordinal_position)
                pk_rows = cur.primaryKeys(name, **where).fetchall()
                pk = tuple(r[3] for r in sorted(pk_rows, key=lambda r: r[4]))
                fk_rows = cur.foreignKeys(
                    foreignTable=name, **_fk_args(where)
                ).fetchall()
                groups: dict[Any, list[Any]] = {}
                for r in fk_rows:
                    groups.setdefault((r[2], r[11] or r[9]), []).append(r)
                fks = tuple(
                    ForeignKey(
                        columns=tuple(r[7] for r in sorted(g, key=lambda r: r[8])),
                        ref_table=str(g[0][2]),
                        ref_columns=tuple(r[3] for r in sorted(g, key=lambda r: r[8])),
                    )
                    for g in groups.values()
                )
                if not fks:
                    fks = tuple(extra_fks.get(name, ()))
                tables.append(
                    TableInfo(
                        name=str(name),
                        columns=tuple(
                            ColumnInfo(
                                name=str(r.column_name),
                                type=_type_name(r.type_name),
                                nullable=bool(r.nullable) and r.column_name not in pk,
                                primary_key=r.column_name in pk,
                            )
                            for r in cols
                        ),
                        primary_key=pk,
                        foreign_keys=fks,
                    )
                )
            self._conn.commit()
            return tables
        finally:
            cur.close()


def _group_fks(rows: list[tuple[Any, ...]]) -> dict[str, list[ForeignKey]]:
    """Return FKs per table from (table, name, column, pos, ref_table, ref_col) rows."""
    groups: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for r in rows:
        groups.setdefault((str(r[0]), str(r[1])), []).append(r)
    out: dict[str, list[ForeignKey]] = {}
    for (table, _), g in groups.items():
        g = sorted(g, key=lambda r: int(r[3]))
        out.setdefault(table, []).append(
            ForeignKey(
                columns=tuple(str(r[2]) for r in g),
                ref_table=str(g[0][4]),
                ref_columns=tuple(str(r[5]) for r in g),
            )
        )
    return out


def _fk_args(where: dict[str, Any]) -> dict[str, Any]:
    return {
        {"catalog": "foreignCatalog", "schema": "foreignSchema"}[k]: v
        for k, v in where.items()
    }


def _type_name(name: Any) -> str:
    # MariaDB reports e.g. "int(11)"; psqlODBC "int4": keep what the source says.
    return re.sub(r"\s+", " ", str(name or "")).strip()


register("odbc", OdbcConfig, OdbcSource)
