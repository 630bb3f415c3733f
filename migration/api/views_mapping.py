"""API views of what was seen and decided: snapshots, mapping sets, table and
field mappings (with four-eyes review), code systems, crosswalks, miss queue.

Objects come through the ``access_*`` selectors / ``scoped``; every change is a
service call, whose ``Refused`` the exception handler turns into 403/400/409.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from governance.access import projects_for_user
from migration.api.serializers import (
    BulkReviewSerializer,
    CodeSystemSerializer,
    CrosswalkImportSerializer,
    CrosswalkRowSerializer,
    CrosswalkSeedSerializer,
    CrosswalkSerializer,
    ExclusionRuleCreateSerializer,
    ExclusionRuleSerializer,
    FieldMappingCreateSerializer,
    FieldMappingDraftSerializer,
    FieldMappingSerializer,
    FieldMappingUpdateSerializer,
    MappingPreviewSerializer,
    MappingSetCreateSerializer,
    MappingSetImportSerializer,
    MappingSetSerializer,
    MissIgnoreSerializer,
    MissQueueEntrySerializer,
    MissResolveSerializer,
    ReviewSerializer,
    SnapshotExtractSerializer,
    SnapshotRefSerializer,
    SnapshotSerializer,
    TableMappingCreateSerializer,
    TableMappingSerializer,
)
from migration.models import (
    CodeSystem,
    Crosswalk,
    CrosswalkRow,
    ExclusionRule,
    FieldMapping,
    MappingSet,
    MissQueueEntry,
    SchemaSnapshot,
    TableMapping,
)
from migration.selectors_mapping import (
    CROSSWALK_ROW_PROJECT,
    FIELD_MAPPING_PROJECT,
    MISS_PROJECT,
    access_snapshot,
    crosswalk_export_csv,
    field_mappings_for_review,
    mapping_unmapped_report,
    snapshot_diff,
    snapshot_profile_for,
)
from migration.selectors_preview import mapping_preview
from migration.services import crosswalks as xw_services
from migration.services import mappings as fm_services
from migration.services.snapshots import snapshot_apply_drift, snapshot_extract
from migration.services.suggestions import mapping_suggestions_apply
from pasportal.api import READ_ERRORS, WRITE_ERRORS, ProjectScoped

_LIST = {200: None, **READ_ERRORS}


def _read(summary: str, serializer: Any) -> Any:
    return extend_schema(summary=summary, responses={200: serializer, **READ_ERRORS})


def _write(summary: str, request: Any, response: Any, code: int = 200) -> Any:
    return extend_schema(
        summary=summary, request=request, responses={code: response, **WRITE_ERRORS}
    )


# --- snapshots -------------------------------------------------------------------


class DiffQuery(serializers.Serializer[Any]):
    """The older snapshot to compare against."""

    against = serializers.IntegerField(min_value=1)


class ProfileQuery(serializers.Serializer[Any]):
    """The table whose column profiles to show."""

    table = serializers.CharField(max_length=200)


@extend_schema_view(
    list=_read("Schema snapshots", SnapshotSerializer),
    retrieve=_read("One schema snapshot", SnapshotSerializer),
    create=_write(
        "Discover and profile a source connector into a new snapshot",
        SnapshotExtractSerializer,
        SnapshotSerializer,
        201,
    ),
    diff=extend_schema(
        summary="What changed from another snapshot (breaking changes flagged)",
        parameters=[OpenApiParameter("against", int, required=True)],
        responses={200: OpenApiTypes.OBJECT, **READ_ERRORS},
    ),
    profile=extend_schema(
        summary="Column profiles of one table (PID masked unless view_pid)",
        parameters=[OpenApiParameter("table", str, required=True)],
        responses={200: OpenApiTypes.OBJECT, **READ_ERRORS},
    ),
)
class SnapshotViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScoped, GenericViewSet
):
    """Schema snapshots; extracting one needs ``extract_schema`` (service)."""

    queryset = SchemaSnapshot.objects.select_related("created_by")
    serializer_class = SnapshotSerializer
    filterset_fields = ["project", "connector", "fingerprint"]

    def create(self, request: Request) -> Response:
        """Call ``snapshot_extract`` (reads the source; nothing stored on error)."""
        body = SnapshotExtractSerializer(
            data=request.data, context={"request": request}
        )
        body.is_valid(raise_exception=True)
        snapshot = snapshot_extract(actor=request.user, **body.validated_data)
        return Response(
            SnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED
        )

    @action(detail=True, methods=["get"], filter_backends=[])
    def diff(self, request: Request, pk: str) -> Response:
        """Return ``snapshot_diff(old=against, new=this)``."""
        new = self.get_object()
        query = DiffQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        old = access_snapshot(request.user, query.validated_data["against"])
        diff = snapshot_diff(old=old, new=new)
        return Response(
            {
                "old": old.pk,
                "new": new.pk,
                "changes": [c.as_dict() for c in diff.changes],
                "breaking": len(diff.breaking),
            }
        )

    @action(detail=True, methods=["get"], filter_backends=[])
    def profile(self, request: Request, pk: str) -> Response:
        """Return ``snapshot_profile_for`` one table."""
        snapshot = self.get_object()
        query = ProfileQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(
            snapshot_profile_for(
                user=request.user,
                snapshot=snapshot,
                table=query.validated_data["table"],
            )
        )


# --- mapping sets and table mappings --------------------------------------------


@extend_schema_view(
    list=_read("Mapping sets", MappingSetSerializer),
    retrieve=_read("One mapping set", MappingSetSerializer),
    create=_write(
        "Create a mapping set of a snapshot",
        MappingSetCreateSerializer,
        MappingSetSerializer,
        201,
    ),
    import_default=_write(
        "Start a mapping set of a snapshot from the packaged default contract "
        "(every field proposed for review; its crosswalks must be in the project)",
        MappingSetImportSerializer,
        MappingSetSerializer,
        201,
    ),
    unmapped=extend_schema(
        summary="Required target fields unmapped, defaulted or waived",
        responses={200: OpenApiTypes.OBJECT, **READ_ERRORS},
    ),
    suggest=_write(
        "Create draft mappings from suggestions",
        None,
        FieldMappingSerializer(many=True),
    ),
    drift=_write(
        "Move onto a newer snapshot; breaking drift sends approvals back",
        SnapshotRefSerializer,
        FieldMappingSerializer(many=True),
    ),
)
class MappingSetViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScoped, GenericViewSet
):
    """Mapping sets; authoring needs ``edit_mapping`` (service)."""

    queryset = MappingSet.objects.select_related("created_by")
    serializer_class = MappingSetSerializer
    filterset_fields = ["project", "source_snapshot"]

    def create(self, request: Request) -> Response:
        """Call ``mapping_set_create``."""
        body = MappingSetCreateSerializer(
            data=request.data, context={"request": request}
        )
        body.is_valid(raise_exception=True)
        data = body.validated_data
        ms = fm_services.mapping_set_create(
            actor=request.user, project=data["source_snapshot"].project, **data
        )
        return Response(MappingSetSerializer(ms).data, status=status.HTTP_201_CREATED)

    @action(detail=False, methods=["post"], url_path="import-default")
    def import_default(self, request: Request) -> Response:
        """Call ``mapping_set_import_contract`` with the packaged default contract."""
        body = MappingSetImportSerializer(
            data=request.data, context={"request": request}
        )
        body.is_valid(raise_exception=True)
        snapshot = body.validated_data["source_snapshot"]
        ms = fm_services.mapping_set_import_contract(
            actor=request.user,
            project=snapshot.project,
            source_snapshot=snapshot,
            name=body.validated_data["name"],
        )
        return Response(MappingSetSerializer(ms).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def unmapped(self, request: Request, pk: str) -> Response:
        """Return ``mapping_unmapped_report``."""
        return Response(mapping_unmapped_report(mapping_set=self.get_object()))

    @action(detail=True, methods=["post"])
    def suggest(self, request: Request, pk: str) -> Response:
        """Call ``mapping_suggestions_apply``; returns the new draft field mappings."""
        created = mapping_suggestions_apply(
            actor=request.user, mapping_set=self.get_object()
        )
        return Response(FieldMappingSerializer(created, many=True).data)

    @action(detail=True, methods=["post"])
    def drift(self, request: Request, pk: str) -> Response:
        """Call ``snapshot_apply_drift``."""
        ms = self.get_object()
        body = SnapshotRefSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        returned = snapshot_apply_drift(
            actor=request.user,
            mapping_set=ms,
            new_snapshot=body.validated_data["snapshot"],
        )
        return Response(FieldMappingSerializer(returned, many=True).data)


@extend_schema_view(
    list=_read("Table mappings", TableMappingSerializer),
    retrieve=_read("One table mapping", TableMappingSerializer),
    create=_write(
        "Map a source table onto a target table",
        TableMappingCreateSerializer,
        TableMappingSerializer,
        201,
    ),
)
class TableMappingViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScoped, GenericViewSet
):
    """Table mappings of mapping sets."""

    queryset = TableMapping.objects.prefetch_related("exclusion_rules")
    serializer_class = TableMappingSerializer
    project_field = "mapping_set__project"
    filterset_fields = ["mapping_set", "target_table"]

    def create(self, request: Request) -> Response:
        """Call ``table_mapping_create``."""
        body = TableMappingCreateSerializer(
            data=request.data, context={"request": request}
        )
        body.is_valid(raise_exception=True)
        tm = fm_services.table_mapping_create(actor=request.user, **body.validated_data)
        return Response(TableMappingSerializer(tm).data, status=status.HTTP_201_CREATED)


# --- field mappings ------------------------------------------------------------------


class ReviewActionsMixin:
    """propose / approve / flag / reject / bulk for one reviewable kind of item.

    Field mappings and crosswalk rows share the four-eyes workflow; each viewset
    names its services, the keyword its services take the item by, and its
    output serializer. The services do every check and write the audit events.
    """

    review_item: str  # the services' keyword for the item: "mapping" or "row"
    review_output: Any  # the serializer class of the item
    review_services: Any  # a module with the <entity>_<verb> services
    review_names: dict[str, str]  # verb -> service name in review_services

    def _service(self, verb: str) -> Any:
        return getattr(self.review_services, self.review_names[verb])

    def _review(self, request: Request, verb: str) -> Response:
        item = self.get_object()  # type: ignore[attr-defined]
        body = ReviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        item = self._service(verb)(
            actor=request.user, **{self.review_item: item}, **body.validated_data
        )
        return Response(self.review_output(item).data)

    @action(detail=True, methods=["post"])
    def propose(self, request: Request, pk: str) -> Response:
        """Submit a draft for review."""
        item = self._service("propose")(
            actor=request.user,
            **{self.review_item: self.get_object()},  # type: ignore[attr-defined]
        )
        return Response(self.review_output(item).data)

    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        """Approve (the service refuses one's own work: four eyes)."""
        return self._review(request, "approve")

    @action(detail=True, methods=["post"])
    def flag(self, request: Request, pk: str) -> Response:
        """Flag for attention."""
        return self._review(request, "flag")

    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str) -> Response:
        """Reject."""
        return self._review(request, "reject")

    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        """Call the bulk service: any refused id refuses the whole batch."""
        body = BulkReviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if data["action"] == "approve":
            items = self._service("bulk_approve")(
                actor=request.user, ids=data["ids"], comment=data["comment"]
            )
        else:
            items = self._service("bulk_revert")(
                actor=request.user, ids=data["ids"], to=data["to"]
            )
        return Response(self.review_output(items, many=True).data)


_FM = FieldMappingSerializer


@extend_schema_view(
    list=_read("Field mappings", _FM),
    retrieve=_read("One field mapping", _FM),
    create=_write(
        "Create a draft field mapping", FieldMappingCreateSerializer, _FM, 201
    ),
    partial_update=_write(
        "Edit a field mapping (reviewed ones go back to proposed)",
        FieldMappingUpdateSerializer,
        _FM,
    ),
    propose=_write("Submit a draft for review", None, _FM),
    approve=_write("Approve (not your own work: four eyes)", ReviewSerializer, _FM),
    flag=_write("Flag for attention", ReviewSerializer, _FM),
    reject=_write("Reject", ReviewSerializer, _FM),
    bulk=_write(
        "Approve or revert exactly these ids (all or nothing)",
        BulkReviewSerializer,
        _FM(many=True),
    ),
    for_review=_read("Proposed mappings you may review (not your own)", _FM),
)
class FieldMappingViewSet(
    ReviewActionsMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    ProjectScoped,
    GenericViewSet,
):
    """Field mappings and their review workflow (services enforce four eyes)."""

    queryset = FieldMapping.objects.select_related(
        "table_mapping", "author", "last_changed_by", "reviewer"
    )
    serializer_class = FieldMappingSerializer
    project_field = FIELD_MAPPING_PROJECT
    filterset_fields = ["table_mapping", "table_mapping__mapping_set", "status"]
    http_method_names = ["get", "post", "patch", "head", "options"]
    review_item = "mapping"
    review_output = FieldMappingSerializer
    review_services = fm_services
    review_names = {
        "propose": "field_mapping_propose",
        "approve": "field_mapping_approve",
        "flag": "field_mapping_flag",
        "reject": "field_mapping_reject",
        "bulk_approve": "field_mappings_bulk_approve",
        "bulk_revert": "field_mappings_bulk_revert",
    }

    def create(self, request: Request) -> Response:
        """Call ``field_mapping_create``."""
        body = FieldMappingCreateSerializer(
            data=request.data, context={"request": request}
        )
        body.is_valid(raise_exception=True)
        fm = fm_services.field_mapping_create(actor=request.user, **body.validated_data)
        return Response(_FM(fm).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        """Call ``field_mapping_update`` with only the fields sent."""
        fm = self.get_object()
        body = FieldMappingUpdateSerializer(
            data=request.data, context={"request": request}, partial=True
        )
        body.is_valid(raise_exception=True)
        fm = fm_services.field_mapping_update(
            actor=request.user, mapping=fm, **body.validated_data
        )
        return Response(_FM(fm).data)

    @extend_schema(
        methods=["GET"],
        summary="Preview the field mapping on sampled source rows",
        responses={200: MappingPreviewSerializer, **READ_ERRORS},
    )
    @extend_schema(
        methods=["POST"],
        summary="Preview an unsaved edit of the field mapping (nothing is stored)",
        request=FieldMappingDraftSerializer,
        responses={200: MappingPreviewSerializer, **WRITE_ERRORS},
    )
    @action(detail=True, methods=["get", "post"])
    def preview(self, request: Request, pk: str) -> Response:
        """Call ``mapping_preview`` (values masked unless ``view_pid``; audited)."""
        fm = self.get_object()
        draft = None
        if request.method == "POST":
            body = FieldMappingDraftSerializer(
                data=request.data, context={"request": request}
            )
            body.is_valid(raise_exception=True)
            edit = body.validated_data
            draft = fm_services.field_mapping_draft(
                mapping=fm,
                source_columns=edit.get("source_columns", fm.source_columns or []),
                transforms=edit.get("transforms", fm.transforms or []),
                crosswalk=edit.get("crosswalk", fm.crosswalk),
                crosswalk_strict=edit.get("crosswalk_strict", fm.crosswalk_strict),
            )
        preview = mapping_preview(user=request.user, mapping=fm, draft=draft)
        return Response(MappingPreviewSerializer(preview).data)

    @action(detail=False, methods=["get"], url_path="for-review", filter_backends=[])
    def for_review(self, request: Request) -> Response:
        """Return ``field_mappings_for_review`` (paginated)."""
        qs = field_mappings_for_review(user=request.user)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(_FM(page, many=True).data)


# --- code systems, crosswalks, rows, miss queue -----------------------------------


@extend_schema_view(
    list=_read("National code systems", CodeSystemSerializer),
    retrieve=_read("One code system release", CodeSystemSerializer),
)
class CodeSystemViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, GenericViewSet
):
    """National code systems: reference data, shown to members of any project.

    Code systems belong to no project; deny by default still holds: a user who
    is a member of no project (superusers included) sees none.
    """

    serializer_class = CodeSystemSerializer
    filterset_fields = ["slug", "version"]
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> models.QuerySet[CodeSystem]:
        """Return every code system to project members, none to anyone else."""
        if not projects_for_user(self.request.user).exists():
            return CodeSystem.objects.none()
        return CodeSystem.objects.all()


@extend_schema_view(
    list=_read("Crosswalks", CrosswalkSerializer),
    retrieve=_read("One crosswalk", CrosswalkSerializer),
    export=extend_schema(
        summary="The crosswalk's rows as CSV (the import format plus status)",
        responses={(200, "text/csv"): OpenApiTypes.STR, **READ_ERRORS},
    ),
    seed_defaults=_write(
        "Add the generated legacy PAS's crosswalks to a project (new rows proposed; "
        "what is there already is left alone)",
        CrosswalkSeedSerializer,
        CrosswalkSerializer(many=True),
    ),
    import_csv=extend_schema(
        summary="Import rows from CSV as proposed rows (whole file or nothing)",
        request={"multipart/form-data": CrosswalkImportSerializer},
        responses={200: OpenApiTypes.OBJECT, **WRITE_ERRORS},
    ),
)
class CrosswalkViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScoped, GenericViewSet
):
    """Crosswalks; importing rows needs ``edit_mapping`` (service)."""

    queryset = Crosswalk.objects.all()
    serializer_class = CrosswalkSerializer
    filterset_fields = ["project", "slug", "code_system"]

    @action(detail=True, methods=["get"], url_path="export")
    def export(self, request: Request, pk: str) -> HttpResponse:
        """Download ``crosswalk_export_csv``."""
        crosswalk = self.get_object()
        response = HttpResponse(
            crosswalk_export_csv(crosswalk=crosswalk),
            content_type="text/csv; charset=utf-8",
        )
        name = f"crosswalk-{crosswalk.slug}-v{crosswalk.version}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @action(detail=False, methods=["post"], url_path="seed-defaults")
    def seed_defaults(self, request: Request) -> Response:
        """Call ``crosswalks_seed_defaults``; returns the project's seeded crosswalks."""
        body = CrosswalkSeedSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        seeded = xw_services.crosswalks_seed_defaults(
            actor=request.user, project=body.validated_data["project"]
        )
        return Response(CrosswalkSerializer(seeded, many=True).data)

    @action(
        detail=True,
        methods=["post"],
        url_path="import",
        parser_classes=[MultiPartParser, FormParser],
    )
    def import_csv(self, request: Request, pk: str) -> Response:
        """Call ``crosswalk_import_csv``; returns created/updated/unchanged counts."""
        crosswalk = self.get_object()
        body = CrosswalkImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        if upload.size > 5 * 1024 * 1024:
            raise serializers.ValidationError({"file": ["larger than 5 MiB"]})
        counts = xw_services.crosswalk_import_csv(
            actor=request.user,
            crosswalk=crosswalk,
            file_bytes=upload.read(),
            encoding=body.validated_data["encoding"],
        )
        return Response(counts)


_RULE = ExclusionRuleSerializer


@extend_schema_view(
    list=_read("Exclusion rules: source rows a table leaves out", _RULE),
    retrieve=_read("One exclusion rule", _RULE),
    create=_write(
        "Propose a rule leaving out the source rows whose column matches",
        ExclusionRuleCreateSerializer,
        _RULE,
        201,
    ),
    propose=_write("Submit a draft rule for review", None, _RULE),
    approve=_write("Approve (not your own work: four eyes)", ReviewSerializer, _RULE),
    flag=_write("Flag for attention", ReviewSerializer, _RULE),
    reject=_write(
        "Reject (the rule is dropped: those rows migrate)", ReviewSerializer, _RULE
    ),
    bulk=_write(
        "Approve or revert exactly these ids (all or nothing)",
        BulkReviewSerializer,
        _RULE(many=True),
    ),
)
class ExclusionRuleViewSet(
    ReviewActionsMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    ProjectScoped,
    GenericViewSet,
):
    """Tables' exclusion rules and their four-eyes review (the services
    enforce four eyes)."""

    queryset = ExclusionRule.objects.select_related(
        "table_mapping", "author", "last_changed_by", "reviewer"
    )
    serializer_class = ExclusionRuleSerializer
    project_field = FIELD_MAPPING_PROJECT
    filterset_fields = ["table_mapping", "table_mapping__mapping_set", "status"]
    review_item = "rule"
    review_output = ExclusionRuleSerializer
    review_services = fm_services
    review_names = {
        "propose": "exclusion_rule_propose",
        "approve": "exclusion_rule_approve",
        "flag": "exclusion_rule_flag",
        "reject": "exclusion_rule_reject",
        "bulk_approve": "exclusion_rules_bulk_approve",
        "bulk_revert": "exclusion_rules_bulk_revert",
    }

    def create(self, request: Request) -> Response:
        """Call ``exclusion_rule_create`` (proposed; someone else approves)."""
        body = ExclusionRuleCreateSerializer(
            data=request.data, context={"request": request}
        )
        body.is_valid(raise_exception=True)
        rule = fm_services.exclusion_rule_create(
            actor=request.user, **body.validated_data
        )
        return Response(_RULE(rule).data, status=status.HTTP_201_CREATED)


_ROW = CrosswalkRowSerializer


@extend_schema_view(
    list=_read("Crosswalk rows", _ROW),
    retrieve=_read("One crosswalk row", _ROW),
    propose=_write("Submit a draft row for review", None, _ROW),
    approve=_write("Approve (not your own work: four eyes)", ReviewSerializer, _ROW),
    flag=_write("Flag for attention", ReviewSerializer, _ROW),
    reject=_write("Reject", ReviewSerializer, _ROW),
    bulk=_write(
        "Approve or revert exactly these ids (all or nothing)",
        BulkReviewSerializer,
        _ROW(many=True),
    ),
)
class CrosswalkRowViewSet(
    ReviewActionsMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    ProjectScoped,
    GenericViewSet,
):
    """Crosswalk rows and their four-eyes review."""

    queryset = CrosswalkRow.objects.select_related(
        "author", "last_changed_by", "reviewer"
    )
    serializer_class = CrosswalkRowSerializer
    project_field = CROSSWALK_ROW_PROJECT
    filterset_fields = ["crosswalk", "status", "local_code"]
    review_item = "row"
    review_output = CrosswalkRowSerializer
    review_services = xw_services
    review_names = {
        "propose": "crosswalk_row_propose",
        "approve": "crosswalk_row_approve",
        "flag": "crosswalk_row_flag",
        "reject": "crosswalk_row_reject",
        "bulk_approve": "crosswalk_rows_bulk_approve",
        "bulk_revert": "crosswalk_rows_bulk_revert",
    }


@extend_schema_view(
    list=_read("Miss queue: values runs could not translate", MissQueueEntrySerializer),
    retrieve=_read("One miss-queue entry", MissQueueEntrySerializer),
    resolve=_write(
        "Propose a crosswalk row for the value and resolve its entries",
        MissResolveSerializer,
        _ROW,
    ),
    ignore=_write(
        "Leave the value untranslated (its entries of every run, and later "
        "runs'), with the reason",
        MissIgnoreSerializer,
        MissQueueEntrySerializer,
    ),
    reopen=_write(
        "Put an ignored value back in the queue",
        None,
        MissQueueEntrySerializer,
    ),
)
class MissQueueViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScoped, GenericViewSet
):
    """The miss queue; resolving, ignoring and reopening need ``edit_mapping``."""

    queryset = MissQueueEntry.objects.select_related("crosswalk")
    serializer_class = MissQueueEntrySerializer
    project_field = MISS_PROJECT
    filterset_fields = ["crosswalk", "state", "run"]

    def base_queryset(self) -> models.QuerySet[MissQueueEntry]:
        """Return entries most frequent first."""
        return MissQueueEntry.objects.select_related("crosswalk").order_by(
            "-frequency", "local_value", "pk"
        )

    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str) -> Response:
        """Call ``missqueue_resolve``."""
        entry = self.get_object()
        body = MissResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        row = xw_services.missqueue_resolve(
            actor=request.user, entry=entry, **body.validated_data
        )
        return Response(_ROW(row).data, status=status.HTTP_201_CREATED)

    @action(detail=True, methods=["post"])
    def ignore(self, request: Request, pk: str) -> Response:
        """Call ``missqueue_ignore``."""
        entry = self.get_object()
        body = MissIgnoreSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        xw_services.missqueue_ignore(
            actor=request.user, entry=entry, note=body.validated_data["note"]
        )
        return Response(MissQueueEntrySerializer(entry).data)

    @action(detail=True, methods=["post"])
    def reopen(self, request: Request, pk: str) -> Response:
        """Call ``missqueue_reopen``."""
        entry = self.get_object()
        xw_services.missqueue_reopen(actor=request.user, entry=entry)
        return Response(MissQueueEntrySerializer(entry).data)
