"""Fixtures of the framework-free engine tests (run with ``-p no:django``).

Sources are real: the generated legacy PAS read through the ``sqlite``
connector kind, or small SQLite files written by the test. Sinks are real:
a SQLite file and a PostgreSQL schema named ``eng_<uuid8>`` dropped after.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

# --import-mode=importlib puts nothing on sys.path and -p no:django skips the
# plugin that would add the project root: add it, and this directory for
# engine_kit.
HERE = Path(__file__).resolve().parent
for p in (HERE.parents[1], HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from engine_kit import PG_DSN, pg_available  # noqa: E402

from connectors.sinks.postgresql import PostgresSink  # noqa: E402
from connectors.sinks.sqlite import SqliteSink  # noqa: E402


@pytest.fixture(scope="session")
def legacy_pas(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Return a factory of generated legacy PAS directories (cached per args)."""
    from migration.legacypas.core import generate

    cache: dict[tuple[int, int, float], Path] = {}

    def make(patients: int = 1500, seed: int = 7, defect_rate: float = 0.02) -> Path:
        key = (patients, seed, defect_rate)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"pas_{patients}_{seed}")
            generate(patients, seed, str(out), fmt="sqlite", defect_rate=defect_rate)
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """Return a unique schema name, dropped after the test."""
    if not pg_available():
        pytest.fail(f"PostgreSQL is required at {PG_DSN}")
    name = f"eng_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def make_sink(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Any]]:
    """Return a factory of sinks of one kind over ONE target (param: kind)."""
    kind = request.param
    schema = f"eng_{uuid.uuid4().hex[:8]}"
    opened: list[Any] = []
    if kind == "postgresql" and not pg_available():
        pytest.fail(f"PostgreSQL is required at {PG_DSN}")

    def make() -> Any:
        sink: Any
        if kind == "sqlite":
            sink = SqliteSink(tmp_path / "target.sqlite3")
        else:
            sink = PostgresSink(PG_DSN, schema=schema)
        opened.append(sink)
        return sink

    make.kind = kind  # type: ignore[attr-defined]
    make.schema = schema  # type: ignore[attr-defined]
    make.path = tmp_path / "target.sqlite3"  # type: ignore[attr-defined]
    yield make
    for s in opened:
        try:
            s.close()
        except Exception:  # noqa: S110 - closing a possibly broken connection
            pass
    if kind == "postgresql":
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
