"""Bad environment values stop start-up with a message naming the variable."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from pasportal.env import ConfigError, env_bool, env_choice, env_int, env_url

ROOT = Path(__file__).resolve().parents[2]


def test_typed_helpers_fail_loudly_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="PAS_Q_WORKERS"):
        env_int("PAS_Q_WORKERS", 2, env={"PAS_Q_WORKERS": "two"})
    with pytest.raises(ConfigError, match="PAS_Q_WORKERS must be >= 1"):
        env_int("PAS_Q_WORKERS", 2, minimum=1, env={"PAS_Q_WORKERS": "0"})
    with pytest.raises(ConfigError, match="DJANGO_DEBUG"):
        env_bool("DJANGO_DEBUG", False, env={"DJANGO_DEBUG": "maybe"})
    with pytest.raises(ConfigError, match="PAS_ENV must be one of"):
        env_choice(
            "PAS_ENV",
            "development",
            ("development", "production"),
            env={"PAS_ENV": "prod"},
        )
    assert env_int("X", 5, env={}) == 5
    assert env_bool("X", True, env={"X": "off"}) is False


def test_url_errors_never_echo_the_url() -> None:
    with pytest.raises(ConfigError) as caught:
        env_url(
            "DATABASE_URL", ("postgres",), env={"DATABASE_URL": "mysql://u:CANARY@h/db"}
        )
    assert "CANARY" not in str(caught.value)
    assert "DATABASE_URL" in str(caught.value)


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PAS_", "DJANGO_", "DATABASE"))
    }
    base["DJANGO_SETTINGS_MODULE"] = "pasportal.settings"
    base.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PAS_Q_WORKERS", "lots"),
        ("DATABASE_URL", "mysql://x@y/z"),
        ("PAS_ENV", "prod"),
        ("PAS_REDIS_URL", "http://localhost:6379"),
        ("DJANGO_DEBUG", "perhaps"),
    ],
)
def test_bad_values_stop_manage_py_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    result = _manage("check", PAS_VAR_DIR=str(tmp_path), **{variable: value})
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr


def test_production_requires_its_secrets(tmp_path: Path) -> None:
    result = _manage(
        "check",
        PAS_ENV="production",
        PAS_VAR_DIR=str(tmp_path),
        DJANGO_ALLOWED_HOSTS="pas.example.nhs.uk",
    )
    assert result.returncode == 2
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    """S8: the documented production variables give a clean deploy check."""
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        PAS_ENV="production",
        PAS_VAR_DIR=str(tmp_path),
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        PAS_AUDIT_KEY=secrets.token_urlsafe(40),
        DJANGO_ALLOWED_HOSTS="pas.example.nhs.uk",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres",
        PAS_REDIS_URL="redis://127.0.0.1:6379/0",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["run_lifecycle", "--rows", "20", "--seed", "42", "--min-patients", "20"],
        ["seed_demo"],
        ["export_evidence", "--run", "1", "--user", "auditor", "--out", "x.zip"],
        ["verify_audit"],
        ["rewrap_secrets"],
        ["run_monitor", "--once"],
        ["issue_api_token", "someone"],
    ],
    ids=lambda c: c[0],
)
def test_commands_on_a_database_never_migrated_say_so_and_what_to_run(
    tmp_path: Path, command: list[str]
) -> None:
    """Not a traceback ending ``no such table: auth_group``: the fix, named."""
    result = _manage(*command, PAS_VAR_DIR=str(tmp_path))
    # 2, as for bad input: 1 is a failed gate (run_lifecycle), a broken chain
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"SQLite {tmp_path / 'pasportal.sqlite3'}) is not set up" in result.stderr
    assert "run `python manage.py migrate` first" in result.stderr


def test_verifying_a_bundle_against_a_database_never_migrated_offers_offline(
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip: never opened
    result = _manage("verify_evidence", str(bundle), PAS_VAR_DIR=str(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "is not set up" in result.stderr
    assert "--offline" in result.stderr


def test_an_unreachable_control_plane_is_named_without_its_password(
    tmp_path: Path,
) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    result = _manage(
        "seed_demo",
        PAS_VAR_DIR=str(tmp_path),
        DATABASE_URL="postgres://pas:CANARY-PW@127.0.0.1:9/pas_control",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot reach the control-plane database" in result.stderr
    assert "127.0.0.1:9/pas_control" in result.stderr
    assert "CANARY-PW" not in result.stdout + result.stderr


@pytest.mark.django_db
def test_a_migrated_control_plane_lets_commands_run() -> None:
    from pasportal.commands import require_migrated

    require_migrated()  # the test database is migrated: nothing raised
