"""OPD rule pack: attendance/outcome consistency and future attendances."""

from __future__ import annotations

import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from migration.engine.rules import RowCheck, RuleContext, RulePack, mask

#: Attended or Did Not Attend codes meaning "seen" (NHS DD: outcome expected).
ATTENDED = ("5", "6")
#: Codes meaning the patient arrived, which cannot happen in the future.
ARRIVED = ("5", "6", "7")


def _outcome_without_attendance(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    attended = list(ctx.params.get("attended_codes", ATTENDED))
    # A recorded local outcome counts even when its crosswalk maps it to NULL.
    recorded = df["_present_outcome"] if "_present_outcome" in df else None
    if recorded is None:
        recorded = df["outcome"].notna()
    return mask(recorded & ~df["attendance"].isin(attended))


def _future_attended(df: pd.DataFrame, ctx: RuleContext) -> pd.Series:
    arrived = list(ctx.params.get("arrived_codes", ARRIVED))
    day = df["appointment_at"].dt.normalize()
    return mask((day > pd.Timestamp(ctx.as_of)) & df["attendance"].isin(arrived))


PACK = RulePack(
    name="opd",
    version="1",
    row_checks=(
        RowCheck(
            "OPD-001",
            "outcome_without_attendance",
            "outpatient_appointment",
            "outcome",
            _outcome_without_attendance,
        ),
        RowCheck(
            "OPD-002",
            "future_appointment_attended",
            "outpatient_appointment",
            "appointment_at",
            _future_attended,
        ),
    ),
)
