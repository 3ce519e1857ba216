"""Real ``portal serve`` processes for the operations tests: started with a YAML config and environment,
waited for until ``/readyz`` answers, stopped with SIGTERM (as Docker and Kubernetes do)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec

from tests.conftest import TEST_SECRET, free_port
from tests.fakes.server import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]
OPENAI_KEY_ENV = "TEST_DEPLOY_OPENAI_KEY"
INPUT_PRICE = "0.15"
OUTPUT_PRICE = "0.60"


def openai_model(fake: FakeUpstream, name: str = "gpt-4o-mini") -> dict[str, Any]:
    """A model on the fake OpenAI upstream, priced so costs are known exactly."""
    return {
        "name": name,
        "deployments": [
            {
                "provider": "openai",
                "model": name,
                "api_base": f"{fake.base_url}/v1",
                "api_key": f"env:{OPENAI_KEY_ENV}",
                "input_price_per_mtok": INPUT_PRICE,
                "output_price_per_mtok": OUTPUT_PRICE,
                "max_retries": 0,
            }
        ],
    }


@dataclass
class PortalProcess:
    """One running ``portal serve``."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    data_dir: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> None:
        """Send SIGTERM (the graceful stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> int:
        """Wait for the process to end; kill it (and fail) if it does not within ``timeout``."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"portal did not stop within {timeout} s:\n{self.output()}") from None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code."""
        self.terminate()
        return self.wait(timeout)

    def stopped_gracefully(self, code: int) -> bool:
        """Exit code 0 (or the SIGTERM uvicorn re-raises once its graceful shutdown is done) and no
        traceback in the output."""
        return code in {0, -signal.SIGTERM} and "Traceback" not in self.output()

    def spilled(self) -> list[Path]:
        """Records the spend writer could not write at shutdown (should be none)."""
        return sorted(self.data_dir.glob("unwritten-spend-*.jsonl"))


def start_portal(
    tmp: Path,
    *,
    database_url: str,
    config: dict[str, Any],
    env: dict[str, str] | None = None,
    port: int | None = None,
    verify: ssl.SSLContext | bool = True,
    scheme: str = "http",
    timeout: float = 120,
) -> PortalProcess:
    """Start ``portal serve`` on 127.0.0.1 and wait until ``/readyz`` answers 200."""
    tmp.mkdir(parents=True, exist_ok=True)
    config_file = tmp / "portal.yaml"
    config_file.write_bytes(msgspec.json.encode(config))
    port = port or free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    environ.update(
        {
            "PORTAL_DATABASE_URL": database_url,
            "PORTAL_SECRET_KEY": TEST_SECRET,
            "PORTAL_CONFIG": str(config_file),
            "PORTAL_LOG_LEVEL": "warning",
            "PORTAL_DATA_DIR": str(tmp),
            "PORTAL_WRITER_INTERVAL_S": "0.2",
            **(env or {}),
        }
    )
    log = tmp / f"portal-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "portal", "serve", "--port", str(port)],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = PortalProcess(proc=proc, url=f"{scheme}://127.0.0.1:{port}", log=log, data_dir=tmp)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"portal exited with {proc.returncode}:\n{running.output()}")
        try:
            ready = httpx.get(f"{running.url}/readyz", timeout=2, verify=verify, trust_env=False)
            if ready.status_code == 200:
                return running
            last = f"{ready.status_code} {ready.text[:300]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=10)
    raise AssertionError(f"portal did not become ready ({last}):\n{running.output()}")


def nginx_test_copy(tmp_path: Path, replace: dict[str, str] | None = None) -> Path:
    """A runnable copy of deploy/nginx/portal.conf: a main config around it with paths in ``tmp_path``;
    ``replace`` rewrites directives (``"server portal-1:8000 "`` -> ``"server 127.0.0.1:PORT "``,
    ``"listen 80;"`` -> ...); compose host names left are replaced by 127.0.0.1 (``nginx -t`` resolves
    them). The upstream servers' ``resolve`` flag is dropped: Debian's nginx (1.22) predates it
    (1.27.3) and it only matters for names in Docker's DNS."""
    conf = (ROOT / "deploy" / "nginx" / "portal.conf").read_text()
    for old, new in (replace or {}).items():
        assert old in conf, old
        conf = conf.replace(old, new)
    conf = re.sub(r"server portal-\d+:(\d+) ", r"server 127.0.0.1:\1 ", conf)
    conf = conf.replace(" resolve;", ";")
    (tmp_path / "portal.conf").write_text(conf)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\n"
        "events {}\n"
        "http {\n"
        "  access_log off;\n"
        f"  client_body_temp_path {tmp_path}/body;\n"
        f"  proxy_temp_path {tmp_path}/proxy;\n"
        f"  include {tmp_path}/portal.conf;\n"
        "}\n"
    )
    return main


def nginx_binary() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    assert binary, "nginx is missing: run tests/bootstrap.sh (Debian package nginx)"
    return binary
