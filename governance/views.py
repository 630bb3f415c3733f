"""Governance pages: gates and sign-offs of a run, the audit trail, evidence export.

Thin function views over ``governance.gates``, ``governance.signoffs`` and
``governance.evidence``; objects come through ``access_*`` (404 for projects
the user cannot see) and refusals come from the services, already audited.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from governance.access import access_object
from governance.audit import Refused, verify_database
from governance.evidence import evidence_export
from governance.gates import (
    gate_evaluate,
    gate_profiles,
    waiver_approve,
    waiver_request,
    waiver_revoke,
)
from governance.models import AuditEvent, EvidenceExport, GateEvaluation, Waiver
from governance.roles import Role
from governance.services import roles_of
from governance.signoffs import signoff_record, signoffs_status
from migration.engine.gates import describe_measure, describe_threshold
from migration.models import Run
from pasportal import svg
from pasportal.htmx import HtmxHttpRequest
from pasportal.views import page_project, project_perms, refused

AUDIT_PAGE = 50


def _run(request: HtmxHttpRequest, project_id: int, run_id: int) -> tuple[Any, Run]:
    project = page_project(request, project_id)
    run = access_object(
        request.user,
        Run.objects.filter(project=project).select_related("contract"),
        run_id,
    )
    return project, run


def _profile(request: HtmxHttpRequest, run: Run) -> str:
    wanted = request.GET.get("profile") or request.POST.get("profile") or run.profile
    return wanted if wanted in gate_profiles() else run.profile


# --- gates and sign-offs -----------------------------------------------------------


@login_required
@require_GET
def gate_detail(request: HtmxHttpRequest, project_id: int, run_id: int) -> HttpResponse:
    """Show a run's latest gate evaluation, the waivers and the sign-offs."""
    project, run = _run(request, project_id, run_id)
    profile = _profile(request, run)
    evaluation = (
        GateEvaluation.objects.filter(run=run, profile=profile)
        .select_related("evaluated_by")
        .first()
    )
    checks = list(evaluation.checks.select_related("waiver")) if evaluation else []
    for c in checks:  # read as a person would: "16 of 1,289 (1.24 %)", "at most 1 %"
        c.measured_text = describe_measure(c.numerator, c.denominator)  # type: ignore[attr-defined]
        c.threshold_text = describe_threshold(c.threshold)  # type: ignore[attr-defined]
        # "ward_stay.spell_number->inpatient_spell" reads, and wraps, as
        # "ward_stay.spell_number → inpatient_spell"
        c.scope_html = mark_safe(  # type: ignore[attr-defined]  # noqa: S308
            escape(c.target_table).replace(".", ".<wbr>").replace("-&gt;", " → ")
        )
    counts = Counter(c.status for c in checks)
    status = signoffs_status(run=run, profile=profile)
    my_roles = roles_of(user=request.user, project=project)
    sign_roles = [r for r in status["missing"] if r in my_roles]
    waivers = Waiver.objects.filter(project=project).select_related(
        "requested_by", "approver", "revoked_by"
    )[:50]
    return render(
        request,
        "governance/gate_detail.html",
        {
            "project": project,
            "perms": project_perms(request.user, project),
            "run": run,
            "profile": profile,
            "profiles": list(gate_profiles()),
            "evaluation": evaluation,
            "checks": checks,
            "counts": sorted(counts.items()),
            "gate_svg": svg.gate_summary(
                dict(counts), title=f"Gate checks of run {run.pk} by status"
            )
            if checks
            else "",
            "signoffs": status,
            "sign_roles": [(r, Role(r).label) for r in sign_roles],
            "role_labels": dict(Role.choices),
            "waivers": waivers,
            "failing_checks": [
                c
                for c in checks
                if c.status in ("FAIL", "ERROR", "PASS_WITH_VIOLATIONS")
            ],
            "now": timezone.now(),
        },
    )


@login_required
@require_POST
def gate_evaluate_view(
    request: HtmxHttpRequest, project_id: int, run_id: int
) -> HttpResponse:
    """Evaluate a gate profile on the run's stored results."""
    project, run = _run(request, project_id, run_id)
    profile = request.POST.get("profile", "")
    to = reverse("governance:gate-detail", args=[project.pk, run.pk])
    try:
        evaluation = gate_evaluate(actor=request.user, run=run, profile=profile)
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(request, f"Gate {profile} evaluated: {evaluation.status}")
    return redirect(f"{to}?profile={evaluation.profile}")


@login_required
@require_POST
def signoff_create(
    request: HtmxHttpRequest, project_id: int, run_id: int
) -> HttpResponse:
    """Record the user's sign-off in one of their roles."""
    project, run = _run(request, project_id, run_id)
    profile = _profile(request, run)
    to = reverse("governance:gate-detail", args=[project.pk, run.pk])
    try:
        signoff_record(
            actor=request.user,
            run=run,
            role=request.POST.get("role", ""),
            decision=request.POST.get("decision", ""),
            comment=request.POST.get("comment", "").strip(),
            profile=profile,
        )
    except Refused as exc:
        return refused(request, exc, f"{to}?profile={profile}")
    messages.success(request, "Your sign-off is recorded")
    return redirect(f"{to}?profile={profile}")


@login_required
@require_POST
def waiver_request_view(
    request: HtmxHttpRequest, project_id: int, run_id: int
) -> HttpResponse:
    """Ask for a time-limited waiver of one check; another person must approve it."""
    project, run = _run(request, project_id, run_id)
    profile = _profile(request, run)
    to = f"{reverse('governance:gate-detail', args=[project.pk, run.pk])}?profile={profile}"
    expires = _date(request.POST.get("expires_at", ""))
    if expires is None:
        messages.error(request, "Give the date the waiver expires (YYYY-MM-DD).")
        return redirect(to)
    try:
        waiver_request(
            actor=request.user,
            project=project,
            check_id=request.POST.get("check_id", ""),
            target_table=request.POST.get("target_table", ""),
            profile=profile,
            reason=request.POST.get("reason", "").strip(),
            expires_at=dt.datetime.combine(expires, dt.time(23, 59), tzinfo=dt.UTC),
        )
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(request, "Waiver requested: another person must approve it")
    return redirect(to)


def _waiver_post(
    request: HtmxHttpRequest, project_id: int, waiver_id: int
) -> tuple[Waiver, str]:
    """Return the waiver a POST acts on (404 outside the project) and where to go next.

    ``next`` is followed only inside the project's own pages.
    """
    project = page_project(request, project_id)
    waiver = access_object(
        request.user, Waiver.objects.filter(project=project), waiver_id
    )
    to = request.POST.get("next", "")
    if not to.startswith(f"/projects/{project.pk}/"):
        to = reverse("governance:audit-list", args=[project.pk])
    return waiver, to


@login_required
@require_POST
def waiver_approve_view(
    request: HtmxHttpRequest, project_id: int, waiver_id: int
) -> HttpResponse:
    """Approve a pending waiver (four eyes: not one's own request)."""
    waiver, to = _waiver_post(request, project_id, waiver_id)
    try:
        waiver_approve(actor=request.user, waiver=waiver)
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(request, f"Waiver of {waiver.check_id} approved")
    return redirect(to)


@login_required
@require_POST
def waiver_revoke_view(
    request: HtmxHttpRequest, project_id: int, waiver_id: int
) -> HttpResponse:
    """Withdraw a waiver before it expires (with a reason)."""
    waiver, to = _waiver_post(request, project_id, waiver_id)
    try:
        waiver_revoke(
            actor=request.user,
            waiver=waiver,
            reason=request.POST.get("reason", "").strip(),
        )
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(request, f"Waiver of {waiver.check_id} revoked")
    return redirect(to)


# --- audit --------------------------------------------------------------------------


def _date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


@login_required
@require_GET
def audit_list(request: HtmxHttpRequest, project_id: int) -> HttpResponse:
    """Search the project's audit events and show the chain's verification status."""
    project = page_project(request, project_id, "view_audit")
    q = {
        "action": request.GET.get("action", "").strip(),
        "actor": request.GET.get("actor", "").strip(),
        "target": request.GET.get("target", "").strip(),
        "since": request.GET.get("since", "").strip(),
        "until": request.GET.get("until", "").strip(),
    }
    events = AuditEvent.objects.filter(project_id=project.pk).order_by("-seq")
    if q["action"]:
        events = events.filter(action__icontains=q["action"])
    if q["actor"]:
        events = events.filter(actor__username__icontains=q["actor"])
    if q["target"]:
        events = events.filter(target_type__icontains=q["target"])
    if since := _date(q["since"]):
        events = events.filter(created_at__date__gte=since)
    if until := _date(q["until"]):
        events = events.filter(created_at__date__lte=until)
    page = Paginator(events, AUDIT_PAGE).get_page(request.GET.get("page"))
    runs = Run.objects.filter(project=project).order_by("-created_at")[:20]
    exports = EvidenceExport.objects.filter(run__project=project).select_related(
        "run", "created_by"
    )[:20]
    context = {
        "project": project,
        "perms": project_perms(request.user, project),
        "q": q,
        "page": page,
        "querystring": "&".join(f"{k}={v}" for k, v in q.items() if v),
        "verdict": verify_database(),
        "runs": runs,
        "exports": exports,
    }
    template = "governance/audit_list.html"
    if request.htmx and request.htmx.target == "audit-results":
        template += "#results"
    return render(request, template, context)


# --- evidence -----------------------------------------------------------------------


def _evidence_dir() -> Path:
    directory = Path(settings.PAS_DATA_DIR) / "evidence"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@login_required
@require_POST
def evidence_create(
    request: HtmxHttpRequest, project_id: int, run_id: int
) -> HttpResponse:
    """Build the run's evidence bundle and send it as a download."""
    project, run = _run(request, project_id, run_id)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S%f")
    out = _evidence_dir() / f"evidence-run-{run.pk}-{stamp}.zip"
    try:
        export = evidence_export(actor=request.user, run=run, out_path=out)
    except Refused as exc:
        return refused(
            request, exc, reverse("governance:audit-list", args=[project.pk])
        )
    return _bundle_response(export)


def _bundle_response(export: EvidenceExport) -> FileResponse:
    response = FileResponse(
        open(export.path, "rb"),  # FileResponse closes it
        as_attachment=True,
        filename=f"evidence-run-{export.run_id}-{export.pk}.zip",
        content_type="application/zip",
    )
    response["X-Content-SHA256"] = export.sha256
    return response


@login_required
@require_GET
def evidence_download(
    request: HtmxHttpRequest, project_id: int, export_id: int
) -> HttpResponse:
    """Download an evidence bundle exported earlier (needs export_evidence)."""
    project = page_project(request, project_id, "export_evidence")
    export = access_object(
        request.user,
        EvidenceExport.objects.filter(run__project=project),
        export_id,
        project_field="run__project",
    )
    if not Path(export.path).is_file():
        messages.error(request, "That bundle is no longer on disk: export it again")
        return redirect("governance:audit-list", project.pk)
    return _bundle_response(export)
