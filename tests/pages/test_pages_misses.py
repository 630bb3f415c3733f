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


def test_the_run_page_counts_what_the_crosswalks_could_not_translate(
    world: dict[str, Any], steward: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from django.db.models import Count

    from migration.models import Crosswalk, MissQueueEntry, RejectRecord
    from migration.receivers import feed_miss_queue
    from migration.selectors_misses import run_crosswalk_misses

    project, run = world["project"], world["run"]
    feed_miss_queue(sender=None, run=run)  # as run_finished does, on commit
    rejected = dict(
        RejectRecord.objects.filter(run=run, reason_code="crosswalk_miss")
        .values_list("crosswalk_ref")
        .annotate(n=Count("pk"))
        .values_list("crosswalk_ref", "n")
    )
    defaulted: dict[str, int] = {}
    for table in run.report["tables"]:
        for ref, codes in (table.get("defaulted_codes") or {}).items():
            defaulted[ref] = defaulted.get(ref, 0) + sum(codes.values())
    misses = run_crosswalk_misses(run)
    assert misses, "the generated PAS has local codes no crosswalk row covers"
    assert {m.ref: m.rejected for m in misses if m.rejected} == rejected
    assert {m.ref: m.defaulted for m in misses if m.defaulted} == defaulted
    for m in misses:
        assert m.crosswalk is not None  # every packaged crosswalk was seeded
        assert (
            m.open_entries
            == MissQueueEntry.objects.filter(
                run=run, crosswalk=m.crosswalk, state="open"
            ).count()
        )
    client = Client()
    client.force_login(steward)
    url = reverse("migration:run-detail", args=[project.pk, run.pk])
    html = client.get(url).content.decode()
    assert "Codes the crosswalks could not translate" in html
    top = misses[0]
    assert (
        f'<a href="/projects/{project.pk}/crosswalks/{top.crosswalk.pk}/">'
        f"{top.crosswalk.name}</a>" in html
    )
    assert f">{top.open_entries} open</a>" in html
    assert "not queued" not in html

    # A crosswalk the project does not manage: counted, and said so.
    Crosswalk.objects.filter(pk=top.crosswalk.pk).update(slug="renamed-here")
    html = client.get(url).content.decode()
    assert f'<span class="pas-mono">{top.ref}</span>' in html
    assert "not queued</strong>: this project does not manage this crosswalk" in html
    with caplog.at_level("WARNING", logger="pasportal.runs"):
        feed_miss_queue(sender=None, run=run)
    [warning] = [r for r in caplog.records if top.ref in r.getMessage()]
    assert f"{top.distinct} untranslated code(s)" in warning.getMessage()


def test_a_steward_leaves_a_value_untranslated_and_reopens_it(
    world: dict[str, Any], steward: Any
) -> None:
    from migration.models import MissQueueEntry, Run
    from migration.services.crosswalks import missqueue_record

    project, xw, run = world["project"], world["crosswalks"][0], world["run"]
    later = Run.objects.create(
        project=project, contract=run.contract, source=run.source, target=run.target
    )
    missqueue_record(run=later, crosswalk=xw, counts={"ZZQ": 9})
    client = Client()
    client.force_login(steward)
    url = reverse("migration:miss-list", args=[project.pk])
    html = client.get(url).content.decode()
    zzq = MissQueueEntry.objects.get(run=later, local_value="ZZQ")
    # One card for the value, the latest run's figures, the earlier run named.
    assert html.count('<span class="pas-mono">ZZQ</span>') == 1
    assert f'id="miss-{zzq.pk}"' in html
    assert f"Seen 9 times in run {later.pk}. Also met by run {run.pk}." in html
    assert "Leave ZZQ untranslated" in html

    ignore = reverse("migration:miss-ignore", args=[project.pk, zzq.pk])
    refused = client.post(ignore, {"note": ""}, follow=True).content.decode()
    assert "say why the value stays untranslated" in refused
    done = client.post(ignore, {"note": "Not a code: typing error"}, follow=True)
    html = done.content.decode()
    assert "ZZQ in " in html and "left untranslated" in html
    assert f'id="miss-{zzq.pk}"' not in html  # out of the queue
    assert f'id="ignored-{zzq.pk}"' in html and "Not a code: typing error" in html
    assert set(
        MissQueueEntry.objects.filter(local_value="ZZQ").values_list("state", flat=True)
    ) == {"ignored"}

    reopen = reverse("migration:miss-reopen", args=[project.pk, zzq.pk])
    html = client.post(reopen, follow=True).content.decode()
    assert "is back in the queue" in html
    assert f'id="miss-{zzq.pk}"' in html and "Left untranslated" not in html


def test_the_dashboard_counts_each_kind_of_open_steward_work(
    world: dict[str, Any], steward: Any
) -> None:
    from migration.models import CrosswalkRow, FieldMapping, MissQueueEntry, Run
    from migration.services.crosswalks import missqueue_record

    project, xw, run = world["project"], world["crosswalks"][0], world["run"]
    # The same two values met again by a later run: still two values to settle.
    later = Run.objects.create(
        project=project, contract=run.contract, source=run.source, target=run.target
    )
    missqueue_record(run=later, crosswalk=xw, counts={"ZZQ": 1, "XQ1": 1})
    assert MissQueueEntry.objects.filter(state="open").count() == 4
    rows = CrosswalkRow.objects.filter(crosswalk__project=project)
    proposed = rows.filter(status="proposed").count()
    assert proposed > 0
    mappings = FieldMapping.objects.filter(
        table_mapping__mapping_set__project=project, status="proposed"
    ).count()
    client = Client()
    client.force_login(steward)
    html = client.get("/").content.decode()
    assert f"{mappings} proposed mapping{'s' if mappings != 1 else ''}</a>" in html
    assert f"{proposed} proposed crosswalk rows</a> awaiting review" in html
    assert "2 open miss-queue values</a>" in html
    # The world's one exclusion rule awaits review too.
    assert "1 proposed exclusion rule</a> (rows a table leaves out)" in html
    crosswalks = client.get(
        reverse("migration:crosswalk-list", args=[project.pk])
    ).content.decode()
    assert "Miss queue: 2 open values" in crosswalks
