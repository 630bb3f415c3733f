"""The tables of docs/legacy-pas.md as data: names, columns, declared types, keys."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column: its name and SQLite/PostgreSQL declared type."""

    name: str
    type: str  # "INTEGER" or "TEXT"


@dataclass(frozen=True)
class Table:
    """One legacy table: ordered columns and primary key column names."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        """Return the column names in declared order."""
        return tuple(c.name for c in self.columns)


def _t(name: str, key: tuple[str, ...], *cols: str) -> Table:
    # "NAME:I" declares INTEGER, a bare name TEXT: keeps the table list readable.
    columns = tuple(
        Column(c[:-2], "INTEGER") if c.endswith(":I") else Column(c, "TEXT")
        for c in cols
    )
    return Table(name, columns, key)


PATIENT = _t(
    "PA_PatMas",
    ("PAPMI_RowId",),
    "PAPMI_RowId:I",
    "PAPMI_No",
    "PAPMI_NHSNo",
    "PAPMI_NHSNoStatus",
    "PAPMI_Title",
    "PAPMI_Surname",
    "PAPMI_Forename",
    "PAPMI_DOB:I",
    "PAPMI_Sex_DR",
    "PAPMI_Ethnic_DR",
    "PAPMI_Address1",
    "PAPMI_Address2",
    "PAPMI_City",
    "PAPMI_Postcode",
    "PAPMI_GPPractice",
    "PAPMI_DeceasedDate",
)
SPELL = _t(
    "PA_Adm",
    ("PAADM_RowId",),
    "PAADM_RowId:I",
    "PAADM_AdmNo",
    "PAADM_PAPMI_DR:I",
    "PAADM_AdmDate",
    "PAADM_AdmMethod",
    "PAADM_AdmSource",
    "PAADM_DischDate:I",
    "PAADM_DischMethod",
    "PAADM_DischDest",
    "PAADM_Specialty",
    "PAADM_Consultant_DR",
)
WARD_STAY = _t(
    "PA_WardStay",
    ("WS_RowId",),
    "WS_RowId:I",
    "WS_PAADM_DR:I",
    "WS_Ward_DR",
    "WS_StartDate",
    "WS_EndDate",
)
APPOINTMENT = _t(
    "RB_Appointment",
    ("APPT_RowId",),
    "APPT_RowId:I",
    "APPT_PAPMI_DR:I",
    "APPT_Clinic_DR",
    "APPT_DateTime",
    "APPT_Status",
    "APPT_Outcome",
    "APPT_Priority",
    "APPT_Specialty",
)
WARD = _t("CT_Ward", ("WARD_Code",), "WARD_Code", "WARD_Desc", "WARD_Specialty")
CLINIC = _t("CT_Clinic", ("CLN_Code",), "CLN_Code", "CLN_Desc", "CLN_Specialty")
CARE_PROV = _t(
    "CT_CareProv", ("CTPCP_Code",), "CTPCP_Code", "CTPCP_Desc", "CTPCP_GMCNo"
)
LOCAL_CODE = _t(
    "CT_LocalCode", ("CT_Table", "CT_Code"), "CT_Table", "CT_Code", "CT_Desc"
)
EXTRACT = _t("PAS_Extract", (), "ExtractDate", "Seed:I", "Generator")

# Reference tables first, so a loader that follows this order meets parents
# before children.
TABLES: tuple[Table, ...] = (
    LOCAL_CODE,
    WARD,
    CLINIC,
    CARE_PROV,
    EXTRACT,
    PATIENT,
    SPELL,
    WARD_STAY,
    APPOINTMENT,
)
TABLES_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}
