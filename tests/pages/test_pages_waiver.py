"""The gate page's waiver request form creates a pending waiver through the service."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from governance.models import AuditEvent, Waiver

pytestmark = pytest.mark.django_db


def test_a_dm_engineer_requests_a_waiver_from_the_gate_page(
    world: dict[str, Any], dm_engineer: Any
) -> None:
    run, project = world["run"], world["project"]
    client = Client()
    client.force_login(dm_engineer)
    page = client.get(
        reverse("governance:gate-detail", args=[project.pk, run.pk]),
        {"profile": "pre_production"},
    )
    body = page.content.decode()
    assert "Request a waiver for a failing check" in body
    # thresholds read as a person would, not as the profile's JSON keys
    assert "none allowed" in body and "at most 5 %" in body
    assert "max_pct" not in body and "max_count" not in body
    # a foreign-key check's scope reads as an arrow and may wrap at its dots
    assert "inpatient_spell.<wbr>patient_pas_number → patient" in body
    before = Waiver.objects.count()
    url = reverse("governance:waiver-create", args=[project.pk, run.pk])
    response = client.post(
        f"{url}?profile=pre_production",
        {
            "check_id": "reject_rate",
            "target_table": "ward_stay",
            "reason": "Known legacy overlaps; the ward team cleans them first.",
            "expires_at": "2099-01-31",
        },
    )
    assert response.status_code == 302
    waiver = Waiver.objects.latest("created_at")
    assert Waiver.objects.count() == before + 1
    assert (waiver.check_id, waiver.target_table, waiver.profile) == (
        "reject_rate",
        "ward_stay",
        "pre_production",
    )
    assert waiver.requested_by == dm_engineer and waiver.approver is None
    assert AuditEvent.objects.filter(
        target_type="governance.waiver", target_id=str(waiver.pk)
    ).exists()


def test_a_waiver_without_an_expiry_is_refused_with_a_message(
    world: dict[str, Any], dm_engineer: Any
) -> None:
    run, project = world["run"], world["project"]
    client = Client()
    client.force_login(dm_engineer)
    before = Waiver.objects.count()
    response = client.post(
        reverse("governance:waiver-create", args=[project.pk, run.pk]),
        {"check_id": "reject_rate", "reason": "x", "expires_at": ""},
        follow=True,
    )
    assert "Give the date the waiver expires" in response.content.decode()
    assert Waiver.objects.count() == before


def test_an_ig_lead_revokes_a_waiver_from_the_gate_page(
    world: dict[str, Any], dm_engineer: Any, migration_lead: Any, ig_lead: Any
) -> None:
    import datetime as dt

    from django.utils import timezone

    from governance.gates import waiver_approve, waiver_request

    run, project = world["run"], world["project"]
    waiver = waiver_request(
        actor=dm_engineer, project=project, check_id="reject_rate",
        profile="pre_production", reason="Known legacy overlaps.",
        expires_at=timezone.now() + dt.timedelta(days=30),
    )  # fmt: skip
    waiver_approve(actor=migration_lead, waiver=waiver)
    gate = reverse("governance:gate-detail", args=[project.pk, run.pk])
    revoke = reverse("governance:waiver-revoke", args=[project.pk, waiver.pk])
    client = Client()
    # The DM engineer sees no revoke form (no approve_waiver) ...
    client.force_login(dm_engineer)
    assert (
        revoke not in client.get(gate, {"profile": "pre_production"}).content.decode()
    )
    # ... the IG lead does.
    client.force_login(ig_lead)
    page = client.get(gate, {"profile": "pre_production"}).content.decode()
    assert revoke in page
    # A reason is required: refused with the service's message, nothing changes.
    response = client.post(
        revoke,
        {"reason": " ", "next": gate},
        follow=True,
    )
    assert "say why the waiver is revoked" in response.content.decode()
    waiver.refresh_from_db()
    assert waiver.revoked_at is None
    response = client.post(
        revoke,
        {"reason": "The ward team did not clean them.", "next": gate},
    )
    assert response.status_code == 302 and response["Location"] == gate
    waiver.refresh_from_db()
    assert waiver.revoked_by == ig_lead
    page = client.get(gate, {"profile": "pre_production"}).content.decode()
    assert "Revoked" in page and "The ward team did not clean them." in page
    assert revoke not in page  # nothing left to revoke
