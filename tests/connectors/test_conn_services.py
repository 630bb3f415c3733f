"""Connector services (Django): validation per kind, secrets as references or
Fernet tokens, one audit event per change, health checks, admin write-only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError

from .conftest import load_sqlite

pytestmark = [pytest.mark.django_db, pytest.mark.django]

CANARY = "CANARY-pw-7f3a9"


@pytest.fixture(autouse=True)
def _fernet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAS_FERNET_KEYS", Fernet.generate_key().decode())


def _events(action: str) -> list[Any]:
    from governance.models import AuditEvent

    return list(AuditEvent.objects.filter(action=action))


def test_create_sqlite_source_and_check(project: Any, tmp_path: Path) -> None:
    from connectors import services
    from connectors.models import HealthStatus

    path = load_sqlite(tmp_path / "pas.db")
    c = services.connector_create(
        actor="tests", project=project, name="legacy", kind="sqlite", role="source",
        config={"path": str(path)},
    )  # fmt: skip
    assert c.config == {"path": str(path)}
    (ev,) = _events("connectors.connector.created")
    assert ev.data["kind"] == "sqlite" and ev.target_id == str(c.pk)
    health = services.connector_check(actor="tests", connector=c)
    assert health.status == HealthStatus.OK and health.read_only is True
    c.refresh_from_db()
    assert c.health_status == HealthStatus.OK
    assert len(_events("connectors.connector.checked")) == 1
    assert services.connector_open(c).count("PA_PatMas") == 60


def test_bad_config_and_role_are_validation_errors(project: Any) -> None:
    from connectors import services

    with pytest.raises(ValidationError, match="path"):
        services.connector_create(
            actor="tests", project=project, name="x", kind="sqlite", role="source",
            config={},
        )  # fmt: skip
    with pytest.raises(ValidationError, match="cannot be a target"):
        services.connector_create(
            actor="tests", project=project, name="x", kind="csv", role="target",
            config={"path": "/tmp"},
        )  # fmt: skip
    with pytest.raises(ValidationError, match="unknown connector kind"):
        services.connector_create(
            actor="tests", project=project, name="x", kind="nope", role="source",
            config={},
        )  # fmt: skip
    assert _events("connectors.connector.created") == []


def test_inline_secret_is_encrypted_and_never_logged(
    project: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from connectors import services
    from connectors.secrets import resolve
    from governance.models import AuditEvent

    caplog.set_level(logging.DEBUG)
    c = services.connector_create(
        actor="tests", project=project, name="pg", kind="postgresql", role="source",
        config={"dbname": "x", "user": "u", "host": "127.0.0.1", "port": 1},
        secrets={"password": CANARY},
    )  # fmt: skip
    ref = c.config["password"]
    assert ref.startswith("fernet:") and c.secret_refs == {"password": ref}
    assert resolve(ref) == CANARY
    health = services.connector_check(actor="tests", connector=c)
    assert health.status == "down"
    # Update without secrets keeps the reference (write-only field).
    c = services.connector_update(actor="tests", connector=c, config={
        "dbname": "y", "user": "u", "host": "127.0.0.1", "port": 1})  # fmt: skip
    assert c.config["password"] == ref and c.config["dbname"] == "y"
    (ev,) = _events("connectors.connector.updated")
    assert ev.data["changed"] == ["dbname"]
    # A reference is stored as is, and rotation shows in the audit as a name.
    c = services.connector_update(
        actor="tests", connector=c, secrets={"password": "env:PG_PW"}
    )
    assert c.config["password"] == "env:PG_PW"
    assert _events("connectors.connector.updated")[-1].data[
        "credential_fields_changed"
    ] == ["password"]
    dump = repr(list(AuditEvent.objects.values())) + caplog.text + health.message
    assert CANARY not in dump and ref not in dump
    services.connector_delete(actor="tests", connector=c)
    assert len(_events("connectors.connector.deleted")) == 1


def test_query_log_strips_literals(project: Any, tmp_path: Path) -> None:
    from connectors import services

    c = services.connector_create(
        actor="tests", project=project, name="q", kind="sqlite", role="source",
        config={"path": str(load_sqlite(tmp_path / "q.db"))},
    )  # fmt: skip
    row = services.query_log_record(
        connector=c, actor="tests", purpose="sample", outcome="ok", rows=1,
        statement="SELECT * FROM PA_PatMas WHERE PAPMI_NHSNo = '9434765919'",
    )  # fmt: skip
    assert "9434765919" not in row.statement and "?" in row.statement


def test_admin_never_renders_the_secret(admin_client: Any, project: Any) -> None:
    from connectors import services

    c = services.connector_create(
        actor="tests", project=project, name="pg2", kind="postgresql", role="source",
        config={"dbname": "x", "user": "u"}, secrets={"password": CANARY},
    )  # fmt: skip
    page = admin_client.get(f"/admin/connectors/connector/{c.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    assert CANARY not in body and c.config["password"] not in body
    assert "(set)" in body


def test_rewrap_command_rotates_keys(
    project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from django.core.management import call_command

    from connectors import services
    from connectors.models import Connector
    from connectors.secrets import resolve

    old = os.environ["PAS_FERNET_KEYS"]
    c = services.connector_create(
        actor="tests", project=project, name="rot", kind="postgresql", role="source",
        config={"dbname": "x", "user": "u"}, secrets={"password": CANARY},
    )  # fmt: skip
    token = c.config["password"]
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("PAS_FERNET_KEYS", f"{new},{old}")
    call_command("rewrap_secrets")
    c = Connector.objects.get(pk=c.pk)
    assert (
        c.config["password"] != token
        and c.secret_refs["password"] == c.config["password"]
    )
    monkeypatch.setenv("PAS_FERNET_KEYS", new)  # the old key retired
    assert resolve(c.config["password"]) == CANARY
    assert len(_events("connectors.connector.rewrapped")) == 1


def test_health_judges_a_target_by_what_a_target_needs(project: Any) -> None:
    """A writable target whose schema the first run will create is healthy.

    The same account as a source is degraded (sources must be SELECT-only).
    """
    import uuid

    from connectors import services
    from connectors.models import HealthStatus

    config = {
        "host": "127.0.0.1", "port": 5432, "dbname": "postgres", "user": "postgres",
        "schema": f"not_yet_{uuid.uuid4().hex[:8]}",
    }  # fmt: skip
    target = services.connector_create(
        actor="tests", project=project, name="tgt", kind="postgresql", role="target",
        config=config,
    )  # fmt: skip
    health = services.connector_check(actor="tests", connector=target)
    assert health.status == HealthStatus.OK, health.message
    assert health.read_only is False and health.message == ""
    source = services.connector_create(
        actor="tests", project=project, name="src", kind="postgresql", role="source",
        config=config,
    )  # fmt: skip
    health = services.connector_check(actor="tests", connector=source)
    assert health.status == HealthStatus.DEGRADED
    assert "SELECT-only" in health.message


def test_a_sqlite_target_is_healthy_before_and_after_its_first_run(
    project: Any, tmp_path: Path
) -> None:
    """The embedded target: a file the first run creates, then writes."""
    import sqlite3

    from connectors import services
    from connectors.models import HealthStatus

    path = tmp_path / "target.sqlite3"
    target = services.connector_create(
        actor="tests", project=project, name="tgt", kind="sqlite", role="target",
        config={"path": str(path)},
    )  # fmt: skip
    health = services.connector_check(actor="tests", connector=target)
    assert health.status == HealthStatus.OK, health.message
    assert health.read_only is False
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE patient (pas_number TEXT)")
    health = services.connector_check(actor="tests", connector=target)
    assert health.status == HealthStatus.OK, health.message
    # A target whose folder does not exist cannot be created: down, named.
    missing = services.connector_create(
        actor="tests", project=project, name="nowhere", kind="sqlite", role="target",
        config={"path": str(tmp_path / "no" / "such" / "t.sqlite3")},
    )  # fmt: skip
    health = services.connector_check(actor="tests", connector=missing)
    assert health.status == HealthStatus.DOWN and "no folder" in health.message


@pytest.fixture
def flat_extract(project: Any, tmp_path: Path, settings: Any) -> Any:
    """Return a csv source connector over an extract in no key order (data dir
    under tmp_path)."""
    from connectors import services

    settings.PAS_DATA_DIR = tmp_path / "data"
    extract = tmp_path / "extract"
    extract.mkdir()
    (extract / "people.csv").write_text(
        "id,name,nhs\n3,c,9434765919\n1,a,4857773456\n2,b,4010232137\n"
    )
    c = services.connector_create(
        actor="tests", project=project, name="flat", kind="csv", role="source",
        config={"path": str(extract)},
    )  # fmt: skip
    return c


def test_an_unsorted_extract_lands_in_the_data_dir(
    project: Any, tmp_path: Path, flat_extract: Any
) -> None:
    """A flat extract's landed copy (patient rows) goes under PAS_DATA_DIR."""
    from connectors import services

    c = flat_extract
    assert "landing_dir" not in c.config  # a default, not stored
    source = services.connector_open(c)
    names = [
        n
        for chunk in source.read_chunks("people", ["name"], "id")
        for n in chunk["name"]
    ]
    assert names == ["a", "b", "c"]
    landed = list((tmp_path / "data" / "landing").glob("*.sqlite3"))
    assert len(landed) == 1
    # A connector that names its own folder keeps it.
    own = tmp_path / "own"
    c2 = services.connector_create(
        actor="tests", project=project, name="flat2", kind="csv", role="source",
        config={"path": c.config["path"], "landing_dir": str(own)},
    )  # fmt: skip
    list(services.connector_open_plain(c2).read_chunks("people", ["name"], "id"))
    assert len(list(own.glob("*.sqlite3"))) == 1


def test_flat_extract_reads_are_in_the_query_log(flat_extract: Any) -> None:
    """Reads of a file's rows are logged like SQL statements: shape, no values."""
    from connectors import services
    from connectors.models import QueryLog

    c = flat_extract
    source = services.connector_open(c, actor="worker", run_id=7)
    pages = list(source.read_chunks("people", ["nhs"], "id", after_key=1))
    assert sum(len(p) for p in pages) == 2
    source.sample("people", 2)
    logged = list(QueryLog.objects.filter(connector=c).order_by("pk"))
    by = {q.purpose: q for q in logged}
    assert set(by) == {"discover", "land", "read_chunks", "sample"}
    assert by["discover"].rows == 3 and by["land"].rows == 3
    assert by["read_chunks"].rows == 2 and by["sample"].rows == 3
    assert all(q.outcome == "ok" and q.run_id == 7 for q in logged)
    assert all(q.actor == "worker" for q in logged)
    assert '"people.csv"' in by["read_chunks"].statement
    assert "ORDER BY" in by["read_chunks"].statement
    text = " ".join(q.statement + q.message for q in logged)
    assert "9434765919" not in text and "4857773456" not in text


def test_deleting_a_flat_extract_connector_deletes_its_landed_copies(
    tmp_path: Path, flat_extract: Any
) -> None:
    from connectors import services

    c = flat_extract
    list(services.connector_open(c).read_chunks("people", ["name"], "id"))
    assert len(services.connector_landed_copies(c)) == 1
    services.connector_delete(actor="tests", connector=c)
    assert list((tmp_path / "data" / "landing").glob("*.sqlite3")) == []
    (ev,) = _events("connectors.connector.deleted")
    assert ev.data["landed_copies_deleted"] == 1
    assert (Path(c.config["path"]) / "people.csv").exists()  # extract untouched


def test_moving_a_flat_extract_connector_deletes_the_copies_left_behind(
    tmp_path: Path, flat_extract: Any
) -> None:
    """Copies are named after the extract's path and reading options: once the
    connector points elsewhere, reads differently or lands elsewhere they
    would never be read, listed or purged again -- so the update deletes
    them, and says how many. Other changes keep them."""
    from connectors import services

    c = flat_extract
    land = tmp_path / "data" / "landing"
    list(services.connector_open(c).read_chunks("people", ["name"], "id"))
    assert len(list(land.glob("*.sqlite3"))) == 1
    c = services.connector_update(
        actor="tests", connector=c, config={**c.config, "landing_retention_hours": 2}
    )
    assert len(list(land.glob("*.sqlite3"))) == 1
    updates = _events("connectors.connector.updated")
    assert "landed_copies_deleted" not in max(updates, key=lambda e: e.pk).data
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "people.csv").write_bytes(
        (Path(c.config["path"]) / "people.csv").read_bytes()
    )

    def change(c: Any, field: str, value: Any) -> Any:
        """Update one field: the copy goes, the update says so, and the
        connector reads (and lands) afresh under its new config."""
        c = services.connector_update(
            actor="tests", connector=c, config={**c.config, field: value}
        )
        assert list(land.glob("*.sqlite3")) == []
        ev = max(_events("connectors.connector.updated"), key=lambda e: e.pk)
        assert ev.data["changed"] == [field] and ev.data["landed_copies_deleted"] == 1
        rows = list(services.connector_open(c).read_chunks("people", ["name"], "id"))
        assert sum(len(r) for r in rows) == 3
        assert len(services.connector_landed_copies(c)) == 1
        return c

    c = change(c, "path", str(moved))
    # Copies are also named after how the extract is read: another encoding
    # leaves them unreadable by this connector, so they go too.
    change(c, "encoding", "cp1252")


def test_copies_two_connectors_share_stay_until_the_last_one_leaves(
    project: Any, tmp_path: Path, flat_extract: Any
) -> None:
    """Two connectors on one extract, read the same way, read one landed copy:
    deleting or moving one keeps it for the other (and the audit says for
    whom); it goes with the last connector that reads it."""
    from connectors import services
    from connectors.models import QueryLog

    a = flat_extract
    b = services.connector_create(
        actor="tests", project=project, name="flat-b", kind="csv", role="source",
        config=dict(a.config),
    )  # fmt: skip
    land = tmp_path / "data" / "landing"
    list(services.connector_open(a).read_chunks("people", ["name"], "id"))
    (copy,) = land.glob("*.sqlite3")
    assert services.connector_landed_copies(b) == services.connector_landed_copies(a)

    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "people.csv").write_bytes(
        (Path(a.config["path"]) / "people.csv").read_bytes()
    )
    a = services.connector_update(
        actor="tests", connector=a, config={**a.config, "path": str(moved)}
    )
    ev = max(_events("connectors.connector.updated"), key=lambda e: e.pk)
    assert ev.data["landed_copies_deleted"] == 0
    assert ev.data["landed_copies_kept_for"] == [b.pk]
    assert copy.exists()
    # b reads its kept copy: no landing again.
    rows = list(services.connector_open(b).read_chunks("people", ["name"], "id"))
    assert sum(len(r) for r in rows) == 3
    assert not QueryLog.objects.filter(connector=b, purpose="land").exists()

    # a now lands its own copy elsewhere; deleting b (the last reader of the
    # first copy) deletes that one and leaves a's.
    list(services.connector_open(a).read_chunks("people", ["name"], "id"))
    assert len(list(land.glob("*.sqlite3"))) == 2
    services.connector_delete(actor="tests", connector=b)
    (ev,) = _events("connectors.connector.deleted")
    assert ev.data == {
        "name": "flat-b", "kind": "csv", "landed_copies_deleted": 1
    }  # fmt: skip
    assert not copy.exists()
    (left,) = services.connector_landed_copies(a)
    assert left.name != copy.name and (land / left.name).exists()


def test_purging_shared_copies_on_request_names_the_other_reader(
    project: Any, flat_extract: Any
) -> None:
    """Deleting landed copies on request deletes them even when another
    connector reads them too (a request to remove patient rows), and the
    audit event says whose next read lands again."""
    from connectors import services
    from connectors.models import QueryLog

    a = flat_extract
    b = services.connector_create(
        actor="tests", project=project, name="flat-b", kind="csv", role="source",
        config=dict(a.config),
    )  # fmt: skip
    list(services.connector_open(a).read_chunks("people", ["name"], "id"))
    gone = services.connector_purge_landing(actor="tests", connector=a)
    assert len(gone) == 1 and services.connector_landed_copies(b) == []
    (ev,) = _events("connectors.connector.landing_purged")
    assert ev.data["copies"] == 1 and ev.data["also_read_by"] == [b.pk]
    rows = list(services.connector_open(b).read_chunks("people", ["name"], "id"))
    assert sum(len(r) for r in rows) == 3
    assert QueryLog.objects.filter(connector=b, purpose="land").count() == 1


def test_check_and_purge_are_refused_and_audited_without_manage_connectors(
    flat_extract: Any, steward: Any, dm_engineer: Any
) -> None:
    from connectors import services
    from governance.audit import Refused

    c = flat_extract
    list(services.connector_open(c).read_chunks("people", ["name"], "id"))
    for call, action in [
        (services.connector_check, "connectors.connector.check_refused"),
        (
            services.connector_purge_landing,
            "connectors.connector.landing_purge_refused",
        ),
    ]:
        with pytest.raises(Refused):
            call(actor=steward, connector=c)
        assert len(_events(action)) == 1
    assert len(services.connector_landed_copies(c)) == 1  # nothing deleted
    gone = services.connector_purge_landing(actor=dm_engineer, connector=c)
    assert len(gone) == 1 and services.connector_landed_copies(c) == []
