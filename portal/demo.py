"""First-run demo data: a tenant, a key and a model on the built-in offline ``mock`` provider.

Idempotent: running it again changes nothing. The demo key is a fixed, documented value so the
README's examples work as written; demo mode is for a local trial only.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from portal import audit
from portal.catalog.service import ensure_model
from portal.db.models import SubjectType
from portal.errors import NotFoundError
from portal.grants.service import add_grant
from portal.keys.service import create_key, find_key
from portal.tenants.service import create_tenant, get_tenant_by_slug

__all__ = ["DEMO_KEY", "DEMO_MASTER_KEY", "DEMO_MODEL", "DEMO_TENANT", "demo_secret_key", "seed_demo"]

DEMO_TENANT = "demo"
DEMO_MODEL = "demo-model"
DEMO_KEY = "sk-portal-demo-key"
DEMO_MASTER_KEY = "sk-portal-demo-master-key"
_ACTOR = audit.Actor(type="cli", label="portal demo")


def demo_secret_key(data_dir: Path) -> str:
    """The demo's secret key, generated once and kept in ``data_dir`` so sessions survive restarts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


async def seed_demo(session: AsyncSession) -> bool:
    """Create the demo tenant, model, grant and key if missing; True when anything was created."""
    created = False
    try:
        tenant = await get_tenant_by_slug(session, DEMO_TENANT)
    except NotFoundError:
        tenant = await create_tenant(session, _ACTOR, slug=DEMO_TENANT, name="Demo tenant")
        created = True
    await ensure_model(
        session,
        _ACTOR,
        name=DEMO_MODEL,
        provider="mock",
        upstream_model="mock-1",
        input_price_per_mtok=Decimal("1.00"),
        output_price_per_mtok=Decimal("2.00"),
        description="Built-in offline model: answers without internet, reports usage.",
    )
    await add_grant(
        session,
        _ACTOR,
        subject_type=SubjectType.TENANT,
        subject_id=tenant.id,
        model_pattern="*",
        tenant_id=tenant.id,
    )
    if await find_key(session, DEMO_KEY) is None:
        await create_key(
            session, _ACTOR, tenant_id=tenant.id, alias="demo key", secret=DEMO_KEY, source="demo"
        )
        created = True
    return created
