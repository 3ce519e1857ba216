"""The models and grants pages: catalog with live health, model and deployment forms (served by the
proxy once created), grants with the live pattern preview, the "can X use Y" explainer, tenant
isolation for tenant admins, and a Chromium flow with screenshots."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx
from playwright.async_api import Browser, expect
from sqlalchemy import select

from portal import audit
from portal.db.models import Deployment, Grant, Model, SubjectType
from portal.grants.service import add_grant
from portal.keys.service import create_key
from portal.tenants.service import create_tenant
from tests.conftest import browser_backends
from tests.e2e_support import screenshot
from tests.web.conftest import Ui

ACTOR = audit.Actor(type="test", label="catalog page tests")
CHAT = {"model": "", "messages": [{"role": "user", "content": "hello"}]}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _key(ui: Ui, tenant: uuid.UUID, alias: str = "page-test") -> tuple[str, uuid.UUID, str]:
    async with ui.sessions() as session, session.begin():
        new = await create_key(session, ACTOR, tenant_id=tenant, alias=alias)
    return new.secret, new.key.id, new.key.key_prefix


async def _model_id(ui: Ui, name: str) -> uuid.UUID | None:
    async with ui.sessions() as session:
        ident: uuid.UUID | None = await session.scalar(select(Model.id).where(Model.name == name))
        return ident


async def _chat(ui: Ui, secret: str, model: str, *, want: int, tries: int = 40) -> httpx.Response:
    """Call the proxy until it answers ``want`` (the catalog reloads just after the commit)."""
    async with httpx.AsyncClient(base_url=ui.url, trust_env=False, timeout=30) as client:
        for _ in range(tries):
            response = await client.post(
                "/v1/chat/completions", json={**CHAT, "model": model}, headers={"x-api-key": secret}
            )
            if response.status_code == want:
                return response
            await asyncio.sleep(0.1)
    return response


async def _create_model(b: httpx.AsyncClient, name: str, upstream: str = "mock-1") -> uuid.UUID:
    created = await b.post("/models", data={"name": name, "mode": "chat", "enabled": "on"})
    assert created.status_code == 303, created.text
    model_id = uuid.UUID(created.headers["location"].removeprefix("/models/"))
    added = await b.post(
        f"/models/{model_id}/deployments",
        data={
            "provider": "mock",
            "upstream_model": upstream,
            "input_price_per_mtok": "1.5",
            "output_price_per_mtok": "3",
            "weight": "2",
            "enabled": "on",
        },
    )
    assert added.status_code == 303, added.text
    return model_id


async def test_catalog_lists_config_models_with_health(ui: Ui) -> None:
    async with ui.browser("admin") as b:
        page = await b.get("/models")
        assert page.status_code == 200
        assert page.headers["vary"] == "HX-Request"
        assert "mock-small" in page.text
        assert "mock-large" in page.text
        assert "healthy" in page.text
        assert "New model" in page.text
        found = await b.get("/models", params={"q": "large"}, headers={"HX-Request": "true"})
        assert found.status_code == 200
        assert "<html" not in found.text
        assert "mock-large" in found.text
        assert "mock-small" not in found.text
        config = await b.get("/models/mock-small")
        assert config.status_code == 200
        assert "read-only" in config.text
        assert "Add a deployment" not in config.text
        assert (await b.get("/models/no-such-model")).status_code == 404
        assert (await b.get(f"/deployments/{uuid.uuid4()}")).status_code == 404


async def test_model_and_deployment_created_in_the_page_are_served(ui: Ui) -> None:
    name = _name("page-model")
    async with ui.browser("operator") as b:
        model_id = await _create_model(b, name)
        detail = await b.get(f"/models/{model_id}")
        assert detail.status_code == 200
        assert f"Model {name} created" in detail.text
        assert "mock-1" in detail.text
        assert "1.50" in detail.text or "1.5" in detail.text
        listing = await b.get("/models", params={"q": name})
        assert name in listing.text
        assert "healthy" in listing.text
    secret, _, _ = await _key(ui, ui.tenant)
    answer = await _chat(ui, secret, name, want=200)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]

    async with ui.browser("operator") as b:
        # disable the model: the proxy stops serving it
        saved = await b.post(f"/models/{model_id}", data={"name": name, "mode": "chat", "description": "off"})
        assert saved.status_code == 303
        assert (await _chat(ui, secret, name, want=404)).status_code != 200
        confirm = await b.get(f"/models/{model_id}/delete")
        assert confirm.status_code == 200
        assert "1 deployment" in confirm.text
        deleted = await b.post(f"/models/{model_id}/delete")
        assert deleted.status_code == 303
    assert await _model_id(ui, name) is None


async def test_deployment_edit_and_cooldown_state(ui: Ui) -> None:
    name = _name("cool-model")
    async with ui.browser("admin") as b:
        model_id = await _create_model(b, name, upstream="mock-error-503")
        async with ui.sessions() as session:
            dep_id = await session.scalar(select(Deployment.id).where(Deployment.model_id == model_id))
        assert dep_id is not None
        page = await b.get(f"/deployments/{dep_id}")
        assert page.status_code == 200
        assert 'value="mock-error-503"' in page.text
        bad = await b.post(
            f"/deployments/{dep_id}",
            data={
                "provider": "mock",
                "upstream_model": "mock-error-503",
                "api_base": "ftp://x",
                "weight": "1",
            },
        )
        assert bad.status_code == 422
        assert "an http(s) URL" in bad.text
        secret, _, _ = await _key(ui, ui.tenant)
        failed = await _chat(ui, secret, name, want=503)
        assert failed.status_code >= 500
        listing = await b.get("/models", params={"q": name})
        assert "cooling down until" in listing.text
        saved = await b.post(
            f"/deployments/{dep_id}",
            data={"provider": "mock", "upstream_model": "mock-1", "weight": "3", "enabled": "on"},
        )
        assert saved.status_code == 303
        async with ui.sessions() as session:
            dep = await session.get(Deployment, dep_id)
            assert dep is not None
            assert (dep.upstream_model, dep.weight) == ("mock-1", 3)
        gone = await b.post(f"/deployments/{dep_id}/delete")
        assert gone.status_code == 303
        assert (await b.post(f"/models/{model_id}/delete")).status_code == 303


async def test_model_form_errors_are_inline(ui: Ui) -> None:
    name = _name("dup-model")
    async with ui.browser("admin") as b:
        model_id = await _create_model(b, name)
        duplicate = await b.post("/models", data={"name": name, "mode": "chat"})
        assert duplicate.status_code == 409
        assert "already exists" in duplicate.text
        assert f'value="{name}"' in duplicate.text
        config = await b.post("/models", data={"name": "mock-small", "mode": "chat"})
        assert config.status_code == 409
        assert "read-only" in config.text
        invalid = await b.post("/models", data={"name": " bad name", "mode": "chat", "fallbacks": "nope"})
        assert invalid.status_code == 422
        assert "letters, digits" in invalid.text
        dep = await b.post(f"/models/{model_id}/deployments", data={"provider": "mock", "upstream_model": ""})
        assert dep.status_code == 422
        assert "required" in dep.text
        price = await b.post(
            f"/models/{model_id}/deployments",
            data={"provider": "mock", "upstream_model": "mock-1", "input_price_per_mtok": "cheap"},
        )
        assert price.status_code == 422
        assert "price per million tokens" in price.text
        assert (await b.post("/models/mock-small/deployments", data={"provider": "mock"})).status_code == 409
        assert (await b.post(f"/models/{model_id}/delete")).status_code == 303


async def test_roles_on_the_catalog(ui: Ui) -> None:
    async with ui.browser("member") as b:
        page = await b.get("/models")
        assert page.status_code == 200
        assert "New model" not in page.text
        assert (await b.post("/models", data={"name": _name("nope")})).status_code == 403
        assert (await b.get("/grants")).status_code == 403
    async with ui.browser("auditor") as b:
        page = await b.get("/grants")
        assert page.status_code == 200
        assert "Add a grant" not in page.text
        assert (
            await b.post("/grants", data={"subject_type": "tenant", "subject": ui.tenant_slug})
        ).status_code == 403


async def test_grant_preview_lists_the_matching_models(ui: Ui) -> None:
    async with ui.browser("admin") as b:
        small = await b.get(
            "/grants/preview", params={"model_pattern": "mock-s*"}, headers={"HX-Request": "true"}
        )
        assert small.status_code == 200
        assert "<html" not in small.text
        assert "mock-small" in small.text
        assert "mock-large" not in small.text
        both = await b.get("/grants/preview", params={"model_pattern": "MOCK-*", "provider_pattern": "mo?k"})
        assert "mock-small" in both.text
        assert "mock-large" in both.text
        assert "Matches" in both.text
        none = await b.get(
            "/grants/preview", params={"model_pattern": "mock-*", "provider_pattern": "openai"}
        )
        assert "matches no provider" not in none.text
        assert "matches no model" in none.text
        broken = await b.get("/grants/preview", params={"model_pattern": "[mock"})
        assert "unclosed" in broken.text


async def test_grants_add_filter_delete_and_explain(ui: Ui) -> None:
    secret, key_id, prefix = await _key(ui, ui.tenant, alias="narrow-key")
    del secret
    async with ui.browser("operator") as b:
        added = await b.post(
            "/grants",
            data={
                "subject_type": "key",
                "subject": str(key_id),
                "model_pattern": "mock-s*",
                "provider_pattern": "*",
            },
        )
        assert added.status_code == 303, added.text
        listed = await b.get(added.headers["location"])
        assert "narrow-key" in listed.text
        assert "mock-s*" in listed.text
        bad = await b.post(
            "/grants", data={"subject_type": "key", "subject": str(key_id), "model_pattern": "[x"}
        )
        assert bad.status_code == 422
        assert "unclosed" in bad.text
        unknown = await b.post("/grants", data={"subject_type": "key", "subject": str(uuid.uuid4())})
        assert unknown.status_code == 404
        assert "does not exist" in unknown.text

        allowed = await b.get("/grants/explain", params={"key": prefix, "model": "mock-small"})
        assert allowed.status_code == 200
        assert "Allowed" in allowed.text
        denied = await b.get("/grants/explain", params={"key": str(key_id), "model": "mock-large"})
        assert "Denied" in denied.text
        assert re.search(r"Denied at the <strong>key</strong> level", denied.text)
        fragment = await b.get(
            "/grants/explain", params={"key": str(key_id), "model": "nope"}, headers={"HX-Request": "true"}
        )
        assert fragment.status_code == 422
        assert "not in the catalog" in fragment.text
        assert "<html" not in fragment.text

        async with ui.sessions() as session, session.begin():
            bare = await create_tenant(session, ACTOR, slug=_name("bare"), name="No grants")
        tenant = await b.get("/grants/explain", params={"tenant": bare.slug, "model": "mock-small"})
        assert re.search(r"Denied at the <strong>tenant</strong> level", tenant.text)
        ok = await b.get("/grants/explain", params={"tenant": ui.tenant_slug, "model": "mock-large"})
        assert "Allowed" in ok.text

        async with ui.sessions() as session:
            grant = await session.scalar(
                select(Grant).where(Grant.subject_type == SubjectType.KEY, Grant.subject_id == key_id)
            )
        assert grant is not None
        removed = await b.post(f"/grants/{grant.id}/delete")
        assert removed.status_code == 303
        again = await b.get("/grants/explain", params={"key": str(key_id), "model": "mock-large"})
        assert "Allowed" in again.text
        assert (await b.post(f"/grants/{uuid.uuid4()}/delete")).status_code == 404


async def test_tenant_admin_sees_only_its_tenant(ui: Ui) -> None:
    _, own_key, _ = await _key(ui, ui.tenant, alias="own-key")
    _, other_key, other_prefix = await _key(ui, ui.other_tenant, alias="other-key")
    async with ui.sessions() as session, session.begin():
        other_grant = await add_grant(
            session, ACTOR, subject_type=SubjectType.KEY, subject_id=other_key, model_pattern="mock-large"
        )
    async with ui.browser("tenant_admin") as b:
        page = await b.get("/grants")
        assert page.status_code == 200
        assert ui.tenant_slug in page.text
        assert "other-key" not in page.text
        assert ui.other_slug not in page.text
        assert (
            await b.get("/grants", params={"subject_type": "key", "subject": str(other_key)})
        ).status_code == 404
        assert (await b.post(f"/grants/{other_grant.id}/delete")).status_code == 404
        steal = await b.post(
            "/grants", data={"subject_type": "key", "subject": str(other_key), "model_pattern": "*"}
        )
        assert steal.status_code == 404
        widen = await b.post(
            "/grants", data={"subject_type": "tenant", "subject": ui.tenant_slug, "model_pattern": "*"}
        )
        assert widen.status_code == 403
        assert "not of the tenant itself" in widen.text
        mine = await b.post(
            "/grants", data={"subject_type": "key", "subject": str(own_key), "model_pattern": "mock-large"}
        )
        assert mine.status_code == 303
        for ref in (str(other_key), other_prefix):
            hidden = await b.get("/grants/explain", params={"key": ref, "model": "mock-small"})
            assert hidden.status_code == 404, ref
        assert (
            await b.get("/grants/explain", params={"tenant": ui.other_slug, "model": "mock-small"})
        ).status_code == 404
        own = await b.get("/grants/explain", params={"key": str(own_key), "model": "mock-small"})
        assert re.search(r"Denied at the <strong>key</strong> level", own.text)
    async with ui.sessions() as session:
        still = await session.get(Grant, other_grant.id)
        assert still is not None


@browser_backends
async def test_models_and_grants_in_chromium(ui: Ui, chromium: Browser) -> None:
    context, page = await ui.page(chromium, "admin")
    name = _name("browser-model")
    try:
        await page.goto("/models")
        await expect(page.get_by_role("heading", name="Models", exact=True)).to_be_visible()
        await page.get_by_label("Name", exact=True).fill(name)
        await page.get_by_label("Description").fill("made in Chromium")
        await page.get_by_role("button", name="Create model").click()
        await expect(page.get_by_role("heading", name=re.compile(name))).to_be_visible()
        await page.get_by_label("Provider", exact=True).select_option("mock")
        await page.get_by_label("Upstream model").fill("mock-1")
        await page.get_by_label("Input price per Mtok").fill("0.5")
        await page.get_by_role("button", name="Add deployment").click()
        await expect(page.get_by_text(re.compile("Deployment .* added"))).to_be_visible()
        await screenshot(page, "models-detail")
        await page.goto("/models")
        await expect(page.locator(f'tbody[data-model="{name}"]')).to_contain_text("healthy")
        await screenshot(page, "models-list")

        await page.goto("/grants")
        await page.get_by_label("Model pattern").fill("browser-*")
        await expect(page.locator("#preview")).to_contain_text(name)
        await expect(page.locator("#preview")).not_to_contain_text("mock-small")
        await page.get_by_label("Model pattern").fill("mock-*")
        await expect(page.locator("#preview")).to_contain_text("mock-large")
        await page.locator("#g-subject").fill(ui.other_slug)
        await page.get_by_label("Subject type", exact=True).last.select_option("tenant")
        await page.get_by_role("button", name="Add grant").click()
        await expect(page.get_by_text(re.compile("Granted mock-\\*"))).to_be_visible()
        await screenshot(page, "grants-list")

        await page.goto("/grants/explain")
        await page.get_by_label("…or a tenant").fill(ui.tenant_slug)
        await page.get_by_label("Model", exact=True).fill(name)
        await page.get_by_role("button", name="Explain").click()
        await expect(page.locator("#answer")).to_contain_text("Allowed")
        await screenshot(page, "grants-explain")
    finally:
        await context.close()
    async with ui.browser("admin") as b:
        model_id = await _model_id(ui, name)
        assert (await b.post(f"/models/{model_id}/delete")).status_code == 303


async def test_tenant_overrides_of_another_tenant_are_hidden(ui: Ui) -> None:
    name = _name("override-model")
    async with ui.browser("admin") as b:
        model_id = await _create_model(b, name)
        added = await b.post(
            f"/models/{model_id}/deployments",
            data={
                "provider": "mock",
                "upstream_model": "mock-2",
                "name": "secret-override",
                "tenant": ui.other_slug,
            },
        )
        assert added.status_code == 303, added.text
        assert "secret-override" in (await b.get(f"/models/{model_id}")).text
        async with ui.sessions() as session:
            dep_id = await session.scalar(select(Deployment.id).where(Deployment.name == "secret-override"))
    async with ui.browser("tenant_admin") as b:
        page = await b.get(f"/models/{model_id}")
        assert page.status_code == 200
        assert "secret-override" not in page.text
        assert "secret-override" not in (await b.get("/models", params={"q": name})).text
        assert (await b.get(f"/deployments/{dep_id}")).status_code == 404
        assert (await b.post(f"/deployments/{dep_id}/delete")).status_code == 403
    async with ui.browser("admin") as b:
        assert (await b.post(f"/models/{model_id}/delete")).status_code == 303
