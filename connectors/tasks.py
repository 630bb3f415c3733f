"""django-q2 tasks of the connectors app: ids in, services do the work."""

from __future__ import annotations

from django.db import close_old_connections

from connectors.models import Connector
from connectors.services import connector_check


def connectors_check_all() -> dict[str, int]:
    """Scheduled: health-check every connector; return counts by status."""
    close_old_connections()
    counts: dict[str, int] = {}
    for connector in Connector.objects.order_by("pk"):
        health = connector_check(actor="scheduler", connector=connector)
        counts[health.status] = counts.get(health.status, 0) + 1
    return counts


def connector_check_task(connector_id: int) -> str:
    """On demand from a page or the API: check one connector; return its status."""
    connector = Connector.objects.get(pk=connector_id)
    return str(connector_check(actor="scheduler", connector=connector).status)
