"""``/healthz`` and ``/readyz``: one JSON entry per check; 503 unless dependencies and schema are ready."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import AsyncTestClient

from portal.app import create_app
from tests.conftest import REDIS_URL, dispose_database, make_settings, new_database


async def test_healthz(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    for path in ("/healthz", "/health"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


async def test_readyz_ready_on_a_migrated_database(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "migrations"}
    assert all(check["ok"] for check in body["checks"].values())


async def test_readyz_not_ready_before_migrations(backend: str, tmp_path: Path) -> None:
    url = await new_database(backend, tmp_path)
    try:
        async with AsyncTestClient(app=create_app(make_settings(url))) as client:
            response = await client.get("/readyz")
        body = response.json()
        assert response.status_code == 503
        assert body["checks"]["database"]["ok"] is True
        assert body["checks"]["migrations"]["ok"] is False
        assert "portal migrate" in body["checks"]["migrations"]["error"]
    finally:
        await dispose_database(url)


async def test_readyz_checks_redis_when_configured(database_url: str) -> None:
    async with AsyncTestClient(app=create_app(make_settings(database_url, redis_url=REDIS_URL))) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["redis"]["ok"] is True


async def test_readyz_fails_when_redis_is_unreachable(database_url: str) -> None:
    settings = make_settings(database_url, redis_url="redis://127.0.0.1:1/0")
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["error"]
    assert body["checks"]["database"]["ok"] is True


async def test_landing_page_and_vendored_htmx(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    page = await client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "/static/vendor/htmx.min.js" in page.text
    assert "https://" not in page.text.split("<main")[0], "no CDN assets in the page head"
    script = await client.get("/static/vendor/htmx.min.js")
    assert script.status_code == 200
    assert "htmx" in script.text[:200]
