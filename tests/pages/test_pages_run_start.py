"""The run form: NHS.UK selects, the newest contract and a lone source/target chosen."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from migration.models import Contract

pytestmark = pytest.mark.django_db


def _selected(html: str, name: str) -> list[str]:
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert select is not None, name
    return re.findall(r'<option value="(\d+)"[^>]*selected', select.group(1))


def test_the_run_form_chooses_what_a_person_would(
    world: dict[str, Any], dm_engineer: Any
) -> None:
    project = world["project"]
    newer = Contract.objects.create(
        project=project,
        version=world["contract"].version + 1,
        body=world["contract"].body,
        sha256=world["contract"].sha256,
    )
    client = Client()
    client.force_login(dm_engineer)
    html = client.get(
        reverse("migration:run-create", args=[project.pk])
    ).content.decode()
    assert _selected(html, "contract") == [str(newer.pk)]
    assert _selected(html, "source") == [str(world["source"].pk)]
    assert _selected(html, "target") == [str(world["target"].pk)]
    assert len(re.findall(r'<select name="\w+" class="nhsuk-select"', html)) == 4
    assert 'aria-describedby="id_contract-hint"' in html
    assert 'id="id_contract-hint"' in html
