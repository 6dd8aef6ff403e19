"""What the limiter accepts from a server's rate-limit headers: shapes within bounds, clamped
re-syncs, each refusal logged once.

Unit tests run on the virtual-clock loop of ``test_ratelimit``; the last one runs a real client
against a small aiohttp server on 127.0.0.1 that advertises an absurd shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from test_ratelimit import drain, now, run

from qomon_async import QomonClient, RateLimit
from qomon_async._local_limiter import RateLimiter
from qomon_async._ratelimit import (
    MAX_BURST,
    MAX_RATE,
    MIN_BURST,
    MIN_RATE,
    BucketState,
    parse_ratelimit_headers,
    shape_within_bounds,
)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "X-Ratelimit-Limit refused" in r.getMessage()
    ]


@pytest.mark.parametrize(
    ("capacity", "rate", "accepted"),
    [
        (100, 10, True),
        (MIN_BURST, MIN_RATE, True),
        (MAX_BURST, MAX_RATE, True),
        (100, 1e-9, False),
        (100, MIN_RATE / 2, False),
        (100, MAX_RATE * 2, False),
        (0.5, 10, False),
        (1e12, 10, False),
    ],
)
def test_shape_bounds(capacity: float, rate: float, accepted: bool) -> None:
    assert shape_within_bounds(capacity, rate) is accepted


def test_an_absurd_rate_is_refused_logged_once_and_the_shape_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="qomon_async")
    absurd = parse_ratelimit_headers(
        {"X-Ratelimit-Limit": "burst:100;rate:0.000000001", "X-Ratelimit-Remaining": "0"}
    )
    assert absurd == BucketState(capacity=100, rate=1e-9, remaining=0)

    async def main() -> float:
        limiter = RateLimiter(slow_start=False)
        permits = await drain(limiter, 3)
        limiter.observe(permits[0], absurd)
        limiter.observe(permits[1], absurd)
        assert (limiter.capacity, limiter.rate) == (100, 10)  # the previous shape
        assert limiter.stats.shapes_refused == 2
        assert limiter.stats.shape_changes == 0
        # Remaining 0 still counts, in the kept shape: after the first answer, 0 tokens less
        # the two requests still in flight; 7 tokens at 10/s, not in 157 years.
        t0 = now()
        await limiter.acquire(5)
        return now() - t0

    assert run(main) == pytest.approx(0.7)
    assert refusals(caplog) == [
        "X-Ratelimit-Limit refused: burst 100, rate 1e-09/s is outside burst [1, 1e+06] and "
        "rate [0.01, 1e+06]/s; keeping burst 100, 10/s"
    ]


def test_each_distinct_refused_shape_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="qomon_async")

    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        shapes = [(1e12, 10.0), (100.0, 5e6), (1e12, 10.0), (0.5, 1.0), (100.0, 5e6)]
        for capacity, rate in shapes:
            permit = await limiter.acquire(1)
            limiter.observe(permit, BucketState(capacity=capacity, rate=rate, remaining=50))
        assert limiter.stats.shapes_refused == 5
        assert (limiter.capacity, limiter.rate) == (100, 10)

    run(main)
    assert len(refusals(caplog)) == 3


def test_a_shape_within_bounds_is_adopted() -> None:
    async def main() -> None:
        limiter = RateLimiter(slow_start=False)
        permit = await limiter.acquire(1)
        limiter.observe(permit, BucketState(capacity=MAX_BURST, rate=MAX_RATE, remaining=10))
        assert (limiter.capacity, limiter.rate) == (MAX_BURST, MAX_RATE)
        assert limiter.stats.shape_changes == 1

    run(main)


@pytest.mark.parametrize(
    "answer",
    [
        BucketState(reset=1e9),  # "full again in 31 years"
        BucketState(remaining=0, reset=1e9),
        BucketState(capacity=100, rate=10, remaining=0, reset=1e12),
    ],
)
def test_remaining_and_reset_never_imply_more_than_a_bucket_of_refill(
    answer: BucketState,
) -> None:
    async def main() -> float:
        limiter = RateLimiter(slow_start=False)
        permit = await limiter.acquire(1)
        limiter.observe(permit, answer)
        assert limiter.available == 0  # clamped to an empty bucket, not a debt of years
        t0 = now()
        await limiter.acquire(100)  # the whole bucket: capacity / rate at most
        return now() - t0

    assert run(main) == pytest.approx(10.0)


@pytest.fixture
async def absurd_server() -> AsyncIterator[str]:
    """Answers every request 200 with a count, advertising a bucket refilled once per 30 years."""
    answered = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal answered
        answered += 1
        await request.read()
        return web.Response(
            body=json.dumps({"status": True, "data": {"total": answered}}).encode(),
            content_type="application/json",
            headers={
                "X-Ratelimit-Limit": "burst:100;rate:0.000000001",
                "X-Ratelimit-Remaining": "0",
                "X-Ratelimit-Cost": "1",
            },
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_client_keeps_pacing_against_an_absurd_shape(
    absurd_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="qomon_async")
    # A fast local model (1,000 tokens/s) so that the pacing below costs milliseconds.
    async with QomonClient(
        "key", base_url=absurd_server, rate_limit=RateLimit(capacity=100, rate=1000)
    ) as client:
        counts = [await asyncio.wait_for(client.count_contacts(), 5) for _ in range(5)]
        limiter = client.limiter
        assert limiter is not None
        assert (limiter.capacity, limiter.rate) == (100, 1000)  # the absurd shape refused
        stats = client.limiter_stats
        assert stats is not None and stats.shapes_refused == 5
        # Every answer says "0 remaining": each call waited for one token of refill (1 ms),
        # in the kept shape, instead of forever.
        assert stats.waits == 4
        assert stats.wait_seconds < 1.0
    assert counts == [1, 2, 3, 4, 5]
    assert len(refusals(caplog)) == 1
