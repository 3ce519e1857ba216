"""The catalog built from the database: each deployment belongs to its own model (regression: every
database deployment was once attached to the last model read), credentials resolved once."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.catalog.crypto import CredentialCipher
from portal.catalog.registry import load_catalog
from portal.db.models import Credential, Deployment, Model
from tests.conftest import TEST_SECRET, make_settings


async def test_each_database_deployment_belongs_to_its_model(
    database_url: str, sessions: async_sessionmaker[AsyncSession]
) -> None:
    cipher = CredentialCipher(TEST_SECRET)
    tag = uuid.uuid4().hex[:8]
    async with sessions() as session, session.begin():
        credential = Credential(
            name=f"openai-{tag}", provider="openai", ciphertext=cipher.encrypt("sk-upstream")
        )
        session.add(credential)
        first = Model(name=f"first-{tag}")
        second = Model(name=f"second-{tag}")
        session.add_all([first, second])
        await session.flush()
        session.add_all(
            [
                Deployment(
                    model_id=first.id,
                    provider="openai",
                    upstream_model="upstream-one",
                    credential_id=credential.id,
                    input_price_per_mtok=Decimal("1"),
                    output_price_per_mtok=Decimal("2"),
                ),
                Deployment(
                    model_id=second.id,
                    provider="anthropic",
                    upstream_model="claude-3-haiku-20240307",
                    credential_ref="env:PORTAL_TEST_UNSET_VARIABLE",
                ),
            ]
        )
    async with sessions() as session:
        catalog = await load_catalog(session, make_settings(database_url), cipher)
    one = catalog.get(f"first-{tag}")
    two = catalog.get(f"second-{tag}")
    assert one is not None
    assert two is not None
    assert [d.target.upstream_model for d in one.deployments] == ["upstream-one"]
    assert [d.target.upstream_model for d in two.deployments] == ["claude-3-haiku-20240307"]
    assert one.deployments[0].target.api_key == "sk-upstream"
    assert one.deployments[0].model_name == f"first-{tag}"
    assert (two.deployments[0].input_price, two.deployments[0].output_price) == (
        Decimal("0.25"),
        Decimal("1.25"),
    )
    assert two.deployments[0].problem == "environment variable PORTAL_TEST_UNSET_VARIABLE is not set"
