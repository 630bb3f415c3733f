"""The miss queue offers the code system's national codes as the steward types."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from migration.models import Concept

pytestmark = pytest.mark.django_db


def test_each_miss_offers_its_code_systems_codes(
    world: dict[str, Any], steward: Any
) -> None:
    project, xw = world["project"], world["crosswalks"][0]
    client = Client()
    client.force_login(steward)
    html = client.get(
        reverse("migration:miss-list", args=[project.pk])
    ).content.decode()
    system = xw.code_system
    for miss in world["misses"]:
        assert f'id="target-{miss.pk}"' in html
    assert html.count(f'list="codes-{system.pk}"') == len(world["misses"])
    assert html.count(f'<datalist id="codes-{system.pk}">') == 1  # once per system
    live = Concept.objects.filter(code_system=system, retired=False)
    assert live.exists()
    for concept in live:
        assert f'<option value="{concept.code}">' in html
    assert f"{system.name}: type a code or its name to choose" in html
