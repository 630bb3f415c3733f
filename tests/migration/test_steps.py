"""The transform step editor: rows of a form read back into a field mapping's steps."""

from __future__ import annotations

from typing import Any

import pytest

from migration.engine.transforms import REGISTRY
from migration.steps import describe_step, editor_rows, step_kinds, steps_from_form

STORED: list[dict[str, Any]] = [
    {"name": "trim", "args": {}},
    {"name": "split", "args": {"sep": "^", "index": 1}},
    {"name": "date_parse", "args": {"format": "%Y%m%d", "reason": "dob_unparseable"}},
    {"name": "crosswalk", "args": {"id": "gender", "mode": "strict"}},
]


def _form(steps: list[dict[str, Any]]) -> dict[str, str]:
    """What the page posts for ``steps`` when nobody touches it."""
    data = {"steps": str(len(steps))}
    for row in editor_rows(steps):
        data[f"{row['prefix']}-name"] = row["name"]
        data[f"{row['prefix']}-position"] = str(row["position"])
        for f in row["fields"]:
            data[f["box"]] = f["value"]
    return data


def test_every_registered_transform_and_lookup_can_be_chosen_with_its_arguments() -> (
    None
):
    kinds = step_kinds()
    assert set(kinds) == set(REGISTRY) | {"lookup"}
    for name, tdef in REGISTRY.items():
        shown = {a.name: a.required for a in kinds[name].args}
        if name == "crosswalk":
            assert shown == {}  # bound to the mapping's crosswalk, not typed in
        else:
            assert shown == {a: True for a in tdef.required} | {
                a: False for a in tdef.optional
            }
        assert kinds[name].summary, name
    assert [a.name for a in kinds["lookup"].args if a.required] == [
        "table",
        "match",
        "take",
    ]
    assert kinds["date_parse"].args[0].label == "Format"


def test_an_untouched_form_gives_back_exactly_the_stored_steps() -> None:
    assert steps_from_form(_form(STORED), STORED) == STORED
    assert steps_from_form({"steps": "0"}, []) == []


def test_edits_removal_reorder_and_a_new_step() -> None:
    data = _form(STORED)
    data["step-1-arg-index"] = "2"  # a number stays a number
    data["step-2-arg-reason"] = ""  # optional, emptied: dropped
    data["step-0-remove"] = "on"
    data["step-3-position"] = "1"  # moved before the step at position 1
    data["step-new-name"] = "default"
    data["step-new-arg-value"] = " "  # a space is a value, not "empty"
    assert steps_from_form(data, STORED) == [
        {"name": "crosswalk", "args": {"id": "gender", "mode": "strict"}},
        {"name": "split", "args": {"sep": "^", "index": 2}},
        {"name": "date_parse", "args": {"format": "%Y%m%d"}},
        {"name": "default", "args": {"value": " "}},
    ]


def test_a_changed_transform_starts_from_its_own_arguments() -> None:
    data = _form(STORED)
    data["step-2-name"] = "datetime_parse"  # no htmx: the old boxes are posted
    assert steps_from_form(data, STORED)[2] == {
        "name": "datetime_parse",
        "args": {"format": "%Y%m%d", "reason": "dob_unparseable"},
    }
    del data["step-2-arg-format"], data["step-2-arg-reason"]
    data["step-2-name"] = "horolog_to_date"  # htmx swapped in empty boxes
    data["step-2-arg-reason"] = ""
    assert steps_from_form(data, STORED)[2] == {"name": "horolog_to_date", "args": {}}


@pytest.mark.parametrize("count", ["", "x", "-3", "1000"])
def test_a_bad_step_count_reads_as_no_more_than_the_limit(count: str) -> None:
    data = _form(STORED) | {"steps": count}
    got = steps_from_form(data, STORED)
    assert got == (STORED if count == "1000" else [])


def test_a_step_reads_as_a_steward_would_say_it() -> None:
    assert [describe_step(s) for s in STORED] == [
        "trim",
        "split (sep ^, index 1)",
        "date_parse (format %Y%m%d, reason dob_unparseable)",
        "crosswalk",
    ]
