"""Connector models: registered sources and targets, health history, query log.

Configuration is stored as the kind's validated JSON; secrets are stored only as
references (``env:NAME``, ``file:/path``) or Fernet tokens (``fernet:...``),
never as plain text, and are never rendered back.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ConnectorRole(models.TextChoices):
    SOURCE = "source", "Source"
    TARGET = "target", "Target"


class HealthStatus(models.TextChoices):
    OK = "ok", "Healthy"
    DEGRADED = "degraded", "Degraded"
    DOWN = "down", "Down"
    UNKNOWN = "unknown", "Not checked yet"


class Connector(models.Model):
    """A registered legacy source or migration target of a project."""

    project = models.ForeignKey(
        "governance.MigrationProject",
        on_delete=models.PROTECT,
        related_name="connectors",
    )
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=32)
    role = models.CharField(max_length=16, choices=ConnectorRole.choices)
    config = models.JSONField(default=dict, blank=True)
    # {"password": "env:LEGACY_PW"} or {"password": "fernet:gAAAA..."}: references only.
    secret_refs = models.JSONField(default=dict, blank=True)
    health_status = models.CharField(
        max_length=16, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN
    )
    health_checked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], name="uniq_connector_name"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} {self.role})"


class ConnectorHealth(models.Model):
    """One health check of a connector (on demand or scheduled)."""

    connector = models.ForeignKey(
        Connector, on_delete=models.CASCADE, related_name="health"
    )
    checked_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=HealthStatus.choices)
    read_only = models.BooleanField(null=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)  # redacted
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-checked_at"]

    def __str__(self) -> str:
        return f"{self.connector} {self.status} at {self.checked_at:%Y-%m-%d %H:%M}"


class QueryLog(models.Model):
    """A statement a connector ran: who, when, shape (no literals), rows, outcome."""

    connector = models.ForeignKey(
        Connector, on_delete=models.CASCADE, related_name="queries"
    )
    actor = models.CharField(max_length=150, blank=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    statement = models.TextField()  # literals replaced by placeholders
    purpose = models.CharField(
        max_length=40, blank=True
    )  # discover/profile/sample/extract
    rows = models.BigIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=40)  # ok / refused / timeout / error
    message = models.TextField(blank=True)  # redacted

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.connector} {self.purpose} {self.outcome}"
