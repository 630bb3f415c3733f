"""Target models declared as data (``<name>_v<version>.json``) and their loaders."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from migration.engine.errors import ContractError

_HERE = Path(__file__).resolve().parent

#: Every target row carries these; ``_source_key`` is unique per table so a
#: resumed run cannot stage the same source row twice.
PROVENANCE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_source_table", "TEXT"),
    ("_source_key", "TEXT"),
    ("_run_id", "TEXT"),
)

SQL_TYPES = frozenset({"TEXT", "DATE", "TIMESTAMP", "BIGINT", "INTEGER"})


@dataclass(frozen=True)
class TargetField:
    """One column of a target table with its semantic type."""

    name: str
    sql_type: str
    semantic: str
    required: bool = False
    business_critical: bool = False

    @property
    def code_system(self) -> str | None:
        """Return the code system id of a ``code:<id>`` field, else None."""
        return self.semantic[5:] if self.semantic.startswith("code:") else None

    @property
    def references(self) -> str | None:
        """Return the referenced table of a ``fk:<table>`` field, else None."""
        return self.semantic[3:] if self.semantic.startswith("fk:") else None


@dataclass(frozen=True)
class TargetTable:
    """One target table: fields, business key, kind (reference or entity)."""

    name: str
    kind: str
    key: tuple[str, ...]
    fields: tuple[TargetField, ...]

    def field(self, name: str) -> TargetField:
        """Return the field called ``name``; raises KeyError when absent."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def field_names(self) -> tuple[str, ...]:
        """Return the field names in declared order."""
        return tuple(f.name for f in self.fields)

    def parents(self) -> tuple[str, ...]:
        """Return the tables this one references through ``fk:`` fields."""
        out: list[str] = []
        for f in self.fields:
            ref = f.references
            if ref is not None and ref not in out:
                out.append(ref)
        return tuple(out)


@dataclass(frozen=True)
class TargetModel:
    """A versioned target model: tables plus pinned code-system versions."""

    name: str
    version: str
    title: str
    tables: tuple[TargetTable, ...]
    code_systems: tuple[tuple[str, str], ...] = field(default=())

    def table(self, name: str) -> TargetTable:
        """Return the table called ``name``; raises ContractError when absent."""
        for t in self.tables:
            if t.name == name:
                return t
        raise ContractError(f"target model {self.ref} has no table {name!r}")

    @property
    def ref(self) -> str:
        """Return ``name@version``."""
        return f"{self.name}@{self.version}"

    def code_system_version(self, system: str) -> str:
        """Return the pinned version of ``system``; raises ContractError if none."""
        for sid, ver in self.code_systems:
            if sid == system:
                return ver
        raise ContractError(f"target model {self.ref} pins no version of {system!r}")


def target_from_dict(data: dict[str, Any]) -> TargetModel:
    """Build a TargetModel from its JSON form; raises ContractError when invalid."""
    try:
        tables = tuple(
            TargetTable(
                name=t["name"],
                kind=t.get("kind", "entity"),
                key=tuple(t["key"]),
                fields=tuple(TargetField(**f) for f in t["fields"]),
            )
            for t in data["tables"]
        )
        model = TargetModel(
            name=data["name"],
            version=str(data["version"]),
            title=data.get("title", data["name"]),
            tables=tables,
            code_systems=tuple(sorted(data.get("code_systems", {}).items())),
        )
    except (KeyError, TypeError) as exc:
        raise ContractError(f"malformed target model: {exc!r}") from exc
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise ContractError("target model declares a table twice")
    for t in tables:
        for f in t.fields:
            if f.sql_type not in SQL_TYPES:
                raise ContractError(f"{t.name}.{f.name}: unknown SQL type {f.sql_type}")
            ref = f.references
            if ref is not None and ref not in names:
                raise ContractError(f"{t.name}.{f.name} references unknown {ref!r}")
            system = f.code_system
            if system is not None:
                model.code_system_version(system)
        for k in t.key:
            t.field(k)
    dependency_order(model)
    return model


@cache
def load_target(name: str = "nhs_pas_target", version: str = "1") -> TargetModel:
    """Return the packaged target model ``name`` v``version``; raises ContractError."""
    path = _HERE / f"{name}_v{version}.json"
    if not path.is_file():
        raise ContractError(f"no packaged target model {name}@{version}")
    return target_from_dict(json.loads(path.read_text(encoding="utf-8")))


def dependency_order(model: TargetModel) -> list[str]:
    """Return table names parents-first (Kahn); raises ContractError on a cycle."""
    parents = {t.name: [p for p in t.parents() if p != t.name] for t in model.tables}
    declared = [t.name for t in model.tables]
    done: list[str] = []
    remaining = list(declared)
    while remaining:
        # Tie-break by declared order so the order is stable across runs.
        ready = [n for n in remaining if all(p in done for p in parents[n])]
        if not ready:
            raise ContractError(f"cycle in table dependencies among {remaining}")
        done.append(ready[0])
        remaining.remove(ready[0])
    return done
