"""Flat extracts not sorted by the engine's key are landed, then read in key order.

Framework-free: the csv and json kinds against real files, the landed copy a
real SQLite file read back through the sqlite kind.
"""

from __future__ import annotations

import json
import os
import random
import stat
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from connectors.kinds import get_kind
from migration.engine.errors import TerminalError

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "data" / "synthea"


def _open(kind: str, path: Path, landing: Path, **cfg: Any) -> Any:
    return get_kind(kind).open(
        {"path": str(path), "landing_dir": str(landing), **cfg}, name=f"{kind}-x"
    )


def _rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(1, n + 1):
        out.append(
            {
                "id": i * 7,  # gaps, and > 9 once i >= 2: numeric, not text order
                "name": rng.choice(["Ann", "Bob", "Zoë", "Émile", "", None]),
                "nhs": f"{rng.randrange(10**9, 10**10)}",  # 10 digits: text
                "code": rng.choice(["01", "02", "10"]),  # a leading zero: text
            }
        )
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    lines = ["id,name,nhs,code"]
    for r in rows:
        # unquoted empty = NULL, quoted "" = empty string
        name = "" if r["name"] is None else f'"{r["name"]}"'
        lines.append(f"{r['id']},{name},{r['nhs']},{r['code']}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _read_all(src: Any, table: str, key: str, **kw: Any) -> pd.DataFrame:
    chunks = list(src.read_chunks(table, ["id", "name", "nhs", "code"], key, **kw))
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()


def test_unsorted_csv_reads_exactly_as_the_sorted_file(tmp_path: Path) -> None:
    rows = _rows(1500, 3)
    (tmp_path / "sorted").mkdir()
    (tmp_path / "shuffled").mkdir()
    _write_csv(tmp_path / "sorted" / "t.csv", rows)
    shuffled = rows[:]
    random.Random(9).shuffle(shuffled)
    _write_csv(tmp_path / "shuffled" / "t.csv", shuffled)
    land = tmp_path / "land"

    plain = _open("csv", tmp_path / "sorted", land)
    mixed = _open("csv", tmp_path / "shuffled", land)
    want = _read_all(plain, "t", "id", chunk_size=200)
    assert not land.exists() or not list(land.iterdir()), "a sorted file was landed"

    chunks = list(
        mixed.read_chunks("t", ["id", "name", "nhs", "code"], "id", chunk_size=200)
    )
    assert [len(c) for c in chunks] == [200] * 7 + [100]
    got = pd.concat(chunks, ignore_index=True)
    # Same rows, same order, same dtypes, NULL and "" kept apart.
    pd.testing.assert_frame_equal(got, want)
    assert got["id"].tolist() == sorted(r["id"] for r in rows)
    assert got["name"].isna().sum() == sum(r["name"] is None for r in rows)
    assert (got["name"] == "").sum() == sum(r["name"] == "" for r in rows)
    assert (
        got["nhs"].str.len().eq(10).all() and got["code"].isin(["01", "02", "10"]).all()
    )

    # Key ranges (resume after a checkpoint, parallel ranges) partition exactly.
    keys = got["id"].tolist()
    lo, hi = keys[299], keys[899]
    parts = [
        _read_all(mixed, "t", "id", upto_key=lo, chunk_size=128),
        _read_all(mixed, "t", "id", after_key=lo, upto_key=hi, chunk_size=128),
        _read_all(mixed, "t", "id", after_key=hi, chunk_size=128),
    ]
    assert [len(p) for p in parts] == [300, 600, 600]
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), want)


def test_landed_copy_is_private_reused_and_replaced_when_the_file_changes(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    land = tmp_path / "land"
    rows = _rows(50, 1)
    _write_csv(data / "t.csv", rows[::-1])
    first = _open("csv", data, land)
    _read_all(first, "t", "id")
    copies = sorted(land.iterdir())
    assert len(copies) == 1
    assert stat.S_IMODE(land.stat().st_mode) == 0o700
    assert stat.S_IMODE(copies[0].stat().st_mode) == 0o600
    inode = copies[0].stat().st_ino

    # A second source (a resumed run, another range) reads the same copy.
    again = _open("csv", data, land)
    assert len(_read_all(again, "t", "id")) == 50
    assert sorted(land.iterdir()) == copies
    assert copies[0].stat().st_ino == inode  # the same file, not landed again

    # The extract changes: landed again, the stale copy gone.
    _write_csv(data / "t.csv", rows[:40][::-1])
    changed = _open("csv", data, land)
    assert _read_all(changed, "t", "id")["id"].tolist() == [r["id"] for r in rows[:40]]
    now = sorted(land.iterdir())
    assert len(now) == 1 and now != copies


def test_a_landed_copy_is_not_reused_once_the_reading_options_change(
    tmp_path: Path,
) -> None:
    """The same unchanged file read with another encoding or quote character
    gives other values: the copy landed under the old options must not be
    served (it would carry mis-decoded names into the migration), and the
    copy under the options put back is landed again, not confused with it."""
    data = tmp_path / "data"
    data.mkdir()
    land = tmp_path / "land"
    lines = ["id,name"] + [f"{i},Zoë {i}" for i in (3, 1, 2)]
    (data / "t.csv").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))

    def names(**cfg: Any) -> list[str]:
        src = _open("csv", data, land, **cfg)
        chunks = list(src.read_chunks("t", ["id", "name"], "id"))
        return pd.concat(chunks, ignore_index=True)["name"].tolist()

    assert names(encoding="latin-1") == ["Zoë 1", "Zoë 2", "Zoë 3"]
    with pytest.raises(TerminalError):  # latin-1 bytes are not UTF-8
        names(encoding="utf-8")
    assert names(encoding="cp1252") == ["Zoë 1", "Zoë 2", "Zoë 3"]
    # A quote character that changes what the values are.
    quoted = ["id,name"] + [f"{i},'Ann {i}'" for i in (3, 1, 2)]
    (data / "q.csv").write_text("\n".join(quoted) + "\n", encoding="utf-8")
    src = _open("csv", data, land)
    plain = pd.concat(list(src.read_chunks("q", ["id", "name"], "id")))
    assert plain["name"].tolist() == ["'Ann 1'", "'Ann 2'", "'Ann 3'"]
    src = _open("csv", data, land, quotechar="'")
    unq = pd.concat(list(src.read_chunks("q", ["id", "name"], "id")))
    assert unq["name"].tolist() == ["Ann 1", "Ann 2", "Ann 3"]
    # One copy per file and set of options that read it whole: t.csv under
    # latin-1 and cp1252 (the failed UTF-8 landing left nothing), q.csv
    # under each quote character.
    assert len(list(land.glob("*.sqlite3"))) == 4


def test_two_connectors_reading_one_extract_differently_keep_their_own_copies(
    tmp_path: Path,
) -> None:
    """Two connectors on the same extract with different reading options
    (here, quote characters that give other values) each land once and then
    reuse their own copy, however their reads interleave -- neither lands
    over the other's -- while a changed extract still replaces each one's
    stale copy when it next reads."""
    data = tmp_path / "data"
    data.mkdir()
    land = tmp_path / "land"
    quoted = ["id,name"] + [f"{i},'Ann {i}'" for i in (3, 1, 2)]
    (data / "q.csv").write_text("\n".join(quoted) + "\n", encoding="utf-8")
    plain = _open("csv", data, land)
    single = _open("csv", data, land, quotechar="'")

    def names(src: Any) -> list[str]:
        chunks = list(src.read_chunks("q", ["id", "name"], "id"))
        return pd.concat(chunks, ignore_index=True)["name"].tolist()

    def inodes() -> dict[str, int]:
        return {p.name: p.stat().st_ino for p in land.glob("*.sqlite3")}

    assert names(plain) == ["'Ann 1'", "'Ann 2'", "'Ann 3'"]
    assert names(single) == ["Ann 1", "Ann 2", "Ann 3"]
    landed = inodes()
    assert len(landed) == 2
    for _ in range(2):
        assert names(plain) == ["'Ann 1'", "'Ann 2'", "'Ann 3'"]
        assert names(single) == ["Ann 1", "Ann 2", "Ann 3"]
    assert inodes() == landed  # reused, never landed again
    assert {c.name for c in plain.landed_copies()} | {
        c.name for c in single.landed_copies()
    } == set(landed)
    assert not {c.name for c in plain.landed_copies()} & {
        c.name for c in single.landed_copies()
    }

    # The extract changes: each connector lands it again and drops its own
    # stale copy, leaving the other's to the other.
    time.sleep(0.01)
    (data / "q.csv").write_text(
        "\n".join([*quoted, "4,'Ann 4'"]) + "\n", encoding="utf-8"
    )
    assert names(single) == ["Ann 1", "Ann 2", "Ann 3", "Ann 4"]
    now = inodes()
    assert len(now) == 2 and len(set(now) & set(landed)) == 1
    assert names(plain)[-1] == "'Ann 4'"
    assert len(inodes()) == 2 and not set(inodes()) & set(landed)


def test_landing_refuses_a_repeated_or_missing_key_without_naming_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "dup.csv").write_text(
        "id,v\n9434765919,a\n4857773456,b\n9434765919,c\n"
    )
    (tmp_path / "gap.csv").write_text("id,v\n3,a\n,b\n1,c\n")
    src = _open("csv", tmp_path, tmp_path / "land")
    events: list[Any] = []
    src.on_query = events.append
    with pytest.raises(TerminalError, match=r"dup.csv: order key 'id' repeats") as exc:
        list(src.read_chunks("dup", ["v"], "id"))
    assert "9434765919" not in str(exc.value)
    # The query log has the failed landing and read, with the reason.
    failed = [e for e in events if e.outcome == "error"]
    assert [e.purpose for e in failed] == ["land", "read_chunks"]
    assert all("repeats a value" in e.message for e in failed)
    assert not any("9434765919" in e.statement + e.message for e in events)
    with pytest.raises(TerminalError, match=r"gap.csv: order key 'id' has empty"):
        list(src.read_chunks("gap", ["v"], "id"))
    # Nothing half-landed is left behind.
    assert [p.name for p in (tmp_path / "land").iterdir()] == []


def test_unsorted_json_lines_are_landed_too(tmp_path: Path) -> None:
    rows = _rows(300, 5)
    random.Random(2).shuffle(rows)
    (tmp_path / "t.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n",
        encoding="utf-8",
    )
    src = _open("json", tmp_path, tmp_path / "land")
    got = _read_all(src, "t", "id", chunk_size=64)
    assert got["id"].tolist() == sorted(r["id"] for r in rows)
    by_id = {r["id"]: r for r in rows}
    for rec in got.head(50).to_dict("records"):
        want = by_id[rec["id"]]
        assert rec["nhs"] == want["nhs"] and rec["code"] == want["code"]
        assert (rec["name"] is pd.NA and want["name"] is None) or rec["name"] == want[
            "name"
        ]
    assert len(list((tmp_path / "land").iterdir())) == 1


def test_synthea_extract_reads_in_key_order(tmp_path: Path) -> None:
    """The third-party extract (rows in no key order) reads by its UUID key."""
    if not (SYNTHEA / "patients.csv").exists():
        pytest.fail(f"the Synthea extract is missing at {SYNTHEA}")
    src = get_kind("csv").open(
        {"path": str(SYNTHEA), "landing_dir": str(tmp_path / "land")}, name="synthea"
    )
    raw = pd.read_csv(SYNTHEA / "patients.csv", dtype=str, keep_default_na=False)
    assert raw["Id"].tolist() != sorted(raw["Id"]), "the fixture is sorted already"
    cols = ["Id", "BIRTHDATE", "LAST", "ZIP"]
    chunks = list(src.read_chunks("patients", cols, "Id", chunk_size=10))
    got = pd.concat(chunks, ignore_index=True)
    assert got["Id"].tolist() == sorted(raw["Id"])
    assert len(got) == src.count("patients") == len(raw)
    # ZIP codes keep their leading zeros (text, not 2155.0).
    want = {i: (z or None) for i, z in zip(raw["Id"], raw["ZIP"], strict=True)}
    zips = got["ZIP"].astype(object).where(got["ZIP"].notna(), None)
    assert dict(zip(got["Id"], zips, strict=True)) == want
    assert any(z.startswith("0") for z in got["ZIP"].dropna())


@pytest.mark.parametrize("kind", ["csv", "json"])
def test_identifier_digits_stay_text_and_mixed_numbers_are_floats(
    tmp_path: Path, kind: str
) -> None:
    if kind == "csv":
        (tmp_path / "t.csv").write_text(
            "id,nhs,zip,amount\n1,4857773456,02155,1.5\n2,9434765919,10001,2\n"
        )
    else:
        (tmp_path / "t.json").write_text(
            json.dumps(
                [
                    {"id": 1, "nhs": "4857773456", "zip": "02155", "amount": 1.5},
                    {"id": 2, "nhs": "9434765919", "zip": "10001", "amount": 2},
                ]
            )
        )
    src = get_kind(kind).open({"path": str(tmp_path)}, name="types")
    info = {c.name: c.type for c in src.discover()[0].columns}
    assert info == {"id": "INTEGER", "nhs": "TEXT", "zip": "TEXT", "amount": "REAL"}
    rec = src.sample("t", 5).to_dict("records")
    assert [r["nhs"] for r in rec] == ["4857773456", "9434765919"]
    assert [r["zip"] for r in rec] == ["02155", "10001"]
    assert [r["amount"] for r in rec] == [1.5, 2.0]


def test_default_landing_folder_is_private(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    (tmp_path / "t.csv").write_text("id,v\n2,a\n1,b\n")
    src = get_kind("csv").open({"path": str(tmp_path)}, name="default-landing")
    assert [r for c in src.read_chunks("t", ["v"], "id") for r in c["v"]] == ["b", "a"]
    root = tmp_path / f"pas-landing-{os.getuid()}"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert len(list(root.glob("*.sqlite3"))) == 1


def test_landed_copies_unused_past_retention_are_deleted(tmp_path: Path) -> None:
    """Copies hold patient rows: unused ones go; what landing did not write stays."""
    data = tmp_path / "data"
    data.mkdir()
    _write_csv(data / "a.csv", _rows(30, 2)[::-1])
    _write_csv(data / "b.csv", _rows(20, 4)[::-1])
    land = tmp_path / "land"
    src = _open("csv", data, land, landing_retention_hours=1)
    _read_all(src, "a", "id")
    (copy_a,) = list(land.glob("*.sqlite3"))
    crashed = land / f".{'0' * 20}-{'1' * 20}-4242-deadbeef.partial"  # SIGKILLed
    crashed.write_bytes(b"x")
    theirs = land / "notes.sqlite3"  # not ours: never touched
    theirs.write_bytes(b"y")
    two_hours_ago = time.time() - 7200
    for p in (copy_a, crashed, theirs):
        os.utime(p, (two_hours_ago, two_hours_ago))

    _read_all(src, "b", "id")  # lands b; sweeps what is past retention
    left = {p.name for p in land.iterdir()}
    assert copy_a.name not in left and crashed.name not in left
    assert theirs.name in left
    assert len([n for n in left if n != theirs.name]) == 1  # b's copy

    # Reading a copy restarts its clock: it is not swept while in use.
    (copy_b,) = [p for p in land.glob("*.sqlite3") if p != theirs]
    os.utime(copy_b, (two_hours_ago + 3000, two_hours_ago + 3000))  # 70 min old
    assert len(_read_all(src, "b", "id")) == 20
    assert copy_b.exists() and copy_b.stat().st_mtime > time.time() - 60


def _land_and_read(args: tuple[str, str]) -> list[int]:
    path, land = args
    src = get_kind("csv").open({"path": path, "landing_dir": land}, name="race")
    return [
        int(k)
        for c in src.read_chunks("t", ["id"], "id", chunk_size=97)
        for k in c["id"]
    ]


def test_parallel_readers_landing_the_same_file_all_read_it_whole(
    tmp_path: Path,
) -> None:
    """Range workers start together on an unlanded extract: each lands or
    reuses, none reads a half-written copy, one copy remains."""
    import multiprocessing as mp

    rows = _rows(5000, 8)
    random.Random(4).shuffle(rows)
    (tmp_path / "data").mkdir()
    _write_csv(tmp_path / "data" / "t.csv", rows)
    land = tmp_path / "land"
    want = sorted(r["id"] for r in rows)
    with mp.get_context("spawn").Pool(4) as pool:
        results = pool.map(_land_and_read, [(str(tmp_path / "data"), str(land))] * 4)
    assert all(r == want for r in results)
    assert [p.suffix for p in land.iterdir()] == [".sqlite3"]


def test_each_connector_lists_and_purges_only_its_own_copies(tmp_path: Path) -> None:
    land = tmp_path / "land"
    srcs = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        _write_csv(tmp_path / name / "t.csv", _rows(40, 3)[::-1])
        srcs.append(_open("csv", tmp_path / name, land))
        _read_all(srcs[-1], "t", "id")
    one, two = srcs
    assert len(one.landed_copies()) == len(two.landed_copies()) == 1
    assert one.landed_copies() != two.landed_copies()
    (copy,) = one.landed_copies()
    assert copy.bytes > 0 and copy.last_used > time.time() - 60
    assert [c.name for c in one.purge_landed()] == [copy.name]
    assert one.landed_copies() == [] and len(two.landed_copies()) == 1
    # Purged: the next read lands again, from the file.
    assert len(_read_all(one, "t", "id")) == 40
    assert len(one.landed_copies()) == 1
