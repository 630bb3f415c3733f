"""S1: every API route x method x role against a declared policy table.

The test walks Django's URL resolver (recursing into ``include``s and the DRF
router's routes) for everything under ``/api/v1/``; a route or method missing
from ``POLICY`` fails, and so does a ``POLICY`` entry no route serves. Each
request runs in a savepoint that is rolled back, so every role meets the same
state; a refused unsafe request must leave every domain table and the audit
trail (refusal records aside) exactly as it was.

Roles: ``anon`` (no credentials), ``dm`` (DM engineer, session), ``steward``
(data steward, session), ``other`` (steward of ANOTHER project), ``auditor``,
``token`` (a REST client holding the DM engineer role, ``Authorization: Token``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from governance.models import AuditEvent

ROLES = ("anon", "dm", "steward", "other", "auditor", "token")
API_PREFIX = "api/v1/"


@dataclass(frozen=True)
class Rule:
    """Expected status per role for one route and method, and how to call it."""

    expected: dict[str, int]
    obj: str | None = None  # world key whose pk fills the route's id
    body: Callable[[dict[str, Any]], Any] | None = None
    query: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    fmt: str = "json"
    lookup: str = "pk"
    attr: str = "pk"
    extra: dict[str, Any] = field(default_factory=dict)


def expect(spec: str) -> dict[str, int]:
    """Parse ``"anon dm steward other auditor token"`` status codes."""
    codes = [int(c) for c in spec.split()]
    assert len(codes) == len(ROLES), spec
    return dict(zip(ROLES, codes, strict=True))


#                 anon  dm  stew other aud token
LIST = expect("401 200 200 200 200 200")
DETAIL = expect("401 200 200 404 200 200")
GLOBAL = expect("401 200 200 200 200 200")  # reference data: any project member


def _csv(w: dict[str, Any]) -> dict[str, Any]:
    return {
        "file": SimpleUploadedFile(
            "rows.csv",
            b"local_code,local_display,target_code,equivalence,rationale\n"
            b"F,Female,1,equal,\n",
            content_type="text/csv",
        )
    }


def _future() -> str:
    return (timezone.now() + timezone.timedelta(days=3)).isoformat()


# (URL name, HTTP method) -> Rule. The single source of truth for who may do what.
POLICY: dict[tuple[str, str], Rule] = {
    # --- root, schema and docs
    ("api-root", "GET"): Rule(GLOBAL),
    ("schema", "GET"): Rule(GLOBAL),
    ("docs", "GET"): Rule(GLOBAL),
    ("redoc", "GET"): Rule(GLOBAL),
    # --- projects and audit
    ("project-list", "GET"): Rule(LIST),
    ("project-detail", "GET"): Rule(DETAIL, obj="project"),
    ("audit-event-list", "GET"): Rule(LIST),  # rows only with view_audit
    ("audit-event-detail", "GET"): Rule(
        expect("401 404 404 404 200 404"), obj="audit_event", lookup="seq", attr="seq"
    ),
    # --- connectors
    ("connector-list", "GET"): Rule(LIST),
    ("connector-detail", "GET"): Rule(DETAIL, obj="source"),
    ("connector-health", "GET"): Rule(DETAIL, obj="source"),
    ("connector-check", "POST"): Rule(expect("401 200 403 404 403 200"), obj="source"),
    # --- snapshots
    ("snapshot-list", "GET"): Rule(LIST),
    ("snapshot-list", "POST"): Rule(
        expect("401 201 403 400 403 201"),
        body=lambda w: {"connector": w["source"].pk, "profile_rows": 10},
    ),
    ("snapshot-detail", "GET"): Rule(DETAIL, obj="snapshot"),
    ("snapshot-diff", "GET"): Rule(
        DETAIL, obj="snapshot2", query=lambda w: {"against": w["snapshot"].pk}
    ),
    ("snapshot-profile", "GET"): Rule(
        DETAIL, obj="snapshot", query=lambda w: {"table": "PA_PatMas"}
    ),
    # --- mapping sets, table and field mappings
    ("mapping-set-list", "GET"): Rule(LIST),
    ("mapping-set-list", "POST"): Rule(
        expect("401 201 201 400 403 201"),
        body=lambda w: {"name": "new set", "source_snapshot": w["snapshot"].pk},
    ),
    # the world's snapshot lacks the default contract's tables: members who may
    # edit get the 400 naming it, the auditor the 403 (test_api_mapping_import
    # shows the 201 on a real snapshot)
    ("mapping-set-import-default", "POST"): Rule(
        expect("401 400 400 400 403 400"),
        body=lambda w: {"source_snapshot": w["snapshot"].pk},
    ),
    ("mapping-set-detail", "GET"): Rule(DETAIL, obj="mapping_set"),
    ("mapping-set-unmapped", "GET"): Rule(DETAIL, obj="mapping_set"),
    ("mapping-set-suggest", "POST"): Rule(
        expect("401 200 200 404 403 200"), obj="mapping_set"
    ),
    ("mapping-set-drift", "POST"): Rule(
        expect("401 200 200 404 403 200"),
        obj="mapping_set",
        body=lambda w: {"snapshot": w["snapshot2"].pk},
    ),
    ("table-mapping-list", "GET"): Rule(LIST),
    ("table-mapping-list", "POST"): Rule(
        expect("401 201 201 400 403 201"),
        body=lambda w: {
            "mapping_set": w["mapping_set"].pk,
            "target_table": "inpatient_spell",
            "source_table": "PA_Adm",
            "source_key": "AdmID",
        },
    ),
    ("table-mapping-detail", "GET"): Rule(DETAIL, obj="table_mapping"),
    ("field-mapping-list", "GET"): Rule(LIST),
    ("field-mapping-list", "POST"): Rule(
        expect("401 201 201 400 403 201"),
        body=lambda w: {
            "table_mapping": w["table_mapping"].pk,
            "target_field": "gender",
            "source_columns": ["Sex"],
        },
    ),
    ("field-mapping-for-review", "GET"): Rule(LIST),
    ("field-mapping-detail", "GET"): Rule(DETAIL, obj="field_mapping"),
    ("field-mapping-detail", "PATCH"): Rule(
        expect("401 200 200 404 403 200"),
        obj="field_mapping",
        body=lambda w: {"source_columns": ["NHSNo", "PatID"]},
    ),
    ("field-mapping-propose", "POST"): Rule(
        expect("401 200 200 404 403 200"), obj="field_mapping_draft"
    ),
    ("field-mapping-approve", "POST"): Rule(
        expect("401 403 200 404 403 403"), obj="field_mapping", body=lambda w: {}
    ),
    ("field-mapping-flag", "POST"): Rule(
        expect("401 403 200 404 403 403"),
        obj="field_mapping",
        body=lambda w: {"comment": "check the source"},
    ),
    ("field-mapping-reject", "POST"): Rule(
        expect("401 403 200 404 403 403"),
        obj="field_mapping",
        body=lambda w: {"comment": "wrong column"},
    ),
    ("field-mapping-preview", "GET"): Rule(DETAIL, obj="field_mapping"),
    ("field-mapping-preview", "POST"): Rule(
        DETAIL,
        obj="field_mapping",
        body=lambda w: {"transforms": [{"name": "trim", "args": {}}]},
    ),
    ("field-mapping-bulk", "POST"): Rule(
        expect("401 403 200 403 403 403"),
        body=lambda w: {"action": "approve", "ids": [w["field_mapping"].pk]},
    ),
    ("exclusion-rule-list", "GET"): Rule(LIST),
    ("exclusion-rule-list", "POST"): Rule(
        expect("401 201 201 400 403 201"),
        body=lambda w: {
            "table_mapping": w["table_mapping"].pk,
            "column": "NHSNo",
            "op": "eq",
            "values": ["0000000000"],
            "reason": "placeholder_number",
        },
    ),
    ("exclusion-rule-detail", "GET"): Rule(DETAIL, obj="exclusion_rule"),
    ("exclusion-rule-propose", "POST"): Rule(
        expect("401 200 200 404 403 200"), obj="exclusion_rule_draft"
    ),
    ("exclusion-rule-approve", "POST"): Rule(
        expect("401 403 200 404 403 403"), obj="exclusion_rule", body=lambda w: {}
    ),
    ("exclusion-rule-flag", "POST"): Rule(
        expect("401 403 200 404 403 403"),
        obj="exclusion_rule",
        body=lambda w: {"comment": "why these rows?"},
    ),
    ("exclusion-rule-reject", "POST"): Rule(
        expect("401 403 200 404 403 403"),
        obj="exclusion_rule",
        body=lambda w: {"comment": "these rows migrate"},
    ),
    ("exclusion-rule-bulk", "POST"): Rule(
        expect("401 403 200 403 403 403"),
        body=lambda w: {"action": "approve", "ids": [w["exclusion_rule"].pk]},
    ),
    # --- code systems, crosswalks, rows, miss queue
    ("code-system-list", "GET"): Rule(LIST),
    ("code-system-detail", "GET"): Rule(GLOBAL, obj="code_system"),
    ("crosswalk-list", "GET"): Rule(LIST),
    ("crosswalk-seed-defaults", "POST"): Rule(
        expect("401 200 200 400 403 200"),
        body=lambda w: {"project": w["project"].pk},
    ),
    ("crosswalk-detail", "GET"): Rule(DETAIL, obj="crosswalk"),
    ("crosswalk-export", "GET"): Rule(DETAIL, obj="crosswalk"),
    ("crosswalk-import-csv", "POST"): Rule(
        expect("401 200 200 404 403 200"),
        obj="crosswalk",
        body=_csv,
        fmt="multipart",
    ),
    ("crosswalk-row-list", "GET"): Rule(LIST),
    ("crosswalk-row-detail", "GET"): Rule(DETAIL, obj="crosswalk_row"),
    ("crosswalk-row-propose", "POST"): Rule(
        expect("401 200 200 404 403 200"), obj="crosswalk_row_draft"
    ),
    ("crosswalk-row-approve", "POST"): Rule(
        expect("401 403 200 404 403 403"), obj="crosswalk_row", body=lambda w: {}
    ),
    ("crosswalk-row-flag", "POST"): Rule(
        expect("401 403 200 404 403 403"),
        obj="crosswalk_row",
        body=lambda w: {"comment": "check"},
    ),
    ("crosswalk-row-reject", "POST"): Rule(
        expect("401 403 200 404 403 403"),
        obj="crosswalk_row",
        body=lambda w: {"comment": "no"},
    ),
    ("crosswalk-row-bulk", "POST"): Rule(
        expect("401 403 200 403 403 403"),
        body=lambda w: {"action": "approve", "ids": [w["crosswalk_row"].pk]},
    ),
    ("miss-queue-list", "GET"): Rule(LIST),
    ("miss-queue-detail", "GET"): Rule(DETAIL, obj="miss"),
    ("miss-queue-resolve", "POST"): Rule(
        expect("401 201 201 404 403 201"),
        obj="miss",
        body=lambda w: {
            "target_code": "1",
            "equivalence": "equal",
            "rationale": "X is male",
        },
    ),
    ("miss-queue-ignore", "POST"): Rule(
        expect("401 200 200 404 403 200"),
        obj="miss",
        body=lambda w: {"note": "a data-entry error"},
    ),
    ("miss-queue-reopen", "POST"): Rule(
        expect("401 200 200 404 403 200"), obj="miss_ignored", body=lambda w: {}
    ),
    # --- contracts (publishing an unapproved set is a 409 for those allowed)
    ("contract-list", "GET"): Rule(LIST),
    ("contract-list", "POST"): Rule(
        expect("401 409 403 400 403 409"),
        body=lambda w: {"mapping_set": w["mapping_set"].pk},
    ),
    ("contract-detail", "GET"): Rule(DETAIL, obj="contract"),
    ("contract-export-json", "GET"): Rule(DETAIL, obj="contract"),
    ("contract-export-markdown", "GET"): Rule(DETAIL, obj="contract"),
    # --- runs
    ("run-list", "GET"): Rule(LIST),
    ("run-list", "POST"): Rule(
        expect("401 201 403 400 403 201"),
        body=lambda w: {
            "contract": w["contract"].pk,
            "source": w["source"].pk,
            "target": w["target"].pk,
        },
    ),
    ("run-detail", "GET"): Rule(DETAIL, obj="run_ok"),
    ("run-progress", "GET"): Rule(DETAIL, obj="run_ok"),
    ("run-report", "GET"): Rule(DETAIL, obj="run_ok"),
    ("run-ledger", "GET"): Rule(DETAIL, obj="run_ok"),
    ("run-reconciliation", "GET"): Rule(DETAIL, obj="run_ok"),
    ("run-rejects", "GET"): Rule(DETAIL, obj="run_ok"),
    ("run-rejects-csv", "GET"): Rule(DETAIL, obj="run_ok"),
    ("run-cancel", "POST"): Rule(expect("401 200 403 404 403 200"), obj="run_queued"),
    ("run-resume", "POST"): Rule(expect("401 200 403 404 403 200"), obj="run_failed"),
    # --- gates, waivers, sign-offs, evidence
    ("gate-evaluation-list", "GET"): Rule(LIST),
    ("gate-evaluation-list", "POST"): Rule(
        expect("401 201 403 400 403 201"),
        body=lambda w: {"run": w["run_ok"].pk, "profile": "development"},
    ),
    ("gate-evaluation-detail", "GET"): Rule(DETAIL, obj="gate"),
    ("waiver-list", "GET"): Rule(LIST),
    ("waiver-list", "POST"): Rule(
        expect("401 201 403 400 403 201"),
        body=lambda w: {
            "project": w["project"].pk,
            "check_id": "reject_rate",
            "profile": "pre_production",
            "reason": "legacy defect, fixed at source next quarter",
            "expires_at": _future(),
        },
    ),
    ("waiver-detail", "GET"): Rule(DETAIL, obj="waiver"),
    # Approving needs approve_waiver: none of the matrix roles holds it.
    ("waiver-approve", "POST"): Rule(expect("401 403 403 404 403 403"), obj="waiver"),
    # Revoking needs approve_waiver too.
    ("waiver-revoke", "POST"): Rule(
        expect("401 403 403 404 403 403"),
        obj="waiver",
        body=lambda w: {"reason": "the clean-up was not done"},
    ),
    ("signoff-list", "GET"): Rule(LIST),
    ("signoff-list", "POST"): Rule(
        expect("401 403 201 400 403 403"),
        body=lambda w: {
            "run": w["run_ok"].pk,
            "role": "data_steward",
            "decision": "approve",
        },
    ),
    ("signoff-status", "GET"): Rule(DETAIL, query=lambda w: {"run": w["run_ok"].pk}),
    ("signoff-detail", "GET"): Rule(DETAIL, obj="signoff"),
    ("evidence-export-list", "GET"): Rule(LIST),  # rows only with export_evidence
    ("evidence-export-list", "POST"): Rule(
        expect("401 403 403 400 201 403"), body=lambda w: {"run": w["run_ok"].pk}
    ),
    ("evidence-export-detail", "GET"): Rule(
        expect("401 404 404 404 200 404"), obj="evidence"
    ),
    ("evidence-export-download", "GET"): Rule(
        expect("401 404 404 404 200 404"), obj="evidence"
    ),
}


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        else:
            yield prefix + str(p.pattern), p


def _methods(pattern: URLPattern) -> list[str]:
    callback = pattern.callback
    actions = getattr(callback, "actions", None)
    if actions:  # a DRF viewset route: exactly the methods the router bound
        # DRF binds HEAD to the GET handler: same code, so the GET rule covers it.
        return sorted(m.upper() for m in actions if m != "head")
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    assert cls is not None, f"{pattern.name}: not a class-based view"
    return [
        m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(cls, m)
    ]


def api_routes() -> list[tuple[str, str, str]]:
    """Return (url name, method, route) for every route under /api/v1/."""
    out = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if not route.startswith(API_PREFIX):
            continue
        assert pattern.name, f"unnamed API route {route}"
        for method in _methods(pattern):
            out.append((pattern.name, method, route))
    return out


def _state() -> dict[str, int]:
    """Row counts of every domain table, and of non-refusal audit events."""
    counts = {}
    for label in ("connectors", "migration", "governance"):
        for model in apps.get_app_config(label).get_models():
            if model is AuditEvent:
                continue
            counts[model._meta.label] = model.objects.count()
    counts["audit (non-refusal)"] = AuditEvent.objects.exclude(
        data__has_key="refused"
    ).count()
    return counts


def _call(client: Any, name: str, method: str, rule: Rule, w: dict[str, Any]) -> Any:
    kwargs = {}
    if rule.obj:
        kwargs[rule.lookup] = getattr(w[rule.obj], rule.attr)
    url = reverse(f"api:{name}", kwargs=kwargs)
    query = rule.query(w) if rule.query else {}
    if method == "GET":
        return client.get(url, query)
    body = rule.body(w) if rule.body else None
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    send = getattr(client, method.lower())
    return send(url, body, format=rule.fmt)


def test_every_api_route_is_in_the_policy_table() -> None:
    """A new route (or method) without a declared policy fails here."""
    served = {(name, method) for name, method, _ in api_routes()}
    missing = sorted(served - POLICY.keys())
    stale = sorted(POLICY.keys() - served)
    assert not missing, f"routes with no declared policy: {missing}"
    assert not stale, f"policy entries no route serves: {stale}"


@pytest.mark.django_db
def test_authorization_matrix(
    world: dict[str, Any], world_b: dict[str, Any], clients: dict[str, Any]
) -> None:
    """Every route x method x role answers the declared status; refusals change nothing."""
    failures: list[str] = []
    checked = 0
    for name, method, route in api_routes():
        rule = POLICY[(name, method)]
        for role in ROLES:
            with transaction.atomic():
                before = _state() if method != "GET" else None
                response = _call(clients[role], name, method, rule, world)
                want = rule.expected[role]
                got = response.status_code
                if got != want:
                    body = getattr(response, "content", b"")[:200]
                    failures.append(
                        f"{role:8} {method:5} {route} {got} != {want} {body!r}"
                    )
                if got >= 400 and response.get("Content-Type", "").startswith(
                    "application/json"
                ):
                    error = response.json().get("error", {})
                    if not {"code", "message"} <= error.keys():
                        failures.append(f"{role} {method} {route}: bad error body")
                if before is not None and got >= 400:
                    after = _state()
                    if after != before:
                        diff = {
                            k: (before[k], after[k])
                            for k in after
                            if after[k] != before[k]
                        }
                        failures.append(f"{role} {method} {route}: side effect {diff}")
                transaction.set_rollback(True)
            checked += 1
    assert checked == len(ROLES) * len(POLICY)
    assert not failures, f"{len(failures)} of {checked} checks failed:\n" + "\n".join(
        failures
    )


@pytest.mark.django_db
def test_undeclared_methods_are_refused(
    world: dict[str, Any], clients: dict[str, Any]
) -> None:
    """A method a route does not serve: 401 anonymous, 405 for a signed-in user."""
    for name, method, _ in api_routes():
        rule = POLICY[(name, method)]
        kwargs = {rule.lookup: getattr(world[rule.obj], rule.attr)} if rule.obj else {}
        url = reverse(f"api:{name}", kwargs=kwargs)
        served = {m for n, m, _ in api_routes() if n == name}
        if "DELETE" in served:
            continue
        assert clients["anon"].delete(url).status_code == 401, url
        response = clients["dm"].delete(url)
        assert response.status_code == 405, url
        if response["Content-Type"].startswith("application/json"):
            assert response.json()["error"]["code"] == "method_not_allowed"
