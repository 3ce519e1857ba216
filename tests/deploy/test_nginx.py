"""deploy/nginx/portal.conf run for real (Debian's nginx) in front of a real ``portal serve`` and a dead
second upstream: calls fail over to the live instance, streams arrive chunk by chunk, the client address
the portal records cannot be spoofed with X-Forwarded-For, /metrics stays private, and the admin door
reaches the admin listener."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from portal.db.migrate import upgrade
from tests.conftest import free_port
from tests.deploy.processes import (
    OPENAI_KEY_ENV,
    PortalProcess,
    nginx_binary,
    nginx_test_copy,
    openai_model,
    start_portal,
)
from tests.fakes.server import Behaviour, FakeUpstream

STATIC_KEY = "sk-nginx-test-key-0123456789abcdef"
MASTER = "sk-nginx-master-key-0123456789"


@dataclass
class Edge:
    public: str
    admin: str
    portal: PortalProcess
    database: Path


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeUpstream) -> Iterator[Edge]:
    tmp = tmp_path_factory.mktemp("edge")
    database = tmp / "portal.db"
    upgrade(f"sqlite+aiosqlite:///{database}")
    admin_port = free_port()
    portal = start_portal(
        tmp / "portal",
        database_url=f"sqlite+aiosqlite:///{database}",
        config={"models": [openai_model(fake_openai_server)], "api_keys": [{"key": STATIC_KEY}]},
        env={
            OPENAI_KEY_ENV: fake_openai_server.api_key,
            "PORTAL_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
            "PORTAL_MASTER_KEY": MASTER,
        },
    )
    public_port, admin_door, dead = free_port(), free_port(), free_port()
    portal_port = portal.url.rsplit(":", 1)[1]
    nginx_dir = tmp / "nginx"
    nginx_dir.mkdir()
    main = nginx_test_copy(
        nginx_dir,
        {
            "server portal-1:8000 ": f"server 127.0.0.1:{dead} ",  # listed first: nginx must fail over
            "server portal-2:8000 ": f"server 127.0.0.1:{portal_port} ",
            "server portal-1:8001 ": f"server 127.0.0.1:{dead} ",
            "server portal-2:8001 ": f"server 127.0.0.1:{admin_port} ",
            "listen 80;": f"listen 127.0.0.1:{public_port};",
            "listen 8081;": f"listen 127.0.0.1:{admin_door};",
        },
    )
    command = [nginx_binary(), "-p", str(nginx_dir), "-e", str(nginx_dir / "error.log"), "-c", str(main)]
    nginx = subprocess.Popen(
        [*command, "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    public = f"http://127.0.0.1:{public_port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{public}/healthz", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert nginx.poll() is None, (nginx_dir / "error.log").read_text()
            time.sleep(0.1)
        yield Edge(public, f"http://127.0.0.1:{admin_door}", portal, database)
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)
        assert portal.stopped_gracefully(portal.stop()), portal.output()


def _chat(stream: bool = False) -> dict[str, object]:
    body: dict[str, object] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return {**body, "stream": True} if stream else body


def test_calls_fail_over_from_a_dead_upstream(edge: Edge, fake_openai: FakeUpstream) -> None:
    with httpx.Client(base_url=edge.public, trust_env=False, timeout=30) as client:
        headers = {"Authorization": f"Bearer {STATIC_KEY}"}
        codes = [
            client.post("/v1/chat/completions", json=_chat(), headers=headers).status_code for _ in range(12)
        ]
    assert codes == [200] * 12
    assert len(fake_openai.requests) == 12, "each call reached the upstream exactly once"


def test_streams_arrive_chunk_by_chunk(edge: Edge, fake_openai: FakeUpstream) -> None:
    fake_openai.default = Behaviour(chunks=5, chunk_delay=0.4)
    arrivals = []
    with (
        httpx.Client(base_url=edge.public, trust_env=False, timeout=30) as client,
        client.stream(
            "POST", "/v1/chat/completions", json=_chat(stream=True), headers={"x-api-key": STATIC_KEY}
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic())
    assert len(arrivals) >= 5
    # (The portal also sends X-Accel-Buffering: no; with both, nothing may hold a stream back.)
    assert arrivals[-1] - arrivals[0] > 1.2, "nginx held the stream back and sent it at once"


def test_the_recorded_client_address_cannot_be_spoofed(edge: Edge, fake_openai: FakeUpstream) -> None:
    request_id = f"nginx-{uuid.uuid4().hex}"
    headers = {"x-api-key": STATIC_KEY, "x-request-id": request_id, "X-Forwarded-For": "203.0.113.66"}
    answer = httpx.post(
        f"{edge.public}/v1/chat/completions", json=_chat(), headers=headers, timeout=30, trust_env=False
    )
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == request_id
    engine = create_engine(f"sqlite:///{edge.database}")
    try:
        for _ in range(100):
            with engine.connect() as conn:
                row = conn.execute(
                    text("SELECT client_ip FROM request_logs WHERE request_id = :r"), {"r": request_id}
                ).first()
            if row is not None:
                break
            time.sleep(0.1)
    finally:
        engine.dispose()
    assert row is not None
    assert row[0] == "127.0.0.1"  # nginx's view of the client, not the header the client sent


def test_metrics_stay_private_and_the_admin_door_works(edge: Edge) -> None:
    with httpx.Client(trust_env=False, timeout=30) as client:
        assert client.get(f"{edge.public}/metrics").status_code == 404
        assert client.get(f"{edge.public}/api/tenants").status_code == 404  # the portal's public door
        tenants = client.get(f"{edge.admin}/api/tenants", headers={"Authorization": f"Bearer {MASTER}"})
        assert tenants.status_code == 200, tenants.text
