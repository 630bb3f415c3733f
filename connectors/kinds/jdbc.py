"""``jdbc`` kind (JPype + JayDeBeApi): tested with the Debian SQLite, PostgreSQL
and H2 jars.

Bulk path: JayDeBeApi converts row by row through JPype (~24k rows/s), so
``read_chunks``/``profile``/``count`` read through ``BatchReader`` -- a small
Java class (source next to this module) compiled with ``javac`` at first use
into ``~/.cache/pasportal/jdbc/<source hash>/`` -- which serialises a batch of
rows into one Arrow-layout ``byte[]`` that pyarrow wraps without per-value
work. ``sample()`` uses a normal JayDeBeApi cursor.

Drivers are loaded from their jars through a URLClassLoader and called
directly (``Driver.connect``), so connectors with different jars work in one
JVM, whoever started it. Catalog discovery uses ``DatabaseMetaData``.

Read-only layers: ``Connection.setReadOnly(true)``, the engine's own read-only
mode where it has one (SQLite ``open_mode=1``; H2 ``ACCESS_MODE_DATA=r``;
PostgreSQL ``SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY``), and the
guard.

Framework-free: no Django import.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import ConfigDict, Field, field_validator

from connectors.kinds import register
from connectors.kinds.base import KindConfig, SqlSource, frame_from_rows, to_pandas
from connectors.secrets import SecretRef, resolve
from migration.engine.errors import TerminalError
from migration.engine.ports import ColumnInfo, ForeignKey, TableInfo

__all__ = ["JdbcConfig", "JdbcSource", "helper_classes", "java_connect"]

_JAVA_SRC = Path(__file__).with_name("jdbc_java") / "BatchReader.java"
_HELPER = "pasportal.jdbc.BatchReader"
_LOCK = threading.RLock()
_LOADERS: dict[tuple[str, ...], Any] = {}
_MAGIC = 0x50415342


class JdbcConfig(KindConfig):
    """Config of a JDBC source."""

    model_config = ConfigDict(populate_by_name=True)

    driver_class: str = Field(min_length=1, description="e.g. org.postgresql.Driver")
    url: str = Field(min_length=6, description="JDBC URL, without credentials")
    jars: tuple[str, ...] = Field(min_length=1, description="driver jar paths")
    user: str | None = None
    password: SecretRef | None = None
    properties: dict[str, str] = Field(default_factory=dict)
    schema_: str | None = Field(None, alias="schema")
    catalog: str | None = None
    dialect: str | None = None
    fetch_size: int = Field(50_000, ge=100, le=1_000_000)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith("jdbc:"):
            raise ValueError("url must start with jdbc:")
        if "password=" in v.lower():
            raise ValueError("put the password in the password field (a reference)")
        return v

    @field_validator("properties")
    @classmethod
    def _props(cls, v: dict[str, str]) -> dict[str, str]:
        if any(k.lower() in ("password", "user") for k in v):
            raise ValueError("use the user/password fields, not properties")
        return v


# -------------------------------------------------------------------- JVM


def _cache_dir() -> Path:
    base = os.environ.get("PAS_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) / "pasportal" if base else Path.home() / ".cache" / "pasportal"
    return root / "jdbc"


def helper_classes() -> Path:
    """Return the directory of the compiled BatchReader (compiling it if needed)."""
    source = _JAVA_SRC.read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:16]
    target = _cache_dir() / digest
    marker = target / "pasportal" / "jdbc" / "BatchReader.class"
    if marker.is_file():
        return target
    with _LOCK:
        if marker.is_file():
            return target
        javac = shutil.which("javac")
        if javac is None:
            raise TerminalError("jdbc: javac not found; install a JDK (openjdk-17-jdk)")
        target.parent.mkdir(parents=True, exist_ok=True)
        # Compile into a temporary sibling and rename: concurrent first uses
        # (other processes) never see a half-written class.
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest}-", dir=target.parent))
        proc = subprocess.run(  # noqa: S603 - fixed arguments, our own source file
            [javac, "--release", "11", "-d", str(tmp), str(_JAVA_SRC)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise TerminalError(
                f"jdbc: compiling BatchReader failed: {proc.stderr[:500]}"
            )
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _jvm() -> Any:
    import jpype

    with _LOCK:
        if not jpype.isJVMStarted():
            # convertStrings=True: what JayDeBeApi's cursor expects. A capped
            # heap: batches are garbage quickly and the JVM would otherwise
            # grow towards a quarter of the machine's memory.
            heap = os.environ.get("PAS_JVM_MAX_HEAP", "512m")
            jpype.startJVM(f"-Xmx{heap}", convertStrings=True)
    return jpype


def _loader(jars: Sequence[str]) -> Any:
    jpype = _jvm()
    for jar in jars:
        if not Path(jar).is_file():
            raise TerminalError(f"jdbc: driver jar {jar} does not exist")
    key = (str(helper_classes()), *sorted(jars))
    with _LOCK:
        loader = _LOADERS.get(key)
        if loader is None:
            URL = jpype.JClass("java.net.URL")
            urls = [Path(p).resolve().as_uri() for p in key]
            # URLClassLoader treats a URL as a directory only with a trailing /.
            urls = [u if u.endswith((".jar", "/")) else u + "/" for u in urls]
            arr = jpype.JArray(URL)([URL(u) for u in urls])
            loader = jpype.JClass("java.net.URLClassLoader")(
                arr, jpype.java.lang.ClassLoader.getSystemClassLoader()
            )
            _LOADERS[key] = loader
    return loader


def java_connect(
    driver_class: str,
    url: str,
    jars: Sequence[str],
    properties: dict[str, str] | None = None,
) -> Any:
    """Return a java.sql.Connection through the driver's own class loader."""
    jpype = _jvm()
    loader = _loader(jars)
    try:
        cls = jpype.JClass(driver_class, loader=loader)
    except Exception:
        raise TerminalError(
            f"jdbc: driver class {driver_class} not found in {', '.join(jars)}"
        ) from None
    driver = cls()
    props = jpype.java.util.Properties()
    for k, v in (properties or {}).items():
        props.setProperty(k, v)
    conn = driver.connect(url, props)
    if conn is None:
        raise TerminalError(f"jdbc: driver {driver_class} does not accept this URL")
    return conn


def _family(url: str) -> str:
    u = url.lower()
    for prefix, fam in (
        ("jdbc:sqlite", "sqlite"),
        ("jdbc:postgresql", "postgresql"),
        ("jdbc:h2", "h2"),
        ("jdbc:mariadb", "mariadb"),
        ("jdbc:mysql", "mariadb"),
    ):
        if u.startswith(prefix):
            return fam
    return "generic"


_DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres", "mariadb": "mysql"}


def decode_batch(raw: bytes) -> tuple[pa.Table | None, bool]:
    """Return (Arrow table, more) from a BatchReader buffer; names set by caller."""
    magic, ncols, nrows, more = struct.unpack_from("<iiii", raw, 0)
    if magic != _MAGIC:
        raise TerminalError("jdbc: corrupt batch from BatchReader")
    pos = 16
    arrays = []
    for _ in range(ncols):
        tag, vlen = struct.unpack_from("<ii", raw, pos)
        pos += 8
        validity = pa.py_buffer(raw[pos : pos + vlen])
        pos += vlen
        (dlen,) = struct.unpack_from("<i", raw, pos)
        pos += 4
        data = raw[pos : pos + dlen]
        pos += dlen
        if tag == 1:
            arr = pa.Array.from_buffers(
                pa.int64(), nrows, [validity, pa.py_buffer(data)]
            )
        elif tag == 2:
            arr = pa.Array.from_buffers(
                pa.float64(), nrows, [validity, pa.py_buffer(data)]
            )
        elif tag == 4:
            vals = np.frombuffer(data, dtype=np.uint8).astype(bool)
            mask = ~pa.Array.from_buffers(pa.bool_(), nrows, [None, validity]).to_numpy(
                zero_copy_only=False
            )
            arr = pa.array(vals, mask=mask, type=pa.bool_())
        else:
            (tlen,) = struct.unpack_from("<i", raw, pos)
            pos += 4
            text = raw[pos : pos + tlen]
            pos += tlen
            arr = pa.Array.from_buffers(
                pa.string(), nrows, [validity, pa.py_buffer(data), pa.py_buffer(text)]
            )
        arrays.append(arr)
    if not arrays:
        return None, bool(more)
    return pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(ncols)]), bool(
        more
    )


# ------------------------------------------------------------------ source


class JdbcSource(SqlSource):
    """Read-only source over a JDBC driver (bulk reads via BatchReader)."""

    kind = "jdbc"

    def __init__(self, config: JdbcConfig, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.config: JdbcConfig = config
        self.family = _family(config.url)
        self.dialect = config.dialect or _DIALECTS.get(self.family)
        self._stmt: Any = None
        self._reader: Any = None

    def _schema(self) -> str | None:
        if self.config.schema_:
            return self.config.schema_
        return "public" if self.family == "postgresql" else None

    def _open(self) -> Any:
        c = self.config
        password = resolve(c.password, what=f"jdbc connector {self.name!r} password")
        if password:
            self._secrets.append(password)
        props = dict(c.properties)
        if c.user:
            props["user"] = c.user
        if password:
            props["password"] = password
        url = c.url
        if self.family == "sqlite":
            props.setdefault("open_mode", "1")  # SQLITE_OPEN_READONLY
        if self.family == "h2" and "access_mode_data" not in url.lower():
            url += ";ACCESS_MODE_DATA=r"
        jpype = _jvm()
        try:
            conn = java_connect(c.driver_class, url, c.jars, props)
        except TerminalError:
            raise
        except jpype.JException as exc:
            raise TerminalError(self._java_message(exc, "connect")) from None
        loader = _loader(c.jars)
        self._reader = jpype.JClass(_HELPER, loader=loader)
        if self.family != "sqlite":  # sqlite-jdbc: read-only is fixed at open
            conn.setReadOnly(True)
        conn.setAutoCommit(False)  # needed for cursor-based fetching (pgjdbc)
        if self.family == "postgresql":
            st = conn.createStatement()
            st.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            st.close()
            conn.commit()
        return conn

    def _java_message(self, exc: Any, op: str) -> str:
        from connectors.secrets import scrub

        text = scrub(
            f"{exc.getClass().getSimpleName()}: {exc.getMessage()}", self._secrets
        )
        return (
            f"jdbc connector {self.name!r}: {op} failed: {' '.join(text.split())[:500]}"
        )

    def _begin(self, what: str) -> None:
        if self.family == "postgresql":
            ms = int(self.governor.timeout_s * 1000)
            st = self._conn.createStatement()
            st.execute(f"SET LOCAL statement_timeout = {ms}")
            st.close()

    def _cancel(self) -> None:
        st = self._stmt
        if st is not None:
            st.cancel()

    def _end_transaction(self) -> None:
        self._stmt = None
        super()._end_transaction()

    def _execute(
        self,
        sql: str,
        what: str,
        batch: int,
        types: Sequence[pa.DataType | None] | None = None,
    ) -> Iterator[pd.DataFrame]:
        st = self._conn.createStatement()
        self._stmt = st
        try:
            st.setFetchSize(min(batch, self.config.fetch_size))
            st.setQueryTimeout(max(1, math.ceil(self.governor.timeout_s)))
            rs = st.executeQuery(sql)
            md = rs.getMetaData()
            names = [str(md.getColumnLabel(i + 1)) for i in range(md.getColumnCount())]
            tags = self._reader.tags(rs)
            while True:
                raw = bytes(memoryview(self._reader.read(rs, tags, batch)))
                table, more = decode_batch(raw)
                if table is None or table.num_rows == 0:
                    break
                yield to_pandas(table.rename_columns(names))
                if not more:
                    break
            rs.close()
        finally:
            self._stmt = None
            st.close()

    def _is_transient(self, exc: BaseException) -> bool:
        return super()._is_transient(exc) or "08001" in str(exc)

    # ------------------------------------------------------------ catalog

    def _scalar(self, sql: str) -> Any:
        frames = self._run(sql, "check", batch=1, catalog=True)
        return frames[0].iat[0, 0] if frames and len(frames[0]) else None

    def _server_version(self) -> str:
        md = self._conn.getMetaData()
        return (
            f"{md.getDatabaseProductName()} {md.getDatabaseProductVersion()} via "
            f"{md.getDriverName()} {md.getDriverVersion()}"
        )

    def _session_read_only(self) -> bool:
        if self.family == "postgresql":
            return (
                self._scalar("SELECT current_setting('transaction_read_only')") == "on"
            )
        return bool(self._conn.isReadOnly())

    def _can_write(self) -> bool | None:
        if self.family == "sqlite":
            return False  # opened with SQLITE_OPEN_READONLY
        if self.family == "postgresql":
            s = "'" + (self._schema() or "public").replace("'", "''") + "'"
            return (
                bool(
                    self._scalar(
                        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
                    )
                )
                or bool(self._scalar(f"SELECT has_schema_privilege({s}, 'CREATE')"))
                or int(
                    self._scalar(
                        "SELECT COUNT(*) FROM pg_catalog.pg_class c JOIN "
                        "pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE "
                        f"n.nspname = {s} AND c.relkind IN ('r', 'p') AND "
                        "(has_table_privilege(c.oid, 'INSERT') OR "
                        "has_table_privilege(c.oid, 'UPDATE') OR "
                        "has_table_privilege(c.oid, 'DELETE'))"
                    )
                    or 0
                )
                > 0
            )
        md = self._conn.getMetaData()
        if self.family == "h2" and md.isReadOnly():
            return False  # ACCESS_MODE_DATA=r: the database itself is read-only
        rs = md.getTablePrivileges(self.config.catalog, self._schema(), "%")
        user = str(md.getUserName() or "").lower()
        writes = {"INSERT", "UPDATE", "DELETE", "TRUNCATE"}
        found = False
        while rs.next():
            if (
                str(rs.getString("GRANTEE")).lower() == user
                and str(rs.getString("PRIVILEGE")).upper() in writes
            ):
                found = True
        rs.close()
        return True if found else None

    def _discover(self) -> list[TableInfo]:
        # DatabaseMetaData calls are not SQL text: the guard does not apply.
        md = self._conn.getMetaData()
        catalog, schema = self.config.catalog, self._schema()
        types = self._jvm_strings(["TABLE", "VIEW"])
        rs = md.getTables(catalog, schema, "%", types)
        names = []
        while rs.next():
            name = str(rs.getString("TABLE_NAME"))
            if not name.lower().startswith("sqlite_"):
                names.append(name)
        rs.close()
        esc = str(md.getSearchStringEscape() or "")
        tables = []
        for name in sorted(names):
            pattern = name
            if esc:
                pattern = name.replace(esc, esc + esc).replace("_", esc + "_")
                pattern = pattern.replace("%", esc + "%")
            cols = []
            rs = md.getColumns(catalog, schema, pattern, "%")
            while rs.next():
                if str(rs.getString("TABLE_NAME")) != name:
                    continue
                cols.append(
                    (
                        int(rs.getInt("ORDINAL_POSITION")),
                        str(rs.getString("COLUMN_NAME")),
                        str(rs.getString("TYPE_NAME")),
                        int(rs.getInt("NULLABLE")) != 0,
                    )
                )
            rs.close()
            pk_rows = []
            rs = md.getPrimaryKeys(catalog, schema, name)
            while rs.next():
                pk_rows.append(
                    (int(rs.getInt("KEY_SEQ")), str(rs.getString("COLUMN_NAME")))
                )
            rs.close()
            pk = tuple(c for _, c in sorted(pk_rows))
            fk_groups: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
            rs = md.getImportedKeys(catalog, schema, name)
            while rs.next():
                key = (str(rs.getString("PKTABLE_NAME")), str(rs.getString("FK_NAME")))
                fk_groups.setdefault(key, []).append(
                    (
                        int(rs.getInt("KEY_SEQ")),
                        str(rs.getString("FKCOLUMN_NAME")),
                        str(rs.getString("PKCOLUMN_NAME")),
                    )
                )
            rs.close()
            fks = tuple(
                ForeignKey(
                    columns=tuple(r[1] for r in sorted(rows)),
                    ref_table=ref,
                    ref_columns=tuple(r[2] for r in sorted(rows)),
                )
                for (ref, _), rows in fk_groups.items()
            )
            tables.append(
                TableInfo(
                    name=name,
                    columns=tuple(
                        ColumnInfo(
                            name=c,
                            type=t,
                            nullable=nl and c not in pk,
                            primary_key=c in pk,
                        )
                        for _, c, t, nl in sorted(cols)
                    ),
                    primary_key=pk,
                    foreign_keys=fks,
                )
            )
        self._conn.rollback()
        return tables

    def _jvm_strings(self, values: list[str]) -> Any:
        jpype = _jvm()
        return jpype.JArray(jpype.JString)(values)

    # ------------------------------------------------------------- sample

    def cursor(self) -> Any:
        """Return a JayDeBeApi cursor on this connection (row-by-row: small reads only)."""
        import jaydebeapi

        self.connect()
        if jaydebeapi._converters is None:  # initialised by jaydebeapi.connect only
            jpype = _jvm()
            types = jpype.java.sql.Types
            fields = {
                str(f.getName()): f.get(None)
                for f in types.class_.getFields()
                if jpype.java.lang.reflect.Modifier.isStatic(f.getModifiers())
            }
            jaydebeapi._init_types(fields)
        return jaydebeapi.Connection(self._conn, jaydebeapi._converters).cursor()

    def sample(self, table: str, n: int = 100, page: int = 0) -> pd.DataFrame:
        """Return page ``page`` of ``n`` rows through a normal JayDeBeApi cursor."""
        from sqlglot import exp

        info = self._table_info(table)
        n = self.governor.row_cap(n)
        cols = [c.name for c in info.columns]
        q = exp.select(*[self._col(c) for c in cols]).from_(self._table_expr(table))
        order = info.primary_key or (cols[0],)
        q = q.order_by(*[exp.Ordered(this=self._col(c)) for c in order]).limit(n)
        if page:
            q = q.offset(int(page) * n)
        stmt = self.guard.check(self._sql(q)).sql
        types = self._types(info, cols)

        def run() -> pd.DataFrame:
            with self.governor.slot("sample"):
                cur = self.cursor()
                try:
                    with self.governor.deadline("sample", self._cancel_cursor(cur)):
                        cur.execute(stmt)
                        rows = cur.fetchmany(n)
                finally:
                    cur.close()
                    self._end_transaction()
            return frame_from_rows(rows, cols, types)

        return self.governor.retry(lambda: self._call("sample", run), "sample")

    def _cancel_cursor(self, cur: Any) -> Any:
        def cancel() -> None:
            prep = getattr(cur, "_prep", None)
            if prep is not None:
                prep.cancel()

        return cancel


register("jdbc", JdbcConfig, JdbcSource)
