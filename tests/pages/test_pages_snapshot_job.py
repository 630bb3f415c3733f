"""Extract schema runs as a q2 task; its page shows progress, then the snapshot."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from migration.models import SchemaSnapshot
from migration.services.snapshots import snapshot_job

pytestmark = pytest.mark.django_db


def test_extract_schema_is_a_task_with_a_progress_page(
    world: dict[str, Any], dm_engineer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    project, source = world["project"], world["source"]
    client = Client()
    client.force_login(dm_engineer)
    before = SchemaSnapshot.objects.filter(connector=source).count()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(
            reverse("migration:snapshot-create", args=[project.pk, source.pk])
        )
    # The task was queued on commit (and runs inline: q2 is synchronous in tests).
    assert any("snapshot_extract_request" in cb.__qualname__ for cb in callbacks)
    assert response.status_code == 302
    job_id = response["Location"].rstrip("/").rsplit("/", 1)[1]
    job = snapshot_job(job_id)
    assert job is not None and job["state"] == "done"
    assert job["done"] == job["total"] >= 7
    assert SchemaSnapshot.objects.filter(connector=source).count() == before + 1
    page = client.get(response["Location"]).content.decode()
    assert "The schema was extracted" in page
    assert (
        reverse("migration:snapshot-detail", args=[project.pk, job["snapshot"]]) in page
    )
    # htmx polling answers the fragment and stops once finished.
    fragment = client.get(response["Location"], HTTP_HX_REQUEST="true")
    assert fragment["HX-Refresh"] == "true"
    assert "<html" not in fragment.content.decode()


def test_a_job_of_another_connector_is_not_found(
    world: dict[str, Any], dm_engineer: Any
) -> None:
    from migration.services.snapshots import snapshot_job_update

    project, target = world["project"], world["target"]
    snapshot_job_update(
        "f" * 32, state="done", connector=world["source"].pk, project=project.pk
    )
    client = Client()
    client.force_login(dm_engineer)
    url = reverse("migration:snapshot-job", args=[project.pk, target.pk, "f" * 32])
    assert client.get(url).status_code == 404
