"""Governance models: the project (root of object permissions), memberships, audit."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from governance.roles import PROJECT_PERMISSIONS, Role


class MigrationProject(models.Model):
    """A trust's migration: the root of every object permission."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    ods_code = models.CharField("trust ODS code", max_length=5, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = PROJECT_PERMISSIONS

    def __str__(self) -> str:
        return self.name


class ProjectMembership(models.Model):
    """A person holds a role on a project; services keep guardian perms in step."""

    project = models.ForeignKey(
        MigrationProject, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=32, choices=Role.choices)
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "user", "role"], name="uniq_membership_role"
            )
        ]
        ordering = ["project", "user", "role"]

    def __str__(self) -> str:
        return f"{self.user} as {self.role} on {self.project}"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Append-only: bulk updates and deletes are refused."""

    def update(self, **kwargs: Any) -> int:
        raise PermissionError("audit events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit events are append-only")


class AuditEvent(models.Model):
    """One state change or sensitive read; HMAC-chained, append-only.

    Only ``governance.audit.record`` creates these. Database triggers (see the
    migration) refuse UPDATE and DELETE as well, so an ORM slip cannot rewrite
    history; the chain catches anyone who drops the triggers.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor_id = models.BigIntegerField(null=True, blank=True)
    actor = models.JSONField(default=dict)  # snapshot: username, name, roles
    request_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=120, db_index=True)
    target_type = models.CharField(max_length=120, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    project_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    chain_hash = models.CharField(max_length=64)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["target_type", "target_id"])]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit events are append-only")


class AuditChainHead(models.Model):
    """Singleton row serialising writers: the last sequence number and hash."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveBigIntegerField(default=0)
    chain_hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"


# --- gates, waivers, sign-offs (built on migration runs; lazy references) ------


class CheckStatus(models.TextChoices):
    PASS = "PASS", "Pass"
    PASS_WITH_VIOLATIONS = "PASS_WITH_VIOLATIONS", "Pass with violations"
    FAIL = "FAIL", "Fail"
    NOT_APPLICABLE = "NOT_APPLICABLE", "Not applicable"
    ERROR = "ERROR", "Error"


class GateEvaluation(models.Model):
    """A gate profile evaluated against a run's stored results."""

    run = models.ForeignKey(
        "migration.Run", on_delete=models.CASCADE, related_name="gates"
    )
    profile = models.CharField(max_length=32)
    profile_version = models.CharField(max_length=40)
    status = models.CharField(max_length=24, choices=CheckStatus.choices)
    reasons = models.JSONField(default=list, blank=True)  # e.g. missing sign-offs
    evaluated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    evaluated_at = models.DateTimeField(auto_now_add=True)
    result = models.JSONField(default=dict, blank=True)  # the engine's GateResult

    class Meta:
        ordering = ["-evaluated_at"]

    def __str__(self) -> str:
        return f"{self.profile} on run {self.run_id}: {self.status}"


class CheckResult(models.Model):
    evaluation = models.ForeignKey(
        GateEvaluation, on_delete=models.CASCADE, related_name="checks"
    )
    check_id = models.CharField(max_length=80)
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=20)  # conformance/completeness/plausibility
    severity = models.CharField(max_length=20)  # fatal/convention/characterisation
    target_table = models.CharField(max_length=80, blank=True)
    numerator = models.BigIntegerField(null=True)
    denominator = models.BigIntegerField(null=True)
    threshold = models.JSONField(
        default=dict, blank=True
    )  # {"max_pct": 1.0} / {"max_count": 0}; {} when not applicable
    status = models.CharField(max_length=24, choices=CheckStatus.choices)
    waiver = models.ForeignKey(
        "governance.Waiver",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["evaluation", "check_id", "target_table"]

    def __str__(self) -> str:
        return f"{self.check_id} {self.status}"


class Waiver(models.Model):
    """A time-limited, approved exception to a non-fatal check (resolution policy)."""

    project = models.ForeignKey(
        MigrationProject, on_delete=models.CASCADE, related_name="waivers"
    )
    check_id = models.CharField(max_length=80)
    target_table = models.CharField(max_length=80, blank=True)
    profile = models.CharField(max_length=32)
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    revoke_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"waiver {self.check_id} ({self.profile})"


class SignOffDecision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class SignOff(models.Model):
    """A named person's decision in one role, bound to a run and its contract hash."""

    run = models.ForeignKey(
        "migration.Run", on_delete=models.CASCADE, related_name="signoffs"
    )
    contract_sha256 = models.CharField(max_length=64)
    profile = models.CharField(max_length=32)
    role = models.CharField(max_length=32, choices=Role.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=16, choices=SignOffDecision.choices)
    comment = models.TextField(blank=True)
    signed_at = models.DateTimeField(auto_now_add=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    void_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["run", "role"]
        constraints = [
            # One live sign-off per role per run; one person cannot fill two roles.
            models.UniqueConstraint(
                fields=["run", "profile", "role"],
                condition=models.Q(voided_at__isnull=True),
                name="uniq_live_signoff_role",
            ),
            models.UniqueConstraint(
                fields=["run", "profile", "user"],
                condition=models.Q(voided_at__isnull=True),
                name="uniq_live_signoff_person",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.decision} run {self.run_id}"


class EvidenceExport(models.Model):
    """A record of an evidence bundle built for a run (the file lives on disk)."""

    run = models.ForeignKey(
        "migration.Run", on_delete=models.CASCADE, related_name="exports"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    manifest = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"evidence for run {self.run_id}"
