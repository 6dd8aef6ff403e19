"""The limiter's inline paths agree with the model they shortcut.

``RateLimiter.observe`` handles the steady answer (the very state of the answer before, no 429
about) with the model's ``_sync`` written inline (the ledger's answer, others' measure, the
band's clamp); ``RateLimiter.try_acquire`` (which ``acquire`` calls first) grants at once
through the bucket's ``take_covered``, and every grant writes its ledger entry and builds its
permit inline. Here a limiter without those shortcuts (every answer through ``_sync``, a grant
at once through the general conditions and ``take_if``, the entry through
``InFlightLedger.add``, the permit through its class) runs the same operations on the same
virtual clock, and the two hold the same state after each one: the bucket, the ledger, the
reading, others' window and reserve, the counters; both grant the same permits (equal, with
the same repr and hash), at once or after waiting, or refuse the same. Hypothesis draws the
operations (grants of 1 and 5 tokens, awaited or tried at once, answers in and out of order
with states drawn from a small pool so that they repeat, 429s, releases, pauses, time
passing)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ratelimit import run

from qomon_async._limiter_fifo import RateLimiter
from qomon_async._limiter_model import DEBUG, LEVELS, _Bucket
from qomon_async._local_limiter import LocalLimiter
from qomon_async._ratelimit import BucketState, Permit


def _take_if(bucket: _Bucket, now: float, amount: float, need: float) -> bool:
    """The reference grant: charge ``amount`` tokens at loop time ``now`` if the bucket holds
    ``need`` (float noise of ``1e-9`` tolerated), written plainly on aiolimiter's level."""
    level = max(bucket._level - (now - bucket._last_check) * bucket._rate_per_sec, 0.0)
    if bucket.max_rate - level + 1e-9 < need:
        return False
    bucket._level = level + amount
    bucket._last_check = now
    return True


class FullModel(RateLimiter):
    """The limiter as it was before its inline paths: the reference. Every answer through the
    model's ``_sync``; a grant at once through the general conditions and the bucket's
    ``take_if``, its ledger entry through ``InFlightLedger.add`` and its permit through the
    class."""

    def observe(self, permit: Permit, state: BucketState | None, *, rejected: bool = False) -> None:
        self._observe(permit, state, rejected)

    def try_acquire(self, cost: float) -> Permit | None:
        if not 0.0 <= cost < math.inf:
            raise ValueError(f"cost must be a non-negative number, got {cost!r}")
        self._bind()
        now = self._loop.time()  # type: ignore[union-attr]
        amount = min(cost, self._bucket.max_rate)
        if (
            not self._live
            and self._paused_until <= now
            and not self._slow_start_blocks()
            and self._covers(now, amount)
        ):
            reserve = min(self._reserve, self._bucket.max_rate - amount) if self._reserve else 0.0
            assert _take_if(self._bucket, now, amount, amount + reserve)
            return self._grant(cost, 0.0, now, 0)
        return None

    def _grant(self, cost: float, waited: float, now: float, reasons: int) -> Permit:
        self._seq += 1
        self._granted_total += cost
        self._ledger.add(self._seq, cost, self._granted_total)
        self.stats.permits += 1
        self.stats.tokens += cost
        if reasons:
            self.stats.waits += 1
            self.stats.wait_seconds += waited
        return Permit(seq=self._seq, cost=cost, waited=waited, granted_at=now)


def snapshot(limiter: RateLimiter) -> dict[str, Any]:
    bucket, ledger, others = limiter._bucket, limiter._ledger, limiter._others
    return {
        "bucket": (bucket._level, bucket._last_check, bucket._rate_per_sec, bucket.max_rate),
        "seq": (limiter._seq, limiter._granted_total),
        "entries": dict(ledger._entries),
        "classes": {cost: list(seqs) for cost, seqs in ledger._classes.items()},
        "in_flight": ledger.total,
        "reading": limiter._reading,
        "server_read": limiter._server_read,
        "others": (list(others._items), list(others._maxima), others.total),
        "reserve": (limiter._reserve, limiter._leak, limiter._rate),
        "rejected": sorted(limiter._rejected),
        "flags": (
            limiter._informed,
            limiter._no_rise_upto,
            limiter._paused_until,
            limiter._refill_held_since,
            limiter._live,
            limiter._shape,
        ),
        "stats": dataclasses.asdict(limiter.stats),
    }


# A small pool of states, each one object (a parser hands back one state per distinct set of
# values): drawn again and again, they make the steady answers.
STATES = [
    BucketState(100.0, 10.0, 95.0, 5.0, 0.5),
    BucketState(100.0, 10.0, 60.0, 5.0, 4.0),
    BucketState(100.0, 10.0, 0.0, 5.0, 10.0),
    BucketState(100.0, 10.0, 100.0, 1.0, 0.0),
    BucketState(None, None, 80.0, None, None),
    BucketState(200.0, 20.0, 150.0, 5.0, 2.5),  # a reshape
    BucketState(1e6, 1e6, 999995.0, 5.0, 5e-6),  # the benchmarks' huge bucket
]

acquire = st.tuples(st.just("acquire"), st.sampled_from([1.0, 5.0, 5.0]))
# try_acquire: a permit at once or None, the same in both (the client's first call).
attempt = st.tuples(st.just("try"), st.sampled_from([1.0, 5.0, 5.0, 500.0]))
answer = st.tuples(
    st.just("answer"),
    st.integers(0, 7),  # which permit in flight (its position, oldest first)
    # The state: -1 (mostly) the one of the answer before, or one of the pool, or none
    # (len(STATES): no headers).
    st.one_of(st.just(-1), st.just(-1), st.just(-1), st.integers(0, len(STATES))),
    st.integers(0, 14),  # 0: a 429
)
operation = st.one_of(
    acquire,
    acquire,
    attempt,
    attempt,
    answer,
    answer,
    answer,
    st.tuples(st.just("again"), st.integers(0, 50)),  # a permit answered already
    st.tuples(st.just("release"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("pause"), st.floats(0.0, 2.0)),
    st.tuples(st.just("advance"), st.sampled_from([1e-6, 0.01, 0.1, 0.5, 3.0])),
)


def count_general(limiter: RateLimiter) -> list[int]:
    """Count the answers ``limiter`` takes through its general path (``_observe``), not the
    steady one: the count is the returned list's one item."""
    count = [0]
    inner = limiter._observe

    def counted(permit: Permit, state: BucketState | None, rejected: bool) -> None:
        count[0] += 1
        inner(permit, state, rejected)

    limiter._observe = counted  # type: ignore[method-assign]
    return count


async def replay(
    operations: list[tuple[Any, ...]], first_state: int, queued: int = 0
) -> tuple[int, int]:
    """Run ``operations`` on a limiter and on the reference, comparing them after each one.
    Returns (answers, answers the limiter took through its general path)."""
    limiter, reference = RateLimiter(), FullModel()
    general = count_general(limiter)
    pair: list[RateLimiter] = [limiter, reference]
    in_flight: list[tuple[Permit, Permit]] = []
    answered: list[tuple[Permit, Permit]] = []
    pending: list[tuple[asyncio.Task[Permit], asyncio.Task[Permit]]] = []
    answers = 0

    async def settle() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        for tasks in list(pending):
            if all(task.done() for task in tasks):
                pending.remove(tasks)
                permits = (tasks[0].result(), tasks[1].result())
                assert permits[0] == permits[1]  # the same permit, waited the same
                in_flight.append(permits)

    # A first answer ends slow start; callers queued behind it (``queued``) leave with it, and
    # the refill is held until the next answer.
    last: BucketState | None = STATES[first_state]
    first = (await limiter.acquire(5), await reference.acquire(5))
    for _ in range(queued):
        pending.append(
            (asyncio.create_task(limiter.acquire(5)), asyncio.create_task(reference.acquire(5)))
        )
    await settle()
    for one, permit in zip(pair, first, strict=True):
        one.observe(permit, last)
    await settle()
    assert snapshot(limiter) == snapshot(reference)
    try:
        for op in operations:
            kind = op[0]
            if kind == "acquire":
                pending.append(
                    (
                        asyncio.create_task(limiter.acquire(op[1])),
                        asyncio.create_task(reference.acquire(op[1])),
                    )
                )
            elif kind == "try":
                got = (limiter.try_acquire(op[1]), reference.try_acquire(op[1]))
                assert got[0] == got[1], op  # both None, or the same permit
                # (built without the class call: the same frozen dataclass all the same)
                assert type(got[0]) is type(got[1]) and repr(got[0]) == repr(got[1])
                assert hash(got[0]) == hash(got[1])
                if got[0] is not None and got[1] is not None:
                    in_flight.append((got[0], got[1]))
            elif kind == "answer" and in_flight:
                permits = in_flight.pop(op[1] % len(in_flight))
                if op[2] >= 0:
                    last = STATES[op[2]] if op[2] < len(STATES) else None
                state = last
                rejected = op[3] == 0
                answers += 1
                for one, permit in zip(pair, permits, strict=True):
                    one.observe(permit, state, rejected=rejected)
                    if rejected:
                        one.pause(0.2)
                answered.append(permits)
            elif kind == "again" and answered:
                permits = answered[op[1] % len(answered)]
                state = STATES[0]
                for one, permit in zip(pair, permits, strict=True):
                    one.observe(permit, state)
            elif kind == "release" and in_flight:
                permits = in_flight.pop(op[1] % len(in_flight))
                for one, permit in zip(pair, permits, strict=True):
                    one.release(permit, refund=op[2])
                answered.append(permits)
            elif kind == "pause":
                for one in pair:
                    one.pause(op[1])
            elif kind == "advance" and op[1]:
                await asyncio.sleep(op[1])
            await settle()
            assert snapshot(limiter) == snapshot(reference), op
    finally:
        for tasks in pending:
            for task in tasks:
                task.cancel()
        await asyncio.gather(*(task for tasks in pending for task in tasks), return_exceptions=True)
    return answers, general[0]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(operation, min_size=30, max_size=120),
    st.integers(0, len(STATES) - 1),
    st.sampled_from([0, 0, 1, 3, 30]),
)
def test_inline_paths_hold_the_state_of_the_full_model(
    operations: list[tuple[Any, ...]], first_state: int, queued: int
) -> None:
    run(lambda: replay(operations, first_state, queued))


def test_the_steady_answer_is_taken_by_the_huge_bucket() -> None:
    """The benchmarks' case: every answer the same state, in order; all but the first take
    the steady path, and the state stays that of the full model."""
    huge = len(STATES) - 1
    operations: list[tuple[Any, ...]] = []
    for _ in range(40):
        operations += [("acquire", 5.0), ("advance", 1e-6)]
    for _ in range(200):
        operations += [("answer", 0, -1, 1), ("acquire", 5.0), ("advance", 1e-6)]
    answers, general = run(lambda: replay(operations, huge))
    assert answers == 200
    assert general == 1  # the first answer only (it read the state)


def test_the_model_reads_the_clock_of_its_loop() -> None:
    async def plain() -> None:
        assert LocalLimiter().get()._time is time.monotonic  # asyncio's own clock

    async def virtual() -> None:
        limiter = LocalLimiter().get()
        await asyncio.sleep(5.0)  # virtual seconds, far from the monotonic clock
        assert limiter._time() == asyncio.get_running_loop().time()

    async def replaced() -> None:  # a clock set on the loop itself, not by a loop class
        loop = asyncio.get_running_loop()
        loop.time = lambda: 1_000_000.0  # type: ignore[method-assign]
        try:
            assert LocalLimiter().get()._time() == 1_000_000.0
        finally:
            del loop.time

    asyncio.run(plain())
    run(virtual)
    asyncio.run(replaced())


def test_the_steady_path_logs_its_re_syncs_when_debug_is_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The steady answer reads logging's memo of the level before asking the logger: with DEBUG
    off nothing is logged (and the memo says so), with DEBUG on each re-sync of a token or more
    is logged as before, on the steady path all the same."""

    async def main() -> None:
        limiter = RateLimiter(capacity=100, rate=10, slow_start=False)
        general = count_general(limiter)
        state = BucketState(100.0, 10.0, 50.0, 5.0, None)

        async def answer(wait: float) -> None:
            permit = limiter.try_acquire(5)
            assert permit is not None
            await asyncio.sleep(wait)
            limiter.observe(permit, state)

        limiter.observe(limiter.try_acquire(5), state)  # type: ignore[arg-type]
        assert general == [1]  # the state read once
        caplog.set_level(logging.INFO, logger="qomon_async")
        await answer(10.0)  # refilled to 100, the server says 50: down by 50
        assert limiter.stats.synced_down == 2
        assert LEVELS.get(DEBUG) is False  # the memo answered
        assert not [r for r in caplog.records if "re-sync" in r.getMessage()]
        caplog.set_level(logging.DEBUG, logger="qomon_async")
        await answer(10.0)  # down again, now logged
        await answer(0.0)  # 45 held, the server's 50 certain: up by 5
        assert general == [1]  # every answer after the first took the steady path
        lines = [r.getMessage() for r in caplog.records if "re-sync" in r.getMessage()]
        assert lines == [
            "re-sync down: 100.00 -> 50.00 tokens (server: 50 remaining after #3)",
            "re-sync up: 45.00 -> 50.00 tokens (server: 50 remaining after #4)",
        ]

    run(main)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([1.0, 100.0, 1e6]),
    st.floats(-0.5, 1.2),  # the level, as a share of the capacity
    st.floats(0.0, 2.0),  # seconds since the bucket was last charged
    st.sampled_from([0.0, 1.0, 5.0, 7.5, 150.0, 2e6]),
    st.sampled_from([0.0, 0.5, 3.0, 60.0, 99.0, 2e6]),
)
def test_take_covered_is_take_if_with_the_share_worked_out(
    capacity: float, share: float, elapsed: float, cost: float, reserve: float
) -> None:
    """The grant at once charges through ``take_covered``; the reference works the request's
    share out itself (its cost up to the capacity, the reserve up to what the rest of the
    bucket holds) and charges through ``take_if``: the same answer, the same bucket after."""
    buckets = [_Bucket(max_rate=capacity, time_period=capacity / 10.0) for _ in range(2)]
    for bucket in buckets:
        bucket._level = share * capacity
        bucket._last_check = 100.0
    now = 100.0 + elapsed
    amount = min(cost, capacity)
    spare = min(reserve, capacity - amount) if reserve else 0.0
    covered = buckets[0].take_covered(now, cost, reserve)
    assert covered == _take_if(buckets[1], now, amount, amount + spare)
    assert (buckets[0]._level, buckets[0]._last_check) == (
        buckets[1]._level,
        buckets[1]._last_check,
    )
