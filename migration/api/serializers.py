"""Serializers of the migration API.

Read shapes only expose what a page would: no connector config, no SQL, no
patient values (reject values come masked from the rejects selector). Write
shapes validate ids against the user's own projects, so another project's id
reads exactly like an unknown one.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from connectors.models import Connector
from governance.models import MigrationProject
from migration.engine.contract import EXCLUDE_OPS
from migration.models import (
    CodeSystem,
    Contract,
    Crosswalk,
    CrosswalkRow,
    ExclusionRule,
    FieldMapping,
    MappingSet,
    MissQueueEntry,
    Run,
    RunState,
    RunTable,
    SchemaSnapshot,
    TableMapping,
)
from migration.services.runs import PROFILES
from pasportal.api import ScopedPrimaryKeyRelatedField

# --- contracts -------------------------------------------------------------------


class ContractSerializer(serializers.ModelSerializer[Contract]):
    """A published contract, without its body (see the JSON export)."""

    published_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Contract
        fields = [
            "id",
            "project",
            "mapping_set",
            "version",
            "sha256",
            "published_by",
            "published_at",
        ]
        read_only_fields = fields


class ContractPublishSerializer(serializers.Serializer[Any]):
    """Publish a mapping set as the project's next contract version."""

    mapping_set = ScopedPrimaryKeyRelatedField(queryset=MappingSet.objects.all())


# --- runs ------------------------------------------------------------------------


class RunSerializer(serializers.ModelSerializer[Run]):
    """A run's state; the error text is redacted by the worker before storage."""

    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    contract_sha256 = serializers.CharField(source="contract.sha256", read_only=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "project",
            "contract",
            "contract_sha256",
            "source",
            "target",
            "profile",
            "as_of",
            "state",
            "stage",
            "gate_outcome",
            "cancel_requested",
            "attempts",
            "superseded_by",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "error",
        ]
        read_only_fields = fields


class RunCreateSerializer(serializers.Serializer[Any]):
    """Create and start a run of a contract from a source into a target."""

    contract = ScopedPrimaryKeyRelatedField(queryset=Contract.objects.all())
    source = ScopedPrimaryKeyRelatedField(queryset=Connector.objects.all())
    target = ScopedPrimaryKeyRelatedField(queryset=Connector.objects.all())
    profile = serializers.ChoiceField(choices=list(PROFILES), default="development")
    as_of = serializers.DateField(required=False, allow_null=True)


class RunTableProgressSerializer(serializers.ModelSerializer[RunTable]):
    """Progress of one target table: counts, rate, ETA and stage."""

    eta_seconds = serializers.SerializerMethodField()

    class Meta:
        model = RunTable
        fields = [
            "target_table",
            "source_table",
            "order",
            "stage",
            "rows_total",
            "rows_read",
            "rows_loaded",
            "rows_rejected",
            "rows_excluded",
            "rate_rows_per_s",
            "eta_seconds",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_eta_seconds(self, obj: RunTable) -> float | None:
        """Return the seconds left at the current rate (None when unknown or done)."""
        if obj.finished_at or not obj.rows_total or not obj.rate_rows_per_s:
            return None
        left = max(obj.rows_total - obj.rows_read, 0)
        return round(left / obj.rate_rows_per_s, 1)


class RunProgressSerializer(serializers.Serializer[Any]):
    """A run's live progress (the shape the run page polls)."""

    id = serializers.IntegerField()
    state = serializers.ChoiceField(choices=RunState.choices)
    stage = serializers.CharField()
    rows_total = serializers.IntegerField(allow_null=True)
    rows_read = serializers.IntegerField()
    rows_loaded = serializers.IntegerField()
    rows_rejected = serializers.IntegerField()
    rate_rows_per_s = serializers.FloatField(allow_null=True)
    eta_seconds = serializers.FloatField(allow_null=True)
    tables = RunTableProgressSerializer(many=True)


class LedgerRowSerializer(serializers.ModelSerializer[RunTable]):
    """One table's count ledger: source = loaded + rejected + excluded."""

    source_rows = serializers.IntegerField(source="rows_total", allow_null=True)

    class Meta:
        model = RunTable
        fields = [
            "target_table",
            "source_table",
            "source_rows",
            "rows_read",
            "rows_loaded",
            "rows_rejected",
            "rows_excluded",
            "rows_flagged",
            "ledger_balanced",
        ]
        read_only_fields = fields


class ReconciliationTableSerializer(serializers.ModelSerializer[RunTable]):
    """Per-column reconciliation and DQMI metrics of one table."""

    columns = serializers.JSONField(source="metrics.columns", default=list)
    dqmi = serializers.JSONField(source="metrics.dqmi", default=dict)
    rejects_by_reason = serializers.JSONField(
        source="metrics.rejects_by_reason", default=dict
    )
    reject_rate = serializers.FloatField(source="metrics.reject_rate", default=None)

    class Meta:
        model = RunTable
        fields = [
            "target_table",
            "columns",
            "dqmi",
            "rejects_by_reason",
            "reject_rate",
        ]
        read_only_fields = fields


class RejectSerializer(serializers.Serializer[Any]):
    """One reject as the selector returns it (``raw_value`` masked unless view_pid)."""

    id = serializers.IntegerField()
    target_table = serializers.CharField()
    source_table = serializers.CharField()
    source_key = serializers.CharField()
    column = serializers.CharField()
    raw_value = serializers.CharField()
    masked = serializers.BooleanField()
    rule_id = serializers.CharField()
    reason_code = serializers.CharField()
    crosswalk_ref = serializers.CharField()
    crosswalk_version = serializers.CharField()

    class Meta:
        fields = (
            "id",
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
        )


# --- snapshots, mappings, code systems, crosswalks ------------------------------


class SnapshotSerializer(serializers.ModelSerializer[SchemaSnapshot]):
    """A schema snapshot: tables, columns, types, keys (profiles: see /profile/)."""

    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = SchemaSnapshot
        fields = [
            "id",
            "project",
            "connector",
            "created_at",
            "created_by",
            "fingerprint",
            "tables",
        ]
        read_only_fields = fields


class SnapshotExtractSerializer(serializers.Serializer[Any]):
    """Discover and profile a source connector into a new snapshot."""

    connector = ScopedPrimaryKeyRelatedField(queryset=Connector.objects.all())
    profile_rows = serializers.IntegerField(
        min_value=0, max_value=10_000_000, required=False, default=100_000
    )


class MappingSetSerializer(serializers.ModelSerializer[MappingSet]):
    """A mapping set (its table and field mappings are separate resources)."""

    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = MappingSet
        fields = [
            "id",
            "project",
            "name",
            "source_snapshot",
            "target_model_version",
            "options",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class MappingSetCreateSerializer(serializers.Serializer[Any]):
    """Create a mapping set of a snapshot onto a target model version."""

    name = serializers.CharField(max_length=200)
    source_snapshot = ScopedPrimaryKeyRelatedField(
        queryset=SchemaSnapshot.objects.all()
    )
    target_model_version = serializers.CharField(max_length=40, default="1")
    options = serializers.DictField(required=False, default=dict)


class MappingSetImportSerializer(serializers.Serializer[Any]):
    """Start a mapping set of a snapshot from the packaged default contract."""

    source_snapshot = ScopedPrimaryKeyRelatedField(
        queryset=SchemaSnapshot.objects.all()
    )
    name = serializers.CharField(max_length=200, required=False, default="")


class CrosswalkSeedSerializer(serializers.Serializer[Any]):
    """The project to give the generated legacy PAS's crosswalks."""

    project = ScopedPrimaryKeyRelatedField(
        queryset=MigrationProject.objects.all(), project_field="pk"
    )


class SnapshotRefSerializer(serializers.Serializer[Any]):
    """A snapshot to move a mapping set onto."""

    snapshot = ScopedPrimaryKeyRelatedField(queryset=SchemaSnapshot.objects.all())


class ExclusionRuleSerializer(serializers.ModelSerializer[ExclusionRule]):
    """Source rows a table leaves out, and where its four-eyes review stands."""

    class Meta:
        model = ExclusionRule
        fields = [
            "id",
            "rule_id",
            "column",
            "field",
            "op",
            "values",
            "reason",
            "status",
            "author",
            "reviewer",
            "reviewed_at",
        ]
        read_only_fields = fields


class ExclusionRuleCreateSerializer(serializers.Serializer[Any]):
    """Leave out the source rows whose column matches (a proposed rule)."""

    table_mapping = ScopedPrimaryKeyRelatedField(
        queryset=TableMapping.objects.all(), project_field="mapping_set__project"
    )
    column = serializers.CharField(max_length=120)
    op = serializers.ChoiceField(choices=list(EXCLUDE_OPS))
    values = serializers.ListField(
        child=serializers.CharField(max_length=200),
        required=False,
        default=list,
        max_length=500,
    )
    reason = serializers.CharField(max_length=80)


class TableMappingSerializer(serializers.ModelSerializer[TableMapping]):
    """A source table mapped onto a target table."""

    exclusion_rules = ExclusionRuleSerializer(many=True, read_only=True)

    class Meta:
        model = TableMapping
        fields = [
            "id",
            "mapping_set",
            "target_table",
            "source_table",
            "source_key",
            "joins",
            "filter",
            "exclusion_rules",
        ]
        read_only_fields = ["id", "joins", "filter", "exclusion_rules"]
        extra_kwargs = {"mapping_set": {"queryset": MappingSet.objects.all()}}


class TableMappingCreateSerializer(serializers.Serializer[Any]):
    """Map a source table onto a target table of a mapping set."""

    mapping_set = ScopedPrimaryKeyRelatedField(queryset=MappingSet.objects.all())
    target_table = serializers.CharField(max_length=80)
    source_table = serializers.CharField(max_length=120)
    source_key = serializers.CharField(max_length=120)


_REVIEW_FIELDS = [
    "status",
    "author",
    "last_changed_by",
    "reviewer",
    "rationale",
    "review_comment",
    "created_at",
    "changed_at",
    "reviewed_at",
]


class _Username(serializers.SlugRelatedField):  # type: ignore[type-arg]
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(slug_field="username", read_only=True, **kwargs)


class FieldMappingSerializer(serializers.ModelSerializer[FieldMapping]):
    """A field mapping and its four-eyes review state."""

    author = _Username()
    last_changed_by = _Username()
    reviewer = _Username()
    mapping_set = serializers.IntegerField(
        source="table_mapping.mapping_set_id", read_only=True
    )
    target_table = serializers.CharField(
        source="table_mapping.target_table", read_only=True
    )

    class Meta:
        model = FieldMapping
        fields = [
            "id",
            "mapping_set",
            "table_mapping",
            "target_table",
            "target_field",
            "source_columns",
            "transforms",
            "crosswalk",
            "crosswalk_strict",
            "suggestion_confidence",
            "waived",
            *_REVIEW_FIELDS,
        ]
        read_only_fields = fields


class FieldMappingCreateSerializer(serializers.Serializer[Any]):
    """Create a draft field mapping."""

    table_mapping = ScopedPrimaryKeyRelatedField(
        queryset=TableMapping.objects.all(), project_field="mapping_set__project"
    )
    target_field = serializers.CharField(max_length=80)
    source_columns = serializers.ListField(
        child=serializers.CharField(max_length=120), required=False, default=list
    )
    transforms = serializers.ListField(
        child=serializers.DictField(), required=False, default=list
    )
    crosswalk = ScopedPrimaryKeyRelatedField(
        queryset=Crosswalk.objects.all(), required=False, allow_null=True
    )
    rationale = serializers.CharField(required=False, allow_blank=True, default="")
    waived = serializers.BooleanField(required=False, default=False)


class FieldMappingDraftSerializer(serializers.Serializer[Any]):
    """An unsaved edit to preview; a field left out keeps its stored value."""

    source_columns = serializers.ListField(
        child=serializers.CharField(max_length=120), required=False
    )
    transforms = serializers.ListField(child=serializers.DictField(), required=False)
    crosswalk = ScopedPrimaryKeyRelatedField(
        queryset=Crosswalk.objects.all(), required=False, allow_null=True
    )
    crosswalk_strict = serializers.BooleanField(required=False)


class FieldMappingUpdateSerializer(FieldMappingDraftSerializer):
    """Edit a field mapping (only the fields sent change)."""

    rationale = serializers.CharField(required=False, allow_blank=True)
    waived = serializers.BooleanField(required=False)


class PreviewRowSerializer(serializers.Serializer[Any]):
    """One sampled source row through the field (values masked unless view_pid)."""

    source_key = serializers.CharField()
    inputs = serializers.ListField(child=serializers.CharField(allow_null=True))
    value = serializers.CharField(allow_null=True)
    rejected = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    column = serializers.CharField(allow_blank=True)
    other_field = serializers.BooleanField(
        help_text="rejected by another field's check; value is what this field gave"
    )
    rule_id = serializers.CharField(allow_blank=True)
    excluded = serializers.BooleanField(
        help_text="left out by the table's exclusion rule rule_id (reason says why)"
    )


class MappingPreviewSerializer(serializers.Serializer[Any]):
    """A field mapping (or an unsaved edit of it) on sampled source rows."""

    target = serializers.CharField()
    source_columns = serializers.ListField(child=serializers.CharField())
    masked = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    table_checks = serializers.CharField(
        allow_blank=True,
        help_text="why the table's checks were not applied (only the field's steps)",
    )
    pending_rows = serializers.IntegerField(
        help_text="crosswalk rows still under review the preview translated with"
    )
    rejected = serializers.IntegerField()
    excluded = serializers.IntegerField(
        help_text="sampled rows the table's exclusion rules leave out"
    )
    rows = PreviewRowSerializer(many=True)


class ReviewSerializer(serializers.Serializer[Any]):
    """A review decision's optional comment."""

    comment = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=4000
    )


class BulkReviewSerializer(serializers.Serializer[Any]):
    """Approve or revert exactly these ids, all or nothing."""

    action = serializers.ChoiceField(choices=["approve", "revert"])
    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), min_length=1, max_length=1000
    )
    comment = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=4000
    )
    to = serializers.ChoiceField(
        choices=["draft", "proposed"], required=False, default="proposed"
    )


class CodeSystemSerializer(serializers.ModelSerializer[CodeSystem]):
    """A national code system release."""

    class Meta:
        model = CodeSystem
        fields = [
            "id",
            "slug",
            "name",
            "version",
            "release",
            "valid_from",
            "valid_to",
            "verified",
            "loaded_at",
        ]
        read_only_fields = fields


class CrosswalkSerializer(serializers.ModelSerializer[Crosswalk]):
    """A project's crosswalk from a local code table to a national code system."""

    class Meta:
        model = Crosswalk
        fields = [
            "id",
            "project",
            "slug",
            "name",
            "local_table",
            "code_system",
            "version",
            "default_code",
            "created_at",
        ]
        read_only_fields = fields


class CrosswalkRowSerializer(serializers.ModelSerializer[CrosswalkRow]):
    """One local code's translation and its review state."""

    author = _Username()
    last_changed_by = _Username()
    reviewer = _Username()

    class Meta:
        model = CrosswalkRow
        fields = [
            "id",
            "crosswalk",
            "local_code",
            "local_display",
            "target_code",
            "equivalence",
            "retired_target",
            *_REVIEW_FIELDS,
        ]
        read_only_fields = fields


class CrosswalkImportSerializer(serializers.Serializer[Any]):
    """A CSV file of crosswalk rows (multipart upload)."""

    file = serializers.FileField()
    encoding = serializers.CharField(required=False, default="utf-8", max_length=40)


class MissQueueEntrySerializer(serializers.ModelSerializer[MissQueueEntry]):
    """A local value a run could not translate."""

    class Meta:
        model = MissQueueEntry
        fields = [
            "id",
            "crosswalk",
            "local_value",
            "frequency",
            "defaulted",
            "run",
            "state",
            "first_seen_at",
            "note",
            "decided_by",
            "decided_at",
        ]
        read_only_fields = fields


class MissIgnoreSerializer(serializers.Serializer[Any]):
    """Leave a missed value untranslated: why it needs no crosswalk row."""

    note = serializers.CharField(max_length=500)


class MissResolveSerializer(serializers.Serializer[Any]):
    """Resolve a missed value by proposing a crosswalk row for it."""

    target_code = serializers.CharField(max_length=40)
    equivalence = serializers.CharField(max_length=16)
    rationale = serializers.CharField(allow_blank=True, default="", max_length=4000)
