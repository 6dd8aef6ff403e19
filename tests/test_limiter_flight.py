"""The refill a limiter credits while requests are on their way, on a virtual clock.

Qomon charges a request when it arrives, not when the client granted it. A burst granted from
a full bucket reaches a bucket that is still full, whose refill in the meantime is lost. A
limiter told of every answer (``RateLimiter(answered=True)``, what each ``LocalLimiter``
builds) never lets its level drain below the tokens of the permits in flight; a limiter used
on its own (the default) keeps aiolimiter's refill from each grant.
"""

from __future__ import annotations

import asyncio

import pytest
from test_ratelimit import now, run, state

from qomon_async import QomonClient
from qomon_async._limiter_model import _Bucket
from qomon_async._local_limiter import LocalLimiter, RateLimiter
from qomon_async._ratelimit import Permit
from qomon_async.testing import FakeQomon


async def burst(limiter: RateLimiter, creates: int = 20) -> list[Permit]:
    """Grant ``creates`` creates (5 tokens each) at once."""
    return [await limiter.acquire(5) for _ in range(creates)]


async def on_their_way(creates: int = 20) -> tuple[RateLimiter, list[Permit]]:
    """An answered limiter (as the client's) that granted ``creates`` creates from its full
    bucket, none of them answered yet."""
    limiter = RateLimiter(slow_start=False, answered=True)
    return limiter, await burst(limiter, creates)


def test_no_refill_is_credited_past_the_burst_on_its_way() -> None:
    async def main() -> None:
        limiter, permits = await on_their_way()  # the whole bucket, at once
        t0 = now()
        waiter = asyncio.ensure_future(limiter.acquire(5))
        await asyncio.sleep(3.0)  # 30 tokens of refill, lost to Qomon's full bucket
        assert not waiter.done()
        assert limiter.available == pytest.approx(0.0)
        assert limiter._timer is None  # no timer spins: the next answer calls back
        limiter.observe(permits[0], None)  # 5 tokens reached the server: 5 back
        await asyncio.sleep(0)
        assert waiter.done() and now() - t0 == pytest.approx(3.0)
        # Nothing more until the next answer, however long.
        second = asyncio.ensure_future(limiter.acquire(5))
        await asyncio.sleep(10.0)
        assert not second.done()
        limiter.release(permits[1])  # no answer came back, but the request is gone too
        await asyncio.sleep(0)
        assert second.done()
        # Answers without rate-limit headers give back no refill: what the floor held was lost
        # to Qomon's full bucket. The refill counts from the last charge once the floor is low.
        for permit in permits[2:]:
            limiter.observe(permit, None)
        assert limiter.available == pytest.approx(0.0)
        await asyncio.sleep(1.0)
        assert limiter.available == pytest.approx(10.0)  # 2 creates (10 tokens) in flight

    run(main)


def test_a_refund_while_the_floor_holds_gives_its_tokens_back_once() -> None:
    async def main() -> None:
        limiter, permits = await on_their_way()
        await asyncio.sleep(3.0)
        # Two creates never left (no connection): Qomon's full bucket keeps their 10 tokens;
        # the 90 of the others are still on their way.
        limiter.release(permits[0], refund=True)
        assert limiter.available == pytest.approx(5.0)
        limiter.release(permits[1], refund=True)
        assert limiter.available == pytest.approx(10.0)
        assert limiter.stats.tokens == 90

    run(main)


def test_a_waiter_held_by_the_floor_is_looked_at_again_when_others_measure_fades() -> None:
    async def main() -> float:
        limiter, permits = await on_their_way(15)
        await asyncio.sleep(0.5)
        limiter.observe(permits[0], state(95))
        await asyncio.sleep(0.5)
        limiter.observe(permits[1], state(60))  # others spent about 35 tokens meanwhile
        # Kept in reserve against them: 35; on their way: 65. The refill alone cannot cover
        # 5 + 35 before answers, but the reserve fades once the measure leaves the window.
        assert limiter._bucket.ceiling() < 5 + limiter._reserve
        t0 = now()
        await asyncio.wait_for(limiter.acquire(5), 60.0)  # no answer comes
        return now() - t0

    assert run(main) == pytest.approx(10.0, abs=0.01)  # the window: capacity / rate


def test_a_limiter_on_its_own_refills_from_each_grant() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)  # answered=False: aiolimiter's refill
        await burst(limiter)
        t0 = now()
        await limiter.acquire(5)
        assert now() - t0 == pytest.approx(0.5)

    run(main)


def test_an_answer_with_headers_resyncs_and_the_refill_above_the_floor_counts() -> None:
    async def main() -> float:
        limiter, permits = await on_their_way()
        await asyncio.sleep(2.0)
        # The first create says Qomon's bucket held 95 tokens after it: no longer full, so it
        # refills while the 19 others are on their way (95 tokens: the floor).
        limiter.observe(permits[0], state(95))
        assert limiter.available == pytest.approx(0.0)  # 95, less the 95 on their way
        t0 = now()
        await limiter.acquire(5)  # the 5 tokens above the floor refill in half a second
        return now() - t0

    assert run(main) == pytest.approx(0.5)


def test_the_floor_in_the_bucket() -> None:
    class Flight:
        total = 40.0

    bucket = _Bucket(max_rate=100, time_period=10)  # 100 tokens, 10 per second
    bucket._flight = Flight()  # type: ignore[assignment]
    bucket._level, bucket._last_check = 60.0, 0.0
    assert bucket.tokens(1.0) == pytest.approx(50.0)  # drains as aiolimiter's does
    assert bucket.tokens(5.0) == pytest.approx(60.0)  # down to the 40 in flight, no further
    assert bucket.ceiling() == pytest.approx(60.0)
    bucket._level = 30.0  # a re-sync put it under the floor: it stays, never raised
    assert bucket.tokens(5.0) == pytest.approx(70.0)
    assert bucket.ceiling() == pytest.approx(70.0)
    bucket.take(5.0, 5.0)
    assert bucket._level == pytest.approx(35.0)
    Flight.total = 0.0  # answered: the refill counts from the last charge again
    assert bucket.tokens(6.0) == pytest.approx(75.0)
    assert bucket.tokens(10.0) == pytest.approx(100.0)


def test_the_clients_limiters_are_told_of_every_answer() -> None:
    async def main() -> None:
        limiter = LocalLimiter(slow_start=False).get()
        await burst(limiter)
        waiter = asyncio.ensure_future(limiter.acquire(5))
        await asyncio.sleep(5.0)
        assert not waiter.done()  # the floor holds: its limiters are answered=True
        waiter.cancel()

    run(main)


# -- the client leaves no permit in flight -----------------------------------------------------

KEY = "flight-key"


async def test_cancelled_and_failed_calls_leave_no_permit_in_flight() -> None:
    """A permit left in flight would hold the refill for good: every way out of a call
    observes or releases it (web handlers cancel; a bug in an observe must not leak)."""
    async with (
        FakeQomon(api_key=KEY, time_scale=20.0, latency=1.0) as fake,  # 50 ms real per answer
        QomonClient(KEY, base_url=fake.base_url) as client,
    ):
        await client.count_contacts()
        assert isinstance(client._limiter, LocalLimiter)
        limiter = client._limiter.get()
        # Cancelled on their way (a handler's deadline): released.
        calls = [asyncio.ensure_future(client.count_contacts()) for _ in range(10)]
        await asyncio.sleep(0)
        assert limiter.in_flight == 10
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        assert limiter.in_flight == 0
        # An observe that fails: the permit is released, the error goes to the caller.
        local = client._limiter
        observe = local.observe  # (the running loop's limiter's, bound once)

        def broken(permit: Permit, state: object, *, rejected: bool = False) -> None:
            raise RuntimeError("observe failed")

        local.observe = broken  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="observe failed"):
            await client.count_contacts()
        local.observe = observe  # type: ignore[method-assign]
        assert limiter.in_flight == 0
        assert await client.count_contacts() >= 0  # and the next call goes through
