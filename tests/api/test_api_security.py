"""S2, S3, S7 and bad input through the API.

- IDOR: users of project A get 404 (or 400 for ids in a body) for every
  object endpoint given project B's objects, and nothing changes.
- Model-level permissions and superuser status show 0 rows in every list.
- Patient values in rejects are masked without view_pid; connector secrets
  (even references) never appear.
- Malformed JSON, wrong types, unknown ids, illegal transitions, oversized
  pages, wrong media types: 4xx with the error body, and no side effect; an
  unexpected exception is a generic 500 with no text from the exception.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.urls import get_resolver, reverse
from rest_framework.test import APIClient

from governance.models import AuditEvent
from migration.models import Run, RunState

PID = "9434765919"
SECRET = "env:PAS_CANARY_LEGACY_PASSWORD"
B_MARKERS = ("legacy-b", "target-b", "sex-b", "PAS to target b")


def _state() -> dict[str, int]:
    counts = {
        m._meta.label: m.objects.count()
        for label in ("connectors", "migration", "governance")
        for m in apps.get_app_config(label).get_models()
        if m is not AuditEvent
    }
    counts["audit"] = AuditEvent.objects.exclude(data__has_key="refused").count()
    return counts


def _api_names() -> dict[str, list[str]]:
    """Return {url name: route kwargs} for every API route."""
    resolver = get_resolver()
    out: dict[str, list[str]] = {}
    api = resolver.namespace_dict["api"][1]
    for key, values in api.reverse_dict.lists():
        if isinstance(key, str):
            out[key] = list(values[0][0][0][1])
    return out


# Object endpoints: (url name, method, world key, body) — every one that takes
# an object id in its URL.
OBJECT_ENDPOINTS: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("project-detail", "get", "project", None),
    ("connector-detail", "get", "source", None),
    ("connector-health", "get", "source", None),
    ("connector-check", "post", "source", {}),
    ("snapshot-detail", "get", "snapshot", None),
    ("snapshot-profile", "get", "snapshot", None),
    ("snapshot-diff", "get", "snapshot", None),
    ("mapping-set-detail", "get", "mapping_set", None),
    ("mapping-set-unmapped", "get", "mapping_set", None),
    ("mapping-set-suggest", "post", "mapping_set", {}),
    ("mapping-set-drift", "post", "mapping_set", {}),
    ("table-mapping-detail", "get", "table_mapping", None),
    ("field-mapping-detail", "get", "field_mapping", None),
    ("field-mapping-detail", "patch", "field_mapping", {"waived": True}),
    ("field-mapping-propose", "post", "field_mapping_draft", {}),
    ("field-mapping-approve", "post", "field_mapping", {}),
    ("field-mapping-flag", "post", "field_mapping", {}),
    ("field-mapping-reject", "post", "field_mapping", {}),
    ("field-mapping-preview", "get", "field_mapping", None),
    ("field-mapping-preview", "post", "field_mapping", {}),
    ("exclusion-rule-detail", "get", "exclusion_rule", None),
    ("exclusion-rule-propose", "post", "exclusion_rule_draft", {}),
    ("exclusion-rule-approve", "post", "exclusion_rule", {}),
    ("exclusion-rule-flag", "post", "exclusion_rule", {}),
    ("exclusion-rule-reject", "post", "exclusion_rule", {}),
    ("code-system-detail", "get", "code_system", None),
    ("crosswalk-detail", "get", "crosswalk", None),
    ("crosswalk-export", "get", "crosswalk", None),
    ("crosswalk-import-csv", "post", "crosswalk", {}),
    ("crosswalk-row-detail", "get", "crosswalk_row", None),
    ("crosswalk-row-propose", "post", "crosswalk_row_draft", {}),
    ("crosswalk-row-approve", "post", "crosswalk_row", {}),
    ("crosswalk-row-flag", "post", "crosswalk_row", {}),
    ("crosswalk-row-reject", "post", "crosswalk_row", {}),
    ("miss-queue-detail", "get", "miss", None),
    (
        "miss-queue-resolve",
        "post",
        "miss",
        {"target_code": "1", "equivalence": "equal"},
    ),
    ("miss-queue-ignore", "post", "miss", {"note": "typo"}),
    ("miss-queue-reopen", "post", "miss_ignored", {}),
    ("contract-detail", "get", "contract", None),
    ("contract-export-json", "get", "contract", None),
    ("contract-export-markdown", "get", "contract", None),
    ("run-detail", "get", "run_ok", None),
    ("run-progress", "get", "run_ok", None),
    ("run-report", "get", "run_ok", None),
    ("run-ledger", "get", "run_ok", None),
    ("run-reconciliation", "get", "run_ok", None),
    ("run-rejects", "get", "run_ok", None),
    ("run-rejects-csv", "get", "run_ok", None),
    ("run-cancel", "post", "run_queued", {}),
    ("run-resume", "post", "run_failed", {}),
    ("gate-evaluation-detail", "get", "gate", None),
    ("waiver-detail", "get", "waiver", None),
    ("waiver-approve", "post", "waiver", {}),
    ("waiver-revoke", "post", "waiver", {"reason": "withdrawn"}),
    ("signoff-detail", "get", "signoff", None),
    ("evidence-export-detail", "get", "evidence", None),
    ("evidence-export-download", "get", "evidence", None),
]


def test_object_endpoint_list_is_complete() -> None:
    """Every API route with an id in its URL is covered by the IDOR test."""
    with_ids = {name for name, params in _api_names().items() if params}
    covered = {name for name, *_ in OBJECT_ENDPOINTS} | {"audit-event-detail"}
    assert with_ids <= covered, sorted(with_ids - covered)


@pytest.fixture
def sessions(
    dm_engineer: Any, steward: Any, auditor: Any, migration_lead: Any, ig_lead: Any
) -> dict[str, APIClient]:
    out = {}
    for role, user in (
        ("dm", dm_engineer),
        ("steward", steward),
        ("auditor", auditor),
        ("lead", migration_lead),
        ("ig", ig_lead),
    ):
        client = APIClient()
        client.force_login(user)
        out[role] = client
    return out


def test_idor_project_a_cannot_touch_project_b(
    world: dict[str, Any], world_b: dict[str, Any], sessions: dict[str, APIClient]
) -> None:
    """A's members get 404 for every B object, by any method, and nothing changes."""
    failures = []
    for role, client in sessions.items():
        for name, method, key, body in OBJECT_ENDPOINTS:
            if name == "code-system-detail":
                continue  # shared reference data, not a project's object
            before = _state()
            url = reverse(f"api:{name}", kwargs={"pk": world_b[key].pk})
            response = getattr(client, method)(url, body, format="json")
            if response.status_code != 404:
                failures.append(f"{role} {method} {name}: {response.status_code}")
            if _state() != before:
                failures.append(f"{role} {method} {name}: side effect")
        url = reverse(
            "api:audit-event-detail", kwargs={"seq": world_b["audit_event"].seq}
        )
        if client.get(url).status_code != 404:
            failures.append(f"{role} audit-event-detail of B")
    assert not failures, failures


def test_idor_ids_of_b_in_bodies_and_queries(
    world: dict[str, Any], world_b: dict[str, Any], sessions: dict[str, APIClient]
) -> None:
    """B's ids in a body or query read like unknown ids: 400/404/403, no change."""
    a, b = world, world_b
    cases = [
        (
            "run-list",
            {
                "contract": b["contract"].pk,
                "source": a["source"].pk,
                "target": a["target"].pk,
            },
            400,
        ),
        (
            "run-list",
            {
                "contract": a["contract"].pk,
                "source": b["source"].pk,
                "target": a["target"].pk,
            },
            400,
        ),
        ("snapshot-list", {"connector": b["source"].pk}, 400),
        ("mapping-set-list", {"name": "x", "source_snapshot": b["snapshot"].pk}, 400),
        (
            "table-mapping-list",
            {
                "mapping_set": b["mapping_set"].pk,
                "target_table": "t",
                "source_table": "s",
                "source_key": "k",
            },
            400,
        ),
        (
            "field-mapping-list",
            {"table_mapping": b["table_mapping"].pk, "target_field": "gender"},
            400,
        ),
        ("contract-list", {"mapping_set": b["mapping_set"].pk}, 400),
        (
            "gate-evaluation-list",
            {"run": b["run_ok"].pk, "profile": "development"},
            400,
        ),
        (
            "signoff-list",
            {"run": b["run_ok"].pk, "role": "data_steward", "decision": "approve"},
            400,
        ),
        ("evidence-export-list", {"run": b["run_ok"].pk}, 400),
        (
            "waiver-list",
            {
                "project": b["project"].pk,
                "check_id": "reject_rate",
                "profile": "pre_production",
                "reason": "r",
                "expires_at": "2099-01-01T00:00:00Z",
            },
            400,
        ),
        (
            "field-mapping-bulk",
            {"action": "approve", "ids": [b["field_mapping"].pk]},
            403,
        ),
        (
            "crosswalk-row-bulk",
            {"action": "approve", "ids": [b["crosswalk_row"].pk]},
            403,
        ),
    ]
    for role, client in sessions.items():
        for name, body, want in cases:
            before = _state()
            response = client.post(reverse(f"api:{name}"), body, format="json")
            assert response.status_code == want, (role, name, response.content)
            assert "error" in response.json()
            assert _state() == before, (role, name)
    # Mixed: an A object compared with / queried by a B id.
    client = sessions["steward"]
    diff = reverse("api:snapshot-diff", kwargs={"pk": a["snapshot"].pk})
    assert client.get(diff, {"against": b["snapshot"].pk}).status_code == 404
    status = reverse("api:signoff-status")
    assert client.get(status, {"run": b["run_ok"].pk}).status_code == 404
    drift = reverse("api:mapping-set-drift", kwargs={"pk": a["mapping_set"].pk})
    assert (
        client.post(drift, {"snapshot": b["snapshot"].pk}, format="json").status_code
        == 400
    )


def test_lists_never_show_another_projects_objects(
    world: dict[str, Any], world_b: dict[str, Any], sessions: dict[str, APIClient]
) -> None:
    """Every list, as every A role, is free of B's objects."""
    names = [
        n for n, params in _api_names().items() if n.endswith("-list") and not params
    ]
    for role, client in sessions.items():
        for name in names:
            response = client.get(reverse(f"api:{name}"), {"page_size": 500})
            assert response.status_code == 200, (role, name)
            text = response.content.decode()
            for marker in B_MARKERS:
                assert marker not in text, (role, name, marker)
            projects = {
                r.get("project") for r in response.json()["results"] if "project" in r
            }
            assert world_b["project"].pk not in projects, (role, name)


def test_model_permissions_and_superuser_see_nothing(
    world: dict[str, Any], world_b: dict[str, Any], make_user: Any
) -> None:
    """S3: global (model-level) permissions and superuser status grant 0 rows."""
    global_user = make_user("global.perms")
    for codename in (
        "view_migrationproject",
        "view_pid",
        "view_audit",
        "export_evidence",
        "view_run",
        "view_connector",
        "view_contract",
        "view_auditevent",
        "view_codesystem",
        "view_fieldmapping",
    ):
        global_user.user_permissions.add(*Permission.objects.filter(codename=codename))
    superuser = make_user("root", is_superuser=True, is_staff=True)
    names = [
        n for n, params in _api_names().items() if n.endswith("-list") and not params
    ]
    assert len(names) >= 15
    for user in (global_user, superuser):
        client = APIClient()
        client.force_login(user)
        for name in names:
            response = client.get(reverse(f"api:{name}"))
            assert response.status_code == 200, (user, name)
            assert response.json()["count"] == 0, (user.username, name)
        detail = reverse("api:run-detail", kwargs={"pk": world["run_ok"].pk})
        assert client.get(detail).status_code == 404


def test_rejects_masked_without_view_pid_and_audited_with_it(
    world: dict[str, Any], sessions: dict[str, APIClient]
) -> None:
    """The DM engineer sees shapes only; the steward (view_pid) sees values, audited."""
    run = world["run_ok"]
    urls = [
        reverse("api:run-rejects", kwargs={"pk": run.pk}),
        reverse("api:run-rejects-csv", kwargs={"pk": run.pk}),
        reverse("api:run-report", kwargs={"pk": run.pk}),
    ]
    for url in urls:
        for role in ("dm", "auditor", "lead"):
            body = sessions[role].get(url).content.decode()
            assert PID not in body, (role, url)
    before = AuditEvent.objects.filter(action="migration.rejects.pid_viewed").count()
    page = sessions["steward"].get(urls[0]).json()
    assert page["results"][0]["raw_value"] == PID
    assert page["results"][0]["masked"] is False
    after = AuditEvent.objects.filter(action="migration.rejects.pid_viewed").count()
    assert after == before + 1
    # The report never carries row-level flagged values or server paths.
    report = sessions["steward"].get(urls[2]).json()
    assert "flagged" not in report and "reject_csv" not in report
    assert report["flagged_count"] == 1


def test_connector_secrets_never_shown(
    world: dict[str, Any], sessions: dict[str, APIClient]
) -> None:
    """Secret fields show as ******** and the reference itself appears nowhere."""
    for role, client in sessions.items():
        for url in (
            reverse("api:connector-list"),
            reverse("api:connector-detail", kwargs={"pk": world["target"].pk}),
        ):
            text = client.get(url).content.decode()
            assert SECRET not in text and "PAS_CANARY" not in text, (role, url)
    data = (
        sessions["dm"]
        .get(reverse("api:connector-detail", kwargs={"pk": world["target"].pk}))
        .json()
    )
    assert data["config"]["password"] == "********"
    assert data["secret_fields"] == ["password"]


# --- bad input -------------------------------------------------------------------


def _assert_error(
    response: Any, status: int, code: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code, error
    return error


def test_bad_input_is_4xx_with_error_body_and_no_side_effect(
    world: dict[str, Any], sessions: dict[str, APIClient]
) -> None:
    """Malformed JSON, wrong types, unknown ids, wrong media type, bad pages."""
    client = sessions["dm"]
    runs = reverse("api:run-list")
    before = _state()
    _assert_error(
        client.post(runs, data='{"contract": ', content_type="application/json"),
        400,
        "malformed_request",
    )
    error = _assert_error(
        client.post(
            runs, {"contract": "abc", "source": [1], "target": None}, format="json"
        ),
        400,
        "invalid",
    )
    assert {"contract", "source", "target"} <= error["fields"].keys()
    _assert_error(
        client.post(
            runs,
            {
                "contract": 999999,
                "source": world["source"].pk,
                "target": world["target"].pk,
            },
            format="json",
        ),
        400,
        "invalid",
    )
    _assert_error(
        client.post(runs, data="contract=1", content_type="text/plain"),
        415,
        "unsupported_media_type",
    )
    _assert_error(
        client.post(
            runs,
            {
                "contract": world["contract"].pk,
                "source": world["source"].pk,
                "target": world["target"].pk,
                "profile": "production_please",
            },
            format="json",
        ),
        400,
        "invalid",
    )
    _assert_error(
        client.post(reverse("api:run-cancel", kwargs={"pk": 999999})), 404, "not_found"
    )
    _assert_error(
        client.get(reverse("api:run-detail", kwargs={"pk": 999999})), 404, "not_found"
    )
    _assert_error(
        client.post(
            reverse("api:field-mapping-bulk"),
            {"action": "approve", "ids": "1,2"},
            format="json",
        ),
        400,
        "invalid",
    )
    assert _state() == before
    # pages: oversized, non-numeric, out of range
    _assert_error(client.get(runs, {"page_size": 501}), 400, "invalid")
    _assert_error(client.get(runs, {"page_size": "lots"}), 400, "invalid")
    _assert_error(client.get(runs, {"page_size": 0}), 400, "invalid")
    _assert_error(client.get(runs, {"page": 99}), 404, "not_found")
    rejects = reverse("api:run-rejects", kwargs={"pk": world["run_ok"].pk})
    _assert_error(client.get(rejects, {"page_size": 10_000}), 400, "invalid")
    _assert_error(client.get(rejects, {"page": 5}), 404, "not_found")
    ok = client.get(runs, {"page_size": 500})
    assert ok.status_code == 200 and ok.json()["count"] == 3
    _assert_error(
        client.get(reverse("api:audit-event-list"), {"since": "yesterday"}),
        400,
        "invalid",
    )
    _assert_error(
        client.get(reverse("api:signoff-status"), {"run": "x"}), 400, "invalid"
    )


def test_illegal_transitions_are_409_and_change_nothing(
    world: dict[str, Any], sessions: dict[str, APIClient]
) -> None:
    """Resume a succeeded run, cancel a cancelled one: 409, state unchanged."""
    client = sessions["dm"]
    ok = world["run_ok"]
    before = _state()
    _assert_error(
        client.post(reverse("api:run-resume", kwargs={"pk": ok.pk})),
        409,
        "illegal_transition",
    )
    assert _state() == before
    assert Run.objects.get(pk=ok.pk).state == RunState.SUCCEEDED
    queued = world["run_queued"]
    cancel = reverse("api:run-cancel", kwargs={"pk": queued.pk})
    first = client.post(cancel)
    assert first.status_code == 200 and first.json()["state"] == RunState.CANCELLED
    before = _state()
    _assert_error(client.post(cancel), 409, "illegal_transition")
    assert _state() == before
    # Four eyes: the steward who last changed a mapping cannot approve it.
    steward = sessions["steward"]
    fm = world["field_mapping"]
    assert (
        steward.patch(
            reverse("api:field-mapping-detail", kwargs={"pk": fm.pk}),
            {"source_columns": ["NHSNo", "PatID"]},
            format="json",
        ).status_code
        == 200
    )
    before = _state()
    _assert_error(
        steward.post(
            reverse("api:field-mapping-approve", kwargs={"pk": fm.pk}),
            {},
            format="json",
        ),
        409,
        "four_eyes",
    )
    assert _state() == before


def test_unexpected_errors_are_generic_500s(
    world: dict[str, Any], sessions: dict[str, APIClient], monkeypatch: Any
) -> None:
    """No traceback, SQL or exception text in a 500; the request id is quoted."""

    def boom(**kwargs: Any) -> Any:
        raise RuntimeError("SELECT * FROM pg_shadow WHERE password='hunter2'")

    monkeypatch.setattr("migration.api.views.run_cancel", boom)
    client = sessions["dm"]
    client.raise_request_exception = False
    response = client.post(
        reverse("api:run-cancel", kwargs={"pk": world["run_queued"].pk})
    )
    error = _assert_error(response, 500, "server_error")
    text = response.content.decode()
    for leak in ("hunter2", "SELECT", "Traceback", "RuntimeError", "pg_shadow"):
        assert leak not in text
    assert response["X-Request-ID"] in error["message"]
