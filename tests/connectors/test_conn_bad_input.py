"""Bad input gives a clear error naming the connector and the problem -- never
a password (canary), never a silent skip."""

from __future__ import annotations

import glob
import logging
import os
import traceback
from pathlib import Path
from typing import Any

import pytest

from connectors.kinds import get_kind
from migration.engine.errors import EngineError, TerminalError, TransientError

from .conftest import JARS, load_csv, load_json, load_mariadb

CANARY = "CANARY-pw-7f3a9"


@pytest.fixture
def canary_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CX_CANARY_PW", CANARY)
    return "env:CX_CANARY_PW"


def _assert_clean(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    text = "".join(traceback.format_exception(exc))
    assert CANARY not in text
    assert CANARY not in repr(exc)
    assert CANARY not in caplog.text
    for record in caplog.records:
        assert CANARY not in record.getMessage()


def _open(kind: str, cfg: dict[str, Any], name: str) -> Any:
    return get_kind(kind).open(cfg, name=name)


UNREACHABLE = {
    "postgresql": {
        "host": "127.0.0.1",
        "port": 1,
        "dbname": "test",
        "user": "postgres",
    },
    "odbc": {
        "driver": "PostgreSQL Unicode",
        "host": "127.0.0.1",
        "port": 1,
        "database": "test",
        "user": "postgres",
    },
    "jdbc": {
        "driver_class": "org.postgresql.Driver",
        "url": "jdbc:postgresql://127.0.0.1:1/test",
        "jars": [JARS["postgresql"]],
        "user": "postgres",
    },
}


@pytest.mark.parametrize("kind", sorted(UNREACHABLE))
def test_unreachable_host(
    kind: str, canary_env: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = {**UNREACHABLE[kind], "password": canary_env}
    src = _open(kind, cfg, f"pas-{kind}-down")
    with pytest.raises(EngineError) as exc:
        src.discover()
    msg = str(exc.value)
    assert f"pas-{kind}-down" in msg and "connect failed" in msg
    assert isinstance(exc.value, (TransientError, TerminalError))
    _assert_clean(exc.value, caplog)
    res = src.check()
    assert not res.ok and not res.authenticated
    assert CANARY not in repr(res)


def test_wrong_password_mariadb_odbc(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL here trusts local connections, MariaDB checks passwords.
    caplog.set_level(logging.DEBUG)
    import uuid

    db, user, _pw, cleanup = load_mariadb(uuid.uuid4().hex[:8])
    monkeypatch.setenv("CX_CANARY_PW", CANARY)
    try:
        src = _open(
            "odbc",
            {
                "driver": "MariaDB Unicode",
                "host": "127.0.0.1",
                "port": 3306,
                "database": db,
                "user": user,
                "password": "env:CX_CANARY_PW",
            },
            "pas-maria-badpw",
        )
        with pytest.raises(TerminalError, match="pas-maria-badpw") as exc:
            src.connect()
        assert "Access denied" in str(exc.value)
        _assert_clean(exc.value, caplog)
        res = src.check()
        assert not res.ok and CANARY not in " ".join(res.problems)
    finally:
        cleanup()


def test_odbc_logs_do_not_hold_the_password(canary_env: str) -> None:
    # odbcinst.ini on this machine sets CommLog=1 for psqlODBC; the kind turns
    # it off in the connection string, so no driver log holds the canary.
    src = _open("odbc", {**UNREACHABLE["odbc"], "port": 5432, "password": canary_env},
                "pas-odbc-log")  # fmt: skip
    src.connect()
    src.close()
    for path in glob.glob("/tmp/*odbc*.log") + glob.glob(
        os.path.expanduser("~/*odbc*")
    ):
        with open(path, errors="replace") as fh:
            assert CANARY not in fh.read()


def test_missing_odbc_driver() -> None:
    src = _open("odbc", {"driver": "No Such Driver 9", "database": "x"}, "pas-nodrv")
    with pytest.raises(TerminalError, match=r"No Such Driver 9.*not installed") as exc:
        src.connect()
    assert "pas-nodrv" in str(exc.value) and "SQLite3" in str(exc.value)


def test_missing_jar() -> None:
    src = _open(
        "jdbc",
        {
            "driver_class": "org.h2.Driver",
            "url": "jdbc:h2:mem:x",
            "jars": ["/no/h2.jar"],
        },
        "pas-nojar",
    )
    with pytest.raises(TerminalError, match=r"/no/h2.jar does not exist"):
        src.connect()


def test_wrong_driver_class() -> None:
    src = _open(
        "jdbc",
        {
            "driver_class": "org.nope.Driver",
            "url": "jdbc:h2:mem:x",
            "jars": [JARS["h2"]],
        },
        "pas-nocls",
    )
    with pytest.raises(TerminalError, match=r"org.nope.Driver not found"):
        src.connect()


def test_missing_sqlite_file(tmp_path: Path) -> None:
    src = _open("sqlite", {"path": str(tmp_path / "nope.db")}, "pas-nofile")
    with pytest.raises(TerminalError, match="does not exist"):
        src.connect()


def test_vanished_table_sqlite(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "v.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.commit()
    src = _open("sqlite", {"path": str(path)}, "pas-vanish")
    assert [t.name for t in src.discover()] == ["t"]
    conn.execute("DROP TABLE t")
    conn.commit()
    conn.close()
    with pytest.raises(TerminalError, match=r"table 't' not found|no such table"):
        list(src.read_chunks("t", ["id"], "id"))


def test_malformed_csv_row_names_the_line(tmp_path: Path) -> None:
    folder = load_csv(tmp_path / "csv")
    path = folder / "PA_Adm.csv"
    lines = path.read_text().splitlines()
    lines[4] += ',"extra"'  # line 5 of the file
    path.write_text("\n".join(lines) + "\n")
    src = _open("csv", {"path": str(folder)}, "pas-csv")
    with pytest.raises(TerminalError, match=r"PA_Adm.csv line 5: malformed row"):
        src.discover()
    # The other table still reads; the broken one never partially.
    assert src.count("PA_PatMas") == 60
    with pytest.raises(TerminalError, match="line 5"):
        list(src.read_chunks("PA_Adm", ["PAADM_RowId"], "PAADM_RowId"))


def test_unterminated_quote_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,"x"\n2,"y\n3,"z"\n')
    src = _open("csv", {"path": str(tmp_path)}, "pas-csvq")
    with pytest.raises(TerminalError, match=r"t.csv line \d+: malformed"):
        src.count("t")


def test_wrong_encoding_names_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "PA_PatMas.csv"
    path.write_bytes("id,name\n1,Zoe\n2,Chlo\u00e9\n".encode("latin-1"))
    src = _open("csv", {"path": str(tmp_path)}, "pas-enc")
    with pytest.raises(
        TerminalError,
        match=r"PA_PatMas.csv is not valid utf-8: byte 0xe9 at offset 20 "
        r"\(line 3\)",
    ):
        src.discover()
    ok = _open("csv", {"path": str(tmp_path), "encoding": "latin-1"}, "pas-enc2")
    assert ok.sample("PA_PatMas", 5)["name"].tolist() == ["Zoe", "Chlo\u00e9"]


def test_csv_delimiter_and_quotechar(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id|name\n1|'a|b'\n2|''\n3|\n")
    src = _open("csv", {"path": str(tmp_path), "delimiter": "|", "quotechar": "'"}, "p")
    df = src.sample("t", 10)
    assert df["name"].tolist()[:2] == ["a|b", ""]
    assert df["name"].isna().tolist() == [False, False, True]


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    folder = load_json(tmp_path / "json")
    jl = folder / "PA_Adm.jsonl"
    lines = jl.read_text().splitlines()
    lines[6] = lines[6][:-1]  # drop the closing brace on line 7
    jl.write_text("\n".join(lines) + "\n")
    arr = folder / "PA_PatMas.json"
    text = arr.read_text().replace('"PAPMI_RowId": 3,', '"PAPMI_RowId": 3,,', 1)
    arr.write_text(text)
    src = _open("json", {"path": str(folder)}, "pas-json")
    with pytest.raises(TerminalError, match=r"PA_Adm.jsonl line 7: malformed JSON"):
        src.count("PA_Adm")
    line = text[: text.index('"PAPMI_RowId": 3,,')].count("\n") + 1
    with pytest.raises(TerminalError, match=rf"PA_PatMas.json line {line}: malformed"):
        src.count("PA_PatMas")


def test_unsorted_file_is_landed_not_misread(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,v\n1,a\n3,b\n2,c\n")
    cfg = {"path": str(tmp_path), "landing_dir": str(tmp_path / "land")}
    src = _open("csv", cfg, "pas-unsorted")
    got = [r for c in src.read_chunks("t", ["v"], "id") for r in c.itertuples()]
    assert [(r.v) for r in got] == ["a", "c", "b"]  # key order 1, 2, 3
