"""One conformance suite: every kind x real backend, the same fixture, the same
answers from check / discover / count / sample / read_chunks / profile."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from connectors.kinds.base import type_family
from migration.engine.errors import ReadOnlyViolation, TerminalError
from migration.engine.ports import Source

from .conftest import FIXTURE, Backend


def _values(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as plain Python tuples (NA -> None, numpy ints -> int)."""
    out = []
    for row in frame.astype(object).itertuples(index=False):
        out.append(tuple(None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)
                         for v in row))  # fmt: skip
    return out


def _expected(
    table: str, columns: list[str], lo: int = 0, hi: int = 10**9
) -> list[tuple]:
    cols, rows = FIXTURE[table]
    names = [c for c, _ in cols]
    idx = [names.index(c) for c in columns]
    return [tuple(r[i] for i in idx) for r in rows if lo < r[0] <= hi]


def test_check_reports_reachable_and_read_only(backend: Backend) -> None:
    src = backend.open()
    try:
        res = src.check()
        assert res.ok, res.problems
        assert res.reachable and res.authenticated
        assert res.read_only_session is True
        # Every fixture account/session is read-only: the account cannot write.
        assert res.can_write is False
        assert res.kind == backend.kind
    finally:
        src.close()


def test_is_a_source_port(backend: Backend) -> None:
    assert isinstance(backend.open(), Source)


def test_discover_tables_columns_keys_counts(backend: Backend) -> None:
    src = backend.open()
    try:
        tables = {t.name: t for t in src.discover()}
        assert {"PA_PatMas", "PA_Adm"} <= set(tables)
        for name, (cols, rows) in FIXTURE.items():
            t = tables[name]
            assert [c.name for c in t.columns] == [c for c, _ in cols]
            fams = [type_family(c.type) for c in t.columns]
            assert fams == [typ for _, typ in cols], [c.type for c in t.columns]
            assert t.row_count == len(rows) == src.count(name)
        if "pk" in backend.caps:
            assert tables["PA_PatMas"].primary_key == ("PAPMI_RowId",)
            rowid = tables["PA_PatMas"].columns[0]
            assert rowid.primary_key and not rowid.nullable
        if "fk" in backend.caps:
            (fk,) = tables["PA_Adm"].foreign_keys
            assert fk.columns == ("PAADM_PAPMI_DR",)
            assert fk.ref_table == "PA_PatMas"
            assert fk.ref_columns == ("PAPMI_RowId",)
    finally:
        src.close()


def test_read_chunks_full_table_in_key_order(backend: Backend) -> None:
    src = backend.open()
    try:
        cols = [c for c, _ in FIXTURE["PA_PatMas"][0]]
        chunks = list(src.read_chunks("PA_PatMas", cols, "PAPMI_RowId", chunk_size=25))
        assert [len(c) for c in chunks] == [25, 25, 10]
        got = [r for c in chunks for r in _values(c)]
        assert got == _expected("PA_PatMas", cols)
        # NULL and '' stay apart (Caché N/E columns).
        nhs = {r[0]: r[1] for r in got}
        assert nhs[7] is None and nhs[12] == ""
        assert str(chunks[0]["PAPMI_RowId"].dtype) == "Int64"
        assert str(chunks[0]["PAPMI_NHSNo"].dtype).startswith("str")
    finally:
        src.close()


def test_read_chunks_resume_after_key_and_upto_range(backend: Backend) -> None:
    src = backend.open()
    try:
        cols = ["PAADM_PAPMI_DR", "PAADM_AdmDate"]  # key not among the columns
        chunks = list(
            src.read_chunks(
                "PA_Adm", cols, "PAADM_RowId", after_key=10, chunk_size=7, upto_key=50
            )
        )
        assert [len(c) for c in chunks] == [7, 7, 7, 7, 7, 5]
        assert all(list(c.columns) == cols for c in chunks)
        got = [r for c in chunks for r in _values(c)]
        assert got == _expected("PA_Adm", cols, 10, 50)
        # Resuming after the last key of a chunk continues exactly there.
        first = next(
            iter(
                src.read_chunks("PA_Adm", ["PAADM_RowId"], "PAADM_RowId", chunk_size=30)
            )
        )
        last = first["PAADM_RowId"].iloc[-1]  # a numpy scalar, as the engine has it
        rest = list(src.read_chunks("PA_Adm", ["PAADM_RowId"], "PAADM_RowId",
                                    after_key=last, chunk_size=100))  # fmt: skip
        assert [r[0] for r in _values(rest[0])] == list(range(31, 81))
        # An empty range yields nothing.
        assert list(src.read_chunks("PA_Adm", cols, "PAADM_RowId", after_key=80)) == []
    finally:
        src.close()


def test_sample_pages(backend: Backend) -> None:
    src = backend.open()
    try:
        page = src.sample("PA_PatMas", 5, 2)
        assert [r[0] for r in _values(page)] == [11, 12, 13, 14, 15]
        assert len(page.columns) == len(FIXTURE["PA_PatMas"][0])
    finally:
        src.close()


def test_profile_stats_suppression_and_semantics(backend: Backend) -> None:
    src = backend.open()
    try:
        prof = src.profile("PA_PatMas")
        assert prof.rows_profiled == 60
        sex = prof.column("PAPMI_Sex_DR")
        # U (3) and X (2) are below the small-number threshold: not shown.
        assert [(v.value, v.count) for v in sex.top] == [("M", 30), ("F", 25)]
        assert sex.suppressed_values == 2 and sex.distinct == 4
        nhs = prof.column("PAPMI_NHSNo")
        assert (nhs.count, nhs.nulls, nhs.empty) == (60, 3, 2)
        assert nhs.null_pct == 5.0 and nhs.min_length == 10 and nhs.max_length == 12
        assert nhs.top == ()  # every value is unique: nothing may be shown
        dod = prof.column("PAPMI_DeceasedDate")
        assert (dod.nulls, dod.empty, dod.distinct) == (46, 8, 6)
        semantics = {c.name: c.semantic for c in prof.columns}
        assert semantics == {
            "PAPMI_RowId": "number",
            "PAPMI_NHSNo": "nhs_number",
            "PAPMI_Surname": "text",
            "PAPMI_DOB": "horolog_date",
            "PAPMI_Sex_DR": "code",
            "PAPMI_Postcode": "postcode",
            "PAPMI_DeceasedDate": "date",
        }
        rowid = prof.column("PAPMI_RowId")
        assert (rowid.min, rowid.max) == (1, 60)
        adm = {c.name: c.semantic for c in src.profile("PA_Adm").columns}
        assert adm["PAADM_AdmDate"] == "date"
        assert adm["PAADM_DischDate"] == "horolog_date"
        assert adm["PAADM_AdmMethod"] == "code"
    finally:
        src.close()


def test_vanished_table_is_a_clear_error(backend: Backend) -> None:
    src = backend.open()
    try:
        with pytest.raises(TerminalError, match="PA_Gone"):
            list(src.read_chunks("PA_Gone", ["x"], "x"))
        with pytest.raises(TerminalError, match="NoSuchCol"):
            list(src.read_chunks("PA_PatMas", ["NoSuchCol"], "PAPMI_RowId"))
    finally:
        src.close()


def test_sql_kinds_refuse_writes_through_query(backend: Backend) -> None:
    src = backend.open()
    if "sql" not in backend.caps:
        with pytest.raises(TerminalError, match="no SQL"):
            src.query('DELETE FROM "PA_PatMas"')
        return
    try:
        q = 'SELECT COUNT(*) AS n FROM "PA_PatMas"'
        if backend.name == "odbc-mariadb":
            q = q.replace('"', "`")
        assert _values(src.query(q)) == [(60,)]
        with pytest.raises(ReadOnlyViolation):
            src.query('DELETE FROM "PA_PatMas"')
        with pytest.raises(ReadOnlyViolation):
            src.query('SELECT 1; DROP TABLE "PA_PatMas"')
        assert src.count("PA_PatMas") == 60
    finally:
        src.close()
