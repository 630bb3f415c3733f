"""``generate()``: the public entry point of the legacy PAS generator."""

from __future__ import annotations

import os
import time
from datetime import date

from .errors import GeneratorError
from .generator import (
    BATCH_PATIENTS,
    MAX_PATIENTS,
    Context,
    build_reference,
    generate_batch,
    iso,
    reference_rows,
)
from .manifest import Manifest
from .pools import build_pools
from .schema import TABLES, TABLES_BY_NAME
from .writers import (
    DEFAULT_MARIADB_DSN,
    DEFAULT_PG_DSN,
    CSVWriter,
    MariaDBWriter,
    PostgresWriter,
    SQLiteWriter,
    Writer,
)

FORMATS = ("sqlite", "csv", "postgresql", "mariadb")
DEFAULT_EXTRACT_DATE = date(2026, 11, 1)
DEFAULT_SCHEMA = "legacy_pas"
MANIFEST_FILE = "manifest.json"


def _check_args(
    patients: object, seed: object, fmt: str, defect_rate: object, extract: object
) -> date:
    # bool is an int subclass; True patients is a mistake, not 1.
    if not isinstance(patients, int) or isinstance(patients, bool) or patients <= 0:
        raise GeneratorError(f"patients must be a positive integer, got {patients!r}")
    if patients > MAX_PATIENTS:
        raise GeneratorError(f"patients must be at most {MAX_PATIENTS}, got {patients}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise GeneratorError(f"seed must be a non-negative integer, got {seed!r}")
    if fmt not in FORMATS:
        raise GeneratorError(
            f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}"
        )
    if not isinstance(defect_rate, int | float) or not 0 <= defect_rate <= 0.5:
        raise GeneratorError(
            f"defect rate must be between 0 and 0.5, got {defect_rate!r}"
        )
    if isinstance(extract, str):
        try:
            extract = date.fromisoformat(extract)
        except ValueError:
            raise GeneratorError(
                f"extract date must be YYYY-MM-DD, got {extract!r}"
            ) from None
    if not isinstance(extract, date) or not date(1950, 1, 1) <= extract <= date(
        2199, 12, 31
    ):
        raise GeneratorError(
            f"extract date must be a date between 1950 and 2199, got {extract!r}"
        )
    return extract


def _writer(fmt: str, out: str, dsn: str | None, schema: str) -> Writer:
    if fmt == "sqlite":
        return SQLiteWriter(out)
    if fmt == "csv":
        return CSVWriter(out)
    if fmt == "postgresql":
        return PostgresWriter(dsn or DEFAULT_PG_DSN, schema)
    return MariaDBWriter(dsn or DEFAULT_MARIADB_DSN, schema)


def generate(
    patients: int,
    seed: int,
    out: str,
    fmt: str = "sqlite",
    defect_rate: float = 0.0,
    extract_date: date | str = DEFAULT_EXTRACT_DATE,
    dsn: str | None = None,
    *,
    schema: str = DEFAULT_SCHEMA,
    manifest_path: str | None = None,
) -> Manifest:
    """Write a legacy PAS of ``patients`` patients and return its Manifest.

    ``out`` is a directory: it receives ``legacy_pas.sqlite3`` (sqlite) or one
    ``<table>.csv`` per table (csv), and ``manifest.json`` for every format
    (``manifest_path`` overrides the manifest location). For ``postgresql`` and
    ``mariadb`` the tables go to schema/database ``schema`` on the server named
    by ``dsn`` (defaults: local PostgreSQL / MariaDB). Same arguments give the
    same output. Raises GeneratorError for bad arguments or an unusable target.
    """
    started = time.monotonic()
    extract = _check_args(patients, seed, fmt, defect_rate, extract_date)
    if not out:
        raise GeneratorError("an output directory is required (out)")
    manifest_path = manifest_path or os.path.join(out, MANIFEST_FILE)
    manifest_dir = os.path.dirname(os.path.abspath(manifest_path))
    pools = build_pools(seed)

    try:
        ctx = Context(
            seed=seed,
            patients=patients,
            defect_rate=float(defect_rate),
            extract=extract.toordinal(),
            pools=pools,
            ref=build_reference(seed, pools),
        )
    except ValueError as e:
        raise GeneratorError(str(e)) from None
    manifest = Manifest(
        seed=seed,
        patients=patients,
        defect_rate=float(defect_rate),
        extract_date=iso(ctx.extract),
        format=fmt,
        tables={t.name: 0 for t in TABLES},
    )
    writer = _writer(fmt, out, dsn, schema)
    if not os.path.isdir(manifest_dir):
        try:
            os.makedirs(manifest_dir, exist_ok=True)
        except OSError as e:
            raise GeneratorError(f"cannot create {manifest_dir}: {e}") from e
    try:
        writer.open()
        for name, rows in reference_rows(ctx).items():
            writer.write(TABLES_BY_NAME[name], rows)
            manifest.tables[name] += len(rows)
        next_ids = (1, 1, 1)
        for batch, first in enumerate(range(1, patients + 1, BATCH_PATIENTS)):
            count = min(BATCH_PATIENTS, patients + 1 - first)
            res = generate_batch(ctx, batch, first, count, *next_ids)
            next_ids = (res.next_spell, res.next_stay, res.next_appt)
            for name, rows in res.rows.items():
                writer.write(TABLES_BY_NAME[name], rows)
                manifest.tables[name] += len(rows)
            manifest.add_defects(res.defects)
        # An old manifest must not sit beside new (or half-moved) data.
        if os.path.exists(manifest_path):
            os.unlink(manifest_path)
        writer.commit()
        manifest.target = writer.target
        manifest.write(manifest_path)
    except GeneratorError:
        writer.abort()
        raise
    except OSError as e:
        writer.abort()
        raise GeneratorError(f"cannot write output to {out}: {e}") from e
    except Exception as e:
        writer.abort()
        if type(e).__module__.split(".")[0] in ("psycopg", "pymysql"):
            raise GeneratorError(
                f"database error while writing {writer.target}: {e}"
            ) from e
        raise
    manifest.seconds = time.monotonic() - started
    return manifest
