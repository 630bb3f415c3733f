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
