"""Migration pages: snapshots, mappings (with live preview), crosswalks, runs.

Thin function views: fetch through ``access_*`` (404 for other projects), call
a service or selector, render one template (or one of its named partials for
htmx). No workflow rule lives here; refusals come from the services.
"""

from __future__ import annotations

import csv
from collections import Counter
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Max, Q
from django.http import (
    Http404,
    HttpResponse,
    HttpResponseBadRequest,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from connectors.models import Connector, ConnectorRole
from governance.access import access_object
from governance.audit import Refused
from migration.engine.errors import EngineError
from migration.models import (
    CodeSystem,
    Concept,
    Contract,
    Crosswalk,
    CrosswalkRow,
    Equivalence,
    ExclusionRule,
    FieldMapping,
    MappingSet,
    MissQueueEntry,
    RejectRecord,
    ReviewStatus,
    Run,
    SchemaSnapshot,
    TableMapping,
)
from migration.selectors_mapping import (
    access_missqueue_entry,
    crosswalk_export_csv,
    crosswalk_rows_for,
    crosswalks_default_missing,
    field_mappings_for_review,
    mapping_unmapped_report,
    missqueue_groups,
    missqueue_open_values,
    snapshot_diff,
    snapshot_profile_for,
)
from migration.selectors_misses import run_crosswalk_misses
from migration.selectors_preview import MappingPreview, mapping_preview
from migration.selectors_rejects import rejects_for
from migration.services.contracts import (
    EXCLUSION_OPS,
    contract_blockers_by_kind,
    contract_publish,
    exclusion_in_words,
)
from migration.services.crosswalks import (
    crosswalk_import_csv,
    crosswalk_row_approve,
    crosswalk_row_flag,
    crosswalk_row_reject,
    crosswalk_row_update,
    crosswalks_seed_defaults,
    missqueue_ignore,
    missqueue_reopen,
    missqueue_resolve,
)
from migration.services.mappings import (
    exclusion_rule_approve,
    exclusion_rule_create,
    exclusion_rule_flag,
    exclusion_rule_reject,
    exclusion_rule_revert,
    field_mapping_approve,
    field_mapping_create,
    field_mapping_draft,
    field_mapping_flag,
    field_mapping_needs_rationale,
    field_mapping_propose,
    field_mapping_reject,
    field_mapping_update,
    field_mappings_bulk_approve,
    mapping_set_create,
    mapping_set_import_contract,
)
from migration.services.runs import (
    PROFILES,
    TERMINAL,
    run_cancel,
    run_resume,
    run_start,
)
from migration.services.snapshots import snapshot_extract_request, snapshot_job
from migration.services.suggestions import mapping_suggestions_apply, target_model_for
from migration.steps import PREFIX as STEP_PREFIX
from migration.steps import (
    describe_step,
    editor_rows,
    step_kinds,
    step_row,
    steps_from_form,
)
from pasportal import svg
from pasportal.htmx import HtmxHttpRequest
from pasportal.views import (
    page_call,
    page_project,
    patient_data,
    project_perms,
    refused,
)

REJECTS_PAGE = 50


# --- runs -----------------------------------------------------------------------------


class RunStartForm(forms.Form):
    """What a run needs: a contract, a source, a target and a gate profile."""

    contract = forms.ModelChoiceField(
        queryset=Contract.objects.none(),
        help_text="The latest published version is chosen for you.",
    )
    source = forms.ModelChoiceField(queryset=Connector.objects.none())
    target = forms.ModelChoiceField(queryset=Connector.objects.none())
    profile = forms.ChoiceField(choices=[(p, p.replace("_", " ")) for p in PROFILES])

    def __init__(self, *args: Any, project: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        connectors = Connector.objects.filter(project=project).order_by("name")
        choices = {
            "contract": Contract.objects.filter(project=project).order_by("-version"),
            "source": connectors.filter(role=ConnectorRole.SOURCE),
            "target": connectors.filter(role=ConnectorRole.TARGET),
        }
        for name, queryset in choices.items():
            field = self.fields[name]
            field.queryset = queryset  # type: ignore[attr-defined]
            # The newest contract, and a project's only source or target, are
            # what a person would pick: chosen already, still changeable.
            if name == "contract" or queryset.count() == 1:
                self.initial.setdefault(
                    name, queryset.values_list("pk", flat=True).first()
                )
        for name, field in self.fields.items():
            field.widget.attrs["class"] = "nhsuk-select"
            if field.help_text:  # the hint pasportal/_field.html renders
                field.widget.attrs["aria-describedby"] = f"id_{name}-hint"


def _run(request: HtmxHttpRequest, project_id: int, run_id: int) -> tuple[Any, Run]:
    project = page_project(request, project_id)
    run = access_object(
        request.user,
        Run.objects.filter(project=project).select_related(
            "contract", "source", "target", "created_by"
        ),
        run_id,
    )
    return project, run


def _progress_rows(run: Run) -> list[dict[str, Any]]:
    rows = []
    for t in run.tables.order_by("order", "pk"):
        total = t.rows_total
        done = t.rows_read
        finished = t.stage == "done" or (total is not None and done >= total)
        pct = (
            100.0 if finished and not total else (100.0 * done / total if total else 0)
        )
        eta = None
        if not finished and total and t.rate_rows_per_s:
            eta = max(0.0, (total - done) / t.rate_rows_per_s)
        rows.append(
            {
                "table": t,
                "pct": round(min(pct, 100.0), 1),
                "eta": eta,
                "finished": finished,
            }
        )
    return rows


def _run_context(request: HtmxHttpRequest, project: Any, run: Run) -> dict[str, Any]:
    tables = list(run.tables.order_by("order", "pk"))
    ledgers = [
        {
            "table": t,
            "balanced": t.ledger_balanced,
            "svg": svg.ledger_bar(
                table=t.target_table,
                loaded=t.rows_loaded,
                rejected=t.rows_rejected,
                excluded=t.rows_excluded,
            ),
            "columns": (t.metrics or {}).get("columns", []),
        }
        for t in tables
    ]
    reasons = Counter(
        dict(
            RejectRecord.objects.filter(run=run)
            .values_list("reason_code")
            .annotate(n=Count("pk"))
            .values_list("reason_code", "n")
        )
    )
    recon = [(t.target_table, t.rows_total or 0, t.rows_loaded) for t in tables]
    excluded = [
        (
            t.target_table,
            sorted(((t.metrics or {}).get("excluded_by_rule") or {}).items()),
        )
        for t in tables
        if (t.metrics or {}).get("excluded_by_rule")
    ]
    report = run.report or {}
    return {
        "project": project,
        "perms": project_perms(request.user, project),
        "run": run,
        "terminal": run.state in TERMINAL,
        "progress": _progress_rows(run),
        "ledgers": ledgers,
        "excluded": excluded,
        "reasons": reasons.most_common(),
        "reasons_svg": svg.ranked_bars(
            list(reasons.items()), title="Rejected rows by reason", colour=svg.NHS_RED
        ),
        "recon_svg": svg.paired_bars(
            recon,
            title="Reconciliation: source rows and rows loaded into the target",
            first="source",
            second="loaded",
        ),
        "fk_chains": report.get("fk_chains", []),
        "failure_reasons": report.get("failure_reasons", []),
        "misses": run_crosswalk_misses(run) if run.state in TERMINAL else [],
    }


@login_required
@require_GET
def run_list(request: HtmxHttpRequest, project_id: int) -> HttpResponse:
    """List the project's runs, newest first."""
    project = page_project(request, project_id)
    runs = Run.objects.filter(project=project).select_related("contract")[:100]
    return render(
        request,
        "migration/run_list.html",
        {
            "project": project,
            "perms": project_perms(request.user, project),
            "runs": runs,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def run_create(request: HtmxHttpRequest, project_id: int) -> HttpResponse:
    """Show the start-a-run form; on POST start the run and go to its page."""
    project = page_project(request, project_id, "start_run")
    form = RunStartForm(request.POST or None, project=project)
    if request.method == "POST" and form.is_valid():
        try:
            run = run_start(
                actor=request.user,
                contract=form.cleaned_data["contract"],
                source=form.cleaned_data["source"],
                target=form.cleaned_data["target"],
                profile=form.cleaned_data["profile"],
            )
        except Refused as exc:
            return refused(
                request, exc, reverse("migration:run-create", args=[project.pk])
            )
        messages.success(request, f"Run {run.pk} started")
        return redirect("migration:run-detail", project.pk, run.pk)
    return render(
        request,
        "migration/run_create.html",
        {
            "project": project,
            "perms": project_perms(request.user, project),
            "form": form,
        },
        status=400 if form.is_bound else 200,
    )


@login_required
@require_GET
def run_detail(request: HtmxHttpRequest, project_id: int, run_id: int) -> HttpResponse:
    """Show a run: live progress per table, ledger, reconciliation, reject reasons."""
    project, run = _run(request, project_id, run_id)
    return render(
        request, "migration/run_detail.html", _run_context(request, project, run)
    )


@login_required
@require_GET
def run_progress(
    request: HtmxHttpRequest, project_id: int, run_id: int
) -> HttpResponse:
    """Return the progress fragment (htmx polling) or the whole run page."""
    project, run = _run(request, project_id, run_id)
    context = _run_context(request, project, run)
    if not request.htmx:
        return render(request, "migration/run_detail.html", context)
    response = render(request, "migration/run_detail.html#progress", context)
    if context["terminal"]:
        # The poll only runs while the run is live: the first terminal answer
        # reloads the page so the ledger, reconciliation and rejects appear.
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_POST
def run_cancel_view(
    request: HtmxHttpRequest, project_id: int, run_id: int
) -> HttpResponse:
    """Cancel a queued run or ask a running one to stop."""
    project, run = _run(request, project_id, run_id)
    to = reverse("migration:run-detail", args=[project.pk, run.pk])
    try:
        run_cancel(actor=request.user, run=run)
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(request, f"Cancellation of run {run.pk} requested")
    return redirect(to)


@login_required
@require_POST
def run_resume_view(
    request: HtmxHttpRequest, project_id: int, run_id: int
) -> HttpResponse:
    """Re-queue a failed or cancelled run from its checkpoints."""
    project, run = _run(request, project_id, run_id)
    to = reverse("migration:run-detail", args=[project.pk, run.pk])
    try:
        run_resume(actor=request.user, run=run)
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(request, f"Run {run.pk} resumed")
    return redirect(to)


# --- rejects -------------------------------------------------------------------------


def _reject_filters(request: HtmxHttpRequest, run: Run) -> dict[str, Any]:
    # Filters are table and reason *names* chosen from what the run has: an
    # unknown value simply matches nothing, and no patient value is ever a filter.
    choices = RejectRecord.objects.filter(run=run)
    tables = sorted(set(choices.values_list("target_table", flat=True).distinct()))
    reasons = sorted(set(choices.values_list("reason_code", flat=True).distinct()))
    table = request.GET.get("table", "")
    reason = request.GET.get("reason", "")
    return {
        "table": table if table in tables else "",
        "reason": reason if reason in reasons else "",
        "tables": tables,
        "reasons": reasons,
    }


@login_required
@require_GET
@patient_data
def reject_list(request: HtmxHttpRequest, project_id: int, run_id: int) -> HttpResponse:
    """Browse a run's rejects by table and reason; values masked unless view_pid."""
    project, run = _run(request, project_id, run_id)
    filters = _reject_filters(request, run)
    try:
        page = max(0, int(request.GET.get("page", "0")))
    except ValueError:
        page = 0
    qs = RejectRecord.objects.filter(run=run)
    if filters["table"]:
        qs = qs.filter(target_table=filters["table"])
    if filters["reason"]:
        qs = qs.filter(reason_code=filters["reason"])
    total = qs.count()
    rejects = rejects_for(
        user=request.user,
        run=run,
        table=filters["table"] or None,
        reason=filters["reason"] or None,
        limit=REJECTS_PAGE,
        offset=page * REJECTS_PAGE,
    )
    context = {
        "project": project,
        "perms": project_perms(request.user, project),
        "run": run,
        "rejects": rejects,
        "total": total,
        "page": page,
        "first": page * REJECTS_PAGE + 1 if rejects else 0,
        "last": page * REJECTS_PAGE + len(rejects),
        "has_next": (page + 1) * REJECTS_PAGE < total,
        **filters,
    }
    template = "migration/reject_list.html"
    if request.htmx and request.htmx.target == "reject-results":
        template += "#results"
    return render(request, template, context)


class _Echo:
    def write(self, value: str) -> str:
        return value


@login_required
@require_GET
@patient_data
def reject_download(
    request: HtmxHttpRequest, project_id: int, run_id: int
) -> StreamingHttpResponse:
    """Download the filtered rejects as CSV (masked unless view_pid; audited)."""
    _project, run = _run(request, project_id, run_id)
    filters = _reject_filters(request, run)
    rejects = rejects_for(
        user=request.user,
        run=run,
        table=filters["table"] or None,
        reason=filters["reason"] or None,
    )
    writer = csv.writer(_Echo())
    header = [
        "target_table",
        "source_table",
        "source_key",
        "column",
        "raw_value",
        "masked",
        "rule_id",
        "reason_code",
        "crosswalk_ref",
        "crosswalk_version",
    ]

    def rows() -> Any:
        yield writer.writerow(header)
        for r in rejects:
            yield writer.writerow([getattr(r, h) for h in header])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-rejects.csv"'
    return response


# --- schema snapshots ----------------------------------------------------------------


def _connector(request: HtmxHttpRequest, project: Any, connector_id: int) -> Connector:
    return access_object(
        request.user, Connector.objects.filter(project=project), connector_id
    )


@login_required
@require_GET
def snapshot_list(
    request: HtmxHttpRequest, project_id: int, connector_id: int
) -> HttpResponse:
    """List a connector's schema snapshots and offer a diff of two of them."""
    project = page_project(request, project_id)
    connector = _connector(request, project, connector_id)
    snapshots = list(SchemaSnapshot.objects.filter(connector=connector)[:50])
    return render(
        request,
        "migration/snapshot_list.html",
        {
            "project": project,
            "perms": project_perms(request.user, project),
            "connector": connector,
            "snapshots": snapshots,
        },
    )


@login_required
@require_POST
def snapshot_create(
    request: HtmxHttpRequest, project_id: int, connector_id: int
) -> HttpResponse:
    """Queue the extraction (discover + profile) of the connector's schema as a task."""
    project = page_project(request, project_id)
    connector = _connector(request, project, connector_id)
    back = reverse("connectors:connector-detail", args=[project.pk, connector.pk])
    try:
        job_id = snapshot_extract_request(actor=request.user, connector=connector)
    except Refused as exc:
        return refused(request, exc, back)
    return redirect("migration:snapshot-job", project.pk, connector.pk, job_id)


@login_required
@require_GET
def snapshot_job_view(
    request: HtmxHttpRequest, project_id: int, connector_id: int, job_id: str
) -> HttpResponse:
    """Show an extraction's progress (htmx polls the fragment until it ends)."""
    project = page_project(request, project_id)
    connector = _connector(request, project, connector_id)
    job = snapshot_job(job_id)
    if job is None or job.get("connector") != connector.pk:
        raise Http404("No such extraction")
    total = job.get("total") or 0
    context = {
        "project": project,
        "connector": connector,
        "job": job,
        "job_id": job_id,
        "percent": int(100 * job.get("done", 0) / total) if total else 0,
        "finished": job.get("state") in ("done", "failed"),
        "perms": project_perms(request.user, project),
    }
    if request.htmx:
        response = render(request, "migration/snapshot_job.html#progress", context)
        if context["finished"]:
            response["HX-Refresh"] = "true"  # show the outcome with its links
        return response
    return render(request, "migration/snapshot_job.html", context)


def _snapshot(
    request: HtmxHttpRequest, project: Any, snapshot_id: int
) -> SchemaSnapshot:
    return access_object(
        request.user,
        SchemaSnapshot.objects.filter(project=project).select_related("connector"),
        snapshot_id,
    )


@login_required
@require_GET
@patient_data
def snapshot_detail(
    request: HtmxHttpRequest, project_id: int, snapshot_id: int
) -> HttpResponse:
    """Show a snapshot's tables and one table's column profiles (PID masked)."""
    project = page_project(request, project_id)
    snapshot = _snapshot(request, project, snapshot_id)
    tables = snapshot.tables or []
    names = [str(t["name"]) for t in tables]
    table = request.GET.get("table", "")
    if table not in names:
        table = names[0] if names else ""
    columns: list[dict[str, Any]] = []
    if table:
        profiles = snapshot_profile_for(
            user=request.user, snapshot=snapshot, table=table
        )
        info = next(t for t in tables if t["name"] == table)
        for col in info.get("columns", []):
            columns.append({**col, "profile": profiles.get(col["name"], {})})
    others = SchemaSnapshot.objects.filter(connector=snapshot.connector).exclude(
        pk=snapshot.pk
    )[:20]
    context = {
        "project": project,
        "perms": project_perms(request.user, project),
        "snapshot": snapshot,
        "tables": tables,
        "table": table,
        "columns": columns,
        "others": others,
    }
    template = "migration/snapshot_detail.html"
    if request.htmx and request.htmx.target == "snapshot-columns":
        template += "#columns"
    return render(request, template, context)


@login_required
@require_POST
def mappingset_import(
    request: HtmxHttpRequest, project_id: int, snapshot_id: int
) -> HttpResponse:
    """Start a mapping set of this snapshot from the packaged default contract."""
    project = page_project(request, project_id)
    snapshot = _snapshot(request, project, snapshot_id)
    back = reverse("migration:snapshot-detail", args=[project.pk, snapshot.pk])
    ms, failed = page_call(
        request,
        back,
        lambda: mapping_set_import_contract(
            actor=request.user, project=project, source_snapshot=snapshot
        ),
    )
    if failed is not None:
        return failed
    messages.success(
        request,
        f"Mapping set {ms.name!r} started from the default contract: every field "
        "is proposed for review by a steward other than you.",
    )
    return redirect("migration:mappingset-detail", project.pk, ms.pk)


@login_required
@require_POST
def mappingset_suggest(
    request: HtmxHttpRequest, project_id: int, snapshot_id: int
) -> HttpResponse:
    """Start a mapping set of this snapshot with the suggestions as drafts."""
    project = page_project(request, project_id)
    snapshot = _snapshot(request, project, snapshot_id)
    back = reverse("migration:snapshot-detail", args=[project.pk, snapshot.pk])
    name = request.POST.get("name", "").strip()
    if not name:
        messages.error(request, "Give the mapping set a name")
        return redirect(back)
    if len(name) > 200:
        messages.error(request, "A mapping set's name is at most 200 characters")
        return redirect(back)
    try:
        # Two services, each its own transaction with its audit events (a
        # refusal, audited, must not be rolled back by an outer one); the
        # same permission lets both through.
        ms = mapping_set_create(
            actor=request.user, project=project, name=name, source_snapshot=snapshot
        )
        drafts = mapping_suggestions_apply(actor=request.user, mapping_set=ms)
    except Refused as exc:
        return refused(request, exc, back)
    except (ValidationError, EngineError) as exc:
        messages.error(request, "; ".join(getattr(exc, "messages", [str(exc)])))
        return redirect(back)
    messages.success(
        request,
        f"Mapping set {ms.name!r} started with {len(drafts)} suggested field "
        "mapping(s) as drafts: check each, propose it, and another steward "
        "approves.",
    )
    return redirect("migration:mappingset-detail", project.pk, ms.pk)


@login_required
@require_GET
def snapshot_diff_view(request: HtmxHttpRequest, project_id: int) -> HttpResponse:
    """Compare two snapshots of the project; breaking changes first."""
    project = page_project(request, project_id)
    scoped_snapshots = SchemaSnapshot.objects.filter(project=project)
    old = access_object(request.user, scoped_snapshots, request.GET.get("old"))
    new = access_object(request.user, scoped_snapshots, request.GET.get("new"))
    diff = snapshot_diff(old=old, new=new)
    return render(
        request,
        "migration/snapshot_diff.html",
        {
            "project": project,
            "perms": project_perms(request.user, project),
            "old": old,
            "new": new,
            "changes": sorted(diff.changes, key=lambda c: (not c.breaking, c.table)),
            "breaking": len(diff.breaking),
        },
    )


# --- mappings ----------------------------------------------------------------------------

REVIEW_VERBS = {
    "propose": lambda actor, fm, comment: field_mapping_propose(
        actor=actor, mapping=fm
    ),
    "approve": lambda actor, fm, comment: field_mapping_approve(
        actor=actor, mapping=fm, comment=comment
    ),
    "flag": lambda actor, fm, comment: field_mapping_flag(
        actor=actor, mapping=fm, comment=comment
    ),
    "reject": lambda actor, fm, comment: field_mapping_reject(
        actor=actor, mapping=fm, comment=comment
    ),
}


@login_required
@require_GET
def mappingset_list(request: HtmxHttpRequest, project_id: int) -> HttpResponse:
    """List the project's mapping sets and what awaits the user's review."""
    project = page_project(request, project_id)
    sets = (
        MappingSet.objects.filter(project=project)
        .select_related("source_snapshot__connector")
        .annotate(
            fields=Count("table_mappings__field_mappings", distinct=True),
            approved=Count(
                "table_mappings__field_mappings",
                filter=Q(table_mappings__field_mappings__status=ReviewStatus.APPROVED),
                distinct=True,
            ),
            latest_contract=Max("contracts__version"),
        )
    )
    mine = field_mappings_for_review(user=request.user).filter(
        table_mapping__mapping_set__project=project
    )
    return render(
        request,
        "migration/mappingset_list.html",
        {
            "project": project,
            "perms": project_perms(request.user, project),
            "sets": sets,
            "for_review": mine.count(),
        },
    )


def _mapping_set(request: HtmxHttpRequest, project: Any, set_id: int) -> MappingSet:
    return access_object(
        request.user,
        MappingSet.objects.filter(project=project).select_related("source_snapshot"),
        set_id,
    )


@login_required
@require_GET
def mappingset_detail(
    request: HtmxHttpRequest, project_id: int, set_id: int
) -> HttpResponse:
    """Show a mapping set: its target tables, review counts, unmapped required fields."""
    project = page_project(request, project_id)
    mapping_set = _mapping_set(request, project, set_id)
    tables = mapping_set.table_mappings.annotate(
        fields=Count("field_mappings"),
        approved=Count(
            "field_mappings",
            filter=Q(field_mappings__status=ReviewStatus.APPROVED),
        ),
        proposed=Count(
            "field_mappings",
            filter=Q(field_mappings__status=ReviewStatus.PROPOSED),
        ),
    )
    try:
        unmapped = mapping_unmapped_report(mapping_set=mapping_set)
    except EngineError as exc:
        unmapped, messages_ = [], str(exc)
        messages.error(request, f"The target model is unknown: {messages_}")
    perms = project_perms(request.user, project)
    blockers = (
        contract_blockers_by_kind(mapping_set=mapping_set)
        if "publish_contract" in perms
        else []
    )
    return render(
        request,
        "migration/mappingset_detail.html",
        {
            "project": project,
            "perms": perms,
            "mapping_set": mapping_set,
            "tables": tables,
            "unmapped": unmapped,
            "contracts": Contract.objects.filter(mapping_set=mapping_set)
            .select_related("published_by")
            .order_by("-version"),
            "blockers": [message for _, message in blockers[:10]],
            "blocker_count": len(blockers),
            "blocker_kinds": list(Counter(kind for kind, _ in blockers).items()),
        },
    )


@login_required
@require_POST
def mappingset_publish(
    request: HtmxHttpRequest, project_id: int, set_id: int
) -> HttpResponse:
    """Freeze an approved mapping set into the project's next contract version."""
    project = page_project(request, project_id)
    mapping_set = _mapping_set(request, project, set_id)
    back = reverse("migration:mappingset-detail", args=[project.pk, mapping_set.pk])
    try:
        contract = contract_publish(actor=request.user, mapping_set=mapping_set)
    except Refused as exc:
        return refused(request, exc, back + "#contract")
    messages.success(
        request,
        f"Contract v{contract.version} published (SHA-256 {contract.sha256[:12]}…): "
        "runs can now be started from it.",
    )
    return redirect(back + "#contract")


def _table_mapping(
    request: HtmxHttpRequest, project: Any, set_id: int, tm_id: int
) -> TableMapping:
    mapping_set = _mapping_set(request, project, set_id)
    return access_object(
        request.user,
        TableMapping.objects.filter(mapping_set=mapping_set).select_related(
            "mapping_set__source_snapshot"
        ),
        tm_id,
        project_field="mapping_set__project",
    )


@login_required
@require_GET
def tablemapping_detail(
    request: HtmxHttpRequest, project_id: int, set_id: int, tm_id: int
) -> HttpResponse:
    """Review one target table: target fields beside their source columns."""
    project = page_project(request, project_id)
    tm = _table_mapping(request, project, set_id, tm_id)
    by_field = {
        fm.target_field: fm
        for fm in tm.field_mappings.select_related(
            "crosswalk", "author", "last_changed_by", "reviewer"
        )
    }
    try:
        target = target_model_for(tm.mapping_set).table(tm.target_table)
        declared = [(f.name, f.required, f) for f in target.fields]
    except (EngineError, KeyError):
        declared = [(name, False, None) for name in sorted(by_field)]
    rows = []
    for name, required, _f in declared:
        fm = by_field.pop(name, None)
        rows.append({"name": name, "required": required, "fm": fm})
    rows += [{"name": n, "required": False, "fm": fm} for n, fm in by_field.items()]
    for row in rows:
        fm = row["fm"]
        row["own"] = fm is not None and request.user.pk in (
            fm.author_id,
            fm.last_changed_by_id,
        )
        row["transforms"] = (
            " → ".join(
                describe_step(s) for s in fm.transforms or [] if isinstance(s, dict)
            )
            if fm
            else ""
        )
        row["needs_rationale"] = fm is not None and field_mapping_needs_rationale(fm)
        row["steps"] = editor_rows(fm.transforms or []) if fm else []
    source = next(
        (
            t
            for t in tm.mapping_set.source_snapshot.tables or []
            if t.get("name") == tm.source_table
        ),
        {},
    )
    exclusions = []
    for rule in tm.exclusion_rules.select_related("author", "reviewer"):
        exclusions.append(
            {
                "rule": rule,
                "words": exclusion_in_words(rule.engine_rule()),
                "own": request.user.pk in (rule.author_id, rule.last_changed_by_id),
            }
        )
    return render(
        request,
        "migration/tablemapping_detail.html",
        {
            "project": project,
            "perms": project_perms(request.user, project),
            "mapping_set": tm.mapping_set,
            "tm": tm,
            "exclusions": exclusions,
            "exclusion_ops": EXCLUSION_OPS,
            "rows": rows,
            "verbs": list(REVIEW_VERBS),
            "source_columns": [str(c["name"]) for c in source.get("columns", [])],
            "crosswalks": Crosswalk.objects.filter(project=project).order_by("slug"),
            "step_kinds": step_kinds(),
        },
    )


@login_required
@require_POST
def fieldmapping_edit(
    request: HtmxHttpRequest, project_id: int, fm_id: int
) -> HttpResponse:
    """Change a field mapping's source columns, transforms and crosswalk.

    An approved, flagged or rejected mapping goes back to proposed, and the
    editor may not approve it (four-eyes)."""
    project = page_project(request, project_id)
    fm = _field_mapping(request, project, fm_id)
    to = _tm_url(fm) + f"#field-{fm.pk}"
    # The step editor's rows (absent: the transforms stay as they are).
    steps = (
        steps_from_form(request.POST, fm.transforms or [])
        if "steps" in request.POST
        else fm.transforms
    )
    try:
        crosswalk = _project_crosswalk(project, request.POST.get("crosswalk", ""))
    except ValidationError as exc:
        messages.error(request, f"{fm.target_field}: " + "; ".join(exc.messages))
        return redirect(to)
    _, failed = page_call(
        request,
        to,
        lambda: field_mapping_update(
            actor=request.user,
            mapping=fm,
            source_columns=request.POST.getlist("source_columns"),
            transforms=steps,
            crosswalk=crosswalk,
            crosswalk_strict=request.POST.get("crosswalk_strict") == "on",
        ),
        label=f"{fm.target_field}: ",
    )
    if failed is not None:
        return failed
    messages.success(
        request,
        f"{fm.target_field}: mapping changed; another steward must approve it "
        "(you last changed it)",
    )
    return redirect(to)


@login_required
@require_GET
def fieldmapping_step_args(
    request: HtmxHttpRequest, project_id: int, fm_id: int
) -> HttpResponse:
    """The argument boxes of one row of the step editor, for the transform chosen.

    htmx asks for them when a row's transform changes; a row that had this
    transform when the page was drawn gets its stored values back."""
    project = page_project(request, project_id)
    fm = _field_mapping(request, project, fm_id)
    prefix = request.GET.get("prefix", "")
    match = STEP_PREFIX.match(prefix)
    if match is None:
        return HttpResponseBadRequest("prefix must be step-N or step-new")
    name = request.GET.get(f"{prefix}-name", "")
    stored = fm.transforms or []
    index = match.group(1)
    was = stored[int(index)] if index.isdigit() and int(index) < len(stored) else {}
    args = (
        was.get("args") if isinstance(was, dict) and was.get("name") == name else None
    )
    return render(
        request,
        "migration/_step_args.html",
        {"fm": fm, "s": step_row(prefix, name, args)},
    )


def _project_crosswalk(project: Any, xw_id: str) -> Crosswalk | None:
    """Return the project's crosswalk ``xw_id`` (none when blank); ValidationError if not one."""
    if not xw_id:
        return None
    crosswalk = (
        Crosswalk.objects.filter(project=project, pk=xw_id).first()
        if xw_id.isdigit()
        else None
    )
    if crosswalk is None:
        raise ValidationError("choose a crosswalk of this project")
    return crosswalk


def _field_mapping(request: HtmxHttpRequest, project: Any, fm_id: int) -> FieldMapping:
    return access_object(
        request.user,
        FieldMapping.objects.filter(
            table_mapping__mapping_set__project=project
        ).select_related("table_mapping__mapping_set__source_snapshot__connector"),
        fm_id,
        project_field="table_mapping__mapping_set__project",
    )


def _tm_url(fm: FieldMapping) -> str:
    tm = fm.table_mapping
    return reverse(
        "migration:tablemapping-detail",
        args=[tm.mapping_set.project_id, tm.mapping_set_id, tm.pk],
    )


@login_required
@require_POST
def fieldmapping_review(
    request: HtmxHttpRequest, project_id: int, fm_id: int
) -> HttpResponse:
    """Propose, approve, flag or reject one field mapping, with a comment."""
    project = page_project(request, project_id)
    fm = _field_mapping(request, project, fm_id)
    verb = request.POST.get("verb", "")
    to = _tm_url(fm) + f"#field-{fm.pk}"
    if verb not in REVIEW_VERBS:
        messages.error(request, "Choose propose, approve, flag or reject")
        return redirect(to)
    try:
        REVIEW_VERBS[verb](request.user, fm, request.POST.get("comment", "").strip())
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(request, f"{fm.target_field}: {verb} recorded")
    return redirect(to)


@login_required
@require_POST
def fieldmapping_create(
    request: HtmxHttpRequest, project_id: int, set_id: int, tm_id: int
) -> HttpResponse:
    """Start the mapping of an unmapped field: a draft with its source columns
    (none for a constant), whose steps are then added on its card."""
    project = page_project(request, project_id)
    tm = _table_mapping(request, project, set_id, tm_id)
    field = request.POST.get("target_field", "")
    to = reverse("migration:tablemapping-detail", args=[project.pk, set_id, tm.pk])
    fm, failed = page_call(
        request,
        to + f"#unmapped-{field}",
        lambda: field_mapping_create(
            actor=request.user,
            table_mapping=tm,
            target_field=field,
            source_columns=request.POST.getlist("source_columns"),
        ),
    )
    if failed is not None:
        return failed
    messages.success(
        request,
        f"{fm.target_field}: a draft mapping started — add its steps (a constant "
        "needs no source column), then propose it",
    )
    return redirect(to + f"#field-{fm.pk}")


@login_required
@require_POST
def exclusionrule_create(
    request: HtmxHttpRequest, project_id: int, set_id: int, tm_id: int
) -> HttpResponse:
    """Propose a rule leaving out the source rows whose column matches."""
    project = page_project(request, project_id)
    tm = _table_mapping(request, project, set_id, tm_id)
    to = (
        reverse("migration:tablemapping-detail", args=[project.pk, set_id, tm.pk])
        + "#exclusions"
    )
    rule, failed = page_call(
        request,
        to,
        lambda: exclusion_rule_create(
            actor=request.user,
            table_mapping=tm,
            column=request.POST.get("column", ""),
            op=request.POST.get("op", ""),
            values=request.POST.get("values", "").split(","),
            reason=request.POST.get("reason", "").strip(),
        ),
    )
    if failed is not None:
        return failed
    messages.success(
        request,
        f"Exclusion rule {rule.rule_id} proposed: someone else approves it",
    )
    return redirect(to)


@login_required
@require_POST
def exclusionrule_review(
    request: HtmxHttpRequest, project_id: int, rule_id: int
) -> HttpResponse:
    """Approve, flag or reject one of a table's exclusion rules (four-eyes)."""
    project = page_project(request, project_id)
    rule = access_object(
        request.user,
        ExclusionRule.objects.filter(
            table_mapping__mapping_set__project=project
        ).select_related("table_mapping__mapping_set"),
        rule_id,
        project_field="table_mapping__mapping_set__project",
    )
    tm = rule.table_mapping
    to = (
        reverse(
            "migration:tablemapping-detail",
            args=[project.pk, tm.mapping_set_id, tm.pk],
        )
        + "#exclusions"
    )
    verb = request.POST.get("verb", "")
    review = {
        "approve": exclusion_rule_approve,
        "flag": exclusion_rule_flag,
        "reject": exclusion_rule_reject,
        "revert": exclusion_rule_revert,
    }.get(verb)
    if review is None:
        messages.error(request, "Choose approve, flag, reject or send back")
        return redirect(to)
    try:
        review(
            actor=request.user,
            rule=rule,
            comment=request.POST.get("comment", "").strip(),
        )
    except Refused as exc:
        return refused(request, exc, to)
    said = {
        "approve": "approved",
        "flag": "flagged",
        "reject": "rejected",
        "revert": "sent back for review",
    }[verb]
    messages.success(request, f"Exclusion rule {rule.rule_id} {said}")
    return redirect(to)


@login_required
@require_POST
def fieldmapping_rationale(
    request: HtmxHttpRequest, project_id: int, fm_id: int
) -> HttpResponse:
    """Write why a field is mapped as it is; another steward then approves it."""
    project = page_project(request, project_id)
    fm = _field_mapping(request, project, fm_id)
    return _save_rationale(
        request,
        label=fm.target_field,
        to=_tm_url(fm) + f"#field-{fm.pk}",
        save=lambda text: field_mapping_update(
            actor=request.user, mapping=fm, rationale=text
        ),
    )


def _save_rationale(
    request: HtmxHttpRequest, *, label: str, to: str, save: Any
) -> HttpResponse:
    """Save the posted rationale through ``save``; the writer becomes its last
    changer, so another steward approves."""
    text = request.POST.get("rationale", "").strip()
    if not text:
        messages.error(request, f"{label}: write the rationale first")
        return redirect(to)
    _, failed = page_call(request, to, lambda: save(text))
    if failed is not None:
        return failed
    messages.success(
        request,
        f"{label}: rationale saved; another steward must approve it "
        "(you last changed it)",
    )
    return redirect(to)


@login_required
@require_POST
def fieldmapping_bulk(
    request: HtmxHttpRequest, project_id: int, set_id: int, tm_id: int
) -> HttpResponse:
    """Approve exactly the selected field mappings (all or nothing)."""
    project = page_project(request, project_id)
    tm = _table_mapping(request, project, set_id, tm_id)
    to = reverse("migration:tablemapping-detail", args=[project.pk, set_id, tm.pk])
    ids = request.POST.getlist("ids")
    if not ids:
        messages.error(request, "Select at least one mapping first")
        return redirect(to)
    done, failed = page_call(
        request,
        to,
        lambda: field_mappings_bulk_approve(
            actor=request.user, ids=ids, comment=request.POST.get("comment", "")
        ),
    )
    if failed is not None:
        return failed
    messages.success(
        request, f"{len(done)} mapping{'s' if len(done) != 1 else ''} approved"
    )
    return redirect(to)


@login_required
@require_GET
@patient_data
def fieldmapping_preview(
    request: HtmxHttpRequest, project_id: int, fm_id: int
) -> HttpResponse:
    """Preview a field mapping on sampled source rows (values masked unless view_pid)."""
    project = page_project(request, project_id)
    fm = _field_mapping(request, project, fm_id)
    draft = None
    problem = ""
    if request.GET.get("draft"):
        # The edit form's fields, unsaved: what the change would do.
        try:
            draft = field_mapping_draft(
                mapping=fm,
                source_columns=request.GET.getlist("source_columns"),
                transforms=steps_from_form(request.GET, fm.transforms or []),
                crosswalk=_project_crosswalk(project, request.GET.get("crosswalk", "")),
                crosswalk_strict=request.GET.get("crosswalk_strict") == "on",
            )
        except ValidationError as exc:
            problem = "; ".join(exc.messages)
    if problem:
        preview = MappingPreview(
            target=f"{fm.table_mapping.target_table}.{fm.target_field}",
            source_columns=(),
            error=f"the change cannot be previewed: {problem}",
        )
    else:
        preview = mapping_preview(user=request.user, mapping=fm, draft=draft)
    template = "migration/fieldmapping_preview.html"
    if request.htmx:
        template += "#preview"
    return render(
        request,
        template,
        {
            "project": project,
            "perms": project_perms(request.user, project),
            "fm": fm,
            "preview": preview,
            "draft": draft is not None or bool(problem),
            "back": _tm_url(fm),
        },
    )


# --- crosswalks and the miss queue ---------------------------------------------------------


@login_required
@require_GET
def crosswalk_list(request: HtmxHttpRequest, project_id: int) -> HttpResponse:
    """List the project's crosswalks with their code system versions and row counts."""
    project = page_project(request, project_id)
    crosswalks = (
        Crosswalk.objects.filter(project=project)
        .select_related("code_system")
        .annotate(
            total=Count("rows"),
            approved=Count("rows", filter=Q(rows__status=ReviewStatus.APPROVED)),
            proposed=Count("rows", filter=Q(rows__status=ReviewStatus.PROPOSED)),
        )
    )
    systems = CodeSystem.objects.filter(
        pk__in=crosswalks.values("code_system")
    ).order_by("slug", "version")
    return render(
        request,
        "migration/crosswalk_list.html",
        {
            "project": project,
            "perms": project_perms(request.user, project),
            "crosswalks": crosswalks,
            "systems": systems,
            "open_misses": missqueue_open_values(project=project),
            "seedable": crosswalks_default_missing(project=project),
        },
    )


@login_required
@require_POST
def crosswalks_seed(request: HtmxHttpRequest, project_id: int) -> HttpResponse:
    """Add the generated legacy PAS's crosswalks, their rows proposed for review."""
    project = page_project(request, project_id)
    back = reverse("migration:crosswalk-list", args=[project.pk])
    try:
        seeded = crosswalks_seed_defaults(actor=request.user, project=project)
    except Refused as exc:
        return refused(request, exc, back)
    messages.success(
        request,
        f"{len(seeded)} crosswalks of the generated legacy PAS are here; rows "
        "they did not have yet are proposed for review.",
    )
    return redirect(back)


def _crosswalk(request: HtmxHttpRequest, project: Any, xw_id: int) -> Crosswalk:
    return access_object(
        request.user,
        Crosswalk.objects.filter(project=project).select_related("code_system"),
        xw_id,
    )


@login_required
@require_GET
def crosswalk_detail(
    request: HtmxHttpRequest, project_id: int, xw_id: int
) -> HttpResponse:
    """Show a crosswalk's rows with grades and review status; import and export."""
    project = page_project(request, project_id)
    crosswalk = _crosswalk(request, project, xw_id)
    status = request.GET.get("status", "")
    if status not in ReviewStatus.values:
        status = ""
    rows = crosswalk_rows_for(
        user=request.user, crosswalk=crosswalk, status=status or None
    ).select_related("author", "last_changed_by", "reviewer")
    context = {
        "project": project,
        "perms": project_perms(request.user, project),
        "crosswalk": crosswalk,
        "rows": rows,
        "status": status,
        "statuses": ReviewStatus.choices,
    }
    template = "migration/crosswalk_detail.html"
    if request.htmx and request.htmx.target == "crosswalk-rows":
        template += "#rows"
    return render(request, template, context)


@login_required
@require_GET
def crosswalk_export(
    request: HtmxHttpRequest, project_id: int, xw_id: int
) -> HttpResponse:
    """Download the crosswalk's rows as CSV (the import format plus status)."""
    project = page_project(request, project_id)
    crosswalk = _crosswalk(request, project, xw_id)
    response = HttpResponse(
        crosswalk_export_csv(crosswalk=crosswalk),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = (
        f'attachment; filename="crosswalk-{crosswalk.slug}-v{crosswalk.version}.csv"'
    )
    return response


@login_required
@require_POST
def crosswalk_import(
    request: HtmxHttpRequest, project_id: int, xw_id: int
) -> HttpResponse:
    """Import proposed rows from an uploaded CSV file (whole file or nothing)."""
    project = page_project(request, project_id)
    crosswalk = _crosswalk(request, project, xw_id)
    to = reverse("migration:crosswalk-detail", args=[project.pk, crosswalk.pk])
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Choose a CSV file to import")
        return redirect(to)
    try:
        counts = crosswalk_import_csv(
            actor=request.user, crosswalk=crosswalk, file_bytes=upload.read()
        )
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(
        request,
        "Imported: {created} new, {updated} changed, {unchanged} unchanged".format(
            **{k: counts.get(k, 0) for k in ("created", "updated", "unchanged")}
        ),
    )
    return redirect(to)


ROW_VERBS = {
    "approve": crosswalk_row_approve,
    "flag": crosswalk_row_flag,
    "reject": crosswalk_row_reject,
}


@login_required
@require_POST
def crosswalkrow_review(
    request: HtmxHttpRequest, project_id: int, row_id: int
) -> HttpResponse:
    """Approve, flag or reject one crosswalk row, with a comment."""
    project = page_project(request, project_id)
    row = access_object(
        request.user,
        CrosswalkRow.objects.filter(crosswalk__project=project).select_related(
            "crosswalk"
        ),
        row_id,
        project_field="crosswalk__project",
    )
    to = reverse("migration:crosswalk-detail", args=[project.pk, row.crosswalk_id])
    verb = request.POST.get("verb", "")
    if verb not in ROW_VERBS:
        messages.error(request, "Choose approve, flag or reject")
        return redirect(to)
    try:
        ROW_VERBS[verb](
            actor=request.user, row=row, comment=request.POST.get("comment", "").strip()
        )
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(request, f"{row.local_code}: {verb} recorded")
    return redirect(f"{to}#row-{row.pk}")


@login_required
@require_POST
def crosswalkrow_rationale(
    request: HtmxHttpRequest, project_id: int, row_id: int
) -> HttpResponse:
    """Write why a row translates as it does; another steward then approves it."""
    project = page_project(request, project_id)
    row = access_object(
        request.user,
        CrosswalkRow.objects.filter(crosswalk__project=project),
        row_id,
        project_field="crosswalk__project",
    )
    to = reverse("migration:crosswalk-detail", args=[project.pk, row.crosswalk_id])
    return _save_rationale(
        request,
        label=row.local_code,
        to=f"{to}#row-{row.pk}",
        save=lambda text: crosswalk_row_update(
            actor=request.user, row=row, rationale=text
        ),
    )


@login_required
@require_GET
def miss_list(request: HtmxHttpRequest, project_id: int) -> HttpResponse:
    """Show the open miss queue, most frequent values first, with add-a-row forms."""
    project = page_project(request, project_id)
    groups = missqueue_groups(user=request.user, project=project)
    ignored = missqueue_groups(
        user=request.user, project=project, state=MissQueueEntry.State.IGNORED
    )
    entries = [g.entry for g in groups]
    # The national codes each entry may take, offered as the steward types
    # (a datalist per code system: the field still takes any text, and the
    # service refuses a code the system does not have).
    systems = {e.crosswalk.code_system_id: e.crosswalk.code_system for e in entries}
    concepts: dict[int, list[Concept]] = {pk: [] for pk in systems}
    for concept in Concept.objects.filter(
        code_system_id__in=list(systems), retired=False
    ).order_by("code_system_id", "code"):
        concepts[concept.code_system_id].append(concept)
    return render(
        request,
        "migration/miss_list.html",
        {
            "project": project,
            "perms": project_perms(request.user, project),
            "groups": groups,
            "ignored": ignored,
            "code_lists": [(systems[pk], concepts[pk]) for pk in systems],
            "equivalences": [
                (v, label) for v, label in Equivalence.choices if v != "unmatched"
            ]
            + [("unmatched", "Unmatched")],
        },
    )


@login_required
@require_POST
def miss_resolve(
    request: HtmxHttpRequest, project_id: int, miss_id: int
) -> HttpResponse:
    """Add a proposed crosswalk row for a missed value (resolves its entries)."""
    project = page_project(request, project_id)
    entry = access_missqueue_entry(request.user, miss_id, project=project)
    to = reverse("migration:miss-list", args=[project.pk])
    try:
        row = missqueue_resolve(
            actor=request.user,
            entry=entry,
            target_code=request.POST.get("target_code", "").strip(),
            equivalence=request.POST.get("equivalence", ""),
            rationale=request.POST.get("rationale", "").strip(),
        )
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(
        request,
        f"Row {row.local_code} → {row.target_code or '∅'} proposed in "
        f"{entry.crosswalk.name}",
    )
    return redirect(to)


@login_required
@require_POST
def miss_ignore(
    request: HtmxHttpRequest, project_id: int, miss_id: int
) -> HttpResponse:
    """Leave a missed value untranslated, with the steward's reason."""
    project = page_project(request, project_id)
    entry = access_missqueue_entry(request.user, miss_id, project=project)
    to = reverse("migration:miss-list", args=[project.pk])
    try:
        missqueue_ignore(
            actor=request.user, entry=entry, note=request.POST.get("note", "")
        )
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(
        request,
        f"{entry.local_value} in {entry.crosswalk.name} left untranslated; "
        "later runs will not queue it again",
    )
    return redirect(to)


@login_required
@require_POST
def miss_reopen(
    request: HtmxHttpRequest, project_id: int, miss_id: int
) -> HttpResponse:
    """Put an ignored value back in the miss queue."""
    project = page_project(request, project_id)
    entry = access_missqueue_entry(request.user, miss_id, project=project)
    to = reverse("migration:miss-list", args=[project.pk])
    try:
        missqueue_reopen(actor=request.user, entry=entry)
    except Refused as exc:
        return refused(request, exc, to)
    messages.success(
        request, f"{entry.local_value} in {entry.crosswalk.name} is back in the queue"
    )
    return redirect(to)
