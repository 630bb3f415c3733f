"""URLs of the REST API under ``/api/v1/``: one router for every app, plus the
OpenAPI schema and its Swagger UI / ReDoc pages (served from local static files
by drf-spectacular-sidecar: no CDN).

The schema and docs need an authenticated user like everything else here:
deny by default, even for documentation of what exists.
"""

from __future__ import annotations

from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)
from rest_framework.permissions import IsAuthenticated
from rest_framework.routers import DefaultRouter

from connectors.api.urls import ROUTES as CONNECTOR_ROUTES
from governance.api.urls import ROUTES as GOVERNANCE_ROUTES
from migration.api.urls import ROUTES as MIGRATION_ROUTES


class ApiRouter(DefaultRouter):
    """The default router without ``.json``-style format suffix routes.

    Suffix routes would double every URL (and the authorization matrix) for no
    client benefit: content negotiation uses the Accept header.
    """

    include_format_suffixes = False


app_name = "api"

router = ApiRouter()
for prefix, viewset, basename in (
    *CONNECTOR_ROUTES,
    *GOVERNANCE_ROUTES,
    *MIGRATION_ROUTES,
):
    router.register(prefix, viewset, basename=basename)

_AUTH = [IsAuthenticated]

urlpatterns = [
    path(
        "schema/",
        SpectacularAPIView.as_view(permission_classes=_AUTH),
        name="schema",
    ),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api:schema", permission_classes=_AUTH),
        name="docs",
    ),
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="api:schema", permission_classes=_AUTH),
        name="redoc",
    ),
    path("", include(router.urls)),
]
