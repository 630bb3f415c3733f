"""Connector read benchmarks (framework-free): rows/s and peak memory growth of
each read path over the same table, side by side in one run, as ratios to the
native driver read (QUALITY.md P5). ``manage.py bench`` wires this up.

Usage::

    from connectors.bench import bench_sources
    result = bench_sources(sqlite_path="pas.db", table="PA_PatMas",
                           order_key="PAPMI_RowId",
                           pg={"dbname": "pas", "user": "postgres"})
"""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psutil

__all__ = ["bench_sources", "build_bench_table", "measure"]

JARS = {
    "sqlite": "/usr/share/java/sqlite-jdbc.jar",
    "postgresql": "/usr/share/java/postgresql.jar",
}


def measure(
    fn: Callable[[], Iterable[Any]], *, sample_s: float = 0.005
) -> dict[str, Any]:
    """Return rows, seconds, rows/s and peak RSS growth (MiB) of consuming fn()."""
    proc = psutil.Process(os.getpid())
    gc.collect()
    base = proc.memory_info().rss
    peak = base
    stop = threading.Event()

    def sampler() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(sample_s)

    t = threading.Thread(target=sampler, daemon=True)
    t.start()
    rows = 0
    t0 = time.perf_counter()
    try:
        for chunk in fn():
            rows += len(chunk)
    finally:
        elapsed = time.perf_counter() - t0
        stop.set()
        t.join()
    peak = max(peak, proc.memory_info().rss)
    return {
        "rows": rows,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows / elapsed) if elapsed else 0,
        "peak_rss_growth_mib": round((peak - base) / 2**20, 1),
    }


def _sqlite_native(path: str, table: str, cols: Sequence[str], key: str, size: int):
    def run() -> Iterable[list[Any]]:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        sel = ", ".join(f'"{c}"' for c in cols)
        cur = conn.execute(f'SELECT {sel} FROM "{table}" ORDER BY "{key}"')
        while rows := cur.fetchmany(size):
            yield rows
        conn.close()

    return run


def _psycopg_native(pg: dict[str, Any], table: str, cols: Sequence[str], key: str,
                    size: int):  # fmt: skip
    def run() -> Iterable[list[Any]]:
        import psycopg

        conn = psycopg.connect(
            host=pg.get("host", "127.0.0.1"),
            port=pg.get("port", 5432),
            dbname=pg["dbname"],
            user=pg["user"],
            password=pg.get("password_plain"),
        )
        schema = pg.get("schema", "public")
        sel = ", ".join(f'"{c}"' for c in cols)
        with conn.cursor(name="bench") as cur:
            cur.execute(f'SELECT {sel} FROM "{schema}"."{table}" ORDER BY "{key}"')
            while rows := cur.fetchmany(size):
                yield rows
        conn.close()

    return run


def _kind_reader(kind: str, cfg: dict[str, Any], table: str, cols: Sequence[str],
                 key: str, size: int):  # fmt: skip
    def run() -> Iterable[Any]:
        from connectors.kinds import get_kind

        src = get_kind(kind).open(cfg, name=f"bench-{kind}")
        try:
            yield from src.read_chunks(table, list(cols), key, chunk_size=size)
        finally:
            src.close()

    return run


def bench_sources(
    *,
    sqlite_path: str,
    table: str,
    order_key: str,
    pg: dict[str, Any] | None = None,
    columns: Sequence[str] | None = None,
    chunk_size: int = 50_000,
    include: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Return {path: {rows, seconds, rows_per_s, peak_rss_growth_mib, ratio}}.

    ``pg`` (dbname, user, optional host/port/schema/password reference) points
    at a PostgreSQL copy of the same table; without it the PostgreSQL paths
    are skipped. Ratios are against the native read of the same backend.
    """
    if columns is None:
        conn = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
        columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
        conn.close()
    cols = list(columns)
    gov = {"page_size": max(chunk_size, 50_000), "statement_timeout_s": 3600}
    paths: dict[str, tuple[str, Callable[[], Iterable[Any]]]] = {
        "sqlite3_native": ("sqlite3_native",
                           _sqlite_native(sqlite_path, table, cols, order_key, chunk_size)),
        "sqlite_kind": ("sqlite3_native", _kind_reader(
            "sqlite", {"path": sqlite_path, "governor": gov}, table, cols, order_key,
            chunk_size)),
        "odbc_sqlite3": ("sqlite3_native", _kind_reader(
            "odbc", {"driver": "SQLite3", "database": sqlite_path, "governor": gov},
            table, cols, order_key, chunk_size)),
        "jdbc_sqlite_bulk": ("sqlite3_native", _kind_reader(
            "jdbc", {"driver_class": "org.sqlite.JDBC", "url": f"jdbc:sqlite:{sqlite_path}",
                     "jars": [JARS["sqlite"]], "governor": gov},
            table, cols, order_key, chunk_size)),
    }  # fmt: skip
    if pg is not None:
        pgcfg = {k: v for k, v in pg.items() if k != "password_plain"}
        host, port = pg.get("host", "127.0.0.1"), pg.get("port", 5432)
        auth = {"user": pg["user"], "password": pg.get("password")}
        paths.update(
            {
                "psycopg_native": ("psycopg_native",
                                   _psycopg_native(pg, table, cols, order_key, chunk_size)),
                "postgresql_kind": ("psycopg_native", _kind_reader(
                    "postgresql", {**pgcfg, "governor": gov}, table, cols, order_key,
                    chunk_size)),
                "odbc_postgresql": ("psycopg_native", _kind_reader(
                    "odbc", {"driver": "PostgreSQL Unicode", "host": host, "port": port,
                             "database": pg["dbname"], **auth, "governor": gov,
                             "schema": pg.get("schema", "public")},
                    table, cols, order_key, chunk_size)),
                "jdbc_postgresql_bulk": ("psycopg_native", _kind_reader(
                    "jdbc", {"driver_class": "org.postgresql.Driver",
                             "url": f"jdbc:postgresql://{host}:{port}/{pg['dbname']}",
                             "jars": [JARS["postgresql"]], **auth, "governor": gov,
                             "schema": pg.get("schema", "public")},
                    table, cols, order_key, chunk_size)),
            }
        )  # fmt: skip
    results: dict[str, Any] = {}
    for name, (_, fn) in paths.items():
        if include is not None and name not in include and not name.endswith("_native"):
            continue
        results[name] = measure(fn)
    for name, (baseline, _) in paths.items():
        if name in results and baseline in results and name != baseline:
            base = results[baseline]["rows_per_s"] or 1
            results[name]["ratio_to_native"] = round(
                results[name]["rows_per_s"] / base, 2
            )
    return {"table": table, "chunk_size": chunk_size, "columns": cols, "paths": results}


def build_bench_table(sqlite_path: str, rows: int, *, table: str = "PA_PatMas") -> None:
    """Write a legacy-PAS-shaped patient table of ``rows`` rows into SQLite."""
    conn = sqlite3.connect(sqlite_path)
    conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    conn.execute(
        f'CREATE TABLE "{table}" ("PAPMI_RowId" INTEGER PRIMARY KEY, "PAPMI_No" TEXT, '
        '"PAPMI_NHSNo" TEXT, "PAPMI_Surname" TEXT, "PAPMI_DOB" INTEGER, '
        '"PAPMI_Sex_DR" TEXT, "PAPMI_Postcode" TEXT, "PAPMI_DeceasedDate" TEXT)'
    )
    sexes = ("M", "F", "U")

    def gen() -> Iterable[tuple[Any, ...]]:
        for i in range(1, rows + 1):
            yield (
                i,
                f"RXX{i:07d}",
                f"{4000000000 + i * 7:010d}" if i % 30 else None,
                f"Surname{i % 5000}",
                40000 + i % 30000,
                sexes[i % 3],
                f"LS{i % 30} {i % 9}AB",
                "" if i % 50 else "2024-01-01",
            )

    conn.executemany(f'INSERT INTO "{table}" VALUES (?, ?, ?, ?, ?, ?, ?, ?)', gen())
    conn.commit()
    conn.close()
