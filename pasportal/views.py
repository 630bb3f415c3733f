"""Cross-cutting pages (dashboard, health check) and helpers every page view uses."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from governance.access import access_project, projects_for_user, user_has_project_perm
from governance.audit import Refused
from governance.models import MigrationProject
from pasportal.htmx import HtmxHttpRequest

#: Refusal codes that mean "you may not", answered 403; every other code is a
#: conflict with the object's state and is shown to the person as a message.
PERMISSION_CODES = frozenset({"forbidden", "permission", "permission_denied"})


# --- helpers shared by the page views of every app ------------------------------


def page_project(
    request: HttpRequest, project_id: int, perm: str | None = None
) -> MigrationProject:
    """Return the project for a page; 404 for non-members, 403 without ``perm``."""
    project = access_project(request.user, project_id)
    if perm and not user_has_project_perm(request.user, project, perm):
        raise PermissionDenied(f"you need the {perm} permission on this project")
    return project


def project_perms(user: Any, project: MigrationProject) -> set[str]:
    """Return the object permission codenames ``user`` holds on ``project``."""
    from guardian.shortcuts import get_perms

    return set(get_perms(user, project))


def refused(request: HttpRequest, exc: Refused, to: str) -> HttpResponse:
    """Answer a service refusal: 403 for permissions, else its message and back."""
    if exc.code in PERMISSION_CODES:
        raise PermissionDenied(str(exc))
    messages.error(request, str(exc))
    return redirect(to)


def page_call(
    request: HttpRequest, to: str, call: Callable[[], Any], *, label: str = ""
) -> tuple[Any, HttpResponse | None]:
    """Run a page's service call: ``(result, None)``, or ``(None, answer)``
    when it was refused (``refused``) or given bad input (the problems said
    on the page ``to``, after ``label``)."""
    try:
        return call(), None
    except Refused as exc:
        return None, refused(request, exc, to)
    except ValidationError as exc:
        messages.error(request, label + "; ".join(exc.messages))
        return None, redirect(to)


def patient_data(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Mark a page that can show patient data: never stored by browsers or proxies."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Cache-Control"] = "no-store, private, max-age=0"
        response["Pragma"] = "no-cache"
        return response

    return never_cache(wrapper)


# --- dashboard ----------------------------------------------------------------------


def _project_summary(user: Any, project: MigrationProject) -> dict[str, Any]:
    # Counts only: the dashboard is read by every role and shows no patient data.
    from connectors.models import Connector
    from governance.signoffs import signoffs_status
    from migration.models import (
        CrosswalkRow,
        ExclusionRule,
        FieldMapping,
        ReviewStatus,
        Run,
        RunState,
    )
    from migration.selectors_mapping import missqueue_open_values

    runs = list(
        Run.objects.filter(project=project)
        .select_related("contract", "source", "target")
        .order_by("-created_at")[:5]
    )
    awaited: list[dict[str, Any]] = []
    for run in Run.objects.filter(
        project=project,
        state=RunState.SUCCEEDED,
        profile="cutover_ready",
        superseded_by__isnull=True,
    ).select_related("contract")[:5]:
        status = signoffs_status(run=run, profile=run.profile)
        if status["missing"]:
            awaited.append({"run": run, "missing": status["missing"]})
    work = FieldMapping.objects.filter(
        table_mapping__mapping_set__project=project
    ).aggregate(
        proposed=Count("pk", filter=Q(status=ReviewStatus.PROPOSED)),
        flagged=Count("pk", filter=Q(status=ReviewStatus.FLAGGED)),
    )
    rules = ExclusionRule.objects.filter(
        table_mapping__mapping_set__project=project
    ).aggregate(
        proposed=Count("pk", filter=Q(status=ReviewStatus.PROPOSED)),
        flagged=Count("pk", filter=Q(status=ReviewStatus.FLAGGED)),
    )
    rows = CrosswalkRow.objects.filter(crosswalk__project=project).aggregate(
        proposed=Count("pk", filter=Q(status=ReviewStatus.PROPOSED)),
        flagged=Count("pk", filter=Q(status=ReviewStatus.FLAGGED)),
    )
    return {
        "project": project,
        "perms": project_perms(user, project),
        "runs": runs,
        "proposed_mappings": work["proposed"],
        "flagged_mappings": work["flagged"],
        "proposed_rules": rules["proposed"],
        "flagged_rules": rules["flagged"],
        "proposed_rows": rows["proposed"],
        "flagged_rows": rows["flagged"],
        "open_misses": missqueue_open_values(project=project),
        "signoffs_awaited": awaited,
        "connectors": list(Connector.objects.filter(project=project)),
    }


@login_required
@require_GET
def dashboard(request: HtmxHttpRequest) -> HttpResponse:
    """Show each of the user's projects: latest runs, steward work, connector health."""
    projects = projects_for_user(request.user)
    summaries = [_project_summary(request.user, p) for p in projects]
    return render(
        request,
        "pasportal/dashboard.html",
        {"projects": projects, "summaries": summaries},
    )


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
