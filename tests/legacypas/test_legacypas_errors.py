"""Bad inputs give a clear GeneratorError and leave no complete-looking output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from migration.legacypas import GeneratorError, generate, read_manifest
from migration.legacypas.manifest import Manifest


def _leftovers(path: Path) -> list[str]:
    return sorted(os.listdir(path)) if path.exists() else []


@pytest.mark.parametrize("patients", [0, -5, True, 2.5, "10"])
def test_non_positive_or_non_integer_patients(tmp_path: Path, patients) -> None:
    with pytest.raises(GeneratorError, match="patients must be a positive integer"):
        generate(patients, 1, str(tmp_path / "out"))
    assert _leftovers(tmp_path / "out") == []


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(GeneratorError, match=r"unknown format 'xlsx'.*sqlite"):
        generate(10, 1, str(tmp_path / "out"), fmt="xlsx")
    assert _leftovers(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"defect_rate": 0.9}, "defect rate"),
        ({"defect_rate": -0.1}, "defect rate"),
        ({"extract_date": "01/11/2026"}, "extract date must be YYYY-MM-DD"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_other_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"patients": 10, "seed": 1, "out": str(tmp_path / "out")} | kwargs
    with pytest.raises(GeneratorError, match=message):
        generate(**args)
    assert _leftovers(tmp_path / "out") == []


def test_unreachable_postgresql(tmp_path: Path) -> None:
    dsn = "postgresql://postgres:s3cret-canary@127.0.0.1:1/test"
    with pytest.raises(GeneratorError) as err:
        generate(10, 1, str(tmp_path), fmt="postgresql", dsn=dsn, schema="lp_never")
    text = str(err.value)
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/test" in text
    assert "s3cret-canary" not in text and "s3cret-canary" not in repr(err.value)
    # the driver error (which may quote the DSN) is neither cause nor context
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert _leftovers(tmp_path) == []


def test_unreachable_mariadb(tmp_path: Path) -> None:
    dsn = "mysql://root:s3cret-canary@127.0.0.1:1"
    with pytest.raises(GeneratorError) as err:
        generate(10, 1, str(tmp_path), fmt="mariadb", dsn=dsn, schema="lp_never")
    assert "cannot connect to MariaDB at 127.0.0.1:1" in str(err.value)
    assert "s3cret-canary" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert _leftovers(tmp_path) == []


def test_bad_schema_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GeneratorError, match="invalid schema name"):
        generate(10, 1, str(tmp_path), fmt="postgresql", schema='x"; DROP')


def test_failure_mid_run_leaves_previous_output_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate(100, 1, str(tmp_path))
    before = (tmp_path / "legacy_pas.sqlite3").read_bytes()

    def boom(self: Manifest, defects: list) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Manifest, "add_defects", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate(300, 2, str(tmp_path))
    # the old complete pair is untouched and no temporary file is left behind
    assert _leftovers(tmp_path) == ["legacy_pas.sqlite3", "manifest.json"]
    assert (tmp_path / "legacy_pas.sqlite3").read_bytes() == before
    assert read_manifest(str(tmp_path / "manifest.json"))["patients"] == 100

    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        generate(300, 2, str(fresh), fmt="csv")
    assert _leftovers(fresh) == []


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(GeneratorError, match="cannot create"):
        generate(10, 1, str(blocker / "out"))
