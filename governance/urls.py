"""Governance pages, mounted under ``projects/<int:project_id>/``."""

from __future__ import annotations

from django.urls import path

from governance import views

app_name = "governance"

urlpatterns = [
    path("runs/<int:run_id>/gates/", views.gate_detail, name="gate-detail"),
    path(
        "runs/<int:run_id>/gates/evaluate/",
        views.gate_evaluate_view,
        name="gate-evaluate",
    ),
    path("runs/<int:run_id>/signoffs/", views.signoff_create, name="signoff-create"),
    path(
        "runs/<int:run_id>/waivers/",
        views.waiver_request_view,
        name="waiver-create",
    ),
    path(
        "waivers/<int:waiver_id>/approve/",
        views.waiver_approve_view,
        name="waiver-approve",
    ),
    path(
        "waivers/<int:waiver_id>/revoke/",
        views.waiver_revoke_view,
        name="waiver-revoke",
    ),
    path("audit/", views.audit_list, name="audit-list"),
    path("runs/<int:run_id>/evidence/", views.evidence_create, name="evidence-create"),
    path(
        "evidence/<int:export_id>/",
        views.evidence_download,
        name="evidence-download",
    ),
]
