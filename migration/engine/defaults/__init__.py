"""Defaults for the generated legacy PAS: the default contract and crosswalks.

``default_contract.json`` is committed data. Its crosswalks are built from the
generator's local code table (``migration/legacypas/codes.py``) by
:func:`crosswalks_from_local_codes`, which takes that table as an argument so
the engine never imports the generator; ``tests/engine`` checks the committed
JSON still equals a fresh build (and rewrites it with PAS_REGEN_DEFAULTS=1).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from migration.engine.contract import Contract, contract_from_dict
from migration.engine.ports import TableInfo

DEFAULT_CONTRACT_PATH = Path(__file__).resolve().parent / "default_contract.json"
DEFAULT_PROFILES_PATH = Path(__file__).resolve().parent / "gate_profiles.json"

#: codes.py code-system key -> engine code system id
SYSTEM_IDS: Mapping[str, str] = {
    "person-stated-gender": "person_stated_gender",
    "ethnic-category-england": "ethnic_category_england",
    "admission-method-england": "admission_method",
    "source-of-admission-england": "source_of_admission",
    "discharge-method-england": "discharge_method",
    "discharge-destination-england": "discharge_destination",
    "treatment-function": "treatment_function",
    "attended-or-did-not-attend": "attended_or_did_not_attend",
    "outcome-of-attendance": "outcome_of_attendance",
    "priority-type": "priority_type",
    "nhs-number-status-indicator": "nhs_number_status_indicator",
}

#: "Not known" code used for unmatched local codes and lenient misses, per
#: national system; systems without one map unmatched codes to NULL.
NOT_KNOWN: Mapping[str, str] = {
    "person_stated_gender": "X",
    "ethnic_category_england": "99",
    "admission_method": "99",
    "source_of_admission": "99",
    "discharge_method": "9",
    "discharge_destination": "99",
    "attended_or_did_not_attend": "9",
}


class LocalCodeLike(Protocol):
    """The shape of ``migration.legacypas.codes.LocalCode``."""

    @property
    def table(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def desc(self) -> str: ...
    @property
    def system(self) -> str: ...
    @property
    def national(self) -> str | None: ...
    @property
    def national_desc(self) -> str | None: ...


def crosswalks_from_local_codes(
    codes: Iterable[LocalCodeLike],
    system_versions: Mapping[str, str],
    *,
    version: str = "1",
) -> list[dict[str, Any]]:
    """Return one crosswalk (JSON form) per local code table.

    Local codes are normalised (strip, upper) exactly as the contract's chain
    normalises source values before the lookup.
    """
    by_table: dict[str, list[LocalCodeLike]] = {}
    for c in codes:
        by_table.setdefault(c.table, []).append(c)
    out = []
    for table, entries in by_table.items():
        system = SYSTEM_IDS[entries[0].system]
        rows = []
        for e in entries:
            if e.national is None:
                grade = "unmatched"
            elif (e.national_desc or "").strip().lower() == e.desc.strip().lower():
                grade = "equal"
            else:
                grade = "equivalent"
            rows.append(
                {
                    "local": e.code.strip().upper(),
                    "national": e.national,
                    "equivalence": grade,
                    "display": e.desc,
                }
            )
        out.append(
            {
                "id": f"legacypas.{table}",
                "version": version,
                "source_system": f"CT_LocalCode:{table}",
                "target_system": system,
                "target_version": system_versions[system],
                "default": NOT_KNOWN.get(system),
                "description": f"Legacy PAS local {table} codes to {system}",
                "entries": rows,
            }
        )
    return out


def default_contract_dict() -> dict[str, Any]:
    """Return the default contract's JSON form (a fresh copy)."""
    data: dict[str, Any] = json.loads(DEFAULT_CONTRACT_PATH.read_text("utf-8"))
    return data


@cache
def _default_contract() -> Contract:
    return contract_from_dict(default_contract_dict())


def load_default_contract(
    *, source_tables: Sequence[TableInfo] | None = None, chunk_size: int | None = None
) -> Contract:
    """Return the validated default contract; raises ContractError if invalid."""
    if source_tables is None and chunk_size is None:
        return _default_contract()
    data = default_contract_dict()
    if chunk_size is not None:
        data["chunk_size"] = chunk_size
    return contract_from_dict(data, source_tables=source_tables)
