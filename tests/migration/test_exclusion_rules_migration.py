"""Migration 0005 moves exclusion rules out of ``TableMapping.filter`` into
reviewable rows (and back), so a mapping set imported before rules were
reviewed keeps them -- now awaiting a steward's approval."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps

from migration.models import ExclusionRule, ReviewStatus

pytestmark = pytest.mark.django_db

step = importlib.import_module("migration.migrations.0005_exclusion_rules")


def test_filter_rules_become_proposed_rows_and_back(patient_table_mapping: Any) -> None:
    tm = patient_table_mapping
    rules = [
        {"id": "EX-F", "field": "pas_number", "op": "in", "values": ["X"],
         "reason": "test_patient"},
        {"id": "EX-C", "column": "PAPMI_Sex_DR", "op": "eq", "values": ["Q"],
         "reason": "out_of_scope"},
    ]  # fmt: skip
    tm.filter = {"exclude": rules, "kept": 1}
    tm.save()
    step.rules_from_filters(apps, None)
    tm.refresh_from_db()
    assert tm.filter == {"kept": 1}
    moved = list(ExclusionRule.objects.filter(table_mapping=tm).order_by("rule_id"))
    assert [r.engine_dict() for r in moved] == [rules[1], rules[0]]
    assert {r.status for r in moved} == {ReviewStatus.PROPOSED}
    assert {r.author_id for r in moved} == {None}  # any steward may approve
    step.filters_from_rules(apps, None)
    tm.refresh_from_db()
    assert tm.filter == {"kept": 1, "exclude": [rules[1], rules[0]]}
