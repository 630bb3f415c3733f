"""The read-only guard: an attack corpus that must be refused and real mapping
SELECTs that must pass -- through the guard alone, and end to end through the
ODBC (PostgreSQL driver) and JDBC (PostgreSQL jar) kinds against a SELECT-only
role, whose account and session also refuse writes when the guard is bypassed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.guard import Guard, check_select, strip_literals
from connectors.kinds import get_kind
from migration.engine.errors import ReadOnlyViolation

from .conftest import JARS, pg_admin

CORPUS = Path(__file__).with_name("guard_corpus")
ATTACKS: list[str] = json.loads((CORPUS / "attacks.json").read_text())
ACCEPTED: list[str] = [
    block.strip()
    for block in "\n".join(
        line
        for line in (CORPUS / "accepted.sql").read_text().splitlines()
        if not line.startswith("-- ")
    ).split("\n;\n")
    if block.strip()
]
DIALECTS = ["postgres", "mysql", "sqlite", "tsql", None]


def test_corpus_sizes() -> None:
    assert len(ATTACKS) >= 300
    assert len(ACCEPTED) >= 40


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_attack_is_refused(dialect: str | None) -> None:
    guard = Guard(dialect)
    accepted = []
    for sql in ATTACKS:
        try:
            guard.check(sql)
        except ReadOnlyViolation as exc:
            assert str(exc).startswith("refused:")
        else:
            accepted.append(sql)
    assert accepted == []


def test_every_mapping_select_is_accepted() -> None:
    guard = Guard("postgres")
    for sql in ACCEPTED:
        stmt = guard.check(sql)
        # What runs is regenerated from the checked tree, without comments.
        assert "/*" not in stmt.sql and "--" not in stmt.sql
        assert guard.check(stmt.sql).sql == stmt.sql


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE"),
        ("SELECT * INTO t2 FROM t", "INTO"),
        ("SELECT * FROM t FOR UPDATE", "FOR UPDATE"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
        ("SELECT pg_sleep(1)", "pg_sleep"),
        ("CALL p()", "Command"),
        ("COPY t TO STDOUT", "COPY"),
        ("SET statement_timeout = 0", "SET"),
        ("BEGIN", "transaction"),
        ("SELECT 1 /*! ; DROP TABLE t */", "executable comment"),
        ("SELECT * FROM", "does not parse"),
    ],
)
def test_refusals_say_why(sql: str, reason: str) -> None:
    with pytest.raises(ReadOnlyViolation, match=reason):
        check_select(sql, "postgres")


def test_table_allow_list_and_ctes() -> None:
    guard = Guard("postgres", allowed_tables=["pa_patmas", "legacy.pa_adm"])
    assert guard.check("SELECT * FROM pa_patmas").tables == {"pa_patmas"}
    guard.check("WITH x AS (SELECT 1 AS a) SELECT a FROM x")  # a CTE is no table
    guard.check("SELECT * FROM legacy.pa_adm")
    with pytest.raises(ReadOnlyViolation, match="allow-list"):
        guard.check("SELECT * FROM pa_patmas p JOIN pg_authid a ON true")
    with pytest.raises(ReadOnlyViolation, match="allow-list"):
        guard.check("SELECT * FROM other.pa_adm")


def test_catalog_functions_only_in_catalog_guard() -> None:
    sql = "SELECT has_table_privilege('pa_patmas', 'INSERT')"
    with pytest.raises(ReadOnlyViolation):
        Guard("postgres").check(sql)
    Guard("postgres").with_catalog().check(sql)


def test_strip_literals_for_query_logs() -> None:
    out = strip_literals(
        "SELECT * FROM pa_patmas WHERE papmi_nhsno = '9434765919' AND papmi_dob > 5",
        "postgres",
    )
    assert "9434765919" not in out and "5" not in out.split(">")[-1]


# ------------------------------------------------------------- end to end

LEGACY_DDL = """
CREATE TABLE pa_patmas (papmi_rowid integer PRIMARY KEY, papmi_no text,
  papmi_nhsno text, papmi_nhsnostatus text, papmi_title text, papmi_surname text,
  papmi_forename text, papmi_dob integer, papmi_sex_dr text, papmi_ethnic_dr text,
  papmi_address1 text, papmi_address2 text, papmi_city text, papmi_postcode text,
  papmi_gppractice text, papmi_deceaseddate text);
CREATE TABLE pa_adm (paadm_rowid integer PRIMARY KEY, paadm_admno text,
  paadm_papmi_dr integer, paadm_admdate text, paadm_admmethod text,
  paadm_admsource text, paadm_dischdate integer, paadm_dischmethod text,
  paadm_dischdest text, paadm_specialty text, paadm_consultant_dr text);
CREATE TABLE pa_wardstay (ws_rowid integer PRIMARY KEY, ws_paadm_dr integer,
  ws_ward_dr text, ws_startdate text, ws_enddate text);
CREATE TABLE rb_appointment (appt_rowid integer PRIMARY KEY, appt_papmi_dr integer,
  appt_clinic_dr text, appt_datetime text, appt_status text, appt_outcome text,
  appt_priority text, appt_specialty text);
CREATE TABLE ct_ward (ward_code text PRIMARY KEY, ward_desc text, ward_specialty text);
CREATE TABLE ct_clinic (cln_code text PRIMARY KEY, cln_desc text, cln_specialty text);
CREATE TABLE ct_careprov (ctpcp_code text PRIMARY KEY, ctpcp_desc text,
  ctpcp_gmcno text);
CREATE TABLE ct_localcode (ct_table text, ct_code text, ct_desc text,
  PRIMARY KEY (ct_table, ct_code));
CREATE TABLE pas_extract (extractdate text, seed integer, generator text);
INSERT INTO pa_patmas VALUES
  (1, 'RXX0000001', '943 476 5919', 'V', 'Mr', 'Smith ', 'John', 60000, 'M', 'A',
   '1 Road', '', 'Leeds', 'LS1 4AP', 'B82005', ''),
  (2, 'RXX0000002', '', 'X', NULL, 'SMITH', 'Ann', 60000, 'F', NULL,
   '2 Road', NULL, 'Leeds', 'ZZ99 3VZ', NULL, '2024-05-01');
INSERT INTO pa_adm VALUES (1, 'IP00000001', 1, '01/02/2024', '11', '19', 67000,
  '1', '19', '100', 'C001');
INSERT INTO pa_wardstay VALUES (1, 1, 'W1', '2024-02-01', '');
INSERT INTO rb_appointment VALUES (1, 2, 'CL1', '2024-03-01 09:30:00', 'ATT', '1',
  '1', '100');
INSERT INTO ct_localcode VALUES ('SEX', 'M', 'Male'), ('SEX', 'F', 'Female');
INSERT INTO pas_extract VALUES ('2026-11-01', 1, 'test');
"""


@pytest.fixture(scope="module")
def legacy_pg() -> Iterator[dict[str, Any]]:
    """A legacy PAS database with a SELECT-only role (dropped afterwards)."""
    tag = uuid.uuid4().hex[:8]
    db, role, pw = f"cx_guard_{tag}", f"cx_guard_ro_{tag}", f"pw-{tag}"
    admin = pg_admin()
    admin.execute(f"CREATE DATABASE {db}")
    admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{pw}'")
    conn = pg_admin(db)
    conn.execute(LEGACY_DDL)
    conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    conn.close()
    import os

    os.environ[f"CX_GUARD_PW_{tag}"] = pw
    try:
        yield {"db": db, "role": role, "pw": pw, "ref": f"env:CX_GUARD_PW_{tag}"}
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


def _source(kind: str, pg: dict[str, Any], *, user: str | None = None) -> Any:
    user = user or pg["role"]
    password = pg["ref"] if user == pg["role"] else None
    if kind == "odbc":
        cfg: dict[str, Any] = {
            "driver": "PostgreSQL Unicode",
            "host": "127.0.0.1",
            "port": 5432,
            "database": pg["db"],
            "user": user,
            "password": password,
        }
    else:
        cfg = {
            "driver_class": "org.postgresql.Driver",
            "url": f"jdbc:postgresql://127.0.0.1:5432/{pg['db']}",
            "jars": [JARS["postgresql"]],
            "user": user,
            "password": password,
        }
    return get_kind(kind).open(cfg, name=f"guard-e2e-{kind}")


def _counts(db: str) -> dict[str, int]:
    conn = pg_admin(db)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        ]
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables
        }
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["odbc", "jdbc"])
def test_end_to_end_corpus_through_driver(kind: str, legacy_pg: dict[str, Any]) -> None:
    before = _counts(legacy_pg["db"])
    src = _source(kind, legacy_pg)
    try:
        assert src.check().can_write is False
        for sql in ACCEPTED:
            src.query(sql)  # runs on the server as the SELECT-only role
        leaked = []
        for sql in ATTACKS:
            try:
                src.query(sql)
            except ReadOnlyViolation:
                continue
            leaked.append(sql)
        assert leaked == []
    finally:
        src.close()
    assert _counts(legacy_pg["db"]) == before


@pytest.mark.parametrize("kind", ["odbc", "jdbc"])
def test_layers_below_the_guard_refuse_writes(
    kind: str, legacy_pg: dict[str, Any]
) -> None:
    """Bypass the guard: the session (even as superuser) and the account refuse."""
    # Session layer: a superuser connection opened by the kind is read-only.
    su = _source(kind, legacy_pg, user="postgres")
    su.connect()
    try:
        cur = su._conn.cursor() if kind == "odbc" else su.cursor()
        with pytest.raises(Exception, match="read-only transaction"):
            cur.execute("DELETE FROM pa_patmas")
    finally:
        su.close()
    # Account layer: the role cannot write even in a read-write transaction.
    if kind == "odbc":
        import pyodbc

        raw = pyodbc.connect(
            "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;"
            f"DATABASE={legacy_pg['db']};UID={legacy_pg['role']};PWD={legacy_pg['pw']};"
            "CommLog=0;Debug=0",
            autocommit=True,
        )
        try:
            with pytest.raises(pyodbc.Error, match="permission denied"):
                raw.cursor().execute("DELETE FROM pa_patmas")
            with pytest.raises(pyodbc.Error, match="permission denied"):
                raw.cursor().execute("CREATE TABLE evil (a int)")
        finally:
            raw.close()
    else:
        from connectors.kinds.jdbc import java_connect

        conn = java_connect(
            "org.postgresql.Driver",
            f"jdbc:postgresql://127.0.0.1:5432/{legacy_pg['db']}",
            [JARS["postgresql"]],
            {"user": legacy_pg["role"], "password": legacy_pg["pw"]},
        )
        try:
            st = conn.createStatement()
            with pytest.raises(Exception, match="permission denied"):
                st.execute("DELETE FROM pa_patmas")
        finally:
            conn.close()
    assert _counts(legacy_pg["db"])["pa_patmas"] == 2
