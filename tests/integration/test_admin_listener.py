"""A separate admin listener (``admin_listen``): the public listener serves only ``/v1`` and health; the
admin API, the compatible admin routes and the portal answer only on the admin listener."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from portal.app import FastPath, create_app
from portal.config import ConfigError, load_settings
from tests.conftest import TEST_SECRET, free_port, make_settings

ROOT = Path(__file__).resolve().parents[2]
MASTER = "sk-listener-master-key-0123"
ADMIN_ONLY = ["/api/tenants", "/admin/v1/clients/list", "/key/list", "/user/list", "/v1/admin/keys", "/"]
PUBLIC = ["/healthz", "/health", "/readyz"]


def _bound(port: int) -> socket.socket:
    return uvicorn.Config(app=None, host="127.0.0.1", port=port).bind_socket()  # type: ignore[arg-type]


async def _check_doors(public: str, admin: str) -> None:
    headers = {"Authorization": f"Bearer {MASTER}"}
    async with httpx.AsyncClient(headers=headers, trust_env=False, timeout=30) as client:
        for path in ADMIN_ONLY:
            outside = await client.get(public + path)
            assert outside.status_code == 404, (path, outside.status_code, outside.text)
            assert "only the /v1 API" in outside.text
            inside = await client.get(admin + path)
            assert inside.status_code not in {404, 405}, (path, inside.status_code, inside.text)
            assert "only the /v1 API" not in inside.text
        for path in PUBLIC:
            assert (await client.get(public + path)).status_code == 200, path
            assert (await client.get(admin + path)).status_code == 200, path
        # The proxy answers on the public listener (401: the master key is not a proxy key there).
        models = await client.get(public + "/v1/models", headers={"Authorization": "Bearer sk-unknown-key"})
        assert models.status_code == 401
        assert models.json()["error"]["type"]
        # Tenants made on the admin listener are real.
        made = await client.post(admin + "/api/tenants", json={"slug": f"door-{os.getpid()}"})
        assert made.status_code in {201, 409}, made.text
        refused = await client.post(public + "/api/tenants", json={"slug": "never"})
        assert refused.status_code == 404


async def test_public_listener_serves_only_v1_and_health(database_url: str) -> None:
    public_port, admin_port = free_port(), free_port()
    settings = make_settings(database_url, master_key=MASTER, admin_listen=f"127.0.0.1:{admin_port}")
    app = FastPath(create_app(settings), admin_port=admin_port)
    config = uvicorn.Config(app, host="127.0.0.1", port=public_port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    sockets = [_bound(public_port), _bound(admin_port)]
    task = asyncio.create_task(server.serve(sockets=sockets))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        await _check_doors(f"http://127.0.0.1:{public_port}", f"http://127.0.0.1:{admin_port}")
    finally:
        server.should_exit = True
        await task
        for sock in sockets:
            sock.close()


def test_without_admin_listener_everything_is_on_one_port() -> None:
    app = create_app(load_settings({"PORTAL_SECRET_KEY": TEST_SECRET}))
    assert FastPath(app).admin_port is None


@pytest.mark.parametrize(
    ("value", "message"),
    [("8001", "not host:port"), ("127.0.0.1:99999", "not host:port"), ("127.0.0.1:8000", "its own port")],
)
def test_admin_listen_is_validated(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"PORTAL_SECRET_KEY": TEST_SECRET, "PORTAL_ADMIN_LISTEN": value, "PORTAL_PORT": "8000"})


def _wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.communicate()[0]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError("server did not become ready")


def test_portal_serve_with_two_workers_keeps_the_doors_apart(tmp_path: Path) -> None:
    """The real ``portal serve`` command, two worker processes sharing both sockets."""
    public_port, admin_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env |= {
        "PORTAL_DATABASE_URL": f"sqlite:///{tmp_path / 'portal.db'}",
        "PORTAL_SECRET_KEY": TEST_SECRET,
        "PORTAL_MASTER_KEY": MASTER,
        "PORTAL_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
        "PORTAL_DATA_DIR": str(tmp_path),
    }
    subprocess.run([sys.executable, "-m", "portal", "migrate"], cwd=ROOT, env=env, check=True, timeout=120)
    proc = subprocess.Popen(
        [sys.executable, "-m", "portal", "serve", "--port", str(public_port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{admin_port}", proc)
        _wait_ready(f"http://127.0.0.1:{public_port}", proc)
        asyncio.run(_check_doors(f"http://127.0.0.1:{public_port}", f"http://127.0.0.1:{admin_port}"))
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=60)
    assert "Traceback" not in output
    assert "admin listener" in output
