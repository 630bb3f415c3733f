"""Output writers: SQLite file, CSV directory, PostgreSQL schema, MariaDB database.

Every writer builds its output under a temporary name and only ``commit()``
moves it into place, so an interrupted run never leaves output that looks
complete:

- sqlite: ``DIR/.legacy_pas.sqlite3.tmp-<pid>`` renamed to ``legacy_pas.sqlite3``;
- csv: ``DIR/.legacy_pas.tmp-<pid>/`` whose files are renamed into ``DIR``;
- postgresql: schema ``<schema>__tmp<pid>``; commit drops the old ``<schema>``
  and renames the temporary one in one transaction (readers see old or new);
- mariadb: database ``<db>__tmp<pid>``; commit moves its tables into ``<db>``
  with one atomic ``RENAME TABLE`` (replaced tables go to a scratch database
  that is then dropped).

The caller (``core.generate``) deletes an old ``manifest.json`` before
``commit()`` and writes the new one last: a manifest is present only beside
complete output.

CSV: UTF-8, comma, ``\\n`` line ends, header row of bare column names; every
non-NULL text value is double-quoted (so ``""`` is an empty string), integers
are bare, and NULL is an empty unquoted field — the PostgreSQL ``COPY ... CSV``
convention, which keeps Caché's NULL / empty-string distinction.

PostgreSQL and MariaDB tables keep the spec's exact mixed-case names (quoted
identifiers in PostgreSQL).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import GeneratorError
from .generator import Row
from .schema import TABLES, Table

SQLITE_FILE = "legacy_pas.sqlite3"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MARIADB_DSN = "mysql://root@127.0.0.1:3306"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")


class Writer(ABC):
    """Receives rows table by table and publishes them atomically on commit."""

    target: str = ""

    @abstractmethod
    def open(self) -> None:
        """Create the temporary output and the empty tables; raise GeneratorError."""

    @abstractmethod
    def write(self, table: Table, rows: Sequence[Row]) -> None:
        """Append rows (tuples in the table's column order)."""

    @abstractmethod
    def commit(self) -> None:
        """Move the finished output into place."""

    @abstractmethod
    def abort(self) -> None:
        """Remove the temporary output; never raises."""


# --- files -------------------------------------------------------------------------


def _make_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise GeneratorError(f"cannot create output directory {path}: {e}") from e
    if not os.access(path, os.W_OK):
        raise GeneratorError(f"output directory {path} is not writable")


class SQLiteWriter(Writer):
    """One SQLite file ``DIR/legacy_pas.sqlite3``."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.target = os.path.join(out_dir, SQLITE_FILE)
        self.tmp = os.path.join(out_dir, f".{SQLITE_FILE}.tmp-{os.getpid()}")
        self.conn: sqlite3.Connection | None = None

    def open(self) -> None:
        _make_dir(self.out_dir)
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)
        self.conn = sqlite3.connect(self.tmp)
        # The file is renamed into place only when complete, so a crash
        # journal buys nothing here.
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        for t in TABLES:
            cols = [f'"{c.name}" {c.type}' for c in t.columns]
            if t.key:
                cols.append("PRIMARY KEY (" + ", ".join(f'"{k}"' for k in t.key) + ")")
            self.conn.execute(f'CREATE TABLE "{t.name}" ({", ".join(cols)})')

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        assert self.conn is not None
        marks = ", ".join("?" * len(table.columns))
        self.conn.executemany(f'INSERT INTO "{table.name}" VALUES ({marks})', rows)

    def commit(self) -> None:
        assert self.conn is not None
        self.conn.commit()
        self.conn.close()
        self.conn = None
        os.replace(self.tmp, self.target)

    def abort(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def _csv_field(v: object) -> str:
    if v is None:
        return ""
    if type(v) is int:
        return str(v)
    return '"' + str(v).replace('"', '""') + '"'


class CSVWriter(Writer):
    """One ``<table>.csv`` per table in DIR."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.target = out_dir
        self.tmp = os.path.join(out_dir, f".legacy_pas.tmp-{os.getpid()}")
        self.files: dict[str, Any] = {}

    def open(self) -> None:
        _make_dir(self.out_dir)
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.mkdir(self.tmp)
        for t in TABLES:
            f = open(
                os.path.join(self.tmp, f"{t.name}.csv"),
                "w",
                encoding="utf-8",
                newline="",
            )
            f.write(",".join(t.column_names) + "\n")
            self.files[t.name] = f

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        f = self.files[table.name]
        fmt = _csv_field
        f.write("".join(",".join(map(fmt, row)) + "\n" for row in rows))

    def commit(self) -> None:
        for f in self.files.values():
            f.close()
        for t in TABLES:
            os.replace(
                os.path.join(self.tmp, f"{t.name}.csv"),
                os.path.join(self.out_dir, f"{t.name}.csv"),
            )
        self.files = {}
        os.rmdir(self.tmp)

    def abort(self) -> None:
        for f in self.files.values():
            f.close()
        self.files = {}
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- databases ---------------------------------------------------------------------


def check_identifier(name: str, what: str) -> str:
    """Return ``name`` if it is a safe schema/database identifier, else raise."""
    if not _IDENT.match(name or ""):
        raise GeneratorError(
            f"invalid {what} name {name!r}: use letters, digits and _ (max 48)"
        )
    return name


def _redact(text: str, password: str | None) -> str:
    if password:
        text = text.replace(password, "***")
    return text


class PostgresWriter(Writer):
    """Tables in a PostgreSQL schema, loaded with COPY."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = check_identifier(schema, "schema")
        self.tmp = f"{schema}__tmp{os.getpid()}"
        self.conn: Any = None
        self.target = f"schema {schema}"

    def open(self) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        try:
            info = conninfo_to_dict(self.dsn)
        except psycopg.Error:
            info = None
        if info is None:
            # Raised outside the except block: the driver error quotes the DSN
            # and must not ride along as __context__.
            raise GeneratorError("invalid PostgreSQL DSN (could not parse it)")
        where = (
            f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"
            f"/{info.get('dbname', '')}"
        )
        self.target = f"PostgreSQL {where} schema {self.schema}"
        password = str(info.get("password") or "") or None
        reason = None
        try:
            # autocommit: each COPY batch commits on its own (bounded WAL and
            # server memory); the temporary schema name keeps it invisible.
            self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        except psycopg.Error as e:
            lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
            reason = _redact("; ".join(lines), password)
        if reason is not None:  # raised here so no driver error is chained
            raise GeneratorError(f"cannot connect to PostgreSQL at {where}: {reason}")
        with self.conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{self.tmp}" CASCADE')
            cur.execute(f'CREATE SCHEMA "{self.tmp}"')
            for t in TABLES:
                cols = ", ".join(f'"{c.name}" {c.type}' for c in t.columns)
                cur.execute(f'CREATE TABLE "{self.tmp}"."{t.name}" ({cols})')

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        cols = ", ".join(f'"{c}"' for c in table.column_names)
        sql = f'COPY "{self.tmp}"."{table.name}" ({cols}) FROM STDIN'
        with self.conn.cursor() as cur, cur.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)

    def commit(self) -> None:
        with self.conn.cursor() as cur:
            # Keys after the load: building them on a filled table is faster.
            for t in TABLES:
                if t.key:
                    keys = ", ".join(f'"{k}"' for k in t.key)
                    cur.execute(
                        f'ALTER TABLE "{self.tmp}"."{t.name}" ADD PRIMARY KEY ({keys})'
                    )
            with self.conn.transaction():
                cur.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
                cur.execute(f'ALTER SCHEMA "{self.tmp}" RENAME TO "{self.schema}"')
            cur.execute(f'ANALYZE "{self.schema}"."PA_PatMas"')
        self.conn.close()
        self.conn = None

    def abort(self) -> None:
        if self.conn is None:
            return
        try:
            if not self.conn.closed:
                self.conn.rollback()
                self.conn.execute(f'DROP SCHEMA IF EXISTS "{self.tmp}" CASCADE')
        except Exception:  # noqa: S110 - best effort; the real error is raised
            pass
        finally:
            self.conn.close()
            self.conn = None


class MariaDBWriter(Writer):
    """Tables in a MariaDB database, loaded with multi-row INSERT batches."""

    BATCH = 2000

    def __init__(self, dsn: str, database: str) -> None:
        self.dsn = dsn
        self.database = check_identifier(database, "database")
        self.tmp = f"{database}__tmp{os.getpid()}"
        self.trash = f"{database}__old{os.getpid()}"
        self.conn: Any = None
        self.target = f"database {database}"

    def open(self) -> None:
        import pymysql

        parts = urlsplit(self.dsn)
        if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql"):
            raise GeneratorError(
                "invalid MariaDB DSN: expected mysql://user[:password]@host[:port]"
            )
        try:
            host, port = parts.hostname or "127.0.0.1", parts.port or 3306
        except ValueError as e:
            raise GeneratorError("invalid MariaDB DSN: bad port") from e
        password = unquote(parts.password) if parts.password else None
        self.target = f"MariaDB {host}:{port} database {self.database}"
        reason = None
        try:
            self.conn = pymysql.connect(
                host=host,
                port=port,
                user=unquote(parts.username or "root"),
                password=password or "",
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=5,
            )
        except pymysql.MySQLError as e:
            reason = _redact(str(e.args[-1]) if e.args else str(e), password)
        if reason is not None:  # raised here so no driver error is chained
            raise GeneratorError(
                f"cannot connect to MariaDB at {host}:{port}: {reason}"
            )
        with self.conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.tmp}`")
            # utf8mb4_bin: exact, case-sensitive comparisons like SQLite and
            # PostgreSQL, so codes differing only in case stay distinct.
            cur.execute(
                f"CREATE DATABASE `{self.tmp}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
            for t in TABLES:
                cols = [
                    f"`{c.name}` {'INT' if c.type == 'INTEGER' else 'VARCHAR(255)'}"
                    for c in t.columns
                ]
                if t.key:
                    cols.append(
                        "PRIMARY KEY (" + ", ".join(f"`{k}`" for k in t.key) + ")"
                    )
                cur.execute(
                    f"CREATE TABLE `{self.tmp}`.`{t.name}` ({', '.join(cols)}) "
                    "ENGINE=InnoDB"
                )

    def write(self, table: Table, rows: Sequence[Row]) -> None:
        cols = ", ".join(f"`{c}`" for c in table.column_names)
        marks = ", ".join(["%s"] * len(table.columns))
        sql = f"INSERT INTO `{self.tmp}`.`{table.name}` ({cols}) VALUES ({marks})"
        with self.conn.cursor() as cur:
            # PyMySQL turns executemany of INSERT ... VALUES into multi-row
            # INSERT statements (up to its max statement length).
            for i in range(0, len(rows), self.BATCH):
                cur.executemany(sql, rows[i : i + self.BATCH])

    def commit(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE IF NOT EXISTS `{self.database}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = %s",
                (self.database,),
            )
            existing = {r[0] for r in cur.fetchall()}
            cur.execute(f"DROP DATABASE IF EXISTS `{self.trash}`")
            cur.execute(f"CREATE DATABASE `{self.trash}`")
            moves = [
                f"`{self.database}`.`{t.name}` TO `{self.trash}`.`{t.name}`"
                for t in TABLES
                if t.name in existing
            ]
            moves += [
                f"`{self.tmp}`.`{t.name}` TO `{self.database}`.`{t.name}`"
                for t in TABLES
            ]
            # One RENAME TABLE statement is atomic: readers see old or new.
            cur.execute("RENAME TABLE " + ", ".join(moves))
            cur.execute(f"DROP DATABASE `{self.trash}`")
            cur.execute(f"DROP DATABASE `{self.tmp}`")
        self.conn.close()
        self.conn = None

    def abort(self) -> None:
        if self.conn is None:
            return
        try:
            with self.conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.tmp}`")
                cur.execute(f"DROP DATABASE IF EXISTS `{self.trash}`")
        except Exception:  # noqa: S110 - best effort; the real error is raised
            pass
        finally:
            try:
                self.conn.close()
            except Exception:  # noqa: S110 - already broken
                pass
            self.conn = None
