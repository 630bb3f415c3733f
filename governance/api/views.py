"""API views of the governance app. Reads only here; every write is a service."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import django_filters
from django.conf import settings
from django.db import models
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from governance.access import access_object
from governance.api.serializers import (
    AuditEventSerializer,
    EvidenceExportSerializer,
    EvidenceRequestSerializer,
    GateEvaluateSerializer,
    GateEvaluationSerializer,
    ProjectSerializer,
    SignOffRecordSerializer,
    SignOffSerializer,
    WaiverRequestSerializer,
    WaiverRevokeSerializer,
    WaiverSerializer,
)
from governance.evidence import evidence_export
from governance.gates import (
    gate_evaluate,
    gate_profiles,
    waiver_approve,
    waiver_request,
    waiver_revoke,
)
from governance.models import (
    AuditEvent,
    EvidenceExport,
    GateEvaluation,
    MigrationProject,
    SignOff,
    Waiver,
)
from governance.signoffs import signoff_record, signoffs_status
from migration.models import Run
from pasportal.api import READ_ERRORS, WRITE_ERRORS, ProjectScoped


@extend_schema_view(
    list=extend_schema(
        summary="Projects you are a member of",
        responses={200: ProjectSerializer, **READ_ERRORS},
    ),
    retrieve=extend_schema(
        summary="One project", responses={200: ProjectSerializer, **READ_ERRORS}
    ),
)
class ProjectViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScoped, GenericViewSet
):
    """Projects on which the user holds the view permission."""

    queryset = MigrationProject.objects.all()
    serializer_class = ProjectSerializer
    project_field = "pk"


class AuditEventFilter(django_filters.FilterSet):
    """Filters of the audit trail: action, target, project and date range."""

    action = django_filters.CharFilter(field_name="action")
    action_prefix = django_filters.CharFilter(
        field_name="action", lookup_expr="startswith", label="action starts with"
    )
    target_type = django_filters.CharFilter(field_name="target_type")
    target_id = django_filters.CharFilter(field_name="target_id")
    project = django_filters.NumberFilter(field_name="project_id")
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")

    class Meta:
        model = AuditEvent
        fields: list[str] = []


@extend_schema_view(
    list=extend_schema(
        summary="Audit events of projects where you hold view_audit",
        responses={200: AuditEventSerializer, **READ_ERRORS},
    ),
    retrieve=extend_schema(
        summary="One audit event", responses={200: AuditEventSerializer, **READ_ERRORS}
    ),
)
class AuditEventViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    ProjectScoped,
    GenericViewSet,
):
    """The audit trail: readable only with ``view_audit`` on the event's project.

    Events with no project (system events) are never listed here: they are not
    any one project's to show.
    """

    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    project_field = "project_id"
    read_perm = "view_audit"
    lookup_field = "seq"

    def base_queryset(self) -> models.QuerySet[Any]:
        """Return events ordered newest first."""
        return AuditEvent.objects.order_by("-seq")

    def get_object(self) -> Any:
        """Return the event by sequence number, 404 unless view_audit on its project."""
        try:
            return self.get_queryset().get(seq=self.kwargs["seq"])
        except (AuditEvent.DoesNotExist, ValueError, TypeError):
            raise Http404("Not found") from None


# --- gates, waivers, sign-offs, evidence ------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Gate evaluations",
        responses={200: GateEvaluationSerializer, **READ_ERRORS},
    ),
    retrieve=extend_schema(
        summary="One gate evaluation with its checks",
        responses={200: GateEvaluationSerializer, **READ_ERRORS},
    ),
    create=extend_schema(
        summary="Evaluate a gate profile on a finished run (from stored results)",
        request=GateEvaluateSerializer,
        responses={201: GateEvaluationSerializer, **WRITE_ERRORS},
    ),
)
class GateEvaluationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    ProjectScoped,
    GenericViewSet,
):
    """Gate evaluations; evaluating needs ``evaluate_gate`` (service)."""

    queryset = GateEvaluation.objects.select_related("evaluated_by").prefetch_related(
        "checks"
    )
    serializer_class = GateEvaluationSerializer
    project_field = "run__project"
    filterset_fields = ["run", "profile", "status"]

    def create(self, request: Request) -> Response:
        """Call ``gate_evaluate``; it refuses unfinished runs and unknown profiles."""
        body = GateEvaluateSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        evaluation = gate_evaluate(actor=request.user, **body.validated_data)
        evaluation = self.base_queryset().get(pk=evaluation.pk)
        return Response(
            GateEvaluationSerializer(evaluation).data, status=status.HTTP_201_CREATED
        )


@extend_schema_view(
    list=extend_schema(
        summary="Waivers", responses={200: WaiverSerializer, **READ_ERRORS}
    ),
    retrieve=extend_schema(
        summary="One waiver", responses={200: WaiverSerializer, **READ_ERRORS}
    ),
    create=extend_schema(
        summary="Request a waiver of a non-fatal check",
        request=WaiverRequestSerializer,
        responses={201: WaiverSerializer, **WRITE_ERRORS},
    ),
    approve=extend_schema(
        summary="Approve a pending waiver (not your own: four eyes)",
        request=None,
        responses={200: WaiverSerializer, **WRITE_ERRORS},
    ),
    revoke=extend_schema(
        summary="Withdraw a waiver before it expires (with a reason)",
        request=WaiverRevokeSerializer,
        responses={200: WaiverSerializer, **WRITE_ERRORS},
    ),
)
class WaiverViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScoped, GenericViewSet
):
    """Waivers: request (evaluate_gate or approve_waiver), approve (approve_waiver)."""

    queryset = Waiver.objects.select_related("requested_by", "approver", "revoked_by")
    serializer_class = WaiverSerializer
    filterset_fields = ["project", "profile", "check_id"]

    def create(self, request: Request) -> Response:
        """Call ``waiver_request``."""
        body = WaiverRequestSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        waiver = waiver_request(actor=request.user, **body.validated_data)
        return Response(WaiverSerializer(waiver).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        """Call ``waiver_approve``."""
        waiver = waiver_approve(actor=request.user, waiver=self.get_object())
        return Response(WaiverSerializer(waiver).data)

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        """Call ``waiver_revoke``."""
        waiver = self.get_object()
        body = WaiverRevokeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        waiver = waiver_revoke(
            actor=request.user, waiver=waiver, reason=body.validated_data["reason"]
        )
        return Response(WaiverSerializer(waiver).data)


class SignOffStatusQuery(serializers.Serializer[Any]):
    """Query of the sign-off status: a run and a gate profile."""

    run = serializers.IntegerField(min_value=1)
    profile = serializers.CharField(max_length=32, default="cutover_ready")


@extend_schema_view(
    list=extend_schema(
        summary="Sign-offs", responses={200: SignOffSerializer, **READ_ERRORS}
    ),
    retrieve=extend_schema(
        summary="One sign-off", responses={200: SignOffSerializer, **READ_ERRORS}
    ),
    create=extend_schema(
        summary="Record your sign-off in one of your roles",
        request=SignOffRecordSerializer,
        responses={201: SignOffSerializer, **WRITE_ERRORS},
    ),
    status=extend_schema(
        summary="Required roles, who signed, what is missing",
        parameters=[
            OpenApiParameter("run", int, required=True),
            OpenApiParameter("profile", str, default="cutover_ready"),
        ],
        responses={200: OpenApiTypes.OBJECT, **READ_ERRORS},
    ),
)
class SignOffViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScoped, GenericViewSet
):
    """Sign-offs bound to a run and its contract hash; recording needs ``sign_off``."""

    queryset = SignOff.objects.select_related("user")
    serializer_class = SignOffSerializer
    project_field = "run__project"
    filterset_fields = ["run", "profile", "role", "decision"]

    def create(self, request: Request) -> Response:
        """Call ``signoff_record``."""
        body = SignOffRecordSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        signoff = signoff_record(actor=request.user, **body.validated_data)
        return Response(SignOffSerializer(signoff).data, status=status.HTTP_201_CREATED)

    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def status(self, request: Request) -> Response:
        """Return ``signoffs_status`` for a run you can see (404 otherwise)."""
        query = SignOffStatusQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        run = access_object(
            request.user,
            Run.objects.select_related("contract"),
            query.validated_data["run"],
        )
        profile = query.validated_data["profile"]
        if profile not in gate_profiles():
            raise ValidationError({"profile": [f"unknown gate profile {profile!r}"]})
        return Response(signoffs_status(run=run, profile=profile))


@extend_schema_view(
    list=extend_schema(
        summary="Evidence exports (needs export_evidence)",
        responses={200: EvidenceExportSerializer, **READ_ERRORS},
    ),
    retrieve=extend_schema(
        summary="One evidence export",
        responses={200: EvidenceExportSerializer, **READ_ERRORS},
    ),
    create=extend_schema(
        summary="Build a verifiable evidence bundle for a run",
        request=EvidenceRequestSerializer,
        responses={201: EvidenceExportSerializer, **WRITE_ERRORS},
    ),
    download=extend_schema(
        summary="Download the bundle (zip)",
        responses={(200, "application/zip"): OpenApiTypes.BINARY, **READ_ERRORS},
    ),
)
class EvidenceExportViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    ProjectScoped,
    GenericViewSet,
):
    """Evidence bundles: readable and creatable only with ``export_evidence``."""

    queryset = EvidenceExport.objects.select_related("created_by")
    serializer_class = EvidenceExportSerializer
    project_field = "run__project"
    read_perm = "export_evidence"
    filterset_fields = ["run"]

    def create(self, request: Request) -> Response:
        """Call ``evidence_export`` into the data directory."""
        body = EvidenceRequestSerializer(
            data=request.data, context={"request": request}
        )
        body.is_valid(raise_exception=True)
        run = body.validated_data["run"]
        directory = Path(settings.PAS_DATA_DIR) / "evidence"
        directory.mkdir(parents=True, exist_ok=True)
        # A fresh name per export: bundles are records, never overwritten.
        out = directory / f"run-{run.pk}-{uuid.uuid4().hex[:12]}.zip"
        export = evidence_export(actor=request.user, run=run, out_path=out)
        return Response(
            EvidenceExportSerializer(export).data, status=status.HTTP_201_CREATED
        )

    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str) -> FileResponse:
        """Stream the zip; 404 when the file is gone from disk."""
        export = self.get_object()
        path = Path(export.path)
        if not path.is_file():
            raise Http404("The bundle file is no longer on disk")
        return FileResponse(
            path.open("rb"),
            as_attachment=True,
            filename=f"evidence-run-{export.run_id}-{export.pk}.zip",
            content_type="application/zip",
        )
