"""S8: schemathesis over the generated OpenAPI schema, in-process (WSGI).

For every operation of ``/api/v1/schema/``, schemathesis generates requests
(bounded: ``MAX_EXAMPLES`` per operation, derandomised) and sends each with the
token of every role. Two properties must hold for every response:

- no server error (5xx) for any role's token;
- without a token every endpoint answers 401 (never data, never a 2xx/404
  that would reveal whether an object exists).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, given, settings
from rest_framework.authtoken.models import Token

from pasportal.wsgi import application

MAX_EXAMPLES = 8


@pytest.fixture
def tokens(
    world: dict[str, Any],
    world_b: dict[str, Any],
    dm_engineer: Any,
    steward: Any,
    other_steward: Any,
    auditor: Any,
    token_user: Any,
) -> dict[str, dict[str, str]]:
    """The Authorization header of every role (anonymous: none)."""
    headers = {"anon": {}}
    for role, user in (
        ("dm", dm_engineer),
        ("steward", steward),
        ("other", other_steward),
        ("auditor", auditor),
    ):
        key = Token.objects.get_or_create(user=user)[0].key
        headers[role] = {"Authorization": f"Token {key}"}
    headers["token"] = {"Authorization": f"Token {token_user.api_token}"}
    return headers


@pytest.fixture
def in_process() -> Any:
    """Keep the test's DB connection open across WSGI requests.

    Django closes connections at the start and end of every request; inside the test's
    transaction that would drop it. Django's own test client does the same.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_schemathesis_all_roles(
    tokens: dict[str, dict[str, str]], in_process: Any
) -> None:
    """0 server errors for any role; 0 responses that ignore authentication."""
    schema = schemathesis.openapi.from_wsgi(
        "/api/v1/schema/?format=json", application, headers=tokens["dm"]
    )
    stats: Counter[str] = Counter()
    problems: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: Any) -> None:
            for role, headers in tokens.items():
                # Drop any Authorization the generator invented, then add ours.
                sent = {
                    k: v
                    for k, v in (case.headers or {}).items()
                    if k.lower() != "authorization"
                }
                # A savepoint per request: each starts from the same world, and
                # a failed statement cannot poison the requests after it.
                with transaction.atomic():
                    response = case.call(headers={**sent, **headers})
                    transaction.set_rollback(True)
                stats[f"{role}:{response.status_code // 100}xx"] += 1
                stats["requests"] += 1
                where = f"{role} {case.method} {case.formatted_path}"
                if response.status_code >= 500:
                    problems.append(f"{where}: {response.status_code}")
                if role == "anon" and response.status_code != 401:
                    problems.append(f"{where}: {response.status_code} without a token")

        exercise()

    print(f"schemathesis: {len(operations)} operations, {dict(sorted(stats.items()))}")
    assert not problems, "\n".join(sorted(set(problems))[:50])
    assert stats["requests"] >= len(operations) * len(tokens)
