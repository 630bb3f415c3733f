"""``manage.py bench`` end to end at a tiny size: it runs, and what it reports adds up.

Speed itself is never asserted here (QUALITY.md: speed and memory are shown by
the benchmark command, not by timed tests); this shows the command works on a
fresh machine, measures every baseline beside the pipeline in one run, and
cleans up its scratch schemas.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from migration import bench


def _scratch_schemas_left() -> list[tuple[str]]:
    """This process's bench scratch schemas (named after its pid: a bench
    running in another test worker at the same time has its own)."""
    with psycopg.connect(bench.DEFAULT_DSN) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_pipe\\_%' "
            "OR nspname LIKE 'bench\\_naive\\_%' OR nspname LIKE '%\\_bare'"
        ).fetchall()
    return [r for r in rows if str(os.getpid()) in r[0].split("_")]


def test_bench_runs_every_measurement_and_reports_ratios(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    stdout = io.StringIO()
    call_command(
        "bench",
        patients=300,
        seed=5,
        no_connectors=True,
        work=tmp_path / "work",
        json=out,
        stdout=stdout,
    )
    res = json.loads(out.read_text())
    pipe = res["pipeline"]
    assert pipe["status"] == "succeeded", pipe["failure_reasons"]
    assert pipe["ledger_balanced"] is True
    assert 0 < pipe["loaded_rows"] < pipe["source_rows"]  # defects were rejected
    # Every phase was timed; the load phase is part of the end-to-end time.
    for phase in ("cross_table", "publish", "reconcile", "checksums", "total"):
        assert phase in pipe["timings"], phase
    assert 0 < pipe["load_seconds"] < pipe["seconds"]
    # The baselines ran on the same rows: raw COPY loads exactly what the
    # pipeline published, naive pandas every source row.
    assert res["raw_copy"]["rows"] == pipe["loaded_rows"]
    assert res["count_star"]["rows"] == pipe["loaded_rows"]
    assert res["naive_pandas"]["rows"] == pipe["source_rows"]
    assert res["source_read"]["rows"] == pipe["source_rows"]
    # The load with the engine's work precomputed went through the same
    # runner and ledger: every chunk replayed, the same rows in and out.
    pre = res["precomputed"]
    assert pre["status"] == "succeeded", pre["failure_reasons"]
    assert pre["ledger_balanced"] is True
    assert pre["replayed_chunks"] > 0
    for key in ("source_rows", "loaded_rows", "rejected_rows"):
        assert pre[key] == pipe[key], key
    # The same load with the worker pinned to one core: it ran there, and
    # moved the same rows.
    one = res["one_core"]
    assert one["status"] == "succeeded", one["failure_reasons"]
    assert one["ledger_balanced"] is True
    assert len(one["cpus"]) == 1
    for key in ("source_rows", "loaded_rows", "rejected_rows"):
        assert one[key] == pipe[key], key
    r = res["ratios"]
    assert r["one_core_vs_all_cores"] == (
        one["load_rows_per_s"] / pipe["load_rows_per_s"]
    )
    assert r["P1_pipeline_vs_raw_copy"] == (
        pipe["load_rows_per_s"] / res["raw_copy"]["rows_per_s"]
    )
    assert r["P1_end_to_end_vs_raw_copy"] < r["P1_pipeline_vs_raw_copy"]
    assert r["P1_ceiling_precomputed_vs_raw_copy"] == (
        pre["load_rows_per_s"] / res["raw_copy"]["rows_per_s"]
    )
    # P4 is the whole reconciliation: counts, nulls, FK chains and the
    # column checksums (summed in the same scans, then compared).
    timings = pipe["timings"]
    assert r["P4_reconcile_vs_count_star"] == pytest.approx(
        (timings["reconcile"] + timings["checksums"])
        / max(res["count_star"]["seconds"], 1e-6)
    )
    # The load's CPU, by where it went: every thread of the pipeline's load
    # did work; the PostgreSQL backend is on this host, so it is counted too
    # (in clock ticks: at this tiny size it may round to none); the replayed
    # load transformed less; the sum is the parts'.
    cpu = pipe["load_cpu"]
    assert set(cpu["parts"]) == {
        "transform",
        "source_read",
        "checksums_and_payload",
        "copy_writer",
        "postgresql_backend",
    }
    backend = cpu["parts"].pop("postgresql_backend")
    assert backend is not None and backend >= 0
    assert all(v > 0 for v in cpu["parts"].values()), cpu
    cpu["parts"]["postgresql_backend"] = backend
    assert cpu["total"] == pytest.approx(sum(cpu["parts"].values()), abs=0.01)
    assert cpu["wall"] == pytest.approx(pipe["load_seconds"], rel=0.25)
    assert cpu["cores_busy"] == pytest.approx(cpu["total"] / cpu["wall"], abs=0.01)
    replayed = pre["load_cpu"]["parts"]
    assert replayed["transform"] < cpu["parts"]["transform"]
    text = stdout.getvalue()
    assert "load CPU-s, pipeline: transform" in text
    assert "P1 pipeline load / raw COPY" in text and "P4 reconcile" in text
    assert "load with engine work precomputed / raw COPY" in text
    assert "load, the worker on one core" in text and "the worker on one core /" in text
    # No scratch schema is left behind.
    assert _scratch_schemas_left() == []


def test_bench_repeats_rounds_and_reports_each_figures_median(tmp_path: Path) -> None:
    """``--repeat 3``: every side-by-side figure is measured in each round; the
    reported figure is the median round (kept in ``rounds`` with the others),
    the ratios are computed from those, and no scratch schema is left."""
    out = tmp_path / "bench.json"
    stdout = io.StringIO()
    call_command(
        "bench",
        patients=200,
        seed=6,
        no_connectors=True,
        repeat=3,
        work=tmp_path / "work",
        json=out,
        stdout=stdout,
    )
    res = json.loads(out.read_text())
    assert res["repeat"] == 3 and len(res["rounds"]) == 3
    for name, rate in (
        ("pipeline", "load_rows_per_s"),
        ("precomputed", "load_rows_per_s"),
        ("one_core", "load_rows_per_s"),
        ("raw_copy", "rows_per_s"),
        ("naive_pandas", "rows_per_s"),
        ("source_read", "rows_per_s"),
    ):
        rates = sorted(r[name][rate] for r in res["rounds"])
        assert res[name][rate] == rates[1], name  # the median of three
        assert res[name]["range"] == [rates[0], rates[2]], name
    assert res["ratios"]["P1_pipeline_vs_raw_copy"] == (
        res["pipeline"]["load_rows_per_s"] / res["raw_copy"]["rows_per_s"]
    )
    assert all(r["pipeline"]["ledger_balanced"] for r in res["rounds"])
    assert "median of 3 rounds" in stdout.getvalue()
    assert _scratch_schemas_left() == []


def test_bench_refuses_a_non_positive_repeat(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--repeat must be positive"):
        call_command("bench", patients=10, repeat=0, work=tmp_path, no_connectors=True)
