"""A caller waiting in the local limiter's queue: its own limits, why it waited, and the errors
that end its wait.

:class:`qomon_async._limiter_fifo.RateLimiter` queues a caller it cannot grant at once as a
:class:`Waiter`. A waiter's ``max_wait`` and ``max_pause`` bound its own wait: the limiter
fails it with :func:`timeout_error` (``max_wait`` exceeded: predicted, run out, or overtaken by
a 429 pause) or :func:`pause_error` (a 429 pause beyond ``max_pause``); nothing is charged
either way. A permit that waited is logged with the reasons it waited (:func:`describe`).
"""

from __future__ import annotations

import asyncio
import math

from ._exceptions import RateLimitError, RateLimitTimeout
from ._ratelimit import Permit

__all__ = [
    "EMPTY",
    "PAUSED",
    "QUEUED",
    "SLOW_START",
    "Waiter",
    "check_limit",
    "describe",
    "pause_error",
    "timeout_error",
]

# Why a queued waiter waited (a bit set, for its log line).
QUEUED, PAUSED, SLOW_START, EMPTY = 1, 2, 4, 8
_REASONS = (
    (QUEUED, "queued"),
    (PAUSED, "paused by 429"),
    (SLOW_START, "slow start"),
    (EMPTY, "bucket empty"),
)


class Waiter:
    """A caller queued in :meth:`RateLimiter.acquire`."""

    __slots__ = (
        "amount",
        "cost",
        "deadline",
        "future",
        "live",
        "max_pause",
        "max_wait",
        "reasons",
        "started",
    )

    def __init__(
        self,
        cost: float,
        amount: float,
        future: asyncio.Future[Permit],
        *,
        started: float,
        max_pause: float | None,
        max_wait: float | None,
    ) -> None:
        self.cost = cost
        self.amount = amount  # what it was counted for in the queue's total
        self.future = future
        self.started = started
        self.max_pause = max_pause
        self.max_wait = max_wait
        self.deadline = None if max_wait is None else started + max_wait
        self.live = True  # in the queue, neither granted, failed nor cancelled
        self.reasons = 0


def check_limit(name: str, value: float | None) -> float | None:
    """``max_wait`` or ``max_pause`` as the limiter keeps it: None for no limit (None or
    infinity), else a float.

    Raises:
        ValueError: the value is negative or not a number.
    """
    if value is None:
        return None
    if not value >= 0:  # negative or NaN
        raise ValueError(f"{name} must be a non-negative number of seconds or None, got {value!r}")
    return None if value == math.inf else float(value)


def describe(reasons: int) -> str:
    """The reasons a waiter waited, for its log line (``"queued, bucket empty"``)."""
    return ", ".join(text for bit, text in _REASONS if reasons & bit)


def pause_error(left: float, max_pause: float) -> RateLimitError:
    """A 429 pause of ``left`` seconds is beyond a caller's ``max_pause``."""
    return RateLimitError(
        f"429 Too Many Requests: the server asked to wait {left:.3f} s, beyond max_pause "
        f"({max_pause:g} s); nothing was sent",
        retry_after=left,
        status_code=429,
    )


def timeout_error(
    max_wait: float, *, predicted: float | None = None, pause: float | None = None
) -> RateLimitTimeout:
    """A caller's ``max_wait`` is exceeded: ``predicted`` (the wait foreseen at once), or the
    time ran out while it waited (neither given), or a 429 ``pause`` holds every request longer
    (``predicted`` is then the wait from the caller's start to the pause's end)."""
    if pause is not None:
        text = f"a 429 pause holds every request for {pause:.3f} s, beyond max_wait"
    elif predicted is not None:
        text = f"the rate limiter predicts a wait of {predicted:.3f} s, beyond max_wait"
    else:
        text = "the rate limiter could not grant the request within max_wait"
    return RateLimitTimeout(
        f"{text} ({max_wait:g} s); nothing was sent", predicted_wait=predicted, max_wait=max_wait
    )
