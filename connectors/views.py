"""Connector pages: list, detail with health history and recent queries.

Configuration happens in the Django admin (linked from the pages); secrets are
references and never rendered. Extracting a schema is a migration action and
lives with the snapshot pages (``migration:snapshot-create``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from connectors.models import Connector
from connectors.services import (
    connector_check,
    connector_landed_copies,
    connector_lands_extracts,
    connector_purge_landing,
)
from governance.access import access_object
from migration.engine.errors import EngineError
from pasportal.htmx import HtmxHttpRequest
from pasportal.views import page_project, project_perms

HEALTH_ROWS = 20


@login_required
@require_GET
def connector_list(request: HtmxHttpRequest, project_id: int) -> HttpResponse:
    """List the project's connectors with their last known health."""
    project = page_project(request, project_id)
    return render(
        request,
        "connectors/connector_list.html",
        {
            "project": project,
            "perms": project_perms(request.user, project),
            "connectors": Connector.objects.filter(project=project),
        },
    )


@login_required
@require_GET
def connector_detail(
    request: HtmxHttpRequest, project_id: int, connector_id: int
) -> HttpResponse:
    """Show a connector: kind, role, health history and recent governed queries."""
    project = page_project(request, project_id)
    connector = access_object(
        request.user, Connector.objects.filter(project=project), connector_id
    )
    return _detail(request, project, connector)


def _detail(
    request: HtmxHttpRequest, project: Any, connector: Connector
) -> HttpResponse:
    context = {
        "project": project,
        "perms": project_perms(request.user, project),
        "connector": connector,
        # Only the names of the settings: values can be paths, hosts or refs.
        "config_keys": sorted(connector.config or {}),
        "health": connector.health.all()[:HEALTH_ROWS],
        "queries": connector.queries.all()[:HEALTH_ROWS],
        "landed": _landed(connector),
    }
    template = "connectors/connector_detail.html"
    if request.htmx and request.htmx.target == "connector-health":
        template += "#health"
    return render(request, template, context)


@login_required
@require_POST
def connector_check_view(
    request: HtmxHttpRequest, project_id: int, connector_id: int
) -> HttpResponse:
    """Test the connection now; record the result in the health history."""
    # connector_check records whatever it is asked to, so the permission is
    # enforced here, before the connector is touched.
    project = page_project(request, project_id, "manage_connectors")
    connector = access_object(
        request.user, Connector.objects.filter(project=project), connector_id
    )
    health = connector_check(actor=request.user, connector=connector)
    if request.htmx:
        return _detail(request, project, connector)
    messages.success(request, f"Connection test: {health.get_status_display()}")
    return redirect("connectors:connector-detail", project.pk, connector.pk)


def _landed(connector: Connector) -> dict[str, Any] | None:
    """Summarise a flat-extract connector's landed copies (None: not a file kind)."""
    try:
        if not connector_lands_extracts(connector):
            return None
        copies = connector_landed_copies(connector)
    except (EngineError, OSError):  # a moved folder must not break the page
        return {"error": True, "count": 0, "bytes": 0, "last_used": None}
    return {
        "error": False,
        "count": len(copies),
        "bytes": sum(c.bytes for c in copies),
        "last_used": (
            datetime.fromtimestamp(max(c.last_used for c in copies), tz=UTC)
            if copies
            else None
        ),
    }


@login_required
@require_POST
def connector_purge_landing_view(
    request: HtmxHttpRequest, project_id: int, connector_id: int
) -> HttpResponse:
    """Delete the connector's landed copies of its extracts (they hold patient rows)."""
    project = page_project(request, project_id, "manage_connectors")
    connector = access_object(
        request.user, Connector.objects.filter(project=project), connector_id
    )
    gone = connector_purge_landing(actor=request.user, connector=connector)
    messages.success(
        request,
        f"Deleted {len(gone)} landed cop{'y' if len(gone) == 1 else 'ies'}; "
        "the next run lands again from the extract.",
    )
    return redirect("connectors:connector-detail", project.pk, connector.pk)
