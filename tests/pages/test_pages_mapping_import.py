"""Stewards start review work from pages: the packaged crosswalks, and a mapping
set of a snapshot started from the default contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from connectors.models import Connector
from governance.models import AuditEvent
from migration.models import Crosswalk, FieldMapping, MappingSet, ReviewStatus
from migration.services.snapshots import snapshot_extract

pytestmark = pytest.mark.django_db


@pytest.fixture
def snapshot(project: Any, legacy_db: Path) -> Any:
    source = Connector.objects.create(
        project=project,
        name="legacy",
        kind="sqlite",
        role="source",
        config={"path": str(legacy_db)},
    )
    return snapshot_extract(actor="tests", connector=source)


def test_a_steward_seeds_crosswalks_then_starts_a_mapping_set(
    project: Any, snapshot: Any, steward: Any
) -> None:
    client = Client()
    client.force_login(steward)
    detail = reverse("migration:snapshot-detail", args=[project.pk, snapshot.pk])
    assert "Start a mapping set from the default contract" in (
        client.get(detail).content.decode()
    )
    start = reverse("migration:mappingset-import", args=[project.pk, snapshot.pk])
    # Without the project's crosswalks the import names what is missing.
    page = client.post(start, follow=True)
    assert "is not managed in this project; seed or create it first" in (
        page.content.decode()
    )
    assert not MappingSet.objects.filter(project=project).exists()

    seeded = client.post(
        reverse("migration:crosswalks-seed", args=[project.pk]), follow=True
    )
    assert "crosswalks of the generated legacy PAS are here" in seeded.content.decode()
    assert Crosswalk.objects.filter(project=project).count() == 11
    assert AuditEvent.objects.filter(action="migration.crosswalk.seeded").count() == 11

    response = client.post(start)
    ms = MappingSet.objects.get(project=project)
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "migration:mappingset-detail", args=[project.pk, ms.pk]
    )
    fields = FieldMapping.objects.filter(table_mapping__mapping_set=ms)
    assert fields.count() == 47
    assert set(fields.values_list("status", flat=True)) == {ReviewStatus.PROPOSED}
    assert set(fields.values_list("author", flat=True)) == {steward.pk}


def test_a_viewer_cannot_seed_or_import(
    project: Any, snapshot: Any, viewer: Any
) -> None:
    client = Client()
    client.force_login(viewer)
    detail = client.get(
        reverse("migration:snapshot-detail", args=[project.pk, snapshot.pk])
    ).content.decode()
    assert "Start a mapping set from the default contract" not in detail
    seed = client.post(reverse("migration:crosswalks-seed", args=[project.pk]))
    start = client.post(
        reverse("migration:mappingset-import", args=[project.pk, snapshot.pk])
    )
    assert (seed.status_code, start.status_code) == (403, 403)
    assert not Crosswalk.objects.filter(project=project).exists()
    assert not MappingSet.objects.filter(project=project).exists()


def test_a_rationale_written_in_the_page_lets_another_steward_approve(
    project: Any, snapshot: Any, steward: Any, steward2: Any
) -> None:
    from migration.services.crosswalks import crosswalks_seed_defaults
    from migration.services.mappings import mapping_set_import_contract

    crosswalks_seed_defaults(actor="tests", project=project)
    ms = mapping_set_import_contract(
        actor="tests", project=project, source_snapshot=snapshot
    )
    fm = FieldMapping.objects.get(
        table_mapping__mapping_set=ms,
        table_mapping__target_table="inpatient_spell",
        target_field="admission_date",
    )
    review = reverse("migration:fieldmapping-review", args=[project.pk, fm.pk])
    second = Client()
    second.force_login(steward2)
    refused = second.post(review, {"verb": "approve"}, follow=True)
    assert "needs a written rationale" in refused.content.decode()
    first = Client()
    first.force_login(steward)
    page = first.get(
        reverse(
            "migration:tablemapping-detail",
            args=[project.pk, ms.pk, fm.table_mapping_id],
        )
    ).content.decode()
    assert "Rationale for admission_date (needed before it can be approved)" in page
    url = reverse("migration:fieldmapping-rationale", args=[project.pk, fm.pk])
    empty = first.post(url, {"rationale": "  "}, follow=True)
    assert "write the rationale first" in empty.content.decode()
    saved = first.post(
        url, {"rationale": "The PAS keeps admissions as dd/mm/yyyy."}, follow=True
    )
    assert "rationale saved" in saved.content.decode()
    fm.refresh_from_db()
    assert fm.rationale == "The PAS keeps admissions as dd/mm/yyyy."
    assert fm.last_changed_by == steward and fm.status == ReviewStatus.PROPOSED
    assert AuditEvent.objects.filter(
        action="migration.field_mapping.updated", target_id=str(fm.pk)
    ).exists()
    # the writer may not approve what they changed; the second steward may
    own = first.post(review, {"verb": "approve"}, follow=True)
    assert "four-eyes" in own.content.decode()
    assert second.post(review, {"verb": "approve"}).status_code == 302
    fm.refresh_from_db()
    assert fm.status == ReviewStatus.APPROVED and fm.reviewer == steward2
