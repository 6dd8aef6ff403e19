"""The shared bucket's fair shares across processes, against a real redis-server.

Two ``RedisBucket`` objects on one space stand for two processes. The bucket refills slowly (1
token per second) so that what is measured is how its burst is shared, not the refill: a
"process" loops acquire, answer after its round trip, acquire again (concurrency 1), as the
bulk pool's workers do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from qomon_async._ratelimit import BucketState
from qomon_async._redis_keys import key_hash
from qomon_async.redis import RedisBucket

BASE = "http://127.0.0.1:9"
KEY = "fairness-key"


def bound(url: str, **options: object) -> RedisBucket:
    bucket = RedisBucket(
        url,
        **{"capacity": 20, "rate": 1, "slow_start": False, "headroom": 0, **options},  # type: ignore[arg-type]
    )
    bucket.bind(BASE, key_hash(KEY))
    return bucket


async def _until(done: asyncio.Event, tasks: list[asyncio.Future[None]]) -> None:
    """Wait (10 s at most) for ``done``, then stop the simulated processes."""
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def closing() -> AsyncIterator[list[RedisBucket]]:
    buckets: list[RedisBucket] = []
    yield buckets
    for bucket in buckets:
        await bucket.aclose()


async def race(
    fast: RedisBucket, slow: RedisBucket, *, grants: int, slow_rtt: float = 0.02
) -> list[str]:
    """Both "processes" loop (acquire 1 token, answer after their round trip); returns who was
    granted, in order, until ``grants`` tokens have been granted in all."""
    order: list[str] = []
    done = asyncio.Event()

    async def run(bucket: RedisBucket, name: str, rtt: float) -> None:
        while not done.is_set():
            permit = await bucket.acquire(1)
            if done.is_set():
                bucket.release(permit, refund=True)
                return
            order.append(name)
            if len(order) >= grants:
                done.set()
            await asyncio.sleep(rtt)  # the request's round trip
            bucket.observe(permit, BucketState(remaining=None))

    tasks = [
        asyncio.ensure_future(run(fast, "fast", 0.0)),
        asyncio.ensure_future(run(slow, "slow", slow_rtt)),
    ]
    await _until(done, tasks)
    return order[:grants]


async def test_a_process_that_comes_back_sooner_does_not_take_the_burst(
    redis_url: str, closing: list[RedisBucket]
) -> None:
    fast, slow = bound(redis_url), bound(redis_url)
    closing += [fast, slow]
    # The fast process's round trip is Redis's alone, the slow one's 20 ms: in arrival order
    # alone the fast one would take nearly all of the 20 tokens before the slow one's second
    # request (see the next test). Shared, each gets its half.
    order = await race(fast, slow, grants=20)
    assert order.count("slow") >= 9, order
    assert order.count("fast") >= 9, order


async def test_arrival_order_only_when_sharing_is_off(
    redis_url: str, closing: list[RedisBucket]
) -> None:
    # The same race with fair_window=0: the burst goes to the process that comes back first.
    # (What happened to every process before the shares: the contrast the previous test needs.)
    fast, slow = bound(redis_url, fair_window=0), bound(redis_url, fair_window=0)
    closing += [fast, slow]
    order = await race(fast, slow, grants=20)
    assert order.count("fast") >= 15, order


async def test_shares_follow_the_demand(redis_url: str, closing: list[RedisBucket]) -> None:
    # A process with 3 requests waiting at a time against one with 1: 3 tokens in 4 go to the
    # first, as arrival order gives them once requests queue. Both answer after 20 ms.
    many, one = bound(redis_url), bound(redis_url)
    closing += [many, one]
    order: list[str] = []
    done = asyncio.Event()

    async def run(bucket: RedisBucket, name: str) -> None:
        while not done.is_set():
            permit = await bucket.acquire(1)
            order.append(name)
            if len(order) >= 16:
                done.set()
            await asyncio.sleep(0.02)
            bucket.observe(permit, BucketState(remaining=None))

    tasks = [asyncio.ensure_future(run(many, "many")) for _ in range(3)]
    tasks.append(asyncio.ensure_future(run(one, "one")))
    await _until(done, tasks)
    first = order[:16]
    assert 2 <= first.count("one") <= 6, first  # 4 in 16 is the share


async def test_a_process_that_left_keeps_no_share(
    redis_url: str, closing: list[RedisBucket]
) -> None:
    stays, leaves = bound(redis_url), bound(redis_url)
    closing.append(stays)
    permit = await leaves.acquire(1)
    leaves.observe(permit, BucketState(remaining=None))
    await leaves.aclose()  # its process is done: nothing is kept for it
    started = time.perf_counter()
    waits = [(await stays.acquire(1)).waited for _ in range(19)]
    assert waits == [0.0] * 19 and time.perf_counter() - started < 0.5


async def test_a_dead_process_stops_counting(redis_url: str, closing: list[RedisBucket]) -> None:
    # The other process booked a request and never reported back (it died): after probe_ttl
    # it no longer holds the survivor, who then gets the whole bucket; before, half of it.
    survivor = bound(redis_url, probe_ttl=0.4)
    dead = bound(redis_url, probe_ttl=0.4)
    closing.append(survivor)
    await dead.acquire(1)
    started = time.perf_counter()
    granted_at = []
    for _ in range(19):
        permit = await survivor.acquire(1)
        granted_at.append(time.perf_counter() - started)
        survivor.observe(permit, BucketState(remaining=None))
    # Its share first (about 10 tokens at once), then it waited for the dead one's share to
    # expire, then the rest at once: every token used, none lost to the refill.
    assert sum(t < 0.2 for t in granted_at) in range(8, 12), granted_at
    assert 0.3 <= granted_at[-1] < 1.5, granted_at


async def test_members_are_kept_under_the_space_key_only(
    redis_url: str, closing: list[RedisBucket]
) -> None:
    bucket = bound(redis_url, prefix="myapp")
    closing.append(bucket)
    permit = await bucket.acquire(1)
    bucket.observe(permit, BucketState(remaining=None))
    await bucket.flush()
    assert bucket.members_key.startswith("myapp:{") and bucket.members_key.endswith(":members")
    assert KEY not in bucket.members_key


async def test_a_process_that_starts_late_still_gets_its_share_of_the_burst(
    redis_url: str, closing: list[RedisBucket]
) -> None:
    # Processes started together reach Redis some milliseconds apart: the first one alone took
    # half the burst before the other's first call. The latecomer gets its half back first.
    early, late = bound(redis_url), bound(redis_url)
    closing += [early, late]
    for _ in range(10):
        permit = await early.acquire(1)
        early.observe(permit, BucketState(remaining=None))
    order = await race(early, late, grants=10, slow_rtt=0.0)
    # The early one may take a few more before the latecomer's first call reaches Redis; then
    # it waits while the latecomer takes what is left (7 tokens or more).
    assert order.count("slow") >= 6, order


async def test_a_process_back_from_silence_claims_nothing_for_it(
    redis_url: str, closing: list[RedisBucket]
) -> None:
    # A process that made one call, then nothing for longer than fair_window: when it calls
    # again it starts level with the others, so their next requests do not wait for it.
    busy = bound(redis_url, fair_window=0.05)
    quiet = bound(redis_url, fair_window=0.05)
    closing += [busy, quiet]
    permit = await quiet.acquire(1)
    quiet.observe(permit, BucketState(remaining=None))
    await asyncio.sleep(0.1)
    for _ in range(8):
        permit = await busy.acquire(1)
        busy.observe(permit, BucketState(remaining=None))
    await asyncio.sleep(0.1)
    permit = await quiet.acquire(1)  # back: level with busy, not 8 tokens behind
    quiet.observe(permit, BucketState(remaining=None))
    waits = []
    for _ in range(5):
        permit = await busy.acquire(1)
        waits.append(permit.waited)
        busy.observe(permit, BucketState(remaining=None))
    assert waits == [0.0] * 5, waits
