"""The registry of connector kinds: ``register``, ``get_kind(name)``, ``KINDS``.

One module per kind (csv, json, sqlite, postgresql, odbc, jdbc). A kind is a
pydantic config model plus a connection class with ``check()``, ``discover()``,
``count()``, ``profile()``, ``sample()``, ``read_chunks()`` (the engine's
``Source`` port) and, for kinds that can be targets, ``sink()``.

Framework-free: no Django import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from migration.engine.errors import TerminalError

__all__ = ["BUILTIN_KINDS", "KINDS", "KindSpec", "get_kind", "open_source", "register"]


@dataclass(frozen=True)
class KindSpec:
    """A registered kind: its name, config model, connection class and roles."""

    name: str
    config_model: type[Any]
    connection_class: type[Any]
    roles: frozenset[str]

    def validate(self, config: dict[str, Any]) -> Any:
        """Return the validated config model; raises pydantic.ValidationError."""
        return self.config_model.model_validate(config)

    def open(self, config: dict[str, Any] | Any, *, name: str = "connector") -> Any:
        """Return an (unconnected) connection for ``config``; raises on bad config."""
        model = (
            config if isinstance(config, self.config_model) else self.validate(config)
        )
        return self.connection_class(model, name=name)


KINDS: dict[str, KindSpec] = {}

#: Kinds shipped with PAS Portal and the module that registers each.
BUILTIN_KINDS: dict[str, str] = {
    "csv": "connectors.kinds.csv",
    "json": "connectors.kinds.json",
    "sqlite": "connectors.kinds.sqlite",
    "postgresql": "connectors.kinds.postgresql",
    "odbc": "connectors.kinds.odbc",
    "jdbc": "connectors.kinds.jdbc",
}


def register(
    name: str,
    config_model: type[Any],
    connection_class: type[Any],
    *,
    roles: tuple[str, ...] = ("source",),
) -> KindSpec:
    """Register a kind under ``name`` and return its spec (re-registering replaces)."""
    spec = KindSpec(name, config_model, connection_class, frozenset(roles))
    KINDS[name] = spec
    return spec


def get_kind(name: str) -> KindSpec:
    """Return the spec of kind ``name``; raises TerminalError for an unknown kind."""
    if name not in KINDS and name in BUILTIN_KINDS:
        importlib.import_module(BUILTIN_KINDS[name])
    try:
        return KINDS[name]
    except KeyError:
        raise TerminalError(f"unknown connector kind {name!r}") from None


def load_builtin() -> dict[str, KindSpec]:
    """Import every built-in kind module and return ``KINDS``."""
    for name in BUILTIN_KINDS:
        get_kind(name)
    return KINDS


def open_source(kind: str, config: dict[str, Any], *, name: str = "connector") -> Any:
    """Return an unconnected source of ``kind`` for ``config``."""
    return get_kind(kind).open(config, name=name)
