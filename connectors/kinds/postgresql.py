"""``postgresql`` kind (psycopg 3): a read-only source, and the target whose
sink lives in ``connectors.sinks.postgresql``.

Read-only layers on our side: the session starts with
``default_transaction_read_only=on`` (libpq ``options``), every transaction is
opened ``BEGIN READ ONLY`` (``conn.read_only``), and every statement passes the
guard. ``check()`` reports whether the ACCOUNT could still write (table
privileges, schema CREATE, superuser) -- the third layer is the DBA's job.

Framework-free: no Django import.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Sequence
from typing import Any, Literal

import psycopg
import pyarrow as pa
from pydantic import ConfigDict, Field

from connectors.kinds import register
from connectors.kinds.base import KindConfig, SqlSource
from connectors.secrets import SecretRef, resolve
from migration.engine.errors import TerminalError
from migration.engine.ports import ColumnInfo, ForeignKey, TableInfo

__all__ = ["PostgresConfig", "PostgresSource"]

_OID_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int64(),
    23: pa.int64(),
    25: pa.string(),
    700: pa.float64(),
    701: pa.float64(),
    1042: pa.string(),
    1043: pa.string(),
}
_counter = itertools.count()


class PostgresConfig(KindConfig):
    """Config of a PostgreSQL source or target."""

    model_config = ConfigDict(populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(5432, ge=1, le=65535)
    dbname: str = Field(min_length=1)
    user: str = Field(min_length=1)
    password: SecretRef | None = None
    schema_: str = Field("public", alias="schema", min_length=1)
    sslmode: Literal[
        "disable", "allow", "prefer", "require", "verify-ca", "verify-full"
    ] = "prefer"
    connect_timeout_s: int = Field(10, ge=1, le=300)
    application_name: str = "pasportal"


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresSource(SqlSource):
    """Read-only PostgreSQL source over psycopg 3."""

    kind = "postgresql"
    read_ahead = True  # psycopg: one thread at a time, GIL released in reads

    def __init__(self, config: PostgresConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.config: PostgresConfig = config
        self.dialect = "postgres"
        self._cursor_seq = 0

    def _schema(self) -> str:
        return self.config.schema_

    def _open(self) -> psycopg.Connection[Any]:
        c = self.config
        password = resolve(
            c.password, what=f"postgresql connector {self.name!r} password"
        )
        if password:
            self._secrets.append(password)
        conn = psycopg.connect(
            host=c.host,
            port=c.port,
            dbname=c.dbname,
            user=c.user,
            password=password or None,
            sslmode=c.sslmode,
            connect_timeout=c.connect_timeout_s,
            application_name=c.application_name,
            # Session default: even a transaction we did not open is read-only.
            options="-c default_transaction_read_only=on",
            autocommit=False,
        )
        conn.read_only = True  # every transaction starts BEGIN READ ONLY
        return conn

    def _begin(self, what: str) -> None:
        # SET LOCAL: the limit dies with the transaction; the server enforces
        # it even if the governor's cancel never arrives.
        ms = int(self.governor.timeout_s * 1000)
        with self._conn.cursor() as cur:
            cur.execute(f"SET LOCAL statement_timeout = {ms}")

    def _cancel(self) -> None:
        if self._conn is not None:
            self._conn.cancel_safe(timeout=5)

    def _execute(
        self,
        sql: str,
        what: str,
        batch: int,
        types: Sequence[pa.DataType | None] | None = None,
    ) -> Any:
        # A server-side cursor: rows arrive in batches, never a whole result.
        name = f"pas_{what}_{next(_counter)}"
        cur = self._conn.cursor(name=name)
        try:
            cur.execute(sql)
            names = [d.name for d in cur.description]
            if types is None:
                types = [_OID_TYPES.get(d.type_code) for d in cur.description]
            from connectors.kinds.base import frame_from_rows

            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    break
                yield frame_from_rows(rows, names, types)
        finally:
            try:
                cur.close()
            except Exception:  # noqa: S110 - aborted transaction: rollback follows
                pass

    def _scalar(self, sql: str) -> Any:
        frames = self._run(sql, "check", batch=1, catalog=True)
        return frames[0].iat[0, 0] if frames and len(frames[0]) else None

    def _server_version(self) -> str:
        return str(self._scalar("SELECT version()"))

    def _session_read_only(self) -> bool:
        return self._scalar("SELECT current_setting('transaction_read_only')") == "on"

    def _can_write(self) -> bool:
        s = _lit(self._schema())
        superuser = self._scalar(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
        )
        # A schema that does not exist yet (a target before its first run)
        # would make has_schema_privilege raise: then the question is whether
        # the account could create it.
        create = self._scalar(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_namespace "
            f"WHERE nspname = {s}) THEN has_schema_privilege({s}, 'CREATE') "
            "ELSE has_database_privilege(current_database(), 'CREATE') END"
        )
        writable = self._scalar(
            "SELECT COUNT(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
            f"ON n.oid = c.relnamespace WHERE n.nspname = {s} "
            "AND c.relkind IN ('r', 'p') AND (has_table_privilege(c.oid, 'INSERT') "
            "OR has_table_privilege(c.oid, 'UPDATE') "
            "OR has_table_privilege(c.oid, 'DELETE') "
            "OR has_table_privilege(c.oid, 'TRUNCATE'))"
        )
        return bool(superuser) or bool(create) or int(writable or 0) > 0

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        frames = self._run(sql, "discover", batch=10_000, catalog=True)
        return [tuple(r) for f in frames for r in f.itertuples(index=False)]

    def _discover(self) -> list[TableInfo]:
        # pg_catalog, not information_schema: information_schema hides the
        # constraints of tables a SELECT-only account merely reads.
        s = _lit(self._schema())
        rels = self._rows(
            "SELECT CAST(c.oid AS BIGINT), c.relname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = {s} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "ORDER BY c.relname"
        )
        if not rels:
            return []
        cols = self._rows(
            "SELECT CAST(a.attrelid AS BIGINT), a.attnum, a.attname, "
            "format_type(a.atttypid, a.atttypmod), a.attnotnull "
            "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c "
            "ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n "
            f"ON n.oid = c.relnamespace WHERE n.nspname = {s} AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum"
        )
        cons = self._rows(
            "SELECT CAST(k.conrelid AS BIGINT), k.contype, CAST(k.conkey AS TEXT), "
            "r.relname, CAST(k.confrelid AS BIGINT), CAST(k.confkey AS TEXT) "
            "FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c "
            "ON c.oid = k.conrelid JOIN pg_catalog.pg_namespace n "
            "ON n.oid = c.relnamespace LEFT JOIN pg_catalog.pg_class r "
            f"ON r.oid = k.confrelid WHERE n.nspname = {s} AND k.contype IN ('p', 'f') "
            "ORDER BY k.conname"
        )
        attnames: dict[tuple[int, int], str] = {
            (int(r[0]), int(r[1])): str(r[2]) for r in cols
        }
        missing = {int(r[4]) for r in cons if r[1] == "f"} - {int(r[0]) for r in rels}
        for relid in sorted(missing):  # referenced tables in another schema
            for r in self._rows(
                "SELECT CAST(a.attrelid AS BIGINT), a.attnum, a.attname "
                f"FROM pg_catalog.pg_attribute a WHERE a.attrelid = {relid} "
                "AND a.attnum > 0"
            ):
                attnames[(int(r[0]), int(r[1]))] = str(r[2])

        def names(relid: int, keys: str) -> tuple[str, ...]:
            nums = [int(x) for x in keys.strip("{}").split(",") if x]
            return tuple(attnames[(relid, k)] for k in nums)

        pks: dict[int, tuple[str, ...]] = {}
        fks: dict[int, list[ForeignKey]] = {}
        for relid, ctype, conkey, refname, refid, confkey in cons:
            relid = int(relid)
            if ctype == "p":
                pks[relid] = names(relid, conkey)
            else:
                fks.setdefault(relid, []).append(
                    ForeignKey(
                        columns=names(relid, conkey),
                        ref_table=str(refname),
                        ref_columns=names(int(refid), confkey),
                    )
                )
        tables = []
        for relid, relname in rels:
            relid = int(relid)
            pk = pks.get(relid, ())
            columns = tuple(
                ColumnInfo(
                    name=str(r[2]),
                    type=str(r[3]),
                    nullable=not bool(r[4]),
                    primary_key=str(r[2]) in pk,
                )
                for r in cols
                if int(r[0]) == relid
            )
            tables.append(
                TableInfo(
                    name=str(relname),
                    columns=columns,
                    primary_key=pk,
                    foreign_keys=tuple(fks.get(relid, ())),
                )
            )
        return tables

    def sink(self) -> Any:
        """Return ``connectors.sinks.postgresql``; raises TerminalError if absent."""
        try:
            return importlib.import_module("connectors.sinks.postgresql")
        except ModuleNotFoundError:
            raise TerminalError(
                "postgresql sink (connectors.sinks.postgresql) is not installed"
            ) from None


register("postgresql", PostgresConfig, PostgresSource, roles=("source", "target"))
