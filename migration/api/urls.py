"""Routes of the migration API (registered on the root router in api_urls)."""

from __future__ import annotations

from typing import Any

from migration.api import views

ROUTES: list[tuple[str, Any, str]] = [
    ("contracts", views.ContractViewSet, "contract"),
    ("runs", views.RunViewSet, "run"),
]
