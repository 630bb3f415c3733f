"""Synthea's CSV extract (``shared/data/synthea``) and the mapping a DM engineer
writes for it: shared by the engine's flat-extract test (no Django) and the
services' end-to-end test. Pure data, no framework import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "synthea"
ISO_Z = "%Y-%m-%dT%H:%M:%SZ"
INPATIENT = ["inpatient"]
OUTPATIENT = ["ambulatory", "outpatient"]


def _f(target: str, source: str | None, *steps: Any) -> dict[str, Any]:
    chain = [s if isinstance(s, dict) else {"name": s, "args": {}} for s in steps]
    return {"target": target, "source": [source] if source else [], "transforms": chain}


def _const(value: str) -> dict[str, Any]:
    return {"name": "constant", "args": {"value": value}}


def _parse(kind: str, fmt: str) -> dict[str, Any]:
    return {"name": kind, "args": {"format": fmt}}


def _table(target: str, source: str, *fields: Any, **extra: Any) -> dict[str, Any]:
    return {
        "target": target,
        "source": source,
        "key": "Id",
        "fields": list(fields),
        **extra,
    }


def _encounters(
    target: str, rule: str, classes: list[str], *fields: Any
) -> dict[str, Any]:
    """``target`` fed by the encounters of ``classes`` only (a rule on a column)."""
    kind = "inpatient" if target == "inpatient_spell" else "outpatient"
    exclude = {"id": rule, "column": "ENCOUNTERCLASS", "op": "not_in",
               "values": classes, "reason": f"not_an_{kind}_encounter"}  # fmt: skip
    return _table(target, "encounters", *fields, exclude=[exclude])


def synthea_contract(tables: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Return the mapping a DM engineer writes for the extract (engine JSON).

    ``tables`` keeps only those target tables (and the rule packs they need).
    """
    key = ("trim", "upper")
    data: dict[str, Any] = {
        "format": 1,
        "name": "synthea-to-epr",
        "version": "1",
        "description": "Synthea CSV extract -> NHS PAS target v1 (PMI, ADT, OPD)",
        "target": {"model": "nhs_pas_target", "version": "1"},
        "chunk_size": 100,
        "rules": {
            "packs": ["pmi", "adt", "opd"],
            "params": {"dob_min": "1880-01-01"},
            "as_of": {"date": "2026-11-01"},
        },
        "crosswalks": [
            {
                "id": "synthea.GENDER",
                "version": "1",
                "source_system": "synthea:GENDER",
                "target_system": "person_stated_gender",
                "target_version": "2024.1",
                "entries": [
                    {"local": "M", "national": "1", "equivalence": "equal"},
                    {"local": "F", "national": "2", "equivalence": "equal"},
                ],
            }
        ],
        "tables": [
            _table(
                "care_professional",
                "providers",
                _f("care_professional_code", "Id", *key),
                _f("name", "NAME", "trim", "null_if_empty"),
            ),
            _table(
                "clinic",
                "organizations",
                _f("clinic_code", "Id", *key),
                _f("clinic_name", "NAME", "trim", "null_if_empty"),
            ),
            _table(
                "patient",
                "patients",
                _f("pas_number", "Id", *key),
                # No NHS numbers in the extract: every patient needs a trace.
                _f("nhs_number_status", None, _const("03")),
                _f("family_name", "LAST", "trim", "null_if_empty"),
                _f("given_name", "FIRST", "trim", "null_if_empty"),
                _f("date_of_birth", "BIRTHDATE", _parse("date_parse", "%Y-%m-%d")),
                _f(
                    "date_of_death",
                    "DEATHDATE",
                    "null_if_empty",
                    _parse("date_parse", "%Y-%m-%d"),
                ),
                _f(
                    "gender",
                    "GENDER",
                    *key,
                    {
                        "name": "crosswalk",
                        "args": {"id": "synthea.GENDER", "mode": "strict"},
                    },
                ),
                _f("address_line_1", "ADDRESS", "trim", "null_if_empty"),
                _f("city", "CITY", "trim", "null_if_empty"),
                # ZIP is a US zip code, not a postcode: left unmapped.
            ),
            _encounters(
                "inpatient_spell",
                "SYN-IP",
                INPATIENT,
                _f("spell_number", "Id", *key),
                _f("patient_pas_number", "PATIENT", *key),
                _f("admission_date", "START", _parse("date_parse", ISO_Z)),
                # Not recorded by the extract: "99 Not known", as agreed.
                _f("admission_method", None, _const("99")),
                _f("admission_source", None, _const("99")),
                _f("discharge_date", "STOP", _parse("date_parse", ISO_Z)),
                _f("consultant_code", "PROVIDER", *key),
            ),
            _encounters(
                "outpatient_appointment",
                "SYN-OP",
                OUTPATIENT,
                _f("appointment_id", "Id", "trim", "stable_number"),
                _f("patient_pas_number", "PATIENT", *key),
                _f("clinic_code", "ORGANIZATION", *key),
                _f("appointment_at", "START", _parse("datetime_parse", ISO_Z)),
                # An encounter on record took place.
                _f("attendance", None, _const("5")),
            ),
        ],
    }
    if tables is not None:
        data["tables"] = [t for t in data["tables"] if t["target"] in tables]
        needs = {"patient": "pmi", "inpatient_spell": "adt"}
        needs["outpatient_appointment"] = "opd"
        data["rules"]["packs"] = [needs[t] for t in needs if t in tables]
    return data
