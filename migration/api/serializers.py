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
from migration.models import Contract, MappingSet, Run, RunState, RunTable
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
