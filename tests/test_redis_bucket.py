"""The shared bucket's scripts against a real redis-server: order, give-back, pause, corrections,
slow start, keys, fallback and the in-doubt store. Two ``RedisBucket`` objects on one space
stand for two processes (each has its own connections; only Redis is shared)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from qomon_async import (
    APIConnectionError,
    QomonClient,
    RateLimitError,
    RateLimitTimeout,
    RetryPolicy,
)
from qomon_async._ratelimit import BucketState
from qomon_async._redis_keys import key_hash
from qomon_async.redis import RedisBucket, RedisBucketError

BASE = "http://127.0.0.1:9"
SECRET = "sk-live-THIS-KEY-MUST-NEVER-REACH-REDIS"


def bound(url: str, **options: object) -> RedisBucket:
    bucket = RedisBucket(url, **options)  # type: ignore[arg-type]
    bucket.bind(BASE, key_hash(SECRET))
    return bucket


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[RedisBucket, RedisBucket]]:
    """Two "processes" on one space: a bucket of 10 tokens refilled at 100/s, informed."""
    a = bound(redis_url, capacity=10, rate=100, slow_start=False, headroom=0)
    b = bound(redis_url, capacity=10, rate=100, slow_start=False, headroom=0)
    yield a, b
    await a.aclose()
    await b.aclose()


@pytest.fixture
async def slow_pair(redis_url: str) -> AsyncIterator[tuple[RedisBucket, RedisBucket]]:
    """Two "processes" on a bucket of 10 tokens refilled at 1/s: levels read are levels set."""
    a = bound(redis_url, capacity=10, rate=1, slow_start=False, headroom=0)
    b = bound(redis_url, capacity=10, rate=1, slow_start=False, headroom=0)
    yield a, b
    await a.aclose()
    await b.aclose()


async def test_keys_never_contain_the_api_key(redis_url: str) -> None:
    bucket = bound(redis_url, prefix="myapp")
    permit = await bucket.acquire(5)
    bucket.observe(permit, BucketState(capacity=100, rate=10, remaining=95))
    await bucket.in_doubt.record("0" * 32, dt.datetime.now(dt.timezone.utc), 60)
    await bucket.flush()
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k.decode() for k in await client.keys("*")]
        dump = " ".join(keys)
        for key in keys:
            if (await client.type(key)) == b"hash":
                dump += " ".join(f"{k!r}{v!r}" for k, v in (await client.hgetall(key)).items())
    finally:
        await client.aclose()
    assert keys and all(k.startswith("myapp:{") for k in keys), keys
    assert SECRET not in dump and "THIS-KEY" not in dump
    assert SECRET not in repr(bucket)
    # One space per base URL and key: another key, or another URL, is another bucket.
    other = RedisBucket(redis_url)
    other.bind(BASE, key_hash(SECRET + "x"))
    third = RedisBucket(redis_url)
    third.bind("http://127.0.0.1:10", key_hash(SECRET))
    assert len({bucket.key, other.key, third.key}) == 3
    with pytest.raises(ValueError, match="another space"):
        bucket.bind("http://elsewhere.example", key_hash(SECRET))
    await bucket.aclose()


async def test_reservations_keep_arrival_order_across_processes(
    pair: tuple[RedisBucket, RedisBucket],
) -> None:
    a, b = pair
    # Drain the bucket: 10 tokens, then a queue. A books a 5-token create, then B books ten
    # 1-token calls: every one of B's goes out after A's create.
    await a.acquire(10)
    order: list[str] = []

    async def take(bucket: RedisBucket, cost: float, name: str) -> None:
        await bucket.acquire(cost)
        order.append(name)

    create = asyncio.ensure_future(take(a, 5, "create"))
    await asyncio.sleep(0.005)  # the create books first
    cheap = [asyncio.ensure_future(take(b, 1, f"cheap{i}")) for i in range(10)]
    await asyncio.gather(create, *cheap)
    assert order[0] == "create", order
    assert a.stats.reservations == 2 and b.stats.reservations == 10


async def test_waits_follow_the_refill_rate(pair: tuple[RedisBucket, RedisBucket]) -> None:
    a, b = pair
    started = time.perf_counter()
    permits = await asyncio.gather(*(x.acquire(5) for x in (a, b) for _ in range(5)))
    elapsed = time.perf_counter() - started
    # 50 tokens from a bucket of 10 at 100/s: 0.4 s for the 40 beyond the burst.
    assert 0.38 <= elapsed < 1.0, elapsed  # never faster than the refill
    assert sorted(p.waited > 0 for p in permits).count(True) >= 7


async def test_headroom_keeps_tokens_in_the_bucket(redis_url: str) -> None:
    bucket = bound(redis_url, capacity=10, rate=1, slow_start=False, headroom=5)
    assert (await bucket.acquire(5)).waited == 0  # 5 tokens left: the headroom
    with pytest.raises(RateLimitTimeout) as info:
        await bucket.acquire(1, max_wait=0.5)  # would leave 4: wait 1 s for the refill
    assert info.value.predicted_wait == pytest.approx(1, abs=0.1)
    await bucket.aclose()


async def test_try_acquire_never_grants_and_books_nothing(redis_url: str) -> None:
    """A booking is a round trip to Redis: try_acquire says None, and the client awaits
    acquire, which books as before."""
    bucket = bound(redis_url, capacity=10, rate=1, slow_start=False, headroom=0)
    assert bucket.try_acquire(1) is None
    with pytest.raises(ValueError, match="cost"):
        bucket.try_acquire(-1.0)
    assert (bucket.stats.permits, bucket.stats.reservations) == (0, 0)
    assert (await bucket.snapshot())["tokens"] == 10  # nothing booked in Redis
    permit = await bucket.acquire(5)
    assert permit.waited == 0
    assert (bucket.stats.permits, bucket.stats.reservations) == (1, 1)
    await bucket.aclose()


async def test_a_refund_gives_the_booking_back(
    slow_pair: tuple[RedisBucket, RedisBucket],
) -> None:
    a, b = slow_pair
    permit = await a.acquire(5)
    await a.flush()
    assert (await b.snapshot())["tokens"] == pytest.approx(5, abs=0.5)
    a.release(permit, refund=True)
    await a.flush()
    assert (await b.snapshot())["tokens"] == pytest.approx(10, abs=0.2)
    # Without refund (the request may have left), the tokens stay spent.
    permit = await a.acquire(5)
    a.release(permit)
    await a.flush()
    assert (await b.snapshot())["tokens"] == pytest.approx(5, abs=0.5)


async def test_a_cancelled_waiter_gives_its_booking_back(
    slow_pair: tuple[RedisBucket, RedisBucket],
) -> None:
    a, b = slow_pair
    await a.acquire(10)
    waiter = asyncio.ensure_future(a.acquire(10))  # booked 10 s ahead
    await asyncio.sleep(0.02)
    assert (await b.snapshot())["tokens"] < -5
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await a.flush()
    assert a.stats.cancelled == 1
    # Only the first 10 tokens remain spent.
    assert (await b.snapshot())["tokens"] == pytest.approx(0, abs=0.3)


async def test_max_wait_refuses_at_once_and_books_nothing(
    slow_pair: tuple[RedisBucket, RedisBucket],
) -> None:
    a, b = slow_pair
    await a.acquire(10)
    waiting = asyncio.ensure_future(a.acquire(1))  # the queue now reaches 1 s ahead
    await asyncio.sleep(0.01)
    before = (await b.snapshot())["tokens"]
    started = time.perf_counter()
    with pytest.raises(RateLimitTimeout) as info:
        await b.acquire(1, max_wait=1.5)
    assert time.perf_counter() - started < 0.5  # at once, not after the 2 s
    assert info.value.predicted_wait == pytest.approx(2, abs=0.1)
    assert (await b.snapshot())["tokens"] >= before  # nothing booked (and a refill since)
    assert b.stats.reservations == 0
    waiting.cancel()


async def test_a_429_in_one_process_pauses_the_other(
    pair: tuple[RedisBucket, RedisBucket],
) -> None:
    a, b = pair
    permit = await a.acquire(1)
    a.observe(permit, BucketState(remaining=0), rejected=True)
    a.pause(0.3)
    await a.flush()
    snap = await b.snapshot()
    assert snap["paused_for"] == pytest.approx(0.3, abs=0.05)
    started = time.perf_counter()
    await b.acquire(1)
    assert time.perf_counter() - started >= 0.25
    # A pause longer than the caller's max_pause raises at once, with retry_after.
    a.pause(5.0)
    await a.flush()
    started = time.perf_counter()
    with pytest.raises(RateLimitError) as info:
        await b.acquire(1, max_pause=1.0)
    assert time.perf_counter() - started < 0.5  # at once, not after the 5 s
    assert info.value.retry_after == pytest.approx(5.0, abs=0.1)


async def test_a_pause_voids_bookings_made_before_it(redis_url: str) -> None:
    # 10 tokens refilled at 20/s: a 5-token booking behind an empty bucket waits 0.25 s.
    a = bound(redis_url, capacity=10, rate=20, slow_start=False, headroom=0)
    b = bound(redis_url, capacity=10, rate=20, slow_start=False, headroom=0)
    await a.acquire(10)
    waiter = asyncio.ensure_future(b.acquire(5))
    while b.stats.reservations == 0:  # booked (for 0.25 s from now)
        await asyncio.sleep(0.001)
    started = time.perf_counter()
    a.pause(0.5)
    await a.flush()
    permit = await waiter
    # It went out after the pause, not at its first booked time, and booked twice.
    assert time.perf_counter() - started >= 0.45
    assert b.stats.reservations == 2
    assert permit.cost == 5
    await a.aclose()
    await b.aclose()


async def test_server_answers_only_lower_the_shared_level(
    slow_pair: tuple[RedisBucket, RedisBucket],
) -> None:
    a, b = slow_pair
    permit = await a.acquire(1)
    # The server says more than Redis knows: ignored.
    a.observe(permit, BucketState(remaining=10))
    await a.flush()
    assert (await b.snapshot())["tokens"] == pytest.approx(9, abs=0.3)
    # Another consumer (Qomon's UI) spent: the server says 3 left: one answer alone may have
    # been observed late, so nothing changes yet...
    permit = await a.acquire(1)
    a.observe(permit, BucketState(remaining=3))
    await a.flush()
    assert (await b.snapshot())["tokens"] == pytest.approx(8, abs=0.3)
    assert a.stats.synced_down == 0
    # ...the next answer confirms it: lowered for everyone, by the smaller of the two.
    permit = await b.acquire(1)
    b.observe(permit, BucketState(remaining=2))
    await b.flush()
    assert (await a.snapshot())["tokens"] == pytest.approx(2, abs=0.3)
    assert b.stats.synced_down == 1


async def test_the_shape_follows_the_server_within_bounds(
    pair: tuple[RedisBucket, RedisBucket], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    permit = await a.acquire(1)
    a.observe(permit, BucketState(capacity=50, rate=20, remaining=49))
    await a.flush()
    snap = await b.snapshot()
    assert (snap["capacity"], snap["rate"]) == (50, 20)
    caplog.set_level(logging.WARNING, logger="qomon_async")
    permit = await a.acquire(1)
    a.observe(permit, BucketState(capacity=100, rate=1e-9, remaining=0))
    await a.flush()
    snap = await b.snapshot()
    assert (snap["capacity"], snap["rate"]) == (50, 20)
    assert "implausible rate-limit shape" in caplog.text


async def test_slow_start_is_shared(redis_url: str) -> None:
    a = bound(redis_url, capacity=10, rate=100)
    b = bound(redis_url, capacity=10, rate=100)
    probe = await a.acquire(1)
    assert probe.waited == 0
    waiting = asyncio.ensure_future(b.acquire(1))
    await asyncio.sleep(0.15)
    assert not waiting.done()  # nobody else goes out before the first answer
    a.observe(probe, BucketState(capacity=10, rate=100, remaining=9))
    permit = await asyncio.wait_for(waiting, 1)
    assert permit.waited >= 0.1
    assert (await b.snapshot())["informed"] == 1
    # Informed now: a third process does not wait.
    c = bound(redis_url, capacity=10, rate=100)
    assert (await c.acquire(1)).waited < 0.05
    for bucket in (a, b, c):
        await bucket.aclose()


async def test_scripts_are_reloaded_after_a_script_flush(
    pair: tuple[RedisBucket, RedisBucket], redis_url: str
) -> None:
    a, _ = pair
    await a.acquire(1)
    client = aioredis.Redis.from_url(redis_url)
    await client.script_flush()
    await client.aclose()
    await a.acquire(1)
    assert a.kind == "redis" and a.stats.fallbacks == 0


async def test_a_given_redis_client_is_used_and_left_open(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    bucket = RedisBucket(client, slow_start=False)
    bucket.bind(BASE, key_hash(SECRET))
    await bucket.acquire(1)
    await bucket.aclose()
    assert await client.ping()
    await client.aclose()


async def test_unreachable_redis_falls_back_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="qomon_async")
    bucket = bound("redis://127.0.0.1:1/0", timeout=0.2, capacity=10, rate=1000)
    for _ in range(5):
        permit = await bucket.acquire(1)
        bucket.observe(permit, BucketState(capacity=10, rate=1000, remaining=9))
    await bucket.flush()
    assert bucket.kind == "local" and bucket.stats.kind == "local"
    assert bucket.stats.fallbacks == 1 and bucket.stats.permits == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "falling back" in warnings[0].getMessage()
    # The in-doubt store keeps its records in memory meanwhile.
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    await bucket.in_doubt.record("k" * 32, when, 60)
    assert await bucket.in_doubt.lookup("k" * 32) == when
    await bucket.aclose()


async def test_on_error_raise(caplog: pytest.LogCaptureFixture) -> None:
    bucket = bound("redis://127.0.0.1:1/0", timeout=0.2, on_error="raise")
    with pytest.raises(RedisBucketError, match="unavailable"):
        await bucket.acquire(1)
    assert bucket.kind == "redis" and bucket.stats.fallbacks == 0
    await bucket.aclose()


async def test_back_to_redis_when_it_answers_again(redis_server: object) -> None:
    server = redis_server
    bucket = bound(server.url, timeout=0.2, retry_interval=0.1, slow_start=False)  # type: ignore[attr-defined]
    await bucket.acquire(1)
    assert bucket.kind == "redis"
    server.kill()  # type: ignore[attr-defined]
    await bucket.acquire(1)
    assert bucket.kind == "local"
    server.start()  # type: ignore[attr-defined]
    await asyncio.sleep(0.15)
    await bucket.acquire(1)
    assert bucket.kind == "redis" and bucket.stats.kind == "redis"
    assert bucket.stats.fallbacks == 1 and bucket.stats.reservations == 2
    await bucket.aclose()


async def test_a_second_fallback_keeps_the_local_limiter_its_permits_answer_to(
    redis_server: object,
) -> None:
    """Redis fails, comes back, fails again while requests granted by the first fallback are
    still on their way and a caller waits for them: their answers must reach the limiter that
    granted them (which credits no refill past them), and the caller gets its permit."""
    server = redis_server
    bucket = bound(
        server.url,  # type: ignore[attr-defined]
        timeout=0.2,
        retry_interval=0.1,
        slow_start=False,
        capacity=10,
        rate=1000,
    )
    await bucket.acquire(1)
    server.kill()  # type: ignore[attr-defined]
    local = [await bucket.acquire(1) for _ in range(10)]  # the fallback's whole bucket
    assert bucket.kind == "local"
    waiter = asyncio.ensure_future(bucket.acquire(1))  # waits for one of them to be answered
    server.start()  # type: ignore[attr-defined]
    await asyncio.sleep(0.15)
    shared = await bucket.acquire(1)
    assert bucket.kind == "redis"
    server.kill()  # type: ignore[attr-defined]
    await asyncio.sleep(0.15)
    second = asyncio.ensure_future(bucket.acquire(1))  # the second fallback, queued behind
    async with asyncio.timeout(5.0):
        while bucket.stats.fallbacks < 2:
            await asyncio.sleep(0.01)
    assert not waiter.done()
    for permit in local:
        bucket.observe(permit, None)
    await asyncio.wait_for(waiter, 5.0)  # before the fix: never (its limiter got no answer)
    await asyncio.wait_for(second, 5.0)
    bucket.release(shared)
    await bucket.aclose()


async def test_in_doubt_records_are_seen_by_every_process(redis_url: str) -> None:
    a, b = bound(redis_url), bound(redis_url)
    other_space = RedisBucket(redis_url)
    other_space.bind(BASE, key_hash("another key"))
    early = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    later = early + dt.timedelta(seconds=30)
    await a.in_doubt.record("c" * 32, later, 60)
    await b.in_doubt.record("c" * 32, early, 60)  # the earliest start is kept
    assert await a.in_doubt.lookup("c" * 32) == early
    assert await other_space.in_doubt.lookup("c" * 32) is None
    await b.in_doubt.clear("c" * 32)
    assert await a.in_doubt.lookup("c" * 32) is None
    await a.in_doubt.record("d" * 32, early, 0.05)  # the TTL expires the record
    await asyncio.sleep(0.1)
    assert await b.in_doubt.lookup("d" * 32) is None
    for bucket in (a, b, other_space):
        await bucket.aclose()


async def test_client_builds_the_bucket_from_the_environment(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QOMON_REDIS_URL", redis_url)
    client = QomonClient(SECRET, base_url=BASE)
    stats = client.limiter_stats
    assert stats is not None and stats.kind == "redis"
    assert client._creates.in_doubt is not None
    await client.aclose()
    # A bucket handed in is bound to the client's space and stays open after the client.
    bucket = RedisBucket(redis_url)
    async with QomonClient(SECRET, base_url=BASE, shared_bucket=bucket) as other:
        assert other.limiter_stats is bucket.stats
    assert bucket.space is not None
    await bucket.aclose()


async def test_a_request_refused_before_leaving_gives_its_booking_back(redis_url: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    bucket = RedisBucket(redis_url, capacity=10, rate=1, slow_start=False)
    async with QomonClient(
        SECRET,
        base_url=f"http://127.0.0.1:{port}",
        shared_bucket=bucket,
        retry=RetryPolicy.disabled(),
    ) as client:
        with pytest.raises(APIConnectionError):
            await client.get_contact(1)
    await bucket.flush()
    assert bucket.stats.reservations == 1
    assert (await bucket.snapshot())["tokens"] == pytest.approx(10, abs=0.2)
    await bucket.aclose()
