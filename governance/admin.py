from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from governance.models import AuditEvent, MigrationProject, ProjectMembership


@admin.register(MigrationProject)
class MigrationProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "ods_code", "created_at"]
    search_fields = ["name", "slug"]


@admin.register(ProjectMembership)
class ProjectMembershipAdmin(admin.ModelAdmin):
    """Read-only here: memberships change through services so perms and audit follow."""

    list_display = ["project", "user", "role", "granted_at"]
    list_filter = ["role", "project"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Append-only: view, never add, change or delete."""

    list_display = [
        "seq",
        "created_at",
        "action",
        "target_type",
        "target_id",
        "project_id",
    ]
    list_filter = ["action"]
    search_fields = ["action", "target_id", "request_id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
