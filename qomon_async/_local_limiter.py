"""The local limiter: a model of Qomon's token bucket inside one process, on aiolimiter.

Qomon meters each space with one bucket (100 tokens, refilled at 10/s; ``POST /contacts`` and
``PATCH /contacts/{id}`` cost 5, everything else 1) shared by every process using the space.
The local limiter models that bucket inside the process so that the client spends it exactly:
no 429 it could have avoided, no token left idle while work waits (but the refill that the
requests on their way will find already spent: see ``_limiter_model._Bucket``), first come
first served. The client observes or releases every permit it gets; a limiter of this module
counts on it.

Five modules, one idea each:

* :mod:`qomon_async._limiter_model`: the bucket (aiolimiter's level arithmetic) and how the
  answers' ``X-Ratelimit-*`` headers correct it, with the estimate of other consumers;
* :mod:`qomon_async._limiter_ledger`: the bookkeeping that model keeps per answer (the permits
  in flight, the window of others' spending), none of it scanned;
* :mod:`qomon_async._limiter_fifo`: :class:`RateLimiter`, the callers of one event loop served
  first come, first served on that bucket (fast path, FIFO queue, slow start, 429 pauses);
* :mod:`qomon_async._limiter_waiter`: a queued caller, its ``max_wait`` / ``max_pause``, and
  the errors that end its wait;
* this module: :class:`LocalLimiter`, the client's :class:`~qomon_async._ratelimit.Limiter`,
  one :class:`RateLimiter` per event loop.

Public surface (private modules; the client is the only caller)::

    limiter = LocalLimiter(capacity=100, rate=10)   # one per client, built anywhere
    rl = limiter.get()                      # the RateLimiter of the running loop (lazy)
    permit = rl.try_acquire(cost)           # a permit at once, or None (nothing charged)
    if permit is None:                      # then wait in the queue
        permit = await rl.acquire(cost, max_wait=None, max_pause=None)
    rl.observe(permit, state)               # a response came back (any status): re-sync
    rl.release(permit, refund=False)        # no response came back (transport failure)
    rl.pause(retry_after)                   # a 429: every request waits that long
    limiter.stats / rl.stats                # LimiterStats counters

Around each request the client acquires, sends, then observes the answer (or releases the
permit when none came back) and pauses on a 429, as :mod:`qomon_async._ratelimit` shows.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine
from typing import Any, Literal

from ._limiter_fifo import RateLimiter
from ._ratelimit import (
    DEFAULT_CAPACITY,
    DEFAULT_RATE,
    BucketState,
    LimiterStats,
    Permit,
)

__all__ = ["LimiterRegistry", "LocalLimiter", "RateLimiter"]

_get_running_loop = asyncio.get_running_loop


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
        stats: counters to add to (by default, its own).
        start_empty: each loop's limiter starts with an empty bucket instead of a full one
            (a shared bucket falling back to this one: others may have spent it all).
    """

    def __init__(
        self,
        capacity: float = DEFAULT_CAPACITY,
        rate: float = DEFAULT_RATE,
        *,
        slow_start: bool = True,
        stats: LimiterStats | None = None,
        start_empty: bool = False,
    ) -> None:
        if not (capacity > 0 and rate > 0):
            raise ValueError("capacity and rate must be positive numbers")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.slow_start = slow_start
        self.start_empty = start_empty
        self._stats = stats if stats is not None else LimiterStats()
        self._limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RateLimiter] = (
            weakref.WeakKeyDictionary()
        )
        self._last: RateLimiter | None = None  # the limiter of the loop that called last
        self._refused_shapes: dict[tuple[float, float], None] = {}  # logged once each

    @property
    def kind(self) -> Literal["local", "redis"]:
        return "local"

    @property
    def stats(self) -> LimiterStats:
        """The counters of every limiter of this client, added up."""
        return self._stats

    @property
    def in_use(self) -> bool:
        """Whether a limiter of this client has permits in flight or callers waiting: their
        answers and releases must still reach it."""
        return any(limiter.in_flight or limiter.waiters for limiter in self._limiters.values())

    def get(self) -> RateLimiter:
        """The limiter of the running event loop, created on first use.

        Raises:
            RuntimeError: no event loop is running.
        """
        loop = _get_running_loop()
        last = self._last
        if last is not None and last._loop is loop:
            return last
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = RateLimiter(
                self.capacity,
                self.rate,
                slow_start=self.slow_start,
                stats=self._stats,
                answered=True,  # the client observes or releases every permit
            )
            limiter._on_reshape = self._remember_shape
            limiter._refused_shapes = self._refused_shapes
            limiter._attach(loop)
            limiter._owner = self
            if self.start_empty:
                limiter._bucket.set_state(loop.time(), 0.0)
            self._limiters[loop] = limiter
        self._last = limiter
        # The client calls these on every request: bound straight to the limiter of the loop
        # that called last, they cost one call rather than two. That limiter hands a call made
        # from another loop back here (see RateLimiter._owner).
        self.try_acquire = limiter.try_acquire  # type: ignore[method-assign]
        self.acquire = limiter.acquire  # type: ignore[method-assign]
        self.observe = limiter.observe  # type: ignore[method-assign]
        return limiter

    def try_acquire(self, cost: float) -> Permit | None:
        """:meth:`RateLimiter.try_acquire` of the running loop's limiter: a permit at once, or
        None (nothing charged). Once a loop has called, this name is bound to that method
        itself."""
        return self.get().try_acquire(cost)

    def acquire(
        self, cost: float, *, max_wait: float | None = None, max_pause: float | None = None
    ) -> Coroutine[Any, Any, Permit]:
        """:meth:`RateLimiter.acquire` of the running loop's limiter (await it).

        A plain method returning that coroutine, rather than a coroutine awaiting it: one
        coroutine per request, not two. Once a loop has called, this name is bound to its
        limiter's method itself.
        """
        return self.get().acquire(cost, max_wait=max_wait, max_pause=max_pause)

    def observe(self, permit: Permit, state: BucketState | None, *, rejected: bool = False) -> None:
        """:meth:`RateLimiter.observe` of the running loop's limiter (once a loop has called,
        this name is bound to that method itself)."""
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
