"""API views of the migration app: contracts and runs.

Views fetch objects through ``access_object`` / ``scoped`` (see
``ProjectScoped``) and change state only by calling the services the
pages call; a service's ``Refused`` becomes a 403/400/409 in the exception
handler, with nothing changed.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from migration.api.serializers import (
    ContractPublishSerializer,
    ContractSerializer,
    LedgerRowSerializer,
    ReconciliationTableSerializer,
    RejectSerializer,
    RunCreateSerializer,
    RunProgressSerializer,
    RunSerializer,
)
from migration.models import Contract, RejectRecord, Run
from migration.selectors_rejects import rejects_for
from migration.services.contracts import (
    ContractBuildError,
    contract_export_json,
    contract_publish,
    contract_spec_markdown,
)
from migration.services.runs import run_cancel, run_resume, run_start
from pasportal.api import (
    READ_ERRORS,
    WRITE_ERRORS,
    ApiPagination,
    ProjectScoped,
    error_body,
)

_TEXT = OpenApiResponse(response=OpenApiTypes.STR, description="File download")


def _download(body: str, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- contracts -------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Contracts", responses={200: ContractSerializer, **READ_ERRORS}
    ),
    retrieve=extend_schema(
        summary="One contract", responses={200: ContractSerializer, **READ_ERRORS}
    ),
    create=extend_schema(
        summary="Publish a mapping set as the next contract version",
        request=ContractPublishSerializer,
        responses={201: ContractSerializer, **WRITE_ERRORS},
    ),
)
class ContractViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScoped, GenericViewSet
):
    """Published contracts; publishing needs ``publish_contract`` (service)."""

    queryset = Contract.objects.select_related("published_by")
    serializer_class = ContractSerializer
    filterset_fields = ["project", "mapping_set", "version", "sha256"]

    def create(self, request: Request) -> Response:
        """Publish; the service refuses unapproved rows or a missing permission."""
        body = ContractPublishSerializer(
            data=request.data, context={"request": request}
        )
        body.is_valid(raise_exception=True)
        contract = contract_publish(
            actor=request.user, mapping_set=body.validated_data["mapping_set"]
        )
        return Response(
            ContractSerializer(contract).data, status=status.HTTP_201_CREATED
        )

    def _export(
        self, render: Any, content_type: str, suffix: str
    ) -> HttpResponse | Response:
        contract = self.get_object()
        try:
            text = render(contract)
        except ContractBuildError as exc:
            # A stored body that no longer matches its hash: say so, never run it.
            return Response(
                error_body("contract_invalid", str(exc)),
                status=status.HTTP_409_CONFLICT,
            )
        name = f"contract-{contract.project_id}-v{contract.version}.{suffix}"
        return _download(text, content_type, name)

    @extend_schema(
        summary="The contract's canonical JSON (its SHA-256 is the hash)",
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            **READ_ERRORS,
            409: WRITE_ERRORS[409],
        },
    )
    @action(detail=True, methods=["get"], url_path="export/json")
    def export_json(self, request: Request, pk: str) -> HttpResponse | Response:
        """Download the canonical contract JSON."""
        return self._export(contract_export_json, "application/json", "json")

    @extend_schema(
        summary="The contract as a Markdown specification",
        responses={
            (200, "text/markdown"): OpenApiTypes.STR,
            **READ_ERRORS,
            409: WRITE_ERRORS[409],
        },
    )
    @action(detail=True, methods=["get"], url_path="export/markdown")
    def export_markdown(self, request: Request, pk: str) -> HttpResponse | Response:
        """Download the Markdown specification rendered from the same contract."""
        return self._export(
            contract_spec_markdown, "text/markdown; charset=utf-8", "md"
        )


# --- runs ------------------------------------------------------------------------


class RunFilter(django_filters.FilterSet):
    """Run list filters."""

    class Meta:
        model = Run
        fields = ["project", "state", "contract", "profile"]


class RejectQuery(serializers.Serializer[Any]):
    """Query parameters of the reject listings."""

    table = serializers.CharField(required=False, max_length=80)
    reason = serializers.CharField(required=False, max_length=80)


_REJECT_PARAMS = [
    OpenApiParameter("table", str, description="target table"),
    OpenApiParameter("reason", str, description="reason code"),
]


@extend_schema_view(
    list=extend_schema(summary="Runs", responses={200: RunSerializer, **READ_ERRORS}),
    retrieve=extend_schema(
        summary="One run", responses={200: RunSerializer, **READ_ERRORS}
    ),
)
class RunViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScoped, GenericViewSet
):
    """Runs: create+start, progress, cancel, resume, report, ledger, rejects."""

    queryset = Run.objects.select_related("contract", "created_by")
    serializer_class = RunSerializer
    filterset_class = RunFilter

    @extend_schema(
        summary="Create a run and queue it to start",
        request=RunCreateSerializer,
        responses={201: RunSerializer, **WRITE_ERRORS},
    )
    def create(self, request: Request) -> Response:
        """Validate ids against the user's projects, then call ``run_start``."""
        body = RunCreateSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        run = run_start(actor=request.user, **body.validated_data)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Cancel a queued or running run",
        request=None,
        responses={200: RunSerializer, **WRITE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel (409 when already finished or cancelled)."""
        run = run_cancel(actor=request.user, run=self.get_object())
        return Response(RunSerializer(run).data)

    @extend_schema(
        summary="Resume a failed or cancelled run",
        request=None,
        responses={200: RunSerializer, **WRITE_ERRORS},
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        """Resume from checkpoints (409 for a queued, running or succeeded run)."""
        run = run_resume(actor=request.user, run=self.get_object())
        return Response(RunSerializer(run).data)

    @extend_schema(
        summary="Live progress per table: counts, rate, ETA, stage",
        responses={200: RunProgressSerializer, **READ_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def progress(self, request: Request, pk: str) -> Response:
        """Return the run's per-table progress and totals."""
        run = self.get_object()
        tables = list(run.tables.order_by("order", "target_table"))
        totals = [t.rows_total for t in tables]
        rates = [
            t.rate_rows_per_s for t in tables if t.rate_rows_per_s and not t.finished_at
        ]
        rows_total = sum(totals) if tables and None not in totals else None  # type: ignore[arg-type]
        rows_read = sum(t.rows_read for t in tables)
        rate = sum(rates) if rates else None
        eta = None
        if rows_total is not None and rate and run.state == "running":
            eta = round(max(rows_total - rows_read, 0) / rate, 1)
        data = {
            "id": run.pk,
            "state": run.state,
            "stage": run.stage,
            "rows_total": rows_total,
            "rows_read": rows_read,
            "rows_loaded": sum(t.rows_loaded for t in tables),
            "rows_rejected": sum(t.rows_rejected for t in tables),
            "rate_rows_per_s": rate,
            "eta_seconds": eta,
            "tables": tables,
        }
        return Response(RunProgressSerializer(data).data)

    @extend_schema(
        summary="The run report (ledger, metrics, rejects by reason, timings)",
        responses={200: OpenApiTypes.OBJECT, **READ_ERRORS},
    )
    @action(detail=True, methods=["get"])
    def report(self, request: Request, pk: str) -> Response:
        """Return the stored engine report without row-level detail.

        ``flagged`` lists individual rows (source keys, values): it is reduced
        to a count, and the reject file's server path is dropped.
        """
        run = self.get_object()
        report = dict(run.report or {})
        report["flagged_count"] = len(report.pop("flagged", []) or [])
        report.pop("reject_csv", None)
        return Response(report)

    @extend_schema(
        summary="Count ledger per table",
        responses={200: LedgerRowSerializer(many=True), **READ_ERRORS},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def ledger(self, request: Request, pk: str) -> Response:
        """Return source = loaded + rejected + excluded, per table."""
        run = self.get_object()
        rows = run.tables.order_by("order", "target_table")
        return Response(LedgerRowSerializer(rows, many=True).data)

    @extend_schema(
        summary="Reconciliation per table and FK chain completeness",
        responses={
            200: inline_serializer(
                name="Reconciliation",
                fields={
                    "tables": ReconciliationTableSerializer(many=True),
                    "fk_chains": serializers.ListField(child=serializers.DictField()),
                },
            ),
            **READ_ERRORS,
        },
    )
    @action(detail=True, methods=["get"])
    def reconciliation(self, request: Request, pk: str) -> Response:
        """Return per-column reconciliation metrics and FK chains."""
        run = self.get_object()
        tables = run.tables.order_by("order", "target_table")
        return Response(
            {
                "tables": ReconciliationTableSerializer(tables, many=True).data,
                "fk_chains": list((run.report or {}).get("fk_chains", [])),
            }
        )

    def _reject_filters(self, request: Request) -> dict[str, str]:
        query = RejectQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        return {k: v for k, v in query.validated_data.items() if v}

    @extend_schema(
        summary="Rejected rows, paginated; raw values masked unless view_pid",
        parameters=_REJECT_PARAMS,
        responses={200: RejectSerializer(many=True), **READ_ERRORS},
    )
    @action(detail=True, methods=["get"], pagination_class=ApiPagination)
    def rejects(self, request: Request, pk: str) -> Response:
        """Page through the run's rejects via the masking selector."""
        run = self.get_object()
        filters = self._reject_filters(request)
        paginator = ApiPagination()
        size = paginator.get_page_size(request)
        page = _page_number(request)
        count = _reject_count(run, filters)
        offset = (page - 1) * size
        if offset and offset >= count:
            raise NotFound("Invalid page.")
        items = rejects_for(
            user=request.user, run=run, limit=size, offset=offset, **filters
        )
        base = request.build_absolute_uri(request.path)
        query = request.query_params.copy()

        def link(number: int) -> str | None:
            if number < 1 or (number - 1) * size >= count:
                return None
            query["page"] = str(number)
            return f"{base}?{query.urlencode()}"

        return Response(
            {
                "count": count,
                "next": link(page + 1),
                "previous": link(page - 1) if page > 1 else None,
                "results": RejectSerializer(items, many=True).data,
            }
        )

    @extend_schema(
        summary="All rejected rows as CSV; raw values masked unless view_pid",
        parameters=_REJECT_PARAMS,
        responses={(200, "text/csv"): OpenApiTypes.STR, **READ_ERRORS},
    )
    @action(detail=True, methods=["get"], url_path="rejects/csv")
    def rejects_csv(self, request: Request, pk: str) -> HttpResponse:
        """Download the rejects (same masking and audit as the paginated list)."""
        run = self.get_object()
        filters = self._reject_filters(request)
        items = rejects_for(user=request.user, run=run, **filters)
        out = io.StringIO()
        writer = csv.writer(out)
        fields = list(RejectSerializer.Meta.fields)
        writer.writerow(fields)
        for item in items:
            # Neutralise spreadsheet formulas: a source value is data, not code.
            writer.writerow([_csv_cell(getattr(item, f)) for f in fields])
        return _download(
            out.getvalue(), "text/csv; charset=utf-8", f"run-{run.pk}-rejects.csv"
        )


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    try:
        page = int(raw)
    except ValueError:
        raise NotFound("Invalid page.") from None
    if page < 1:
        raise NotFound("Invalid page.")
    return page


def _reject_count(run: Run, filters: dict[str, str]) -> int:
    qs: QuerySet[RejectRecord] = RejectRecord.objects.filter(run=run)
    if "table" in filters:
        qs = qs.filter(target_table=filters["table"])
    if "reason" in filters:
        qs = qs.filter(reason_code=filters["reason"])
    return qs.count()
