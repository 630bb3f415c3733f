from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db import transaction
from django.http import HttpRequest
from rest_framework.authtoken.admin import TokenAdmin
from rest_framework.authtoken.models import TokenProxy

from governance import audit, services
from governance.accounts import audited_by_caller
from governance.models import AuditEvent, MigrationProject, ProjectMembership


@admin.register(MigrationProject)
class MigrationProjectAdmin(admin.ModelAdmin):
    """Writes go through governance.services, so every change is audited.

    No delete: a project is the root of its mappings, contracts, runs,
    sign-offs and waivers -- the governance record -- and is not removed
    from a list page.
    """

    list_display = ["name", "slug", "ods_code", "created_at"]
    search_fields = ["name", "slug"]
    fields = list(services.PROJECT_FIELDS)

    def save_model(
        self,
        request: HttpRequest,
        obj: MigrationProject,
        form: forms.ModelForm,
        change: bool,
    ) -> None:
        values = {f: form.cleaned_data[f] for f in services.PROJECT_FIELDS}
        if change:
            saved = services.project_update(actor=request.user, project=obj, **values)
        else:
            saved = services.project_create(actor=request.user, **values)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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


class AuditedAdmin(admin.ModelAdmin):
    """Admin writes to a model that has no service of ours: audited all the same.

    Django admin logs each addition, change and deletion (its own
    ``LogEntry``, which anyone with database access can edit); these hooks
    add the same fact -- which object, what kind of change, the names of the
    fields changed, never their values -- to the tamper-evident audit chain,
    in the same transaction as the change.
    """

    def audit_label(self, obj: Any) -> str:
        """Return how the audit event names ``obj`` (never a secret)."""
        return str(obj)

    def _audit(self, request: HttpRequest, verb: str, obj: Any, message: Any) -> None:
        meta = obj._meta
        audit.record(
            actor=request.user,
            action=f"admin.{meta.app_label}.{meta.model_name}.{verb}",
            target=obj,
            data={"object": self.audit_label(obj), "change": message},
        )

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        self._audit(request, "created", obj, message)
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        self._audit(request, "changed", obj, message)
        return super().log_change(request, obj, message)

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        for obj in queryset:
            self._audit(request, "deleted", obj, [])
        return super().log_deletions(request, queryset)

    def response_action(self, request: HttpRequest, queryset: Any) -> Any:
        # A list page action (delete selected) logs, then changes, outside
        # the transaction Django gives the change and delete pages: one here,
        # so the events and the change stand or fall together.
        with transaction.atomic():
            return super().response_action(request, queryset)


User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)


class AuditedHere(AuditedAdmin):
    """Every view that changes the object records it here, with the person;
    governance.accounts' signals (for changes made anywhere else) stand aside
    meanwhile."""

    def changeform_view(self, *args: Any, **kwargs: Any) -> Any:
        with audited_by_caller():
            return super().changeform_view(*args, **kwargs)

    def delete_view(self, *args: Any, **kwargs: Any) -> Any:
        with audited_by_caller():
            return super().delete_view(*args, **kwargs)

    def changelist_view(self, *args: Any, **kwargs: Any) -> Any:
        with audited_by_caller():  # bulk actions (delete selected)
            return super().changelist_view(*args, **kwargs)


@admin.register(User)
class AuditedUserAdmin(AuditedHere, UserAdmin):
    """Accounts, roles' groups, staff and superuser flags, passwords: audited."""

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> Any:
        # Django saves the new password and logs it in two steps, outside a
        # transaction: here they are one, with the audit event.
        with audited_by_caller(), transaction.atomic():
            return super().user_change_password(request, id, form_url)


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdmin, GroupAdmin):
    """The role groups carry no model permissions; granting one is audited."""


admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class AuditedTokenAdmin(AuditedHere, TokenAdmin):
    """API tokens are issued and revoked here: audited, by owner, never by key."""

    def audit_label(self, obj: Any) -> str:
        return f"API token of {obj.user.get_username()}"
