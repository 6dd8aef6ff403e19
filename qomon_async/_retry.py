"""When to retry a request and how long to wait: the one module that imports ``backoff``.

The decision, from what each status means on Qomon (see the Errors guide,
``docs/guides/errors.md``):

* Always retryable, on every route: a 429 (rejected before processing; its ``Retry-After`` is
  waited exactly, never shortened), a 503 (unavailable, before processing), and a connection that
  failed before the request was written.
* Retryable on idempotent routes only (GET, DELETE, search, kpi, forms, actions): other 5xx,
  timeouts and connections lost after sending. ``POST /contacts`` is never sent again after it
  may have reached Qomon: that case is reconciled by the caller (see ``_client.create_contact``).
* Never retried: 400, 401, 403, 404, 422, and answers that cannot be decoded.

Waits are exponential with full jitter, bounded by the policy's attempts and total time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

import backoff

from ._budget import Budget
from ._config import RetryPolicy
from ._exceptions import (
    APIConnectionError,
    QomonError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
)

__all__ = ["Budget", "is_ambiguous", "is_retryable", "retrying"]

logger = logging.getLogger("qomon_async")
T = TypeVar("T")


def is_retryable(exc: BaseException, *, idempotent: bool) -> bool:
    """Whether ``exc`` may be retried without risk of doing the request's effect twice."""
    if isinstance(exc, RateLimitError):
        return True
    if isinstance(exc, ServerError):
        return exc.status_code == 503 or idempotent
    if isinstance(exc, APIConnectionError):  # APITimeoutError included
        return not exc.request_sent or idempotent
    return False


def is_ambiguous(exc: BaseException) -> bool:
    """Whether a failed non-idempotent request (a create) may nonetheless have taken effect."""
    if isinstance(exc, ResponseDecodeError):
        return True  # a 2xx without a readable id: Qomon did something
    if isinstance(exc, ServerError):
        return exc.status_code != 503
    if isinstance(exc, APIConnectionError):
        return exc.request_sent
    return False


def retry_wait(policy: RetryPolicy, exc: BaseException, retry_number: int) -> float:
    """Seconds to wait before retry number ``retry_number`` (1-based) after ``exc``.

    A 429 waits its ``Retry-After`` exactly (or the policy's default when it has none); anything
    else waits a full-jitter exponential delay.
    """
    if isinstance(exc, RateLimitError):
        return exc.retry_after if exc.retry_after is not None else policy.default_retry_after
    if isinstance(exc, ServerError) and exc.retry_after is not None:
        return exc.retry_after  # a 503 that said when to come back
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (retry_number - 1))
    return backoff.full_jitter(ceiling)


def _waits(policy: RetryPolicy, budget: Budget | None = None) -> Generator[float, Any, None]:
    """A backoff wait generator that is sent each failure: it decides per exception.

    A wait longer than what the call's budget has left ends the retries (the last error is
    raised): a Retry-After is never shortened, and a backoff that would overrun ``max_wait``
    is not taken.
    """
    retry_number = 0
    exc = yield 0.0  # backoff primes the generator with None
    while True:
        retry_number += 1
        wait = retry_wait(policy, exc, retry_number)
        if budget is not None and budget.left is not None and wait > budget.left:
            return
        exc = yield wait


async def retrying(
    first: QomonError,
    call: Callable[[int], Awaitable[T]],
    *,
    started: float,
    policy: RetryPolicy,
    idempotent: bool,
    describe: str,
    on_retry: Callable[[BaseException, float], None] | None = None,
    budget: Budget | None = None,
) -> T:
    """After the first attempt of a call failed with ``first``, await ``call(attempt_number)``
    (from 2) until it succeeds or the policy says stop; raise the last error then.

    ``started``: when the first attempt began (``time.monotonic()``): the policy's ``max_time``
    counts from there. ``on_retry(exc, wait)`` is told of each retry (for counters); ``budget``
    (the call's ``max_wait``) pays for the pauses between retries.

    The caller awaits its first attempt itself and comes here only when it failed: a call that
    succeeds pays for none of this machinery.
    """
    if policy.max_attempts <= 1 or not is_retryable(first, idempotent=idempotent):
        raise first
    pending: QomonError | None = first

    def give_up(exc: BaseException) -> bool:
        if not is_retryable(exc, idempotent=idempotent):
            return True
        if isinstance(exc, RateLimitError) or (
            isinstance(exc, ServerError) and exc.retry_after is not None
        ):
            wait = retry_wait(policy, exc, 1)
            left = policy.max_time - (time.monotonic() - started)
            # Retry-After is honoured exactly or not at all: never a shortened wait.
            if wait > policy.max_retry_after or wait > left:
                return True
        return False

    def on_backoff(details: Any) -> None:
        exc = details.get("exception")
        wait = float(details.get("wait", 0.0))
        logger.info(
            "retrying %s in %.3f s (attempt %d failed: %s)",
            describe,
            wait,
            details.get("tries", 0),
            exc,
        )
        if budget is not None:
            budget.spend(wait)
        if on_retry is not None and isinstance(exc, BaseException):
            on_retry(exc, wait)

    attempt_number = 0
    result: T
    # The first failure is replayed as the context's first attempt, so that backoff counts it
    # (tries, give-up, the wait before the second attempt) exactly as if it had made it.
    async for attempt in backoff.aretry_context(
        QomonError,
        _waits,
        max_tries=policy.max_attempts,
        max_time=max(policy.max_time - (time.monotonic() - started), 0.0),
        jitter=None,  # jitter is applied by retry_wait, never to a Retry-After
        giveup=give_up,
        on_backoff=on_backoff,
        logger=None,
        policy=policy,
        budget=budget,
    ):
        with attempt:
            attempt_number += 1
            if pending is not None:
                replay, pending = pending, None
                raise replay
            result = await call(attempt_number)
    return result
