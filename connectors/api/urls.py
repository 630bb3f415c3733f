"""Routes of the connectors API (registered on the root router in api_urls)."""

from __future__ import annotations

from typing import Any

from connectors.api import views

ROUTES: list[tuple[str, Any, str]] = [
    ("connectors", views.ConnectorViewSet, "connector"),
]
