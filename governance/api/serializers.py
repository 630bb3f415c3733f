"""Serializers of the governance API (read shapes; writes go through services)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from governance.models import (
    AuditEvent,
    CheckResult,
    EvidenceExport,
    GateEvaluation,
    MigrationProject,
    SignOff,
    SignOffDecision,
    Waiver,
)
from governance.roles import Role
from migration.models import Run
from pasportal.api import ScopedPrimaryKeyRelatedField


class ProjectSerializer(serializers.ModelSerializer[MigrationProject]):
    """A project the user is a member of."""

    class Meta:
        model = MigrationProject
        fields = ["id", "name", "slug", "description", "ods_code", "created_at"]
        read_only_fields = fields


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    """One audit event; ``data`` never holds secrets (``audit.record`` refuses them)."""

    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "created_at",
            "actor_id",
            "actor",
            "request_id",
            "action",
            "target_type",
            "target_id",
            "project_id",
            "data",
            "prev_hash",
            "chain_hash",
        ]
        read_only_fields = fields


class CheckResultSerializer(serializers.ModelSerializer[CheckResult]):
    """One check of a gate evaluation, with numerator/denominator and threshold."""

    class Meta:
        model = CheckResult
        fields = [
            "check_id",
            "name",
            "category",
            "severity",
            "target_table",
            "numerator",
            "denominator",
            "threshold",
            "status",
            "waiver",
            "message",
        ]
        read_only_fields = fields


class GateEvaluationSerializer(serializers.ModelSerializer[GateEvaluation]):
    """A gate evaluation and its check results."""

    evaluated_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    checks = CheckResultSerializer(many=True, read_only=True)

    class Meta:
        model = GateEvaluation
        fields = [
            "id",
            "run",
            "profile",
            "profile_version",
            "status",
            "reasons",
            "evaluated_by",
            "evaluated_at",
            "checks",
        ]
        read_only_fields = fields


class GateEvaluateSerializer(serializers.Serializer[Any]):
    """Evaluate a gate profile on a finished run."""

    run = ScopedPrimaryKeyRelatedField(
        queryset=Run.objects.all(), project_field="project"
    )
    profile = serializers.CharField(max_length=32)


class WaiverSerializer(serializers.ModelSerializer[Waiver]):
    """A waiver: who asked, who approved, until when."""

    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approver = serializers.SlugRelatedField(slug_field="username", read_only=True)
    revoked_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Waiver
        fields = [
            "id",
            "project",
            "check_id",
            "target_table",
            "profile",
            "reason",
            "requested_by",
            "approver",
            "approved_at",
            "expires_at",
            "revoked_at",
            "revoked_by",
            "revoke_reason",
            "created_at",
        ]
        read_only_fields = fields


class WaiverRevokeSerializer(serializers.Serializer[Any]):
    """Why a waiver is withdrawn before it expires."""

    reason = serializers.CharField(max_length=4000)


class WaiverRequestSerializer(serializers.Serializer[Any]):
    """Request a waiver of one check (optionally one table) until ``expires_at``."""

    project = ScopedPrimaryKeyRelatedField(
        queryset=MigrationProject.objects.all(), project_field="pk"
    )
    check_id = serializers.CharField(max_length=80)
    profile = serializers.CharField(max_length=32)
    reason = serializers.CharField(max_length=4000)
    expires_at = serializers.DateTimeField()
    target_table = serializers.CharField(
        max_length=80, required=False, allow_blank=True, default=""
    )


class SignOffSerializer(serializers.ModelSerializer[SignOff]):
    """A sign-off bound to a run and the contract hash it was given on."""

    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = SignOff
        fields = [
            "id",
            "run",
            "contract_sha256",
            "profile",
            "role",
            "user",
            "decision",
            "comment",
            "signed_at",
            "voided_at",
            "void_reason",
        ]
        read_only_fields = fields


class SignOffRecordSerializer(serializers.Serializer[Any]):
    """Record your sign-off in one of your roles on a succeeded run."""

    run = ScopedPrimaryKeyRelatedField(queryset=Run.objects.all())
    role = serializers.ChoiceField(choices=Role.choices)
    decision = serializers.ChoiceField(choices=SignOffDecision.choices)
    comment = serializers.CharField(
        max_length=4000, required=False, allow_blank=True, default=""
    )
    profile = serializers.CharField(max_length=32, default="cutover_ready")


class EvidenceExportSerializer(serializers.ModelSerializer[EvidenceExport]):
    """An evidence bundle's record (the server path is not shown)."""

    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = EvidenceExport
        fields = ["id", "run", "created_by", "created_at", "sha256", "manifest"]
        read_only_fields = fields


class EvidenceRequestSerializer(serializers.Serializer[Any]):
    """Build an evidence bundle for a run."""

    run = ScopedPrimaryKeyRelatedField(queryset=Run.objects.all())
