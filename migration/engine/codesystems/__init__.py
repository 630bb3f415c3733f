"""NHS code systems as versioned data (code, display, validity, release)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from migration.engine.errors import ContractError

_DATA = Path(__file__).resolve().parent / "nhs_code_systems.json"


@dataclass(frozen=True)
class Code:
    """One code of a code system, with optional validity dates."""

    code: str
    display: str
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None


@dataclass(frozen=True)
class CodeSystem:
    """One release of a code system; a new release is a new version."""

    id: str
    version: str
    name: str
    release: str
    verified: bool
    codes: tuple[Code, ...]
    valid_from: dt.date | None = None
    valid_to: dt.date | None = None

    @property
    def ref(self) -> str:
        """Return ``id@version``."""
        return f"{self.id}@{self.version}"

    def code_set(self, as_of: dt.date | None = None) -> frozenset[str]:
        """Return the codes valid on ``as_of`` (all codes when None)."""
        if as_of is None:
            return frozenset(c.code for c in self.codes)
        return frozenset(
            c.code
            for c in self.codes
            if (c.valid_from or self.valid_from or dt.date.min) <= as_of
            and as_of <= (c.valid_to or dt.date.max)
        )

    def display(self, code: str) -> str | None:
        """Return the display text of ``code`` or None."""
        for c in self.codes:
            if c.code == code:
                return c.display
        return None


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


@cache
def code_systems() -> dict[tuple[str, str], CodeSystem]:
    """Return every packaged code system keyed by (id, version)."""
    data = json.loads(_DATA.read_text(encoding="utf-8"))
    out: dict[tuple[str, str], CodeSystem] = {}
    for s in data["systems"]:
        codes = tuple(
            Code(
                code=c[0],
                display=c[1],
                valid_from=_date(c[2]) if len(c) > 2 else None,
                valid_to=_date(c[3]) if len(c) > 3 else None,
            )
            for c in s["codes"]
        )
        out[(s["id"], s["version"])] = CodeSystem(
            id=s["id"],
            version=s["version"],
            name=s["name"],
            release=s["release"],
            verified=bool(s["verified"]),
            codes=codes,
            valid_from=_date(s.get("valid_from")),
            valid_to=_date(s.get("valid_to")),
        )
    return out


def code_system(system_id: str, version: str) -> CodeSystem:
    """Return one code system release; raises ContractError when unknown."""
    try:
        return code_systems()[(system_id, version)]
    except KeyError:
        raise ContractError(f"unknown code system {system_id}@{version}") from None
