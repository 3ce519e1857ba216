"""The credential pages: list (name, provider, 4-character hint, deployments using each), create,
replace the secret (write-only), delete with a confirmation, refused while a deployment uses the
credential; audited; readers see the list without the forms, tenant members not at all."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from portal import audit
from portal.catalog import service as catalog
from portal.db.models import AuditEvent, Credential
from tests.web.conftest import Ui

HX = {"HX-Request": "true"}


async def _stored(ui: Ui, name: str) -> Credential | None:
    async with ui.sessions() as session:
        row: Credential | None = await session.scalar(select(Credential).where(Credential.name == name))
        return row


async def _actions(ui: Ui, credential_id: uuid.UUID) -> list[str]:
    async with ui.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.target_type == "credential", AuditEvent.target_id == str(credential_id))
            .order_by(AuditEvent.created_at)
        )
        return list(rows)


async def test_create_list_replace_and_delete(ui: Ui) -> None:
    name = f"openai-{uuid.uuid4().hex[:6]}"
    secret = "sk-live-first-secret-wxyz"
    async with ui.browser("admin") as b:
        created = await b.post("/credentials", data={"name": name, "provider": "openai", "secret": secret})
        assert created.status_code == 303, created.text
        listing = await b.get("/credentials")
        assert listing.status_code == 200
        assert f"<code>{name}</code>" in listing.text
        assert "…wxyz" in listing.text
        assert secret not in listing.text
        assert f"Credential {name} stored." in listing.text
        row = await _stored(ui, name)
        assert row is not None
        assert secret.encode() not in row.ciphertext

        taken = await b.post("/credentials", data={"name": name, "provider": "openai", "secret": "x" * 12})
        assert taken.status_code == 409
        assert "already exists" in taken.text
        bad = await b.post(
            "/credentials", data={"name": "bad name!", "provider": "nope", "secret": secret}, headers=HX
        )
        assert bad.status_code == 422
        assert bad.headers["hx-retarget"] == "#credential-form"
        assert 'id="cred-name-error"' in bad.text
        assert 'id="cred-provider-error"' in bad.text
        assert secret not in bad.text  # a refused form never echoes the secret

        form = await b.get(f"/credentials/{row.id}/secret")
        assert form.status_code == 200
        empty = await b.post(f"/credentials/{row.id}/secret", data={"secret": "  "})
        assert empty.status_code == 422
        assert "must not be empty" in empty.text
        replaced = await b.post(
            f"/credentials/{row.id}/secret", data={"secret": "sk-live-second-secret-abcd"}
        )
        assert replaced.status_code == 303
        assert "…abcd" in (await b.get("/credentials")).text

        confirm = await b.get(f"/credentials/{row.id}/delete")
        assert "No deployment uses it" in confirm.text
        deleted = await b.post(f"/credentials/{row.id}/delete")
        assert deleted.status_code == 303
        assert await _stored(ui, name) is None
        assert (await b.get(f"/credentials/{row.id}/delete")).status_code == 404
    assert await _actions(ui, row.id) == ["credential.created", "credential.rotated", "credential.deleted"]


async def test_delete_is_refused_while_a_deployment_uses_it(ui: Ui) -> None:
    name = f"used-{uuid.uuid4().hex[:6]}"
    async with ui.browser("operator") as b:
        assert (
            await b.post(
                "/credentials", data={"name": name, "provider": "openai", "secret": "sk-used-secret-1234"}
            )
        ).status_code == 303
    async with ui.sessions() as session, session.begin():
        model = await catalog.create_model(session, audit.Actor(type="test"), name=f"cred-model-{name}")
        deployment = await catalog.create_deployment(
            session,
            audit.Actor(type="test"),
            model,
            provider="openai",
            upstream_model="gpt-4o",
            credential=name,
        )
    row = await _stored(ui, name)
    assert row is not None
    async with ui.browser("operator") as b:
        listing = await b.get("/credentials")
        assert f'href="/deployments/{deployment.id}"' in listing.text
        confirm = await b.get(f"/credentials/{row.id}/delete")
        assert "cannot be deleted while a deployment uses it" in confirm.text
        refused = await b.post(f"/credentials/{row.id}/delete", headers=HX)
        assert refused.status_code == 409
        assert refused.headers["hx-retarget"] == "#credential-delete-form"
        assert str(deployment.id) in refused.text
        assert "point them at another credential first" in refused.text
        assert (await b.post(f"/credentials/{row.id}/delete")).status_code == 409
    assert await _stored(ui, name) is not None


async def test_who_sees_the_credential_pages(ui: Ui) -> None:
    async with ui.browser("auditor") as b:
        page = await b.get("/credentials")
        assert page.status_code == 200
        assert 'id="credential-form"' not in page.text
        assert "Replace secret" not in page.text
        refused = await b.post("/credentials", data={"name": "x-1", "provider": "openai", "secret": "y" * 12})
        assert refused.status_code == 403
    for kind in ("tenant_admin", "member"):
        async with ui.browser(kind) as b:
            assert (await b.get("/credentials")).status_code == 403
            assert 'href="/credentials"' not in (await b.get("/account")).text
