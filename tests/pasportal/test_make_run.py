"""`make run` on embedded defaults serves the login page with a running q2 cluster."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_make_run_serves_login_and_reports_a_running_cluster(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "PAS_", "DJANGO_", "MAKE", "MFLAGS"))
    }
    env.update(PAS_VAR_DIR=str(tmp_path / "var"), PAS_DEMO_PATIENTS="200")
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        health: dict[str, object] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                status, body = _get(f"http://127.0.0.1:{port}/healthz")
            except OSError:
                time.sleep(1)
                continue
            health = json.loads(body)
            if status == 200 and health.get("cluster_running"):
                break
            time.sleep(1)
        assert health.get("cluster_running") is True, health
        assert health["database"] == {"ok": True, "vendor": "sqlite"}
        status, html = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and "Sign in to PAS Portal" in html  # redirected to login
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in output
    assert "steward" in output and "data_steward" in output  # demo users printed
