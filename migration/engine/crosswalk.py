"""Crosswalks: local code -> national code (code system + version), graded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from migration.engine.arrowtext import arrow_text, mask_series, text_series
from migration.engine.errors import ContractError

#: Equivalence grades (after FHIR ConceptMap): how well the local concept fits.
EQUIVALENCES = ("equal", "equivalent", "wider", "narrower", "inexact", "unmatched")
MODES = ("strict", "lenient")


@dataclass(frozen=True)
class CrosswalkEntry:
    """One local code and its national code (None when ``unmatched``)."""

    local: str
    national: str | None
    equivalence: str = "equivalent"
    display: str = ""


@dataclass(frozen=True)
class Crosswalk:
    """A versioned local -> national code translation table.

    ``default`` is the national code used for ``unmatched`` entries and, in
    lenient mode, for misses (codes absent from the table); every use of it
    is counted as a DQMI "default use". Without a default (a code system with
    no "not known" code), ``unmatched`` entries map to NULL.
    """

    id: str
    version: str
    target_system: str
    target_version: str
    entries: tuple[CrosswalkEntry, ...]
    default: str | None = None
    source_system: str = ""
    description: str = ""
    _map: dict[str, str | None] = field(
        default_factory=dict, compare=False, repr=False, hash=False
    )
    _locals: Any = field(default=None, init=False, compare=False, repr=False)
    _nationals: Any = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for e in self.entries:
            if e.equivalence not in EQUIVALENCES:
                raise ContractError(
                    f"crosswalk {self.ref}: bad equivalence {e.equivalence!r}"
                )
            if e.equivalence != "unmatched" and not e.national:
                raise ContractError(
                    f"crosswalk {self.ref}: {e.local!r} has no national code"
                )
        mapping: dict[str, str | None] = {}
        for e in self.entries:
            if e.local in mapping:
                raise ContractError(f"crosswalk {self.ref}: {e.local!r} twice")
            mapping[e.local] = (
                self.default if e.equivalence == "unmatched" else e.national
            )
        # Caches derived from ``entries``; excluded from equality and JSON.
        object.__setattr__(self, "_map", mapping)
        # The same table as two aligned Arrow arrays, for lookups in C++.
        object.__setattr__(self, "_locals", pa.array(list(mapping), pa.large_string()))
        object.__setattr__(
            self, "_nationals", pa.array(list(mapping.values()), pa.large_string())
        )

    @property
    def ref(self) -> str:
        """Return ``id@version``."""
        return f"{self.id}@{self.version}"

    def lookup(self, code: str) -> str | None:
        """Return the national code of one local code (None on a miss)."""
        return self._map.get(code)

    def apply(
        self, values: pd.Series, mode: str
    ) -> tuple[pd.Series, pd.Series, int, dict[str, int]]:
        """Return (national codes, strict-miss mask, default fills, defaulted codes).

        Nulls pass through as nulls and are never misses. In lenient mode a
        miss takes the crosswalk's default; the last item counts those local
        codes (value -> rows) so stewards still see them in the miss queue.
        """
        if mode not in MODES:
            raise ContractError(f"crosswalk mode must be strict or lenient: {mode}")
        # Vectorised in Arrow: the position of each value among the local
        # codes (null for a NULL or a code not in the table), then the
        # national code at that position.
        text = arrow_text(values)
        pos = pc.index_in(text, value_set=self._locals)
        mapped = text_series(pc.take(self._nationals, pos), values.index)
        miss = mask_series(pc.and_(pc.is_valid(text), pc.is_null(pos)), values.index)
        filled = 0
        defaulted: dict[str, int] = {}
        if mode == "lenient" and self.default is not None:
            filled = int(miss.sum())
            if filled:
                counts = values[miss.astype(bool)].value_counts()
                defaulted = {str(k): int(v) for k, v in counts.items()}
            mapped = mapped.mask(miss, self.default)
            miss = pd.Series(False, index=values.index)
        return mapped, miss.astype(bool), filled, defaulted

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "id": self.id,
            "version": self.version,
            "source_system": self.source_system,
            "target_system": self.target_system,
            "target_version": self.target_version,
            "default": self.default,
            "description": self.description,
            "entries": [
                {
                    "local": e.local,
                    "national": e.national,
                    "equivalence": e.equivalence,
                    "display": e.display,
                }
                for e in self.entries
            ],
        }


def crosswalk_from_dict(data: dict[str, Any]) -> Crosswalk:
    """Build a Crosswalk from its JSON form; raises ContractError when malformed."""
    try:
        return Crosswalk(
            id=str(data["id"]),
            version=str(data["version"]),
            source_system=str(data.get("source_system", "")),
            target_system=str(data["target_system"]),
            target_version=str(data["target_version"]),
            default=data.get("default"),
            description=str(data.get("description", "")),
            entries=tuple(
                CrosswalkEntry(
                    local=str(e["local"]),
                    national=None if e.get("national") is None else str(e["national"]),
                    equivalence=str(e.get("equivalence", "equivalent")),
                    display=str(e.get("display", "")),
                )
                for e in data["entries"]
            ),
        )
    except (KeyError, TypeError) as exc:
        raise ContractError(f"malformed crosswalk: missing {exc}") from exc
