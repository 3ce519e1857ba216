"""``portal serve --workers 2`` for real: Prometheus multiprocess mode sums every worker's counters,
whichever worker answers the scrape, and the access log is JSON lines on stderr without the key."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_SECRET, free_port

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-workers-metrics-0123456789"
CALLS = 60


def _requests_total(text: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "portal_requests_total" and sample.labels.get("model") == "mock-model":
                total += sample.value
    return total


async def _drive(url: str) -> None:
    async def one(i: int) -> None:
        # A new connection per call, so the kernel spreads them over both workers.
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            answer = await client.post(
                f"{url}/v1/chat/completions",
                headers={"Authorization": f"Bearer {KEY}"},
                json={"model": "mock-model", "messages": [{"role": "user", "content": f"call {i}"}]},
            )
            assert answer.status_code == 200, answer.text

    for start in range(0, CALLS, 20):
        await asyncio.gather(*(one(i) for i in range(start, start + 20)))


def test_two_workers_report_one_total(tmp_path: Path) -> None:
    config = tmp_path / "portal.yaml"
    config.write_bytes(
        msgspec.json.encode(
            {
                "models": [{"name": "mock-model", "deployments": [{"provider": "mock", "model": "mock-1"}]}],
                "api_keys": [{"key": KEY, "alias": "workers"}],
            }
        )
    )
    metrics_dir = tmp_path / "metrics"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "PROMETHEUS_"))}
    env |= {
        "PORTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'portal.db'}",
        "PORTAL_SECRET_KEY": TEST_SECRET,
        "PORTAL_DATA_DIR": str(tmp_path),
        "PORTAL_CONFIG": str(config),
        "PORTAL_WRITER_INTERVAL_S": "0.2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left over from an earlier run")
    subprocess.run([sys.executable, "-m", "portal", "migrate"], cwd=ROOT, env=env, check=True, timeout=120)
    stderr = (tmp_path / "stderr.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "portal", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "stderr.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.3)
        assert not (metrics_dir / "counter_999999.db").exists(), "stale files are wiped at start"
        asyncio.run(_drive(url))
        time.sleep(1.0)  # each worker's writer loop accounts its calls within 0.2 s
        totals = [_requests_total(httpx.get(f"{url}/metrics", timeout=10).text) for _ in range(8)]
        assert totals == [CALLS] * 8
        per_worker = [
            sum(
                s.value
                for metric in MultiProcessCollector.merge([str(path)])
                for s in metric.samples
                if s.name == "portal_requests_total"
            )
            for path in sorted(metrics_dir.glob("counter_*.db"))
        ]
        assert len(per_worker) == 2
        assert sum(per_worker) == CALLS
        assert min(per_worker) > 0, f"one worker served every call: {per_worker}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        stderr.close()
    log = (tmp_path / "stderr.log").read_text()
    assert "Traceback" not in log
    assert KEY not in log
    access = [json.loads(line) for line in log.splitlines() if '"logger":"portal.access"' in line]
    assert len(access) == CALLS
    assert "uvicorn.access" not in log, "uvicorn's own access log stays off (portal.access replaces it)"
    assert {line["client_id"] for line in access} == {"workers"}
    assert all(line["status"] == 200 and line["model"] == "mock-model" for line in access)
    assert not list(metrics_dir.glob("gauge_livesum_*.db")), "stopped workers leave the live gauges"
