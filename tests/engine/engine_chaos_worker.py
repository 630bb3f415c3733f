"""Chaos worker: run (or resume) the default contract; killed with SIGKILL by the test.

Usage: engine_chaos_worker.py SOURCE_SQLITE SINK_KIND TARGET RUN_ID CHUNK
(TARGET = SQLite file path, or ``dsn|schema`` for PostgreSQL). Writes a
``progress`` line to stderr after every committed chunk and phase, and prints
the final report as JSON when the run finishes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from connectors.kinds.sqlite import SqliteConfig, SqliteSource  # noqa: E402
from migration.engine.defaults import load_default_contract  # noqa: E402
from migration.engine.runner import run_contract  # noqa: E402


def main() -> None:
    source, kind, target, run_id, chunk = sys.argv[1:6]
    sink: object
    if kind == "sqlite":
        from connectors.sinks.sqlite import SqliteSink

        sink = SqliteSink(target)
    else:
        from connectors.sinks.postgresql import PostgresSink

        dsn, schema = target.split("|")
        sink = PostgresSink(dsn, schema=schema)
    contract = load_default_contract(chunk_size=int(chunk))

    def progress(_event: object) -> None:
        # One line per committed chunk / finished phase: the test kills the
        # process a random number of commits (plus a random delay) in.
        sys.stderr.write("progress\n")
        sys.stderr.flush()

    rep = run_contract(
        contract,
        SqliteSource(SqliteConfig(path=source)),
        sink,
        run_id,  # type: ignore[arg-type]
        on_progress=progress,
    )
    print(json.dumps(rep.to_dict()))


if __name__ == "__main__":
    main()
