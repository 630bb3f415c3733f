"""``manage.py make_legacy_pas`` is a thin wrapper: summary, exit code 2 on errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from migration.legacypas import read_manifest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django  # needs importable Django settings


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "make_legacy_pas", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_command_writes_sqlite_and_prints_a_summary(tmp_path: Path) -> None:
    done = _run(
        "--patients", "200", "--seed", "3", "--out", str(tmp_path),
        "--defect-rate", "0.05", "--extract-date", "2025-03-31",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "legacy_pas.sqlite3").is_file()
    manifest = read_manifest(str(tmp_path / "manifest.json"))
    assert manifest["extract_date"] == "2025-03-31"
    assert "PA_PatMas" in done.stdout and "200 rows" in done.stdout
    assert f"{len(manifest['defects'])} defects" in done.stdout


def test_command_writes_csv(tmp_path: Path) -> None:
    done = _run(
        "--patients", "50", "--seed", "1", "--out", str(tmp_path), "--format", "csv"
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "PA_PatMas.csv").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--patients", "0"], "patients must be a positive integer"),
        (["--patients", "5", "--format", "xlsx"], "invalid choice: 'xlsx'"),
        (["--patients", "5", "--extract-date", "1/11/2026"], "expected YYYY-MM-DD"),
        (
            [
                "--patients",
                "5",
                "--format",
                "mariadb",
                "--dsn",
                "mysql://root:pw9@127.0.0.1:1",
            ],
            "cannot connect to MariaDB at 127.0.0.1:1",
        ),
    ],
)
def test_command_errors_exit_2_with_the_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = _run("--seed", "1", "--out", str(tmp_path / "out"), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "pw9" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()
