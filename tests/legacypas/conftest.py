"""Fixtures for the legacy PAS generator tests: loaders and an independent recount.

The recount re-derives every defect from the written data with checks written
here, not imported from the generator (only the table list and CT_LocalCode
rows read from the output are shared), so a generator bug shows up as a
difference from the manifest.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from migration.legacypas.schema import TABLES

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MARIADB_DSN = "mysql://root@127.0.0.1:3306"

Data = dict[str, list[dict[str, Any]]]


def _by_key(table: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Sort in Python: database collations order text keys differently.
    cols = table.key or table.column_names
    return sorted((dict(r) for r in rows), key=lambda r: tuple(r[c] for c in cols))


# --- loaders -------------------------------------------------------------------------


def load_sqlite(path: str | Path) -> Data:
    """Return every table of a generated SQLite file as lists of dicts, by key."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return {
            t.name: _by_key(t, list(conn.execute(f'SELECT * FROM "{t.name}"')))
            for t in TABLES
        }
    finally:
        conn.close()


def load_csv(directory: str | Path) -> Data:
    """Return every <table>.csv, honouring quoted "" = empty and bare empty = NULL."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    out: Data = {}
    for t in TABLES:
        types = {
            c.name: pa.int64() if c.type == "INTEGER" else pa.string()
            for c in t.columns
        }
        table = pacsv.read_csv(
            Path(directory) / f"{t.name}.csv",
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        assert table.column_names == list(t.column_names)
        out[t.name] = _by_key(t, table.to_pylist())
    return out


def load_postgres(dsn: str, schema: str) -> Data:
    """Return every table of a generated PostgreSQL schema, ordered by key."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return {
            t.name: _by_key(
                t, conn.execute(f'SELECT * FROM "{schema}"."{t.name}"').fetchall()
            )
            for t in TABLES
        }


def load_mariadb(database: str) -> Data:
    """Return every table of a generated MariaDB database, ordered by key."""
    import pymysql

    conn = pymysql.connect(
        host="127.0.0.1",
        port=3306,
        user="root",
        charset="utf8mb4",
        cursorclass=pymysql.cursors.DictCursor,
    )
    try:
        out: Data = {}
        with conn.cursor() as cur:
            for t in TABLES:
                cur.execute(f"SELECT * FROM `{database}`.`{t.name}`")
                out[t.name] = _by_key(t, list(cur.fetchall()))
        return out
    finally:
        conn.close()


# --- independent recount -------------------------------------------------------------

HOROLOG_DAY0 = date(1840, 12, 31)
POSTCODE = re.compile(r"^([A-Z][A-HJ-Y]?[0-9][A-Z0-9]?[0-9][A-Z]{2}|GIR0AA)$")
# NHS pseudo-postcodes (clean per the spec). Note the strict regex above
# rejects them (second letter Z is outside [A-HJ-Y]), so they must be
# classified explicitly before it.
PSEUDO_POSTCODE = re.compile(r"^ZZ99[0-9][A-Z]{2}$")
GP_PRACTICE = re.compile(r"^[A-Z][0-9]{5}$")
ATTENDED = {"ATT", "LATE"}
# Action per reason, from the spec's defect table.
FLAG_REASONS = {"possible_duplicate"}


def missing(v: Any) -> bool:
    """Return True for NULL or an empty/blank string (Caché N/E)."""
    return v is None or (isinstance(v, str) and v.strip() == "")


def code(v: Any) -> str | None:
    """Return a local code normalised for lookup (strip, upper), None if missing."""
    return None if missing(v) else str(v).strip().upper()


def from_horolog(v: Any) -> date:
    """Return the date of a $HOROLOG day number."""
    return HOROLOG_DAY0 + timedelta(days=int(v))


def parse_iso(v: str) -> date | None:
    """Return the date of strict YYYY-MM-DD text, None when unparseable."""
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v.strip()):
            return None
        return datetime.strptime(v.strip(), "%Y-%m-%d").date()
    except ValueError:
        return None


def parse_uk(v: str) -> date:
    """Return the date of DD/MM/YYYY text (clean rows only; raises otherwise)."""
    return datetime.strptime(v, "%d/%m/%Y").date()


def nhs_valid(digits: str) -> bool:
    """Return True when 10 digits pass Modulus 11."""
    if not re.fullmatch(r"\d{10}", digits):
        return False
    total = sum(int(digits[i]) * (10 - i) for i in range(9))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


class Recount:
    """Defects found in the data: (table, key, reason) and anomalies (text)."""

    def __init__(self) -> None:
        self.found: set[tuple[str, int, str]] = set()
        self.anomalies: list[str] = []

    def add(self, table: str, key: int, reason: str) -> None:
        self.found.add((table, int(key), reason))

    def odd(self, text: str) -> None:
        self.anomalies.append(text)


def _overlaps(items: list[tuple[date, date | None, int]], inclusive: bool) -> set[int]:
    """Return ids of intervals starting before (or on) an earlier one's end."""
    hits: set[int] = set()
    max_end: date | None = None
    open_seen = False
    for start, end, ident in sorted(items, key=lambda i: (i[0], i[2])):
        if open_seen or (
            max_end is not None and (start <= max_end if inclusive else start < max_end)
        ):
            hits.add(ident)
        if end is None:
            open_seen = True
        elif max_end is None or end > max_end:
            max_end = end
    return hits


def recount(data: Data) -> Recount:
    """Return the defects and anomalies found in generated data, rule by rule."""
    rc = Recount()
    extract = date.fromisoformat(data["PAS_Extract"][0]["ExtractDate"])
    local = {(r["CT_Table"], r["CT_Code"]) for r in data["CT_LocalCode"]}

    def known(table: str, value: Any) -> bool:
        return (table, code(value)) in local

    # --- patients
    patients = {r["PAPMI_RowId"]: r for r in data["PA_PatMas"]}
    assert sorted(patients) == list(range(1, len(patients) + 1)), "RowId not dense"
    nhs_groups: dict[str, list[int]] = defaultdict(list)
    person_groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
    life: dict[int, tuple[date, date | None]] = {}
    pas_numbers: set[str] = set()
    for pid, r in patients.items():
        reasons: list[str] = []
        if not re.fullmatch(r"RXX\d{7}", r["PAPMI_No"]) or r["PAPMI_No"] in pas_numbers:
            rc.odd(f"patient {pid}: PAS number {r['PAPMI_No']!r}")
        pas_numbers.add(r["PAPMI_No"])
        nhs, status = r["PAPMI_NHSNo"], code(r["PAPMI_NHSNoStatus"])
        if missing(nhs):
            if status != "X":
                rc.odd(f"patient {pid}: missing NHS number with status {status}")
        else:
            digits = nhs.replace(" ", "")
            if status == "X" or not known("NHSSTAT", status):
                rc.odd(f"patient {pid}: NHS status {status}")
            if not re.fullmatch(r"\d{10}|\d{3} \d{3} \d{4}", nhs):
                rc.odd(f"patient {pid}: NHS format {nhs!r}")
            if not nhs_valid(digits):
                reasons.append("nhs_number_invalid")
            elif len(set(digits)) == 1:
                reasons.append("nhs_number_implausible")
            else:
                nhs_groups[digits].append(pid)
        dob = from_horolog(r["PAPMI_DOB"])
        if dob > extract:
            reasons.append("dob_in_future")
        elif dob < date(1880, 1, 1):
            reasons.append("dob_implausible")
        deceased: date | None = None
        if not missing(r["PAPMI_DeceasedDate"]):
            deceased = parse_iso(r["PAPMI_DeceasedDate"])
            if deceased is None:
                reasons.append("date_unparseable")
            elif deceased < dob:
                reasons.append("death_before_birth")
            elif deceased > extract:
                rc.odd(f"patient {pid}: deceased after extract")
        life[pid] = (dob, deceased)
        pc = r["PAPMI_Postcode"]
        if missing(pc):
            rc.odd(f"patient {pid}: no postcode")
        elif not (
            POSTCODE.match(pc.upper().replace(" ", ""))
            or PSEUDO_POSTCODE.match(pc.upper().replace(" ", ""))
        ):
            reasons.append("postcode_invalid")
        gp = r["PAPMI_GPPractice"]
        if not missing(gp) and not GP_PRACTICE.match(gp.strip().upper()):
            reasons.append("gp_practice_invalid")
        if not known("SEX", r["PAPMI_Sex_DR"]):
            reasons.append("crosswalk_miss")
        if not missing(r["PAPMI_Ethnic_DR"]) and not known(
            "ETHNIC", r["PAPMI_Ethnic_DR"]
        ):
            reasons.append("crosswalk_miss")
        for column in (
            "PAPMI_Surname",
            "PAPMI_Forename",
            "PAPMI_Address1",
            "PAPMI_City",
        ):
            if missing(r[column]):
                rc.odd(f"patient {pid}: {column} missing")
        for reason in reasons:
            rc.add("PA_PatMas", pid, reason)
        person = (
            r["PAPMI_Surname"].strip().casefold(),
            r["PAPMI_Forename"].strip().casefold(),
            str(r["PAPMI_DOB"]),
            (pc or "").upper().replace(" ", ""),
        )
        person_groups[person].append(pid)
    for pids in nhs_groups.values():
        if len(pids) > 1:
            for pid in pids:
                rc.add("PA_PatMas", pid, "nhs_number_duplicate")
    for pids in person_groups.values():
        if len(pids) > 1:
            for pid in pids:
                rc.add("PA_PatMas", pid, "possible_duplicate")
    rejected_patients = {
        k
        for t, k, reason in rc.found
        if t == "PA_PatMas" and reason not in FLAG_REASONS
    }
    migrated = set(patients) - rejected_patients

    # --- spells
    consultants = {r["CTPCP_Code"] for r in data["CT_CareProv"]}
    spells = {r["PAADM_RowId"]: r for r in data["PA_Adm"]}
    spell_dates: dict[int, tuple[date, date | None]] = {}
    by_patient: dict[int, list[tuple[date, date | None, int]]] = defaultdict(list)
    spell_reasons: dict[int, list[str]] = defaultdict(list)
    adm_numbers: set[str] = set()
    for sid, r in spells.items():
        pid = r["PAADM_PAPMI_DR"]
        if (
            not re.fullmatch(r"IP\d{8}", r["PAADM_AdmNo"])
            or r["PAADM_AdmNo"] in adm_numbers
        ):
            rc.odd(f"spell {sid}: spell number {r['PAADM_AdmNo']!r}")
        adm_numbers.add(r["PAADM_AdmNo"])
        adm = parse_uk(r["PAADM_AdmDate"])
        disch = (
            None if r["PAADM_DischDate"] is None else from_horolog(r["PAADM_DischDate"])
        )
        spell_dates[sid] = (adm, disch)
        reasons = spell_reasons[sid]
        if pid not in migrated:
            reasons.append("patient_not_migrated")
        if not known("ADMMETH", r["PAADM_AdmMethod"]):
            reasons.append("crosswalk_miss")
        for column, table in (
            ("PAADM_AdmSource", "ADMSRC"),
            ("PAADM_Specialty", "SPEC"),
        ):
            if not known(table, r[column]):
                rc.odd(f"spell {sid}: {column} {r[column]!r} not in {table}")
        method = code(r["PAADM_DischMethod"])
        if disch is None:
            if method is not None or not missing(r["PAADM_DischDest"]):
                rc.odd(f"spell {sid}: open spell with discharge method/destination")
        else:
            if not known("DISMETH", method) or not known(
                "DISDEST", r["PAADM_DischDest"]
            ):
                rc.odd(f"spell {sid}: discharge codes not in CT_LocalCode")
            if disch < adm:
                reasons.append("discharge_before_admission")
            if disch > extract:
                rc.odd(f"spell {sid}: discharge after extract")
        if adm > extract:
            rc.odd(f"spell {sid}: admission after extract")
        if r["PAADM_Consultant_DR"] not in consultants:
            rc.odd(f"spell {sid}: consultant not in CT_CareProv")
        if pid in patients:
            dob, deceased = life[pid]
            if method == "DIED":
                if deceased is None:
                    reasons.append("death_not_recorded")
                elif disch is not None and deceased < disch:
                    rc.odd(f"spell {sid}: died on discharge after the deceased date")
            if adm < dob or (deceased is not None and (disch or extract) > deceased):
                rc.odd(f"spell {sid}: activity outside the patient's life")
            if disch is None or disch >= adm:
                by_patient[pid].append((adm, disch, sid))
    for items in by_patient.values():
        # Clean data must not depend on the overlap semantics: touching
        # intervals, and whether other rejected spells take part, give the
        # same answer.
        strict = _overlaps(items, inclusive=False)
        inclusive = _overlaps(items, inclusive=True)
        clean_only = _overlaps(
            [i for i in items if not spell_reasons[i[2]] or i[2] in strict], False
        )
        if not (strict == inclusive == clean_only):
            rc.odd(f"spell overlap semantics differ: {items}")
        for sid in strict:
            spell_reasons[sid].append("spell_overlap")
        opens = [i for i in items if i[1] is None]
        if opens and max(items, key=lambda i: (i[0], i[2]))[2] != opens[0][2]:
            rc.odd(f"open spell is not the latest: {items}")
    for sid, reasons in spell_reasons.items():
        for reason in reasons:
            rc.add("PA_Adm", sid, reason)
    migrated_spells = {sid for sid in spells if not spell_reasons[sid]}

    # --- ward stays
    wards = {r["WARD_Code"] for r in data["CT_Ward"]}
    stays_by_spell: dict[int, list[tuple[date, date | None, int]]] = defaultdict(list)
    stay_reasons: dict[int, list[str]] = defaultdict(list)
    stays_by_patient: dict[int, list[tuple[date, date | None, int]]] = defaultdict(list)
    for r in data["PA_WardStay"]:
        wid, sid = r["WS_RowId"], r["WS_PAADM_DR"]
        if sid not in migrated_spells:
            rc.odd(f"stay {wid}: spell {sid} is not migrated")
            continue
        if r["WS_Ward_DR"] not in wards:
            rc.odd(f"stay {wid}: ward not in CT_Ward")
        start = parse_iso(r["WS_StartDate"])
        end = None if missing(r["WS_EndDate"]) else parse_iso(r["WS_EndDate"])
        if start is None or (not missing(r["WS_EndDate"]) and end is None):
            rc.odd(f"stay {wid}: unparseable dates")
            continue
        if end is not None and end < start:
            rc.odd(f"stay {wid}: ends before it starts")
        adm, disch = spell_dates[sid]
        if start < adm or (
            disch is not None and (end is None or end > disch or start > disch)
        ):
            stay_reasons[wid].append("ward_stay_outside_spell")
        if max(start, end or start) > extract:
            rc.odd(f"stay {wid}: after extract")
        stays_by_spell[sid].append((start, end, wid))
        stays_by_patient[spells[sid]["PAADM_PAPMI_DR"]].append((start, end, wid))
    for items in stays_by_spell.values():
        strict = _overlaps(items, inclusive=False)
        inclusive = _overlaps(items, inclusive=True)
        clean_only = _overlaps(
            [i for i in items if not stay_reasons[i[2]] or i[2] in strict], False
        )
        if not (strict == inclusive == clean_only):
            rc.odd(f"ward stay overlap semantics differ: {items}")
        for wid in strict:
            stay_reasons[wid].append("ward_stay_overlap")
    for items in stays_by_patient.values():
        # Across spells too: an engine checking per patient finds the same rows.
        hits = _overlaps(items, inclusive=True)
        if any("ward_stay_overlap" not in stay_reasons[w] for w in hits):
            rc.odd(f"ward stays overlap across spells: {items}")
    for wid, reasons in stay_reasons.items():
        for reason in reasons:
            rc.add("PA_WardStay", wid, reason)

    # --- appointments
    clinics = {r["CLN_Code"] for r in data["CT_Clinic"]}
    for r in data["RB_Appointment"]:
        aid, pid = r["APPT_RowId"], r["APPT_PAPMI_DR"]
        reasons = []
        if pid not in migrated:
            reasons.append("patient_not_migrated")
        if r["APPT_Clinic_DR"] not in clinics:
            reasons.append("clinic_not_migrated")
        status, outcome = code(r["APPT_Status"]), code(r["APPT_Outcome"])
        for column, table in (
            ("APPT_Status", "ATTEND"),
            ("APPT_Priority", "PRIORITY"),
            ("APPT_Specialty", "SPEC"),
        ):
            if not known(table, r[column]):
                rc.odd(f"appointment {aid}: {column} not in {table}")
        if outcome is not None and not known("OUTCOME", outcome):
            rc.odd(f"appointment {aid}: outcome not in OUTCOME")
        if outcome is not None and status not in ATTENDED:
            reasons.append("outcome_without_attendance")
        when = datetime.strptime(r["APPT_DateTime"], "%Y-%m-%d %H:%M:%S")
        day = when.date()
        if day > extract:
            if status in ATTENDED:
                reasons.append("future_appointment_attended")
            elif status != "BOOKED":
                rc.odd(f"appointment {aid}: future with status {status}")
        elif status == "BOOKED" or day == extract:
            rc.odd(f"appointment {aid}: BOOKED in the past or on the extract date")
        if pid in patients and "patient_not_migrated" not in reasons:
            dob, deceased = life[pid]
            if day < dob or (deceased is not None and day > deceased):
                rc.odd(f"appointment {aid}: outside the patient's life")
        for reason in reasons:
            rc.add("RB_Appointment", aid, reason)
    return rc


def manifest_set(manifest: dict[str, Any]) -> set[tuple[str, int, str]]:
    """Return the manifest's defects as (table, key, expected_reason)."""
    return {(d["table"], d["key"], d["expected_reason"]) for d in manifest["defects"]}


@pytest.fixture(scope="session")
def lp() -> SimpleNamespace:
    """Return the helpers above (test modules cannot import conftest directly)."""
    return SimpleNamespace(
        recount=recount,
        manifest_set=manifest_set,
        load_sqlite=load_sqlite,
        load_csv=load_csv,
        load_postgres=load_postgres,
        load_mariadb=load_mariadb,
        nhs_valid=nhs_valid,
        pg_dsn=PG_DSN,
        mariadb_dsn=MARIADB_DSN,
    )


@pytest.fixture
def unique_name() -> Iterator[Callable[[], str]]:
    """Yield a factory of unique schema/database names (lp_<uuid8>)."""

    def make() -> str:
        return f"lp_{uuid.uuid4().hex[:8]}"

    yield make
