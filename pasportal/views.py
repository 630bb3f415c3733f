"""Cross-cutting pages: the dashboard and the health check."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from governance.access import projects_for_user
from pasportal.htmx import HtmxHttpRequest


@login_required
@require_GET
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    projects = projects_for_user(request.user)
    return render(request, "pasportal/dashboard.html", {"projects": projects})


def _database_status() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # report, never raise: this is the health check
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "vendor": connection.vendor}


def _broker_status() -> dict[str, Any]:
    from django_q.brokers import get_broker
    from django_q.status import Stat

    try:
        broker = get_broker()
        broker.ping()
        clusters = Stat.get_all(broker=broker)
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {
        "ok": True,
        "kind": "redis" if type(broker).__name__ == "Redis" else "orm",
        "clusters": [
            {"status": str(stat.status), "workers": len(stat.workers)}
            for stat in clusters
        ],
    }


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Report the database, the task broker and running q2 clusters (no secrets)."""
    database = _database_status()
    broker = _broker_status()
    ok = bool(database["ok"] and broker["ok"])
    body = {
        "status": "ok" if ok else "degraded",
        "database": database,
        "broker": broker,
        "cluster_running": bool(broker.get("clusters")),
    }
    return JsonResponse(body, status=200 if ok else 503)
