"""A steward previews an edit of a field mapping on sample rows before saving it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from governance.models import AuditEvent
from tests.pages.conftest import imported_field

pytestmark = pytest.mark.django_db


def _draft(fm: Any, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The edit form's fields for ``steps`` (as rows of the step editor)."""
    data: dict[str, Any] = {
        "draft": "1",
        "source_columns": list(fm.source_columns),
        "steps": str(len(steps)),
    }
    for i, step in enumerate(steps):
        data[f"step-{i}-name"] = step["name"]
        data[f"step-{i}-position"] = str(i + 1)
        for arg, value in step.get("args", {}).items():
            data[f"step-{i}-arg-{arg}"] = value
    return data


def test_an_unsaved_change_is_previewed_and_nothing_is_stored(
    world: dict[str, Any], steward: Any
) -> None:
    fm = world["theirs"][0]
    before = (list(fm.transforms), fm.status, fm.last_changed_by_id)
    events = AuditEvent.objects.count()
    client = Client()
    client.force_login(steward)
    url = reverse("migration:fieldmapping-preview", args=[world["project"].pk, fm.pk])
    htmx = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": f"draft-preview-{fm.pk}"}

    # As stored.
    stored = client.get(url, **htmx).content.decode()
    assert "would be rejected" in stored and "Your unsaved change" not in stored
    # The change: the value read as a year, which a code or a name is not.
    broken = client.get(
        url,
        _draft(fm, [{"name": "date_parse", "args": {"format": "%Y"}}]),
        **htmx,
    ).content.decode()
    assert "Your unsaved change" in broken
    assert "20 sampled rows: 20 would be rejected" in broken
    assert broken.count("<strong>rejected</strong>:") == 20
    # A change the service would refuse is named, not previewed.
    refused = client.get(url, _draft(fm, [{"name": "date_parse"}]), **htmx)
    assert "the change cannot be previewed" in refused.content.decode()
    assert "missing args [&#x27;format&#x27;]" in refused.content.decode()

    fm.refresh_from_db()
    assert (list(fm.transforms), fm.status, fm.last_changed_by_id) == before
    # The steward sees patient data unmasked: each preview that showed rows
    # is on record, the change's marked as a draft; nothing else happened.
    new = list(AuditEvent.objects.order_by("seq")[events:])
    assert [(e.action, e.data) for e in new] == [
        ("migration.preview.pid_viewed", {"mapping": fm.pk, "rows": 20}),
        (
            "migration.preview.pid_viewed",
            {"mapping": fm.pk, "rows": 20, "draft": True},
        ),
    ]


def test_a_table_that_looks_values_up_in_another_can_be_previewed(
    world: dict[str, Any], steward: Any
) -> None:
    """A spell names its patient: the preview's contract keeps the patient table."""

    project = world["project"]
    spell = imported_field(
        world["project"], world["snapshot"], "ward_stay", "start_date", seed=False
    )
    # ward_stay looks up its spell, which looks up its patient.
    client = Client()
    client.force_login(steward)
    html = client.get(
        reverse("migration:fieldmapping-preview", args=[project.pk, spell.pk]),
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET=f"preview-{spell.pk}",
    ).content.decode()
    assert "Preview not available" not in html, html
    assert "20 sampled rows:" in html


def test_a_preview_translates_with_crosswalk_rows_still_under_review(
    world: dict[str, Any], steward: Any
) -> None:
    """Before, every row of a table with an unapproved crosswalk was rejected."""
    from migration.models import CrosswalkRow
    from migration.selectors_preview import mapping_preview

    gender = imported_field(
        world["project"], world["snapshot"], "patient", "gender", seed=False
    )
    rows = CrosswalkRow.objects.filter(crosswalk=gender.crosswalk)
    assert rows.exists() and not rows.filter(status="approved").exists()
    rows.filter(local_code="U").update(status="rejected")  # never used
    pending = CrosswalkRow.objects.filter(
        crosswalk__project=world["project"], status="proposed"
    ).count()
    preview = mapping_preview(user=steward, mapping=gender)
    assert not preview.error and len(preview.rows) == 20
    assert preview.pending_rows == pending
    known = set(rows.exclude(status="rejected").values_list("local_code", flat=True))
    loaded = [r for r in preview.rows if not r.rejected]
    assert loaded and all(r.value for r in loaded)
    for r in preview.rows:
        missed = r.rejected and r.reason == "crosswalk_miss"
        code = (r.inputs[0] or "").strip().upper()  # the chain trims, upper-cases
        assert missed == (code != "" and code not in known)
        if r.rejected:
            assert r.other_field == (r.column not in {"PAPMI_Sex", "gender"})
    client = Client()
    client.force_login(steward)
    html = client.get(
        reverse("migration:fieldmapping-preview", args=[world["project"].pk, gender.pk])
    ).content.decode()
    assert (
        f"Codes are translated with {pending} crosswalk rows still under review, "
        "as proposed" in html
    )


def test_the_first_field_of_a_table_is_previewed_before_the_rest_are_mapped(
    world: dict[str, Any], steward: Any
) -> None:
    """A source never seen before is mapped a field at a time: each previews."""
    from migration.selectors_preview import mapping_preview
    from migration.services.mappings import (
        field_mapping_create,
        mapping_set_create,
        table_mapping_create,
    )

    ms = mapping_set_create(
        actor=steward,
        project=world["project"],
        name="One field so far",
        source_snapshot=world["snapshot"],
    )
    tm = table_mapping_create(
        actor=steward,
        mapping_set=ms,
        target_table="patient",
        source_table="PA_PatMas",
        source_key="PAPMI_RowId",
    )
    dob = field_mapping_create(
        actor=steward,
        table_mapping=tm,
        target_field="date_of_birth",
        source_columns=["PAPMI_DOB"],
        transforms=[{"name": "horolog_to_date", "args": {}}],
    )
    preview = mapping_preview(user=steward, mapping=dob)
    assert not preview.error
    assert "required target field patient." in preview.table_checks
    assert len(preview.rows) == 20
    days = [r for r in preview.rows if r.inputs[0] not in (None, "")]
    assert days
    for r in days:
        # $HOROLOG day 1 is 1841-01-01; the target column is a DATE.
        expected = dt.date(1840, 12, 31) + dt.timedelta(days=int(r.inputs[0]))
        assert (r.value, r.rejected) == (expected.isoformat(), False), r
    client = Client()
    client.force_login(steward)
    html = client.get(
        reverse("migration:fieldmapping-preview", args=[world["project"].pk, dob.pk])
    ).content.decode()
    assert "own steps only: the table&#x27;s checks are not applied yet" in html
    assert "this field: no problem" in html


def test_rest_clients_preview_a_mapping_and_an_unsaved_edit(
    world: dict[str, Any], steward: Any, auditor: Any
) -> None:
    from rest_framework.test import APIClient

    fm = world["theirs"][0]
    before = list(fm.transforms)
    url = f"/api/v1/field-mappings/{fm.pk}/preview/"
    api = APIClient()
    api.force_authenticate(steward)
    stored = api.get(url)
    assert stored.status_code == 200, stored.content
    assert stored["Cache-Control"] == "no-store, private, max-age=0"
    body = stored.json()
    assert body["error"] == "" and len(body["rows"]) == 20 and not body["masked"]
    assert set(body["rows"][0]) >= {"source_key", "inputs", "value", "rejected"}

    edit = api.post(
        url,
        {"transforms": [{"name": "date_parse", "args": {"format": "%Y"}}]},
        format="json",
    )
    assert edit.status_code == 200, edit.content
    assert edit.json()["rejected"] == 20
    bad = api.post(url, {"transforms": [{"name": "eval"}]}, format="json")
    assert bad.status_code == 400
    assert "unknown transform 'eval'" in bad.content.decode()
    fm.refresh_from_db()
    assert fm.transforms == before  # previews store nothing

    reader = APIClient()
    reader.force_authenticate(auditor)  # may look, may not see patient data
    masked = reader.get(url).json()
    assert masked["masked"] and len(masked["rows"]) == 20
    shown = {r["source_key"]: r["inputs"] for r in body["rows"]}
    for row in masked["rows"]:
        for plain, hidden in zip(shown[row["source_key"]], row["inputs"], strict=True):
            assert plain is None or len(plain) <= 3 or plain != hidden


def test_a_preview_names_a_column_the_source_table_does_not_have(
    world: dict[str, Any], steward: Any
) -> None:
    from migration.models import FieldMapping, TableMapping
    from migration.selectors_preview import mapping_preview

    fm = world["theirs"][0]
    TableMapping.objects.filter(pk=fm.table_mapping_id).update(source_key="NO_SUCH_KEY")
    fm = FieldMapping.objects.select_related("table_mapping__mapping_set").get(pk=fm.pk)
    preview = mapping_preview(user=steward, mapping=fm)
    assert preview.error == "the source table has no column NO_SUCH_KEY"
    assert preview.rows == []
