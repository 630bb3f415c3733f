"""Every output format holds the same rows; same seed gives the same output."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

from migration.legacypas import TABLES, generate, read_manifest

N, SEED, RATE = 600, 21, 0.08


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, lp) -> dict:
    out = tmp_path_factory.mktemp("ref")
    generate(N, SEED, str(out), defect_rate=RATE)
    return {
        "data": lp.load_sqlite(out / "legacy_pas.sqlite3"),
        "manifest": read_manifest(str(out / "manifest.json")),
    }


def _same_manifest(a: dict, b: dict) -> None:
    assert {k: v for k, v in a.items() if k != "format"} == {
        k: v for k, v in b.items() if k != "format"
    }


def test_sqlite_counts_match_manifest(reference: dict) -> None:
    data, manifest = reference["data"], reference["manifest"]
    assert manifest["tables"] == {t.name: len(data[t.name]) for t in TABLES}
    assert len(data["PA_PatMas"]) == N
    assert [r["PAPMI_RowId"] for r in data["PA_PatMas"]] == list(range(1, N + 1))
    spells = len(data["PA_Adm"]) / N
    appts = len(data["RB_Appointment"]) / N
    stays = len(data["PA_WardStay"]) / len(data["PA_Adm"])
    assert 0.45 < spells < 0.85 and 1.5 < appts < 2.6 and 1.0 <= stays <= 3.0
    assert manifest["format"] == "sqlite" and manifest["seed"] == SEED
    assert manifest["patients"] == N and manifest["defect_rate"] == RATE


def test_csv_holds_the_same_rows(tmp_path: Path, reference: dict, lp) -> None:
    m = generate(N, SEED, str(tmp_path), fmt="csv", defect_rate=RATE)
    assert m.format == "csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{t.name}.csv" for t in TABLES] + ["manifest.json"]
    )
    assert lp.load_csv(tmp_path) == reference["data"]
    _same_manifest(
        read_manifest(str(tmp_path / "manifest.json")), reference["manifest"]
    )


def test_postgresql_holds_the_same_rows(
    tmp_path: Path, reference: dict, lp, unique_name
) -> None:
    import psycopg

    schema = unique_name()
    try:
        m = generate(
            N, SEED, str(tmp_path), fmt="postgresql", defect_rate=RATE,
            dsn=lp.pg_dsn, schema=schema,
        )  # fmt: skip
        assert m.tables == reference["manifest"]["tables"]
        assert lp.load_postgres(lp.pg_dsn, schema) == reference["data"]
        manifest = read_manifest(str(tmp_path / "manifest.json"))
        _same_manifest(manifest, reference["manifest"])
        assert manifest["format"] == "postgresql"
        with psycopg.connect(lp.pg_dsn) as conn:
            left = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
                (f"{schema}__%",),
            ).fetchall()
            assert left == []  # the temporary schema was renamed, not copied
            # re-running replaces the schema in place
        generate(50, 1, str(tmp_path), fmt="postgresql", dsn=lp.pg_dsn, schema=schema)
        assert len(lp.load_postgres(lp.pg_dsn, schema)["PA_PatMas"]) == 50
    finally:
        with psycopg.connect(lp.pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_mariadb_holds_the_same_rows(
    tmp_path: Path, reference: dict, lp, unique_name
) -> None:
    import pymysql

    db = unique_name()
    try:
        m = generate(
            N, SEED, str(tmp_path), fmt="mariadb", defect_rate=RATE,
            dsn=lp.mariadb_dsn, schema=db,
        )  # fmt: skip
        assert m.tables == reference["manifest"]["tables"]
        assert lp.load_mariadb(db) == reference["data"]
        _same_manifest(
            read_manifest(str(tmp_path / "manifest.json")), reference["manifest"]
        )
        generate(40, 1, str(tmp_path), fmt="mariadb", dsn=lp.mariadb_dsn, schema=db)
        assert len(lp.load_mariadb(db)["PA_PatMas"]) == 40
    finally:
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root")
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute("SHOW DATABASES")
            assert not [r for r in cur.fetchall() if r[0].startswith(f"{db}__")]
        conn.close()


def test_same_seed_same_bytes_different_seed_different(tmp_path: Path, lp) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 8), (b, 8), (c, 9)):
        generate(400, seed, str(out), fmt="csv", defect_rate=0.1)
    names = sorted(p.name for p in a.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(TABLES) + 1
    _, mismatch, _ = filecmp.cmpfiles(a, c, names, shallow=False)
    assert "PA_PatMas.csv" in mismatch and "manifest.json" in mismatch
    # sqlite: compare table contents (file header bytes may differ)
    s1, s2, s3 = tmp_path / "s1", tmp_path / "s2", tmp_path / "s3"
    for out, seed in ((s1, 8), (s2, 8), (s3, 9)):
        generate(400, seed, str(out), defect_rate=0.1)
    assert (s1 / "manifest.json").read_bytes() == (s2 / "manifest.json").read_bytes()
    d1 = lp.load_sqlite(s1 / "legacy_pas.sqlite3")
    assert d1 == lp.load_sqlite(s2 / "legacy_pas.sqlite3")
    assert d1 != lp.load_sqlite(s3 / "legacy_pas.sqlite3")
    # and sqlite equals csv of the same seed
    assert d1 == lp.load_csv(a)
    assert (
        json.loads((s1 / "manifest.json").read_text())["defects"]
        == json.loads((a / "manifest.json").read_text())["defects"]
    )


def test_clean_csv_distinguishes_null_and_empty(tmp_path: Path) -> None:
    generate(300, 4, str(tmp_path), fmt="csv")
    text = (tmp_path / "PA_PatMas.csv").read_text(encoding="utf-8")
    header, first = text.splitlines()[:2]
    assert header.startswith("PAPMI_RowId,PAPMI_No,")
    assert first.startswith('1,"RXX')
    assert ',"",' in text and ",," in text
