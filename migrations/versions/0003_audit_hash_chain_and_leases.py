"""audit hash chain (seq, chain head) and job leases

Adds ``audit_events.seq`` (unique), the one-row ``audit_chain_head`` and the ``leases`` table, and
chains the events already recorded (in id order) so ``portal audit verify`` passes on an upgraded
database.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-07 12:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types.guid
import sqlalchemy as sa
from alembic import context, op

import portal.db.types

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.create_index("ix_audit_events_seq", ["seq"], unique=True)
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", portal.db.types.DateTimeUTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    from portal.audit.chain import GENESIS

    seq, last = (0, GENESIS) if context.is_offline_mode() else _chain_existing_events()
    op.bulk_insert(head, [{"id": 1, "seq": seq, "hash": last}])


_EVENTS = sa.table(
    "audit_events",
    sa.column("id", sa.BigInteger()),
    sa.column("created_at", portal.db.types.DateTimeUTC(timezone=True)),
    sa.column("actor_type", sa.String()),
    sa.column("actor_id", sa.String()),
    sa.column("actor_label", sa.String()),
    sa.column("action", sa.String()),
    sa.column("target_type", sa.String()),
    sa.column("target_id", sa.String()),
    sa.column("tenant_id", advanced_alchemy.types.guid.GUID()),
    sa.column("before", sa.JSON()),
    sa.column("after", sa.JSON()),
    sa.column("ip", sa.String()),
    sa.column("request_id", sa.String()),
    sa.column("seq", sa.BigInteger()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def _chain_existing_events() -> tuple[int, str]:
    """Number and hash the events recorded before the chain existed, oldest (lowest id) first."""
    from portal.audit.chain import GENESIS, event_hash
    from portal.db.models import AuditEvent

    bind = op.get_bind()
    fields = [c for c in _EVENTS.c if c.name not in {"seq", "prev_hash", "hash"}]
    seq, last, after_id = 0, GENESIS, 0
    while True:
        rows = bind.execute(
            sa.select(*fields).where(_EVENTS.c.id > after_id).order_by(_EVENTS.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        for row in rows:
            seq += 1
            event = AuditEvent(**row._asdict(), seq=seq, prev_hash=last)
            last = event_hash(event)
            bind.execute(
                _EVENTS.update()
                .where(_EVENTS.c.id == row.id)
                .values(seq=seq, prev_hash=event.prev_hash, hash=last)
            )
            after_id = row.id
    return seq, last


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("audit_chain_head")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_seq")
        batch_op.drop_column("seq")
