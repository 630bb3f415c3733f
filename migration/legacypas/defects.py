"""The defect catalogue of docs/legacy-pas.md and the bad values injected."""

from __future__ import annotations

from dataclasses import dataclass

from .codes import LOCAL_CODES
from .pools import GP_DEFAULT_CODES, GP_PRACTICE_RE, POSTCODE_RE


@dataclass(frozen=True)
class DefectSpec:
    """One row of the spec's defect table (one column of one table)."""

    table: str
    type: str
    column: str
    reason: str
    action: str  # "reject" or "flag"


_P, _A, _W, _R = "PA_PatMas", "PA_Adm", "PA_WardStay", "RB_Appointment"

DEFECT_SPECS: tuple[DefectSpec, ...] = (
    DefectSpec(_P, "nhs_check_digit", "PAPMI_NHSNo", "nhs_number_invalid", "reject"),
    DefectSpec(_P, "nhs_repdigit", "PAPMI_NHSNo", "nhs_number_implausible", "reject"),
    DefectSpec(_P, "nhs_duplicate", "PAPMI_NHSNo", "nhs_number_duplicate", "reject"),
    DefectSpec(_P, "dob_future", "PAPMI_DOB", "dob_in_future", "reject"),
    DefectSpec(_P, "dob_implausible", "PAPMI_DOB", "dob_implausible", "reject"),
    DefectSpec(
        _P, "death_before_birth", "PAPMI_DeceasedDate", "death_before_birth", "reject"
    ),
    DefectSpec(_P, "bad_date", "PAPMI_DeceasedDate", "date_unparseable", "reject"),
    DefectSpec(_P, "bad_postcode", "PAPMI_Postcode", "postcode_invalid", "reject"),
    DefectSpec(
        _P, "bad_gp_practice", "PAPMI_GPPractice", "gp_practice_invalid", "reject"
    ),
    DefectSpec(_P, "unknown_local_code", "PAPMI_Sex_DR", "crosswalk_miss", "reject"),
    DefectSpec(_P, "unknown_local_code", "PAPMI_Ethnic_DR", "crosswalk_miss", "reject"),
    DefectSpec(_P, "possible_duplicate", "PAPMI_No", "possible_duplicate", "flag"),
    DefectSpec(
        _A,
        "discharge_before_admission",
        "PAADM_DischDate",
        "discharge_before_admission",
        "reject",
    ),
    DefectSpec(_A, "spell_overlap", "PAADM_AdmDate", "spell_overlap", "reject"),
    DefectSpec(
        _A,
        "death_not_recorded",
        "PAADM_DischMethod",
        "death_not_recorded",
        "reject",
    ),
    DefectSpec(_A, "unknown_local_code", "PAADM_AdmMethod", "crosswalk_miss", "reject"),
    DefectSpec(
        _A, "orphan_patient", "PAADM_PAPMI_DR", "patient_not_migrated", "reject"
    ),
    DefectSpec(
        _W,
        "ward_stay_outside_spell",
        "WS_StartDate",
        "ward_stay_outside_spell",
        "reject",
    ),
    DefectSpec(_W, "ward_stay_overlap", "WS_StartDate", "ward_stay_overlap", "reject"),
    DefectSpec(_R, "orphan_patient", "APPT_PAPMI_DR", "patient_not_migrated", "reject"),
    DefectSpec(_R, "unknown_clinic", "APPT_Clinic_DR", "clinic_not_migrated", "reject"),
    DefectSpec(
        _R,
        "outcome_without_attendance",
        "APPT_Outcome",
        "outcome_without_attendance",
        "reject",
    ),
    DefectSpec(
        _R,
        "future_attended",
        "APPT_DateTime",
        "future_appointment_attended",
        "reject",
    ),
)

SPEC_INDEX: dict[tuple[str, str, str], int] = {
    (s.table, s.type, s.column): i for i, s in enumerate(DEFECT_SPECS)
}

# Injected bad values. Each must fail its rule however the engine normalises
# (upper-case, strip, remove spaces), which _self_check() proves at import.
BAD_POSTCODES = ("SW1A 1A", "LS1 1A", "1234 5AB", "ABC DEF", "EC1A 1BBB", "W1A 0A1")
BAD_GP_PRACTICES = ("A8100", "AB1234", "812345", "A810011", "G8123456", "Y8I0O1")
BAD_DATES = ("31/02/2019", "UNKNOWN", "2019-02-30", "00/00/0000", "N/K", "2021-13-01")
UNKNOWN_CODES: dict[str, tuple[str, ...]] = {
    "SEX": ("Q", "MF", "Z9"),
    "ETHNIC": ("WBRX", "ZZ", "BRIT", "A1"),
    "ADMMETH": ("EMX", "ZZ9", "ELECT", "WLX"),
}
UNKNOWN_CLINICS = ("XCLN01", "OLD-CLN", "ZZC999")
NON_ATTENDED_PAST = ("DNA", "PCAN", "HCAN", "LATENS")


def _self_check() -> None:
    # A bad value that an engine could normalise into a good one would make a
    # manifest row unrejectable; fail at import rather than in a test elsewhere.
    known = {(c.table, c.code.upper()) for c in LOCAL_CODES}
    bad: list[str] = []
    for table, values in UNKNOWN_CODES.items():
        for v in values:
            norm = v.strip().upper()
            if {(table, norm), (table, norm.replace(" ", ""))} & known:
                bad.append(v)
    bad += [p for p in BAD_POSTCODES if POSTCODE_RE.match(p.upper().replace(" ", ""))]
    for g in BAD_GP_PRACTICES:
        norm = g.upper().replace(" ", "")
        if GP_PRACTICE_RE.match(norm) or norm in GP_DEFAULT_CODES:
            bad.append(g)
    if bad:
        raise RuntimeError(f"legacypas defect values are not bad enough: {bad}")


_self_check()
