"""The tenant pages: list (search, filter, pages), create with inline errors, detail, edit, suspend,
delete, members and budgets through forms; tenant isolation for members; a Chromium flow."""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Browser, Dialog, expect
from sqlalchemy import select

from portal import audit
from portal.db.models import Budget, Membership, SubjectType, Tenant, User
from portal.tenants.service import create_tenant
from tests.conftest import browser_backends
from tests.e2e_support import screenshot
from tests.web.conftest import Ui


def _slug(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _post(browser: httpx.AsyncClient, url: str, data: dict[str, str] | None = None) -> httpx.Response:
    return await browser.post(url, data=data or {})


async def _tenant(ui: Ui, slug: str) -> Tenant | None:
    async with ui.sessions() as session:
        tenant: Tenant | None = await session.scalar(select(Tenant).where(Tenant.slug == slug))
        return tenant


async def test_create_edit_suspend_delete_through_forms(ui: Ui) -> None:
    slug = _slug("forms")
    async with ui.browser("operator") as b:
        created = await _post(b, "/tenants", {"slug": slug, "name": "Forms Team", "rpm_limit": "60"})
        assert created.status_code == 303, created.text
        assert created.headers["location"] == f"/tenants/{slug}"
        detail = await b.get(f"/tenants/{slug}")
        assert detail.status_code == 200
        assert "Forms Team" in detail.text
        assert f"Tenant {slug} created." in detail.text
        assert ">60<" in detail.text

        edit = await b.get(f"/tenants/{slug}/edit")
        assert edit.status_code == 200
        assert 'value="Forms Team"' in edit.text
        saved = await _post(
            b,
            f"/tenants/{slug}/edit",
            {"slug": slug, "name": "Renamed Team", "description": "d", "tpm_limit": ""},
        )
        assert saved.status_code == 303
        tenant = await _tenant(ui, slug)
        assert tenant is not None
        assert tenant.name == "Renamed Team"
        assert tenant.rpm_limit is None

        bad = await _post(b, f"/tenants/{slug}/edit", {"slug": slug, "name": "", "rpm_limit": "lots"})
        assert bad.status_code == 422
        assert "must not be empty" in bad.text
        assert "a whole number" in bad.text

        confirm = await b.get(f"/tenants/{slug}/status")
        assert confirm.status_code == 200
        assert "Suspend tenant" in confirm.text
        assert (await _post(b, f"/tenants/{slug}/status")).status_code == 303
        tenant = await _tenant(ui, slug)
        assert tenant is not None
        assert tenant.status == "suspended"
        resume = await b.get(f"/tenants/{slug}/status")
        assert "Resume tenant" in resume.text
        await _post(b, f"/tenants/{slug}/status")
        tenant = await _tenant(ui, slug)
        assert tenant is not None
        assert tenant.status == "active"

        confirm = await b.get(f"/tenants/{slug}/delete")
        assert confirm.status_code == 200
        assert "cannot be undone" in confirm.text
        deleted = await _post(b, f"/tenants/{slug}/delete")
        assert deleted.status_code == 303
        assert deleted.headers["location"] == "/tenants"
        assert await _tenant(ui, slug) is None
        assert (await b.get(f"/tenants/{slug}")).status_code == 404


async def test_history_shows_the_audit_trail_to_auditors_only(ui: Ui) -> None:
    slug = _slug("hist")
    async with ui.browser("admin") as b:
        await _post(b, "/tenants", {"slug": slug})
        await _post(b, f"/tenants/{slug}/status")
        page = await b.get(f"/tenants/{slug}")
        assert 'id="history"' in page.text
        assert "tenant.created" in page.text
        assert "tenant.suspended" in page.text
    async with ui.browser("operator") as b:
        page = await b.get(f"/tenants/{slug}")
        assert page.status_code == 200
        assert 'id="history"' not in page.text


async def test_create_shows_inline_errors(ui: Ui) -> None:
    async with ui.browser("operator") as b:
        invalid = await _post(b, "/tenants", {"slug": "Not A Slug"})
        assert invalid.status_code == 422
        assert 'id="tenant-slug-error"' in invalid.text
        assert 'value="Not A Slug"' in invalid.text
        limit = await _post(b, "/tenants", {"slug": _slug(), "max_parallel": "0"})
        assert limit.status_code == 422
        assert 'id="tenant-max_parallel-error"' in limit.text
        duplicate = await _post(b, "/tenants", {"slug": ui.tenant_slug, "name": "Copy"})
        assert duplicate.status_code == 409
        assert 'id="tenant-slug-error"' in duplicate.text
        assert "already exists" in duplicate.text
        assert 'value="Copy"' in duplicate.text


async def test_list_search_filter_and_pages(ui: Ui) -> None:
    marker = uuid.uuid4().hex[:6]
    slugs = [f"pg-{marker}-{n:02d}" for n in range(27)]
    actor = audit.Actor(type="test", label="tenant pages")
    async with ui.sessions() as session, session.begin():
        for slug in slugs:
            await create_tenant(
                session, actor, slug=slug, status="suspended" if slug.endswith("00") else "active"
            )
    async with ui.browser("auditor") as b:
        page = await b.get("/tenants", params={"search": marker})
        assert page.status_code == 200
        assert page.headers["vary"] == "HX-Request"
        assert "<html" in page.text
        assert "New tenant" not in page.text
        first = [s for s in slugs if s in page.text]
        assert len(first) == 25
        assert 'rel="next"' in page.text
        next_url = page.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
        second = await b.get(next_url)
        rest = [s for s in slugs if s in second.text]
        assert sorted(first + rest) == slugs
        assert 'rel="next"' not in second.text

        fragment = await b.get(
            "/tenants", params={"search": marker, "status": "suspended"}, headers={"HX-Request": "true"}
        )
        assert "<html" not in fragment.text
        assert 'id="tenant-table"' in fragment.text
        assert slugs[0] in fragment.text
        assert slugs[1] not in fragment.text
        none = await b.get(
            "/tenants", params={"search": "no-such-tenant-xyz"}, headers={"HX-Request": "true"}
        )
        assert "No tenants match" in none.text


async def test_members_add_change_role_and_remove(ui: Ui) -> None:
    slug = _slug("mem")
    async with ui.sessions() as session, session.begin():
        user = User(email=f"new-{uuid.uuid4().hex[:6]}@example.org", display_name="New Person", role="none")
        session.add(user)
    async with ui.browser("operator") as b:
        await _post(b, "/tenants", {"slug": slug})
        missing = await _post(b, f"/tenants/{slug}/members", {"user": "nobody@example.org", "role": "member"})
        assert missing.status_code == 422
        assert 'id="member-user-error"' in missing.text
        added = await _post(b, f"/tenants/{slug}/members", {"user": user.email or "", "role": "member"})
        assert added.status_code == 303
        page = await b.get(f"/tenants/{slug}")
        assert "New Person" in page.text
        await _post(b, f"/tenants/{slug}/members", {"user": str(user.id), "role": "tenant_admin"})
        async with ui.sessions() as session:
            role = await session.scalar(select(Membership.role).where(Membership.user_id == user.id))
        assert role == "tenant_admin"
        removed = await _post(b, f"/tenants/{slug}/members/{user.id}/remove")
        assert removed.status_code == 303
        assert "New Person" not in (await b.get(f"/tenants/{slug}")).text
        assert (await _post(b, f"/tenants/{slug}/members/{user.id}/remove")).status_code == 404


async def test_budgets_set_change_and_reset(ui: Ui) -> None:
    slug = _slug("bud")
    async with ui.browser("operator") as b:
        await _post(b, "/tenants", {"slug": slug})
        bad = await _post(b, f"/tenants/{slug}/budgets", {"kind": "tokens", "amount": "1.5"})
        assert bad.status_code == 422
        assert "a whole number of tokens" in bad.text
        bad = await _post(b, f"/tenants/{slug}/budgets", {"kind": "usd", "amount": "ten"})
        assert bad.status_code == 422
        assert 'id="budget-amount-error"' in bad.text
        assert (
            await _post(b, f"/tenants/{slug}/budgets", {"kind": "usd", "amount": "25"})
        ).status_code == 303
        assert (
            await _post(b, f"/tenants/{slug}/budgets", {"kind": "usd", "amount": "40", "period": "1mo"})
        ).status_code == 303
        page = await b.get(f"/tenants/{slug}")
        assert ">40.00<" in page.text
        assert "1mo" in page.text
        assert (await _post(b, f"/tenants/{slug}/budgets/usd/reset")).status_code == 303
        assert (await _post(b, f"/tenants/{slug}/budgets/tokens/reset")).status_code == 404
    tenant = await _tenant(ui, slug)
    assert tenant is not None
    async with ui.sessions() as session:
        budget = await session.scalar(
            select(Budget).where(Budget.subject_type == SubjectType.TENANT, Budget.subject_id == tenant.id)
        )
    assert budget is not None
    assert budget.amount == 40


async def test_members_see_only_their_tenant(ui: Ui) -> None:
    for kind in ("member", "tenant_admin"):
        async with ui.browser(kind) as b:
            page = await b.get("/tenants")
            assert page.status_code == 200
            assert ui.tenant_slug in page.text
            assert ui.other_slug not in page.text
            assert "New tenant" not in page.text
            assert (await b.get(f"/tenants/{ui.tenant_slug}")).status_code == 200
            for url in (
                f"/tenants/{ui.other_slug}",
                f"/tenants/{ui.other_tenant}",
                f"/tenants/{ui.other_slug}/edit",
            ):
                assert (await b.get(url)).status_code in {403, 404}, url
            assert (await b.get(f"/tenants/{ui.other_slug}")).status_code == 404
            searched = await b.get("/tenants", params={"search": ui.other_slug})
            assert f'href="/tenants/{ui.other_slug}"' not in searched.text
            assert "No tenants match" in searched.text
            post = await _post(b, f"/tenants/{ui.other_slug}/members", {"user": "x@example.org"})
            assert post.status_code in {403, 404}
    async with ui.browser("member") as b:
        own = await b.get(f"/tenants/{ui.tenant_slug}")
        assert 'id="members"' not in own.text
        assert "/edit" not in own.text
        assert (await _post(b, f"/tenants/{ui.tenant_slug}/status")).status_code == 403
    async with ui.browser("tenant_admin") as b:
        own = await b.get(f"/tenants/{ui.tenant_slug}")
        assert 'id="members"' in own.text
        assert "Set budget" not in own.text
        assert (
            await _post(b, f"/tenants/{ui.tenant_slug}/budgets", {"kind": "usd", "amount": "1"})
        ).status_code == 403
    tenant = await _tenant(ui, ui.tenant_slug)
    assert tenant is not None
    assert tenant.status == "active"


@browser_backends
async def test_create_a_tenant_in_chromium(ui: Ui, chromium: Browser) -> None:
    slug = _slug("pw")
    context, page = await ui.page(chromium, "operator")
    try:
        await page.goto("/tenants")
        await expect(page.get_by_role("heading", name="Tenants")).to_be_visible()
        await page.get_by_text("New tenant").click()
        await page.get_by_label("Slug").fill(ui.tenant_slug)
        await page.get_by_role("button", name="Create tenant").click()
        await expect(page.locator("#tenant-slug-error")).to_contain_text("already exists")
        await screenshot(page, "tenants-create-error")
        await page.get_by_label("Slug").fill(slug)
        await page.get_by_label("Name").fill("Playwright Team")
        await page.get_by_label("Requests per minute").fill("120")
        await page.get_by_role("button", name="Create tenant").click()
        await expect(page).to_have_url(f"{ui.url}/tenants/{slug}")
        await expect(page.get_by_role("heading", name="Playwright Team")).to_be_visible()
        await page.get_by_label("Amount").fill("50")
        await page.get_by_role("button", name="Set budget").click()
        await expect(page.locator("#budgets")).to_contain_text("50.00")
        await screenshot(page, "tenants-detail")
        questions: list[str] = []

        async def accept(dialog: Dialog) -> None:
            questions.append(dialog.message)
            await dialog.accept()

        page.on("dialog", accept)
        await page.locator("#budgets").get_by_role("button", name="Reset").click()
        await expect(page.locator("#flashes")).to_contain_text("starts afresh")
        assert questions == ["Reset the usd budget now?"]

        await page.goto("/tenants")
        await page.get_by_label("Search").fill(slug)
        await expect(page.locator("#tenant-table tbody tr")).to_have_count(1)
        await expect(page.locator("#tenant-table")).to_contain_text("Playwright Team")
        await page.get_by_label("Search").fill("")
        await expect(page.locator("#tenant-table tbody tr")).not_to_have_count(1)  # the filter is gone
        await screenshot(page, "tenants-list")

        await page.goto(f"/tenants/{slug}")
        await page.get_by_role("link", name="Suspend").click()
        await page.get_by_role("button", name="Suspend tenant").click()
        await expect(page.locator("h1 .badge")).to_have_text("suspended")
    finally:
        await context.close()
    member_context, member_page = await ui.page(chromium, "member")
    try:
        response = await member_page.goto(f"/tenants/{ui.other_slug}")
        assert response is not None
        assert response.status == 404
        await member_page.goto("/tenants")
        await expect(member_page.locator("#tenant-table")).to_contain_text(ui.tenant_slug)
        await screenshot(member_page, "tenants-list-member")
    finally:
        await member_context.close()
