"""ADT rule pack: spell dates, ward stays inside spells, overlaps, deaths."""

from __future__ import annotations

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from migration.engine.rules import RowCheck, RuleContext, RulePack, StagedCheck, mask


def _discharge_before_admission(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    return mask(df["discharge_date"] < df["admission_date"])


# Discharge method 4 = patient died; the patient must then have a date of death.
DEATH_NOT_RECORDED_SQL = """
SELECT s._source_key, s._source_table, s.discharge_method
FROM {inpatient_spell} s JOIN {patient} p ON p.pas_number = s.patient_pas_number
WHERE s.discharge_method = '4' AND p.date_of_death IS NULL
"""

# A spell overlaps when an earlier-admitted spell of the same patient ends after
# it starts (an open spell never ends). Only the later-admitted one is rejected.
SPELL_OVERLAP_SQL = """
SELECT _source_key, _source_table, admission_date FROM (
  SELECT _source_key, _source_table, admission_date,
    MAX(COALESCE(discharge_date, '9999-12-31')) OVER (
      PARTITION BY patient_pas_number ORDER BY admission_date, _source_key
      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
  FROM {inpatient_spell}) x
WHERE prev_end > admission_date
"""

WARD_STAY_OUTSIDE_SQL = """
SELECT w._source_key, w._source_table, w.start_date
FROM {ward_stay} w JOIN {inpatient_spell} s ON s.spell_number = w.spell_number
WHERE w.start_date < s.admission_date
   OR (s.discharge_date IS NOT NULL
       AND (w.start_date > s.discharge_date OR w.end_date > s.discharge_date))
"""

WARD_STAY_OVERLAP_SQL = """
SELECT _source_key, _source_table, start_date FROM (
  SELECT _source_key, _source_table, start_date,
    MAX(COALESCE(end_date, '9999-12-31')) OVER (
      PARTITION BY spell_number ORDER BY start_date, _source_key
      ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end
  FROM {ward_stay}) x
WHERE prev_end > start_date
"""

PACK = RulePack(
    name="adt",
    version="1",
    row_checks=(
        RowCheck(
            "ADT-001",
            "discharge_before_admission",
            "inpatient_spell",
            "discharge_date",
            _discharge_before_admission,
        ),
    ),
    staged_checks=(
        StagedCheck(
            "ADT-002",
            "death_not_recorded",
            "inpatient_spell",
            "discharge_method",
            DEATH_NOT_RECORDED_SQL,
        ),
        StagedCheck(
            "ADT-003",
            "spell_overlap",
            "inpatient_spell",
            "admission_date",
            SPELL_OVERLAP_SQL,
        ),
        StagedCheck(
            "ADT-004",
            "ward_stay_outside_spell",
            "ward_stay",
            "start_date",
            WARD_STAY_OUTSIDE_SQL,
        ),
        StagedCheck(
            "ADT-005",
            "ward_stay_overlap",
            "ward_stay",
            "start_date",
            WARD_STAY_OVERLAP_SQL,
        ),
    ),
)
