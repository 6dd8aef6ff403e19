"""The limiter's bookkeeping per answer: the same figures as plain sums, and no scan.

``RateLimiter`` keeps running sums over the window of other consumers' spending, a monotonic
deque for the largest bite, a heap of rejected permits and sorted lists of the permits in
flight, one per cost (``qomon_async._limiter_ledger``). These tests check that

- on random traffic (out-of-order answers, 429s, another consumer, releases, pauses), the
  limiter takes every decision a limiter that sums everything on every answer takes, at the
  same (virtual) times, with the same model after each answer;
- the work per answer does not depend on how many measures the window holds, and grows at most
  logarithmically with the permits in flight (binary searches; no Python loop over them):
  operations are counted, not timed.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
from typing import Any

import pytest
from test_ratelimit import run

from qomon_async._limiter_ledger import InFlight, InFlightLedger, OthersWindow
from qomon_async._local_limiter import RateLimiter
from qomon_async._ratelimit import BucketState, Permit, server_tokens

# --------------------------------------------------------------------------------------------
# The reference: the estimator summing everything on every answer
# --------------------------------------------------------------------------------------------


class _PlainOthers:
    """The window as a plain deque, summed and searched on every use."""

    def __init__(self) -> None:
        self.items: collections.deque[tuple[float, float]] = collections.deque()

    def __len__(self) -> int:
        return len(self.items)

    def oldest(self) -> float | None:
        return self.items[0][0] if self.items else None


class SummingLimiter(RateLimiter):
    """The estimator written with plain sums (as before the running sums): the reference."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain = _PlainOthers()
        self._others = self._plain  # type: ignore[assignment]
        self._rejected_by_seq: dict[int, float] = {}

    def observe(self, permit: Permit, state: BucketState | None, *, rejected: bool = False) -> None:
        self._observe(permit, state, rejected)  # every answer through _sync, the steady one too

    def _sync(self, permit: Permit, state: BucketState | None, rejected: bool) -> None:
        entries = self._ledger._entries
        if permit.seq in entries and rejected:
            self._rejected_by_seq[permit.seq] = permit.cost
        entry = self._ledger.pop(permit.seq)
        if entry is None or state is None or self._loop is None:
            return
        now = self._loop.time()
        capacity, rate = self._shape
        if (
            state.capacity is not None
            and state.rate is not None
            and self._reshape(now, state.capacity, state.rate)
        ):
            capacity, rate = state.capacity, state.rate
        server = server_tokens(state, capacity, rate)
        if server is None:
            return
        self._informed = True
        later_unanswered = sum(f[0] for s, f in entries.items() if s > permit.seq)
        assert later_unanswered == pytest.approx(self._ledger.later(permit.seq))
        high = server - later_unanswered
        _cost, granted_total, in_flight_before = entry
        low = server - (self._granted_total - granted_total) - in_flight_before
        local = self._bucket.tokens(now)
        self.stats.syncs += 1
        self._measure_others(now, server, permit.seq, granted_total)
        if local > high + 1e-9:
            self.stats.synced_down += 1
            self._bucket.set_state(now, high)
        elif local < low - 1e-9 and permit.seq > self._no_rise_upto:
            self.stats.synced_up += 1
            self._bucket.set_state(now, min(low, self._bucket.max_rate))

    def _measure_others(self, now: float, server: float, seq: int, granted_total: float) -> None:
        previous = self._reading
        if previous is not None and seq < previous[2]:
            return
        self._reading = (now, server, seq, granted_total)
        if previous is not None:
            then, tokens, since, granted = previous
            refused = sum(c for s, c in self._rejected_by_seq.items() if since < s <= seq)
            ours = granted_total - granted - refused
            expected = min(tokens + self.rate * (now - then), self.capacity)
            self._plain.items.append((now, expected - ours - server))
            for old in [s for s in self._rejected_by_seq if s <= seq]:
                del self._rejected_by_seq[old]
        self._apply_others(now)

    def _apply_others(self, now: float) -> None:
        items = self._plain.items
        window = self.capacity / self.rate
        while items and items[0][0] < now - window:
            items.popleft()
        others = max(sum(spent for _, spent in items) / window, 0.0)
        significant = others > 0.02 * self.rate
        self._reserve = max((spent for _, spent in items), default=0.0) if significant else 0.0
        leak = max(self.rate - others, 0.1 * self.rate)
        if abs(leak - self._bucket.leak) > 1e-9:
            self._bucket.set_leak(now, leak)


# --------------------------------------------------------------------------------------------
# Random traffic against a simulated server
# --------------------------------------------------------------------------------------------


class Server:
    """Qomon's bucket as the server keeps it: charges requests in the order it processes them."""

    def __init__(self, capacity: float, rate: float, at: float) -> None:
        self.capacity, self.rate = capacity, rate
        self.tokens, self.at = capacity, at

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def spend(self, now: float, cost: float) -> bool:
        self.refill(now)
        if self.tokens < cost:
            return False
        self.tokens -= cost
        return True

    def headers(self, cost: float) -> BucketState:
        remaining = math.floor(self.tokens)
        reset = (self.capacity - self.tokens) / self.rate
        return BucketState(self.capacity, self.rate, remaining, cost, round(reset, 3))


def _snapshot(limiter: RateLimiter) -> tuple[Any, ...]:
    s = limiter.stats
    return (
        round(limiter.available, 6),
        round(limiter._bucket.leak, 9),
        round(limiter._reserve, 6),
        limiter.in_flight,
        limiter.waiters,
        s.permits,
        s.syncs,
        s.synced_down,
        s.synced_up,
        s.waits,
        s.pauses,
    )


async def _traffic(seed: int, steps: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    ours, reference = RateLimiter(slow_start=False), SummingLimiter(slow_start=False)
    server = Server(100.0, 10.0, loop.time())
    pending: list[tuple[Permit, Permit]] = []
    other_rate = rng.choice([0.0, 1.0, 3.0, 6.0])
    concurrency = rng.choice([1, 4, 16, 40])
    trace: list[tuple[Any, ...]] = []
    for _ in range(steps):
        await asyncio.sleep(rng.choice([0.0, 0.01, 0.05, 0.2]))
        now = loop.time()
        if other_rate and rng.random() < 0.5:
            server.spend(now, min(rng.expovariate(1 / other_rate) * 0.1, server.tokens))
        if rng.random() < 0.01:  # now and then, someone empties the bucket: 429s follow
            server.spend(now, server.tokens)
        if len(pending) < concurrency and rng.random() < 0.6:
            cost = rng.choice([1, 1, 5])
            # Both limiters are asked at once: they must grant at the same (virtual) time.
            a, b = await asyncio.gather(ours.acquire(cost), reference.acquire(cost))
            assert (a.seq, a.cost, a.granted_at) == (b.seq, b.cost, b.granted_at)
            pending.append((a, b))
        elif pending:
            # The server answers in roughly, not exactly, the order of sending.
            index = min(int(rng.expovariate(0.5)), len(pending) - 1)
            a, b = pending.pop(index)
            now = loop.time()
            roll = rng.random()
            if roll < 0.05:
                ours.release(a)
                reference.release(b)
            elif roll < 0.1:
                ours.observe(a, None)
                reference.observe(b, None)
            else:
                charged = server.spend(now, a.cost)
                state = server.headers(a.cost)
                ours.observe(a, state, rejected=not charged)
                reference.observe(b, state, rejected=not charged)
                if not charged and rng.random() < 0.5:
                    ours.pause(0.3)
                    reference.pause(0.3)
        mine, theirs = _snapshot(ours), _snapshot(reference)
        assert mine == pytest.approx(theirs, abs=1e-6), (seed, mine, theirs)
        trace.append(mine)
    return trace


@pytest.mark.parametrize("seed", range(24))
def test_same_decisions_as_summing_everything(seed: int) -> None:
    trace = run(lambda: _traffic(seed, 400))
    assert len(trace) == 400


def test_the_random_traffic_exercises_the_estimator() -> None:
    """The comparison above is not vacuous: syncs both ways, others measured, a reserve kept."""
    traces = [run(lambda s=s: _traffic(s, 400)) for s in range(24)]  # type: ignore[misc]
    last = [t[-1] for t in traces]
    assert any(t[7] > 0 for t in last) and any(t[8] > 0 for t in last)  # down and up
    assert any(step[1] < 10.0 - 1e-6 for t in traces for step in t)  # a reduced refill
    assert any(step[2] > 0 for t in traces for step in t)  # a reserve
    assert any(t[9] > 0 for t in last)  # someone waited
    assert any(t[10] > 0 for t in last)  # a 429 paused


# --------------------------------------------------------------------------------------------
# The structures alone
# --------------------------------------------------------------------------------------------


def test_in_flight_ledger_matches_a_plain_sum() -> None:
    rng = random.Random(7)
    ledger = InFlightLedger()
    plain: dict[int, InFlight] = {}
    seq, granted, peak = 0, 0.0, 0
    for _ in range(5000):
        if plain and rng.random() < 0.48:
            # Mostly the oldest few, sometimes anything (a straggler stays for long).
            keys = sorted(plain)
            victim = keys[min(int(rng.expovariate(0.3)), len(keys) - 1)]
            expected_later = sum(e[0] for s, e in plain.items() if s > victim)
            entry: InFlight | None
            if rng.random() < 0.5:  # what an answer uses: both at once
                answered = ledger.answer(victim)
                assert answered is not None
                entry, later = answered
            else:  # what a release uses, and the later permits asked apart
                entry = ledger.pop(victim)
                later = ledger.later(victim)
            assert entry == plain.pop(victim)
            assert later == pytest.approx(expected_later)
            assert ledger.pop(victim) is None
            assert ledger.answer(victim) is None
        else:
            seq += 1
            # Mostly two costs, as a client uses; now and then one more (the classes grow).
            cost = rng.choice([1.0, 5.0, 1.0, 5.0, 0.5, float(rng.randrange(2, 40))])
            granted += cost
            plain[seq] = (cost, granted, sum(e[0] for e in plain.values()))
            ledger.add(seq, cost, granted)
            assert ledger._entries[seq] == pytest.approx(plain[seq])
            # Costs no longer in flight are dropped once 8 are kept: the deques stay few, and short.
            assert all(len(k) <= len(plain) for k in ledger._classes.values())
            peak = max(peak, len({e[0] for e in plain.values()}))
            assert len(ledger._classes) <= max(8, peak + 1)
        assert ledger.total == pytest.approx(sum(e[0] for e in plain.values()))
        assert len(ledger) == len(plain)


def test_others_window_matches_a_plain_sum_and_max() -> None:
    rng = random.Random(3)
    window = OthersWindow()
    plain: collections.deque[tuple[float, float]] = collections.deque()
    t = 0.0
    for _ in range(3000):
        t += rng.choice([0.0, 0.01, 0.1, 0.5])
        spent = rng.uniform(-5, 5)
        cutoff = t - rng.choice([0.2, 1.0, 3.0])
        plain.append((t, spent))
        while plain and plain[0][0] < cutoff:
            plain.popleft()
        if rng.random() < 0.5:
            total = window.add(t, spent, cutoff)
        else:  # a measure, and later the window moves on without one (the limiter's timer)
            window.add(t, spent, t - 10.0)
            total = window.expire(cutoff)
        assert total == window.total
        assert len(window) == len(plain)
        assert window.total == pytest.approx(sum(s for _, s in plain), abs=1e-9)
        assert window.largest() == max((s for _, s in plain), default=0.0)


# --------------------------------------------------------------------------------------------
# O(1) per answer: operations counted
# --------------------------------------------------------------------------------------------


class CountingDeque(collections.deque):  # type: ignore[type-arg]
    """A deque that counts every access, and refuses to be iterated."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __iter__(self) -> Any:
        raise AssertionError("the window was scanned")

    def __getitem__(self, index: Any) -> Any:
        self.ops += 1
        return super().__getitem__(index)

    def __len__(self) -> int:
        self.ops += 1
        return super().__len__()

    def append(self, item: Any) -> None:
        self.ops += 1
        super().append(item)

    def popleft(self) -> Any:
        self.ops += 1
        return super().popleft()

    def pop(self) -> Any:  # type: ignore[override]
        self.ops += 1
        return super().pop()


class CountingEntries(dict):  # type: ignore[type-arg]
    """The ledger's dict of permits in flight, refusing to be iterated."""

    def items(self) -> Any:
        raise AssertionError("the permits in flight were scanned")

    def __iter__(self) -> Any:
        raise AssertionError("the permits in flight were scanned")

    values = keys = __iter__


class CountingList(collections.deque):  # type: ignore[type-arg]
    """A deque of sequence numbers in flight that counts the reads of the binary searches
    (bisect reads a subclass through ``__getitem__``) and refuses to be iterated."""

    reads = 0

    def __getitem__(self, index: Any) -> Any:
        CountingList.reads += 1
        return super().__getitem__(index)

    def __iter__(self) -> Any:
        raise AssertionError("the permits in flight were scanned")


class CountingLedger(InFlightLedger):
    def __init__(self) -> None:
        super().__init__()
        self._entries = CountingEntries()

    def new_class(self, cost: float, seq: int) -> None:
        super().new_class(cost, seq)  # (the limiter adds inline, calling this for a new cost)
        self._classes[cost] = CountingList(self._classes[cost])

    @property
    def steps(self) -> int:
        return CountingList.reads


async def _work_per_answer(
    window_readings: int, concurrency: int, *, in_order: bool = False
) -> dict[str, float]:
    """Answers at 1,000/s, in random order (or in order), ``concurrency`` in flight; a window
    holding ``window_readings`` measures. Returns the operations per answer in the steady
    state."""
    rng = random.Random(window_readings * 7 + concurrency)
    dt, rate = 0.001, 10_000.0
    limiter = RateLimiter(capacity=window_readings * dt * rate, rate=rate, slow_start=False)
    deque_items, deque_maxima = CountingDeque(), CountingDeque()
    limiter._others._items = deque_items
    limiter._others._maxima = deque_maxima
    ledger = CountingLedger()
    limiter._ledger = ledger
    capacity = limiter.capacity
    pending: list[Permit] = []
    server = capacity
    measured = 0
    warmup = window_readings + concurrency + 200
    before: tuple[int, int] = (0, 0)
    for step in range(warmup + 2000):
        if step == warmup:
            before = (deque_items.ops + deque_maxima.ops, ledger.steps)
        while len(pending) < concurrency:
            pending.append(await limiter.acquire(rng.choice([1, 5])))
        await asyncio.sleep(dt)
        permit = pending.pop(0 if in_order else rng.randrange(len(pending)))
        # Another consumer takes a bite now and then: the reserve and the max are in use.
        server = min(capacity, server + dt * rate) - 1 - (rng.random() < 0.1) * rng.uniform(0, 30)
        remaining = max(0.0, math.floor(server + rng.uniform(-2, 2)))
        limiter.observe(permit, BucketState(remaining=remaining), rejected=rng.random() < 0.01)
        if step >= warmup:
            measured += 1
    assert limiter.stats.syncs >= warmup
    return {
        "window": len(limiter._others),
        "deque_ops": (deque_items.ops + deque_maxima.ops - before[0]) / measured,
        "search_reads": (ledger.steps - before[1]) / measured,
        "classes": len(ledger._classes),
    }


def test_work_per_answer_does_not_grow_with_the_window() -> None:
    small = run(lambda: _work_per_answer(50, 8))
    large = run(lambda: _work_per_answer(5000, 8))
    # (answers overtaken by a later one are not measures: about half, in random order)
    assert large["window"] >= 1000
    assert large["window"] >= 50 * small["window"]
    # A hundred times the measures in the window, the same deque work per answer (a handful of
    # appends, pops and peeks), and no scan (the deques refuse iteration).
    assert large["deque_ops"] <= 12
    assert large["deque_ops"] == pytest.approx(small["deque_ops"], rel=0.15)


def test_work_per_answer_grows_at_most_logarithmically_with_the_permits_in_flight() -> None:
    results = {}
    for c in (1, 16, 256):
        CountingList.reads = 0
        results[c] = run(lambda c=c: _work_per_answer(200, c))  # type: ignore[misc]
    for c, result in results.items():
        # Answers in random order, two costs: per answer, one binary search to leave its list
        # and one per cost to count the later permits, each at most log2(c) + 2 reads (plus
        # one peek at the head of its list).
        assert result["classes"] == 2, (c, result)
        bound = 3 * (math.log2(c) + 2) + 1
        assert result["search_reads"] <= bound, (c, result)
    # The permits in flight themselves are never summed (the dict and lists refuse iteration).
    assert results[256]["search_reads"] < 256 / 4
    # Answers in order (the oldest in flight answered first) leave their list at its head.
    CountingList.reads = 0
    in_order = run(lambda: _work_per_answer(200, 256, in_order=True))
    assert in_order["search_reads"] <= 3 * (math.log2(256) + 2) + 1
