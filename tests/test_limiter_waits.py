"""The local limiter's bounded waits, fast path and queue, on a virtual clock.

``max_wait`` and ``max_pause`` (a caller's own limits), cancellation, grants without a loop
iteration, the slow-start queue drained in one pass, FIFO order, the ``waits`` counter. Every
timed scenario runs on the virtual-clock loop of ``test_ratelimit`` (time jumps to the next
timer), so grant times are exact and nothing sleeps real time.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from test_ratelimit import drain, now, run, state

from qomon_async import RateLimitError, RateLimitTimeout
from qomon_async._local_limiter import RateLimiter
from qomon_async._ratelimit import Permit


async def queued(limiter: RateLimiter, cost: float, **limits: float) -> asyncio.Task[Permit]:
    """Start an acquisition and let it reach the queue."""
    task = asyncio.ensure_future(limiter.acquire(cost, **limits))
    await asyncio.sleep(0)
    return task


class LoopIterations:
    """Counts the event loop's iterations (one callback re-scheduled with ``call_soon``)."""

    def __init__(self) -> None:
        self.count = 0
        self._handle: asyncio.Handle | None = None

    def _tick(self) -> None:
        self.count += 1
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


# --------------------------------------------------------------------------------------------
# max_wait
# --------------------------------------------------------------------------------------------


def test_max_wait_predicted_too_long_fails_at_once_and_charges_nothing() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        await drain(limiter, 100)
        t0 = now()
        ahead = await queued(limiter, 5)  # 5 tokens: served at +0.5 s
        tokens, permits = limiter.available, limiter.stats.permits
        # Behind it, 5 more tokens: +1.0 s, beyond 0.5 s.
        with pytest.raises(RateLimitTimeout) as caught:
            await limiter.acquire(5, max_wait=0.5)
        assert now() == t0  # at once: no time passed
        assert caught.value.predicted_wait == pytest.approx(1.0)
        assert caught.value.max_wait == 0.5
        assert "nothing was sent" in str(caught.value)
        assert limiter.available == tokens  # nothing charged
        assert limiter.stats.permits == permits
        assert limiter.waiters == 1  # the queue is intact
        # A limit the prediction fits in: it waits, and is served in its turn.
        behind = asyncio.ensure_future(limiter.acquire(5, max_wait=1.5))
        await ahead
        assert now() - t0 == pytest.approx(0.5)
        await behind
        assert now() - t0 == pytest.approx(1.0)

    run(main)


def test_max_wait_zero_means_only_an_immediate_grant() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        assert (await limiter.acquire(5, max_wait=0)).waited == 0
        await drain(limiter, 95)
        with pytest.raises(RateLimitTimeout):
            await limiter.acquire(1, max_wait=0)
        assert limiter.waiters == 0

    run(main)


def test_max_wait_counts_a_429_pause() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        limiter.pause(30)
        with pytest.raises(RateLimitTimeout) as caught:
            await limiter.acquire(1, max_wait=10)
        # The pause empties the bucket; it refills during the pause: 30 s, then at once.
        assert caught.value.predicted_wait == pytest.approx(30)
        permit = await limiter.acquire(1, max_wait=40)
        assert permit.waited == pytest.approx(30)

    run(main)


def test_max_wait_running_out_while_queued_gives_way_to_the_next() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        permits = await drain(limiter, 100)
        t0 = now()
        first = await queued(limiter, 5, max_wait=1.0)  # predicted 0.5 s: it queues
        second = await queued(limiter, 1)
        await asyncio.sleep(0.1)
        # The server says another consumer took everything: our 99 other requests still
        # unanswered will drain it to -99 tokens, 10.4 s for the first waiter's 5 tokens.
        limiter.observe(permits[0], state(0))
        with pytest.raises(RateLimitTimeout) as caught:
            await first
        assert now() - t0 == pytest.approx(1.0)  # when max_wait ran out, not before
        assert caught.value.predicted_wait is None
        assert caught.value.max_wait == 1.0
        # Its 5 tokens were never charged: the second waiter needs 1 token from -99 at +0.1 s.
        granted = await second
        assert now() - t0 == pytest.approx(0.1 + 100 / 10)
        assert granted.seq == 101
        assert limiter.stats.permits == 101
        assert limiter.waiters == 0

    run(main)


# --------------------------------------------------------------------------------------------
# Cancellation
# --------------------------------------------------------------------------------------------


def test_cancelled_waiter_charges_nothing_and_keeps_the_order() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        await drain(limiter, 100)
        t0 = now()
        order: list[str] = []

        async def one(name: str, cost: float) -> None:
            await limiter.acquire(cost)
            order.append(f"{name}@{now() - t0:.2f}")

        tasks = {}
        for name, cost in (("a", 5), ("b", 5), ("c", 1)):
            tasks[name] = asyncio.ensure_future(one(name, cost))
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        tasks["b"].cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        assert order == ["a@0.50", "c@0.60"]  # with b's 5 tokens charged, c would be at 1.10
        assert limiter.stats.cancelled == 1
        assert limiter.stats.permits == 102

    run(main)


def test_cancelled_in_the_iteration_of_its_grant_gives_everything_back() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        permits = await drain(limiter, 100)
        waiter = await queued(limiter, 5)
        behind = await queued(limiter, 5)
        # Five tokens come back: the head is granted right now, inside release()...
        limiter.release(permits[0], refund=True)
        limiter.release(permits[1], refund=True)
        limiter.release(permits[2], refund=True)
        limiter.release(permits[3], refund=True)
        limiter.release(permits[4], refund=True)
        assert limiter.waiters == 1 and limiter.in_flight == 96
        # ...and its task is cancelled before it could resume.
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        # The grant was undone: its tokens went to the next waiter, at once.
        assert behind.done()
        assert (await behind).seq == 102
        assert limiter.in_flight == 96
        assert limiter.stats.permits == 101
        assert limiter.stats.cancelled == 1
        assert limiter.stats.waits == 1

    run(main)


# --------------------------------------------------------------------------------------------
# max_pause: a long Retry-After
# --------------------------------------------------------------------------------------------


def test_a_long_retry_after_fails_capped_waiters_at_once_and_holds_the_others() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        await drain(limiter, 100)
        t0 = now()
        capped = await queued(limiter, 1, max_pause=120)
        patient = await queued(limiter, 1)
        bounded = await queued(limiter, 1, max_wait=300)
        limiter.pause(3600)
        # Already queued, and beyond their own limits: they raise now, not in an hour.
        await asyncio.sleep(0)
        assert capped.done() and bounded.done()
        with pytest.raises(RateLimitError) as caught:
            await capped
        assert caught.value.status_code == 429
        assert caught.value.retry_after == pytest.approx(3600)
        with pytest.raises(RateLimitTimeout) as timed_out:
            await bounded
        assert timed_out.value.predicted_wait == pytest.approx(3600)
        assert timed_out.value.max_wait == 300
        assert now() == t0
        # A later caller with a cap raises at once too, with the time left.
        await asyncio.sleep(600)
        with pytest.raises(RateLimitError) as later:
            await limiter.acquire(5, max_pause=120)
        assert later.value.retry_after == pytest.approx(3000)
        assert now() - t0 == pytest.approx(600)
        # The pause stays whole for those without caps: the server's word.
        assert not patient.done()
        assert limiter.paused_until == pytest.approx(t0 + 3600)
        await patient
        assert now() - t0 == pytest.approx(3600)
        # A pause within the cap is waited out.
        limiter.pause(60)
        permit = await limiter.acquire(1, max_pause=120)
        assert permit.waited == pytest.approx(60)

    run(main)


def test_a_shorter_pause_does_not_fail_waiters_again() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        limiter.pause(10)
        waiter = await queued(limiter, 1, max_pause=20)
        limiter.pause(5)  # within the current pause: nothing changes
        assert not waiter.done()
        assert (await waiter).waited == pytest.approx(10)

    run(main)


@pytest.mark.parametrize("limits", [{"max_wait": -1.0}, {"max_pause": float("nan")}])
def test_limits_must_be_non_negative(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="max_"):
        run(lambda: RateLimiter().acquire(1, **limits))


def test_infinite_limits_mean_none() -> None:
    async def main() -> float:
        limiter = RateLimiter(slow_start=False)
        limiter.pause(5)
        permit = await limiter.acquire(1, max_wait=float("inf"), max_pause=float("inf"))
        return permit.waited

    assert run(main) == pytest.approx(5)


# --------------------------------------------------------------------------------------------
# The fast path, FIFO and the slow-start drain
# --------------------------------------------------------------------------------------------


def test_a_covered_request_is_granted_without_a_loop_iteration() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        iterations = LoopIterations()
        iterations.start()
        await asyncio.sleep(0)
        before = iterations.count
        permits = [await limiter.acquire(5) for _ in range(20)]
        assert iterations.count == before  # 20 grants, not one suspension
        iterations.stop()
        assert [p.waited for p in permits] == [0.0] * 20
        assert limiter.stats.waits == 0
        assert limiter.stats.wait_seconds == 0

    run(main)


def test_a_fast_grant_never_overtakes_a_queued_waiter() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        await drain(limiter, 100)
        t0 = now()
        create = await queued(limiter, 5)
        await asyncio.sleep(0.3)  # 3 tokens: enough for a 1-token call, not for the create
        cheap = await queued(limiter, 1)
        assert not cheap.done()
        await create
        assert now() - t0 == pytest.approx(0.5)
        await cheap
        assert now() - t0 == pytest.approx(0.6)

    run(main)


def test_a_create_queued_before_cheap_calls_is_served_first() -> None:
    async def main() -> list[int]:
        limiter = RateLimiter(slow_start=False)
        await drain(limiter, 100)
        tasks = [await queued(limiter, 5)] + [await queued(limiter, 1) for _ in range(10)]
        return [(await t).seq for t in tasks]

    assert run(main) == list(range(101, 112))


def test_the_slow_start_queue_drains_in_one_pass() -> None:
    async def main() -> None:
        limiter = RateLimiter()
        first = await limiter.acquire(1)
        waiters = [await queued(limiter, 1) for _ in range(10)]
        assert limiter.waiters == 10 and limiter.in_flight == 1
        # The first answer with headers: the bucket covers 6 of them, granted right here, in
        # order, before any task runs again.
        limiter.observe(first, state(6))
        assert limiter.waiters == 4
        assert limiter.in_flight == 6
        granted = [await w for w in waiters[:6]]
        assert [p.seq for p in granted] == [2, 3, 4, 5, 6, 7]
        assert {p.granted_at for p in granted} == {first.granted_at}
        # Those six reach the server over the next round trip, while its bucket may sit full:
        # no refill is credited before the next answer (without that, the other four would
        # have left by +0.4 s).
        await asyncio.sleep(1)
        assert limiter.waiters == 4
        # The answer to #2: 15 left (the refill of that second, less what reached the server).
        t0 = now()
        limiter.observe(granted[0], state(15))
        rest = [await w for w in waiters[6:]]
        assert [p.seq for p in rest] == [8, 9, 10, 11]
        assert {p.granted_at for p in rest} == {t0}

    run(main)


def test_slow_start_ending_on_an_empty_bucket_still_refills() -> None:
    """The first answer says the bucket is empty and nothing else is in flight: no answer
    will come to end the refill hold, so the refill counts again and the waiter leaves when the
    bucket has its tokens (it used to wait for ever: a Redis bucket falling back hit this)."""

    async def main() -> None:
        limiter = RateLimiter()
        first = await limiter.acquire(5)
        waiter = await queued(limiter, 5)
        t0 = now()
        limiter.observe(first, state(0))
        permit = await asyncio.wait_for(waiter, timeout=10)
        assert limiter.in_flight == 1
        assert now() - t0 == pytest.approx(0.5, abs=0.05)  # 5 tokens at 10/s
        assert permit.seq == 2

    run(main)


def test_waits_count_only_permits_that_waited() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        await drain(limiter, 100)
        tasks = [await queued(limiter, 5) for _ in range(3)]
        waited = [(await t).waited for t in tasks]
        stats = limiter.stats
        assert stats.permits == 103
        assert stats.waits == 3
        assert stats.wait_seconds == pytest.approx(sum(waited))
        assert waited == pytest.approx([0.5, 1.0, 1.5])

    run(main)


def test_a_long_wait_is_logged_at_info_a_short_one_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="qomon_async")

    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        await drain(limiter, 100)
        await limiter.acquire(5)  # 0.5 s: DEBUG, not recorded at INFO
        await limiter.acquire(60)  # 6 s: INFO

    run(main)
    waits = [r.getMessage() for r in caplog.records if "granted after waiting" in r.getMessage()]
    assert waits == ["permit #102 (cost 60) granted after waiting 6.000 s (bucket empty)"]
