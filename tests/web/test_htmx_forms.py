"""The portal's forms through htmx (portal.web.forms): a refused post answers with only the form, told
where to go (``HX-Retarget``/``HX-Reswap``), a successful one with ``204`` + ``HX-Redirect`` (or
``HX-Refresh`` on the same page) and the flash; errors no form handles become a message for
``#flashes``. The same posts without htmx answer with the whole page or a ``303``."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.conftest import browser_backends
from tests.web.conftest import Ui

HX = {"HX-Request": "true"}


def _slug(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _assert_fragment(response: httpx.Response, status: int, form_id: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["hx-retarget"] == f"#{form_id}"
    assert response.headers["hx-reswap"] == "outerHTML"
    assert response.headers["vary"] == "HX-Request"
    assert response.text.lstrip().startswith(f'<form id="{form_id}"'), response.text[:200]
    assert "<html" not in response.text


@pytest.mark.parametrize(
    ("url", "data", "status", "form_id", "message"),
    [
        ("/tenants", {"slug": "Not A Slug!"}, 422, "tenant-create-form", "was not created"),
        ("/keys", {"tenant": "", "expires": "soon"}, 422, "key-new-form", "a duration such as 30d"),
        ("/grants", {"subject_type": "key", "subject": ""}, 422, "grant-add-form", "choose a subject"),
    ],
)
async def test_refused_forms_answer_with_the_form_in_place(
    ui: Ui, url: str, data: dict[str, str], status: int, form_id: str, message: str
) -> None:
    async with ui.browser("admin") as admin:
        fragment = await admin.post(url, data=data, headers=HX)
        _assert_fragment(fragment, status, form_id)
        assert message in fragment.text
        page = await admin.post(url, data=data)
        assert page.status_code == status
        assert "<html" in page.text
        assert message in page.text
        assert "hx-retarget" not in page.headers


async def test_tenant_forms_through_htmx(ui: Ui) -> None:
    slug = _slug("hx")
    async with ui.browser("operator") as b:
        taken = await b.post("/tenants", data={"slug": ui.tenant_slug}, headers=HX)
        _assert_fragment(taken, 409, "tenant-create-form")
        assert "already exists" in taken.text
        assert f'value="{ui.tenant_slug}"' in taken.text  # what was typed stays

        created = await b.post("/tenants", data={"slug": slug, "name": "Htmx Team"}, headers=HX)
        assert created.status_code == 204
        assert created.headers["hx-redirect"] == f"/tenants/{slug}"
        assert "portal_flash" in created.cookies
        shown = await b.get(f"/tenants/{slug}")
        assert f"Tenant {slug} created." in shown.text

        bad_edit = await b.post(
            f"/tenants/{slug}/edit", data={"slug": slug, "name": "x", "rpm_limit": "lots"}, headers=HX
        )
        _assert_fragment(bad_edit, 422, "tenant-edit-form")
        assert "a whole number" in bad_edit.text

        here = {**HX, "HX-Current-URL": f"{ui.url}/tenants/{slug}"}
        wrong = {"kind": "usd", "amount": "much", "period": "monthly"}
        bad_budget = await b.post(f"/tenants/{slug}/budgets", data=wrong, headers=here)
        _assert_fragment(bad_budget, 422, "budget-form")
        assert "a number" in bad_budget.text
        assert 'value="monthly"' in bad_budget.text
        budget = await b.post(
            f"/tenants/{slug}/budgets", data={"kind": "usd", "amount": "5", "period": ""}, headers=here
        )
        assert budget.status_code == 204
        assert budget.headers["hx-refresh"] == "true"  # the same page: #budgets alone would not reload

        nobody = await b.post(
            f"/tenants/{slug}/members", data={"user": "nobody@example.invalid"}, headers=here
        )
        _assert_fragment(nobody, 422, "member-form")
        assert 'value="nobody@example.invalid"' in nobody.text

        gone = await b.post(f"/tenants/{slug}/members/{uuid.uuid4()}/remove", headers=here)
        assert gone.status_code == 404
        assert gone.headers["hx-retarget"] == "#flashes"
        assert gone.headers["hx-reswap"] == "innerHTML"
        assert 'class="flash flash-error" role="alert"' in gone.text
        assert "<html" not in gone.text
        full = await b.post(f"/tenants/{slug}/members/{uuid.uuid4()}/remove")
        assert full.status_code == 404
        assert "<html" in full.text


async def test_key_edit_through_htmx(ui: Ui) -> None:
    async with ui.browser("member") as b:
        created = await b.post("/keys", data={"tenant": str(ui.tenant), "alias": "hx-key"}, headers=HX)
        assert created.status_code == 204
        location = created.headers["hx-redirect"]
        assert location.endswith("/created")
        key_url = location.removesuffix("/created")
        bad = await b.post(f"{key_url}/edit", data={"alias": "hx-key", "rpm_limit": "fast"}, headers=HX)
        _assert_fragment(bad, 422, "key-edit-form")
        assert "a whole number" in bad.text
        saved = await b.post(f"{key_url}/edit", data={"alias": "hx-renamed", "grants": "*"}, headers=HX)
        assert saved.status_code == 204
        assert saved.headers["hx-redirect"] == key_url


async def test_an_expired_form_through_htmx_is_a_message(ui: Ui) -> None:
    async with ui.browser("operator") as b:
        del b.headers["X-CSRFToken"]
        refused = await b.post("/tenants", data={"slug": _slug("csrf")}, headers=HX)
        assert refused.status_code == 403
        assert refused.headers["hx-retarget"] == "#flashes"
        assert "Form expired" in refused.text


@browser_backends
async def test_a_refused_form_is_replaced_without_reloading_the_page(ui: Ui, chromium: Browser) -> None:
    context, page = await ui.page(chromium, "operator")
    try:
        await page.goto("/tenants")
        await page.evaluate("window.__stayed = true")
        await page.get_by_text("New tenant").click()
        await page.get_by_label("Slug").fill("Bad Slug!")
        await page.get_by_role("button", name="Create tenant").click()
        await expect(page.locator("#tenant-slug-error")).to_be_visible()
        assert await page.evaluate("window.__stayed === true"), "the page was reloaded"
        await expect(page.get_by_label("Slug")).to_have_value("Bad Slug!")
        await expect(page.get_by_label("Slug")).to_have_attribute("aria-invalid", "true")
        slug = _slug("hx-pw")
        await page.get_by_label("Slug").fill(slug)
        await page.get_by_role("button", name="Create tenant").click()
        await expect(page).to_have_url(f"{ui.url}/tenants/{slug}")
        await expect(page.locator("#flashes")).to_contain_text(f"Tenant {slug} created.")
    finally:
        await context.close()


async def test_catalog_forms_through_htmx(ui: Ui) -> None:
    name = f"hx-model-{uuid.uuid4().hex[:6]}"
    async with ui.browser("admin") as b:
        taken = await b.post("/models", data={"name": "mock-small", "mode": "chat"}, headers=HX)
        _assert_fragment(taken, 409, "model-create-form")
        created = await b.post("/models", data={"name": name, "mode": "chat", "enabled": "on"}, headers=HX)
        assert created.status_code == 204
        model_url = created.headers["hx-redirect"]
        bad_settings = await b.post(model_url, data={"name": name, "mode": "nonsense"}, headers=HX)
        _assert_fragment(bad_settings, 422, "model-form")
        bad_dep = await b.post(f"{model_url}/deployments", data={"provider": "mock"}, headers=HX)
        _assert_fragment(bad_dep, 422, "deployment-add-form")
        added = await b.post(
            f"{model_url}/deployments", data={"provider": "mock", "upstream_model": "mock-9"}, headers=HX
        )
        assert added.status_code == 204
        page = await b.get(model_url)
        dep_id = page.text.split('href="/deployments/')[1].split('"')[0]
        bad_edit = await b.post(
            f"/deployments/{dep_id}",
            data={"provider": "mock", "upstream_model": "m", "weight": "-1"},
            headers=HX,
        )
        _assert_fragment(bad_edit, 422, "deployment-form")
        read_only = await b.post("/models/mock-small", data={"name": "mock-small"})
        assert read_only.status_code == 409
        assert 'role="alert"' in read_only.text
