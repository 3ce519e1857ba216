"""Self-service for tenant admins and members: ``/my`` (their tenants, spend, budgets left, keys), the
tenant page's chart, keys and budgets, keys created only within the tenant's limits; and nothing of
another tenant visible or reachable, by URL or by guessing ids."""

from __future__ import annotations

import uuid
from decimal import Decimal

from portal import audit
from portal.db.models import Membership, SubjectType, User
from portal.keys.service import create_key
from portal.limits import budgets
from portal.tenants.service import create_tenant
from tests.web.conftest import Ui

ACTOR = audit.Actor(type="test", label="self-service tests")


async def _own_tenant(ui: Ui, kind: str, role: str, *, rpm_limit: int | None = None) -> tuple[str, uuid.UUID]:
    """A fresh tenant with a person of ``role`` in it, signed in as ``kind``; (its slug, its id)."""
    slug = f"self-{uuid.uuid4().hex[:8]}"
    async with ui.sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=slug, name="Self Team", rpm_limit=rpm_limit)
        user = User(email=f"{kind}-{uuid.uuid4().hex[:6]}@example.org", display_name=kind, role="none")
        session.add(user)
        await session.flush()
        session.add(Membership(user_id=user.id, tenant_id=tenant.id, role=role))
        await budgets.set_budget(
            session,
            ACTOR,
            subject_type=SubjectType.TENANT,
            subject_id=tenant.id,
            amount=Decimal("25"),
            kind="usd",
        )
    ui.users[kind] = user.id
    return slug, tenant.id


async def test_my_page_shows_own_tenants_budget_left_and_keys(ui: Ui) -> None:
    slug, tenant_id = await _own_tenant(ui, "self-member", "member")
    async with ui.sessions() as session, session.begin():
        mine = await create_key(session, ACTOR, tenant_id=tenant_id, alias="my-own-key")
        other = await create_key(session, ACTOR, tenant_id=ui.other_tenant, alias="not-mine-key")
    async with ui.browser("self-member") as b:
        page = await b.get("/my")
        assert page.status_code == 200
        assert f'href="/tenants/{slug}"' in page.text
        assert f'id="my-{slug}-usd-left">25 USD<' in page.text
        assert mine.key.key_prefix in page.text
        assert other.key.key_prefix not in page.text
        assert ui.other_slug not in page.text
        assert ui.tenant_slug not in page.text  # not a member there
        nav = page.text.split('class="mainnav"')[1].split("</nav>")[0]
        assert ">My tenants<" in nav

        detail = await b.get(f"/tenants/{slug}")
        assert detail.status_code == 200
        assert 'id="tenant-spend-chart-data"' in detail.text
        assert 'id="budget-usd-left"' in detail.text
        assert f'href="/keys/{mine.key.id}"' in detail.text
        assert 'id="budget-form"' not in detail.text  # members read budgets, never set them
    async with ui.browser("admin") as admin:  # staff without memberships get no self-service link
        nav = (await admin.get("/account")).text.split('class="mainnav"')[1].split("</nav>")[0]
        assert ">My tenants<" not in nav
        assert "not a member of any tenant" in (await admin.get("/my")).text


async def test_member_keys_stay_within_the_tenants_limits(ui: Ui) -> None:
    slug, tenant_id = await _own_tenant(ui, "limited-member", "member", rpm_limit=100)
    async with ui.browser("limited-member") as b:
        above = await b.post("/keys", data={"tenant": str(tenant_id), "alias": "greedy", "rpm_limit": "500"})
        assert above.status_code == 422
        assert "at most the tenant&#39;s own rpm_limit (100)" in above.text
        within = await b.post("/keys", data={"tenant": str(tenant_id), "alias": "modest", "rpm_limit": "50"})
        assert within.status_code == 303
        elsewhere = await b.post("/keys", data={"tenant": str(ui.other_tenant), "alias": "sneaky"})
        assert elsewhere.status_code == 422
        assert "not one of your tenants" in elsewhere.text
        key_url = within.headers["location"].removesuffix("/created")
        assert (await b.post(f"{key_url}/revoke")).status_code == 303
        assert "revoked" in (await b.get(key_url)).text
    assert slug


async def test_nothing_of_another_tenant_is_reachable(ui: Ui) -> None:
    async with ui.sessions() as session, session.begin():
        other_key = (await create_key(session, ACTOR, tenant_id=ui.other_tenant, alias="guess-me")).key
    other, key = ui.other_slug, other_key.id
    gets = [
        f"/tenants/{other}",
        f"/tenants/{other}/edit",
        f"/tenants/{other}/delete",
        f"/tenants/{other}/status",
        f"/tenants/{ui.other_tenant}",
        f"/keys/{key}",
        f"/keys/{key}/revoke",
        f"/keys/{key}/created",
        f"/keys?tenant={other}",
        f"/keys?tenant={ui.other_tenant}",
        f"/keys/new?tenant={ui.other_tenant}",
        f"/spend?tenant={other}",
        f"/spend.csv?tenant={other}",
        f"/dashboard?tenant={other}",
        f"/logs?tenant={other}",
        f"/grants?subject_type=tenant&subject={other}",
        f"/grants?subject_type=key&subject={key}",
        "/my",
        "/tenants",
        "/keys",
        "/credentials",
        "/audit",
    ]
    posts = [
        (f"/keys/{key}/revoke", {}),
        (f"/keys/{key}/block", {}),
        (f"/keys/{key}/edit", {"alias": "taken"}),
        (f"/keys/{key}/rotate", {"grace_period_s": "0"}),
        (f"/tenants/{other}/edit", {"slug": other, "name": "taken"}),
        (f"/tenants/{other}/members", {"user": "x@example.org"}),
        (f"/tenants/{other}/budgets", {"kind": "usd", "amount": "1"}),
        (f"/tenants/{other}/delete", {}),
        ("/grants", {"subject_type": "key", "subject": str(key), "model_pattern": "*"}),
    ]
    for kind in ("member", "tenant_admin"):
        async with ui.browser(kind) as b:
            for url in gets:
                page = await b.get(url)
                assert page.status_code < 500, (kind, url)
                if page.status_code == 200:
                    for secret in (other, str(ui.other_tenant), str(key), other_key.key_prefix, "guess-me"):
                        assert secret not in page.text, (kind, url, secret)
                else:
                    assert page.status_code in {403, 404, 422}, (kind, url, page.status_code)
            for url, data in posts:
                answer = await b.post(url, data=data)
                assert answer.status_code in {403, 404, 422}, (kind, url, answer.status_code)
    async with ui.sessions() as session:
        from portal.db.models import ApiKey

        fresh = await session.get(ApiKey, key)
        assert fresh is not None
        assert fresh.status == "active"
        assert fresh.alias == "guess-me"
