"""Local (TrakCare-style) code tables of the legacy PAS and their national codes.

``LOCAL_CODES`` is the single source of truth for table ``CT_LocalCode`` and for
the default crosswalk built by the engine's default contract: each entry names
the local table and code, its local description, the national code system
(a key of ``CODE_SYSTEMS``) and the national code it corresponds to, or
``None`` when the local code has no national equivalent (the crosswalk sends
those to its ``Not known`` default in lenient mode, or reports them unmatched).

National codes follow /work/shared/design/NHS-REFERENCE.md (section numbers in
``CODE_SYSTEMS``). Codes injected as ``unknown_local_code`` defects are NOT here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeSystem:
    """A national code system a local table maps to."""

    key: str
    title: str
    reference: str  # where the code list comes from (NHS-REFERENCE.md section)


@dataclass(frozen=True)
class LocalCode:
    """One local code: where it lives, what it means, its national equivalent."""

    table: str  # CT_LocalCode.CT_Table
    code: str  # CT_LocalCode.CT_Code, upper case, no spaces
    desc: str  # CT_LocalCode.CT_Desc
    system: str  # CodeSystem.key of the national code system of ``table``
    national: str | None  # national code, None = no national equivalent
    national_desc: str | None  # national description, None when ``national`` is


CODE_SYSTEMS: dict[str, CodeSystem] = {
    s.key: s
    for s in (
        CodeSystem(
            "person-stated-gender",
            "Person Stated Gender Code (NHS DD)",
            "NHS-REFERENCE §2",
        ),
        CodeSystem(
            "ethnic-category-england",
            "Ethnic Category (UK Core EthnicCategoryEngland)",
            "NHS-REFERENCE §3",
        ),
        CodeSystem(
            "admission-method-england",
            "Admission Method (UK Core AdmissionMethodEngland 1.0.0)",
            "NHS-REFERENCE §4",
        ),
        CodeSystem(
            "source-of-admission-england",
            "Source of Admission (UK Core SourceOfAdmissionEngland, pre-2021 codes)",
            "NHS-REFERENCE §5",
        ),
        CodeSystem(
            "discharge-method-england",
            "Discharge Method (UK Core DischargeMethodEngland)",
            "NHS-REFERENCE §6",
        ),
        CodeSystem(
            "discharge-destination-england",
            "Discharge Destination (UK Core DischargeDestinationEngland)",
            "NHS-REFERENCE §7",
        ),
        CodeSystem(
            "treatment-function",
            "Treatment Function Code (NHS DD, May 2019 archive)",
            "NHS-REFERENCE §11",
        ),
        CodeSystem(
            "attended-or-did-not-attend",
            "Attended or Did Not Attend (NHS DD)",
            "NHS-REFERENCE §8",
        ),
        CodeSystem(
            "outcome-of-attendance",
            "Outcome of Attendance (England)",
            "NHS-REFERENCE §9",
        ),
        CodeSystem(
            "priority-type",
            "Priority Type (NHS DD; not verified)",
            "NHS-REFERENCE §10",
        ),
        CodeSystem(
            "nhs-number-status-indicator",
            "NHS Number Status Indicator (UK Core NHSNumberVerificationStatusEngland)",
            "NHS-REFERENCE §1",
        ),
    )
}

# local table -> national code system key (one system per local table)
TABLE_SYSTEMS: dict[str, str] = {
    "SEX": "person-stated-gender",
    "ETHNIC": "ethnic-category-england",
    "ADMMETH": "admission-method-england",
    "ADMSRC": "source-of-admission-england",
    "DISMETH": "discharge-method-england",
    "DISDEST": "discharge-destination-england",
    "SPEC": "treatment-function",
    "ATTEND": "attended-or-did-not-attend",
    "OUTCOME": "outcome-of-attendance",
    "PRIORITY": "priority-type",
    "NHSSTAT": "nhs-number-status-indicator",
}

# (local code, local description, national code or None, national description)
_RAW: dict[str, tuple[tuple[str, str, str | None, str | None], ...]] = {
    "SEX": (
        ("M", "Male", "1", "Male"),
        ("F", "Female", "2", "Female"),
        ("I", "Indeterminate", "9", "Indeterminate"),
        ("U", "Unknown", "X", "Not Known"),
    ),
    "ETHNIC": (
        ("WBRI", "White British", "A", "White - British"),
        ("WIRI", "White Irish", "B", "White - Irish"),
        ("WOTH", "White other", "C", "White - Any other White background"),
        (
            "MWBC",
            "Mixed White/Black Caribbean",
            "D",
            "Mixed - White and Black Caribbean",
        ),
        ("MWBA", "Mixed White/Black African", "E", "Mixed - White and Black African"),
        ("MWAS", "Mixed White/Asian", "F", "Mixed - White and Asian"),
        ("MOTH", "Mixed other", "G", "Mixed - Any other mixed background"),
        ("AIND", "Asian Indian", "H", "Asian or Asian British - Indian"),
        ("APKN", "Asian Pakistani", "J", "Asian or Asian British - Pakistani"),
        ("ABAN", "Asian Bangladeshi", "K", "Asian or Asian British - Bangladeshi"),
        (
            "AOTH",
            "Asian other",
            "L",
            "Asian or Asian British - Any other Asian background",
        ),
        ("BCRB", "Black Caribbean", "M", "Black or Black British - Caribbean"),
        ("BAFR", "Black African", "N", "Black or Black British - African"),
        (
            "BOTH",
            "Black other",
            "P",
            "Black or Black British - Any other Black background",
        ),
        ("OCHI", "Chinese", "R", "Other Ethnic Groups - Chinese"),
        ("OOTH", "Other ethnic group", "S", "Other Ethnic Groups - Any other"),
        ("NSTAT", "Not stated", "Z", "Not stated"),
        ("NK", "Not known", "99", "Not known"),
        # 2021-census categories: not in the England snapshot of §3.
        ("WGRT", "White Gypsy or Irish Traveller", None, None),
        ("OARB", "Arab", None, None),
    ),
    "ADMMETH": (
        ("WL", "Elective - waiting list", "11", "Waiting list"),
        ("BK", "Elective - booked", "12", "Booked"),
        ("PL", "Elective - planned", "13", "Planned"),
        (
            "AE",
            "Emergency - via A&E",
            "21",
            "Emergency Care Department or dental casualty department of the "
            "Health Care Provider",
        ),
        (
            "GP",
            "Emergency - GP referral",
            "22",
            "General Practitioner (direct request)",
        ),
        ("BB", "Emergency - bed bureau", "23", "Bed bureau"),
        (
            "OPC",
            "Emergency - from clinic",
            "24",
            "Consultant Clinic, of this or another provider",
        ),
        (
            "CRT",
            "Emergency - MH crisis team",
            "25",
            "Admission via Mental Health Crisis Resolution Team",
        ),
        (
            "AEO",
            "Emergency - other A&E",
            "2A",
            "Emergency Care Department of another provider where the patient had "
            "not been admitted",
        ),
        (
            "ETRF",
            "Emergency transfer in",
            "2B",
            "Transfer of an admitted patient from another Hospital Provider in an "
            "emergency",
        ),
        ("BBHI", "Baby born at home (intended)", "2C", "Baby born at home as intended"),
        ("EOTH", "Emergency - other", "2D", "Other emergency admission"),
        ("MANT", "Maternity ante partum", "31", "Admitted ante partum"),
        ("MPOST", "Maternity post partum", "32", "Admitted post partum"),
        (
            "TRF",
            "Transfer in (non-emergency)",
            "81",
            "Transfer of any admitted patient from other Hospital Provider other "
            "than in an emergency",
        ),
        (
            "BIRTH",
            "Born in this hospital",
            "82",
            "Birth of a baby in this Health Care Provider",
        ),
        (
            "BOUT",
            "Born outside hospital",
            "83",
            "Baby born outside the provider except when born at home as intended",
        ),
        # Local virtual-ward pathway: no national admission method.
        ("VWARD", "Virtual ward admission", None, None),
    ),
    "ADMSRC": (
        ("HOME", "Usual place of residence", "19", "Usual place of residence"),
        ("TEMP", "Temporary residence", "29", "Temporary place of residence"),
        (
            "PENAL",
            "Prison, court or police",
            "39",
            "Penal establishment, court or police station",
        ),
        (
            "HSPSY",
            "High security psychiatric",
            "49",
            "NHS other provider - high security psychiatric",
        ),
        (
            "NHSGEN",
            "Other NHS hospital - general",
            "51",
            "NHS other provider - general ward/ED",
        ),
        (
            "NHSMAT",
            "Other NHS hospital - maternity",
            "52",
            "NHS other provider - maternity/neonates",
        ),
        (
            "NHSMH",
            "Other NHS hospital - mental health",
            "53",
            "NHS other provider - mental illness/learning disabilities",
        ),
        ("NHSCH", "NHS care home", "54", "NHS run Care Home"),
        ("LARES", "Local authority residential", "65", "LA residential accommodation"),
        ("FOSTER", "Foster care", "66", "LA foster care"),
        (
            "BABY",
            "Born in or on way to hospital",
            "79",
            "Babies born in or on the way to hospital",
        ),
        ("CAREH", "Private care home", "85", "Non-NHS (other than LA) run Care Home"),
        ("PRIVH", "Private hospital", "87", "Non-NHS run hospital"),
        ("HOSPC", "Hospice", "88", "Non-NHS (other than LA) run Hospice"),
        ("NK", "Not known", "99", "Not known"),
    ),
    "DISMETH": (
        (
            "CLIN",
            "Clinical discharge",
            "1",
            "Discharged on clinical advice or with clinical consent",
        ),
        (
            "MHRT",
            "Discharged by tribunal or court",
            "3",
            "Discharged by Mental Health Review Tribunal, Home Secretary or Court",
        ),
        ("DIED", "Died", "4", "Patient died"),
        ("STILL", "Stillbirth", "5", "Stillbirth"),
        ("SELF", "Self discharge", "6", "Patient discharged him/herself"),
        (
            "REL",
            "Discharged by relative",
            "7",
            "Patient discharged by a relative or advocate",
        ),
        ("NK", "Not known", "9", "Not known"),
        # Absconded is recorded locally; no national discharge method matches it.
        ("ABSC", "Absconded", None, None),
    ),
    "DISDEST": (
        ("HOME", "Usual place of residence", "19", "Usual place of residence"),
        ("TEMP", "Temporary residence", "29", "Temporary place of residence"),
        ("COURT", "Court", "37", "Court"),
        (
            "PENAL",
            "Prison or police station",
            "38",
            "Penal establishment or police station",
        ),
        (
            "HSPSY",
            "High security psychiatric",
            "49",
            "NHS other provider - high security psychiatric",
        ),
        ("MSU", "Medium secure unit", "50", "NHS other provider - medium secure unit"),
        (
            "NHSGEN",
            "Other NHS hospital - general",
            "51",
            "NHS other provider - general ward",
        ),
        (
            "NHSMAT",
            "Other NHS hospital - maternity",
            "52",
            "NHS other provider - maternity/neonates",
        ),
        (
            "NHSMH",
            "Other NHS hospital - mental health",
            "53",
            "NHS other provider - mental illness/learning disabilities",
        ),
        ("NHSCH", "NHS care home", "54", "NHS run Care Home"),
        ("LARES", "Local authority residential", "65", "LA residential accommodation"),
        ("FOSTER", "Foster care", "66", "LA foster care"),
        ("DIED", "Died", "79", "Not applicable - patient died or stillbirth"),
        ("CAREH", "Private care home", "85", "Non-NHS (other than LA) run Care Home"),
        ("PRIVH", "Private hospital", "87", "Non-NHS run hospital"),
        ("HOSPC", "Hospice", "88", "Non-NHS (other than LA) run Hospice"),
        ("NK", "Not known", "99", "Not known"),
    ),
    "SPEC": (
        ("GSURG", "General Surgery", "100", "General Surgery"),
        ("URO", "Urology", "101", "Urology"),
        ("TRORT", "Trauma and Orthopaedics", "110", "Trauma & Orthopaedics"),
        ("ENT", "Ear, Nose and Throat", "120", "ENT"),
        ("OPHTH", "Ophthalmology", "130", "Ophthalmology"),
        ("ORAL", "Oral Surgery", "140", "Oral Surgery"),
        ("NSURG", "Neurosurgery", "150", "Neurosurgery"),
        ("PLAST", "Plastic Surgery", "160", "Plastic Surgery"),
        ("PSURG", "Paediatric Surgery", "171", "Paediatric Surgery"),
        ("AE", "Accident and Emergency", "180", "Accident & Emergency"),
        ("ANAES", "Anaesthetics", "190", "Anaesthetics"),
        ("PAIN", "Pain Management", "191", "Pain Management"),
        ("ICU", "Critical Care", "192", "Critical Care Medicine"),
        ("GMED", "General Medicine", "300", "General Medicine"),
        ("GASTR", "Gastroenterology", "301", "Gastroenterology"),
        ("ENDO", "Endocrinology", "302", "Endocrinology"),
        ("HAEM", "Clinical Haematology", "303", "Clinical Haematology"),
        ("CARD", "Cardiology", "320", "Cardiology"),
        ("PCARD", "Paediatric Cardiology", "321", "Paediatric Cardiology"),
        ("STRK", "Stroke Medicine", "328", "Stroke Medicine"),
        ("DERM", "Dermatology", "330", "Dermatology"),
        ("RESP", "Respiratory Medicine", "340", "Respiratory Medicine"),
        ("INFD", "Infectious Diseases", "350", "Infectious Diseases"),
        # A nurse-led phlebotomy service is not a Treatment Function.
        ("PHLEB", "Phlebotomy", None, None),
    ),
    "ATTEND": (
        (
            "ATT",
            "Attended",
            "5",
            "Attended on time or, if late, before the relevant care professional "
            "was ready to see the patient",
        ),
        (
            "LATE",
            "Arrived late, seen",
            "6",
            "Arrived late, after the relevant care professional was ready to see "
            "the patient, but was seen",
        ),
        (
            "LATENS",
            "Arrived late, not seen",
            "7",
            "Patient arrived late and could not be seen",
        ),
        (
            "PCAN",
            "Cancelled by patient",
            "2",
            "Appointment cancelled by, or on behalf of, the patient",
        ),
        ("DNA", "Did not attend", "3", "Did not attend - no advance warning given"),
        (
            "HCAN",
            "Cancelled by hospital",
            "4",
            "Appointment cancelled or postponed by the Health Care Provider",
        ),
        (
            "BOOKED",
            "Booked (future)",
            "0",
            "Not applicable - appointment occurs in the future",
        ),
    ),
    "OUTCOME": (
        (
            "DISC",
            "Discharged",
            "1",
            "Discharged from consultant's care (last attendance)",
        ),
        ("FUAPP", "Follow-up booked", "2", "Another appointment given"),
        (
            "FULATER",
            "Follow-up to be made",
            "3",
            "Appointment to be made at a later date",
        ),
        # Admitted straight from clinic: recorded locally, no England OP outcome.
        ("ADMIT", "Admitted from clinic", None, None),
    ),
    "PRIORITY": (
        ("RTN", "Routine", "1", "Routine"),
        ("URG", "Urgent", "2", "Urgent"),
        ("2WW", "Two week wait", "3", "Two Week Wait"),
        # A local "soon" tier between routine and urgent has no national code.
        ("SOON", "Soon", None, None),
    ),
    "NHSSTAT": (
        ("V", "Verified", "01", "Number present and verified"),
        ("N", "Not traced", "02", "Number present but not traced"),
        ("R", "Trace required", "03", "Trace required"),
        ("X", "Not present", "07", "Number not present and trace not required"),
    ),
}

LOCAL_CODES: tuple[LocalCode, ...] = tuple(
    LocalCode(table, code, desc, TABLE_SYSTEMS[table], national, national_desc)
    for table, entries in _RAW.items()
    for code, desc, national, national_desc in entries
)

LOCAL_TABLES: tuple[str, ...] = tuple(_RAW)


def codes_of(table: str) -> tuple[LocalCode, ...]:
    """Return the local codes of one CT_LocalCode table (KeyError if unknown)."""
    if table not in _RAW:
        raise KeyError(table)
    return tuple(c for c in LOCAL_CODES if c.table == table)


def local_code(table: str, code: str) -> LocalCode:
    """Return one local code entry; raise KeyError when it does not exist."""
    for c in LOCAL_CODES:
        if c.table == table and c.code == code:
            return c
    raise KeyError((table, code))


# Local meanings the generator's rules depend on (cross-field consistency).
DIED_DISCHARGE_METHOD = "DIED"
DIED_DISCHARGE_DESTINATION = "DIED"
ATTENDED_STATUSES = frozenset({"ATT", "LATE"})
FUTURE_STATUS = "BOOKED"
