"""Browser journeys in Debian's Chromium (Playwright, sync API) against live_server.

Each journey logs in through the real login form and saves screenshots under
``var/screenshots/`` (or ``$PAS_SCREENSHOTS``). The axe-core pass checks the
main pages for serious or critical accessibility violations.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pages.conftest import SCREENSHOTS, build_world

pytestmark = pytest.mark.browser

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(
        accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


_PAGES: dict[str, Any] = {}


def shot(page: Any, journey: str, name: str) -> Path:
    directory = SCREENSHOTS / journey
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_steward_reviews_previews_and_approves(
    live_server: Any, world: dict[str, Any], steward: Any
) -> None:
    base = live_server.url
    p = world["project"].pk
    theirs = world["theirs"][0]
    mine = world["mine"]
    page = _PAGES["page"]
    login(page, base, steward.username)
    page.click(f"#project-{p} >> text=proposed mapping")
    page.wait_for_selector("h1:has-text('Mappings')")
    page.click(f"text={world['mapping_set'].name}")
    shot(page, "a-steward", "01-mapping-set")
    tm = theirs.table_mapping
    page.goto(f"{base}/projects/{p}/mappings/{tm.mapping_set_id}/tables/{tm.pk}/")
    card = page.locator(f"#field-{theirs.pk}")
    card.locator(f"text=Preview {theirs.target_field} on sample rows").click()
    card.locator(f"#preview-{theirs.pk} table").wait_for()
    assert "sampled row" in card.inner_text()
    shot(page, "a-steward", "02-live-preview")
    card.locator("label:has-text('Approve')").click()
    card.locator(f"#comment-{theirs.pk}").fill(
        "Checked against the PAS data dictionary"
    )
    card.locator("button:has-text('Record review')").click()
    page.wait_for_selector("[role=status]:has-text('approve recorded')")
    theirs.refresh_from_db()
    assert theirs.status == "approved"
    assert theirs.reviewer_id == steward.pk
    shot(page, "a-steward", "03-approved")
    mine_tm = mine.table_mapping
    page.goto(
        f"{base}/projects/{p}/mappings/{mine_tm.mapping_set_id}/tables/{mine_tm.pk}/"
        f"#field-{mine.pk}"
    )
    own = page.locator(f"#field-{mine.pk}")
    assert "another steward must approve it" in own.inner_text()
    assert own.locator("input[value=approve]").count() == 0
    assert page.locator("input[name=ids]:checked").count() == 0  # nothing pre-selected
    own.scroll_into_view_if_needed()
    shot(page, "a-steward", "04-own-change-needs-second-steward")


def test_steward_adds_a_transform_step_with_its_own_argument_boxes(
    live_server: Any, world: dict[str, Any], steward: Any
) -> None:
    base = live_server.url
    p = world["project"].pk
    fm = world["theirs"][1]
    before = list(fm.transforms or [])
    page = _PAGES["page"]
    login(page, base, steward.username)
    tm = fm.table_mapping
    page.goto(f"{base}/projects/{p}/mappings/{tm.mapping_set_id}/tables/{tm.pk}/")
    card = page.locator(f"#field-{fm.pk}")
    card.locator(f"text=Change the mapping of {fm.target_field}").click()
    new = card.locator(f"#fm{fm.pk}-step-new")
    assert new.locator("input[name='step-new-arg-format']").count() == 0
    new.locator("select[name='step-new-name']").select_option("date_parse")
    box = new.locator("input[name='step-new-arg-format']")
    box.wait_for()  # htmx swapped in the boxes date_parse takes
    assert "Python strptime codes" in new.inner_text()
    box.fill("%d/%m/%Y")
    card.locator("button:has-text('Preview the change')").click()
    draft = card.locator(f"#draft-preview-{fm.pk}")
    draft.locator("table").wait_for()  # the unsaved chain, on sample rows
    assert "Your unsaved change" in draft.inner_text()
    assert "would be rejected" in draft.inner_text()
    fm.refresh_from_db()
    assert fm.transforms == before  # a preview stores nothing
    # The open editor and the draft preview, checked as the main pages are.
    page.add_script_tag(url=f"{base}/static/vendor/axe/axe.min.js")
    serious = page.evaluate(
        "async () => (await axe.run()).violations"
        ".filter(v => ['serious', 'critical'].includes(v.impact))"
        ".map(v => v.id + ' ' + v.nodes[0].target.join(' '))"
    )
    assert serious == [], serious
    shot(page, "a-steward", "05-step-editor")
    card.locator("button:has-text('Save the mapping')").click()
    page.wait_for_selector("[role=status]:has-text('mapping changed')")
    fm.refresh_from_db()
    assert fm.transforms == [
        *before,
        {"name": "date_parse", "args": {"format": "%d/%m/%Y"}},
    ]
    assert fm.last_changed_by_id == steward.pk


@pytest.fixture(autouse=True)
def _register_page(page: Any) -> Iterator[None]:
    _PAGES["page"] = page
    yield
    _PAGES.clear()


@pytest.fixture
def fresh_world(
    transactional_db: Any,
    project: Any,
    steward: Any,
    steward2: Any,
    dm_engineer: Any,
    migration_lead: Any,
    tmp_path: Path,
    legacy_db: Path,
) -> dict[str, Any]:
    return build_world(
        project=project,
        legacy_db=legacy_db,
        work=tmp_path,
        steward=steward,
        steward2=steward2,
        dm_engineer=dm_engineer,
        migration_lead=migration_lead,
        execute_run=False,
    )


def test_dm_engineer_starts_a_run_and_watches_it_finish(
    live_server: Any, fresh_world: dict[str, Any], dm_engineer: Any
) -> None:
    base = live_server.url
    page = _PAGES["page"]
    p = fresh_world["project"].pk
    login(page, base, dm_engineer.username)
    page.goto(f"{base}/projects/{p}/runs/")
    page.click("text=Start a run")
    page.select_option("#id_contract", str(fresh_world["contract"].pk))
    page.select_option("#id_source", str(fresh_world["source"].pk))
    page.select_option("#id_target", str(fresh_world["target"].pk))
    page.select_option("#id_profile", "development")
    shot(page, "b-dm-engineer", "01-start-form")
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/progress/" in r.url else None)
    page.click("button:has-text('Start run')")
    page.wait_for_selector("#run-progress[data-terminal=true]")
    rows = page.locator(".pas-progress-row")
    assert rows.count() >= 4
    for i in range(rows.count()):
        assert rows.nth(i).get_attribute("data-pct") == "100.0"
    assert page.locator("#run-progress").get_attribute("hx-trigger") is None
    assert "Succeeded" in page.inner_text("main")
    shot(page, "b-dm-engineer", "02-run-finished")
    page.wait_for_timeout(2500)
    assert polls == []  # a terminal run is not polled
    page.click("text=Browse all rejects")
    page.wait_for_selector("#reject-results table")
    reasons = page.locator("#filter-reason option").all_inner_texts()
    page.select_option("#filter-reason", reasons[1])
    page.click("button:has-text('Filter')")
    page.wait_for_selector(f"#reject-results:has-text('with reason {reasons[1]}')")
    assert "•" in page.inner_text("#reject-results")  # masked without view_pid
    shot(page, "b-dm-engineer", "03-rejects-filtered")


def test_migration_lead_signs_off(
    live_server: Any, world: dict[str, Any], migration_lead: Any
) -> None:
    base = live_server.url
    page = _PAGES["page"]
    p, run = world["project"].pk, world["run"]
    login(page, base, migration_lead.username)
    page.goto(f"{base}/projects/{p}/runs/{run.pk}/")
    page.click("text=gates and sign-offs")
    page.select_option("#show-profile", "cutover_ready")
    page.click("button:has-text('Show')")
    page.wait_for_selector("#signoff-role")
    shot(page, "c-migration-lead", "01-signoffs-awaited")
    page.select_option("#signoff-role", "migration_lead")
    page.check("#decision-approve")
    page.fill("#signoff-comment", "Ledger balanced, rejects explained")
    page.click("button:has-text('Record my sign-off')")
    page.wait_for_selector("tr.pas-signed[data-role=migration_lead]")
    assert "Your sign-off is recorded" in page.inner_text("main")
    shot(page, "c-migration-lead", "02-signed")


def test_auditor_exports_the_evidence_bundle(
    live_server: Any, world: dict[str, Any], auditor: Any
) -> None:
    base = live_server.url
    page = _PAGES["page"]
    p, run = world["project"].pk, world["run"]
    login(page, base, auditor.username)
    page.goto(f"{base}/projects/{p}/audit/")
    page.wait_for_selector("#chain-status")
    page.fill("#q-action", "run")
    page.click("button:has-text('Search')")
    page.wait_for_selector("#audit-results:has-text('migration.run')")
    shot(page, "d-auditor", "01-audit-search")
    with page.expect_download() as info:
        page.click("button:has-text('Export evidence') >> nth=0")
    download = info.value
    target = SCREENSHOTS / "d-auditor" / download.suggested_filename
    download.save_as(str(target))
    assert target.stat().st_size > 0
    assert target.read_bytes()[:2] == b"PK"
    print(f"evidence bundle: {target} ({target.stat().st_size} bytes) for run {run.pk}")


AXE_PAGES = [
    ("steward", "dashboard", "/"),
    ("steward", "connectors", "/projects/{p}/connectors/"),
    ("steward", "connector", "/projects/{p}/connectors/{source}/"),
    ("steward", "snapshot", "/projects/{p}/snapshots/{snapshot}/"),
    ("steward", "mapping sets", "/projects/{p}/mappings/"),
    ("steward", "mapping set", "/projects/{p}/mappings/{set}/"),
    ("steward", "mappings", "/projects/{p}/mappings/{set}/tables/{tm}/"),
    ("steward", "crosswalks", "/projects/{p}/crosswalks/"),
    ("steward", "crosswalk", "/projects/{p}/crosswalks/{xw}/"),
    ("steward", "misses", "/projects/{p}/misses/"),
    ("steward", "run", "/projects/{p}/runs/{run}/"),
    ("steward", "rejects", "/projects/{p}/runs/{run}/rejects/"),
    ("steward", "gates", "/projects/{p}/runs/{run}/gates/?profile=cutover_ready"),
    ("auditor", "audit", "/projects/{p}/audit/"),
]


def test_main_pages_have_no_serious_accessibility_violations(
    live_server: Any, world: dict[str, Any], steward: Any, auditor: Any
) -> None:
    base = live_server.url
    page = _PAGES["page"]
    fm = world["theirs"][0]
    ids = {
        "p": world["project"].pk,
        "source": world["source"].pk,
        "snapshot": world["snapshot"].pk,
        "set": world["mapping_set"].pk,
        "tm": fm.table_mapping_id,
        "xw": world["crosswalks"][0].pk,
        "run": world["run"].pk,
    }
    users = {"steward": steward, "auditor": auditor}
    current = None
    problems = []
    for who, name, path in AXE_PAGES:
        if who != current:
            page.context.clear_cookies()
            login(page, base, users[who].username)
            current = who
        page.goto(base + path.format(**ids))
        page.add_script_tag(url=f"{base}/static/vendor/axe/axe.min.js")
        violations = page.evaluate(
            "async () => (await axe.run()).violations.map(v => ("
            "{id: v.id, impact: v.impact, nodes: v.nodes.length,"
            " target: v.nodes[0] && v.nodes[0].target.join(' ')}))"
        )
        print(f"axe {name}: {len(violations)} violation(s) {violations}")
        problems += [
            (name, v) for v in violations if v["impact"] in ("serious", "critical")
        ]
        if name in ("run", "mappings", "gates"):
            shot(page, "axe", name)
    assert not problems, problems
