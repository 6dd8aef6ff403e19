"""The rate limiter's interface, and the pure facts it works from (no event loop needed).

Qomon meters each space with one token bucket (100 tokens, refilled at 10/s; ``POST /contacts``
and ``PATCH /contacts/{id}`` cost 5, everything else 1), shared by every process that uses the
space. The client spends it through a :class:`Limiter`, without knowing which one it holds:

* :class:`qomon_async._local_limiter.LocalLimiter`: a model of the bucket inside one process,
  built on :mod:`aiolimiter` (the default);
* :class:`qomon_async.redis.RedisBucket`: one bucket per space kept in Redis, shared by every
  process and host that uses the space (the ``redis`` extra).

Around each request the client does::

    cost = route_cost(method, path)
    permit = limiter.try_acquire(cost)  # granted at once, or None: nothing charged
    if permit is None:
        permit = await limiter.acquire(cost, max_wait=..., max_pause=...)
    try:
        response = await send(...)
    except BaseException:
        limiter.release(permit, refund=<the request surely never left>)
        raise
    limiter.observe(permit, parse_ratelimit_headers(response.headers), rejected=status == 429)
    if response.status == 429:
        limiter.pause(parse_retry_after(response.headers.get("retry-after")) or 1.0)

Only ``acquire`` awaits: ``try_acquire``, ``observe``, ``release`` and ``pause`` never block, so
that they can be called from ``finally`` blocks and cancelled tasks (an implementation with
remote state sends them in the background).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import math
import operator
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

__all__ = [
    "MAX_BURST",
    "MAX_RATE",
    "MIN_BURST",
    "MIN_RATE",
    "BucketState",
    "Limiter",
    "LimiterStats",
    "Permit",
    "parse_lowercase_ratelimit_headers",
    "parse_ratelimit_headers",
    "parse_retry_after",
    "route_cost",
    "server_tokens",
    "shape_within_bounds",
]

#: Qomon's documented bucket: 100 tokens, refilled at 10 per second.
DEFAULT_CAPACITY = 100.0
DEFAULT_RATE = 10.0
EXPENSIVE_COST = 5
DEFAULT_COST = 1

#: The bucket shapes a limiter accepts from ``X-Ratelimit-Limit``: a burst of 1 to a million
#: tokens, refilled at 0.01 (one token every 100 s) to a million tokens per second. Qomon
#: advertises ``burst:100;rate:10.0``; a shape outside these bounds is a broken or hostile
#: server (``rate:0.000000001`` would make the next call wait for years), so a limiter logs it
#: once and keeps the shape it had.
MIN_BURST = 1.0
MAX_BURST = 1e6
MIN_RATE = 0.01
MAX_RATE = 1e6


# --------------------------------------------------------------------------------------------
# Pure helpers: route costs and header parsing (no event loop needed)
# --------------------------------------------------------------------------------------------

# Paths are relative to the base URL; "/v1" is accepted as a prefix (Qomon's draft routes).
_CONTACTS = re.compile(r"(?:/v1)?/contacts")
_ONE_CONTACT = re.compile(r"(?:/v1)?/contacts/(?!upsert$)[^/]+")


def route_cost(method: str, path: str) -> int:
    """Tokens Qomon charges for one request, as its documentation states.

    Args:
        method: the HTTP method, any case.
        path: the path relative to the base URL (a full URL, a query string or a trailing slash
            are tolerated).

    Returns:
        5 for the synchronous contact writes ``POST /contacts`` and ``PATCH /contacts/{id}``;
        1 for everything else, ``POST /contacts/upsert`` included.
    """
    path = urlsplit(path).path.rstrip("/") or "/"
    method = method.upper()
    if (method == "POST" and _CONTACTS.fullmatch(path)) or (
        method == "PATCH" and _ONE_CONTACT.fullmatch(path)
    ):
        return EXPENSIVE_COST
    return DEFAULT_COST


if not TYPE_CHECKING:
    # Cached, and called straight through the cache (no Python call per request): a client
    # sends the same few routes over and over, and a miss costs a few µs. Type checkers see the
    # plain signature above.
    route_cost = functools.lru_cache(maxsize=1024)(route_cost)


@dataclass(frozen=True)
class BucketState:
    """The bucket as one response described it; any field may be missing (``None``).

    Attributes:
        capacity: ``burst`` of ``X-Ratelimit-Limit`` (tokens).
        rate: ``rate`` of ``X-Ratelimit-Limit`` (tokens per second).
        remaining: ``X-Ratelimit-Remaining``: tokens left right after this request.
        cost: ``X-Ratelimit-Cost``: what this request was charged (tokens).
        reset: ``X-Ratelimit-Reset``: seconds until the bucket is full again.
    """

    capacity: float | None = None
    rate: float | None = None
    remaining: float | None = None
    cost: float | None = None
    reset: float | None = None

    def __init__(
        self,
        capacity: float | None = None,
        rate: float | None = None,
        remaining: float | None = None,
        cost: float | None = None,
        reset: float | None = None,
    ) -> None:
        # One is built per answer whose values changed: written straight into the instance's dict, a
        # third of the cost of the frozen dataclass's generated __init__ (read-only all the same).
        fields = self.__dict__
        fields["capacity"] = capacity
        fields["rate"] = rate
        fields["remaining"] = remaining
        fields["cost"] = cost
        fields["reset"] = reset


def server_tokens(state: BucketState, capacity: float, rate: float) -> float | None:
    """Tokens the server had right after the request, from Remaining refined by Reset, in a
    bucket of ``capacity`` tokens refilled at ``rate`` per second; None when neither is given.

    Clamped to ``[0, capacity]``: whatever the server says, a re-sync never implies a wait
    longer than ``capacity / rate``.
    """
    tokens = state.remaining
    reset = state.reset
    if reset is not None:
        # Reset = (capacity - tokens) / rate; it carries the fraction that an integer
        # Remaining drops, so it wins when both agree to within one token.
        from_reset = capacity - reset * rate
        if tokens is None or -1 < from_reset - tokens < 1:
            tokens = from_reset
    elif tokens is None:
        return None
    # Comparisons rather than min/max: this runs on every answer.
    if tokens > 0.0:
        return tokens if tokens < capacity else capacity
    return 0.0


def _number(text: str | None) -> float | None:
    """A finite, non-negative number, or None for anything else."""
    if text is None:
        return None
    try:
        value = float(text)  # surrounding whitespace is allowed
    except ValueError:
        return None
    return value if 0.0 <= value < math.inf else None  # NaN fails both


@functools.lru_cache(maxsize=16)
def _parse_limit_text(text: str) -> tuple[float | None, float | None]:
    """``burst:100;rate:10.0`` -> (100.0, 10.0); tolerant of spaces, ``=``, ``,`` and case."""
    # Cached: a server sends the same shape on every answer.
    fields: dict[str, str] = {}
    for part in re.split(r"[;,]", text):
        key, sep, value = part.partition(":")
        if not sep:
            key, sep, value = part.partition("=")
        if sep:
            fields[key.strip().lower()] = value
    capacity = _number(fields.get("burst"))
    rate = _number(fields.get("rate"))
    # A shape is only usable whole and positive.
    if not capacity or not rate:
        return None, None
    return capacity, rate


def shape_within_bounds(capacity: float, rate: float) -> bool:
    """Whether a bucket shape advertised by a server is one a limiter may adopt.

    Args:
        capacity: the burst, in tokens.
        rate: the refill, in tokens per second.

    Returns:
        True when ``MIN_BURST <= capacity <= MAX_BURST`` and ``MIN_RATE <= rate <= MAX_RATE``.
    """
    return MIN_BURST <= capacity <= MAX_BURST and MIN_RATE <= rate <= MAX_RATE


def parse_ratelimit_headers(headers: Mapping[str, str]) -> BucketState | None:
    """Read the ``X-Ratelimit-*`` headers of a response (any status).

    Args:
        headers: the response headers; names are matched case-insensitively, so a plain
            ``dict`` works as well as aiohttp's ``CIMultiDictProxy``.

    Returns:
        A :class:`BucketState` whose fields are ``None`` where a header is missing or garbled,
        or ``None`` when the response carries none of the four headers.
    """
    found: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in _RATELIMIT_WANTED and key not in found:  # a repeated header: the first one counts
            found[key] = value
    return parse_lowercase_ratelimit_headers(found)


def parse_lowercase_ratelimit_headers(headers: Mapping[str, str]) -> BucketState | None:
    """:func:`parse_ratelimit_headers` for headers whose names are already lower-case (the
    client's answers): four look-ups, no scan."""
    global _last_parsed  # noqa: PLW0603 (one tuple, replaced whole: safe across threads)
    try:
        # The four values in one call (C), when all four are there: a server that sends them
        # sends them on every answer. Over aiohttp's CIMultiDictProxy, 120 ns against 180 for
        # four calls of the bound get (and 5 bytecodes against 25); tuple(map(get, names))
        # takes 375.
        values: tuple[str | None, ...] = _RATELIMIT_VALUES(headers)
    except KeyError:
        # One is missing: each read on its own, None where missing. (The raise costs about
        # 0.3 µs; a server that never sends them keeps the limiter in slow start, one request
        # at a time, whatever this costs.)
        values = tuple(map(headers.get, _RATELIMIT_NAMES))
    last = _last_parsed
    if values == last[0]:
        # The same four values as the answer before (sequential calls on a bucket that keeps
        # up): the same (immutable) state, without converting them again.
        return last[1]
    limit, remaining, cost, reset = values
    if limit is None:
        if remaining is None and cost is None and reset is None:
            return None
        capacity = rate = None
    else:
        capacity, rate = _parse_limit_text(limit)
    # _number on each, inlined (this runs on most answers): float() then the range check.
    try:
        left = None if remaining is None else float(remaining)
        charged = None if cost is None else float(cost)
        full_in = None if reset is None else float(reset)
    except ValueError:  # a garbled one: field by field
        state = BucketState(capacity, rate, _number(remaining), _number(cost), _number(reset))
    else:
        state = BucketState(
            capacity,
            rate,
            left if left is not None and 0.0 <= left < _INF else None,
            charged if charged is not None and 0.0 <= charged < _INF else None,
            full_in if full_in is not None and 0.0 <= full_in < _INF else None,
        )
    _last_parsed = (values, state)
    return state


_INF = math.inf
# The four headers, lower-case, in the order the parser reads their values.
_RATELIMIT_NAMES = (
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-cost",
    "x-ratelimit-reset",
)
_RATELIMIT_WANTED = frozenset(_RATELIMIT_NAMES)
# The four values, read in one call (KeyError when one is missing).
_RATELIMIT_VALUES = operator.itemgetter(*_RATELIMIT_NAMES)
# The values of the four headers last parsed, and their state.
_last_parsed: tuple[tuple[str | None, ...], BucketState | None] = ((), None)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header.

    Qomon sends whole seconds; the emulator with a scaled clock sends fractions (``0.04``);
    RFC 9110 also allows an HTTP-date.

    Args:
        value: the header value, or ``None`` when absent.
        now: the wall clock (``time.time()``) to measure an HTTP-date against; for tests.

    Returns:
        The delay in seconds, never negative, or ``None`` when absent or garbled.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:  # pragma: no cover - older Pythons returned None
            return None
        if when.tzinfo is None:  # "-0000": UTC per RFC 5322
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Permit:
    """The right to send one request, as returned by :meth:`RateLimiter.acquire`.

    Attributes:
        seq: the grant order (1, 2, ...) within its limiter.
        cost: tokens charged.
        waited: seconds spent waiting in :meth:`~RateLimiter.acquire`.
        granted_at: the event loop's time at the grant.
    """

    seq: int
    cost: float
    waited: float
    granted_at: float

    def __init__(self, seq: int, cost: float, waited: float, granted_at: float) -> None:
        # One is built per request: written straight into the instance's dict, a third of the
        # cost of the frozen dataclass's generated __init__ (read-only all the same). A frozen
        # dataclass subclass (a shared bucket's permit) generates its own __init__ as usual.
        fields = self.__dict__
        fields["seq"] = seq
        fields["cost"] = cost
        fields["waited"] = waited
        fields["granted_at"] = granted_at


@dataclass
class LimiterStats:
    """Counters of a limiter (or of every limiter of a :class:`LimiterRegistry`).

    Attributes:
        permits: permits granted.
        tokens: tokens charged by those permits (refunds deducted).
        waits: permits that had to wait at all.
        wait_seconds: total time spent waiting, summed over permits.
        pauses: calls to :meth:`RateLimiter.pause` (429 responses).
        cancelled: waiters cancelled before their permit.
        syncs: responses whose headers were compared with the local model.
        synced_down: syncs that lowered the local model (someone else spent tokens).
        synced_up: syncs that raised it (the local model had over-charged).
        shape_changes: times ``X-Ratelimit-Limit`` advertised a new shape (and it was adopted).
        shapes_refused: answers whose ``X-Ratelimit-Limit`` was outside the accepted bounds
            (see :func:`shape_within_bounds`) and was ignored.
        kind: the bucket in use: ``"local"``, or ``"redis"`` (a shared bucket; ``"local"``
            while it has fallen back to the local limiter).
        fallbacks: times a shared bucket fell back to the local limiter (Redis failing).
        reservations: bookings made in a shared bucket (a booking voided by a 429 and made
            again counts twice).
    """

    permits: int = 0
    tokens: float = 0.0
    waits: int = 0
    wait_seconds: float = 0.0
    pauses: int = 0
    cancelled: int = 0
    syncs: int = 0
    synced_down: int = 0
    synced_up: int = 0
    shape_changes: int = 0
    shapes_refused: int = 0
    kind: Literal["local", "redis"] = "local"
    fallbacks: int = 0
    reservations: int = 0


@runtime_checkable
class Limiter(Protocol):
    """What the client needs of a rate limiter; one per client, usable from any event loop.

    Implementations: ``LocalLimiter`` (aiolimiter, one process) and ``RedisBucket`` (shared
    through Redis). Waiters are served first come, first served.

    Writing your own: implement every member below. :meth:`try_acquire` is the client's first
    call for each request, and :meth:`acquire` is awaited only when it returns None, so that a
    permit granted at once costs no coroutine. An implementation that cannot grant without a
    round trip returns None always (as ``RedisBucket`` does). An implementation written before
    ``try_acquire`` existed no longer satisfies this protocol (for a type checker, or for
    ``isinstance``), but the client still runs with it: it looks for ``try_acquire`` once, when
    it is built, and without it awaits :meth:`acquire` for every request.
    """

    @property
    def kind(self) -> Literal["local", "redis"]:
        """Which bucket is in use right now (a Redis bucket that fell back says ``"local"``)."""
        ...

    @property
    def stats(self) -> LimiterStats:
        """The limiter's counters."""
        ...

    def try_acquire(self, cost: float) -> Permit | None:
        """The right to send one request costing ``cost`` tokens at once, or None.

        Must not block or await. Returns a permit (tokens charged, ``waited == 0``) only when
        :meth:`acquire` would grant it without waiting: nobody queued before the caller, no 429
        pause, the bucket covers it; then it does exactly the bookkeeping :meth:`acquire` does
        for such a grant (counted in :attr:`stats` as a permit, not a wait). Otherwise returns
        None and charges nothing; the caller then awaits :meth:`acquire`. A grant at once never
        counts against ``max_wait`` or ``max_pause`` (it does not wait).

        Raises:
            ValueError: ``cost`` is negative or not a number.
        """
        ...

    async def acquire(
        self, cost: float, *, max_wait: float | None = None, max_pause: float | None = None
    ) -> Permit:
        """Wait for the right to send one request costing ``cost`` tokens, and charge them.

        Args:
            cost: tokens the request costs (:func:`route_cost`).
            max_wait: seconds the caller may wait at most (``None``: no limit). When the wait
                is already known to exceed it (the queue ahead, the refill, a 429 pause),
                :class:`~qomon_async.RateLimitTimeout` is raised at once; when it runs out
                while waiting, too. Either way nothing is charged.
            max_pause: the longest 429 pause worth waiting out (the retry policy's
                ``max_retry_after``); a pause lasting longer raises
                :class:`~qomon_async.RateLimitError` (with ``retry_after``) at once, also for
                a caller already waiting when the pause is set.

        Cancelling a waiter charges nothing and keeps the queue intact. A caller without
        ``max_wait`` and ``max_pause`` waits as long as the bucket and the server say.
        """
        ...

    def observe(self, permit: Permit, state: BucketState | None, *, rejected: bool = False) -> None:
        """A response to the request of ``permit`` came back (any status): re-sync."""
        ...

    def release(self, permit: Permit, *, refund: bool = False) -> None:
        """The request of ``permit`` got no response; ``refund`` when it surely never left."""
        ...

    def pause(self, seconds: float) -> None:
        """A 429 said ``Retry-After: seconds``: hold every request until they have passed."""
        ...

    async def aclose(self) -> None:
        """Release what the limiter holds (connections); it may be used again afterwards."""
        ...
