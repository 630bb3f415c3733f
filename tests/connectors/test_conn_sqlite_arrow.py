"""The sqlite kind's Arrow key pages (ADBC) give exactly what sqlite3 gives.

Keyset pages over the primary key are fetched as Arrow; everything else, and
any page whose values do not fit one type per column (SQLite's dynamic
typing), goes through sqlite3. The two paths must agree value for value and
dtype for dtype, or the engine would map a source differently depending on
how it was read.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from connectors.kinds import get_kind
from migration.engine.errors import EngineError
from migration.legacypas import generate

from .conftest import load_sqlite


def _both(path: Path) -> tuple[Any, Any]:
    arrow = get_kind("sqlite").open({"path": str(path)}, name="arrow")
    plain = get_kind("sqlite").open(
        {"path": str(path), "arrow_pages": False}, name="plain"
    )
    return arrow, plain


def _read(src: Any, table: str, key: str, chunk: int, **kw: Any) -> pd.DataFrame:
    cols = [c.name for c in src._table_info(table).columns]
    frames = list(src.read_chunks(table, cols, key, chunk_size=chunk, **kw))
    assert frames, f"no page read from {table}"
    return pd.concat(frames, ignore_index=True)


def test_a_generated_legacy_pas_reads_the_same_through_both_paths(
    tmp_path: Path,
) -> None:
    # A high defect rate: wrong types, blanks and junk codes are in the source.
    generate(patients=1500, seed=11, out=str(tmp_path), fmt="sqlite", defect_rate=0.2)
    db = tmp_path / "legacy_pas.sqlite3"
    arrow, plain = _both(db)
    tables = [t for t in arrow.discover() if len(t.primary_key) == 1]
    assert {t.name for t in tables} >= {"PA_PatMas", "PA_Adm", "RB_Appointment"}
    for t in tables:
        a = _read(arrow, t.name, t.primary_key[0], 700)
        b = _read(plain, t.name, t.primary_key[0], 700)
        pd.testing.assert_frame_equal(a, b, obj=t.name)
    assert arrow.arrow_page_reads >= len(tables)
    assert plain.arrow_page_reads == 0
    # Resuming after a key and stopping at one read the same range too.
    a = _read(arrow, "PA_PatMas", "PAPMI_RowId", 400, after_key=200, upto_key=1100)
    b = _read(plain, "PA_PatMas", "PAPMI_RowId", 400, after_key=200, upto_key=1100)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 900
    # Past the last key: no page at all, on either path.
    cols = [c.name for c in arrow._table_info("PA_PatMas").columns]
    for src in (arrow, plain):
        assert list(src.read_chunks("PA_PatMas", cols, "PAPMI_RowId", 10**9)) == []


def _mixed(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER, r REAL, s TEXT, e TEXT)"
    )
    rows: list[tuple[Any, ...]] = [(i, i, i, f"v{i}", None) for i in range(1, 3001)]
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    # SQLite keeps what does not fit the column's affinity as it came.
    conn.execute("INSERT INTO t VALUES (3001, 'x12', 'n/a', 7, NULL)")
    conn.execute("INSERT INTO t VALUES (3002, 2.5, 1.25, NULL, NULL)")
    conn.commit()
    conn.close()
    return path


def test_a_page_of_mixed_types_is_read_again_through_sqlite3(tmp_path: Path) -> None:
    arrow, plain = _both(_mixed(tmp_path / "m.db"))
    a = _read(arrow, "t", "id", 1000)
    b = _read(plain, "t", "id", 1000)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 3002
    # The last page holds the misfits: its values are kept, not dropped.
    assert a.loc[a["id"] == 3001, "n"].iloc[0] == "x12"
    assert a.loc[a["id"] == 3002, "n"].iloc[0] == "2.5"
    assert arrow.arrow_page_fallbacks == 1
    assert arrow.arrow_page_reads == 3
    # Whole numbers in a REAL column and an all-NULL column keep their
    # declared types on the Arrow pages, as through sqlite3.
    first = _read(arrow, "t", "id", 1000, upto_key=1000)
    assert str(first["r"].dtype) == "Float64"
    assert str(first["e"].dtype) == str(b["e"].dtype)


def test_values_the_driver_would_convert_its_own_way_go_through_sqlite3(
    tmp_path: Path,
) -> None:
    """The driver turns a REAL beside text into ``2.500000e+00`` and text
    beside a BLOB into bytes; sqlite3's path keeps Python's forms. Such pages
    must not be taken from the driver."""
    db = tmp_path / "u.db"
    conn = sqlite3.connect(db)
    # STRING has NUMERIC affinity in SQLite: '0123' is stored as 123.
    conn.execute("CREATE TABLE u (id INTEGER PRIMARY KEY, code STRING, note TEXT)")
    conn.executemany(
        "INSERT INTO u VALUES (?, ?, ?)",
        [(1, "abc", "x"), (2, 2.5, b"\xffz"), (3, "0123", "y")],
    )
    conn.commit()
    conn.close()
    arrow, plain = _both(db)
    a = _read(arrow, "u", "id", 10)
    b = _read(plain, "u", "id", 10)
    pd.testing.assert_frame_equal(a, b)
    assert list(a["code"]) == ["abc", "2.5", "123"]
    assert arrow.arrow_page_reads == 0
    assert arrow.arrow_page_fallbacks == 1


def test_only_pages_over_the_primary_key_skip_sqlite3(tmp_path: Path) -> None:
    """Pages ordered by another column are not index-bounded: they stay on
    sqlite3, where the governor can interrupt a statement."""
    arrow, plain = _both(_mixed(tmp_path / "m.db"))
    a = _read(arrow, "t", "s", 1000)
    b = _read(plain, "t", "s", 1000)
    pd.testing.assert_frame_equal(a, b)
    assert arrow.arrow_page_reads == 0
    # Ad-hoc queries, samples and counts never take the Arrow path.
    assert arrow.count("t") == 3002
    assert len(arrow.sample("t", n=5)) == 5
    assert arrow.arrow_page_reads == 0


def test_the_arrow_connection_is_read_only(tmp_path: Path) -> None:
    db = load_sqlite(tmp_path / "s.db")
    arrow, _ = _both(db)
    _read(arrow, "PA_PatMas", "PAPMI_RowId", 50)  # opens the Arrow connection
    assert arrow._arrow_conn is not None
    with pytest.raises(Exception, match=r"readonly|read-only|query_only"):
        arrow._arrow_page("CREATE TABLE intruder (a)")
    arrow.close()
    assert arrow._arrow_conn is None
    assert "intruder" not in {t.name for t in plain_tables(db)}


def plain_tables(db: Path) -> list[Any]:
    return get_kind("sqlite").open({"path": str(db)}, name="check").discover()


def test_a_missing_file_is_a_clear_error_on_the_arrow_path(tmp_path: Path) -> None:
    db = load_sqlite(tmp_path / "s.db")
    arrow, _ = _both(db)
    arrow._table_info("PA_PatMas")  # catalog read while the file is there
    db.unlink()
    with pytest.raises(EngineError, match="does not exist"):
        _read(arrow, "PA_PatMas", "PAPMI_RowId", 50)
