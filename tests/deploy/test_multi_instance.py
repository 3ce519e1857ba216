"""Two real ``portal serve`` instances on one PostgreSQL database and one Redis, as behind a load balancer.

Concurrent clients drive a mix of streaming and plain calls through both. Every answer carries its cost
(the ``x-portal-cost`` header, or the usage of a stream at the model's prices); the database must hold
exactly the answered calls: one request-log row per answer (matched by request id), the same total cost
in the logs, the daily rollups and the keys' and tenants' lifetime spend. Then one instance gets SIGTERM
in the middle of the load: its calls in flight still finish, calls that cannot connect are retried by the
client on the other instance, and afterwards nothing answered is missing and nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import msgspec
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal import audit
from portal.config import load_settings
from portal.db.engine import create_engine, create_session_factory
from portal.db.migrate import upgrade
from portal.db.models import ApiKey, RequestLog, SpendDaily, SubjectType, Tenant
from portal.grants.service import add_grant
from portal.keys.service import create_key
from portal.tenants.service import create_tenant
from tests.conftest import REDIS_URL, TEST_SECRET, create_postgres_database, drop_postgres_database
from tests.deploy.processes import (
    INPUT_PRICE,
    OPENAI_KEY_ENV,
    OUTPUT_PRICE,
    PortalProcess,
    openai_model,
    start_portal,
)
from tests.fakes.server import Behaviour, FakeUpstream

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

ACTOR = audit.Actor(type="test", label="multi-instance test")
CONCURRENCY = 8
MILLION = Decimal(1_000_000)


@dataclass
class Client:
    """A key of one tenant, as an application holds it."""

    secret: str
    key_id: uuid.UUID
    tenant_id: uuid.UUID


@dataclass
class Answer:
    request_id: str
    key_id: uuid.UUID
    cost: Decimal
    instance: int
    started: float
    ended: float
    stream: bool


@dataclass
class Load:
    """What the clients saw."""

    answers: list[Answer] = field(default_factory=list)
    retried: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class Cluster:
    sessions: async_sessionmaker[AsyncSession]
    instances: list[PortalProcess]
    clients: list[Client]


def _cost(prompt: int, completion: int) -> Decimal:
    return (Decimal(INPUT_PRICE) * prompt + Decimal(OUTPUT_PRICE) * completion) / MILLION


@pytest.fixture(scope="module")
async def cluster(
    tmp_path_factory: pytest.TempPathFactory, fake_openai_server: FakeUpstream
) -> AsyncIterator[Cluster]:
    url = await create_postgres_database()
    engine = create_engine(load_settings({"PORTAL_DATABASE_URL": url, "PORTAL_SECRET_KEY": TEST_SECRET}))
    instances: list[PortalProcess] = []
    try:
        await asyncio.to_thread(upgrade, url)
        sessions = create_session_factory(engine)
        clients = []
        async with sessions() as session, session.begin():
            for n in range(2):
                tenant = await create_tenant(session, ACTOR, slug=f"multi-{n}-{uuid.uuid4().hex[:6]}")
                await add_grant(
                    session, ACTOR, subject_type=SubjectType.TENANT, subject_id=tenant.id, model_pattern="*"
                )
                for _ in range(2):
                    new = await create_key(session, ACTOR, tenant_id=tenant.id, alias="load")
                    clients.append(Client(new.secret, new.key.id, tenant.id))
        for n in range(2):
            tmp = tmp_path_factory.mktemp(f"instance{n}")
            instances.append(
                await asyncio.to_thread(
                    start_portal,
                    tmp,
                    database_url=url,
                    config={"models": [openai_model(fake_openai_server)]},
                    env={
                        OPENAI_KEY_ENV: fake_openai_server.api_key,
                        "PORTAL_REDIS_URL": REDIS_URL,
                        "PORTAL_SHUTDOWN_GRACE_S": "20",
                    },
                )
            )
        yield Cluster(sessions, instances, clients)
    finally:
        for instance in instances:
            instance.terminate()
        for instance in instances:
            await asyncio.to_thread(instance.wait, 60)
        await engine.dispose()
        await drop_postgres_database(url)


def _script(fake: FakeUpstream, calls: int, seed: int) -> None:
    """Upstream answers of varied sizes (so a lost or doubled call shows in the sums) and speeds."""
    rng = random.Random(seed)
    fake.reset()
    fake.default = Behaviour(delay=0.02, chunks=3, chunk_delay=0.01)
    fake.script(
        *(
            Behaviour(
                prompt_tokens=rng.randint(5, 60),
                completion_tokens=rng.randint(1, 300),
                delay=rng.choice([0.0, 0.02, 0.05]),
                chunks=rng.randint(2, 6),
                chunk_delay=rng.choice([0.01, 0.05, 0.1]),
            )
            for _ in range(calls * 2)
        )
    )


async def _call(
    http: httpx.AsyncClient, url: str, client: Client, stream: bool, request_id: str
) -> Decimal | None:
    """One call; its cost, or None when the instance could not be reached (nothing was processed).

    Anything that goes wrong after the request reached an instance is an assertion error.
    """
    body: dict[str, object] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"call {request_id}"}],
    }
    headers = {"Authorization": f"Bearer {client.secret}", "x-request-id": request_id}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    request = http.build_request("POST", f"{url}/v1/chat/completions", json=body, headers=headers)
    try:
        response = await http.send(request, stream=True)
    except (httpx.NetworkError, httpx.RemoteProtocolError):
        # Refused, or a kept-alive connection the stopping server closed (reset) before it read the
        # request: nothing was processed, so retrying is safe (the database check proves it).
        return None
    try:
        assert response.status_code == 200, (response.status_code, await response.aread())
        if not stream:
            data = msgspec.json.decode(await response.aread())
            usage = data["usage"]
            cost = Decimal(response.headers["x-portal-cost"])
            assert cost == _cost(usage["prompt_tokens"], usage["completion_tokens"])
            return cost
        lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]", lines[-3:]
        usages = [msgspec.json.decode(line[6:]).get("usage") for line in lines[:-1]]
        (usage,) = [u for u in usages if u]
        return _cost(usage["prompt_tokens"], usage["completion_tokens"])
    finally:
        await response.aclose()


async def _drive(
    cluster: Cluster, calls: int, seed: int, *, stop_after: int | None = None
) -> tuple[Load, float | None]:
    """``calls`` calls from CONCURRENCY workers, alternating instances, half of them streams; with
    ``stop_after``, SIGTERM the first instance once that many were answered. Returns what the clients
    saw and when the signal was sent."""
    rng = random.Random(seed)
    jobs: asyncio.Queue[tuple[int, Client, bool]] = asyncio.Queue()
    for n in range(calls):
        jobs.put_nowait((n % 2, rng.choice(cluster.clients), rng.random() < 0.5))
    load = Load()
    signalled: list[float] = []
    urls = [instance.url for instance in cluster.instances]

    async def worker() -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(60, connect=5)) as http:
            while not jobs.empty():
                target, client, stream = jobs.get_nowait()
                for attempt in range(4):
                    instance = (target + attempt) % 2
                    request_id = f"multi-{uuid.uuid4().hex}"
                    started = time.monotonic()
                    try:
                        cost = await _call(http, urls[instance], client, stream, request_id)
                    except AssertionError as exc:
                        load.failures.append(f"{request_id} on instance {instance}: {exc}")
                        break
                    if cost is None:
                        load.retried += 1
                        continue
                    load.answers.append(
                        Answer(request_id, client.key_id, cost, instance, started, time.monotonic(), stream)
                    )
                    break
                else:
                    load.failures.append(f"no instance answered a call for {client.key_id}")
                if stop_after is not None and not signalled and len(load.answers) >= stop_after:
                    cluster.instances[0].terminate()
                    signalled.append(time.monotonic())

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return load, (signalled[0] if signalled else None)


async def _recorded(cluster: Cluster) -> dict[str, tuple[uuid.UUID, Decimal]]:
    key_ids = [c.key_id for c in cluster.clients]
    async with cluster.sessions() as session:
        rows = await session.execute(
            select(
                RequestLog.request_id, RequestLog.api_key_id, RequestLog.cost, RequestLog.status_code
            ).where(RequestLog.api_key_id.in_(key_ids))
        )
        found = {}
        for request_id, key_id, cost, status in rows.all():
            assert status == 200, (request_id, status)
            assert request_id not in found
            found[request_id] = (key_id, cost)
        return found


async def _wait_recorded(cluster: Cluster, count: int) -> None:
    async with asyncio.timeout(30):
        while True:
            if len(await _recorded(cluster)) >= count:
                return
            await asyncio.sleep(0.2)


async def _check_totals(cluster: Cluster, answers: list[Answer]) -> None:
    """The database holds exactly the answered calls, and every total agrees with the clients' sums."""
    recorded = await _recorded(cluster)
    answered = {a.request_id: (a.key_id, a.cost) for a in answers}
    assert len(answered) == len(answers), "a request id was reused"
    missing = sorted(set(answered) - set(recorded))
    extra = sorted(set(recorded) - set(answered))
    assert not missing, f"{len(missing)} answered calls are not recorded, e.g. {missing[:3]}"
    assert not extra, f"{len(extra)} recorded calls got no answer (double counted?), e.g. {extra[:3]}"
    assert recorded == answered
    per_key: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    per_tenant: dict[uuid.UUID, Decimal] = defaultdict(Decimal)
    tenant_of = {c.key_id: c.tenant_id for c in cluster.clients}
    for key_id, cost in answered.values():
        per_key[key_id] += cost
        per_tenant[tenant_of[key_id]] += cost
    total = sum(per_key.values(), Decimal(0))
    assert total > 0
    key_ids = list(tenant_of)
    async with cluster.sessions() as session:
        log_sum = await session.scalar(
            select(func.sum(RequestLog.cost)).where(RequestLog.api_key_id.in_(key_ids))
        )
        rollup = (
            await session.execute(
                select(
                    func.sum(SpendDaily.cost), func.sum(SpendDaily.requests), func.sum(SpendDaily.errors)
                ).where(SpendDaily.api_key_id.in_(key_ids))
            )
        ).one()
        keys = {
            k.id: k.spend_total for k in await session.scalars(select(ApiKey).where(ApiKey.id.in_(key_ids)))
        }
        tenants = {
            t.id: t.spend_total
            for t in await session.scalars(select(Tenant).where(Tenant.id.in_(set(tenant_of.values()))))
        }
    assert log_sum == total
    assert tuple(rollup) == (total, len(answered), 0)
    assert keys == {key_id: per_key.get(key_id, Decimal(0)) for key_id in key_ids}
    assert tenants == dict(per_tenant)


@pytest.fixture(scope="module")
def history() -> list[Answer]:
    """Every call answered in this module's database so far."""
    return []


async def test_two_instances_record_every_answer_exactly_once(
    cluster: Cluster, fake_openai_server: FakeUpstream, history: list[Answer]
) -> None:
    _script(fake_openai_server, 160, seed=1)
    load, _ = await _drive(cluster, 160, seed=1)
    assert load.failures == []
    assert load.retried == 0
    assert {a.instance for a in load.answers} == {0, 1}
    assert {a.stream for a in load.answers} == {False, True}
    history.extend(load.answers)
    await _wait_recorded(cluster, len(history))
    await _check_totals(cluster, history)


async def test_stopping_one_instance_mid_load_loses_and_doubles_nothing(
    cluster: Cluster, fake_openai_server: FakeUpstream, history: list[Answer]
) -> None:
    _script(fake_openai_server, 240, seed=2)
    load, signalled = await _drive(cluster, 240, seed=2, stop_after=60)
    assert signalled is not None
    assert load.failures == []
    stopping, other = cluster.instances
    code = await asyncio.to_thread(stopping.wait, 60)
    assert stopping.stopped_gracefully(code), stopping.output()
    assert stopping.spilled() == []
    # The stop happened mid-load: calls were running on the stopping instance when it got SIGTERM and
    # still answered, and later calls for it were retried on the other one.
    in_flight = [a for a in load.answers if a.instance == 0 and a.started < signalled < a.ended]
    assert in_flight, "no call was in flight on the stopped instance"
    assert load.retried > 0
    assert len(load.answers) == 240
    assert all(a.instance == 1 for a in load.answers if a.started > signalled + 3.0)
    # Stop the other one too, so its writer flushes, and compare everything answered so far.
    code = await asyncio.to_thread(other.stop, 60)
    assert other.stopped_gracefully(code), other.output()
    assert other.spilled() == []
    history.extend(load.answers)
    await _check_totals(cluster, history)
