"""Fixture data and backends for the connector tests (framework-free).

``FIXTURE`` is a small slice of the legacy PAS (docs/legacy-pas.md) with the
shapes the profiler must recognise: NHS numbers (some spaced, NULL and ''),
$HOROLOG dates, ISO and UK dates, postcodes, low-cardinality codes with values
below the small-number threshold. ``backend(name)`` loads exactly these rows
into a fresh, uniquely named database of one real backend, creates a
read-only account where the engine has accounts, and returns the kind and
config that read it back; everything is dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
JARS = {
    "sqlite": "/usr/share/java/sqlite-jdbc.jar",
    "postgresql": "/usr/share/java/postgresql.jar",
    "h2": "/usr/share/java/h2.jar",
}


def pytest_configure(config: pytest.Config) -> None:
    """Register django_db when pytest-django is off (-p no:django), so the
    Django test files can still be collected and then deselected by -m."""
    config.addinivalue_line("markers", "django_db: needs the Django test database")


# ------------------------------------------------------------------ the data


def _nhs(seed: int) -> str:
    """Return a Modulus 11 valid NHS number derived from ``seed``."""
    n = 400_000_000 + seed * 7919
    while True:
        digits = [int(d) for d in f"{n:09d}"]
        check = (
            11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        )
        check = 0 if check == 11 else check
        if check != 10:
            return f"{n:09d}{check}"
        n += 1


def _horolog(d: dt.date) -> int:
    return (d - dt.date(1840, 12, 31)).days


POSTCODES = [
    "LS1 4AP",
    "ls14ap",
    "M1 1AE ",
    "B33 8TH",
    "CR2 6XH",
    "DN55 1PT",
    "W1A 0AX",
]
SEX = ["M"] * 30 + ["F"] * 25 + ["U"] * 3 + ["X"] * 2

PAT_COLUMNS = [
    ("PAPMI_RowId", "integer"),
    ("PAPMI_NHSNo", "text"),
    ("PAPMI_Surname", "text"),
    ("PAPMI_DOB", "integer"),
    ("PAPMI_Sex_DR", "text"),
    ("PAPMI_Postcode", "text"),
    ("PAPMI_DeceasedDate", "text"),
]
ADM_COLUMNS = [
    ("PAADM_RowId", "integer"),
    ("PAADM_PAPMI_DR", "integer"),
    ("PAADM_AdmDate", "text"),
    ("PAADM_DischDate", "integer"),
    ("PAADM_AdmMethod", "text"),
]


def _patients() -> list[tuple[Any, ...]]:
    rows = []
    for i in range(1, 61):
        nhs: str | None = _nhs(i)
        if i % 4 == 0:
            nhs = f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"  # 3 3 4 spacing
        if i in (7, 19, 33):
            nhs = None
        if i in (12, 48):
            nhs = ""
        dob = _horolog(dt.date(1930, 1, 1) + dt.timedelta(days=397 * i))
        dec: str | None = None
        if i % 10 == 0:
            dec = (dt.date(2020, 1, 1) + dt.timedelta(days=i)).isoformat()
        elif i % 7 == 0:
            dec = ""
        rows.append(
            (
                i,
                nhs,
                f"Surname{i:02d}" + (" " if i % 5 == 0 else ""),
                dob,
                SEX[(i * 7) % 60],
                POSTCODES[i % len(POSTCODES)],
                dec,
            )
        )
    return rows


def _admissions() -> list[tuple[Any, ...]]:
    rows = []
    methods = ["11", "12", "21", "22", "2A"]
    for i in range(1, 81):
        adm = dt.date(2024, 1, 1) + dt.timedelta(days=3 * i)
        disch = _horolog(adm + dt.timedelta(days=i % 9)) if i % 6 else None
        rows.append(
            (i, (i * 13) % 60 + 1, adm.strftime("%d/%m/%Y"), disch, methods[i % 5])
        )
    return rows


FIXTURE: dict[str, tuple[list[tuple[str, str]], list[tuple[Any, ...]]]] = {
    "PA_PatMas": (PAT_COLUMNS, _patients()),
    "PA_Adm": (ADM_COLUMNS, _admissions()),
}
PKS = {"PA_PatMas": "PAPMI_RowId", "PA_Adm": "PAADM_RowId"}
FKS = {"PA_Adm": ("PAADM_PAPMI_DR", "PA_PatMas", "PAPMI_RowId")}


# ---------------------------------------------------------------- backends


@dataclass
class Backend:
    """A loaded backend: the kind and config to read it, plus its teardown."""

    name: str
    kind: str
    config: dict[str, Any]
    caps: frozenset[str] = frozenset({"pk", "fk", "sql"})
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def open(self, name: str | None = None) -> Any:
        from connectors.kinds import get_kind

        return get_kind(self.kind).open(self.config, name=name or f"cx-{self.name}")


def _ddl(table: str, cols: list[tuple[str, str]], types: dict[str, str], q: str) -> str:
    parts = []
    for c, t in cols:
        col = f"{q}{c}{q} {types[t]}"
        if PKS[table] == c:
            col += " NOT NULL PRIMARY KEY"
        parts.append(col)
    if table in FKS:
        c, rt, rc = FKS[table]
        parts.append(f"FOREIGN KEY ({q}{c}{q}) REFERENCES {q}{rt}{q} ({q}{rc}{q})")
    return f"CREATE TABLE {q}{table}{q} ({', '.join(parts)})"


def load_sqlite(path: Path) -> Path:
    """Write the fixture into a SQLite file and return its path."""
    conn = sqlite3.connect(path)
    for table, (cols, rows) in FIXTURE.items():
        conn.execute(_ddl(table, cols, {"integer": "INTEGER", "text": "TEXT"}, '"'))
        marks = ", ".join("?" for _ in cols)
        conn.executemany(f'INSERT INTO "{table}" VALUES ({marks})', rows)
    conn.commit()
    conn.close()
    return path


def load_csv(folder: Path) -> Path:
    """Write one ``<table>.csv`` per table: NULL unquoted-empty, '' quoted."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, (cols, rows) in FIXTURE.items():
        with open(folder / f"{table}.csv", "w", encoding="utf-8", newline="") as fh:
            fh.write(",".join(c for c, _ in cols) + "\n")
            for row in rows:
                cells = []
                for v in row:
                    if v is None:
                        cells.append("")
                    elif isinstance(v, str):
                        cells.append('"' + v.replace('"', '""') + '"')
                    else:
                        cells.append(str(v))
                fh.write(",".join(cells) + "\n")
    return folder


def load_json(folder: Path) -> Path:
    """Write PA_PatMas as a JSON array and PA_Adm as JSON Lines."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, (cols, rows) in FIXTURE.items():
        objs = [dict(zip([c for c, _ in cols], r, strict=True)) for r in rows]
        if table == "PA_PatMas":
            (folder / f"{table}.json").write_text(json.dumps(objs, indent=1))
        else:
            (folder / f"{table}.jsonl").write_text(
                "\n".join(json.dumps(o) for o in objs) + "\n"
            )
    return folder


def pg_admin(dbname: str = "test") -> Any:
    import psycopg

    return psycopg.connect(
        f"host=127.0.0.1 port=5432 user=postgres dbname={dbname}", autocommit=True
    )


def load_postgres(tag: str) -> tuple[str, str, str, Callable[[], None]]:
    """Create database + SELECT-only role; return (db, role, password, cleanup)."""
    db, role, pw = f"cx_{tag}", f"cx_ro_{tag}", f"pw-{tag}"
    admin = pg_admin()
    admin.execute(f"CREATE DATABASE {db}")
    admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{pw}'")
    conn = pg_admin(db)
    for table, (cols, rows) in FIXTURE.items():
        conn.execute(_ddl(table, cols, {"integer": "integer", "text": "text"}, '"'))
        with conn.cursor().copy(f'COPY "{table}" FROM STDIN') as cp:
            for r in rows:
                cp.write_row(r)
    conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
    conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    conn.close()

    def cleanup() -> None:
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()

    return db, role, pw, cleanup


def mariadb_admin(db: str | None = None) -> Any:
    import pymysql

    return pymysql.connect(**MARIADB, database=db, autocommit=True)


def load_mariadb(tag: str) -> tuple[str, str, str, Callable[[], None]]:
    """Create database + SELECT-only user; return (db, user, password, cleanup)."""
    db, user, pw = f"cx_{tag}", f"cx_ro_{tag}", f"pw-{tag}"
    admin = mariadb_admin()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'")
        cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{pw}'")
        cur.execute(f"GRANT SELECT ON {db}.* TO '{user}'@'%'")
        cur.execute(f"GRANT SELECT ON {db}.* TO '{user}'@'localhost'")
        cur.execute(f"USE {db}")
        for table, (cols, rows) in FIXTURE.items():
            cur.execute(
                _ddl(table, cols, {"integer": "INT", "text": "VARCHAR(100)"}, "`")
                + " ENGINE=InnoDB"
            )
            marks = ", ".join("%s" for _ in cols)
            cur.executemany(f"INSERT INTO `{table}` VALUES ({marks})", rows)

    def cleanup() -> None:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {db}")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")
        admin.close()

    return db, user, pw, cleanup


def load_h2(path: Path) -> str:
    """Create an H2 file database through JDBC; return its base path."""
    from connectors.kinds.jdbc import java_connect

    base = str(path / "pas")
    conn = java_connect(
        "org.h2.Driver", f"jdbc:h2:file:{base}", [JARS["h2"]], {"user": "sa"}
    )
    try:
        stmt = conn.createStatement()
        for table, (cols, rows) in FIXTURE.items():
            stmt.execute(
                _ddl(table, cols, {"integer": "INTEGER", "text": "VARCHAR(200)"}, '"')
            )
            marks = ", ".join("?" for _ in cols)
            ps = conn.prepareStatement(f'INSERT INTO "{table}" VALUES ({marks})')
            for r in rows:
                for i, v in enumerate(r, start=1):
                    if v is None:
                        ps.setNull(i, 4 if cols[i - 1][1] == "integer" else 12)
                    elif isinstance(v, int):
                        ps.setLong(i, v)
                    else:
                        ps.setString(i, v)
                ps.addBatch()
            ps.executeBatch()
            ps.close()
        stmt.close()
    finally:
        conn.close()
    return base


BACKENDS = [
    "csv",
    "json",
    "sqlite",
    "postgresql",
    "odbc-sqlite3",
    "odbc-postgresql",
    "odbc-mariadb",
    "jdbc-sqlite",
    "jdbc-postgresql",
    "jdbc-h2",
]


def make_backend(name: str, tmp: Path) -> Backend:
    """Load the fixture into backend ``name`` and return how to read it."""
    tag = uuid.uuid4().hex[:8]
    if name == "csv":
        return Backend(name, "csv", {"path": str(load_csv(tmp / "csv"))}, frozenset())
    if name == "json":
        return Backend(
            name, "json", {"path": str(load_json(tmp / "json"))}, frozenset()
        )
    if name in ("sqlite", "odbc-sqlite3", "jdbc-sqlite"):
        path = load_sqlite(tmp / "pas.db")
        if name == "sqlite":
            return Backend(name, "sqlite", {"path": str(path)})
        if name == "odbc-sqlite3":
            return Backend(name, "odbc", {"driver": "SQLite3", "database": str(path)})
        return Backend(
            name,
            "jdbc",
            {
                "driver_class": "org.sqlite.JDBC",
                "url": f"jdbc:sqlite:{path}",
                "jars": [JARS["sqlite"]],
            },
        )
    if name in ("postgresql", "odbc-postgresql", "jdbc-postgresql"):
        db, role, pw, cleanup = load_postgres(tag)
        os.environ[f"CX_PW_{tag}"] = pw
        ref = f"env:CX_PW_{tag}"
        if name == "postgresql":
            cfg: dict[str, Any] = {"dbname": db, "user": role, "password": ref}
        elif name == "odbc-postgresql":
            cfg = {
                "driver": "PostgreSQL Unicode",
                "host": "127.0.0.1",
                "port": 5432,
                "database": db,
                "user": role,
                "password": ref,
            }
        else:
            cfg = {
                "driver_class": "org.postgresql.Driver",
                "url": f"jdbc:postgresql://127.0.0.1:5432/{db}",
                "jars": [JARS["postgresql"]],
                "user": role,
                "password": ref,
                "schema": "public",
            }
        kind = name.split("-")[0] if "-" in name else "postgresql"
        b = Backend(name, kind, cfg, extra={"db": db, "role": role})
        b.cleanup.append(cleanup)
        return b
    if name == "odbc-mariadb":
        db, user, pw, cleanup = load_mariadb(tag)
        os.environ[f"CX_PW_{tag}"] = pw
        b = Backend(
            name,
            "odbc",
            {
                "driver": "MariaDB Unicode",
                "host": "127.0.0.1",
                "port": 3306,
                "database": db,
                "user": user,
                "password": f"env:CX_PW_{tag}",
            },
            extra={"db": db, "user": user},
        )
        b.cleanup.append(cleanup)
        return b
    if name == "jdbc-h2":
        base = load_h2(tmp)
        return Backend(
            name,
            "jdbc",
            {
                "driver_class": "org.h2.Driver",
                "url": f"jdbc:h2:file:{base};ACCESS_MODE_DATA=r",
                "jars": [JARS["h2"]],
                "user": "sa",
                "schema": "PUBLIC",
            },
        )
    raise ValueError(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every kind x real backend, loaded with FIXTURE."""
    b = make_backend(request.param, tmp_path)
    try:
        yield b
    finally:
        for fn in reversed(b.cleanup):
            fn()


# Modules that need Django at import time: collected only when pytest-django is
# on (always, in `make test`); the framework-free pass (-p no:django) cannot
# import them, and is not where they are meant to run.
DJANGO_MODULES = {"test_conn_canary.py", "test_conn_querylog.py"}


def pytest_ignore_collect(collection_path: Any, config: Any) -> bool | None:
    if collection_path.name in DJANGO_MODULES and not config.pluginmanager.hasplugin(
        "django"
    ):
        return True
    return None
