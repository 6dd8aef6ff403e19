"""Unit tests of qomon_async._ratelimit: the local model of Qomon's token bucket.

No test sleeps real time. Timed scenarios run on :class:`VirtualClockLoop`, an asyncio event
loop whose clock jumps straight to the next timer whenever nothing else is ready, so a scenario
of minutes runs in milliseconds and every grant time is exact. (looptime does the same but needs
Python >= 3.11 and is not in the ``test`` extra; this loop is 20 lines of stdlib.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import selectors
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, TypeVar

import pytest
from aiolimiter import AsyncLimiter
from multidict import CIMultiDict, CIMultiDictProxy

from qomon_async import _limiter_model
from qomon_async._local_limiter import LimiterRegistry, LocalLimiter, RateLimiter
from qomon_async._ratelimit import (
    BucketState,
    Limiter,
    Permit,
    parse_ratelimit_headers,
    parse_retry_after,
    route_cost,
)

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# A virtual clock for the event loop
# --------------------------------------------------------------------------------------------


_TICK = 1e-9


class _Clock:
    now = 1000.0  # not 0: nothing may assume the loop's clock starts at zero


class _FastForwardSelector(selectors.DefaultSelector):
    """Instead of blocking until the next timer, advance the virtual clock to it."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> Any:
        if timeout is not None and timeout > 0:
            ready = super().select(0)  # real I/O (the loop's self-pipe) takes no virtual time
            if not ready:
                # Land a nanosecond past the timer, as a real clock would: otherwise float
                # rounding can leave a timer "due in 1e-14 s" forever, with time standing still.
                self._clock.now += timeout + _TICK
            return ready
        return super().select(timeout)


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _Clock()
        super().__init__(_FastForwardSelector(self._virtual))

    def time(self) -> float:
        return self._virtual.now


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on a fresh virtual-clock loop."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def now() -> float:
    return asyncio.get_running_loop().time()


async def grant_times(
    limiter: RateLimiter,
    costs: list[float],
    *,
    t0: float | None = None,
    answer_after: float | None = None,
) -> list[float]:
    """Start one acquisition per cost, in order; return each grant time relative to ``t0``.

    ``answer_after``: observe each permit (an answer without rate-limit headers) that many
    seconds after its grant, as the client does; a limiter built with ``answered=True`` (every
    LocalLimiter's) credits no refill past the permits in flight until they are answered.
    """
    start = now() if t0 is None else t0
    times: list[float] = [0.0] * len(costs)

    async def one(i: int, cost: float) -> None:
        permit = await limiter.acquire(cost)
        times[i] = round(now() - start, 6)
        if answer_after is not None:
            await asyncio.sleep(answer_after)
            limiter.observe(permit, None)

    tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(costs)]
    await asyncio.gather(*tasks)
    return times


def state(remaining: float, **kw: float) -> BucketState:
    return BucketState(remaining=remaining, **kw)


async def drain(limiter: RateLimiter, tokens: int) -> list[Permit]:
    return [await limiter.acquire(1) for _ in range(tokens)]


def test_virtual_clock_jumps_to_timers() -> None:
    async def main() -> float:
        t0 = now()
        await asyncio.sleep(3600)
        return now() - t0

    assert run(main) == pytest.approx(3600)


# --------------------------------------------------------------------------------------------
# route_cost
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "cost"),
    [
        ("POST", "/contacts", 5),
        ("post", "/contacts/", 5),
        ("POST", "/contacts?x=1", 5),
        ("POST", "https://incoming.qomon.app/contacts", 5),
        ("PATCH", "/contacts/123", 5),
        ("PATCH", "/v1/contacts/123", 5),
        ("POST", "/contacts/upsert", 1),
        ("POST", "/contacts/upsert/", 1),
        ("GET", "/contacts/123", 1),
        ("DELETE", "/contacts/123", 1),
        ("GET", "/contacts", 1),
        ("PATCH", "/contacts", 1),
        ("PATCH", "/contacts/1/notes", 1),
        ("POST", "/search", 1),
        ("POST", "/kpi", 1),
        ("GET", "/v1/forms/type/survey", 1),
    ],
)
def test_route_cost(method: str, path: str, cost: int) -> None:
    assert route_cost(method, path) == cost


# --------------------------------------------------------------------------------------------
# Header parsing
# --------------------------------------------------------------------------------------------


def test_parse_headers_documented_example() -> None:
    headers = {
        "X-Ratelimit-Limit": "burst:100;rate:10.0",
        "X-Ratelimit-Remaining": "94",
        "X-Ratelimit-Cost": "5",
        "X-Ratelimit-Reset": "0.6",
    }
    assert parse_ratelimit_headers(headers) == BucketState(100, 10, 94, 5, 0.6)


def test_parse_headers_case_insensitive_and_multidict() -> None:
    plain = {"x-ratelimit-remaining": "3", "X-RATELIMIT-LIMIT": "Burst: 50 ; Rate: 5"}
    assert parse_ratelimit_headers(plain) == BucketState(capacity=50, rate=5, remaining=3)
    multi = CIMultiDictProxy(CIMultiDict([("X-RateLimit-Remaining", "7"), ("Content-Type", "x")]))
    assert parse_ratelimit_headers(multi) == BucketState(remaining=7)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Content-Type": "application/json"}, None),
        ({"X-Ratelimit-Remaining": "lots"}, BucketState()),
        ({"X-Ratelimit-Remaining": "-3"}, BucketState()),
        ({"X-Ratelimit-Remaining": "nan", "X-Ratelimit-Reset": "inf"}, BucketState()),
        ({"X-Ratelimit-Remaining": " 12.5 "}, BucketState(remaining=12.5)),
        ({"X-Ratelimit-Limit": "burst:100"}, BucketState()),  # half a shape is no shape
        ({"X-Ratelimit-Limit": "burst:0;rate:10"}, BucketState()),
        ({"X-Ratelimit-Limit": "garbage"}, BucketState()),
        ({"X-Ratelimit-Limit": "100"}, BucketState()),
        ({"X-Ratelimit-Limit": "rate=2.5, burst=25"}, BucketState(capacity=25, rate=2.5)),
        ({"X-Ratelimit-Cost": "1"}, BucketState(cost=1)),
        ({"X-Ratelimit-Remaining": "lots", "X-Ratelimit-Cost": "5"}, BucketState(cost=5)),
        ({"X-Ratelimit-Reset": "0.6", "X-Ratelimit-Cost": "-5"}, BucketState(reset=0.6)),
    ],
)
def test_parse_headers_tolerant(headers: dict[str, str], expected: BucketState | None) -> None:
    assert parse_ratelimit_headers(headers) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("2", 2.0),
        (" 3 ", 3.0),
        ("0.04", 0.04),
        ("0", 0.0),
        ("-1", 0.0),
        ("abc", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    when = datetime(2026, 6, 1, 12, 0, 30, tzinfo=timezone.utc)
    now = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now) == 30.0
    assert parse_retry_after("Mon, 01 Jun 2026 12:00:30 -0000", now=now) == 30.0
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now + 60) == 0.0


# --------------------------------------------------------------------------------------------
# The aiolimiter internals we rely on
# --------------------------------------------------------------------------------------------


def test_bucket_internals_match_aiolimiter() -> None:
    """Fails if aiolimiter renames or changes the meaning of what _Bucket touches."""
    assert {"_level", "_last_check", "_rate_per_sec"} <= set(AsyncLimiter.__slots__)
    assert callable(getattr(AsyncLimiter, "_wake_next", None))

    async def main() -> None:
        bucket = _limiter_model._Bucket(max_rate=100, time_period=10)
        t = now()
        bucket.set_state(t, 3)
        # The public API agrees with what we wrote...
        assert bucket.has_capacity(3)
        assert not bucket.has_capacity(3.5)
        # ...and with what we read, as the bucket leaks at 10/s.
        await asyncio.sleep(0.5)
        assert bucket.tokens(now()) == pytest.approx(8)
        assert bucket.has_capacity(8)
        assert not bucket.has_capacity(8.5)
        # take_covered charges only what it covers (with a reserve beside it); clamp brings
        # the level into a band.
        t = now()
        assert not bucket.take_covered(t, 9, 0.0)
        assert bucket.tokens(t) == pytest.approx(8)
        assert not bucket.take_covered(t, 5, 4.0)  # 5 and a reserve of 4: 9 needed
        assert bucket.take_covered(t, 5, 2.0)
        assert bucket.has_capacity(3) and not bucket.has_capacity(3.5)
        assert bucket.clamp(t, 0, 2) == pytest.approx(3)  # lowered to 2
        assert bucket.has_capacity(2) and not bucket.has_capacity(2.5)
        assert bucket.clamp(t, 50, 60) == pytest.approx(2)  # raised to 50
        assert bucket.has_capacity(50) and not bucket.has_capacity(50.5)
        assert bucket.clamp(t, 0, 1000) == pytest.approx(50)  # within the band: unchanged
        bucket.set_leak(t, 20)  # the refill doubles, the level stays
        await asyncio.sleep(0.1)
        assert bucket.tokens(now()) == pytest.approx(52)
        assert bucket.has_capacity(52) and not bucket.has_capacity(52.5)
        bucket.set_leak(now(), 10)
        # A waiter inside aiolimiter re-times itself at once when the level is set.
        bucket.set_state(now(), 0)
        waiter = asyncio.create_task(bucket.acquire(5))
        await asyncio.sleep(0)
        t = now()
        bucket.set_state(t, 50)
        await waiter
        assert now() == pytest.approx(t)
        # Reshaping changes the pace: 5 tokens at 5/s take 1 s.
        bucket.set_state(now(), 0, capacity=50, rate=5)
        t = now()
        await bucket.acquire(5)
        assert now() - t == pytest.approx(1.0)
        assert (bucket.max_rate, bucket.time_period) == (50, 10)

    run(main)


# --------------------------------------------------------------------------------------------
# Pacing and fairness
# --------------------------------------------------------------------------------------------


def test_burst_at_cost_5_follows_the_ideal_bucket() -> None:
    async def main() -> list[float]:
        limiter = RateLimiter(slow_start=False)
        return await grant_times(limiter, [5] * 30)

    times = run(main)
    assert times[:20] == [0.0] * 20  # the burst: 100 tokens
    assert times[20:] == pytest.approx([0.5 * k for k in range(1, 11)])  # then 2 per second


def test_fifo_a_create_is_not_starved_by_cheap_calls() -> None:
    async def main() -> tuple[float, list[float]]:
        limiter = RateLimiter(slow_start=False)
        await drain(limiter, 100)
        t0 = now()
        create = asyncio.create_task(limiter.acquire(5))
        await asyncio.sleep(0)
        cheap = asyncio.create_task(grant_times(limiter, [1] * 10, t0=t0))
        await create
        create_at = now() - t0
        return create_at, await cheap

    create_at, cheap = run(main)
    assert create_at == pytest.approx(0.5)  # first in line, served as soon as 5 tokens exist
    assert cheap == pytest.approx([0.5 + 0.1 * k for k in range(1, 11)])


def test_plain_aiolimiter_lets_cheap_calls_jump_the_queue() -> None:
    """Why the FIFO gate exists: aiolimiter orders its waiters by amount."""

    async def main() -> float:
        bucket = AsyncLimiter(100, 10)
        await bucket.acquire(100)
        t0 = now()
        create = asyncio.create_task(bucket.acquire(5))
        await asyncio.sleep(0)
        cheap = [asyncio.create_task(bucket.acquire(1)) for _ in range(10)]
        await create
        await asyncio.gather(*cheap)
        return now() - t0

    assert run(main) > 0.5


def test_cancelled_waiters_keep_the_queue_and_the_tokens() -> None:
    async def main() -> tuple[list[float], RateLimiter]:
        limiter = RateLimiter(slow_start=False)
        await drain(limiter, 100)
        t0 = now()
        head = asyncio.create_task(limiter.acquire(5))  # waits inside aiolimiter
        await asyncio.sleep(0)
        middle = asyncio.create_task(limiter.acquire(5))  # waits on the FIFO gate
        tail = asyncio.create_task(grant_times(limiter, [1, 1], t0=t0))
        await asyncio.sleep(0.2)
        assert limiter.waiters == 4
        head.cancel()
        middle.cancel()
        for task in (head, middle):
            with pytest.raises(asyncio.CancelledError):
                await task
        times = await tail
        return times, limiter

    times, limiter = run(main)
    # No token was charged for the cancelled waiters: the tail is served from the refill
    # since t0 (2 tokens by 0.2 s), as if the others had never been there.
    assert times == pytest.approx([0.2, 0.2])
    assert limiter.waiters == 0
    assert limiter.stats.cancelled == 2
    assert limiter.stats.permits == 102
    assert limiter.stats.tokens == 102


# --------------------------------------------------------------------------------------------
# Slow start
# --------------------------------------------------------------------------------------------


def test_slow_start_one_request_until_the_first_headers() -> None:
    async def main() -> None:
        limiter = RateLimiter()
        assert "slow_start" in repr(limiter)
        first = await limiter.acquire(1)
        second = asyncio.create_task(limiter.acquire(1))
        third = asyncio.create_task(limiter.acquire(1))
        await asyncio.sleep(10)
        assert not second.done()
        # A response without headers tells nothing: the next single request may go.
        limiter.observe(first, None)
        await asyncio.sleep(0)
        assert second.done()
        assert not third.done()
        # A transport failure, likewise.
        limiter.release(second.result())
        await asyncio.sleep(0)
        assert third.done()
        # The first response with headers ends slow start: the rest go at once.
        rest = asyncio.create_task(grant_times(limiter, [1] * 5))
        await asyncio.sleep(0)
        limiter.observe(third.result(), state(97))
        assert await rest == [0.0] * 5
        assert "slow_start" not in repr(limiter)

    run(main)


# --------------------------------------------------------------------------------------------
# Re-sync from the headers
# --------------------------------------------------------------------------------------------


def test_resync_down_when_another_consumer_spent_tokens() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        p1 = await limiter.acquire(1)
        await limiter.acquire(1)
        await limiter.acquire(5)
        assert limiter.available == 93
        # The server had 10 left after p1; p2 and p3 were granted after p1 and are unanswered.
        limiter.observe(p1, state(10))
        assert limiter.available == 4
        assert limiter.stats.synced_down == 1
        t0 = now()
        await limiter.acquire(5)  # needs one more token: 0.1 s
        assert now() - t0 == pytest.approx(0.1)

    run(main)


def test_resync_never_raises_local_from_a_late_answer() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        p1 = await limiter.acquire(5)
        p2 = await limiter.acquire(5)
        limiter.observe(p2, state(90))  # p2 answered first
        assert limiter.available == 90
        # p1's answer is older news: it does not know about p2 (nor about anything since).
        limiter.observe(p1, state(95))
        assert limiter.available == 90
        assert limiter.stats.synced_up == 0

    run(main)


def test_resync_up_after_the_model_overcharged() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        # Sequential calls that we charged 5 but the server charged 1.
        for k in range(1, 21):
            permit = await limiter.acquire(5)
            limiter.observe(permit, state(100 - k, cost=1))
        assert limiter.available == 80
        assert limiter.stats.synced_up == 20

    run(main)


def test_resync_up_is_safe_when_the_server_reordered() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        p1 = await limiter.acquire(5)
        p2 = await limiter.acquire(5)
        # The server processed p2 (95 left) then p1 (90 left); p1's answer arrives first.
        limiter.observe(p1, state(90))
        assert limiter.available == 85  # p2 might still be on its way: assume so
        # p2's answer predates p1's charge: it may lift the model back to 90, not to 95.
        limiter.observe(p2, state(95))
        assert limiter.available == 90

    run(main)


def test_no_rise_from_answers_sent_before_a_pause() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        early = await limiter.acquire(5)
        limiter.pause(1.0)
        assert limiter.available == 0
        limiter.observe(early, state(100))  # old news: someone else just drained the bucket
        assert limiter.available == 0
        assert limiter.stats.synced_up == 0

    run(main)


def test_resync_up_never_counts_requests_still_in_flight() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        permits = [await limiter.acquire(5) for _ in range(10)]
        assert limiter.available == 50
        # The newest permit is answered first with a full bucket: the nine earlier permits
        # may still reach the server, so the model rises only to what survives them.
        limiter.observe(permits[-1], state(100))
        assert limiter.available == 55

    run(main)


def test_reset_refines_an_integer_remaining() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        await drain(limiter, 90)
        permit = await limiter.acquire(1)
        limiter.observe(permit, state(4, reset=9.55))  # 100 - 9.55 * 10 = 4.5
        assert limiter.available == pytest.approx(4.5)
        other = await limiter.acquire(1)
        limiter.observe(other, BucketState(reset=9.9))  # Reset alone is enough
        assert limiter.available == pytest.approx(1.0)

    run(main)


def test_shape_change_from_headers_and_across_loops() -> None:
    registry = LimiterRegistry()

    async def first() -> list[float]:
        limiter = registry.get()
        permit = await limiter.acquire(5)
        headers = {"X-Ratelimit-Limit": "burst:50;rate:5.0", "X-Ratelimit-Remaining": "45"}
        limiter.observe(permit, parse_ratelimit_headers(headers))
        assert (limiter.capacity, limiter.rate) == (50, 5)
        return await grant_times(limiter, [5] * 11, answer_after=0.5)

    times = run(first)
    assert times[:9] == [0.0] * 9  # 45 tokens
    assert times[9:] == pytest.approx([1.0, 2.0])  # then one create per second
    assert (registry.capacity, registry.rate) == (50, 5)
    assert registry.stats.shape_changes == 1

    async def second() -> RateLimiter:
        return registry.get()

    limiter = run(second)
    assert (limiter.capacity, limiter.rate) == (50, 5)  # the learned shape carries over


# --------------------------------------------------------------------------------------------
# 429 pauses
# --------------------------------------------------------------------------------------------


def test_pause_holds_every_waiter_then_paces_them() -> None:
    async def main() -> list[float]:
        limiter = RateLimiter(slow_start=False)
        t0 = now()
        limiter.pause(1.0)
        assert limiter.paused_until == t0 + 1.0
        return await grant_times(limiter, [5] * 6, t0=t0)

    times = run(main)
    assert min(times) >= 1.0
    # 10 tokens refilled during the second of pause: two creates, then one every 0.5 s.
    assert times == pytest.approx([1.0, 1.0, 1.5, 2.0, 2.5, 3.0])


def test_pause_reaches_a_waiter_already_inside_the_bucket() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        await drain(limiter, 100)
        t0 = now()
        waiter = asyncio.create_task(limiter.acquire(1))  # would get its token at +0.1 s
        await asyncio.sleep(0.05)
        limiter.pause(0.04)  # fractional, as the emulator sends with a scaled clock
        limiter.pause(2.0)
        limiter.pause(0.5)  # a shorter pause never shortens the current one
        await waiter
        assert now() - t0 == pytest.approx(2.05)
        assert limiter.stats.pauses == 3
        assert limiter.stats.tokens == 101  # the token taken mid-pause went back

    run(main)


def test_pause_is_logged_and_waits_are_explained(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="qomon_async")

    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        limiter.pause(1.0)
        await limiter.acquire(5)

    run(main)
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert any("pausing all requests for 1.000 s" in r.getMessage() for r in infos)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("paused by 429" in m and "waiting 1.000 s" in m for m in debug)
    assert all(r.name == "qomon_async" for r in caplog.records)


def test_no_response_release_and_refund() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        kept = await limiter.acquire(5)
        limiter.release(kept)  # may have reached the server: stays spent
        assert limiter.available == 95
        refunded = await limiter.acquire(5)
        limiter.release(refunded, refund=True)  # surely never sent
        assert limiter.available == 95
        assert limiter.in_flight == 0
        assert limiter.stats.tokens == 5

    run(main)


# --------------------------------------------------------------------------------------------
# One limiter per loop; repr; stats
# --------------------------------------------------------------------------------------------


def test_registry_one_limiter_per_loop() -> None:
    registry = LimiterRegistry(slow_start=False)
    seen: list[RateLimiter] = []

    async def main() -> None:
        limiter = registry.get()
        assert registry.get() is limiter
        await limiter.acquire(1)
        seen.append(limiter)

    asyncio.run(main())
    asyncio.run(main())
    assert seen[0] is not seen[1]
    assert registry.stats.permits == 2  # one set of counters for the client
    with pytest.raises(RuntimeError):
        registry.get()  # no running loop: nothing is created at import or build time


def test_local_limiter_acquire_is_one_coroutine_of_the_loop_limiter() -> None:
    limiter = LocalLimiter(slow_start=False)
    assert isinstance(limiter, Limiter)

    async def main() -> None:
        pending = limiter.acquire(5, max_wait=math.inf, max_pause=120.0)
        assert asyncio.iscoroutine(pending)  # RateLimiter.acquire's own: no wrapper
        permit = await pending
        assert (permit.seq, permit.cost, permit.waited) == (1, 5, 0.0)
        assert limiter.get().in_flight == 1
        limiter.observe(permit, BucketState(100, 10, 95))
        assert limiter.get().in_flight == 0
        with pytest.raises(ValueError, match="max_wait"):
            await limiter.acquire(1, max_wait=-1.0)

    run(main)
    assert limiter.stats.permits == 1


def test_permits_and_bucket_states_stay_frozen_dataclasses() -> None:
    """Both are built on every request by a hand-written __init__: still read-only
    dataclasses, equal to (and hashed as) the ones built by keyword, and subclassable."""
    permit = Permit(3, 5.0, 0.25, 12.0)
    assert permit == Permit(seq=3, cost=5.0, waited=0.25, granted_at=12.0)
    assert hash(permit) == hash(Permit(seq=3, cost=5.0, waited=0.25, granted_at=12.0))
    assert dataclasses.replace(permit, waited=1.0) == Permit(3, 5.0, 1.0, 12.0)
    assert [f.name for f in dataclasses.fields(permit)] == ["seq", "cost", "waited", "granted_at"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        permit.seq = 4  # type: ignore[misc]
    state = BucketState(100, 10, 94)
    assert state == BucketState(capacity=100, rate=10, remaining=94, cost=None, reset=None)
    assert dataclasses.astuple(state) == (100, 10, 94, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.remaining = 3  # type: ignore[misc]

    @dataclasses.dataclass(frozen=True)
    class Booked(Permit):  # as a shared bucket's permit is
        mark: float = 0.0

    booked = Booked(1, 1.0, 0.0, 2.0, mark=7.0)
    assert (booked.seq, booked.granted_at, booked.mark) == (1, 2.0, 7.0)
    assert booked != Permit(1, 1.0, 0.0, 2.0)


def test_limiter_refuses_a_second_loop() -> None:
    limiter = RateLimiter()
    asyncio.run(limiter.acquire(1))
    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(limiter.acquire(1))


def test_repr_shows_live_state() -> None:
    async def main() -> str:
        limiter = RateLimiter(slow_start=False)
        await limiter.acquire(5)
        waiter = asyncio.create_task(limiter.acquire(5))
        limiter.pause(2)
        await asyncio.sleep(0.5)
        text = repr(limiter)
        waiter.cancel()
        return text

    text = run(main)
    assert "capacity=100 rate=10/s" in text
    assert "available=5.00" in text  # emptied by the pause, refilled for 0.5 s
    assert "waiters=1" in text
    assert "paused_until=" in text and "in 1.500 s" in text


@pytest.mark.parametrize("cost", [-1, float("nan"), float("inf")])
def test_acquire_rejects_bad_costs(cost: float) -> None:
    with pytest.raises(ValueError, match="cost"):
        run(lambda: RateLimiter().acquire(cost))


def test_cost_above_capacity_takes_the_whole_bucket() -> None:
    async def main() -> None:
        limiter = RateLimiter(capacity=3, rate=1, slow_start=False)
        permit = await limiter.acquire(5)
        assert permit.cost == 5
        assert limiter.available == 0

    run(main)
