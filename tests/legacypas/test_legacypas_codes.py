"""The local code table is complete and its national codes match NHS-REFERENCE."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from migration.legacypas import CODE_SYSTEMS, LOCAL_CODES, generate

# Transcribed from /work/shared/design/NHS-REFERENCE.md (sections in brackets).
NATIONAL = {
    "person-stated-gender": set("1 2 9 X".split()),  # §2
    "ethnic-category-england": set("A B C D E F G H J K L M N P R S Z 99".split()),
    "admission-method-england": set(  # §4
        "11 12 13 21 22 23 24 25 2A 2B 2C 2D 28 31 32 81 82 83 98 99".split()
    ),
    "source-of-admission-england": set(  # §5 (pre-2021 Source of Admission)
        "19 29 39 49 51 52 53 54 65 66 79 85 87 88 98 99".split()
    ),
    "discharge-method-england": set("1 3 4 5 6 7 8 9".split()),  # §6
    "discharge-destination-england": set(  # §7
        "19 29 30 37 38 48 49 50 51 52 53 54 65 66 79 84 85 87 88 98 99".split()
    ),
    "treatment-function": set(  # §11
        "100 101 110 120 130 140 150 160 171 180 190 191 192 300 301 302 303 "
        "320 321 328 330 340 350".split()
    ),
    "attended-or-did-not-attend": set("0 2 3 4 5 6 7 9".split()),  # §8
    "outcome-of-attendance": set("1 2 3".split()),  # §9 (England)
    "priority-type": set("1 2 3".split()),  # §10
    "nhs-number-status-indicator": {f"0{i}" for i in range(1, 9)},  # §1
}
TABLES = {"SEX", "ETHNIC", "ADMMETH", "ADMSRC", "DISMETH", "DISDEST", "SPEC",
          "ATTEND", "OUTCOME", "PRIORITY", "NHSSTAT"}  # fmt: skip


def test_every_national_code_exists_in_its_system() -> None:
    assert set(CODE_SYSTEMS) == set(NATIONAL)
    for c in LOCAL_CODES:
        assert c.system in NATIONAL, c
        assert c.national is None or c.national in NATIONAL[c.system], c
        assert (c.national is None) == (c.national_desc is None), c
        assert c.code == c.code.strip().upper() and c.desc


def test_local_tables_are_complete_and_unique() -> None:
    assert {c.table for c in LOCAL_CODES} == TABLES
    assert len({(c.table, c.code) for c in LOCAL_CODES}) == len(LOCAL_CODES)
    # one system per local table
    assert all(
        n == 1
        for n in Counter(
            t for t, _ in {(c.table, c.system) for c in LOCAL_CODES}
        ).values()
    )
    local_only = {c.table for c in LOCAL_CODES if c.national is None}
    assert {"ETHNIC", "SPEC"} <= local_only


def test_meanings_the_rules_rely_on() -> None:
    by = {(c.table, c.code): c for c in LOCAL_CODES}
    assert by["DISMETH", "DIED"].national == "4"
    assert by["DISDEST", "DIED"].national == "79"
    attend = {c.code: c.national for c in LOCAL_CODES if c.table == "ATTEND"}
    assert attend == {"ATT": "5", "LATE": "6", "LATENS": "7", "DNA": "3",
                      "PCAN": "2", "HCAN": "4", "BOOKED": "0"}  # fmt: skip
    nhsstat = {c.code: c.national for c in LOCAL_CODES if c.table == "NHSSTAT"}
    assert nhsstat == {"V": "01", "N": "02", "R": "03", "X": "07"}
    assert {c.code: c.national for c in LOCAL_CODES if c.table == "SEX"} == {
        "M": "1", "F": "2", "I": "9", "U": "X",
    }  # fmt: skip
    # each mapped specialty is a distinct treatment function
    tfc = [c.national for c in LOCAL_CODES if c.table == "SPEC" and c.national]
    assert len(tfc) == len(set(tfc)) == len(NATIONAL["treatment-function"])


def test_ct_localcode_holds_exactly_the_table(tmp_path: Path, lp) -> None:
    generate(50, 1, str(tmp_path))
    rows = lp.load_sqlite(tmp_path / "legacy_pas.sqlite3")["CT_LocalCode"]
    assert {(r["CT_Table"], r["CT_Code"], r["CT_Desc"]) for r in rows} == {
        (c.table, c.code, c.desc) for c in LOCAL_CODES
    }
