"""Reject raw values are patient data: masked unless view_pid, every unmasked read audited."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import Http404

from governance.models import AuditEvent
from migration.selectors_rejects import mask_value, rejects_for

PID_VIEWED = "migration.rejects.pid_viewed"


def test_mask_keeps_the_shape() -> None:
    assert mask_value("9434567801") == "9••••••••1"
    assert mask_value("Q") == "•••"
    assert mask_value("") == ""


@pytest.mark.parametrize("who", ["dm_engineer", "auditor", "viewer", "migration_lead"])
def test_masked_without_view_pid_and_not_audited(
    run: Any, who: str, request: pytest.FixtureRequest
) -> None:
    person = request.getfixturevalue(who)
    before = AuditEvent.objects.count()
    rows = rejects_for(user=person, run=run)
    assert len(rows) == 8
    assert all(r.masked for r in rows)
    nhs = [r for r in rows if r.reason_code == "nhs_number_invalid"]
    assert nhs[0].raw_value == "9••••••••0"
    assert not any(r.raw_value.startswith("943456780") for r in rows)
    # Source keys stay visible: every reject is findable by its source key.
    assert {r.source_key for r in nhs} == {"1000", "1001", "1002", "1003"}
    assert AuditEvent.objects.count() == before


def test_unmasked_for_view_pid_and_each_read_audited_without_values(
    run: Any, steward: Any
) -> None:
    rows = rejects_for(user=steward, run=run, table="patient", reason="crosswalk_miss")
    assert [r.raw_value for r in rows] == ["Q"] * 4
    assert not any(r.masked for r in rows)
    rejects_for(user=steward, run=run)
    events = list(AuditEvent.objects.filter(action=PID_VIEWED).order_by("seq"))
    assert len(events) == 2
    first = events[0]
    assert first.actor_id == steward.pk
    assert first.data["run"] == run.pk
    assert first.data["count"] == 4
    assert first.data["reason"] == "crosswalk_miss"
    assert events[1].data["count"] == 8
    assert first.project_id == run.project_id
    for event in events:
        text = repr(event.data)
        assert "Q'" not in text and "9434567" not in text


def test_filters_and_paging(run: Any, steward: Any) -> None:
    page = rejects_for(user=steward, run=run, table="patient", limit=3, offset=2)
    assert len(page) == 3
    assert rejects_for(user=steward, run=run, table="ward") == []
    # An empty read shows no patient data and is not an access event.
    assert AuditEvent.objects.filter(action=PID_VIEWED).count() == 1


@pytest.mark.parametrize("who", ["other_steward", "outsider"])
def test_other_projects_people_get_404(
    run: Any, who: str, request: pytest.FixtureRequest
) -> None:
    with pytest.raises(Http404):
        rejects_for(user=request.getfixturevalue(who), run=run)
    assert AuditEvent.objects.filter(action=PID_VIEWED).count() == 0
