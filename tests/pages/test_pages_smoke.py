"""Every page renders for a member with real data; patient-data pages are no-store."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse


def test_run_pages_render(
    client: Client, world: dict[str, Any], dm_engineer: Any
) -> None:
    client.force_login(dm_engineer)
    p, run = world["project"].pk, world["run"]
    for name, args in [
        ("dashboard", []),
        ("migration:run-list", [p]),
        ("migration:run-create", [p]),
        ("migration:run-detail", [p, run.pk]),
        ("migration:reject-list", [p, run.pk]),
        ("governance:gate-detail", [p, run.pk]),
    ]:
        response = client.get(reverse(name, args=args))
        assert response.status_code == 200, (name, response.status_code)


def test_every_page_renders_for_a_steward(
    client: Client, world: dict[str, Any], steward: Any
) -> None:
    client.force_login(steward)
    p, run = world["project"].pk, world["run"]
    ms = world["mapping_set"]
    tm = world["theirs"][0].table_mapping
    xw = world["crosswalks"][0]
    for name, args in [
        ("connectors:connector-list", [p]),
        ("connectors:connector-detail", [p, world["source"].pk]),
        ("migration:snapshot-list", [p, world["source"].pk]),
        ("migration:snapshot-detail", [p, world["snapshot"].pk]),
        ("migration:mappingset-list", [p]),
        ("migration:mappingset-detail", [p, ms.pk]),
        ("migration:tablemapping-detail", [p, ms.pk, tm.pk]),
        ("migration:fieldmapping-preview", [p, world["theirs"][0].pk]),
        ("migration:crosswalk-list", [p]),
        ("migration:crosswalk-detail", [p, xw.pk]),
        ("migration:crosswalk-export", [p, xw.pk]),
        ("migration:miss-list", [p]),
        ("migration:reject-list", [p, run.pk]),
        ("migration:reject-download", [p, run.pk]),
        ("governance:gate-detail", [p, run.pk]),
    ]:
        response = client.get(reverse(name, args=args))
        assert response.status_code == 200, (name, response.status_code)
    html = client.get(
        reverse("migration:fieldmapping-preview", args=[p, world["theirs"][0].pk])
    ).content.decode()
    assert "Preview not available" not in html, html[html.find("<main") :][:3000]


def test_test_connection_records_health_and_answers_htmx(
    client: Client, world: dict[str, Any], dm_engineer: Any
) -> None:
    client.force_login(dm_engineer)
    p, c = world["project"].pk, world["source"]
    url = reverse("connectors:connector-check", args=[p, c.pk])
    response = client.post(
        url, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="connector-health"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="connector-health">')
    assert "<html" not in html
    assert c.health.count() == 1
    response = client.post(url)
    assert response.status_code == 302
    assert c.health.count() == 2


def test_landed_copies_are_shown_and_purged_by_whoever_manages_connectors(
    client: Client,
    world: dict[str, Any],
    dm_engineer: Any,
    steward: Any,
    tmp_path: Any,
    settings: Any,
) -> None:
    from connectors import services
    from governance.models import AuditEvent

    settings.PAS_DATA_DIR = tmp_path / "data"
    extract = tmp_path / "extract"
    extract.mkdir()
    (extract / "people.csv").write_text("id,name\n2,b\n1,a\n")
    project = world["project"]
    c = services.connector_create(
        actor="tests", project=project, name="flat", kind="csv", role="source",
        config={"path": str(extract)},
    )  # fmt: skip
    list(services.connector_open(c).read_chunks("people", ["name"], "id"))
    detail = reverse("connectors:connector-detail", args=[project.pk, c.pk])
    purge = reverse("connectors:connector-landing-purge", args=[project.pk, c.pk])

    client.force_login(steward)  # sees the copies, may not delete them
    html = client.get(detail).content.decode()
    assert "Landed copies" in html and "1 copy" in html
    assert purge not in html
    assert client.post(purge).status_code == 403
    assert len(services.connector_landed_copies(c)) == 1

    client.force_login(dm_engineer)
    assert purge in client.get(detail).content.decode()
    response = client.post(purge, follow=True)
    assert "Deleted 1 landed copy" in response.content.decode()
    assert services.connector_landed_copies(c) == []
    (event,) = AuditEvent.objects.filter(action="connectors.connector.landing_purged")
    assert event.data["copies"] == 1 and event.data["bytes"] > 0
    assert "0 copies" in client.get(detail).content.decode()
