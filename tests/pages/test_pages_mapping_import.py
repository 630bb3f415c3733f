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
from migration.engine.defaults import default_contract_dict
from migration.models import Crosswalk, FieldMapping, MappingSet, ReviewStatus
from migration.services.snapshots import snapshot_extract
from tests.pages.conftest import imported_field

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
    xw_list = reverse("migration:crosswalk-list", args=[project.pk])
    assert "Add the generated legacy PAS" in client.get(xw_list).content.decode()
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
    # all of them here: the button is no longer offered
    assert "Add the generated legacy PAS" not in seeded.content.decode()
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

    fm = imported_field(project, snapshot, "inpatient_spell", "admission_date")
    ms = fm.table_mapping.mapping_set
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
    # Open where approval waits for it; folded for a field that needs none.
    assert (
        '<details class="nhsuk-details" open>\n      <summary class="nhsuk-details__summary">'
        '<span class="nhsuk-details__summary-text">Write the rationale for '
        "admission_date</span>" in page
    )
    assert (
        '<details class="nhsuk-details">\n      <summary class="nhsuk-details__summary">'
        '<span class="nhsuk-details__summary-text">Write the rationale for '
        "spell_number</span>" in page
    )
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


def test_a_migration_lead_publishes_the_reviewed_set_from_its_page(
    project: Any,
    snapshot: Any,
    steward: Any,
    steward2: Any,
    migration_lead: Any,
) -> None:
    from migration.models import Contract, CrosswalkRow
    from migration.services.crosswalks import (
        crosswalk_row_update,
        crosswalk_rows_bulk_approve,
        crosswalks_seed_defaults,
    )
    from migration.services.mappings import (
        field_mapping_needs_rationale,
        field_mapping_update,
        field_mappings_bulk_approve,
        mapping_set_import_contract,
    )

    crosswalks = crosswalks_seed_defaults(actor="tests", project=project)
    ms = mapping_set_import_contract(
        actor="tests", project=project, source_snapshot=snapshot
    )
    detail = reverse("migration:mappingset-detail", args=[project.pk, ms.pk])
    publish = reverse("migration:mappingset-publish", args=[project.pk, ms.pk])
    lead = Client()
    lead.force_login(migration_lead)
    page = lead.get(detail).content.decode()
    assert "It cannot be published yet" in page
    assert "(47 field mappings not approved, " in page  # and the crosswalk rows
    assert "is proposed, not approved" in page
    assert "Publish as the next contract version" not in page
    refused = lead.post(publish, follow=True)
    assert "cannot be published" in refused.content.decode()
    assert not Contract.objects.filter(mapping_set=ms).exists()

    fields = FieldMapping.objects.filter(table_mapping__mapping_set=ms)
    for fm in fields:
        if field_mapping_needs_rationale(fm):
            field_mapping_update(actor=steward, mapping=fm, rationale="As the PAS.")
    field_mappings_bulk_approve(actor=steward2, ids=[fm.pk for fm in fields])
    rows = CrosswalkRow.objects.filter(crosswalk__in=crosswalks)
    for row in rows.exclude(equivalence__in=["equal", "equivalent"]):
        crosswalk_row_update(actor=steward, row=row, rationale="Agreed default.")
    crosswalk_rows_bulk_approve(
        actor=steward2, ids=list(rows.values_list("pk", flat=True))
    )

    assert "Publish as the next contract version" in lead.get(detail).content.decode()
    done = lead.post(publish, follow=True).content.decode()
    contract = Contract.objects.get(mapping_set=ms)
    assert f"Contract v{contract.version} published" in done
    assert contract.sha256[:12] in done and contract.published_by == migration_lead
    # The contract frozen from the reviewed set maps what the default contract maps.
    default = default_contract_dict()
    assert [t["target"] for t in contract.body["tables"]] == [
        t["target"] for t in default["tables"]
    ]
    assert [len(t["fields"]) for t in contract.body["tables"]] == [
        len(t["fields"]) for t in default["tables"]
    ]
    assert AuditEvent.objects.filter(action="migration.contract.published").exists()
    listing = lead.get(
        reverse("migration:mappingset-list", args=[project.pk])
    ).content.decode()
    assert "47 of 47" in listing and f"v{contract.version}</td>" in listing


def test_a_crosswalk_rows_rationale_is_written_in_the_page(
    project: Any, steward: Any, steward2: Any
) -> None:
    from migration.models import CrosswalkRow
    from migration.services.crosswalks import crosswalks_seed_defaults

    crosswalks_seed_defaults(actor="tests", project=project)
    row = CrosswalkRow.objects.filter(
        crosswalk__project=project, equivalence="unmatched", rationale=""
    ).first()
    assert row is not None
    detail = reverse("migration:crosswalk-detail", args=[project.pk, row.crosswalk_id])
    review = reverse("migration:crosswalkrow-review", args=[project.pk, row.pk])
    second = Client()
    second.force_login(steward2)
    refused = second.post(review, {"verb": "approve"}, follow=True)
    assert "needs a written rationale" in refused.content.decode()
    first = Client()
    first.force_login(steward)
    assert f'id="xwhy-{row.pk}"' in first.get(detail).content.decode()
    url = reverse("migration:crosswalkrow-rationale", args=[project.pk, row.pk])
    assert "write the rationale first" in (
        first.post(url, {"rationale": ""}, follow=True).content.decode()
    )
    saved = first.post(url, {"rationale": "No national equivalent."}, follow=True)
    assert "rationale saved" in saved.content.decode()
    row.refresh_from_db()
    assert row.rationale == "No national equivalent."
    assert row.last_changed_by == steward
    assert second.post(review, {"verb": "approve"}).status_code == 302
    row.refresh_from_db()
    assert row.status == ReviewStatus.APPROVED and row.reviewer == steward2


def test_a_mapping_set_starts_from_suggestions_on_the_snapshot_page(
    project: Any, snapshot: Any, steward: Any, viewer: Any
) -> None:
    url = reverse("migration:mappingset-suggest", args=[project.pk, snapshot.pk])
    client = Client()
    client.force_login(steward)
    detail = reverse("migration:snapshot-detail", args=[project.pk, snapshot.pk])
    assert "Start a mapping set from suggestions" in client.get(detail).content.decode()
    nameless = client.post(url, {"name": "  "}, follow=True)
    assert "Give the mapping set a name" in nameless.content.decode()
    response = client.post(url, {"name": "Legacy to NHS PAS"})
    ms = MappingSet.objects.get(project=project)
    assert response["Location"] == reverse(
        "migration:mappingset-detail", args=[project.pk, ms.pk]
    )
    drafts = FieldMapping.objects.filter(table_mapping__mapping_set=ms)
    assert drafts.count() > 20  # the legacy PAS's columns are named to be found
    assert set(drafts.values_list("status", flat=True)) == {ReviewStatus.DRAFT}
    assert set(drafts.values_list("author", flat=True)) == {steward.pk}

    watcher = Client()
    watcher.force_login(viewer)
    assert watcher.post(url, {"name": "Not mine"}).status_code == 403
    assert MappingSet.objects.filter(project=project).count() == 1
    assert AuditEvent.objects.filter(
        action="migration.mapping_set.create_refused"
    ).exists()


def test_a_steward_changes_a_mapping_in_the_page_and_it_goes_back_for_review(
    project: Any, snapshot: Any, steward: Any, steward2: Any
) -> None:
    from migration.services.mappings import (
        field_mapping_approve,
    )

    fm = imported_field(project, snapshot, "patient", "family_name")
    ms = fm.table_mapping.mapping_set
    field_mapping_approve(actor=steward2, mapping=fm)
    client = Client()
    client.force_login(steward)
    page = client.get(
        reverse(
            "migration:tablemapping-detail",
            args=[project.pk, ms.pk, fm.table_mapping_id],
        )
    ).content.decode()
    assert "Change the mapping of family_name" in page
    assert '<option value="PAPMI_Surname" selected>' in page
    # The steps are rows of a form, never JSON to type.
    assert 'name="step-0-name"' in page and "Add a step" in page
    assert fm.transforms  # the default contract's chain for the surname
    url = reverse("migration:fieldmapping-edit", args=[project.pk, fm.pk])
    unchanged = {
        "source_columns": ["PAPMI_Surname"],
        **({"crosswalk_strict": "on"} if fm.crosswalk_strict else {}),
        "steps": str(len(fm.transforms)),
        **{f"step-{i}-name": s["name"] for i, s in enumerate(fm.transforms)},
        **{f"step-{i}-position": str(i + 1) for i in range(len(fm.transforms))},
    }
    client.post(url, unchanged, follow=True)
    fm.refresh_from_db()
    assert fm.status == ReviewStatus.APPROVED  # saved untouched: nothing changed
    unknown = client.post(
        url, {**unchanged, "step-new-name": "eval"}, follow=True
    ).content.decode()
    assert "unknown transform &#x27;eval&#x27;" in unknown
    missing = client.post(
        url, {**unchanged, "step-new-name": "date_parse"}, follow=True
    ).content.decode()
    assert "missing args [&#x27;format&#x27;]" in missing
    orphan = client.post(
        url, {**unchanged, "steps": "0", "step-new-name": "crosswalk"}, follow=True
    ).content.decode()
    assert "a crosswalk step needs the crosswalk it translates with" in orphan
    fm.refresh_from_db()
    assert fm.status == ReviewStatus.APPROVED  # nothing changed by bad input
    # Remove every stored step but the first, and add "upper" before it.
    changed = {
        **unchanged,
        **{f"step-{i}-remove": "on" for i in range(1, len(fm.transforms))},
        "step-new-name": "upper",
        "step-new-position": "1",
    }
    first = fm.transforms[0]
    saved = client.post(url, changed, follow=True).content.decode()
    assert "mapping changed; another steward must approve it" in saved
    fm.refresh_from_db()
    assert fm.transforms == [{"name": "upper", "args": {}}, first]
    assert fm.source_columns == ["PAPMI_Surname"]
    assert fm.status == ReviewStatus.PROPOSED and fm.last_changed_by == steward
    assert AuditEvent.objects.filter(
        action="migration.field_mapping.updated", target_id=str(fm.pk)
    ).exists()


def test_the_step_editor_shows_a_transforms_own_argument_boxes(
    project: Any, snapshot: Any, steward: Any
) -> None:

    fm = imported_field(project, snapshot, "patient", "family_name")
    ms = fm.table_mapping.mapping_set
    fm.transforms = [{"name": "date_parse", "args": {"format": "%d/%m/%Y"}}]
    fm.save(update_fields=["transforms"])
    client = Client()
    client.force_login(steward)
    url = reverse("migration:fieldmapping-step-args", args=[project.pk, fm.pk])
    same = client.get(url, {"prefix": "step-0", "step-0-name": "date_parse"})
    html = same.content.decode()
    assert same.status_code == 200
    assert 'name="step-0-arg-format"' in html and 'value="%d/%m/%Y"' in html
    assert 'name="step-0-arg-reason"' in html and "(optional)" in html
    other = client.get(
        url, {"prefix": "step-new", "step-new-name": "split"}
    ).content.decode()
    assert 'name="step-new-arg-sep"' in other and 'name="step-new-arg-index"' in other
    assert "Counting from 0" in other and 'value="%d/%m/%Y"' not in other
    assert client.get(url, {"prefix": "../x"}).status_code == 400
    page = client.get(
        reverse(
            "migration:tablemapping-detail",
            args=[project.pk, ms.pk, fm.table_mapping_id],
        )
    ).content.decode()
    assert "date_parse (format %d/%m/%Y)" in page  # the summary names arguments


def test_a_tables_exclusion_rules_are_shown_to_its_reviewers(
    project: Any, snapshot: Any, steward: Any, legacy_db: Path
) -> None:
    """Rows a table leaves out are said on its mapping page, in words, before
    anyone approves the fields that map the rest."""
    import copy

    from migration.services.crosswalks import crosswalks_seed_defaults
    from migration.services.mappings import mapping_set_import_contract

    data = copy.deepcopy(default_contract_dict())
    pat = next(t for t in data["tables"] if t["target"] == "patient")
    pat["exclude"] = [
        {"id": "EX-DEAD", "column": "PAPMI_DeceasedDate", "op": "not_null",
         "values": [], "reason": "deceased_not_migrated"},
        {"id": "EX-TEST", "field": "family_name", "op": "in",
         "values": ["XXTEST", "ZZTEST"], "reason": "test_patient"},
        {"id": "EX-F", "column": "PAPMI_Sex_DR", "op": "eq", "values": ["F"],
         "reason": "another_mapping"},
    ]  # fmt: skip
    crosswalks_seed_defaults(actor="tests", project=project)
    ms = mapping_set_import_contract(
        actor="tests", project=project, source_snapshot=snapshot, contract=data
    )
    tm = ms.table_mappings.get(target_table="patient")
    client = Client()
    client.force_login(steward)
    page = client.get(
        reverse("migration:tablemapping-detail", args=[project.pk, ms.pk, tm.pk])
    ).content.decode()
    assert "Not every row of <span" in page
    assert (
        "Rows where source column PAPMI_DeceasedDate is not empty are excluded "
        "(deceased_not_migrated)" in page
    )
    assert (
        "Rows where target field family_name is one of &quot;XXTEST&quot;, "
        "&quot;ZZTEST&quot; are excluded (test_patient)" in page
    )
    # A table without rules says nothing about exclusions.
    spells = ms.table_mappings.get(target_table="inpatient_spell")
    other = client.get(
        reverse("migration:tablemapping-detail", args=[project.pk, ms.pk, spells.pk])
    ).content.decode()
    assert 'Every row of <span class="pas-mono">PA_Adm</span> is meant to become' in (
        other
    )
    assert "Not every row" not in other
    # The preview of a field of that table says which sampled rows a rule
    # leaves out (and the page says how many).
    import sqlite3

    from migration.selectors_preview import mapping_preview

    fm = tm.field_mappings.get(target_field="family_name")
    preview = mapping_preview(user=steward, mapping=fm)
    assert not preview.error and preview.rows
    with sqlite3.connect(legacy_db) as conn:
        source = {
            str(k): (dead, sex)
            for k, dead, sex in conn.execute(
                "SELECT PAPMI_RowId, PAPMI_DeceasedDate, PAPMI_Sex_DR FROM PA_PatMas"
            )
        }

    def rule_of(key: str) -> str | None:  # the first rule that matches, as the engine
        dead, sex = source[key]
        if (dead or "").strip():
            return "EX-DEAD"
        return "EX-F" if (sex or "").strip() == "F" else None  # exact: "f" stays

    out = {r.source_key: r for r in preview.rows if r.excluded}
    assert 0 < len(out) < len(preview.rows)
    assert {k: r.rule_id for k, r in out.items()} == {
        r.source_key: rule_of(r.source_key)
        for r in preview.rows
        if rule_of(r.source_key)
    }
    assert all(r.column == "PAPMI_Sex_DR" for r in out.values() if r.rule_id == "EX-F")
    assert not any(r.rejected for r in out.values()) and preview.excluded == len(out)
    shown = client.get(
        reverse("migration:fieldmapping-preview", args=[project.pk, fm.pk])
    ).content.decode()
    assert f"{len(out)} left out by its exclusion rules" in shown
    assert (
        "<strong>excluded</strong> by rule EX-F: another_mapping (PAPMI_Sex_DR)"
        in shown
    )
    # A reviewer approves a rule in the page (the importer was the system).
    from migration.models import ExclusionRule

    rule = ExclusionRule.objects.get(table_mapping=tm, rule_id="EX-DEAD")
    assert rule.status == ReviewStatus.PROPOSED
    assert 'name="verb" type="radio" value="approve"' in page
    done = client.post(
        reverse("migration:exclusionrule-review", args=[project.pk, rule.pk]),
        {"verb": "approve", "comment": "Deceased patients go to the archive"},
    )
    assert done.status_code == 302 and done["Location"].endswith("#exclusions")
    rule.refresh_from_db()
    assert (rule.status, rule.reviewer) == (ReviewStatus.APPROVED, steward)
    assert AuditEvent.objects.filter(
        action="migration.exclusion_rule.approved", target_id=str(rule.pk)
    ).exists()
    again = client.get(
        reverse("migration:tablemapping-detail", args=[project.pk, ms.pk, tm.pk])
    ).content.decode()
    assert f"reviewed by {steward.get_username()}" in again


def test_a_steward_proposes_an_exclusion_rule_in_the_page_and_another_approves(
    project: Any, snapshot: Any, steward: Any, steward2: Any
) -> None:
    from migration.models import ExclusionRule
    from migration.services.contracts import contract_blockers

    fm = imported_field(project, snapshot, "patient", "family_name")
    tm, ms = fm.table_mapping, fm.table_mapping.mapping_set
    page_url = reverse("migration:tablemapping-detail", args=[project.pk, ms.pk, tm.pk])
    create = reverse("migration:exclusionrule-create", args=[project.pk, ms.pk, tm.pk])
    client = Client()
    client.force_login(steward)
    page = client.get(page_url).content.decode()
    assert "Leave out rows of PA_PatMas" in page
    assert '<option value="PAPMI_DeceasedDate">' in page
    # Bad input is named and stores nothing.
    for bad, said in [
        ({"column": "PAPMI_Town", "op": "eq", "values": "X", "reason": "r"},
         "PA_PatMas has no column &#x27;PAPMI_Town&#x27; in the snapshot"),
        ({"column": "PAPMI_Sex_DR", "op": "eq", "values": "F, M", "reason": "r"},
         "eq takes exactly one value"),
        ({"column": "PAPMI_Sex_DR", "op": "like", "values": "F", "reason": "r"},
         "unknown op like"),
        ({"column": "PAPMI_Sex_DR", "op": "in", "values": "F", "reason": "Bad Reason"},
         "the reason is a short lower-case code"),
    ]:  # fmt: skip
        shown = client.post(create, bad, follow=True).content.decode()
        assert said in shown, said
    assert not ExclusionRule.objects.filter(table_mapping=tm).exists()
    done = client.post(
        create,
        {
            "column": "PAPMI_DeceasedDate",
            "op": "not_null",
            "values": "ignored for this operator",
            "reason": "deceased_not_migrated",
        },
        follow=True,
    ).content.decode()
    assert "Exclusion rule EX-1 proposed: someone else approves it" in done
    rule = ExclusionRule.objects.get(table_mapping=tm)
    assert rule.engine_dict() == {
        "id": "EX-1",
        "column": "PAPMI_DeceasedDate",
        "op": "not_null",
        "values": [],
        "reason": "deceased_not_migrated",
    }
    assert (rule.status, rule.author) == (ReviewStatus.PROPOSED, steward)
    assert AuditEvent.objects.filter(
        action="migration.exclusion_rule.created", target_id=str(rule.pk)
    ).exists()
    assert any("exclusion rule EX-1" in b for b in contract_blockers(mapping_set=ms))
    # Four-eyes: no approve choice for its author; another steward approves.
    approve = f'id="xverb-{rule.pk}-approve"'
    assert approve not in done
    other = Client()
    other.force_login(steward2)
    assert approve in other.get(page_url).content.decode()
    other.post(
        reverse("migration:exclusionrule-review", args=[project.pk, rule.pk]),
        {"verb": "approve"},
    )
    rule.refresh_from_db()
    assert (rule.status, rule.reviewer) == (ReviewStatus.APPROVED, steward2)
    assert not any("exclusion rule" in b for b in contract_blockers(mapping_set=ms))
    # Its author sends it back for review: publishing waits for it again.
    back = client.post(
        reverse("migration:exclusionrule-review", args=[project.pk, rule.pk]),
        {"verb": "revert", "comment": "values to check with the ward"},
        follow=True,
    ).content.decode()
    assert "Exclusion rule EX-1 sent back for review" in back
    rule.refresh_from_db()
    assert rule.status == ReviewStatus.PROPOSED
    assert any("exclusion rule EX-1" in b for b in contract_blockers(mapping_set=ms))


def test_a_steward_maps_an_unmapped_field_in_the_page(
    project: Any, snapshot: Any, steward: Any
) -> None:
    """A field no suggestion or import mapped -- here a constant, since the
    source does not record it -- is started, given its steps and proposed,
    all in the page."""
    from migration.services.mappings import mapping_set_create, table_mapping_create

    ms = mapping_set_create(
        actor="tests", project=project, name="By hand", source_snapshot=snapshot
    )
    tm = table_mapping_create(
        actor="tests",
        mapping_set=ms,
        target_table="patient",
        source_table="PA_PatMas",
        source_key="PAPMI_RowId",
    )
    client = Client()
    client.force_login(steward)
    page_url = reverse("migration:tablemapping-detail", args=[project.pk, ms.pk, tm.pk])
    page = client.get(page_url).content.decode()
    assert "Start a mapping of nhs_number_status" in page
    create = reverse("migration:fieldmapping-create", args=[project.pk, ms.pk, tm.pk])
    # Bad input is named and stores nothing.
    shown = client.post(create, {"target_field": "shoe_size"}, follow=True)
    assert "patient has no field &#x27;shoe_size&#x27;" in shown.content.decode()
    assert not FieldMapping.objects.filter(table_mapping=tm).exists()
    started = client.post(create, {"target_field": "nhs_number_status"}, follow=True)
    assert "nhs_number_status: a draft mapping started" in started.content.decode()
    fm = FieldMapping.objects.get(table_mapping=tm, target_field="nhs_number_status")
    assert (fm.status, fm.author, fm.source_columns) == (
        ReviewStatus.DRAFT,
        steward,
        [],
    )
    again = client.post(create, {"target_field": "nhs_number_status"}, follow=True)
    assert "patient.nhs_number_status is already mapped" in again.content.decode()
    # Its steps on its card: every row "03" (no NHS numbers: trace needed).
    client.post(
        reverse("migration:fieldmapping-edit", args=[project.pk, fm.pk]),
        {"steps": "0", "step-new-name": "constant", "step-new-arg-value": "03"},
        follow=True,
    )
    fm.refresh_from_db()
    assert fm.transforms == [{"name": "constant", "args": {"value": "03"}}]
    with_source = client.post(
        create,
        {"target_field": "family_name", "source_columns": ["PAPMI_Surname"]},
        follow=True,
    )
    assert with_source.status_code == 200
    surname = FieldMapping.objects.get(table_mapping=tm, target_field="family_name")
    assert surname.source_columns == ["PAPMI_Surname"]
    assert AuditEvent.objects.filter(
        action="migration.field_mapping.created", target_id=str(surname.pk)
    ).exists()
