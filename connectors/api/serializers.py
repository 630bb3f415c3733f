"""Serializers of the connectors API: never a secret, not even a reference.

A secret field of a kind's config holds a reference (``env:NAME``,
``file:/path``, ``fernet:...``); even the reference tells an attacker where to
look, so every secret-bearing value shows as ``********``.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers

from connectors.models import Connector, ConnectorHealth
from connectors.secrets import is_reference

MASK = "********"
_SECRET_KEY = re.compile(
    r"pass(word)?|passwd|pwd|secret|token|api[_-]?key|credential", re.I
)


def mask_config(value: Any, key: str = "") -> Any:
    """Return ``value`` with secret fields and secret references masked."""
    if isinstance(value, dict):
        return {k: mask_config(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_config(v, key) for v in value]
    if isinstance(value, str) and (is_reference(value) or _SECRET_KEY.search(key)):
        return MASK
    if _SECRET_KEY.search(key) and value is not None:
        return MASK
    return value


class ConnectorHealthSerializer(serializers.ModelSerializer[ConnectorHealth]):
    """One health check (its message is redacted when stored)."""

    class Meta:
        model = ConnectorHealth
        fields = ["checked_at", "status", "read_only", "latency_ms", "message"]
        read_only_fields = fields


class ConnectorSerializer(serializers.ModelSerializer[Connector]):
    """A connector with its config, secrets masked."""

    config = serializers.SerializerMethodField()
    secret_fields = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Connector
        fields = [
            "id",
            "project",
            "name",
            "kind",
            "role",
            "config",
            "secret_fields",
            "health_status",
            "health_checked_at",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_config(self, obj: Connector) -> dict[str, Any]:
        """Return the config with every secret value replaced by ``********``."""
        return mask_config(obj.config or {})

    def get_secret_fields(self, obj: Connector) -> list[str]:
        """Return the names of the fields that hold a secret (never their values)."""
        return sorted(obj.secret_refs or {})
