"""The limiter's path per request, made short: the same results by fewer calls.

- ``LocalLimiter`` binds its ``acquire`` and ``observe`` to the limiter of the loop that called
  last; a call from another loop still reaches that loop's own limiter (sequential loops, and
  threads running loops at the same time).
- The rate-limit headers of an answer are parsed once per distinct set of values: the state is
  the one a field-by-field parse gives, whatever came before.
- An answer whose reading is what the model predicts records no measure (a zero): the window of
  others' spending holds only what others spent, and the figures are those of a limiter that
  records every measure.
- An answer carrying the very state of the one before reads the server's tokens from it again
  only after a change of shape.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import warnings

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from test_limiter_ledger import SummingLimiter
from test_ratelimit import run

from qomon_async._local_limiter import LocalLimiter, RateLimiter
from qomon_async._ratelimit import (
    BucketState,
    Permit,
    _number,
    _parse_limit_text,
    parse_lowercase_ratelimit_headers,
    parse_ratelimit_headers,
)

# --------------------------------------------------------------------------------------------
# One LocalLimiter, several loops
# --------------------------------------------------------------------------------------------


def test_acquire_and_observe_reach_the_limiter_of_the_calling_loop() -> None:
    limiter = LocalLimiter(slow_start=False)
    seen: list[RateLimiter] = []

    async def main() -> None:
        own = limiter.get()
        permits = [await limiter.acquire(5) for _ in range(3)]
        assert [p.seq for p in permits] == [1, 2, 3]  # this loop's own sequence
        assert own.in_flight == 3
        for permit in permits:
            limiter.observe(permit, BucketState(100, 10, 90))
        assert own.in_flight == 0
        assert own.available == 80  # re-synced by this loop's answers (90, less 10 in flight)
        seen.append(own)

    run(main)
    run(main)  # bound to the first loop's limiter: handed back to this loop's
    assert seen[0] is not seen[1]
    assert (limiter.stats.permits, limiter.stats.syncs) == (6, 6)


def test_an_answer_observed_in_another_loop_is_ignored_there() -> None:
    limiter = LocalLimiter(slow_start=False)

    async def grant() -> tuple[Permit, RateLimiter]:
        return await limiter.acquire(5), limiter.get()

    permit, first = asyncio.run(grant())

    async def answer() -> RateLimiter:
        limiter.observe(permit, BucketState(100, 10, 0))  # not this loop's permit
        return limiter.get()

    second = asyncio.run(answer())
    assert second is not first
    assert first.in_flight == 1 and second.in_flight == 0
    assert limiter.stats.syncs == 0


def test_threads_running_loops_at_once_each_use_their_own_limiter() -> None:
    limiter = LocalLimiter(capacity=1e6, rate=1e6, slow_start=False)
    rounds, threads = 300, 3
    results: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    async def work() -> None:
        own = limiter.get()
        for _ in range(rounds):
            permit = await limiter.acquire(1)
            await asyncio.sleep(0)  # let the other threads call in between
            limiter.observe(permit, BucketState(remaining=1e6 - 1))
        results.append((own._seq, own.in_flight, own.stats.permits))

    def thread() -> None:
        try:
            start.wait()
            asyncio.run(work())
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=thread) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    # Each loop's limiter granted exactly its own thread's permits and heard back from each.
    assert sorted((seq, in_flight) for seq, in_flight, _ in results) == [(rounds, 0)] * threads
    assert limiter.stats.permits == rounds * threads
    assert limiter.stats.syncs == rounds * threads


def test_asyncio_names_the_thread_running_a_loop_and_only_while_it_runs() -> None:
    # What the limiter's "on my loop?" test reads instead of asyncio's running-loop look-up
    # (a getpid system call each): a private attribute of asyncio's loops, pinned here.
    loop = asyncio.new_event_loop()
    try:
        assert loop._thread_id is None  # type: ignore[attr-defined]

        async def inside() -> object:
            return loop._thread_id  # type: ignore[attr-defined]

        assert loop.run_until_complete(inside()) == threading.get_ident()
        assert loop._thread_id is None  # type: ignore[attr-defined]
    finally:
        loop.close()


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The limiter's running-loop look-ups (asyncio's, counted), from now on."""
    from qomon_async import _limiter_fifo, _limiter_model  # noqa: PLC0415

    counter = [0]
    real = asyncio._get_running_loop

    def counted() -> asyncio.AbstractEventLoop | None:
        counter[0] += 1
        return real()

    monkeypatch.setattr(_limiter_fifo, "_running_loop", counted)
    monkeypatch.setattr(_limiter_model, "_running_loop", counted)
    return counter


def test_grants_and_answers_on_the_loop_do_not_look_the_loop_up(lookups: list[int]) -> None:
    limiter = RateLimiter(1e6, 1e6, slow_start=False)
    state = BucketState(1e6, 1e6, 1e6 - 5)  # one state, as the header parser hands back

    async def main(rounds: int) -> None:
        for _ in range(rounds):
            permit = limiter.try_acquire(5)
            assert permit is not None
            limiter.observe(permit, state)

    asyncio.run(main(1))  # binds the limiter to this loop: its thread known from here on
    assert limiter._runner is not None
    lookups[0] = 0
    with pytest.raises(RuntimeError, match="another event loop"):
        asyncio.run(main(1))  # a second loop, same thread: the first is stopped
    assert lookups[0] > 0

    limiter = RateLimiter(1e6, 1e6, slow_start=False)

    async def bound() -> None:
        limiter.try_acquire(5)
        lookups[0] = 0
        await main(50)

    asyncio.run(bound())
    assert lookups[0] == 0  # 50 grants and 50 answers: the thread was enough
    assert limiter.stats.permits == 51
    assert limiter.stats.syncs == 50
    assert limiter._state_read is state  # the steady answer's path was the one taken


def test_a_loop_that_does_not_name_its_thread_is_looked_up(lookups: list[int]) -> None:
    from qomon_async import _limiter_model  # noqa: PLC0415

    limiter = RateLimiter(1e6, 1e6, slow_start=False)
    state = BucketState(1e6, 1e6, 1e6 - 5)

    async def main() -> None:
        limiter.observe(limiter.try_acquire(5), state)  # type: ignore[arg-type]
        limiter._runner = _limiter_model._UNKNOWN_RUNNER  # as for a uvloop loop
        lookups[0] = 0
        for _ in range(10):
            permit = limiter.try_acquire(5)
            assert permit is not None  # still granted at once, after the look-up
            limiter.observe(permit, state)

    asyncio.run(main())
    assert lookups[0] == 20


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork: POSIX only")
def test_a_forked_child_does_not_take_its_copy_of_the_parents_loop_for_its_own() -> None:
    # Forked inside the running loop: the child's thread has the forking thread's ident, and
    # its copy of the loop still names that thread. Its own loop must not pass for it.
    limiter = RateLimiter(1e6, 1e6, slow_start=False)

    def child() -> int:
        async def own_loop() -> None:
            limiter.try_acquire(5)

        try:
            asyncio.run(own_loop())
        except RuntimeError as exc:
            return 0 if "another event loop" in str(exc) else 2
        return 1  # granted: the child took the parent's loop for its own

    async def parent() -> int:
        assert limiter.try_acquire(5) is not None  # bound to this loop
        pid = os.fork()
        if pid == 0:  # the child: report, and leave without running the parent's cleanup
            code = 3
            try:
                code = child()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads about (3.12+)
        assert asyncio.run(parent()) == 0
    assert limiter.stats.permits == 1


def test_a_limiter_bound_to_a_loop_running_in_another_thread_refuses_this_one() -> None:
    limiter = RateLimiter(1e6, 1e6, slow_start=False)
    bound, release = threading.Event(), threading.Event()

    async def hold() -> None:
        limiter.try_acquire(5)  # bound to this thread's loop, which keeps running
        bound.set()
        while not release.is_set():
            await asyncio.sleep(0.001)

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    try:
        assert bound.wait(10)

        async def intrude() -> None:
            limiter.try_acquire(5)

        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(intrude())
    finally:
        release.set()
        holder.join()
    assert limiter.stats.permits == 1


# --------------------------------------------------------------------------------------------
# Header values parsed once per distinct set
# --------------------------------------------------------------------------------------------


def _field_by_field(headers: dict[str, str]) -> BucketState | None:
    names = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-cost", "x-ratelimit-reset")
    if not any(name in headers for name in names):
        return None
    limit = headers.get("x-ratelimit-limit")
    capacity, rate = (None, None) if limit is None else _parse_limit_text(limit)
    return BucketState(
        capacity,
        rate,
        _number(headers.get("x-ratelimit-remaining")),
        _number(headers.get("x-ratelimit-cost")),
        _number(headers.get("x-ratelimit-reset")),
    )


def test_repeated_and_changing_header_values_parse_as_field_by_field() -> None:
    rng = random.Random(5)
    values = {
        "x-ratelimit-limit": ["burst:100;rate:10.0", "burst:50;rate:5", "garbled", "burst:0"],
        "x-ratelimit-remaining": ["95", "90", "0", "-3", "nan", "inf", "x", " 7 "],
        "x-ratelimit-cost": ["5", "1", "", "2.5"],
        "x-ratelimit-reset": ["0.5", "1", "0.000005", "1e400", "-1"],
    }
    previous: dict[str, str] = {}
    for _ in range(3000):
        roll = rng.random()
        if roll < 0.4 and previous:
            # The same values again, in new strings (as a new answer carries them).
            headers = {name: "".join(list(value)) for name, value in previous.items()}
        elif roll < 0.45:
            headers = {"content-type": "application/json"}  # none of the four
        else:
            headers = {
                name: rng.choice(choices) for name, choices in values.items() if rng.random() < 0.9
            }
        expected = _field_by_field(headers)
        assert parse_lowercase_ratelimit_headers(headers) == expected, headers
        mixed_case = {name.title(): value for name, value in headers.items()}
        assert parse_ratelimit_headers(mixed_case) == expected, headers
        # The client's answers: aiohttp's case-insensitive headers, all four there or not.
        answer = CIMultiDictProxy(CIMultiDict(mixed_case))
        assert parse_lowercase_ratelimit_headers(answer) == expected, headers
        previous = headers


# --------------------------------------------------------------------------------------------
# Readings the model predicts
# --------------------------------------------------------------------------------------------


def test_readings_the_model_predicts_leave_the_window_empty() -> None:
    async def main() -> None:
        limiter = RateLimiter(capacity=100, rate=10, slow_start=False)
        loop = asyncio.get_running_loop()
        for _ in range(50):
            permit = await limiter.acquire(5)
            await asyncio.sleep(1.0)  # the bucket refills between creates: 95 after each
            limiter.observe(permit, BucketState(100, 10, 95, 5, 0.5))
        assert len(limiter._others) == 0
        assert (limiter._reserve, limiter._bucket.leak) == (0.0, 10.0)
        assert limiter.stats.syncs == 50
        # Another consumer takes 30 tokens: measured, the refill left to it.
        permit = await limiter.acquire(5)
        await asyncio.sleep(1.0)
        limiter.observe(permit, BucketState(100, 10, 65, 5, 3.5))
        assert len(limiter._others) == 1
        assert limiter._others.total == 30.0
        assert limiter._bucket.leak < 10.0
        assert limiter._reading is not None and limiter._reading[0] == loop.time()

    run(main)


def test_predicted_readings_beside_others_measures_match_a_limiter_recording_them_all() -> None:
    """A zero measure is not recorded even when the window holds others' measures; the refill
    and the reserve stay those of a limiter that records every measure, and fade on time."""

    async def main() -> None:
        ours = RateLimiter(capacity=100, rate=10, slow_start=False)
        reference = SummingLimiter(capacity=100, rate=10, slow_start=False)
        server = 100.0
        beside_others = 0
        for step in range(40):
            a, b = await asyncio.gather(ours.acquire(5), reference.acquire(5))
            await asyncio.sleep(1.0)
            taken = 30.0 if step in (3, 5) else 0.0  # another consumer, twice
            server = min(100.0, server + 10.0) - 5.0 - taken
            answer = BucketState(100, 10, server, 5, (100 - server) / 10)
            ours.observe(a, answer)
            reference.observe(b, answer)
            figures = (ours.available, ours._bucket.leak, ours._reserve, ours.stats.synced_down)
            expected = (
                reference.available,
                reference._bucket.leak,
                reference._reserve,
                reference.stats.synced_down,
            )
            assert figures == pytest.approx(expected, abs=1e-9), step
            # Ours keeps exactly the reference's non-zero measures.
            nonzero = sum(1 for _, spent in reference._plain.items if spent)
            assert len(ours._others) == nonzero, step
            if len(ours._others) < len(reference._others) and ours._reserve:
                beside_others += 1  # a zero left out while others' bites count
        assert beside_others > 0
        # A bucket's worth of time later, both bites have left the window: on a zero reading.
        assert len(ours._others) == 0
        assert ours._bucket.leak == pytest.approx(10.0, abs=1e-9)  # changes below 1e-9: kept
        assert ours._reserve == 0.0

    run(main)


def test_a_repeated_state_reads_its_tokens_under_the_current_shape() -> None:
    async def main() -> None:
        limiter = RateLimiter(capacity=100, rate=10, slow_start=False)
        full_in_a_second = BucketState(reset=1.0)  # 100 - 1 s x 10/s: 90 tokens
        for _ in range(2):
            permit = await limiter.acquire(1)
            limiter.observe(permit, full_in_a_second)
            assert limiter._reading is not None and limiter._reading[1] == 90.0
        permit = await limiter.acquire(1)
        limiter.observe(permit, BucketState(200, 20, 150))  # a new shape
        assert (limiter.capacity, limiter.rate) == (200, 20)
        permit = await limiter.acquire(1)
        limiter.observe(permit, full_in_a_second)  # read again, under the new shape
        assert limiter._reading is not None and limiter._reading[1] == 180.0
        assert limiter.stats.syncs == 4

    run(main)
