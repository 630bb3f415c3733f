"""Connector admin: per-kind validation through the services, a "test
connection" action, and write-only secret fields that are never rendered back
and never named with their values in the admin change history."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from connectors import services
from connectors.kinds import BUILTIN_KINDS
from connectors.models import Connector, ConnectorHealth, QueryLog

_MASK = "(set)"


class ConnectorForm(forms.ModelForm):
    """Config as JSON (secrets masked); secrets entered write-only."""

    secret_password = forms.CharField(
        label="Password or secret reference",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="env:NAME, file:/path, or a value to encrypt. Blank keeps the "
        "current one. Never shown back.",
    )
    kind = forms.ChoiceField(choices=[(k, k) for k in BUILTIN_KINDS])

    class Meta:
        model = Connector
        fields = ["project", "name", "kind", "role", "config"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            shown = dict(self.instance.config or {})
            for field in services.secret_fields(self.instance.kind):
                if field in shown:
                    shown[field] = _MASK
            self.initial["config"] = shown

    def clean_config(self) -> dict[str, Any]:
        value = self.cleaned_data.get("config") or {}
        if isinstance(value, str):
            value = json.loads(value)
        return value


@admin.register(Connector)
class ConnectorAdmin(admin.ModelAdmin):
    """Writes go through connectors.services so every change is audited."""

    form = ConnectorForm
    list_display = [
        "name",
        "project",
        "kind",
        "role",
        "health_status",
        "health_checked_at",
    ]
    list_filter = ["kind", "role", "health_status"]
    search_fields = ["name"]
    readonly_fields = ["health_status", "health_checked_at", "created_by", "created_at"]
    actions = ["test_connection"]

    def save_model(
        self, request: HttpRequest, obj: Connector, form: forms.ModelForm, change: bool
    ) -> None:
        config = dict(form.cleaned_data["config"])
        secret = form.cleaned_data.get("secret_password") or ""
        fields = services.secret_fields(form.cleaned_data["kind"])
        for field in fields:
            if config.get(field) == _MASK:
                config.pop(field)  # unchanged: the service keeps the stored ref
        secrets = {fields[0]: secret} if secret and fields else None
        try:
            if change:
                saved = services.connector_update(
                    actor=request.user,
                    connector=obj,
                    name=form.cleaned_data["name"],
                    config=config,
                    secrets=secrets,
                )
            else:
                saved = services.connector_create(
                    actor=request.user,
                    project=form.cleaned_data["project"],
                    name=form.cleaned_data["name"],
                    kind=form.cleaned_data["kind"],
                    role=form.cleaned_data["role"],
                    config=config,
                    secrets=secrets,
                )
        except ValidationError as exc:
            self.message_user(request, "; ".join(exc.messages), messages.ERROR)
            raise
        obj.pk = saved.pk
        obj.refresh_from_db()

    def construct_change_message(
        self,
        request: HttpRequest,
        form: forms.ModelForm,
        formsets: Any,
        add: bool = False,
    ) -> list[dict[str, Any]]:
        # The admin's history lists changed field names; the secret field is
        # left out altogether (and never its value).
        msg = super().construct_change_message(request, form, formsets, add)
        for entry in msg:
            changed = entry.get("changed")
            if changed:
                changed["fields"] = [
                    f for f in changed.get("fields", []) if "password" not in f.lower()
                ]
        return msg

    def delete_model(self, request: HttpRequest, obj: Connector) -> None:
        services.connector_delete(actor=request.user, connector=obj)

    def delete_queryset(
        self, request: HttpRequest, queryset: QuerySet[Connector]
    ) -> None:
        for obj in queryset:
            services.connector_delete(actor=request.user, connector=obj)

    @admin.action(description="Test connection")
    def test_connection(
        self, request: HttpRequest, queryset: QuerySet[Connector]
    ) -> None:
        """Run check() on each selected connector and report the status."""
        for connector in queryset:
            health = services.connector_check(actor=request.user, connector=connector)
            level = messages.SUCCESS if health.status == "ok" else messages.WARNING
            self.message_user(
                request,
                f"{connector.name}: {health.status}"
                + (f" ({health.message})" if health.message else ""),
                level,
            )


@admin.register(ConnectorHealth)
class ConnectorHealthAdmin(admin.ModelAdmin):
    """Read-only health history."""

    list_display = ["connector", "status", "read_only", "latency_ms", "checked_at"]
    list_filter = ["status"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(QueryLog)
class QueryLogAdmin(admin.ModelAdmin):
    """Read-only query log (statements carry no literals)."""

    list_display = [
        "connector",
        "purpose",
        "outcome",
        "rows",
        "duration_ms",
        "started_at",
    ]
    list_filter = ["purpose", "outcome"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
