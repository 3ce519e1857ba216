"""``portal audit verify|export`` and ``portal retention run``: output, exit codes, files."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from portal import audit
from portal.cli import main
from portal.db.models import AuditEvent
from portal.tenants.service import create_tenant, update_tenant
from portal.timeutil import utcnow
from tests.conftest import TEST_SECRET
from tests.integration.conftest import FreshDb
from tests.integration.test_retention import add_logs

ACTOR = audit.Actor(type="test", label="cli tests")


async def run(url: str, *args: str, **env: str) -> tuple[int, str, str]:
    def invoke() -> tuple[int, str, str]:
        result = CliRunner().invoke(
            main, list(args), env={"PORTAL_DATABASE_URL": url, "PORTAL_SECRET_KEY": TEST_SECRET, **env}
        )
        return result.exit_code, result.stdout, result.stderr

    return await asyncio.to_thread(invoke)


async def three_events(fresh: FreshDb) -> None:
    async with fresh.sessions() as session, session.begin():
        tenant = await create_tenant(session, ACTOR, slug=f"c-{uuid.uuid4().hex[:8]}")
    for name in ("a", "b"):
        async with fresh.sessions() as session, session.begin():
            await update_tenant(session, ACTOR, await session.merge(tenant), {"name": name})


@pytest.mark.usefixtures("clean_env")
async def test_audit_verify_exit_codes(fresh: FreshDb) -> None:
    await three_events(fresh)
    code, out, err = await run(fresh.url, "audit", "verify")
    assert code == 0, err
    assert out.strip() == "audit chain intact: 3 events (seq 1..3)"
    code, out, _ = await run(fresh.url, "audit", "verify", "--json")
    assert code == 0
    assert json.loads(out)["ok"] is True
    async with fresh.engine.begin() as conn:
        await conn.execute(
            update(AuditEvent.__table__).where(AuditEvent.__table__.c.seq == 2).values(ip="6.6.6.6")
        )
    code, out, err = await run(fresh.url, "audit", "verify")
    assert code == 1
    assert "audit chain BROKEN at event 2 (seq 2): content does not match its hash" in err
    assert "(1 events before it are intact)" in err
    code, out, _ = await run(fresh.url, "audit", "verify", "--json")
    assert code == 1
    assert json.loads(out)["broken"]["seq"] == 2


@pytest.mark.usefixtures("clean_env")
async def test_audit_export_in_chain_order(fresh: FreshDb, tmp_path: Path) -> None:
    await three_events(fresh)
    code, out, err = await run(fresh.url, "audit", "export")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3]
    assert [line["action"] for line in lines] == ["tenant.created", "tenant.updated", "tenant.updated"]
    assert lines[1]["prev_hash"] == lines[0]["hash"]
    assert "exported 3 audit events" in err
    target = tmp_path / "audit.jsonl"
    future = (utcnow() + dt.timedelta(days=1)).isoformat()
    code, _, err = await run(fresh.url, "audit", "export", "--since", future, "--output", str(target))
    assert code == 0, err
    assert target.read_text() == ""
    code, _, err = await run(fresh.url, "audit", "export", "--until", future, "--output", str(target))
    assert code == 0, err
    assert [json.loads(line)["seq"] for line in target.read_text().splitlines()] == [1, 2, 3]
    code, _, err = await run(fresh.url, "audit", "export", "--since", "yesterday")
    assert code == 2
    assert "ISO 8601" in err


@pytest.mark.usefixtures("clean_env")
async def test_retention_run_and_dry_run(fresh: FreshDb, tmp_path: Path) -> None:
    await add_logs(fresh.sessions, 100, 200, 1, now=utcnow())
    code, out, err = await run(fresh.url, "retention", "run", "--dry-run")
    assert code == 0, err
    assert "request_logs: would delete 2 rows created before" in out
    assert "audit_events: kept forever (PORTAL_AUDIT_RETENTION_DAYS=0)" in out
    assert "spend_daily and spend totals: never deleted" in out
    archive = tmp_path / "archive"
    code, out, err = await run(
        fresh.url,
        "retention",
        "run",
        PORTAL_RETENTION_ARCHIVE_DIR=str(archive),
        PORTAL_RETENTION_BATCH_SIZE="1",
    )
    assert code == 0, err
    assert "request_logs: deleted 2 rows" in out
    assert "in 2 batches; archived to 2 files" in out
    assert len(list(archive.glob("request_logs-*.jsonl.gz"))) == 2
    code, out, _ = await run(fresh.url, "retention", "run", "--json", PORTAL_REQUEST_LOG_RETENTION_DAYS="0")
    assert code == 0
    assert json.loads(out)["tables"][0]["cutoff"] is None


@pytest.mark.usefixtures("clean_env")
async def test_retention_failure_exits_1(fresh: FreshDb, tmp_path: Path) -> None:
    await add_logs(fresh.sessions, 100, now=utcnow())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, _ = await run(fresh.url, "retention", "run", PORTAL_RETENTION_ARCHIVE_DIR=str(blocker / "sub"))
    assert code == 1
    assert "request_logs: deleted 0 rows" in out
    assert "STOPPED: cannot write the archive" in out
