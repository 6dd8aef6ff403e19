"""The client spends Qomon's bucket exactly: measured against the emulator with a scaled clock.

Times here are real seconds at a time scale of 20 (the bucket refills at 200 tokens per real
second, so a create costs 25 ms of budget); nothing sleeps through Qomon seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from qomon_async import QomonClient, RateLimit, RetryPolicy
from qomon_async.testing import FakeQomon, RateLimited

KEY = "rl-key"
SCALE = 20.0


def people(n: int, tag: str = "") -> list[dict[str, Any]]:
    return [{"firstname": f"P{i}", "mail": f"p{i}{tag}@example.org"} for i in range(n)]


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=SCALE) as fake:
        yield fake


def ideal_seconds(
    creates: int, *, capacity: float = 100, rate: float = 10 * SCALE, cost: float = 5
) -> float:
    """Time for ``creates`` creates against a full bucket: the burst, then the refill."""
    burst = int(capacity // cost)
    return max(creates - burst, 0) * cost / rate


async def test_burst_of_creates_takes_the_ideal_time_without_429(fake: FakeQomon) -> None:
    n = 100
    async with QomonClient(KEY, base_url=fake.base_url) as client:
        started = time.perf_counter()
        results = [r async for r in client.create_contacts(people(n), concurrency=16)]
        elapsed = time.perf_counter() - started
    assert all(r.ok for r in results)
    assert [r.status for r in fake.requests].count(429) == 0
    ideal = ideal_seconds(n)
    assert ideal <= elapsed <= ideal * 1.10, (elapsed, ideal)


@pytest.mark.parametrize("latency", [0.5, 2.0])
async def test_a_burst_on_its_way_to_a_full_bucket_gets_no_429(latency: float) -> None:
    """Qomon charges a request when it arrives. A burst granted from a full bucket reaches
    Qomon ``latency`` (Qomon) seconds later, and until then Qomon's bucket is full: its
    refill is lost. The client credits no refill beyond the tokens of the requests on their
    way, so the requests that follow the burst wait for its answers rather than being sent
    on refill that never happened (one 429 per run at both latencies before it did)."""
    async with (
        FakeQomon(api_key=KEY, time_scale=SCALE, latency=latency) as fake,
        asyncio.timeout(20),
        QomonClient(KEY, base_url=fake.base_url) as client,
    ):
        await client.count_contacts()  # the first answer ends slow start
        results = [r async for r in client.create_contacts(people(30), concurrency=30)]
        assert all(r.ok for r in results)
        assert [r.status for r in fake.requests].count(429) == 0
        created = [r.contact_id for r in fake.requests if r.route == "POST /contacts"]
        assert len(set(created)) == len(created) == 30


async def test_another_consumer_draining_the_bucket(fake: FakeQomon) -> None:
    n = 60
    async with QomonClient(
        KEY, base_url=fake.base_url, retry=RetryPolicy(max_attempts=10)
    ) as client:
        stop = asyncio.Event()

        async def other_consumer() -> None:
            # Another process of the same space: 40 tokens per real second, in small bites.
            while not stop.is_set():
                fake.spend(2)
                await asyncio.sleep(0.05)

        drainer = asyncio.ensure_future(other_consumer())
        try:
            results = [r async for r in client.create_contacts(people(n), concurrency=8)]
        finally:
            stop.set()
            await drainer
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    rejected = [r.status for r in fake.requests].count(429)
    assert rejected <= 5, rejected
    assert client.stats.rate_limited == rejected


async def test_retry_after_is_honoured_exactly(fake: FakeQomon) -> None:
    fake.inject(RateLimited(retry_after=2), route="POST /contacts", nth=1)
    async with QomonClient(KEY, base_url=fake.base_url) as client:
        await client.count_contacts()  # learn the shape first
        await client.create_contact({"firstname": "A", "mail": "a@example.org"})
    creates = [r for r in fake.requests if r.path == "/contacts"]
    assert [r.status for r in creates] == [429, 200]
    waited = creates[1].time - creates[0].time  # Qomon seconds
    assert waited >= 2.0, waited
    assert waited < 2.0 + 0.5 * SCALE / 10  # and not much more


async def test_a_429_pauses_every_request_of_the_client(fake: FakeQomon) -> None:
    fake.inject(RateLimited(retry_after=3), route="POST /kpi", nth=1)
    async with QomonClient(KEY, base_url=fake.base_url) as client:
        await client.list_actions()
        first = asyncio.ensure_future(client.count_contacts())
        while client.stats.rate_limited == 0:  # until the 429 has come back
            await asyncio.sleep(0.001)
        await asyncio.gather(client.list_actions(), client.list_actions(), first)
    answered = [r for r in fake.requests if r.status != 429]
    rejected = next(r for r in fake.requests if r.status == 429)
    later = [r for r in answered if r.number > rejected.number]
    assert len(later) == 3
    assert all(r.time - rejected.time >= 3.0 for r in later)


async def test_fairness_a_create_is_not_starved_by_cheap_calls(fake: FakeQomon) -> None:
    async with QomonClient(KEY, base_url=fake.base_url) as client:
        # The client empties the bucket itself (20 creates of 5 tokens), so it knows it is empty
        assert all([r.ok async for r in client.create_contacts(people(20), concurrency=20)])
        # the create queues first, then a stream of 1-token calls that could each be paid sooner
        create = asyncio.ensure_future(
            client.create_contact({"firstname": "F", "mail": "f@example.org"})
        )
        await asyncio.sleep(0)
        cheap = [asyncio.ensure_future(client.count_contacts()) for _ in range(30)]
        await asyncio.gather(create, *cheap)
    order = [r.path for r in fake.requests][20:]
    assert order[0] == "/contacts", order[:5]
    assert [r.status for r in fake.requests].count(429) == 0


async def test_slow_start_until_the_server_has_spoken(fake: FakeQomon) -> None:
    async with QomonClient(
        KEY, base_url=fake.base_url, rate_limit=RateLimit(capacity=1000, rate=1000)
    ) as client:
        # The local model claims 1000 tokens; the server's bucket holds 100.
        results = await asyncio.gather(
            *(client.count_contacts() for _ in range(150)), return_exceptions=True
        )
    assert all(isinstance(r, int) for r in results)
    statuses = [r.status for r in fake.requests]
    # Without slow start, the 150 would go out at once against 100 tokens: 30 to 50 429s.
    # With it, one goes first and the rest follow the server's answer; a few 429s remain
    # possible while the model's own claim (1,000 tokens/s) refills between two answers, more
    # of them on a loaded machine, where answers come back later.
    assert statuses.count(429) <= 10, statuses.count(429)


def test_one_limiter_per_event_loop(fake_qomon_thread: FakeQomon) -> None:
    client = QomonClient(KEY, base_url=fake_qomon_thread.base_url)

    async def use() -> object:
        async with client:
            await client.count_contacts()
            limiter = client.limiter
            assert limiter is not None and limiter.rate == 10 * SCALE  # learned from the headers
            return limiter

    first = asyncio.run(use())
    second = asyncio.run(use())  # a new loop: a new limiter, the learned shape kept
    assert first is not None and second is not None and first is not second


@pytest.fixture
def fake_qomon_thread() -> Any:
    with FakeQomon(api_key=KEY, time_scale=SCALE) as fake:
        yield fake


async def test_limiter_stats_count_only_the_calls_that_waited(fake: FakeQomon) -> None:
    async with QomonClient(KEY, base_url=fake.base_url) as client:
        for _ in range(10):  # one at a time, the bucket full: nobody waits
            await client.count_contacts()
        stats = client.limiter_stats
        assert stats is not None
        assert (stats.permits, stats.waits, stats.wait_seconds) == (10, 0, 0.0)
        # 30 creates at once: 18 in what is left of the burst, the rest wait for the refill.
        assert all([r.ok async for r in client.create_contacts(people(30), concurrency=30)])
        assert stats.permits == 40
        # At most the 12 beyond the burst waited; fewer when the refill while the burst goes
        # out (200 tokens per real second here) lets some through at once: one more for each
        # 25 ms the burst takes, which a loaded machine stretches. Every permit counted as a
        # wait would say 30.
        assert 4 <= stats.waits <= 12
        assert stats.wait_seconds > 0
