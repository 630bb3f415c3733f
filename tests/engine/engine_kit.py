"""Helpers of the engine tests: a tiny legacy PAS, ledger assertion, sources.

Imported by the tests as ``engine_kit`` (conftest.py puts this directory on
sys.path: pytest runs with --import-mode=importlib).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg

from connectors.kinds.sqlite import SqliteConfig, SqliteSource
from migration.engine.report import RunReport

PG_DSN = os.environ.get("PAS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def pg_available() -> bool:
    try:
        psycopg.connect(PG_DSN, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


def assert_ledger(report: RunReport) -> None:
    """Every table: source = loaded + rejected + excluded, and the run says so."""
    assert report.tables, "a run report without tables"
    for t in report.tables:
        assert t.source_rows == t.rows_loaded + t.rows_rejected + t.rows_excluded, t
        assert t.rows_read == t.source_rows, t
        assert t.ledger_balanced, t
    assert report.ledger_balanced


class CrashAfter:
    """A source that dies (like a dropped connection) after ``n`` chunks."""

    def __init__(self, inner: Any, n: int) -> None:
        self.inner = inner
        self.left = n

    def discover(self) -> Any:
        return self.inner.discover()

    def count(self, table: str) -> int:
        return int(self.inner.count(table))

    def read_chunks(
        self, table: str, columns: Sequence[str], order_key: str, **kw: Any
    ) -> Iterator[pd.DataFrame]:
        for chunk in self.inner.read_chunks(table, columns, order_key, **kw):
            if self.left <= 0 and table != "PAS_Extract":
                raise RuntimeError("connection reset by peer")
            self.left -= 1
            yield chunk


def write_sqlite(path: Path, tables: dict[str, pd.DataFrame]) -> Path:
    """Write DataFrames as tables of a SQLite file (first column = key)."""
    conn = sqlite3.connect(path)
    try:
        for name, df in tables.items():
            df.to_sql(name, conn, index=False, if_exists="replace")
    finally:
        conn.close()
    return path


def sqlite_source(path: Path | str) -> SqliteSource:
    """Return the real sqlite connector kind over ``path``."""
    return SqliteSource(SqliteConfig(path=str(path)))


def target_rows(sink: Any, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """Return the published rows of ``table`` sorted (for before/after checks)."""
    cols = ", ".join(f'"{c}"' for c in columns)
    return sorted(
        sink.query(f"SELECT {cols} FROM {sink.qualified(table)}"),
        key=lambda r: tuple(str(x) for x in r),
    )


# --- a tiny legacy PAS written row by row (docs/legacy-pas.md shapes) ----------

HOROLOG_EPOCH = pd.Timestamp("1840-12-31")


def horolog(day: str) -> int:
    """Return the Caché $HOROLOG day number of an ISO date."""
    return int((pd.Timestamp(day) - HOROLOG_EPOCH).days)


def uk(day: str) -> str:
    """Return an ISO date as DD/MM/YYYY."""
    return pd.Timestamp(day).strftime("%d/%m/%Y")


def patient(row_id: int, **kw: Any) -> dict[str, Any]:
    """Return a clean PA_PatMas row; keywords override columns (short names)."""
    base = {
        "PAPMI_RowId": row_id,
        "PAPMI_No": f"RXX{row_id:07d}",
        "PAPMI_NHSNo": None,
        "PAPMI_NHSNoStatus": "X",
        "PAPMI_Title": "Mr",
        "PAPMI_Surname": f"Surname{row_id}",
        "PAPMI_Forename": "Alex",
        "PAPMI_DOB": horolog("1970-01-01"),
        "PAPMI_Sex_DR": "M",
        "PAPMI_Ethnic_DR": "WBRI",
        "PAPMI_Address1": "1 High Street",
        "PAPMI_Address2": "",
        "PAPMI_City": "Leeds",
        "PAPMI_Postcode": "LS1 4AP",
        "PAPMI_GPPractice": "B86001",
        "PAPMI_DeceasedDate": None,
    }
    base.update({f"PAPMI_{k}": v for k, v in kw.items()})
    return base


def spell(
    row_id: int, pat: int, adm: str, disch: str | None, **kw: Any
) -> dict[str, Any]:
    """Return a clean PA_Adm row."""
    base = {
        "PAADM_RowId": row_id,
        "PAADM_AdmNo": f"IP{row_id + 10_000_000:08d}",
        "PAADM_PAPMI_DR": pat,
        "PAADM_AdmDate": uk(adm),
        "PAADM_AdmMethod": "WL",
        "PAADM_AdmSource": "HOME",
        "PAADM_DischDate": horolog(disch) if disch else None,
        "PAADM_DischMethod": "CLIN" if disch else "",
        "PAADM_DischDest": "HOME" if disch else None,
        "PAADM_Specialty": "GMED",
        "PAADM_Consultant_DR": "CP1",
    }
    base.update({f"PAADM_{k}": v for k, v in kw.items()})
    return base


def stay(row_id: int, spell_id: int, start: str, end: str | None) -> dict[str, Any]:
    """Return a clean PA_WardStay row."""
    return {
        "WS_RowId": row_id,
        "WS_PAADM_DR": spell_id,
        "WS_Ward_DR": "W1",
        "WS_StartDate": start,
        "WS_EndDate": end if end else "",
    }


def appt(row_id: int, pat: int, when: str, status: str, **kw: Any) -> dict[str, Any]:
    """Return a clean RB_Appointment row."""
    base = {
        "APPT_RowId": row_id,
        "APPT_PAPMI_DR": pat,
        "APPT_Clinic_DR": "C1",
        "APPT_DateTime": f"{when} 09:30:00",
        "APPT_Status": status,
        "APPT_Outcome": "FUAPP" if status in ("ATT", "LATE") else None,
        "APPT_Priority": "RTN",
        "APPT_Specialty": "GMED",
    }
    base.update({f"APPT_{k}": v for k, v in kw.items()})
    return base


def mini_pas(
    path: Path,
    patients: Sequence[dict[str, Any]],
    spells: Sequence[dict[str, Any]] = (),
    stays: Sequence[dict[str, Any]] = (),
    appts: Sequence[dict[str, Any]] = (),
    extract_date: str = "2026-11-01",
) -> Path:
    """Write a small legacy PAS SQLite file and return its path."""

    def frame(rows: Sequence[dict[str, Any]], like: dict[str, Any]) -> pd.DataFrame:
        return pd.DataFrame(list(rows), columns=list(like))

    tables = {
        "CT_Ward": pd.DataFrame(
            {
                "WARD_Code": ["W1", "W2"],
                "WARD_Desc": ["Ward 1", "Ward 2"],
                "WARD_Specialty": ["GMED", "CARD"],
            }
        ),
        "CT_Clinic": pd.DataFrame(
            {"CLN_Code": ["C1"], "CLN_Desc": ["Clinic 1"], "CLN_Specialty": ["GMED"]}
        ),
        "CT_CareProv": pd.DataFrame(
            {
                "CTPCP_Code": ["CP1"],
                "CTPCP_Desc": ["Dr One"],
                "CTPCP_GMCNo": ["C1234567"],
            }
        ),
        "PAS_Extract": pd.DataFrame(
            {"ExtractDate": [extract_date], "Seed": [0], "Generator": ["tests"]}
        ),
        "PA_PatMas": frame(patients, patient(0)),
        "PA_Adm": frame(spells, spell(0, 0, "2020-01-01", None)),
        "PA_WardStay": frame(stays, stay(0, 0, "2020-01-01", None)),
        "RB_Appointment": frame(appts, appt(0, 0, "2020-01-01", "DNA")),
    }
    return write_sqlite(path, tables)
