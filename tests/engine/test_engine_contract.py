"""Contract: canonical JSON + hash, validation errors raised before any row moves."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from engine_kit import mini_pas, patient, sqlite_source

from migration.engine.contract import contract_from_json
from migration.engine.defaults import (
    DEFAULT_CONTRACT_PATH,
    crosswalks_from_local_codes,
    default_contract_dict,
    load_default_contract,
)
from migration.engine.errors import ContractError
from migration.engine.runner import run_contract
from migration.engine.targets import (
    TargetModel,
    dependency_order,
    load_target,
    target_from_dict,
)


def test_target_model_order_and_provenance() -> None:
    model = load_target("nhs_pas_target", "1")
    order = dependency_order(model)
    assert (
        order.index("patient")
        < order.index("inpatient_spell")
        < order.index("ward_stay")
    )
    assert order.index("clinic") < order.index("outpatient_appointment")
    assert order.index("patient") < order.index("outpatient_appointment")
    assert order[:3] == ["ward", "clinic", "care_professional"]
    nhs = model.table("patient").field("nhs_number")
    assert (nhs.semantic, nhs.sql_type) == ("nhs_number", "TEXT")
    assert (
        model.table("ward_stay").field("spell_number").references == "inpatient_spell"
    )


def test_target_model_cycle_is_a_contract_error() -> None:
    model = json.loads(
        (
            Path(__file__).parents[2]
            / "migration/engine/targets/nhs_pas_target_v1.json"
        ).read_text()
    )
    pat = next(t for t in model["tables"] if t["name"] == "patient")
    pat["fields"].append(
        {"name": "last_spell", "sql_type": "TEXT", "semantic": "fk:inpatient_spell",
         "required": False, "business_critical": False}
    )  # fmt: skip
    with pytest.raises(ContractError, match="cycle"):
        target_from_dict(model)


def test_default_contract_round_trips_with_a_stable_hash() -> None:
    c = load_default_contract()
    again = contract_from_json(c.canonical_json())
    assert again.sha256 == c.sha256
    assert again == c
    assert len(c.sha256) == 64
    changed = default_contract_dict()
    changed["chunk_size"] = 1234
    assert contract_from_json(changed).sha256 != c.sha256
    assert isinstance(c.target, TargetModel)


def test_default_contract_maps_every_target_field() -> None:
    c = load_default_contract()
    for tm in c.tables:
        tt = c.target.table(tm.target)
        assert {f.target for f in tm.fields} == set(tt.field_names), tm.target
    assert set(c.table_order()) == {t.name for t in c.target.tables}


def test_default_crosswalks_are_built_from_the_generator_code_table() -> None:
    from migration.legacypas.codes import LOCAL_CODES

    c = load_default_contract()
    built = crosswalks_from_local_codes(LOCAL_CODES, dict(c.target.code_systems))
    if os.environ.get("PAS_REGEN_DEFAULTS"):
        data = default_contract_dict()
        data["crosswalks"] = built
        DEFAULT_CONTRACT_PATH.write_text(
            json.dumps(data, indent=1, ensure_ascii=False) + "\n"
        )
    assert [x.to_dict() for x in c.crosswalks] == built
    assert {x.id for x in c.crosswalks} == {f"legacypas.{c.table}" for c in LOCAL_CODES}


def _broken(mutate: Any) -> dict[str, Any]:
    data = copy.deepcopy(default_contract_dict())
    mutate(data)
    return data


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in data["tables"] if t["target"] == name)


def _field(data: dict[str, Any], table: str, name: str) -> dict[str, Any]:
    return next(f for f in _table(data, table)["fields"] if f["target"] == name)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: _field(d, "patient", "title")["transforms"].append({"name": "eval"}),
         "unknown transform 'eval'"),
        (lambda d: _table(d, "patient")["fields"].append(
            {"target": "shoe_size", "source": ["PAPMI_Title"]}), "unknown target field patient.shoe_size"),
        (lambda d: d.update(chunk_size=0), "bad chunk size"),
        (lambda d: d.update(chunk_size="50"), "bad chunk size"),
        (lambda d: d.update(chunk_size=10**9), "bad chunk size"),
        (lambda d: _field(d, "patient", "gender")["transforms"][-1]["args"].update(id="nope"),
         "unknown crosswalk 'nope'"),
        (lambda d: _field(d, "patient", "gender")["transforms"][-1]["args"].update(mode="loose"),
         "crosswalk mode"),
        (lambda d: _field(d, "patient", "date_of_death")["transforms"].append(
            {"name": "date_parse", "args": {"fmt": "%Y"}}), "missing args"),
        (lambda d: _table(d, "patient")["fields"].remove(_field(d, "patient", "pas_number")),
         "required target field patient.pas_number is not mapped"),
        (lambda d: _field(d, "patient", "title")["source"].append("PAPMI_Surname"),
         "combining first step"),
        (lambda d: _field(d, "patient", "pas_number").update(
            lookup={"table": "inpatient_spell", "match": "_source_key", "take": "spell_number"}),
         "cycle in table order"),
        (lambda d: d["rules"].update(packs=["pmi", "astrology"]), "unknown rule pack"),
        (lambda d: d["crosswalks"][0]["entries"][0].update(national="Q"), "codes not in"),
        (lambda d: d.pop("tables"), "missing 'tables'"),
        (lambda d: _table(d, "patient").update(exclude=[
            {"id": "EX1", "field": "gender", "column": "PAPMI_Sex_DR", "op": "is_null"}]),
         "exclude rule EX1: give either 'field' or 'column'"),
        (lambda d: _table(d, "patient").update(exclude=[
            {"id": "EX2", "field": "shoe_size", "op": "is_null"}]),
         "exclude rule EX2: unknown field shoe_size"),
        (lambda d: _table(d, "patient").update(exclude=[
            {"id": "EX3", "column": "PAPMI_Sex_DR", "op": "like", "values": ["U"]}]),
         "exclude rule EX3: unknown op like"),
        (lambda d: _table(d, "patient").update(exclude=[
            {"id": "EX4", "column": "PAPMI_Sex_DR", "op": "eq", "values": []}]),
         "exclude rule EX4: eq takes exactly one value"),
        (lambda d: _table(d, "patient").update(exclude=[
            {"id": "EX5", "column": "PAPMI_Sex_DR", "op": "in"}]),
         "exclude rule EX5: in needs values"),
        (lambda d: _table(d, "patient").update(exclude=[
            {"id": "EX6", "column": "PAPMI_Sex_DR", "op": "in", "values": "U"}]),
         "exclude rule EX6: 'values' must be a list"),
    ],
)  # fmt: skip
def test_contract_validation_errors(mutate: Any, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        contract_from_json(json.dumps(_broken(mutate)))


def test_contract_must_be_json() -> None:
    with pytest.raises(ContractError, match="not valid JSON"):
        contract_from_json("{nope")


def test_missing_source_column_is_found_against_discover(tmp_path: Path) -> None:
    path = mini_pas(tmp_path / "src.sqlite3", patients=[patient(1)])
    src = sqlite_source(path)
    tables = src.discover()
    assert contract_from_json(default_contract_dict(), source_tables=tables)
    data = _broken(lambda d: _field(d, "patient", "city").update(source=["PAPMI_Town"]))
    with pytest.raises(
        ContractError, match=r"missing source column PA_PatMas\.PAPMI_Town"
    ):
        contract_from_json(data, source_tables=tables)
    data = _broken(lambda d: _table(d, "ward").update(source="CT_Wards"))
    with pytest.raises(ContractError, match="missing source table 'CT_Wards'"):
        contract_from_json(data, source_tables=tables)
    # An exclusion on a source column names it before any row moves.
    data = _broken(
        lambda d: _table(d, "patient").update(
            exclude=[{"id": "EX", "column": "PAPMI_Class", "op": "is_null"}]
        )
    )
    with pytest.raises(
        ContractError,
        match=r"exclude rule EX: missing source column PA_PatMas\.PAPMI_Class",
    ):
        contract_from_json(data, source_tables=tables)


def test_exclusion_rules_keep_their_form_and_field_rules_their_hash() -> None:
    """A rule on a source column is written with ``column``; one on a target
    field with ``field`` and nothing else, as before (existing contracts keep
    their canonical form, hence their hash)."""
    rules = [
        {"id": "EX-F", "field": "pas_number", "op": "in", "values": ["X"],
         "reason": "test_patient"},
        {"id": "EX-C", "column": "PAPMI_Sex_DR", "op": "not_in", "values": ["M", "F"],
         "reason": "not_in_scope"},
    ]  # fmt: skip
    data = _broken(lambda d: _table(d, "patient").update(exclude=rules))
    contract = contract_from_json(data)
    assert _table(contract.to_dict(), "patient")["exclude"] == rules
    # A field rule is written exactly as before rules could name a column.
    only_field = _broken(lambda d: _table(d, "patient").update(exclude=rules[:1]))
    assert _table(contract_from_json(only_field).to_dict(), "patient")["exclude"] == [
        rules[0]
    ]


def test_run_refuses_a_contract_that_does_not_fit_the_source(
    tmp_path: Path, make_sink: Any
) -> None:
    import sqlite3

    path = mini_pas(tmp_path / "src.sqlite3", patients=[patient(1)])
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE PA_PatMas DROP COLUMN PAPMI_City")
    conn.commit()
    conn.close()
    sink = make_sink()
    with pytest.raises(ContractError, match="PAPMI_City"):
        run_contract(load_default_contract(), sqlite_source(path), sink, "r1")
    # nothing moved: no staging table, no checkpoint
    assert sink.checkpoint("r1", "ward") is None
    assert sink.count("ward", run_id="r1") == 0
