"""PMI (patient master index) rule pack: identity, dates, codes, duplicates."""

from __future__ import annotations

import datetime as dt

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from migration.engine.rules import (
    MaskFn,
    RowCheck,
    RuleContext,
    RulePack,
    StagedCheck,
    mask,
)
from migration.engine.rules.nhs import (
    gp_practice_valid,
    nhs_number_repdigit,
    nhs_number_valid,
    postcode_valid,
)

DOB_MIN = dt.date(1880, 1, 1)


def _ts(value: dt.date) -> pd.Timestamp:
    return pd.Timestamp(value)


def _implausible(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    return mask(nhs_number_repdigit(df["nhs_number"]))


def _invalid(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    return mask(~nhs_number_valid(df["nhs_number"]))


def _dob_future(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    return mask(df["date_of_birth"] > _ts(ctx.as_of))


def _dob_implausible(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    dob_min = dt.date.fromisoformat(str(ctx.params.get("dob_min", DOB_MIN)))
    return mask(df["date_of_birth"] < _ts(dob_min))


def _death_before_birth(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    return mask(df["date_of_death"] < df["date_of_birth"])


def _code_invalid(field: str) -> MaskFn:
    def check(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
        valid = ctx.valid_codes.get(field)
        if valid is None:
            return pd.Series(False, index=df.index)
        col = df[field]
        return mask(col.notna() & ~col.isin(list(valid)))

    return check


def _postcode_invalid(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    return mask(~postcode_valid(df["postcode"]))


def _gp_invalid(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    return mask(~gp_practice_valid(df["gp_practice_code"]))


# Same NHS number on different PAS numbers: every row of the group goes,
# because which one is right is a steward's decision, not the engine's.
NHS_DUPLICATE_SQL = """
SELECT _source_key, _source_table, nhs_number FROM {patient}
WHERE nhs_number IN (
  SELECT nhs_number FROM {patient} WHERE nhs_number IS NOT NULL
  GROUP BY nhs_number HAVING COUNT(DISTINCT pas_number) > 1)
"""

# Same normalised name + DOB + postcode on different PAS numbers: flagged for
# the steward (possible duplicate registration), loaded all the same.
POSSIBLE_DUPLICATE_SQL = """
SELECT _source_key, _source_table, pas_number FROM (
  SELECT _source_key, _source_table, pas_number,
    COUNT(*) OVER (PARTITION BY UPPER(TRIM(family_name)), UPPER(TRIM(given_name)),
                   date_of_birth, REPLACE(postcode, ' ', '')) AS n
  FROM {patient}
  WHERE family_name IS NOT NULL AND given_name IS NOT NULL
    AND date_of_birth IS NOT NULL AND postcode IS NOT NULL) x
WHERE n > 1
"""

PACK = RulePack(
    name="pmi",
    version="1",
    row_checks=(
        RowCheck(
            "PMI-001", "nhs_number_implausible", "patient", "nhs_number", _implausible
        ),
        RowCheck("PMI-002", "nhs_number_invalid", "patient", "nhs_number", _invalid),
        RowCheck("PMI-003", "dob_in_future", "patient", "date_of_birth", _dob_future),
        RowCheck(
            "PMI-004", "dob_implausible", "patient", "date_of_birth", _dob_implausible
        ),
        RowCheck(
            "PMI-005",
            "death_before_birth",
            "patient",
            "date_of_death",
            _death_before_birth,
        ),
        RowCheck(
            "PMI-006", "gender_invalid", "patient", "gender", _code_invalid("gender")
        ),
        RowCheck(
            "PMI-007",
            "ethnic_category_invalid",
            "patient",
            "ethnic_category",
            _code_invalid("ethnic_category"),
        ),
        RowCheck(
            "PMI-008", "postcode_invalid", "patient", "postcode", _postcode_invalid
        ),
        RowCheck(
            "PMI-009", "gp_practice_invalid", "patient", "gp_practice_code", _gp_invalid
        ),
    ),
    staged_checks=(
        StagedCheck(
            "PMI-010",
            "nhs_number_duplicate",
            "patient",
            "nhs_number",
            NHS_DUPLICATE_SQL,
        ),
        StagedCheck(
            "PMI-011",
            "possible_duplicate",
            "patient",
            "pas_number",
            POSSIBLE_DUPLICATE_SQL,
            action="flag",
        ),
    ),
)
