"""run_lifecycle: the seed's command passes pre_production, fails cutover_ready visibly."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from governance.lifecycle import target_config_from_url
from governance.models import AuditEvent, GateEvaluation
from migration.models import RejectRecord, Run

pytestmark = pytest.mark.django_db
PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _lifecycle(tmp_path: Path, *extra: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command(
            "run_lifecycle",
            "--rows",
            "20",
            "--seed",
            "42",
            "--min-patients",
            "20",
            "--work-dir",
            str(tmp_path),
            *extra,
            stdout=out,
        )
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def test_default_seed_passes_pre_production(tmp_path: Path) -> None:
    code, output = _lifecycle(
        tmp_path,
        "--release-profile",
        "pre_production",
        "--json",
        str(tmp_path / "report.json"),
    )
    assert code == 0, output
    assert "Gate pre_production" in output and ": PASS" in output
    assert "UNBALANCED" not in output
    # the checks that passed clean are counted, not listed (-v 2 lists them)
    assert re.search(r"\(\d+ checks: \d+ PASS", output), output
    assert "ledger_balance [" not in output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["state"] == "succeeded"
    assert report["gate"]["status"] == "PASS"
    assert {row["table"] for row in report["ledger"]} >= {
        "patient",
        "inpatient_spell",
        "ward_stay",
        "outpatient_appointment",
    }
    run = Run.objects.get(pk=report["run"])
    assert run.gates.count() == 1
    # The command acted as a named account through the normal services.
    assert AuditEvent.objects.filter(
        action="governance.gate.evaluated", actor__username="lifecycle"
    ).exists()


def test_cutover_ready_fails_for_missing_signoffs(tmp_path: Path) -> None:
    code, output = _lifecycle(
        tmp_path, "--release-profile", "cutover_ready", "--verbosity", "2"
    )
    assert code == 1
    assert "ledger_balance [patient]: 0 of 20 (0.00 %); none allowed" in output
    for role in (
        "migration_lead",
        "clinical_safety_officer",
        "ig_lead",
        "data_steward",
    ):
        assert f"missing sign-off: {role}" in output
    evaluation = GateEvaluation.objects.get()
    assert evaluation.status == "FAIL"


def test_defects_are_rejected_with_reasons_and_can_fail_the_gate(
    tmp_path: Path,
) -> None:
    code, output = _lifecycle(
        tmp_path, "--release-profile", "pre_production", "--defect-rate", "0.1"
    )
    assert code == 1
    assert "Top reject reasons:" in output
    assert "reject_rate" in output and "FAIL" in output
    assert RejectRecord.objects.exists()
    # Each crosswalk's untranslated codes, counted as the reject records do.
    misses = Counter(
        RejectRecord.objects.filter(reason_code="crosswalk_miss").values_list(
            "crosswalk_ref", flat=True
        )
    )
    assert misses, "a 10 % defect rate leaves local codes no crosswalk has"
    assert "Local codes the crosswalks could not translate:" in output
    for ref, rows in misses.items():
        assert f"  {ref}: " in output and f", {rows} row(s) ({rows} rejected," in output
    assert "UNBALANCED" not in output


@pytest.fixture
def pg_schema() -> Iterator[str]:
    schema = f"lc_{uuid.uuid4().hex[:8]}"
    yield schema
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_into_the_real_postgresql_target(tmp_path: Path, pg_schema: str) -> None:
    target = json.dumps(
        {
            "kind": "postgresql",
            "host": "127.0.0.1",
            "port": 5432,
            "dbname": "postgres",
            "user": "postgres",
            "schema": pg_schema,
        }
    )
    code, output = _lifecycle(tmp_path, "--target", target)
    assert code == 0, output
    with psycopg.connect(PG) as conn:
        patients = conn.execute(
            f'SELECT count(*), count(DISTINCT _source_key) FROM "{pg_schema}".patient'
        ).fetchone()
    assert patients == (20, 20)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "0", "--min-patients", "0"], "--rows must be positive"),
        (["--rows", "-5"], "--rows must be positive"),
        (["--min-patients", "-1"], "--min-patients not negative"),
        (
            ["--target", "postgresql://pas:CANARY-PW@127.0.0.1:5432/postgres"],
            "holds a password, which is never stored: set PAS_TARGET_PASSWORD",
        ),
        (["--target", "{not json"], "--target must be JSON"),
        (["--source", '{"path": "x"}'], 'needs a "kind"'),
        (
            ["--source", '{"kind": "sqlite"}'],
            "the source connector's settings: config: path: Field required",
        ),
        (
            ["--target", '{"kind": "oracle"}'],
            "the target connector's settings: kind: unknown connector kind 'oracle'",
        ),
    ],
)
def test_bad_arguments_exit_2(
    tmp_path: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAS_TARGET_PASSWORD", raising=False)
    with pytest.raises(CommandError) as caught:
        call_command(
            "run_lifecycle", "--work-dir", str(tmp_path), *args, stdout=StringIO()
        )
    assert caught.value.returncode == 2
    assert message in str(caught.value)
    assert "CANARY-PW" not in str(caught.value)
    # Refused before anything was generated or run.
    assert not list(tmp_path.glob("legacy-*"))
    assert not Run.objects.exists()


def test_a_password_in_source_settings_is_stored_encrypted(tmp_path: Path) -> None:
    """The lifecycle registers connectors as the pages and the API do."""
    from connectors.models import Connector

    source = json.dumps(
        {
            "kind": "postgresql",
            "host": "127.0.0.1",
            "dbname": "postgres",
            "user": "postgres",
            "password": "CANARY-SOURCE-PW",
        }
    )
    code, output = _lifecycle(tmp_path, "--source", source)
    assert code == 1, output  # the postgres database holds no legacy PAS
    connector = Connector.objects.get(kind="postgresql", role="source")
    assert connector.name == "legacy-pas"
    stored = json.dumps([connector.config, connector.secret_refs])
    assert "CANARY-SOURCE-PW" not in stored
    assert connector.config["password"].startswith("fernet:")
    created = AuditEvent.objects.get(
        action="connectors.connector.created",
        target_id=str(connector.pk),
        target_type="connectors.connector",
    )
    assert created.data["credential_fields"] == ["password"]
    assert "CANARY-SOURCE-PW" not in json.dumps(created.data) + output


def test_a_target_url_password_must_be_the_one_the_connector_will_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The URL's password is never stored: the connector reads the variable."""
    url = "postgresql://pas:CANARY%2FPW@db.example:6543/pas"
    monkeypatch.setenv("PAS_TARGET_PASSWORD", "another")
    with pytest.raises(ValueError, match="not the one in PAS_TARGET_PASSWORD") as e:
        target_config_from_url(url)
    assert "CANARY" not in str(e.value)
    monkeypatch.setenv("PAS_TARGET_PASSWORD", "CANARY/PW")
    config = target_config_from_url(url)
    assert config["password"] == "env:PAS_TARGET_PASSWORD"
    assert (config["host"], config["port"], config["dbname"], config["user"]) == (
        "db.example",
        6543,
        "pas",
        "pas",
    )
    # Left out of the URL, as the message advises: read from the variable.
    assert target_config_from_url("postgresql://pas@db.example/pas")["password"] == (
        "env:PAS_TARGET_PASSWORD"
    )
    monkeypatch.delenv("PAS_TARGET_PASSWORD")
    assert "password" not in target_config_from_url("postgresql://pas@db.example/pas")


def test_the_demo_gives_stewards_review_work_fed_by_the_main_job(
    tmp_path: Path, settings: object, django_capture_on_commit_callbacks: Any
) -> None:
    """`make run`'s order: seed_demo, the main job, seed_demo --mapping-set."""
    from migration.models import FieldMapping, MissQueueEntry, ReviewStatus

    settings.VAR_DIR = tmp_path  # type: ignore[attr-defined]
    call_command("seed_demo", stdout=StringIO())
    with pytest.raises(CommandError, match="has no source connector") as early:
        call_command("seed_demo", "--mapping-set", stdout=StringIO())
    assert early.value.returncode == 2
    with django_capture_on_commit_callbacks(execute=True):
        code, output = _lifecycle(
            tmp_path, "--project", "demo", "--rows", "600", "--seed", "7"
        )
    assert code in (0, 1), output
    # The main job's untranslatable codes reached the demo project's miss queue.
    misses = MissQueueEntry.objects.filter(crosswalk__project__slug="demo")
    assert misses.exists()
    assert set(misses.values_list("run__project__slug", flat=True)) == {"demo"}
    out = StringIO()
    call_command("seed_demo", "--mapping-set", stdout=out)
    assert "47 field mappings proposed" in out.getvalue()
    fields = FieldMapping.objects.filter(
        table_mapping__mapping_set__project__slug="demo"
    )
    assert fields.count() == 47
    assert set(fields.values_list("status", flat=True)) == {ReviewStatus.PROPOSED}
    assert set(fields.values_list("author", flat=True)) == {None}  # any steward
    # A source the product never saw, ready to map in the browser.
    from connectors.models import Connector

    synthea = Connector.objects.get(project__slug="demo", kind="csv")
    assert "Synthea extract" in synthea.name and synthea.role == "source"
    (snapshot,) = synthea.snapshots.all()
    assert {t["name"] for t in snapshot.tables} == {
        "patients",
        "encounters",
        "organizations",
        "providers",
    }
    assert "start a mapping set from suggestions" in out.getvalue()
    again = StringIO()
    call_command("seed_demo", "--mapping-set", stdout=again)
    assert "already has a mapping set" in again.getvalue()
    assert fields.count() == 47
    assert synthea.snapshots.count() == 1  # nothing registered or read twice


def test_the_demo_mapping_set_names_a_source_it_cannot_read(
    tmp_path: Path, settings: object
) -> None:
    from connectors.models import Connector
    from governance.models import MigrationProject

    settings.VAR_DIR = tmp_path  # type: ignore[attr-defined]
    call_command("seed_demo", stdout=StringIO())
    Connector.objects.create(
        project=MigrationProject.objects.get(slug="demo"),
        name="gone",
        kind="sqlite",
        role="source",
        config={"path": str(tmp_path / "no-such.sqlite3")},
    )
    with pytest.raises(CommandError, match="could not read the demo source 'gone'"):
        call_command("seed_demo", "--mapping-set", stdout=StringIO())
