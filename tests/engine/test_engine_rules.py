"""Rule packs: each check with positive and negative cases.

Row checks are called on transformed frames directly; set-based checks run
through the engine on a small legacy PAS, on both sinks.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from engine_kit import (
    appt,
    assert_ledger,
    horolog,
    mini_pas,
    patient,
    spell,
    sqlite_source,
    stay,
)

from migration.engine.defaults import load_default_contract
from migration.engine.rules import RuleContext, rule_pack
from migration.engine.rules.nhs import (
    gp_practice_valid,
    nhs_number_repdigit,
    nhs_number_valid,
    postcode_valid,
)
from migration.engine.runner import run_contract

AS_OF = dt.date(2026, 11, 1)
CTX = RuleContext(
    as_of=AS_OF,
    params={"dob_min": "1880-01-01"},
    valid_codes={
        "gender": frozenset({"1", "2", "9", "X"}),
        "ethnic_category": frozenset("ABZ"),
    },
)


def check(pack: str, rule_id: str, df: pd.DataFrame) -> list[bool]:
    chk = next(c for c in rule_pack(pack).row_checks if c.rule_id == rule_id)
    return chk.fn(df, CTX).tolist()


def dates(*values: str | None) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values))).astype("datetime64[s]")


# --- NHS-REFERENCE §1 fixtures ---------------------------------------------------


@pytest.mark.parametrize(
    "value", ["9434765919", "9912003888", "9449305552", "9990548609", "9990548617"]
)
def test_nhs_number_valid(value: str) -> None:
    assert nhs_number_valid(pd.Series([value])).tolist() == [True]


@pytest.mark.parametrize(
    "value",
    ["9434765918", "943476591", "94347659190", "94347659AB"]
    + [f"123456789{d}" for d in range(10)],
)
def test_nhs_number_invalid(value: str) -> None:
    assert nhs_number_valid(pd.Series([value])).tolist() == [False]
    df = pd.DataFrame({"nhs_number": [value]})
    assert check("pmi", "PMI-002", df) == [True]


def test_repdigits_pass_mod11_but_are_implausible() -> None:
    reps = pd.Series([str(d) * 10 for d in range(10)])
    assert nhs_number_valid(reps).all()
    assert nhs_number_repdigit(reps).all()
    df = pd.DataFrame({"nhs_number": [*reps, "9434765919", None]})
    assert check("pmi", "PMI-001", df) == [True] * 10 + [False, False]
    assert check("pmi", "PMI-002", df) == [False] * 12  # NULL is not invalid


def test_dob_rules() -> None:
    df = pd.DataFrame(
        {
            "date_of_birth": dates(
                "2026-11-01", "2026-11-02", "1880-01-01", "1879-12-31", None
            ),
            "date_of_death": dates(None, None, "1879-12-31", None, None),
        }
    )
    assert check("pmi", "PMI-003", df) == [False, True, False, False, False]
    assert check("pmi", "PMI-004", df) == [False, False, False, True, False]
    assert check("pmi", "PMI-005", df) == [False, False, True, False, False]


def test_death_on_the_day_of_birth_is_not_before_birth() -> None:
    df = pd.DataFrame(
        {"date_of_birth": dates("2000-01-01"), "date_of_death": dates("2000-01-01")}
    )
    assert check("pmi", "PMI-005", df) == [False]


def test_gender_and_ethnicity_validity() -> None:
    df = pd.DataFrame(
        {"gender": ["1", "X", "0", None], "ethnic_category": ["A", "Q", None, "Z"]}
    )
    assert check("pmi", "PMI-006", df) == [False, False, True, False]
    assert check("pmi", "PMI-007", df) == [False, True, False, False]


def test_postcodes_including_zz99_pseudo_postcodes() -> None:
    good = ["LS1 4AP", "SW1A 1AA", "M1 1AE", "B33 8TH", "CR2 6XH", "GIR 0AA",
            "ZZ99 3VZ", "ZZ99 3WZ", "ZZ99 3CZ", "ZZ99 1WZ", "ZZ99 2WZ"]  # fmt: skip
    bad = [
        "SW1A 1A",
        "LS1 1A",
        "1234 5AB",
        "ABC DEF",
        "EC1A 1BBB",
        "W1A 0A1",
        "ZZ1 1ZZ",
    ]
    assert postcode_valid(pd.Series(good)).tolist() == [True] * len(good)
    assert postcode_valid(pd.Series(bad)).tolist() == [False] * len(bad)
    df = pd.DataFrame({"postcode": [*good, *bad, None]})
    assert check("pmi", "PMI-008", df) == [False] * len(good) + [True] * len(bad) + [
        False
    ]


def test_gp_practice_codes() -> None:
    good = ["A81001", "L81008", "V81999", "V81998", "V81997"]
    bad = ["A8100", "AB1234", "812345", "A810011", "G8123456", "Y8I0O1"]
    assert gp_practice_valid(pd.Series(good)).tolist() == [True] * 5
    assert gp_practice_valid(pd.Series(bad)).tolist() == [False] * 6
    df = pd.DataFrame({"gp_practice_code": [*good, *bad, None]})
    assert check("pmi", "PMI-009", df) == [False] * 5 + [True] * 6 + [False]


def test_discharge_before_admission() -> None:
    df = pd.DataFrame(
        {
            "admission_date": dates("2020-01-10", "2020-01-10", "2020-01-10"),
            "discharge_date": dates("2020-01-09", "2020-01-10", None),
        }
    )
    assert check("adt", "ADT-001", df) == [True, False, False]


def test_outcome_without_attendance() -> None:
    df = pd.DataFrame(
        {
            "attendance": ["5", "6", "3", "2", "3", "5"],
            "outcome": ["1", "2", "1", None, None, None],
            # a recorded local outcome whose crosswalk maps to NULL still counts
            "_present_outcome": [True, True, True, False, True, False],
        }
    )
    assert check("opd", "OPD-001", df) == [False, False, True, False, True, False]


def test_future_appointment_attended() -> None:
    df = pd.DataFrame(
        {
            "appointment_at": pd.to_datetime(
                [
                    "2026-11-02 09:00",
                    "2026-11-02 09:00",
                    "2026-11-01 17:00",
                    "2025-01-01 09:00",
                ]
            ),
            "attendance": ["5", "0", "5", "6"],
        }
    )
    assert check("opd", "OPD-002", df) == [True, False, False, False]


# --- set-based checks through the engine --------------------------------------------


def _run(
    tmp_path: Path, make_sink: Any, **tables: Any
) -> tuple[Any, dict[tuple[str, str], str], Any]:
    src = sqlite_source(mini_pas(tmp_path / "src.sqlite3", **tables))
    sink = make_sink()
    rep = run_contract(load_default_contract(), src, sink, "r1")
    assert rep.status == "succeeded", rep.failure_reasons
    assert_ledger(rep)
    rejects = {
        (r["target_table"], r["source_key"]): r["reason"]
        for r in sink.rejects("r1")
        if r["action"] == "reject"
    }
    return rep, rejects, sink


def test_nhs_duplicates_rejected_and_possible_duplicates_flagged(
    tmp_path: Path, make_sink: Any
) -> None:
    pats = [
        patient(1, NHSNo="9434765919", NHSNoStatus="V"),
        patient(2, NHSNo="943 476 5919", NHSNoStatus="V"),  # same number, spaced
        patient(3, NHSNo="9912003888", NHSNoStatus="V"),
        patient(4, Surname="Smith", Forename="Jo", Postcode="LS1 4AP"),
        patient(5, Surname="SMITH ", Forename="jo", Postcode="ls14ap"),
        patient(
            6, Surname="Smith", Forename="Jo", Postcode="LS2 7EW"
        ),  # other postcode
    ]
    rep, rejects, _sink = _run(tmp_path, make_sink, patients=pats)
    assert rejects == {
        ("patient", "1"): "nhs_number_duplicate",
        ("patient", "2"): "nhs_number_duplicate",
    }
    flagged = {(f["table"], f["source_key"], f["reason"]) for f in rep.flagged}
    assert flagged == {
        ("patient", "4", "possible_duplicate"),
        ("patient", "5", "possible_duplicate"),
    }
    assert rep.table("patient").rows_loaded == 4  # flagged rows are loaded


def test_adt_set_based_rules(tmp_path: Path, make_sink: Any) -> None:
    pats = [
        patient(1),
        patient(2, DeceasedDate="2021-03-01"),
        patient(3, DOB=horolog("2030-01-01")),  # rejected: dob in future
    ]
    spells = [
        spell(10, 1, "2020-01-01", "2020-01-10"),
        spell(11, 1, "2020-01-10", "2020-01-15"),  # adjacent: fine
        spell(12, 1, "2020-01-12", "2020-01-14"),  # overlaps 11: later-admitted
        spell(13, 1, "2020-02-01", "2020-02-05", DischMethod="DIED", DischDest="DIED"),
        spell(14, 2, "2021-02-20", "2021-03-01", DischMethod="DIED", DischDest="DIED"),
        spell(15, 99, "2020-01-01", "2020-01-02"),  # no such patient
        spell(16, 3, "2020-01-01", "2020-01-02"),  # patient rejected
        spell(17, 1, "2020-03-01", None),  # open spell
    ]
    stays = [
        stay(100, 10, "2020-01-01", "2020-01-05"),
        stay(101, 10, "2020-01-06", "2020-01-10"),  # follows on: fine
        stay(102, 11, "2020-01-10", "2020-01-14"),
        stay(103, 11, "2020-01-12", "2020-01-15"),  # overlaps 102
        stay(104, 14, "2021-02-18", "2021-02-25"),  # starts before admission
        stay(105, 14, "2021-02-25", "2021-03-05"),  # ends after discharge
        stay(106, 17, "2020-03-01", None),  # open stay of an open spell: fine
        stay(107, 15, "2020-01-01", "2020-01-02"),  # spell rejected
    ]
    rep, rejects, _sink = _run(
        tmp_path, make_sink, patients=pats, spells=spells, stays=stays
    )
    assert rejects == {
        ("patient", "3"): "dob_in_future",
        ("inpatient_spell", "12"): "spell_overlap",
        ("inpatient_spell", "13"): "death_not_recorded",
        ("inpatient_spell", "15"): "patient_not_migrated",
        ("inpatient_spell", "16"): "patient_not_migrated",
        ("ward_stay", "103"): "ward_stay_overlap",
        ("ward_stay", "104"): "ward_stay_outside_spell",
        ("ward_stay", "105"): "ward_stay_outside_spell",
        ("ward_stay", "107"): "spell_not_migrated",
    }
    chains = {(c.table, c.column): c.orphans for c in rep.fk_chains}
    assert chains[("inpatient_spell", "patient_pas_number")] == 0
    assert chains[("ward_stay", "spell_number")] == 0


def test_opd_set_based_rules(tmp_path: Path, make_sink: Any) -> None:
    pats = [patient(1), patient(2)]
    appts = [
        appt(1, 1, "2026-01-05", "ATT"),
        appt(2, 1, "2026-12-01", "BOOKED"),
        appt(3, 7, "2026-01-05", "DNA"),  # no such patient
        appt(4, 2, "2026-01-05", "ATT", Clinic_DR="NOPE"),  # no such clinic
        appt(5, 2, "2026-01-05", "DNA", Outcome="DISC"),
        appt(6, 2, "2026-12-01", "ATT"),
        appt(7, 2, "2026-01-06", "ATT", Clinic_DR=" c1"),  # messy but known
    ]
    rep, rejects, _ = _run(tmp_path, make_sink, patients=pats, appts=appts)
    assert rejects == {
        ("outpatient_appointment", "3"): "patient_not_migrated",
        ("outpatient_appointment", "4"): "clinic_not_migrated",
        ("outpatient_appointment", "5"): "outcome_without_attendance",
        ("outpatient_appointment", "6"): "future_appointment_attended",
    }
    assert rep.table("outpatient_appointment").rows_loaded == 3
