"""S1/S2 for the pages: every route and htmx fragment x role against a declared
policy; CSRF on every unsafe route; no-store on patient data; no patient
identifier in any URL the pages link to.

A route added to ``connectors``, ``migration`` or ``governance`` without a line
in ``POLICY`` fails ``test_policy_covers_every_route``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import (
    NoReverseMatch,
    URLPattern,
    URLResolver,
    get_resolver,
    reverse,
)

from governance.evidence import evidence_export
from migration.models import (
    CrosswalkRow,
    FieldMapping,
    ReviewStatus,
    SchemaSnapshot,
)

NAMESPACES = ("connectors", "migration", "governance")
ROLES = ("anonymous", "other_steward", "auditor", "dm_engineer", "steward")

# Expected status per role. Members see pages of their project (200); a page
# or action that needs a permission they lack is 403; another project's
# steward gets 404 (the object "does not exist"); anonymous goes to login.
VIEW_PAGE = {
    "anonymous": 302,
    "other_steward": 404,
    "auditor": 200,
    "dm_engineer": 200,
    "steward": 200,
}


def only(**allowed: int) -> dict[str, int]:
    """Return a policy where members not named get 403."""
    base = {
        "anonymous": 302,
        "other_steward": 404,
        "auditor": 403,
        "dm_engineer": 403,
        "steward": 403,
    }
    return {**base, **allowed}


# route -> (method, expected status per role)
POLICY: dict[str, tuple[str, dict[str, int]]] = {
    "connectors:connector-list": ("GET", VIEW_PAGE),
    "connectors:connector-detail": ("GET", VIEW_PAGE),
    "connectors:connector-check": ("POST", only(dm_engineer=302)),
    "connectors:connector-landing-purge": ("POST", only(dm_engineer=302)),
    "migration:snapshot-list": ("GET", VIEW_PAGE),
    "migration:snapshot-create": ("POST", only(dm_engineer=302)),
    "migration:snapshot-detail": ("GET", VIEW_PAGE),
    "migration:snapshot-job": ("GET", VIEW_PAGE),
    "migration:snapshot-diff": ("GET", VIEW_PAGE),
    "migration:mappingset-import": ("POST", only(dm_engineer=302, steward=302)),
    "migration:mappingset-suggest": ("POST", only(dm_engineer=302, steward=302)),
    "migration:mappingset-list": ("GET", VIEW_PAGE),
    "migration:mappingset-detail": ("GET", VIEW_PAGE),
    "migration:mappingset-publish": ("POST", only(dm_engineer=302)),
    "migration:tablemapping-detail": ("GET", VIEW_PAGE),
    "migration:fieldmapping-bulk": ("POST", only(steward=302)),
    "migration:fieldmapping-review": ("POST", only(steward=302)),
    "migration:exclusionrule-review": ("POST", only(steward=302)),
    "migration:exclusionrule-create": ("POST", only(dm_engineer=302, steward=302)),
    "migration:fieldmapping-create": ("POST", only(dm_engineer=302, steward=302)),
    "migration:fieldmapping-preview": ("GET", VIEW_PAGE),
    "migration:fieldmapping-rationale": ("POST", only(dm_engineer=302, steward=302)),
    "migration:fieldmapping-edit": ("POST", only(dm_engineer=302, steward=302)),
    "migration:fieldmapping-step-args": ("GET", VIEW_PAGE),
    "migration:crosswalk-list": ("GET", VIEW_PAGE),
    "migration:crosswalks-seed": ("POST", only(dm_engineer=302, steward=302)),
    "migration:crosswalk-detail": ("GET", VIEW_PAGE),
    "migration:crosswalk-export": ("GET", VIEW_PAGE),
    "migration:crosswalk-import": ("POST", only(dm_engineer=302, steward=302)),
    "migration:crosswalkrow-review": ("POST", only(steward=302)),
    "migration:crosswalkrow-rationale": ("POST", only(dm_engineer=302, steward=302)),
    "migration:miss-list": ("GET", VIEW_PAGE),
    "migration:miss-resolve": ("POST", only(dm_engineer=302, steward=302)),
    "migration:miss-ignore": ("POST", only(dm_engineer=302, steward=302)),
    "migration:miss-reopen": ("POST", only(dm_engineer=302, steward=302)),
    "migration:run-list": ("GET", VIEW_PAGE),
    "migration:run-create": ("GET", only(dm_engineer=200)),
    "migration:run-detail": ("GET", VIEW_PAGE),
    "migration:run-progress": ("GET", VIEW_PAGE),
    "migration:run-cancel": ("POST", only(dm_engineer=302)),
    "migration:run-resume": ("POST", only(dm_engineer=302)),
    "migration:reject-list": ("GET", VIEW_PAGE),
    "migration:reject-download": ("GET", VIEW_PAGE),
    "governance:gate-detail": ("GET", VIEW_PAGE),
    "governance:gate-evaluate": ("POST", only(dm_engineer=302)),
    "governance:signoff-create": ("POST", only(steward=302)),
    "governance:waiver-create": ("POST", only(dm_engineer=302)),
    "governance:waiver-approve": ("POST", only()),
    "governance:waiver-revoke": ("POST", only()),
    "governance:audit-list": ("GET", only(auditor=200)),
    "governance:evidence-create": ("POST", only(auditor=200)),
    "governance:evidence-download": ("GET", only(auditor=200)),
}

# Routes that also answer a named partial to htmx: route -> hx target id.
FRAGMENTS = {
    "connectors:connector-detail": "connector-health",
    "migration:snapshot-detail": "snapshot-columns",
    "migration:fieldmapping-preview": "preview-1",
    "migration:crosswalk-detail": "crosswalk-rows",
    "migration:run-progress": "run-progress",
    "migration:reject-list": "reject-results",
    "governance:audit-list": "audit-results",
}

PATIENT_DATA = (
    "migration:snapshot-detail",
    "migration:fieldmapping-preview",
    "migration:reject-list",
    "migration:reject-download",
)


def _route_names() -> set[str]:
    names: set[str] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                ns = p.namespace
                walk(p.url_patterns, f"{prefix}{ns}:" if ns else prefix)
            elif isinstance(p, URLPattern) and p.name:
                names.add(prefix + p.name)

    walk(get_resolver().url_patterns, "")
    return {n for n in names if n.split(":", 1)[0] in NAMESPACES}


def test_policy_covers_every_route() -> None:
    assert _route_names() == set(POLICY)


JOB_ID = "0" * 31 + "1"


def _kwargs(world: dict[str, Any]) -> dict[str, Any]:
    from migration.services.snapshots import snapshot_job_update

    fm = world["theirs"][0]
    # A finished extraction job of the source connector (state lives in the cache).
    snapshot_job_update(
        JOB_ID,
        state="done",
        project=world["project"].pk,
        connector=world["source"].pk,
        snapshot=world["snapshot"].pk,
        done=7,
        total=7,
    )
    return {
        "job_id": JOB_ID,
        "project_id": world["project"].pk,
        "connector_id": world["source"].pk,
        "snapshot_id": world["snapshot"].pk,
        "set_id": world["mapping_set"].pk,
        "tm_id": fm.table_mapping_id,
        "fm_id": fm.pk,
        "xw_id": world["crosswalks"][0].pk,
        "row_id": world["row"].pk,
        "rule_id": world["exclusion"].pk,
        "miss_id": world["misses"][0].pk,
        "run_id": world["run"].pk,
        "waiver_id": world["waiver"].pk,
        "export_id": world["export"].pk,
    }


COMBOS: tuple[tuple[str, ...], ...] = (
    (),
    ("connector_id",),
    ("connector_id", "job_id"),
    ("snapshot_id",),
    ("set_id",),
    ("set_id", "tm_id"),
    ("fm_id",),
    ("xw_id",),
    ("row_id",),
    ("rule_id",),
    ("miss_id",),
    ("run_id",),
    ("waiver_id",),
    ("export_id",),
)


def _url(name: str, kwargs: dict[str, Any]) -> str:
    # Each route takes the project plus its own object ids: find the set that
    # reverses, so the test needs no second table of argument names.
    for keys in COMBOS:
        chosen = {"project_id": kwargs["project_id"]} | {k: kwargs[k] for k in keys}
        try:
            return reverse(name, kwargs=chosen)
        except NoReverseMatch:
            continue
    raise AssertionError(f"cannot reverse {name}")


def _data(name: str, world: dict[str, Any]) -> dict[str, Any]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    proposed = world["theirs"][1]
    return {
        "migration:fieldmapping-bulk": {"ids": [proposed.pk]},
        "migration:fieldmapping-review": {"verb": "flag", "comment": "check dates"},
        "migration:exclusionrule-review": {"verb": "flag", "comment": "why these?"},
        "migration:fieldmapping-create": {"target_field": "title"},
        "migration:exclusionrule-create": {
            "column": world["theirs"][0].source_columns[0],
            "op": "eq",
            "values": "A VALUE NO ROW HOLDS",
            "reason": "test_rows",
        },
        "migration:mappingset-suggest": {"name": "From suggestions"},
        "migration:fieldmapping-rationale": {"rationale": "ISO dates in the extract"},
        "migration:fieldmapping-edit": {"steps": "0"},
        "migration:crosswalk-import": {
            "file": SimpleUploadedFile(
                "rows.csv",
                b"local_code,local_display,target_code,equivalence,rationale\n",
                content_type="text/csv",
            )
        },
        "migration:crosswalkrow-review": {"verb": "flag", "comment": "unsure"},
        "migration:crosswalkrow-rationale": {"rationale": "Agreed with the ward"},
        "migration:miss-resolve": {
            "target_code": "NOT-A-CODE",
            "equivalence": "equal",
            "rationale": "x",
        },
        "migration:miss-ignore": {"note": "a data-entry error"},
        "governance:gate-evaluate": {"profile": "development"},
        "governance:waiver-create": {
            "check_id": "reject_rate",
            "reason": "Legacy defects; cleansing before cut-over",
            "expires_at": "2099-01-31",
        },
        "governance:signoff-create": {
            "role": "data_steward",
            "decision": "approve",
            "profile": "cutover_ready",
        },
    }.get(name, {})


def _query(name: str, world: dict[str, Any]) -> str:
    if name == "migration:fieldmapping-step-args":
        return "?prefix=step-new&step-new-name=date_parse"
    if name == "migration:snapshot-diff":
        s = world["snapshot"]
        return f"?old={s.pk}&new={world['snapshot2'].pk}"
    return ""


@pytest.fixture
def matrix_world(world: dict[str, Any], auditor: Any) -> dict[str, Any]:
    world["row"] = CrosswalkRow.objects.filter(
        crosswalk__project=world["project"], status=ReviewStatus.PROPOSED
    ).first()
    world["snapshot2"] = SchemaSnapshot.objects.create(
        project=world["project"],
        connector=world["source"],
        tables=world["snapshot"].tables[1:],
        profiles={},
        fingerprint="changed",
    )
    from django.conf import settings

    world["export"] = evidence_export(
        actor=auditor,
        run=world["run"],
        out_path=settings.PAS_DATA_DIR / "matrix-evidence.zip",
    )
    return world


def test_authorization_matrix(
    matrix_world: dict[str, Any],
    dm_engineer: Any,
    steward: Any,
    other_steward: Any,
    auditor: Any,
) -> None:
    world = matrix_world
    users = {
        "anonymous": None,
        "other_steward": other_steward,
        "auditor": auditor,
        "dm_engineer": dm_engineer,
        "steward": steward,
    }
    kwargs = _kwargs(world)
    failures = []
    for name, (method, expected) in POLICY.items():
        url = _url(name, kwargs) + _query(name, world)
        for role in ROLES:
            client = Client()
            if users[role] is not None:
                client.force_login(users[role])
            passes = [{}]
            if name in FRAGMENTS and method == "GET":
                passes.append(
                    {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": FRAGMENTS[name]}
                )
            for headers in passes:
                if method == "GET":
                    response = client.get(url, **headers)
                else:
                    response = client.post(url, _data(name, world), **headers)
                got = response.status_code
                if got != expected[role]:
                    failures.append(
                        f"{name} {method} as {role}{' (htmx)' if headers else ''}: "
                        f"{got}, expected {expected[role]}"
                    )
                if role == "anonymous" and got == 302:
                    assert response["Location"].startswith("/accounts/login/")
    assert not failures, "\n".join(failures)


def test_other_projects_steward_changes_nothing(
    matrix_world: dict[str, Any], other_steward: Any
) -> None:
    world = matrix_world
    client = Client()
    client.force_login(other_steward)
    fm = world["theirs"][0]
    url = reverse("migration:fieldmapping-review", args=[world["project"].pk, fm.pk])
    assert client.post(url, {"verb": "approve"}).status_code == 404
    fm.refresh_from_db()
    assert fm.status == ReviewStatus.PROPOSED


def test_csrf_refuses_every_unsafe_route(
    matrix_world: dict[str, Any], dm_engineer: Any, steward: Any, auditor: Any
) -> None:
    world = matrix_world
    kwargs = _kwargs(world)
    before = FieldMapping.objects.filter(status=ReviewStatus.APPROVED).count()
    posts = [n for n, (m, _) in POLICY.items() if m == "POST"]
    assert posts
    for name in posts:
        _, expected = POLICY[name]
        allowed = next((r for r in ROLES if expected[r] in (200, 302)), "steward")
        user = {"dm_engineer": dm_engineer, "steward": steward, "auditor": auditor}.get(
            allowed, steward
        )
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        response = client.post(_url(name, kwargs), _data(name, world))
        assert response.status_code == 403, name
        assert b"CSRF" in response.content, name
    assert FieldMapping.objects.filter(status=ReviewStatus.APPROVED).count() == before


NHS_NUMBER = re.compile(r"(?<!\d)\d{10}(?!\d)")
LINK = re.compile(r'(?:href|action|hx-get|hx-post)="([^"]+)"')


def test_patient_pages_are_no_store_and_links_carry_no_identifiers(
    matrix_world: dict[str, Any], steward: Any
) -> None:
    world = matrix_world
    kwargs = _kwargs(world)
    client = Client()
    client.force_login(steward)
    for name in PATIENT_DATA:
        response = client.get(_url(name, kwargs))
        assert response.status_code == 200, name
        assert "no-store" in response["Cache-Control"], name
    seen = 0
    for name, (method, expected) in POLICY.items():
        if method != "GET" or expected["steward"] != 200 or "download" in name:
            continue
        if name.endswith("-export"):
            continue
        html = client.get(_url(name, kwargs) + _query(name, world)).content.decode()
        for link in LINK.findall(html):
            seen += 1
            assert not NHS_NUMBER.search(link), (name, link)
    dashboard = client.get("/").content.decode()
    for link in LINK.findall(dashboard):
        assert not NHS_NUMBER.search(link), link
    assert seen > 50
