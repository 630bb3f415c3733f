"""Routes of the governance API (registered on the root router in api_urls)."""

from __future__ import annotations

from typing import Any

from governance.api import views

ROUTES: list[tuple[str, Any, str]] = [
    ("projects", views.ProjectViewSet, "project"),
    ("audit-events", views.AuditEventViewSet, "audit-event"),
    ("gate-evaluations", views.GateEvaluationViewSet, "gate-evaluation"),
    ("waivers", views.WaiverViewSet, "waiver"),
    ("signoffs", views.SignOffViewSet, "signoff"),
    ("evidence-exports", views.EvidenceExportViewSet, "evidence-export"),
]
