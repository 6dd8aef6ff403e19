"""The local limiter's model of the server's bucket: its level, its shape, and how answers
correct it.

:class:`BucketModel` is the base of :class:`qomon_async._local_limiter.RateLimiter`: it holds
the bucket (aiolimiter's leaky bucket, :class:`_Bucket`), the permits in flight, and the
estimate of what other consumers spend; the subclass adds the queue of callers. This is the
only module of the package that imports :mod:`aiolimiter`.

How the local model follows the server (``_sync``, on every answer): a response's
``X-Ratelimit-Remaining`` is the server's bucket right after *that* request, which predates the
permits we granted after it. The model keeps the permits it granted and has not heard back
from, by sequence number, and turns the server's figure into a band for the bucket *now*:

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
The work per answer does not grow with that window, and at most logarithmically with the
requests in flight (binary searches run by C: :mod:`qomon_async._limiter_ledger`). The
per-answer path is written for CPU: comparisons rather than ``min``/``max``, one call for the
ledger, one for the bucket and one for the measure of others; a reading that is exactly what
the model predicts (a zero) records nothing, and an answer carrying the very state of the one
before (the same header values) reuses its reading of the server's tokens. That last answer,
the steady one (a server far from empty says the same on every answer), is handled by
``RateLimiter.observe`` itself, in one frame but the bucket's: the ledger's answer and the
measure of others written in line (a zero, the usual case, records nothing), then the band of
``_resync``, its top first (:meth:`_Bucket.lower`) and its floor only when the bucket was not
above the top, in the same order as here (``tests/test_limiter_steady.py`` holds the two
against each other).

No refill is credited for the time between the server's answer and now, which leaves a margin
of about one round trip of tokens.

Bounds: an advertised shape outside ``MIN_BURST`` .. ``MAX_BURST`` tokens and ``MIN_RATE`` ..
``MAX_RATE`` tokens/s (:mod:`qomon_async._ratelimit`) is refused (logged once per value; the
previous shape stays), and the server's ``Remaining`` and ``Reset`` are clamped to the bucket,
so that a re-sync never implies a wait longer than ``capacity / rate``.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from aiolimiter import AsyncLimiter

from ._limiter_ledger import InFlightLedger, OthersWindow
from ._ratelimit import (
    MAX_BURST,
    MAX_RATE,
    MIN_BURST,
    MIN_RATE,
    BucketState,
    LimiterStats,
    Permit,
    server_tokens,
    shape_within_bounds,
)

__all__ = ["DEBUG", "LEVELS", "UNREAD", "BucketModel", "log_resync"]

logger = logging.getLogger("qomon_async")

DEBUG = logging.DEBUG
#: The logger's own memo of ``isEnabledFor`` (level -> bool; :mod:`logging` empties it whenever
#: a level changes anywhere). Read before the call on every re-sync: a ``False`` found there is
#: the call's answer, without the call; anything else (not known yet, or True) makes the call.
#: A Python without it: an empty dict, and the call every time.
LEVELS: dict[int, bool] = getattr(logger, "_cache", {})

#: The state a model has read no answer of (a parser never hands this very object back).
UNREAD = BucketState()


def log_resync(direction: str, local: float, tokens: float, server: float, seq: int) -> None:
    """Log (DEBUG) a re-sync that moved the model by a token or more."""
    logger.debug(
        "re-sync %s: %.2f -> %.2f tokens (server: %g remaining after #%d)",
        direction,
        local,
        tokens,
        server,
        seq,
    )


_ASYNCIO_TIME = asyncio.BaseEventLoop.time

# Refused shapes remembered (to log each once); beyond, the oldest are forgotten.
_REFUSED_MEMORY = 64


# --------------------------------------------------------------------------------------------
# The aiolimiter bucket, and the one place that touches its internals
# --------------------------------------------------------------------------------------------


class _Idle:
    """The flight of a bucket outside a model: nothing in flight."""

    total = 0.0


class _Bucket(AsyncLimiter):
    """aiolimiter's leaky bucket, plus a reader and a writer of its level.

    aiolimiter models the bucket as a *level* of spent capacity that leaks at ``max_rate /
    time_period`` per second; it has no public way to read or set that level, and following the
    server needs both. Re-creating an ``AsyncLimiter`` at each response would lose its state, so
    this subclass reads and writes the three private attributes ``_level``, ``_last_check`` and
    ``_rate_per_sec`` in its own methods only (and calls ``_wake_next``, aiolimiter >= 1.2,
    so that a task waiting in :meth:`acquire` re-times itself).
    ``tests/test_ratelimit.py::test_bucket_internals_match_aiolimiter`` fails if these
    internals change meaning.

    One difference from aiolimiter, for a limiter told of every answer (``RateLimiter``'s
    ``answered``): the level never drains below the tokens of the permits in flight
    (``_flight.total``, the model's ledger). The server charges a request when it
    arrives, not when it was granted here; until the requests on their way arrive, its bucket
    holds at most ``capacity`` tokens less what they will take, and refill beyond that is lost
    to it (its bucket is full). A burst granted from a full bucket, then delayed on its way (a
    slow network, a stalled event loop), would otherwise let the refill of the delay be granted
    again, and the last requests of the burst be answered 429. The floor never raises a level
    already below it (a re-sync may have put it there): such a level does not drain at all
    until answers lower the floor under it. Answers lower the floor as they arrive; a permit
    neither observed nor released would hold it for good.
    """

    #: The permits in flight (the model's ledger, set by ``RateLimiter(answered=True)``).
    _flight: InFlightLedger | _Idle = _Idle()

    def tokens(self, now: float) -> float:
        """Tokens available at loop time ``now`` (may be negative: a debt), without side effect."""
        return self.max_rate - self._drained(now)

    def _drained(self, now: float) -> float:
        """The level at loop time ``now``, without side effect: it drains from ``_last_check``
        (as ``AsyncLimiter._leak``), never below zero, and not below the tokens in flight (the
        class docstring)."""
        level = self._level
        if level:
            drained = level - (now - self._last_check) * self._rate_per_sec
            floor = self._flight.total
            if drained < floor:  # a level at or under the floor stays; else down to it (>= 0)
                drained = floor if floor < level else (level if level > 0.0 else 0.0)
            return drained
        return level

    def ceiling(self) -> float:
        """The most tokens the refill alone can bring the bucket to before the permits in
        flight are answered (their tokens, or the level if it is already below them)."""
        floor = self._flight.total
        level = self._level
        return self.max_rate - (floor if floor < level else level)

    def take(self, now: float, amount: float) -> None:
        """Charge ``amount`` tokens at loop time ``now`` (what ``acquire`` does once covered)."""
        level = self._drained(now)
        self._level = level + amount
        self._last_check = now

    def take_covered(self, now: float, cost: float, reserve: float) -> bool:
        """Charge ``cost`` tokens (the whole bucket at most) at loop time ``now`` if the bucket
        holds them and ``reserve`` more (at most what the rest of the bucket holds; float noise
        of ``1e-9`` tolerated); False, and nothing charged, if not. The limiter's grant at
        once."""
        level = self._drained(now)
        max_rate = self.max_rate
        amount = cost if cost < max_rate else max_rate
        if reserve:
            spare = max_rate - amount
            if max_rate - level + 1e-9 < amount + (reserve if reserve < spare else spare):
                return False
        elif max_rate - level + 1e-9 < amount:
            return False
        self._level = level + amount
        self._last_check = now
        return True

    def clamp(self, now: float, low: float, high: float) -> float:
        """Bring the tokens at loop time ``now`` into ``[low, high]`` (lowered to ``high``
        first; raised to ``low``, never above the capacity, only when under ``low - 1e-9``)
        and return the tokens held before. One answer's re-sync, in one call."""
        local = self.lower(now, high)
        if local <= high + 1e-9 and local < low - 1e-9:
            self.set_state(now, low)
        return local

    def lower(self, now: float, high: float) -> float:
        """Bring the tokens at loop time ``now`` down to ``high`` when they are above it (by
        more than ``1e-9``) and return the tokens held before: :meth:`clamp` without its
        floor, for the answer that most often lowers the model (the caller raises it, rarely,
        with :meth:`set_state`, computing the floor only then; :meth:`clamp` does both)."""
        level = self._drained(now)
        max_rate = self.max_rate
        local = max_rate - level
        if local > high + 1e-9:
            self._level = max_rate - high if high < max_rate else 0.0
            self._last_check = now
            if self._waiters:  # only when aiolimiter's own acquire is in use (never by the client)
                self._wake_next()
        return local

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
        max_rate = self.max_rate
        self._level = max_rate - available if available < max_rate else 0.0
        self._last_check = now
        if self._waiters:  # only when aiolimiter's own acquire is in use (never by the client)
            self._wake_next()

    @property
    def rate(self) -> float:
        """Refill rate in tokens per second (the bucket's shape)."""
        return self.max_rate / self.time_period

    @property
    def leak(self) -> float:
        """The refill actually applied, in tokens per second (the rate less others' share)."""
        return self._rate_per_sec

    def set_leak(self, now: float, rate: float) -> None:
        """Refill at ``rate`` tokens per second from ``now`` on, the shape unchanged.

        Used to leave to other consumers of the space the share of the refill they are seen
        to spend (``RateLimiter._measure_others``).
        """
        level = self._drained(now)
        self._level = level
        self._last_check = now
        self._rate_per_sec = rate
        if self._waiters:  # only when aiolimiter's own acquire is in use (never by the client)
            self._wake_next()


class _UnknownRunner:
    """Stands for a loop that does not name its thread: the caller's is never it."""

    _thread_id = None


_UNKNOWN_RUNNER = _UnknownRunner()
#: The models that know their loop's thread: a forked child forgets it (below).
_RUNNERS_KNOWN: weakref.WeakSet[BucketModel] = weakref.WeakSet()


def _forget_runners() -> None:
    """In a forked child: a loop copied from the parent still names the forking thread,
    whose ident the child's thread has, but does not run there. Every model looks its loop up
    from now on (asyncio's look-up knows a fork)."""
    for model in list(_RUNNERS_KNOWN):
        model._runner = _UNKNOWN_RUNNER
    _RUNNERS_KNOWN.clear()


if hasattr(os, "register_at_fork"):  # (not on Windows, which does not fork)
    os.register_at_fork(after_in_child=_forget_runners)
_thread_ident = threading.get_ident
_running_loop = asyncio._get_running_loop  # (None outside a loop: no raise)


class BucketModel:
    """The bucket as this process believes the server holds it, corrected by every answer.

    Args:
        capacity: bucket size in tokens (``burst``); the server's ``X-Ratelimit-Limit`` wins.
        rate: refill in tokens per second.
        stats: counters to add to.
    """

    def __init__(self, capacity: float, rate: float, stats: LimiterStats | None) -> None:
        if not (capacity > 0 and rate > 0 and math.isfinite(capacity) and math.isfinite(rate)):
            raise ValueError("capacity and rate must be positive numbers")
        self._bucket = _Bucket(max_rate=capacity, time_period=capacity / rate)
        self._shape = (float(capacity), float(rate))  # as given or advertised
        self._rate = self._bucket.rate  # the refill of the shape (the rate property, cached)
        self._leak = self._bucket.leak  # the refill applied (the bucket's leak, mirrored)
        self.stats = stats if stats is not None else LimiterStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._time: Callable[[], float] = time.monotonic  # the loop's clock (see _attach)
        self._runner: Any = _UNKNOWN_RUNNER  # names the loop's thread (see _attach)
        self._seq = 0
        self._granted_total = 0.0  # tokens granted so far: later-permit costs by difference
        self._ledger = InFlightLedger()  # the permits not yet answered
        self._informed = False  # a response has carried the headers
        self._no_rise_upto = 0  # responses to permits up to this seq may not raise the model
        self._on_reshape: Callable[[float, float], None] | None = None  # set by LocalLimiter
        # Refused shapes already logged (shared by the limiters of one LocalLimiter).
        self._refused_shapes: dict[tuple[float, float], None] = {}
        # Tokens other consumers of the space were seen to spend, per reading, and the server
        # reading they are measured from: (loop time, tokens, seq, our tokens granted so far).
        self._others = OthersWindow()
        self._reading: tuple[float, float, int, float] | None = None
        # (seq, cost) of permits answered 429 after the latest reading, to deduct from ours.
        self._rejected: list[tuple[int, float]] = []
        self._reserve = 0.0  # tokens kept back while others spend (see _measure_others)
        # The state of the last answer read, and its server tokens under the current shape
        # (UNREAD: no state read since the last reshape).
        self._state_read = UNREAD
        self._server_read = 0.0

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the model to ``loop``, and its clock to ``_time``: ``time.monotonic`` itself
        when the loop keeps asyncio's own clock (one Python frame less per reading, two per
        request), else the loop's ``time`` (a loop with a clock of its own, as in tests)."""
        self._loop = loop
        # The bound method, not the class's: a loop whose ``time`` was replaced on the instance
        # (a test's virtual clock) keeps it.
        own = getattr(loop.time, "__func__", None) is _ASYNCIO_TIME
        self._time = time.monotonic if own else loop.time
        # Whether a call comes from this loop, asked on every grant and answer: asyncio's
        # running-loop look-up makes a getpid system call each time on Python 3.10 and 3.11
        # (its guard against a fork; 3.12 dropped it). asyncio's own loops name the thread
        # running them in ``_thread_id`` (None while stopped), and one thread runs one loop at
        # a time: that thread being the caller's says the same, in user space. Another loop
        # (uvloop) is looked up. A forked child forgets the thread (_forget_runners). Not
        # covered: a second loop run inside a task of the first (nest_asyncio with two loops),
        # where both name the thread; asyncio itself refuses to run it.
        if isinstance(loop, asyncio.BaseEventLoop):
            self._runner = loop
            _RUNNERS_KNOWN.add(self)
        else:
            self._runner = _UNKNOWN_RUNNER

    def _on_loop(self) -> bool:
        """Whether the caller runs on this model's loop (bound to one)."""
        return self._runner._thread_id == _thread_ident() or _running_loop() is self._loop

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
    def in_flight(self) -> int:
        """Permits granted and not yet observed or released."""
        return len(self._ledger)

    def _sync(self, permit: Permit, state: BucketState | None, rejected: bool) -> None:
        seq = permit.seq
        answered = self._ledger.answer(seq)
        if answered is None:
            return
        entry, later = answered
        if rejected:
            reading = self._reading
            # Only a permit after the latest reading can count between two readings.
            if reading is None or seq > reading[2]:
                heapq.heappush(self._rejected, (seq, permit.cost))
        if state is None or self._loop is None:
            return
        now = self._loop.time()
        if state is self._state_read:
            # The very state of the last reading, under the same shape (a parser hands back one
            # state per distinct set of header values, and a reshape forgets it): the same
            # server tokens, without re-reading the shape and Remaining / Reset. Measured on
            # the huge-bucket benchmark, where every answer says the same: -50 bytecodes.
            server = self._server_read
        else:
            capacity, rate = self._shape
            advertised = state.capacity
            shape_kept = True
            if (
                advertised is not None
                and (advertised != capacity or state.rate != rate)
                and state.rate is not None
            ):
                if self._reshape(now, advertised, state.rate):
                    capacity, rate = advertised, state.rate
                else:
                    shape_kept = False  # refused: counted on every answer that advertises it
            tokens = server_tokens(state, capacity, rate)
            if tokens is None:
                return
            server = tokens
            self._informed = True
            if shape_kept:
                self._state_read, self._server_read = state, server
        _cost, granted_total, in_flight_before = entry
        stats = self.stats
        stats.syncs += 1
        # (An answer overtaken by a later one is not measured: _measure_others returns.)
        self._measure_others(now, server, seq, granted_total)
        self._resync(now, server, seq, granted_total, later, in_flight_before)

    def _resync(  # noqa: PLR0917 (called positionally, once per answer)
        self,
        now: float,
        server: float,
        seq: int,
        granted_total: float,
        later: float,
        in_flight_before: float,
    ) -> None:
        """Bring the bucket into the band an answer allows, and count (and log) the re-sync.

        ``server``: the tokens the answer to permit ``seq`` says were left; ``granted_total``:
        the tokens granted up to that permit; ``later``: the tokens of the permits granted
        after it and still in flight; ``in_flight_before``: those in flight when it was granted.
        """
        stats = self.stats
        # The band [low, high] of module docstring: "high" assumes the server processed our
        # requests in grant order; "low" holds in any order (everything granted after this
        # permit, and everything in flight when it was granted, may have come after it).
        high = server - later
        low = server - (self._granted_total - granted_total) - in_flight_before
        if seq <= self._no_rise_upto:
            low = -math.inf  # sent before the latest 429 pause: may lower the model, not raise it
        local = self._bucket.clamp(now, low, high)
        if local > high + 1e-9:
            stats.synced_down += 1
            if (
                local - high >= 1.0
                and LEVELS.get(DEBUG) is not False
                and logger.isEnabledFor(DEBUG)
            ):
                log_resync("down", local, high, server, seq)
        elif local < low - 1e-9:
            stats.synced_up += 1
            if low - local >= 1.0 and LEVELS.get(DEBUG) is not False and logger.isEnabledFor(DEBUG):
                log_resync("up", local, min(low, self._bucket.max_rate), server, seq)

    def _measure_others(self, now: float, server: float, seq: int, granted_total: float) -> None:
        """Estimate what other consumers of the space spend; keep the rest of the refill.

        Between two server readings, the bucket gained the refill and lost what we were granted
        in between; what else it lost, others spent. Over the last ``capacity / rate`` seconds
        (one bucket's worth of refill) those tokens are a rate, and the local bucket refills at
        the server's rate minus it (at least a tenth of it), so that the client stops racing
        others for tokens it cannot have. The measures are signed, so that the jitter of the
        answers' arrival times cancels out. Amortised O(1): running sums, no scan.
        """
        previous = self._reading
        if previous is not None and seq < previous[2]:
            return  # an answer overtaken by a later one: measure from the latest only
        self._reading = (now, server, seq, granted_total)
        # Ours between the two readings: what we were granted, less what the server refused.
        refused = 0.0
        rejected = self._rejected
        while rejected and rejected[0][0] <= seq:
            refused += heapq.heappop(rejected)[1]
        if previous is None:
            self._apply_others(now)
            return
        then, tokens, _since, granted = previous
        ours = granted_total - granted - refused
        capacity, rate = self._bucket.max_rate, self._rate
        # (Comparisons rather than min/max, here and below: this runs on every answer.)
        expected = tokens + rate * (now - then)
        expected = expected if expected < capacity else capacity
        self._weigh(now, expected - ours - server, capacity, rate)

    def _weigh(self, now: float, spent: float, capacity: float, rate: float) -> None:
        """Others' measure ``spent``, taken at ``now`` under the shape ``capacity``, ``rate``:
        recorded in the window, and the reserve and the refill set from it (the end of
        :meth:`_measure_others`, shared with the limiter's steady answer)."""
        others = self._others
        if not spent:
            # The reading is what the refill and our grants predict. A zero moves neither the
            # window's sum nor its largest measure when that sum is positive (the only time the
            # reserve reads it): it is not recorded. What may still change is the window moving
            # on: a measure leaving it, or a reserve left from a window now empty.
            items = others._items
            if items:
                if items[0][0] >= now - capacity / rate:
                    return
            elif not self._reserve:
                return
            self._apply_others(now)
            return
        window = capacity / rate
        spending = others.add(now, spent, now - window) / window
        if spending > 0.02 * rate or spending < 0.0 or self._reserve:
            self._set_refill(now, spending, rate)
            return
        # (_set_refill, inlined for the common case: nobody else seen spending)
        change = rate - spending - self._leak
        if change > 1e-9 or change < -1e-9:
            self._set_refill(now, spending, rate)

    def _apply_others(self, now: float) -> None:
        """Drop the measures older than the window; set the reserve and the refill from it."""
        rate = self._rate
        window = self._bucket.max_rate / rate
        self._set_refill(now, self._others.expire(now - window) / window, rate)

    def _set_refill(self, now: float, spending: float, rate: float) -> None:
        """Others spend ``spending`` tokens/s (as measured): set the reserve and the refill."""
        if spending > 0.02 * rate:
            self._reserve = self._others.largest()
            leak = rate - spending
            leak = leak if leak > 0.1 * rate else 0.1 * rate
        else:
            # Below 2% of the refill, "others" is the jitter of the answers' arrival times.
            self._reserve = 0.0
            spending = spending if spending > 0.0 else 0.0
            leak = rate - spending
        change = leak - self._leak
        if change > 1e-9 or change < -1e-9:
            if leak < rate and logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "other consumers spend about %.2f tokens/s: refilling at %.2f/s",
                    spending,
                    leak,
                )
            self._bucket.set_leak(now, leak)
            self._leak = leak

    def _reshape(self, now: float, capacity: float, rate: float) -> bool:
        """Adopt an advertised shape; False (and logged once) when it is out of bounds."""
        if (capacity, rate) == self._shape:
            return True
        if not shape_within_bounds(capacity, rate):
            self.stats.shapes_refused += 1
            refused = self._refused_shapes
            if (capacity, rate) not in refused:
                if len(refused) >= _REFUSED_MEMORY:
                    del refused[next(iter(refused))]
                refused[capacity, rate] = None
                logger.warning(
                    "X-Ratelimit-Limit refused: burst %g, rate %g/s is outside burst [%g, %g] "
                    "and rate [%g, %g]/s; keeping burst %g, %g/s",
                    capacity,
                    rate,
                    MIN_BURST,
                    MAX_BURST,
                    MIN_RATE,
                    MAX_RATE,
                    *self._shape,
                )
            return False
        logger.info(
            "rate limit shape changed: burst %g, %g/s -> burst %g, %g/s",
            *self._shape,
            capacity,
            rate,
        )
        self._shape = (capacity, rate)
        self.stats.shape_changes += 1
        self._bucket.set_state(now, self._bucket.tokens(now), capacity=capacity, rate=rate)
        self._rate = self._bucket.rate
        self._leak = self._bucket.leak
        self._state_read = UNREAD  # its server tokens were read under the former shape
        if len(self._others):
            # Others' measures are a rate against the new shape's window and refill now (an
            # answer that adds no measure does not recompute them).
            self._apply_others(now)
        if self._on_reshape is not None:
            self._on_reshape(capacity, rate)
        return True
