"""The local limiter's queue: callers served first come, first served, on the model's bucket.

:class:`RateLimiter` is one process's model of a Qomon bucket on one event loop: the bucket and
how answers correct it come from its base, :class:`~qomon_async._limiter_model.BucketModel`;
this module adds the callers. :class:`~qomon_async._local_limiter.LocalLimiter` keeps one per
event loop for a client.

Granting (``try_acquire``, then ``acquire``): callers are served first come, first served. When
nobody waits, no 429 pause holds and the bucket covers the cost, the permit is granted at once
(the fast path: a few attribute reads, one call to the bucket, one to the ledger, the permit
written in line): ``try_acquire`` returns it without a coroutine (the client calls it first),
``acquire`` without suspending the caller. Otherwise ``try_acquire`` returns None, charging
nothing, and the caller of ``acquire`` joins a FIFO queue; the queue is served by one function
(``_dispatch``) that runs whenever something changes (an answer, a release, a pause, the head's
timer) and grants, in order, every waiter the bucket covers, then sets one timer for the next.
aiolimiter's own queue orders its waiters by amount (1-token calls would starve a 5-token
create), so only its level arithmetic is used.

Slow start: until a first response has carried the rate-limit headers, the limiter lets only
one request out at a time; the first answer that carries them releases every waiter the bucket
covers at once, and no refill is credited until the next answer (those requests reach the
server over a round trip, while its bucket may sit full). A 429 empties the local bucket and
holds every waiter until ``Retry-After`` has passed; then the refill paces them.

Bounds: a waiter's ``max_wait`` and ``max_pause`` bound its own wait (a pause longer than its
``max_pause`` raises :class:`~qomon_async.RateLimitError` for it at once, even when it was
already queued); a waiter without them waits as long as the server says.

Logging: a permit that waited is logged (DEBUG, INFO beyond 5 s) only when that level is
enabled; a permit granted at once logs nothing. A re-sync by a token or more is logged at DEBUG;
the steady answer asks the logger only when logging's own memo of the level does not already
say DEBUG is off.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from typing import TYPE_CHECKING

from ._limiter_model import DEBUG, LEVELS, BucketModel, _thread_ident, log_resync
from ._limiter_waiter import (
    EMPTY,
    PAUSED,
    QUEUED,
    SLOW_START,
    Waiter,
    check_limit,
    describe,
    pause_error,
    timeout_error,
)
from ._ratelimit import (
    DEFAULT_CAPACITY,
    DEFAULT_COST,
    DEFAULT_RATE,
    EXPENSIVE_COST,
    BucketState,
    LimiterStats,
    Permit,
)

if TYPE_CHECKING:
    from ._local_limiter import LocalLimiter

__all__ = ["RateLimiter"]

logger = logging.getLogger("qomon_async")

_get_running_loop = asyncio.get_running_loop
_running_loop = asyncio._get_running_loop  # (None outside a loop: no raise)
_INF = math.inf
_new = object.__new__
# The costs of Qomon's routes (route_cost): valid costs, known in one look-up.
_ROUTE_COSTS = frozenset((DEFAULT_COST, EXPENSIVE_COST))

# A wait shorter than this is logged at DEBUG only; a 429 pause is always logged at INFO.
_LONG_WAIT = 5.0
# Tokens of float noise below which a bucket counts as covering a request: without it a timer
# computed from the leak could land a hair early, and be re-armed for ever on a still clock.
_EPSILON = 1e-9
# Seconds past a measure's expiry at which a waiter looks again (expiry is strict).
_FADE_MARGIN = 1e-6


class RateLimiter(BucketModel):
    """A local model of one Qomon bucket, shared by every request of a client on one loop.

    Bound to the first event loop that uses it; use :class:`LocalLimiter` to get one per loop.
    Waiters are served first come, first served.

    Args:
        capacity: bucket size in tokens (``burst``); the server's ``X-Ratelimit-Limit`` wins.
        rate: refill in tokens per second.
        slow_start: until a response has carried the rate-limit headers, let only one request
            out at a time (the bucket may already be drained by another process).
        stats: counters to add to (a :class:`LocalLimiter` shares one across its limiters).
        answered: every permit will be observed or released (the client's use, through
            :class:`LocalLimiter`). The bucket then credits no refill beyond what the requests
            on their way leave room for (:class:`qomon_async._limiter_model._Bucket`): until
            they reach the server, a full server bucket loses that refill. A permit lost would
            hold back the refill it covers for good. Without it (a limiter used on its own,
            never told of answers), the refill counts from each grant, as aiolimiter's does.
    """

    def __init__(
        self,
        capacity: float = DEFAULT_CAPACITY,
        rate: float = DEFAULT_RATE,
        *,
        slow_start: bool = True,
        stats: LimiterStats | None = None,
        answered: bool = False,
    ) -> None:
        super().__init__(capacity, rate, stats)
        if answered:
            self._bucket._flight = self._ledger  # the level stays above their tokens
        # The FIFO queue of waiters; cancelled, expired and failed ones are skipped lazily.
        self._queue: collections.deque[Waiter] = collections.deque()
        self._live = 0  # waiters in the queue still waiting
        self._queued_amount = 0.0  # tokens they wait for
        self._timer: asyncio.TimerHandle | None = None  # wakes the head of the queue
        self._timer_when = 0.0
        self._slow_start = slow_start
        self._paused_until = -math.inf
        # Set when slow start ends with waiters queued: the refill since then is not credited
        # until the next answer (see _tokens).
        self._refill_held_since: float | None = None
        # The LocalLimiter that made this limiter for its loop, or None. It binds its acquire
        # and observe to this limiter's; a call reaching them from another loop goes back to it.
        self._owner: LocalLimiter | None = None
        # The loop time from which try_acquire's fast path is open (see _regate): closed until
        # the limiter is bound to a loop.
        self._open_from = _INF

    # -- state -------------------------------------------------------------------------------

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        super()._attach(loop)
        self._regate()

    def _regate(self) -> None:
        """Open try_acquire's fast path from the end of the 429 pause (at once when there is
        none) if nothing else may hold a grant at once: the limiter bound to a loop, nobody
        waiting, no refill held, slow start over (or off); else close it (infinity). Called
        wherever one of those changes; while it is closed, try_acquire looks at each of them
        (its general path), so that a closed gate only ever costs time."""
        if (
            self._loop is not None
            and not self._live
            and self._refill_held_since is None
            and (self._informed or not self._slow_start)
        ):
            self._open_from = self._paused_until
        else:
            self._open_from = _INF

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = _get_running_loop()
        if self._loop is None:
            self._attach(loop)
        elif self._loop is not loop:
            raise RuntimeError(
                "this RateLimiter belongs to another event loop; use LocalLimiter.get()"
            )
        return loop

    @property
    def waiters(self) -> int:
        """Callers waiting in :meth:`acquire`."""
        return self._live

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
        return self._slow_start and not self._informed and bool(self._ledger)

    def _tokens(self, now: float) -> float:
        """Tokens the bucket may spend now.

        When slow start ends with callers queued, the ones the bucket covers leave at once,
        and reach the server over the next round trip; until then the server's bucket may sit
        full, its refill lost. So no refill is credited from that moment until the next answer
        (or release), which re-syncs the model.
        """
        bucket = self._bucket
        tokens = bucket.tokens(now)
        held = self._refill_held_since
        if held is not None and now > held:
            tokens -= (now - held) * bucket.leak
        return tokens

    def _covers(self, now: float, amount: float) -> bool:
        """Whether the bucket pays ``amount`` now, with the reserve kept while others spend."""
        reserve = self._reserve
        if reserve:
            # While others spend the same bucket in bites, keep the largest bite in reserve: a
            # bite landing just before this request then does not turn it into a 429.
            reserve = min(reserve, self._bucket.max_rate - amount)
        return self._tokens(now) + _EPSILON >= amount + reserve

    def try_acquire(self, cost: float) -> Permit | None:
        """The permit for ``cost`` tokens at once, or None: what :meth:`acquire` grants
        without suspending the caller, without the coroutine.

        A permit is granted exactly when :meth:`acquire` would grant it at once (nobody waits,
        no 429 pause holds, slow start lets it out, the bucket covers it), with the same
        bookkeeping; otherwise None, and nothing is charged (then await :meth:`acquire`, which
        queues the caller). Call it from the limiter's event loop.

        Raises:
            ValueError: ``cost`` is negative or not a number.
        """
        if cost not in _ROUTE_COSTS and not 0.0 <= cost < _INF:  # NaN fails too
            raise ValueError(f"cost must be a non-negative number, got {cost!r}")
        now = self._time()
        if self._open_from <= now and (
            self._runner._thread_id == _thread_ident() or _running_loop() is self._loop
        ):  # (_on_loop, inline)
            # The fast path, on the limiter's loop: nobody waits, no pause, no slow start, no
            # refill held (the gate, see _regate): granted at once when the bucket covers it
            # (and the reserve, if any).
            if self._bucket.take_covered(now, cost, self._reserve):
                return self._grant(cost, 0.0, now, 0)
            return None
        return self._try_in_general(cost)

    def _try_in_general(self, cost: float) -> Permit | None:
        """:meth:`try_acquire` when its fast path is closed: from another loop (or none), or
        with something that may hold the grant, each looked at."""
        loop = _running_loop()
        if loop is None or loop is not self._loop:  # (no loop: _bind raises, as acquire does)
            owner = self._owner
            if owner is not None and loop is not None:  # through the LocalLimiter, another loop
                return owner.get().try_acquire(cost)
            self._bind()
        now = self._time()
        bucket = self._bucket
        amount = min(cost, bucket.max_rate)
        if (
            not self._live
            and self._paused_until <= now
            and not self._slow_start_blocks()
            and self._covers(now, amount)
        ):  # (with a refill held since slow start ended, _covers leaves it out)
            bucket.take(now, amount)
            return self._grant(cost, 0.0, now, 0)
        return None

    async def acquire(
        self, cost: float, *, max_wait: float | None = None, max_pause: float | None = None
    ) -> Permit:
        """Wait for the right to send one request costing ``cost`` tokens, and charge them.

        Callers are served in arrival order. A caller waits while an earlier one waits, while a
        429 pause lasts, during slow start while a request is in flight, and until the bucket
        holds ``cost`` tokens. When nothing holds it, the permit is granted without suspending
        the caller (as :meth:`try_acquire` grants it). Cancelling a waiter charges nothing and
        keeps the queue intact.

        Args:
            cost: tokens the request costs (see :func:`route_cost`); a cost above the capacity
                takes the whole bucket.
            max_wait: seconds this caller may wait at most; ``None`` (or infinity) for no
                limit. When the queue ahead, the refill and a 429 pause already add up to more,
                :class:`~qomon_async.RateLimitTimeout` is raised at once (``predicted_wait``
                set); when the time runs out while waiting, it is raised then
                (``predicted_wait=None``). Either way nothing is charged and the waiters
                behind move up. A permit granted at once never counts against it.
            max_pause: the longest 429 pause this caller waits out (seconds; ``None``: any).
                When a pause holds longer, :class:`~qomon_async.RateLimitError` (status 429,
                ``retry_after`` = the seconds left) is raised at once, also for a caller
                already queued when the pause is set. The pause itself stays for the others.

        Returns:
            A :class:`Permit`; hand it back to :meth:`observe` or :meth:`release`.

        Raises:
            ValueError: ``cost`` is negative or not a number, or a limit is negative.
            RateLimitTimeout: the wait would exceed, or exceeded, ``max_wait``.
            RateLimitError: a 429 pause lasts longer than ``max_pause``.
        """
        if not 0.0 <= cost < _INF:  # NaN fails too
            raise ValueError(f"cost must be a non-negative number, got {cost!r}")
        if max_wait is not None and not 0.0 <= max_wait < _INF:
            max_wait = check_limit("max_wait", max_wait)  # infinity: None; else it raises
        if max_pause is not None and not 0.0 <= max_pause < _INF:
            max_pause = check_limit("max_pause", max_pause)
        loop = _get_running_loop()
        if loop is not self._loop:
            owner = self._owner
            if owner is not None:  # called through the LocalLimiter, from another loop
                return await owner.get().acquire(cost, max_wait=max_wait, max_pause=max_pause)
            loop = self._bind()
        permit = self.try_acquire(cost)
        if permit is not None:
            return permit
        now = self._time()
        amount = min(cost, self._bucket.max_rate)
        paused = self._paused_until > now
        if paused and max_pause is not None and self._paused_until - now > max_pause:
            raise pause_error(self._paused_until - now, max_pause)
        if max_wait is not None:
            predicted = self._predict(now, amount)
            if predicted > max_wait:
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug(
                        "request refused at once: predicted wait %.3f s > max_wait %.3f s",
                        predicted,
                        max_wait,
                    )
                raise timeout_error(max_wait, predicted=predicted)
        return await self._wait(loop, now, cost, amount, max_wait=max_wait, max_pause=max_pause)

    def _predict(self, now: float, amount: float) -> float:
        """Seconds until a new waiter of ``amount`` tokens would be served, as things stand.

        The queue ahead, the refill (less what others are seen to spend) and a 429 pause count;
        slow start counts for nothing (it ends with the first answer, typically one round trip).
        """
        bucket = self._bucket
        leak = bucket.leak
        need = self._queued_amount + amount + min(self._reserve, bucket.max_rate - amount)
        pause = self._paused_until - now
        if pause > 0:
            # The bucket refills during the pause, up to its capacity.
            supply = min(bucket.tokens(now) + pause * leak, bucket.max_rate)
            return pause + max(need - supply, 0.0) / leak
        return max(need - bucket.tokens(now), 0.0) / leak

    async def _wait(
        self,
        loop: asyncio.AbstractEventLoop,
        now: float,
        cost: float,
        amount: float,
        *,
        max_wait: float | None,
        max_pause: float | None,
    ) -> Permit:
        waiter = Waiter(
            cost, amount, loop.create_future(), started=now, max_pause=max_pause, max_wait=max_wait
        )
        deadline = waiter.deadline
        if self._live:
            waiter.reasons |= QUEUED
        self._queue.append(waiter)
        self._live += 1
        self._open_from = _INF  # a caller waits: no grant at once (see _regate)
        self._queued_amount += amount
        expiry = None if deadline is None else loop.call_at(deadline, self._expire, waiter)
        if self._live == 1:
            self._dispatch()  # the new head: arm its timer
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            future = waiter.future
            if waiter.live:
                self._leave(waiter)
                self._dispatch()  # the waiters behind move up
            elif future.done() and not future.cancelled() and future.exception() is None:
                # Granted in the same iteration as the cancellation: give it all back.
                self._revoke(future.result())
            raise
        finally:
            if expiry is not None:
                expiry.cancel()

    def _leave(self, waiter: Waiter) -> None:
        """Take ``waiter`` out of the live queue (granted, failed or cancelled)."""
        waiter.live = False
        self._live -= 1
        self._queued_amount -= waiter.amount
        if not self._live:
            self._queued_amount = 0.0  # no float residue
            self._queue.clear()
            self._disarm()
            self._regate()

    def _fail(self, waiter: Waiter, error: BaseException) -> None:
        self._leave(waiter)
        if not waiter.future.done():
            waiter.future.set_exception(error)

    def _expire(self, waiter: Waiter) -> None:
        """``max_wait`` ran out while ``waiter`` was queued (a timer callback)."""
        if not waiter.live or waiter.max_wait is None:
            return
        self._fail(waiter, timeout_error(waiter.max_wait))
        self._dispatch()

    def _dispatch(self) -> None:
        """Grant, in order, every queued waiter the bucket covers; time the next one."""
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        queue = self._queue
        bucket = self._bucket
        while queue:
            waiter = queue[0]
            if not waiter.live or waiter.future.done():
                queue.popleft()
                if waiter.live:  # its task was cancelled and has not run yet
                    self._leave(waiter)
                continue
            if self._paused_until > now:
                waiter.reasons |= PAUSED
                self._arm(self._paused_until)
                return
            if self._slow_start_blocks():
                waiter.reasons |= SLOW_START
                self._disarm()  # an answer or a release calls back
                return
            amount = min(waiter.cost, bucket.max_rate)
            if not self._covers(now, amount):
                waiter.reasons |= EMPTY
                if self._refill_held_since is not None:
                    if self._ledger:
                        self._disarm()  # requests on their way: the next answer calls back
                        return
                    # Nothing in flight: no answer will call back, and nothing is on its way to
                    # a full server bucket. The hold has no object: the refill counts again.
                    self._refill_held_since = None
                reserve = min(self._reserve, bucket.max_rate - amount)
                oldest = self._others.oldest()
                # What others were seen to spend fades as its measures leave the window,
                # answers or not: look again when the oldest one does (the reserve falls).
                fade = (
                    oldest + self.capacity / self.rate + _FADE_MARGIN
                    if oldest is not None and (reserve or bucket.leak < self.rate)
                    else _INF
                )
                if amount + reserve > bucket.ceiling() + _EPSILON:
                    # The refill cannot cover it before requests on their way are answered
                    # (the bucket's level stays above their tokens): the next answer, or
                    # release, calls back, or the fade.
                    if fade < _INF:
                        self._arm(fade)
                    else:
                        self._disarm()
                    return
                when = now + (amount + reserve - bucket.tokens(now)) / bucket.leak
                self._arm(when if when < fade else fade)
                return
            queue.popleft()
            self._leave(waiter)
            bucket.take(now, amount)
            waiter.future.set_result(
                self._grant(waiter.cost, now - waiter.started, now, waiter.reasons or EMPTY)
            )
        self._disarm()

    def _arm(self, when: float) -> None:
        timer = self._timer
        if timer is not None:
            if self._timer_when == when:
                return
            timer.cancel()
        assert self._loop is not None
        self._timer_when = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._loop is not None and len(self._others):
            self._apply_others(self._loop.time())
        self._dispatch()

    def _grant(self, cost: float, waited: float, now: float, reasons: int) -> Permit:
        """Record a permit; ``reasons`` is 0 for a grant that did not wait at all."""
        seq = self._seq + 1
        self._seq = seq
        granted_total = self._granted_total + cost
        self._granted_total = granted_total
        self._ledger.add(seq, cost, granted_total)
        stats = self.stats
        stats.permits += 1
        stats.tokens += cost
        if reasons:
            stats.waits += 1
            stats.wait_seconds += waited
            level = logging.INFO if waited >= _LONG_WAIT else logging.DEBUG
            if logger.isEnabledFor(level):
                logger.log(
                    level,
                    "permit #%d (cost %g) granted after waiting %.3f s (%s)",
                    seq,
                    cost,
                    waited,
                    describe(reasons),
                )
        # Permit(seq, cost, waited, now), without the class call (which runs its __init__ from
        # C, and costs half as much again): the same frozen dataclass, its fields written as
        # its __init__ writes them.
        permit = _new(Permit)
        fields = permit.__dict__
        fields["seq"] = seq
        fields["cost"] = cost
        fields["waited"] = waited
        fields["granted_at"] = now
        return permit

    def _revoke(self, permit: Permit) -> None:
        """Undo a grant whose caller was cancelled before it could use it."""
        self.release(permit, refund=True)
        self.stats.permits -= 1
        self.stats.waits -= 1  # only a queued waiter can be granted and then cancelled
        self.stats.wait_seconds -= permit.waited

    # -- hearing back ------------------------------------------------------------------------

    def release(self, permit: Permit, *, refund: bool = False) -> None:
        """The request of ``permit`` got no response (transport failure, cancellation).

        Args:
            permit: from :meth:`acquire`.
            refund: give the tokens back; only when the request surely never reached the server
                (the connection was never made). By default the tokens stay spent.
        """
        self._refill_held_since = None
        self._regate()
        loop = self._loop
        if refund and loop is not None:
            # The tokens held are read while the permit is still in flight: its tokens may be
            # what keeps the level up (the floor of an answered limiter), and taking it out of
            # the ledger first would give them back twice.
            now = loop.time()
            before = self._bucket.tokens(now)
            if self._ledger.pop(permit.seq) is not None:
                self._bucket.set_state(now, before + permit.cost)
                self.stats.tokens -= permit.cost
        else:
            self._ledger.pop(permit.seq)
        if self._live:
            self._dispatch()

    def observe(self, permit: Permit, state: BucketState | None, *, rejected: bool = False) -> None:
        """A response to the request of ``permit`` came back (any status): re-sync.

        Follows the shape of ``X-Ratelimit-Limit`` (within bounds) and corrects the local model
        with ``X-Ratelimit-Remaining`` (refined by ``X-Ratelimit-Reset``), allowing for the
        permits granted since (module docstring). A second observation of one permit is ignored.

        Args:
            permit: from :meth:`acquire`.
            state: from :func:`parse_ratelimit_headers`, or None when the response had none.
            rejected: the answer was a 429: the server charged nothing for it.
        """
        if (
            state is not self._state_read  # (UNREAD, never a parsed state, until one is read)
            or rejected
            or self._rejected
            or (self._runner._thread_id != _thread_ident() and _running_loop() is not self._loop)
        ):  # (not _on_loop, inline)
            self._observe(permit, state, rejected)
            return
        # The steady answer: one that carries the very state of the answer before (a parser
        # hands back one state per distinct set of header values), under the same shape, no
        # 429 about. It is what a server far from empty sends on every answer. The model's
        # _sync for that case, inline and in the same order (tests/test_limiter_steady.py
        # holds the two against each other): the ledger's answer, others' measure (usually a
        # zero: nothing recorded) and the band's clamp (_resync).
        if self._refill_held_since is not None:
            self._refill_held_since = None
            self._regate()
        seq = permit.seq
        # InFlightLedger.answer, inline.
        ledger = self._ledger
        entries = ledger._entries
        try:
            entry = entries.pop(seq)
        except KeyError:  # observed or released already
            if self._live:
                self._dispatch()
            return
        cost, granted_total, in_flight_before = entry
        if entries:
            ledger.total -= cost
        else:
            ledger.total = 0.0  # no float residue
        classes = ledger._classes
        seqs = classes[cost]
        if seqs[0] == seq and len(classes) == 1:  # the oldest in flight, one cost in use
            seqs.popleft()
            later = cost * len(seqs)
        else:
            later = ledger.leave(cost, seq)
        now = self._time()
        server = self._server_read
        stats = self.stats
        stats.syncs += 1
        bucket = self._bucket
        previous = self._reading
        assert previous is not None  # read by the answer that read the state
        if seq >= previous[2]:  # (an answer overtaken by a later one is not measured)
            # _measure_others: no 429 to deduct (self._rejected is empty)
            self._reading = (now, server, seq, granted_total)
            then, tokens, _since, granted = previous
            capacity = bucket.max_rate
            rate = self._rate
            expected = tokens + rate * (now - then)
            expected = expected if expected < capacity else capacity
            spent = expected - (granted_total - granted) - server
            if spent:
                self._weigh(now, spent, capacity, rate)
            else:
                # _weigh for a zero (the usual measure), inline: nothing recorded; the window
                # moves on only when its oldest measure has left it, or when a reserve is left
                # from a window now empty.
                items = self._others._items
                if items:
                    if items[0][0] < now - capacity / rate:
                        self._apply_others(now)
                elif self._reserve:
                    self._apply_others(now)
        # _resync: the band's top first (a bucket above it, lowered, is the usual re-sync), its
        # floor only when the bucket was not above the top. Logging's memo of the level is read
        # before the size of the move (a False there settles it); the logger is asked last, as
        # in _resync.
        high = server - later
        local = bucket.lower(now, high)
        if local > high + 1e-9:
            stats.synced_down += 1
            if (
                LEVELS.get(DEBUG) is not False
                and local - high >= 1.0
                and logger.isEnabledFor(DEBUG)
            ):
                log_resync("down", local, high, server, seq)
        else:
            low = server - (self._granted_total - granted_total) - in_flight_before
            if local < low - 1e-9 and seq > self._no_rise_upto:
                bucket.set_state(now, low)
                stats.synced_up += 1
                if (
                    LEVELS.get(DEBUG) is not False
                    and low - local >= 1.0
                    and logger.isEnabledFor(DEBUG)
                ):
                    log_resync("up", local, min(low, bucket.max_rate), server, seq)
        if self._live:
            self._dispatch()

    def _observe(self, permit: Permit, state: BucketState | None, rejected: bool) -> None:
        """:meth:`observe` in general (the model's ``_sync``), from any loop."""
        owner = self._owner
        if owner is not None and not self._on_loop():
            owner.get().observe(permit, state, rejected=rejected)  # called from another loop
            return
        informed = self._informed
        self._refill_held_since = None
        self._sync(permit, state, rejected)
        self._regate()  # (slow start may be over; with waiters, it stays closed)
        if self._live:
            if self._slow_start and self._informed and not informed and self._loop is not None:
                self._refill_held_since = self._loop.time()  # slow start ends: see _tokens
            self._dispatch()

    # -- 429 ---------------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """A 429 said ``Retry-After: seconds``: hold every request until they have passed.

        The local bucket is emptied now, so that when the pause ends the refill lets requests
        out one by one rather than all at once. A pause is never shortened by a later, shorter
        one. It is the server's word and stays whole, however long, for the waiters without
        limits; a queued waiter whose ``max_pause`` it exceeds raises
        :class:`~qomon_async.RateLimitError` now, and one whose ``max_wait`` ends before it
        :class:`~qomon_async.RateLimitTimeout`. Call it from the limiter's event loop.
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
            self._regate()
            if self._live:
                self._enforce_limits(now)
        else:
            logger.info(
                "429 Too Many Requests: already paused until loop time %.3f", self._paused_until
            )
        if self._live:
            self._dispatch()

    def _enforce_limits(self, now: float) -> None:
        """Fail at once the queued waiters whose own limits the current pause exceeds."""
        until = self._paused_until
        left = until - now
        for waiter in list(self._queue):
            if not waiter.live or waiter.future.done():
                continue
            max_wait = waiter.max_wait
            if waiter.max_pause is not None and left > waiter.max_pause:
                self._fail(waiter, pause_error(left, waiter.max_pause))
            elif max_wait is not None and until > waiter.started + max_wait:  # its deadline
                error = timeout_error(max_wait, predicted=until - waiter.started, pause=left)
                self._fail(waiter, error)
