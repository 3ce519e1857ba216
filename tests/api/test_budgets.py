"""``/api/budgets`` and ``/api/limits``: create/replace, read, reset and delete budgets; set rate limits;
the proxy enforcing them at once (and a reset clearing live counters); validation (422), unknown ids
(404), tenant-admin scoping and "within the tenant's own" caps, and the audit trail."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx

from tests.api.conftest import AdminApi
from tests.api.test_grants import events_for, member, mock_model, tenant_with_key


async def chat(api: AdminApi, secret: str, model: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url, trust_env=False, timeout=30) as proxy:
        return await proxy.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
            headers={"Authorization": f"Bearer {secret}"},
        )


async def served_key(api: AdminApi, admin: httpx.AsyncClient) -> tuple[str, str, str, str]:
    """A new tenant allowed a new mock model, with a key: (model, tenant id, key id, secret)."""
    model = (await mock_model(admin))["name"]
    tenant_id, key_id, secret = await tenant_with_key(api)
    granted = await admin.post(
        "/api/grants", json={"subject_type": "tenant", "subject_id": tenant_id, "model_pattern": model}
    )
    assert granted.status_code == 201
    return model, tenant_id, key_id, secret


async def test_budget_crud_with_audit(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    _, key_id, _ = await tenant_with_key(admin_api)
    created = await admin.put(
        f"/api/budgets/key/{key_id}/usd",
        json={
            "amount": "10.50",
            "period": "monthly",
            "soft_threshold": 0.8,
            "webhook_url": "https://hooks.example/b",
        },
    )
    assert created.status_code == 200, created.text
    budget = created.json()
    assert budget["subject_type"] == "key"
    assert budget["subject_id"] == key_id
    assert budget["kind"] == "usd"
    assert (budget["amount"], budget["used"], budget["remaining"]) == ("10.5", "0", "10.5")
    assert budget["period"] == "monthly"
    assert budget["alignment"] == "calendar"
    assert budget["reset_at"] is not None
    assert budget["period_started_at"] is not None
    assert budget["soft_threshold"] == 0.8

    changed = await admin.put(f"/api/budgets/key/{key_id}/usd", json={"amount": "20"})
    assert changed.json()["id"] == budget["id"], "one budget per subject and kind: replaced in place"
    assert changed.json()["amount"] == "20"
    assert changed.json()["period"] is None
    assert changed.json()["reset_at"] is None
    assert changed.json()["webhook_url"] is None

    tokens = await admin.put(f"/api/budgets/key/{key_id}/tokens", json={"amount": "100000", "period": "30d"})
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["amount"] == "100000"

    read = await admin.get(f"/api/budgets/{budget['id']}")
    assert read.json() == changed.json()
    listed = (await admin.get("/api/budgets", params={"subject_type": "key", "subject_id": key_id})).json()
    assert {b["kind"] for b in listed["items"]} == {"usd", "tokens"}
    assert all(
        b["subject_type"] == "key"
        for b in (await admin.get("/api/budgets", params={"subject_type": "key"})).json()["items"]
    )

    assert (await admin.delete(f"/api/budgets/{budget['id']}")).status_code == 204
    assert (await admin.get(f"/api/budgets/{budget['id']}")).status_code == 404
    assert (await admin.delete(f"/api/budgets/{budget['id']}")).status_code == 404

    events = await events_for(admin_api, budget["id"])
    assert [e.action for e in events] == ["budget.set", "budget.set", "budget.deleted"]
    assert events[0].before is None
    assert events[1].before is not None
    assert events[1].after is not None
    assert Decimal(events[1].before["amount"]) == Decimal("10.5")
    assert Decimal(events[1].after["amount"]) == Decimal(20)


async def test_budget_validation_and_unknown_ids(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    _, key_id, _ = await tenant_with_key(admin_api)

    async def put(kind: str = "usd", **body: Any) -> httpx.Response:
        return await admin.put(f"/api/budgets/key/{key_id}/{kind}", json={"amount": "5", **body})

    cases: list[tuple[str, dict[str, Any], str]] = [
        ("eur", {}, "kind"),
        ("tokens", {"amount": "10.5"}, "amount"),
        ("usd", {"amount": "-1"}, "amount"),
        ("usd", {"amount": 5}, "amount"),
        ("usd", {"period": "fortnightly"}, "period"),
        ("usd", {"alignment": "lunar"}, "alignment"),
        ("usd", {"soft_threshold": 1.5}, "soft_threshold"),
        ("usd", {"webhook_url": "ftp://x"}, "webhook_url"),
        ("usd", {"amout": "5"}, "amout"),
    ]
    for kind, body, field in cases:
        response = await put(kind, **body)
        assert response.status_code == 422, (kind, body, response.text)
        problem = response.json()
        assert field in problem.get("errors", {}) or field in problem["detail"], (field, problem)

    assert (await admin.put(f"/api/budgets/key/{uuid.uuid4()}/usd", json={"amount": "5"})).status_code == 404
    assert (await admin.put(f"/api/budgets/team/{key_id}/usd", json={"amount": "5"})).status_code == 422
    assert (await admin.get(f"/api/budgets/{uuid.uuid4()}")).status_code == 404
    assert (await admin.get("/api/budgets/not-an-id")).status_code == 404
    assert (await admin.post(f"/api/budgets/{uuid.uuid4()}/reset")).status_code == 404
    assert (await admin.get("/api/budgets", params={"subject_id": key_id})).status_code == 422


async def test_budget_applies_at_once_and_a_reset_clears_live_counters(
    admin_api: AdminApi, admin: httpx.AsyncClient
) -> None:
    model, _, key_id, secret = await served_key(admin_api, admin)
    assert (await chat(admin_api, secret, model)).status_code == 200

    tiny = await admin.put(f"/api/budgets/key/{key_id}/usd", json={"amount": "0.000000001"})
    assert tiny.status_code == 200
    refused = await chat(admin_api, secret, model)
    assert refused.status_code == 402, refused.text
    assert (await admin.put(f"/api/budgets/key/{key_id}/usd", json={"amount": "100"})).status_code == 200
    assert (await chat(admin_api, secret, model)).status_code == 200

    quota = await admin.put(f"/api/budgets/key/{key_id}/tokens", json={"amount": "60", "period": "monthly"})
    assert quota.status_code == 200
    statuses = [(await chat(admin_api, secret, model)).status_code for _ in range(8)]
    assert statuses[0] == 200
    assert 429 in statuses, statuses
    assert (await chat(admin_api, secret, model)).status_code == 429

    reset = await admin.post(f"/api/budgets/{quota.json()['id']}/reset")
    assert reset.status_code == 200, reset.text
    assert reset.json()["used"] == "0"
    after = await chat(admin_api, secret, model)
    assert after.status_code == 200, f"the reset cleared the live counter: {after.text}"

    assert (await admin.delete(f"/api/budgets/{quota.json()['id']}")).status_code == 204
    assert [(await chat(admin_api, secret, model)).status_code for _ in range(3)] == [200, 200, 200]
    actions = [e.action for e in await events_for(admin_api, quota.json()["id"])]
    assert actions == ["budget.set", "budget.reset", "budget.deleted"]


async def test_tenant_admin_budgets_within_the_tenant(admin_api: AdminApi, admin: httpx.AsyncClient) -> None:
    home = str(admin_api.tenant_id)
    _, own_key, _ = await tenant_with_key(admin_api, admin_api.tenant_id)
    own_user = await member(admin_api, admin_api.tenant_id)
    other_tenant, other_key, _ = await tenant_with_key(admin_api)
    stranger = await member(admin_api, other_tenant)
    foreign = (await admin.put(f"/api/budgets/key/{other_key}/usd", json={"amount": "5"})).json()
    assert (await admin.put(f"/api/budgets/tenant/{home}/usd", json={"amount": "100"})).status_code == 200

    async with admin_api.client("tenant_admin") as tadmin:
        above = await tadmin.put(f"/api/budgets/key/{own_key}/usd", json={"amount": "150"})
        assert above.status_code == 422
        assert "amount" in above.json()["errors"]
        ok = await tadmin.put(f"/api/budgets/key/{own_key}/usd", json={"amount": "50", "period": "daily"})
        assert ok.status_code == 200, ok.text
        no_cap = await tadmin.put(f"/api/budgets/user/{own_user}/tokens", json={"amount": "1000000"})
        assert no_cap.status_code == 200, "the tenant has no token budget to stay within"
        assert (await tadmin.post(f"/api/budgets/{ok.json()['id']}/reset")).status_code == 200

        assert (
            await tadmin.put(f"/api/budgets/tenant/{home}/usd", json={"amount": "1000"})
        ).status_code == 403
        tenant_budget = next(
            b for b in (await tadmin.get("/api/budgets")).json()["items"] if b["subject_type"] == "tenant"
        )
        assert (await tadmin.get(f"/api/budgets/{tenant_budget['id']}")).status_code == 200
        assert (await tadmin.post(f"/api/budgets/{tenant_budget['id']}/reset")).status_code == 403
        assert (await tadmin.delete(f"/api/budgets/{tenant_budget['id']}")).status_code == 403

        for path in (f"key/{other_key}", f"user/{stranger}", f"tenant/{other_tenant}"):
            response = await tadmin.put(f"/api/budgets/{path}/usd", json={"amount": "1"})
            assert response.status_code == 404, (path, response.text)
        assert (await tadmin.get(f"/api/budgets/{foreign['id']}")).status_code == 404
        assert (await tadmin.post(f"/api/budgets/{foreign['id']}/reset")).status_code == 404
        assert (await tadmin.delete(f"/api/budgets/{foreign['id']}")).status_code == 404
        listed = {b["id"] for b in (await tadmin.get("/api/budgets")).json()["items"]}
        assert ok.json()["id"] in listed
        assert no_cap.json()["id"] in listed
        assert foreign["id"] not in listed
        assert (await tadmin.delete(f"/api/budgets/{ok.json()['id']}")).status_code == 204

    async with admin_api.client("viewer") as viewer:
        assert (await viewer.get(f"/api/budgets/{foreign['id']}")).status_code == 200
        assert (
            await viewer.put(f"/api/budgets/key/{other_key}/usd", json={"amount": "1"})
        ).status_code == 403
    events = await events_for(admin_api, ok.json()["id"])
    assert [e.action for e in events] == ["budget.set", "budget.reset", "budget.deleted"]
    assert {str(e.tenant_id) for e in events} == {home}


async def test_limits_are_audited_enforced_and_capped_for_tenant_admins(
    admin_api: AdminApi, admin: httpx.AsyncClient
) -> None:
    model, tenant_id, key_id, secret = await served_key(admin_api, admin)
    assert (await admin.get(f"/api/limits/key/{key_id}")).json() == {
        "subject_type": "key",
        "subject_id": key_id,
        "rpm_limit": None,
        "tpm_limit": None,
        "max_parallel": None,
    }
    set_ = await admin.put(f"/api/limits/key/{key_id}", json={"rpm_limit": 1, "max_parallel": 4})
    assert set_.status_code == 200, set_.text
    assert (set_.json()["rpm_limit"], set_.json()["tpm_limit"], set_.json()["max_parallel"]) == (1, None, 4)
    statuses = [(await chat(admin_api, secret, model)).status_code for _ in range(3)]
    assert 429 in statuses, (
        f"rpm 1 applies at once (3 calls cannot all fall in different minutes): {statuses}"
    )
    partial = await admin.put(f"/api/limits/key/{key_id}", json={"rpm_limit": None})
    assert (partial.json()["rpm_limit"], partial.json()["max_parallel"]) == (None, 4), "omitted fields stay"
    assert (await chat(admin_api, secret, model)).status_code == 200

    events = [e for e in await events_for(admin_api, key_id) if e.action == "limits.set"]
    assert len(events) == 2
    assert events[0].before == {"rpm_limit": None, "tpm_limit": None, "max_parallel": None}
    assert events[0].after == {"rpm_limit": 1, "tpm_limit": None, "max_parallel": 4}
    assert str(events[0].tenant_id) == tenant_id

    assert (await admin.put(f"/api/limits/key/{key_id}", json={"rpm_limit": 0})).status_code == 422
    assert (await admin.put(f"/api/limits/key/{key_id}", json={"rpm": 5})).status_code == 422
    assert (await admin.put(f"/api/limits/key/{uuid.uuid4()}", json={"rpm_limit": 5})).status_code == 404
    assert (await admin.get(f"/api/limits/group/{key_id}")).status_code == 422
    assert (await admin.put(f"/api/limits/tenant/{tenant_id}", json={"tpm_limit": 5000})).json()[
        "tpm_limit"
    ] == 5000

    home = str(admin_api.tenant_id)
    _, own_key, _ = await tenant_with_key(admin_api, admin_api.tenant_id)
    own_user = await member(admin_api, admin_api.tenant_id)
    assert (await admin.put(f"/api/limits/tenant/{home}", json={"rpm_limit": 100})).status_code == 200
    async with admin_api.client("tenant_admin") as tadmin:
        above = await tadmin.put(f"/api/limits/key/{own_key}", json={"rpm_limit": 500, "tpm_limit": 10})
        assert above.status_code == 422
        assert list(above.json()["errors"]) == ["rpm_limit"]
        unlimited = await tadmin.put(f"/api/limits/user/{own_user}", json={"rpm_limit": None})
        assert unlimited.status_code == 422, "unlimited escapes the tenant's limit"
        within = await tadmin.put(f"/api/limits/key/{own_key}", json={"rpm_limit": 50, "tpm_limit": 10})
        assert within.status_code == 200, within.text
        assert (await tadmin.get(f"/api/limits/tenant/{home}")).json()["rpm_limit"] == 100
        assert (await tadmin.put(f"/api/limits/tenant/{home}", json={"rpm_limit": 1000})).status_code == 403
        assert (await tadmin.get(f"/api/limits/key/{key_id}")).status_code == 404
        assert (await tadmin.put(f"/api/limits/key/{key_id}", json={"rpm_limit": 1})).status_code == 404
    async with admin_api.client("auditor") as auditor:
        assert (await auditor.get(f"/api/limits/key/{key_id}")).status_code == 200
        assert (await auditor.put(f"/api/limits/key/{key_id}", json={"rpm_limit": 1})).status_code == 403


async def test_amount_above_the_backends_ceiling_is_refused(
    admin_api: AdminApi, admin: httpx.AsyncClient, backend: str
) -> None:
    """Each backend's largest amount is stored exactly, and one above it is a 422, never a database
    error (DECIMAL(28,12) on PostgreSQL and MariaDB, whose strict mode refuses an out-of-range value)."""
    _, key_id, _ = await tenant_with_key(admin_api)
    ceiling = Decimal("9223372") if backend == "sqlite" else Decimal("9999999999999999.999999999999")
    at_ceiling = await admin.put(f"/api/budgets/key/{key_id}/usd", json={"amount": str(ceiling)})
    assert at_ceiling.status_code == 200, at_ceiling.text
    assert Decimal(at_ceiling.json()["amount"]) == ceiling
    above = await admin.put(f"/api/budgets/key/{key_id}/usd", json={"amount": str(ceiling + 1)})
    assert above.status_code == 422, above.text
    assert "amount" in above.json()["errors"]
    huge = await admin.put(f"/api/budgets/key/{key_id}/tokens", json={"amount": "1" + "0" * 30})
    assert huge.status_code == 422, huge.text
