"""The README's run command on a fresh data directory: it serves the landing page and is ready."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_demo_serves_landing_page_and_is_ready(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "portal", "demo", "--port", str(port), "--data-dir", str(tmp_path / "data")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready is not None, "the demo server did not start"
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
        landing = httpx.get(f"{base}/", timeout=5)
        assert landing.status_code == 200
        assert "portal" in landing.text
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    assert "sk-portal-demo-key" in output
    assert "Traceback" not in output
