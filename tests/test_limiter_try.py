"""``try_acquire``: a permit at once, exactly when ``acquire`` would grant one without waiting.

- on the limiter: granted when nobody waits, no pause holds, slow start lets it out and the
  bucket covers it (counted as a permit, never a wait); otherwise None and nothing charged, and
  the caller keeps its place by awaiting ``acquire`` (FIFO order kept);
- through ``LocalLimiter``, from two event loops;
- in the client: a permit granted at once creates no ``acquire`` coroutine; a limiter written
  before ``try_acquire`` existed (no such method) is awaited for every request, and works;
- the waiting budget (``max_wait``) is still honoured when the grant is not at once.

(``tests/test_limiter_steady.py`` holds ``try_acquire`` against the full model on random
operations; ``tests/test_redis_bucket.py`` checks that a shared bucket never grants at once.)
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from test_ratelimit import now, run

from qomon_async import ContactDict, QomonClient, RateLimitTimeout
from qomon_async._indoubt import MemoryInDoubtStore
from qomon_async._local_limiter import LocalLimiter, RateLimiter
from qomon_async._ratelimit import BucketState, Limiter, LimiterStats, Permit
from qomon_async.testing import FakeQomon

KEY = "try-key"


def counters(limiter: RateLimiter) -> tuple[Any, ...]:
    bucket = limiter._bucket
    stats = limiter.stats
    return (
        bucket._level,
        limiter._seq,
        limiter.in_flight,
        stats.permits,
        stats.tokens,
        stats.waits,
        stats.wait_seconds,
    )


def test_granted_at_once_when_the_bucket_covers_it() -> None:
    async def main() -> None:
        limiter = RateLimiter(capacity=100, rate=10, slow_start=False)
        permits = [limiter.try_acquire(5) for _ in range(20)]
        assert all(p is not None for p in permits)
        assert [p.seq for p in permits if p is not None] == list(range(1, 21))
        assert all(p is not None and (p.waited, p.granted_at) == (0.0, now()) for p in permits)
        assert (limiter.stats.permits, limiter.stats.waits, limiter.stats.tokens) == (20, 0, 100)
        assert limiter.in_flight == 20
        # Empty: None, and nothing charged.
        before = counters(limiter)
        assert limiter.try_acquire(1) is None
        assert counters(limiter) == before
        # The refill covers it again a tenth of a second later.
        await asyncio.sleep(0.1)
        assert limiter.try_acquire(1) is not None

    run(main)


def test_none_while_someone_waits_and_the_queue_keeps_its_order() -> None:
    async def main() -> None:
        limiter = RateLimiter(capacity=10, rate=10, slow_start=False)
        assert limiter.try_acquire(10) is not None  # the bucket empty
        order: list[str] = []

        async def wait(name: str, cost: float) -> None:
            await limiter.acquire(cost)
            order.append(name)

        first = asyncio.create_task(wait("first", 5))
        await asyncio.sleep(0)
        assert limiter.waiters == 1
        await asyncio.sleep(0.45)  # 4.5 tokens: the waiter still waits
        # 4.5 tokens would cover 1, but someone waits: not at once.
        before = counters(limiter)
        assert limiter.try_acquire(1) is None
        assert counters(limiter) == before
        second = asyncio.create_task(wait("second", 1))
        await asyncio.gather(first, second)
        assert order == ["first", "second"]
        assert (limiter.stats.permits, limiter.stats.waits) == (3, 2)

    run(main)


def test_none_during_a_pause_and_during_slow_start() -> None:
    async def main() -> None:
        limiter = RateLimiter(capacity=100, rate=10, slow_start=True)
        permit = limiter.try_acquire(1)
        assert permit is not None  # slow start: one request at a time
        assert limiter.try_acquire(1) is None
        limiter.observe(permit, BucketState(100, 10, 99))  # the server has spoken
        assert limiter.try_acquire(1) is not None
        limiter.pause(2.0)
        before = counters(limiter)
        assert limiter.try_acquire(1) is None
        assert counters(limiter) == before
        await asyncio.sleep(2.0)
        assert limiter.try_acquire(1) is not None  # the pause emptied the bucket: 20 tokens

    run(main)


def test_bad_costs_raise() -> None:
    async def main() -> None:
        limiter = RateLimiter()
        for bad in (-1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="cost"):
                limiter.try_acquire(bad)
        assert limiter.stats.permits == 0

    run(main)


def test_a_cost_above_the_capacity_takes_the_whole_bucket() -> None:
    async def main() -> None:
        limiter = RateLimiter(capacity=10, rate=10, slow_start=False)
        permit = limiter.try_acquire(50)
        assert permit is not None and permit.cost == 50
        assert limiter.available == pytest.approx(0.0)

    run(main)


def test_outside_an_event_loop_it_raises_as_acquire_does() -> None:
    limiter = RateLimiter(capacity=100, rate=10, slow_start=False)
    with pytest.raises(RuntimeError):
        limiter.try_acquire(5)
    assert limiter.stats.permits == 0

    async def bound() -> None:  # and once bound, from outside its loop too
        assert limiter.try_acquire(5) is not None

    run(bound)
    with pytest.raises(RuntimeError):
        limiter.try_acquire(5)
    assert limiter.stats.permits == 1


def test_local_limiter_binds_try_acquire_to_the_loop_that_calls() -> None:
    limiter = LocalLimiter(capacity=100, rate=10, slow_start=False)

    async def use() -> RateLimiter:
        assert limiter.try_acquire(5) is not None
        return limiter.get()

    first = run(use)
    second = run(use)  # another loop: its own limiter, reached through the same name
    assert first is not second
    assert (first.stats.permits, limiter.stats.permits) == (2, 2)  # one stats for both
    assert first.in_flight == 1 and second.in_flight == 1


def test_the_protocol_names_try_acquire() -> None:
    assert isinstance(LocalLimiter(), Limiter)
    assert "try_acquire" in Limiter.__dict__


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=20.0) as fake:
        yield fake


async def test_the_client_awaits_acquire_only_when_not_granted_at_once(fake: FakeQomon) -> None:
    async with QomonClient(KEY, base_url=fake.base_url) as client:
        limiter = client._limiter
        assert isinstance(limiter, LocalLimiter)
        await client.count_contacts()  # the first answer ends slow start
        rl = limiter.get()
        awaited = 0
        acquire = rl.acquire

        async def counted(cost: float, **limits: float | None) -> Permit:
            nonlocal awaited
            awaited += 1
            return await acquire(cost, **limits)

        rl.acquire = counted  # type: ignore[method-assign]
        limiter.acquire = counted  # type: ignore[method-assign]
        for _ in range(5):
            await client.count_contacts()  # the bucket covers each: granted at once
        assert awaited == 0
        # 30 creates at once: what the burst does not cover waits in acquire.
        people: list[ContactDict] = [
            {"firstname": f"T{i}", "mail": f"t{i}@example.org"} for i in range(30)
        ]
        assert all([r.ok async for r in client.create_contacts(people, concurrency=30)])
        assert awaited >= 5
        stats = client.limiter_stats
        # One permit per request sent: 6 reads, 30 creates, and the retry of any create answered
        # 429. At 20x the emulator's clock a loaded machine's event-loop stall of 50 ms is a
        # second of refill the client counts and the full server bucket never got, so a retry
        # or two can happen; each create is still sent until it is created, and only once.
        assert stats is not None and stats.permits == len(fake.requests)
        created = [r for r in fake.requests if r.route == "POST /contacts" and r.status == 200]
        assert len({r.contact_id for r in created}) == len(created) == 30
        assert 0 < stats.waits <= awaited  # only the permits that waited count as waits


async def test_max_wait_still_refuses_when_the_grant_is_not_at_once(fake: FakeQomon) -> None:
    async with QomonClient(KEY, base_url=fake.base_url, max_wait=0.01) as client:
        await client.count_contacts()
        rl = client.limiter
        assert rl is not None
        rl.pause(1.0)  # as after a 429: nothing at once for a (real) second
        sent = len(fake.requests)
        with pytest.raises(RateLimitTimeout):
            await client.count_contacts()
        assert len(fake.requests) == sent  # nothing sent


@dataclasses.dataclass
class AcquireOnly:
    """A limiter written against the protocol before ``try_acquire``: the calls it gets are
    counted, and passed to a local limiter (as a user's own implementation might)."""

    inner: LocalLimiter = dataclasses.field(default_factory=lambda: LocalLimiter(slow_start=False))
    calls: list[str] = dataclasses.field(default_factory=list)
    in_doubt: MemoryInDoubtStore = dataclasses.field(default_factory=MemoryInDoubtStore)

    @property
    def kind(self) -> Literal["local", "redis"]:
        return "local"

    @property
    def stats(self) -> LimiterStats:
        return self.inner.stats

    def bind(self, base_url: str, api_key_hash: str) -> None:
        self.calls.append("bind")

    async def acquire(
        self, cost: float, *, max_wait: float | None = None, max_pause: float | None = None
    ) -> Permit:
        self.calls.append("acquire")
        return await self.inner.acquire(cost, max_wait=max_wait, max_pause=max_pause)

    def observe(self, permit: Permit, state: BucketState | None, *, rejected: bool = False) -> None:
        self.calls.append("observe")
        self.inner.observe(permit, state, rejected=rejected)

    def release(self, permit: Permit, *, refund: bool = False) -> None:
        self.calls.append("release")
        self.inner.release(permit, refund=refund)

    def pause(self, seconds: float) -> None:
        self.calls.append("pause")
        self.inner.pause(seconds)

    async def flush(self) -> None:
        self.calls.append("flush")

    async def aclose(self) -> None:
        self.calls.append("aclose")


async def test_a_limiter_without_try_acquire_is_awaited_for_every_request(
    fake: FakeQomon,
) -> None:
    mine = AcquireOnly()
    assert not hasattr(mine, "try_acquire")
    async with QomonClient(KEY, base_url=fake.base_url, shared_bucket=mine) as client:  # type: ignore[arg-type]
        assert client.limiter_stats is mine.stats  # the client holds it, as it is
        for _ in range(3):
            await client.count_contacts()
        contact = await client.create_contact({"firstname": "Ada", "mail": "ada@example.org"})
        assert contact.id
    assert mine.calls.count("acquire") == 4
    assert mine.calls.count("observe") == 4
    assert mine.stats.permits == 4
