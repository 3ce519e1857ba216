"""Catalog rules: public models and their deployments (audited)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.audit.service import snapshot
from portal.db.models import Deployment, Model, Provider
from portal.errors import ValidationFailedError

__all__ = ["ensure_model"]


async def ensure_model(
    session: AsyncSession,
    actor: audit.Actor,
    *,
    name: str,
    provider: str,
    upstream_model: str,
    input_price_per_mtok: Decimal | None = None,
    output_price_per_mtok: Decimal | None = None,
    description: str = "",
) -> Model:
    """The model ``name``, created with one deployment if it does not exist yet."""
    if provider not in set(Provider):
        raise ValidationFailedError("unknown provider", {"provider": f"one of {', '.join(Provider)}"})
    model = await session.scalar(select(Model).where(Model.name == name))
    if model is not None:
        return model
    model = Model(name=name, description=description)
    session.add(model)
    await session.flush()
    deployment = Deployment(
        model_id=model.id,
        name=f"{name}-{provider}",
        provider=provider,
        upstream_model=upstream_model,
        input_price_per_mtok=input_price_per_mtok,
        output_price_per_mtok=output_price_per_mtok,
    )
    session.add(deployment)
    await session.flush()
    await audit.record(
        session,
        actor,
        "model.created",
        target_type="model",
        target_id=model.id,
        after={**snapshot(model), "deployments": [snapshot(deployment)]},
    )
    return model
