"""The canonical form of an audit event is a documented, stable format: a pinned example."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

from portal.audit.chain import GENESIS, canonical, event_hash
from portal.db.models import AuditEvent


def example() -> AuditEvent:
    return AuditEvent(
        id=7,
        seq=3,
        created_at=dt.datetime(2026, 12, 7, 12, 0, 5, 999999, tzinfo=dt.UTC),
        actor_type="user",
        actor_id="u-1",
        actor_label="Zoë",
        action="key.revoked",
        target_type="key",
        target_id="k-1",
        tenant_id=uuid.UUID("00000000-0000-0000-0000-00000000000a"),
        before={"status": "active", "b": [1, 2.5]},
        after={"status": "revoked"},
        ip=None,
        request_id="r-1",
        prev_hash=GENESIS,
    )


def test_canonical_form_is_sorted_compact_utf8_json() -> None:
    expected = (
        '{"action":"key.revoked","actor_id":"u-1","actor_label":"Zoë","actor_type":"user",'
        '"after":{"status":"revoked"},"before":{"b":[1,2.5],"status":"active"},'
        '"created_at":"2026-12-07T12:00:05.999999Z","id":7,"ip":null,'
        f'"prev_hash":"{GENESIS}","request_id":"r-1","seq":3,"target_id":"k-1","target_type":"key",'
        '"tenant_id":"00000000-0000-0000-0000-00000000000a"}'
    )
    assert canonical(example()) == expected.encode("utf-8")
    assert event_hash(example()) == hashlib.sha256(expected.encode("utf-8")).hexdigest()


def test_every_hashed_field_changes_the_hash() -> None:
    base = event_hash(example())
    for name, value in [
        ("seq", 4),
        ("id", 8),
        ("action", "key.created"),
        ("prev_hash", "1" * 64),
        ("ip", "::1"),
    ]:
        changed = example()
        setattr(changed, name, value)
        assert event_hash(changed) != base, name


def test_times_are_utc_to_the_microsecond() -> None:
    event = example()
    event.created_at = dt.datetime(2026, 12, 7, 13, 0, 5, 999999, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert canonical(event) == canonical(example())
    event.created_at = dt.datetime(2026, 12, 7, 12, 0, 5, 999998, tzinfo=dt.UTC)
    assert event_hash(event) != event_hash(example())
