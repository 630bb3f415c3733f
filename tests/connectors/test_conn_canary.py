"""S7: a canary password put into connectors appears nowhere.

Not in logs (every logger, at DEBUG), q2 task rows, admin pages, product pages,
API responses, audit events, nor a pg_dump of the control-plane database —
through connector checks (a success and an authentication failure), a q2 task
and a whole run whose target needs the secret.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django_q.models import Task

from connectors.services import connector_check, connector_create
from governance.models import AuditEvent
from migration.engine.contract import contract_from_dict
from migration.engine.defaults import default_contract_dict
from migration.legacypas import generate
from migration.models import Contract
from migration.services.runs import run_start

CANARY = "CANARY-pw-5e1d-4c0f"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def canary_schema() -> Any:
    import uuid

    import psycopg

    name = f"canary_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(
        "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def all_logs() -> Any:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield records
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_canary_password_appears_nowhere(
    all_logs: list[logging.LogRecord],
    project: Any,
    dm_engineer: Any,
    make_user: Any,
    tmp_path: Any,
    django_capture_on_commit_callbacks: Any,
    canary_schema: str,
) -> None:
    generate(patients=60, seed=3, out=str(tmp_path / "src"), fmt="sqlite")
    source = connector_create(
        actor=dm_engineer,
        project=project,
        name="legacy",
        kind="sqlite",
        role="source",
        config={"path": str(tmp_path / "src" / "legacy_pas.sqlite3")},
    )
    # PostgreSQL here trusts loopback, so the secret is sent and the run works.
    target = connector_create(
        actor=dm_engineer,
        project=project,
        name="target",
        kind="postgresql",
        role="target",
        config={
            "host": "127.0.0.1",
            "port": 5432,
            "dbname": "postgres",
            "user": "postgres",
            "schema": canary_schema,
        },
        secrets={"password": CANARY},
    )
    # MariaDB refuses the canary: the failure path must not echo it either.
    refused = connector_create(
        actor=dm_engineer,
        project=project,
        name="mariadb",
        kind="odbc",
        role="source",
        config={
            "driver": "MariaDB Unicode",
            "host": "127.0.0.1",
            "port": 3306,
            "database": "test",
            "user": "root",
        },
        secrets={"password": CANARY},
    )
    failed = connector_check(actor=dm_engineer, connector=refused)
    assert failed.status == "down" and failed.message  # it says why, without the secret

    from django_q.conf import Conf
    from django_q.tasks import async_task

    assert Conf.SYNC
    async_task("connectors.tasks.connector_check_task", refused.pk)
    body = default_contract_dict()
    contract = Contract.objects.create(
        project=project, version=1, body=body, sha256=contract_from_dict(body).sha256
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = run_start(
            actor=dm_engineer,
            contract=contract,
            source=source,
            target=target,
            profile="development",
        )
    run.refresh_from_db()
    assert run.state == "succeeded", run.error
    # The run created the target schema; now the check can reach all of it.
    health = connector_check(actor=dm_engineer, connector=target)
    assert health.status in ("ok", "degraded"), health.message
    assert Task.objects.count() >= 2  # the q2 rows exist, and are checked below

    # Pages: admin (as a superuser), product pages and the API.
    admin = make_user("admin", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    pages = [
        "/admin/connectors/connector/",
        f"/admin/connectors/connector/{target.pk}/change/",
        f"/admin/connectors/connector/{refused.pk}/change/",
        "/admin/governance/auditevent/",
        "/admin/django_q/success/",
        "/admin/django_q/failure/",
        "/admin/connectors/connectorhealth/",
    ]
    member = Client()
    member.force_login(dm_engineer)
    product = [
        f"/projects/{project.pk}/connectors/",
        f"/projects/{project.pk}/connectors/{target.pk}/",
        f"/projects/{project.pk}/connectors/{refused.pk}/",
        "/api/v1/connectors/",
        f"/api/v1/connectors/{target.pk}/",
        f"/api/v1/connectors/{refused.pk}/health/",
        f"/api/v1/runs/{run.pk}/",
    ]
    seen = 0
    for c, urls in ((client, pages), (member, product)):
        for url in urls:
            response = c.get(url)
            assert response.status_code == 200, url
            assert CANARY not in response.content.decode(), url
            seen += 1
    assert seen == len(pages) + len(product)

    # Audit events, logs, and a dump of the whole control-plane database.
    for event in AuditEvent.objects.all():
        assert CANARY not in str(event.data) + str(event.actor)
    for record in all_logs:
        text = record.getMessage() + (record.exc_text or "")
        assert CANARY not in text, record.name
    db = connection.settings_dict
    dump = subprocess.run(
        ["pg_dump", "-h", "127.0.0.1", "-U", db["USER"] or "postgres", db["NAME"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "connectors_connector" in dump and len(dump) > 10_000
    assert CANARY not in dump
    assert "fernet:" in dump  # the secret is there, but only encrypted
