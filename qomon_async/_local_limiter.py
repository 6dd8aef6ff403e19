"""The local limiter: a model of Qomon's token bucket inside one process, on aiolimiter.

Qomon meters each space with one bucket (100 tokens, refilled at 10/s; ``POST /contacts`` and
``PATCH /contacts/{id}`` cost 5, everything else 1) shared by every process using the space.
This module models that bucket locally so that the client spends it exactly: no 429 it could
have avoided, no token left idle while work waits, first come first served. It is the only
module of the package that imports :mod:`aiolimiter`.

Public surface (private module; the client is the only caller)::

    route_cost(method, path) -> int                  # 5 for POST /contacts, PATCH /contacts/{id}
    parse_ratelimit_headers(headers) -> BucketState | None   # X-Ratelimit-* of any response
    parse_retry_after(value, *, now=None) -> float | None    # Retry-After of a 429, in seconds

    registry = LimiterRegistry(capacity=100, rate=10)  # one per client, built anywhere
    limiter = registry.get()                # the RateLimiter of the running loop (lazy)
    permit = await limiter.acquire(cost)    # FIFO; waits for tokens, a 429 pause, slow start
    limiter.observe(permit, state)          # a response came back (any status): re-sync
    limiter.release(permit, refund=False)   # no response came back (transport failure)
    limiter.pause(retry_after)              # a 429: every request waits that long
    registry.stats / limiter.stats          # LimiterStats counters

Around each request the client does::

    permit = await limiter.acquire(route_cost(method, path))
    try:
        response = await send(...)
    except BaseException:
        limiter.release(permit, refund=<the request surely never left>)
        raise
    limiter.observe(permit, parse_ratelimit_headers(response.headers))
    if response.status == 429:
        limiter.pause(parse_retry_after(response.headers.get("Retry-After")) or 1.0)

How the local model follows the server (``observe``): a response's ``X-Ratelimit-Remaining``
is the server's bucket right after *that* request, which predates the permits we granted after
it. The limiter keeps the permits it granted and has not heard back from, by sequence number,
and turns the server's figure into a band for the bucket *now*:

* ``high = remaining - cost(later permits still unanswered)``: the likely truth; when the local
  model holds more than ``high`` (another process spent tokens), it drops to ``high``.
* ``low = remaining - cost(every later permit) - cost(permits in flight when it was granted)``:
  what is certain whatever order the server processed our requests in; when the local model
  holds less than ``low`` (it over-charged, e.g. for requests the server rejected), it rises to
  ``low``, never above the capacity, and never from a response to a request sent before the
  latest 429 pause.

Other consumers of the space are measured, not only suffered: between two server readings the
bucket gains the refill and loses what we were granted; what else it lost, others spent. Over
one bucket's worth of refill time, that is a rate: the local bucket then refills at the server's
rate minus it, and keeps the largest bite others took in reserve, so that a bite landing just
before a request does not turn it into a 429. When others stop, both fade within that window.

No refill is credited for the time between the server's answer and now, which leaves a margin
of about one round trip of tokens. Until a first response has carried these headers the limiter
lets only one request out at a time (slow start). A 429 empties the local bucket and holds
every waiter until ``Retry-After`` has passed; then the refill paces them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aiolimiter import AsyncLimiter

from ._ratelimit import (
    DEFAULT_CAPACITY,
    DEFAULT_RATE,
    BucketState,
    LimiterStats,
    Permit,
)

__all__ = ["LimiterRegistry", "LocalLimiter", "RateLimiter"]

logger = logging.getLogger("qomon_async")

# A wait shorter than this is logged at DEBUG only; a 429 pause is always logged at INFO.
_LONG_WAIT = 5.0


# --------------------------------------------------------------------------------------------
# The aiolimiter bucket, and the one place that touches its internals
# --------------------------------------------------------------------------------------------


class _Bucket(AsyncLimiter):
    """aiolimiter's leaky bucket, plus a reader and a writer of its level.

    aiolimiter models the bucket as a *level* of spent capacity that leaks at ``max_rate /
    time_period`` per second; it has no public way to read or set that level, and following the
    server needs both. Re-creating an ``AsyncLimiter`` at each response would lose its waiter
    and its wake-up timer, so this subclass reads and writes the three private attributes
    ``_level``, ``_last_check`` and ``_rate_per_sec`` in :meth:`tokens` and :meth:`set_state`
    only, then calls ``_wake_next`` (aiolimiter >= 1.2) so that a waiting ``acquire`` re-times
    itself at once. ``tests/test_ratelimit.py::test_bucket_internals_match_aiolimiter`` fails
    if these internals change meaning.
    """

    def tokens(self, now: float) -> float:
        """Tokens available at loop time ``now`` (may be negative: a debt), without side effect."""
        level = self._level
        if level:
            # Mirrors AsyncLimiter._leak: the level drains from _last_check, never below zero.
            level = max(level - (now - self._last_check) * self._rate_per_sec, 0.0)
        return self.max_rate - level

    def set_state(
        self,
        now: float,
        available: float,
        *,
        capacity: float | None = None,
        rate: float | None = None,
    ) -> None:
        """Make the bucket hold ``available`` tokens at loop time ``now``; optionally reshape.

        ``available`` may be negative (requests in flight that the server has yet to charge);
        it is capped at the capacity.
        """
        if capacity is not None and rate is not None:
            self.max_rate = capacity
            self.time_period = capacity / rate
            self._rate_per_sec = rate
        self._level = self.max_rate - min(available, self.max_rate)
        self._last_check = now
        wake: Callable[[], None] | None = getattr(self, "_wake_next", None)
        if wake is not None:
            wake()

    @property
    def rate(self) -> float:
        """Refill rate in tokens per second (the bucket's shape)."""
        return self.max_rate / self.time_period

    def set_leak(self, now: float, rate: float) -> None:
        """Refill at ``rate`` tokens per second from ``now`` on, the shape unchanged.

        Used to leave to other consumers of the space the share of the refill they are seen
        to spend (``RateLimiter._note_external``).
        """
        available = self.tokens(now)
        self._rate_per_sec = rate
        self.set_state(now, available)


@dataclass(frozen=True)
class _InFlight:
    """What the limiter remembers of a permit until its response (or failure) comes back."""

    cost: float
    granted_total: float  # RateLimiter._granted_total right after this grant
    in_flight_before: float  # tokens of the permits in flight when this one was granted


class RateLimiter:
    """A local model of one Qomon bucket, shared by every request of a client on one loop.

    Bound to the first event loop that uses it; use :class:`LimiterRegistry` to get one per
    loop. Waiters are served first come, first served: only the head of the queue waits inside
    aiolimiter, whose own queue orders by amount and would let 1-token calls starve a 5-token
    create.

    Args:
        capacity: bucket size in tokens (``burst``); the server's ``X-Ratelimit-Limit`` wins.
        rate: refill in tokens per second.
        slow_start: until a response has carried the rate-limit headers, let only one request
            out at a time (the bucket may already be drained by another process).
        stats: counters to add to (a registry shares one across its limiters).
    """

    def __init__(
        self,
        capacity: float = DEFAULT_CAPACITY,
        rate: float = DEFAULT_RATE,
        *,
        slow_start: bool = True,
        stats: LimiterStats | None = None,
    ) -> None:
        if not (capacity > 0 and rate > 0 and math.isfinite(capacity) and math.isfinite(rate)):
            raise ValueError("capacity and rate must be positive numbers")
        self._bucket = _Bucket(max_rate=capacity, time_period=capacity / rate)
        self.stats = stats if stats is not None else LimiterStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        # FIFO gate: asyncio.Lock wakes its waiters in arrival order and never lets a newcomer
        # overtake a queued waiter; the holder is the only task inside the aiolimiter bucket.
        self._gate = asyncio.Lock()
        self._changed = asyncio.Event()  # set by observe/release: wakes a slow-start wait
        self._waiting = 0
        self._seq = 0
        self._granted_total = 0.0  # tokens granted so far: later-permit costs by difference
        self._in_flight_cost = 0.0  # tokens of the permits not yet answered
        self._unanswered: dict[int, _InFlight] = {}
        self._slow_start = slow_start
        self._informed = False  # a response has carried the headers
        self._paused_until = -math.inf
        self._no_rise_upto = 0  # responses to permits up to this seq may not raise the model
        self._on_reshape: Callable[[float, float], None] | None = None  # set by the registry
        # Tokens other consumers of the space were seen to spend: (loop time, tokens), and the
        # server reading they are measured from: (loop time, tokens, our tokens granted so far).
        self._external: collections.deque[tuple[float, float]] = collections.deque()
        self._reading: tuple[float, float, int, float] | None = None
        self._rejected: dict[int, float] = {}  # seq -> cost of permits answered 429
        self._reserve = 0.0  # tokens kept back while others spend (see _measure_others)

    # -- state -------------------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError(
                "this RateLimiter belongs to another event loop; use LimiterRegistry.get()"
            )
        return loop

    def _now(self) -> float | None:
        return self._loop.time() if self._loop is not None else None

    @property
    def capacity(self) -> float:
        """Bucket size in tokens."""
        return float(self._bucket.max_rate)

    @property
    def rate(self) -> float:
        """Refill rate in tokens per second."""
        return self._bucket.rate

    @property
    def available(self) -> float:
        """Tokens the local model holds now (negative: a debt of requests in flight)."""
        now = self._now()
        return self.capacity if now is None else self._bucket.tokens(now)

    @property
    def waiters(self) -> int:
        """Callers waiting in :meth:`acquire`."""
        return self._waiting

    @property
    def in_flight(self) -> int:
        """Permits granted and not yet observed or released."""
        return len(self._unanswered)

    @property
    def paused_until(self) -> float | None:
        """Loop time at which the current 429 pause ends, or None when not paused."""
        now = self._now()
        if now is None or self._paused_until <= now:
            return None
        return self._paused_until

    def __repr__(self) -> str:
        state = (
            f"capacity={self.capacity:g} rate={self.rate:g}/s available={self.available:.2f} "
            f"waiters={self.waiters} in_flight={self.in_flight}"
        )
        until, now = self.paused_until, self._now()
        if until is not None and now is not None:
            state += f" paused_until={until:.3f} (in {until - now:.3f} s)"
        if self._slow_start and not self._informed:
            state += " slow_start"
        return f"<RateLimiter {state}>"

    # -- acquiring ---------------------------------------------------------------------------

    def _slow_start_blocks(self) -> bool:
        return self._slow_start and not self._informed and bool(self._unanswered)

    async def acquire(
        self, cost: float, *, max_wait: float | None = None, max_pause: float | None = None
    ) -> Permit:
        """Wait for the right to send one request costing ``cost`` tokens, and charge them.

        Callers are served in arrival order. A caller waits while an earlier one waits, while a
        429 pause lasts, during slow start while a request is in flight, and until the bucket
        holds ``cost`` tokens. Cancelling a waiter charges nothing and keeps the queue intact.

        Args:
            cost: tokens the request costs (see :func:`route_cost`); a cost above the capacity
                takes the whole bucket.

        Returns:
            A :class:`Permit`; hand it back to :meth:`observe` or :meth:`release`.

        Raises:
            ValueError: ``cost`` is negative or not a number.
        """
        if not (cost >= 0 and math.isfinite(cost)):
            raise ValueError(f"cost must be a non-negative number, got {cost!r}")
        loop = self._bind()
        start = loop.time()
        reasons: list[str] = []
        self._waiting += 1
        try:
            if self._gate.locked():
                reasons.append(f"queued behind {self._waiting - 1}")
            async with self._gate:
                await self._wait_turn(loop, cost, reasons)
                return self._grant(cost, loop.time() - start, reasons)
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        finally:
            self._waiting -= 1

    async def _wait_turn(
        self, loop: asyncio.AbstractEventLoop, cost: float, reasons: list[str]
    ) -> None:
        """As head of the queue: wait out a pause, slow start and the bucket, then charge."""
        while True:
            now = loop.time()
            if self._paused_until > now:
                delay = self._paused_until - now
                reasons.append(f"paused by 429 until {self._paused_until:.3f}")
                logger.debug("request waits %.3f s: paused by a 429", delay)
                await asyncio.sleep(delay)
                continue
            if self._slow_start_blocks():
                reasons.append("slow start")
                logger.debug("request waits: slow start, for the first rate-limit headers")
                self._changed.clear()
                await self._changed.wait()
                continue
            amount = min(cost, self._bucket.max_rate)
            # While others spend the same bucket in bites, keep the largest bite in reserve: a
            # bite landing just before this request then does not turn it into a 429.
            reserve = min(self._reserve, self._bucket.max_rate - amount)
            missing = amount + reserve - self._bucket.tokens(now)
            if missing > 0:
                reasons.append("bucket empty")
                logger.debug(
                    "request waits ~%.3f s: bucket empty (%.2f tokens available, %g needed)",
                    missing / self._bucket.rate,
                    amount - missing,
                    amount,
                )
            await self._bucket.acquire(amount + reserve)
            if reserve:
                now = loop.time()
                self._bucket.set_state(now, self._bucket.tokens(now) + reserve)
            if self._paused_until > loop.time():
                # A 429 arrived while we waited inside the bucket: give the tokens back and
                # wait out the pause (nothing may leave before Retry-After has passed).
                now = loop.time()
                self._bucket.set_state(now, self._bucket.tokens(now) + amount)
                continue
            return

    def _grant(self, cost: float, waited: float, reasons: list[str]) -> Permit:
        self._seq += 1
        self._granted_total += cost
        now = self._loop.time() if self._loop is not None else 0.0
        self._unanswered[self._seq] = _InFlight(cost, self._granted_total, self._in_flight_cost)
        self._in_flight_cost += cost
        stats = self.stats
        stats.permits += 1
        stats.tokens += cost
        if waited > 0:
            stats.waits += 1
            stats.wait_seconds += waited
            logger.log(
                logging.INFO if waited >= _LONG_WAIT else logging.DEBUG,
                "permit #%d (cost %g) granted after waiting %.3f s (%s)",
                self._seq,
                cost,
                waited,
                ", ".join(dict.fromkeys(reasons)) or "bucket empty",
            )
        return Permit(seq=self._seq, cost=cost, waited=waited, granted_at=now)

    # -- hearing back ------------------------------------------------------------------------

    def release(self, permit: Permit, *, refund: bool = False) -> None:
        """The request of ``permit`` got no response (transport failure, cancellation).

        Args:
            permit: from :meth:`acquire`.
            refund: give the tokens back; only when the request surely never reached the server
                (the connection was never made). By default the tokens stay spent.
        """
        entry = self._answered(permit)
        if entry is not None and refund and self._loop is not None:
            now = self._loop.time()
            self._bucket.set_state(now, self._bucket.tokens(now) + permit.cost)
            self.stats.tokens -= permit.cost

    def observe(self, permit: Permit, state: BucketState | None, *, rejected: bool = False) -> None:
        """A response to the request of ``permit`` came back (any status): re-sync.

        Follows the shape of ``X-Ratelimit-Limit`` and corrects the local model with
        ``X-Ratelimit-Remaining`` (refined by ``X-Ratelimit-Reset``), allowing for the permits
        granted since (module docstring). A second observation of one permit is ignored.

        Args:
            permit: from :meth:`acquire`.
            state: from :func:`parse_ratelimit_headers`, or None when the response had none.
            rejected: the answer was a 429: the server charged nothing for it.
        """
        entry = self._answered(permit)
        if rejected:
            self._rejected[permit.seq] = permit.cost
        if entry is None or state is None or self._loop is None:
            return
        now = self._loop.time()
        if state.capacity is not None and state.rate is not None:
            self._reshape(now, state.capacity, state.rate)
        server = self._server_tokens(state)
        if server is None:
            return
        self._informed = True
        # The band [low, high] of module docstring: "high" assumes the server processed our
        # requests in grant order; "low" holds in any order (everything granted after this
        # permit, and everything in flight when it was granted, may have come after it).
        later_unanswered = sum(f.cost for s, f in self._unanswered.items() if s > permit.seq)
        high = server - later_unanswered
        low = server - (self._granted_total - entry.granted_total) - entry.in_flight_before
        local = self._bucket.tokens(now)
        self.stats.syncs += 1
        self._measure_others(now, server, permit.seq, entry.granted_total)
        if local > high + 1e-9:
            self.stats.synced_down += 1
            logger.debug(
                "re-sync down: %.2f -> %.2f tokens (server: %g remaining after #%d)",
                local,
                high,
                server,
                permit.seq,
            )
            self._bucket.set_state(now, high)
        elif local < low - 1e-9 and permit.seq > self._no_rise_upto:
            target = min(low, self._bucket.max_rate)
            self.stats.synced_up += 1
            logger.debug(
                "re-sync up: %.2f -> %.2f tokens (server: %g remaining after #%d)",
                local,
                target,
                server,
                permit.seq,
            )
            self._bucket.set_state(now, target)

    def _measure_others(self, now: float, server: float, seq: int, granted_total: float) -> None:
        """Estimate what other consumers of the space spend; keep the rest of the refill.

        Between two server readings, the bucket gained the refill and lost what we were granted
        in between; what else it lost, others spent. Over the last ``capacity / rate`` seconds
        (one bucket's worth of refill) those tokens are a rate, and the local bucket refills at
        the server's rate minus it (at least a tenth of it), so that the client stops racing
        others for tokens it cannot have. The measures are signed, so that the jitter of the
        answers' arrival times cancels out.
        """
        previous = self._reading
        if previous is not None and seq < previous[2]:
            return  # an answer overtaken by a later one: measure from the latest only
        self._reading = (now, server, seq, granted_total)
        if previous is not None:
            then, tokens, since, granted = previous
            # Ours between the two readings: what we were granted, less what the server refused.
            refused = sum(cost for s, cost in self._rejected.items() if since < s <= seq)
            ours = granted_total - granted - refused
            expected = min(tokens + self.rate * (now - then), self.capacity)
            self._external.append((now, expected - ours - server))
            for old in [s for s in self._rejected if s <= seq]:
                del self._rejected[old]
        window = self.capacity / self.rate
        while self._external and self._external[0][0] < now - window:
            self._external.popleft()
        others = max(sum(spent for _, spent in self._external) / window, 0.0)
        # Below 2% of the refill, "others" is the jitter of the answers' arrival times.
        significant = others > 0.02 * self.rate
        self._reserve = (
            max((spent for _, spent in self._external), default=0.0) if significant else 0.0
        )
        leak = max(self.rate - others, 0.1 * self.rate)
        if abs(leak - self._bucket._rate_per_sec) > 1e-9:
            if leak < self.rate:
                logger.debug(
                    "other consumers spend about %.2f tokens/s: refilling at %.2f/s", others, leak
                )
            self._bucket.set_leak(now, leak)

    def _answered(self, permit: Permit) -> _InFlight | None:
        """Forget ``permit`` as in flight; wake a slow-start wait. None if already forgotten."""
        entry = self._unanswered.pop(permit.seq, None)
        if entry is not None:
            self._in_flight_cost -= entry.cost
            if not self._unanswered:
                self._in_flight_cost = 0.0  # no float residue
        self._changed.set()
        return entry

    def _server_tokens(self, state: BucketState) -> float | None:
        """Tokens the server had right after the request, from Remaining refined by Reset."""
        capacity = state.capacity if state.capacity is not None else self.capacity
        rate = state.rate if state.rate is not None else self.rate
        tokens = state.remaining
        if state.reset is not None:
            # Reset = (capacity - tokens) / rate; it carries the fraction that an integer
            # Remaining drops, so it wins when both agree to within one token.
            from_reset = capacity - state.reset * rate
            if tokens is None or abs(from_reset - tokens) < 1:
                tokens = from_reset
        if tokens is None:
            return None
        return min(max(tokens, 0.0), capacity)

    def _reshape(self, now: float, capacity: float, rate: float) -> None:
        if capacity == self.capacity and rate == self.rate:
            return
        logger.info(
            "rate limit shape changed: burst %g, %g/s -> burst %g, %g/s",
            self.capacity,
            self.rate,
            capacity,
            rate,
        )
        self.stats.shape_changes += 1
        self._bucket.set_state(now, self._bucket.tokens(now), capacity=capacity, rate=rate)
        if self._on_reshape is not None:
            self._on_reshape(capacity, rate)

    # -- 429 ---------------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """A 429 said ``Retry-After: seconds``: hold every request until they have passed.

        The local bucket is emptied now, so that when the pause ends the refill lets requests
        out one by one rather than all at once. A pause is never shortened by a later, shorter
        one. Call it from the limiter's event loop.
        """
        loop = self._bind()
        now = loop.time()
        seconds = max(0.0, seconds) if math.isfinite(seconds) else 0.0
        until = now + seconds
        self.stats.pauses += 1
        self._no_rise_upto = self._seq
        self._bucket.set_state(now, min(self._bucket.tokens(now), 0.0))
        if until > self._paused_until:
            logger.info(
                "429 Too Many Requests: pausing all requests for %.3f s (until loop time %.3f)",
                seconds,
                until,
            )
            self._paused_until = until
        else:
            logger.info(
                "429 Too Many Requests: already paused until loop time %.3f", self._paused_until
            )


class LocalLimiter:
    """The default :class:`~qomon_async._ratelimit.Limiter`: one :class:`RateLimiter` per event
    loop for one client, created lazily in the loop.

    A client keeps one (safe to build outside any loop); each call is passed to the limiter of
    the running loop. A shape learned from ``X-Ratelimit-Limit`` on one loop is the starting
    shape of limiters created later for other loops; :attr:`stats` adds up every limiter's
    counters.

    Args:
        capacity: initial bucket size in tokens.
        rate: initial refill rate in tokens per second.
        slow_start: passed to every :class:`RateLimiter`.
    """

    def __init__(
        self,
        capacity: float = DEFAULT_CAPACITY,
        rate: float = DEFAULT_RATE,
        *,
        slow_start: bool = True,
    ) -> None:
        if not (capacity > 0 and rate > 0):
            raise ValueError("capacity and rate must be positive numbers")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.slow_start = slow_start
        self._stats = LimiterStats()
        self._limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RateLimiter] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def kind(self) -> Literal["local", "redis"]:
        return "local"

    @property
    def stats(self) -> LimiterStats:
        """The counters of every limiter of this client, added up."""
        return self._stats

    def get(self) -> RateLimiter:
        """The limiter of the running event loop, created on first use.

        Raises:
            RuntimeError: no event loop is running.
        """
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = RateLimiter(
                self.capacity, self.rate, slow_start=self.slow_start, stats=self._stats
            )
            limiter._on_reshape = self._remember_shape
            self._limiters[loop] = limiter
        return limiter

    async def acquire(
        self, cost: float, *, max_wait: float | None = None, max_pause: float | None = None
    ) -> Permit:
        return await self.get().acquire(cost, max_wait=max_wait, max_pause=max_pause)

    def observe(self, permit: Permit, state: BucketState | None, *, rejected: bool = False) -> None:
        self.get().observe(permit, state, rejected=rejected)

    def release(self, permit: Permit, *, refund: bool = False) -> None:
        self.get().release(permit, refund=refund)

    def pause(self, seconds: float) -> None:
        self.get().pause(seconds)

    async def aclose(self) -> None:
        """Nothing to release: the per-loop limiters go with their loops."""

    def _remember_shape(self, capacity: float, rate: float) -> None:
        self.capacity, self.rate = capacity, rate

    def __repr__(self) -> str:
        return (
            f"<LocalLimiter capacity={self.capacity:g} rate={self.rate:g}/s "
            f"loops={len(self._limiters)} permits={self._stats.permits}>"
        )


#: The former name of :class:`LocalLimiter`.
LimiterRegistry = LocalLimiter
