"""Deadlines and cancellation: max_wait, a call cancelled while queued, one long Retry-After.

Against the emulator (or a small aiohttp server) over real HTTP on 127.0.0.1. The tests that
need the limiter to honour ``max_wait``/``max_pause`` are marked in their docstrings.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import backoff
import pytest
from aiohttp import web

from qomon_async import (
    QomonClient,
    RateLimitError,
    RateLimitTimeout,
    RetryPolicy,
)
from qomon_async._budget import CALL_BUDGET
from qomon_async._retry import Budget
from qomon_async.testing import ErrorBeforeProcessing, FakeQomon, RateLimited

KEY = "sk-test-deadline-key-do-not-leak"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.005)


@pytest.fixture
async def slow_fake() -> AsyncIterator[FakeQomon]:
    """Real time, a slow refill (1 token/s): a drained bucket takes seconds to pay a create."""
    async with FakeQomon(api_key=KEY, time_scale=1, rate=1.0) as fake:
        yield fake


async def drained_client(fake: FakeQomon, **kwargs: object) -> QomonClient:
    """A client whose limiter has learned that the space's bucket is empty."""
    client = QomonClient(KEY, base_url=fake.base_url, retry=FAST, reconcile_delay=0, **kwargs)  # type: ignore[arg-type]
    await client.__aenter__()
    fake.spend(fake.tokens - 1 if fake.tokens is not None else 0)
    await client.count_contacts()  # its answer says: 0 tokens left
    assert fake.requests[-1].remaining == 0
    return client


async def test_drained_bucket_max_wait_fails_at_once_and_sends_nothing(
    slow_fake: FakeQomon,
) -> None:
    """Needs the limiter branch (acquire honours max_wait)."""
    client = await drained_client(slow_fake)
    try:
        seen = len(slow_fake.requests)
        started = time.monotonic()
        with pytest.raises(RateLimitTimeout) as info:
            await asyncio.wait_for(
                client.create_contact({"firstname": "A", "mail": "a@example.org"}, max_wait=1),
                timeout=4,
            )
        assert time.monotonic() - started < 0.5  # at once, not after waiting the second
        assert info.value.max_wait == pytest.approx(1.0)
        assert len(slow_fake.requests) == seen  # nothing was sent
        assert slow_fake.contacts == {}
    finally:
        await client.aclose()


async def test_client_default_max_wait_applies_to_every_call(slow_fake: FakeQomon) -> None:
    """Needs the limiter branch (acquire honours max_wait)."""
    client = await drained_client(slow_fake, max_wait=0.5)
    try:
        seen = len(slow_fake.requests)
        with pytest.raises(RateLimitTimeout):
            await asyncio.wait_for(
                client.create_contact({"firstname": "A", "mail": "a@example.org"}), timeout=4
            )
        with pytest.raises(RateLimitTimeout):
            await asyncio.wait_for(client.replace_contact(1, {"firstname": "B"}), timeout=4)
        assert len(slow_fake.requests) == seen
        # math.inf lifts the client's default for one call: it waits for its 5 tokens... but
        # the test does not wait for them: it cancels once the call is queued.
        task = asyncio.ensure_future(
            client.create_contact({"firstname": "A", "mail": "a@example.org"}, max_wait=math.inf)
        )
        await wait_until_queued(client)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(slow_fake.requests) == seen
    finally:
        await client.aclose()


async def wait_until_queued(client: QomonClient, waiters: int = 1) -> None:
    limiter = client.limiter
    assert limiter is not None
    for _ in range(1000):
        if limiter.waiters >= waiters:
            return
        await asyncio.sleep(0)  # one loop iteration: not a timed sleep
    raise AssertionError("the call never queued in the limiter")


async def test_cancelled_while_queued_sends_nothing_and_gives_tokens_back(
    slow_fake: FakeQomon,
) -> None:
    client = await drained_client(slow_fake)
    limiter = client.limiter
    assert limiter is not None
    try:
        seen = len(slow_fake.requests)
        stats = client.limiter_stats
        assert stats is not None
        permits, tokens = stats.permits, stats.tokens
        tasks = [
            asyncio.ensure_future(
                client.create_contact({"firstname": "A", "mail": f"a{i}@example.org"})
            )
            for i in range(3)
        ]
        await wait_until_queued(client, waiters=3)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert len(slow_fake.requests) == seen  # nothing was sent
        assert slow_fake.contacts == {}
        # Nothing charged: no permit, no token, and the queue is empty again.
        assert (stats.permits, stats.tokens) == (permits, tokens)
        assert stats.cancelled >= 3
        assert limiter.waiters == 0
    finally:
        await client.aclose()


async def test_a_429_longer_than_the_budget_ends_the_retries_at_once() -> None:
    """The call's max_wait pays for the pauses between retries: a Retry-After beyond what is
    left is not waited; the 429 is raised at once (it was sent: not a RateLimitTimeout)."""
    async with FakeQomon(api_key=KEY, time_scale=1) as fake:
        fake.inject(RateLimited(retry_after=2.0), route="GET /actions", times=1)
        async with QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client:
            started = time.monotonic()
            with pytest.raises(RateLimitError) as info:
                await client.list_actions(max_wait=1.0)
            assert time.monotonic() - started < 0.5
            assert info.value.retry_after == pytest.approx(2.0)
            assert len(fake.requests) == 1


async def test_the_budget_is_shared_by_the_retries_of_one_call() -> None:
    async with FakeQomon(api_key=KEY, time_scale=1000) as fake:
        # Two 503s that say when to come back: 0.2 s each (real), waited exactly.
        fake.inject(ErrorBeforeProcessing(503), route="GET /actions", times=2)
        async with QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client:
            budget = Budget(10.0)
            await client._request("GET", "/actions", idempotent=True, max_wait=budget)
            assert len(fake.requests) == 3
            assert client.stats.retries == 2
            assert budget.left is not None
            # Every wait before a send came out of it: the limiter's and the pauses' between tries.
            spent = client.stats.retry_wait + client.stats.limiter_wait
            assert budget.left == pytest.approx(10.0 - spent, abs=1e-6)
            assert budget.left < 10.0


async def test_the_first_attempt_does_not_enter_the_retry_machinery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    original = backoff.aretry_context

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    # The retry module calls backoff.aretry_context through the module: count its entries.
    monkeypatch.setattr(backoff, "aretry_context", counting)
    async with (
        FakeQomon(api_key=KEY, time_scale=1000) as fake,
        QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client,
    ):
        await client.create_contact({"firstname": "A", "mail": "a@example.org"})
        await client.list_actions()
        assert calls == []
        fake.inject(ErrorBeforeProcessing(500), route="GET /actions", times=1)
        await client.list_actions()
        assert calls == [1]
        assert client.stats.retries == 1
        assert [r.status for r in fake.requests[-2:]] == [500, 200]


async def test_a_non_retryable_first_failure_is_raised_as_it_was() -> None:
    async with (
        FakeQomon(api_key=KEY, time_scale=1000) as fake,
        QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client,
    ):
        with pytest.raises(Exception) as info:
            await client.get_contact(424242)
        assert type(info.value).__name__ == "NotFoundError"
        assert client.stats.retries == 0


def test_max_wait_must_be_a_non_negative_number() -> None:
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError, match="max_wait"):
            QomonClient(KEY, max_wait=bad)
    assert Budget(math.inf).left is None
    assert Budget(None).left is None
    budget = Budget(1.0)
    budget.spend(2.0)
    assert budget.left == 0.0


# --------------------------------------------------------------------------------------------
# A Retry-After beyond the policy's cap: raised at once, for every call, never a frozen client
# --------------------------------------------------------------------------------------------


async def test_an_hour_long_retry_after_raises_at_once_for_every_call() -> None:
    """Needs the limiter branch for the second call (acquire honours max_pause)."""
    async with FakeQomon(api_key=KEY, time_scale=1) as fake:
        fake.inject(RateLimited(retry_after=3600), route="POST /contacts", times=1)
        async with QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client:
            started = time.monotonic()
            with pytest.raises(RateLimitError) as first:
                await client.create_contact({"firstname": "A", "mail": "a@example.org"})
            assert first.value.retry_after == pytest.approx(3600, abs=1)
            # Another route, another call: it fails at once too, and sends nothing.
            with pytest.raises(RateLimitError) as later:
                await asyncio.wait_for(client.list_actions(), timeout=4)
            assert later.value.retry_after is not None and later.value.retry_after > 3000
            assert time.monotonic() - started < 1.0
            assert len(fake.requests) == 1


async def test_a_pause_within_the_cap_is_waited_out_and_the_call_proceeds() -> None:
    """The scaled clock: 3,600 Qomon seconds are 0.1 s. A call whose policy caps pauses at
    0.05 s fails at once; one whose cap is 1 s waits the pause out and is answered.

    Needs the limiter branch for the second call (acquire honours max_pause)."""
    async with FakeQomon(api_key=KEY, time_scale=36000) as fake:
        fake.inject(RateLimited(retry_after=3600), route="POST /contacts", times=1)
        strict = RetryPolicy(max_retry_after=0.05, base_delay=0.001)
        async with QomonClient(KEY, base_url=fake.base_url, retry=strict) as client:
            with pytest.raises(RateLimitError):
                await client.create_contact({"firstname": "A", "mail": "a@example.org"})
            with pytest.raises(RateLimitError):
                await asyncio.wait_for(client.list_actions(), timeout=4)
            patient = RetryPolicy(max_retry_after=1.0)
            actions = await asyncio.wait_for(client.list_actions(retry=patient), timeout=4)
            assert isinstance(actions, list)
            assert [r.status for r in fake.requests] == [429, 200]


async def test_an_http_date_an_hour_ahead_raises_at_once_for_every_call() -> None:
    """A small server that answers every request 429 with ``Retry-After: <date in an hour>``.

    Needs the limiter branch for the second call (acquire honours max_pause)."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        when = email.utils.formatdate(time.time() + 3600, usegmt=True)
        return web.json_response(
            {"title": "Too Many Requests"}, status=429, headers={"Retry-After": when}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with QomonClient(KEY, base_url=f"http://127.0.0.1:{port}", retry=FAST) as client:
            started = time.monotonic()
            with pytest.raises(RateLimitError) as first:
                await client.get_contact(1)
            assert first.value.retry_after is not None and first.value.retry_after > 3500
            with pytest.raises(RateLimitError):
                await asyncio.wait_for(client.search_contacts().__anext__(), timeout=4)
            with pytest.raises((RateLimitError, RateLimitTimeout)):
                await asyncio.wait_for(client.list_actions(max_wait=1), timeout=4)
            assert time.monotonic() - started < 1.0
            assert seen == ["GET /contacts/1"]
    finally:
        await runner.cleanup()


async def test_a_bulk_run_bounds_each_request_by_max_wait(slow_fake: FakeQomon) -> None:
    """Needs the limiter branch (acquire honours max_wait)."""
    client = await drained_client(slow_fake)
    try:
        seen = len(slow_fake.requests)
        rows = [{"firstname": "A", "mail": f"a{i}@example.org"} for i in range(3)]
        results = [r async for r in client.create_contacts(rows, max_wait=0.5, concurrency=2)]
        assert sorted(r.index for r in results) == [0, 1, 2]
        assert {str(r.status) for r in results} == {"failed"}
        assert all(isinstance(r.error, RateLimitTimeout) for r in results)
        assert len(slow_fake.requests) == seen
        # The caller's context is left as it was: a later call has no budget from the run.
        assert CALL_BUDGET.get() is None
    finally:
        await client.aclose()


async def test_headers_are_built_once_and_the_key_stays_hidden() -> None:
    async with (
        FakeQomon(api_key=KEY, time_scale=1000) as fake,
        QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client,
    ):
        auth = client._auth
        headers, json_headers = auth.headers, auth.json_headers
        await client.list_actions()
        await client.create_contact({"firstname": "A", "mail": "a@example.org"})
        assert client._auth is auth
        assert auth.headers is headers and auth.json_headers is json_headers
        assert headers["Authorization"] == f"Bearer {KEY}"
        assert [r.status for r in fake.requests] == [200, 200]  # the key was sent and accepted
        shown = repr(vars(client)) + repr(auth) + repr(headers) + repr(json_headers)
        assert KEY not in shown


async def test_a_bulk_runs_max_wait_reaches_its_workers_and_ends_their_retries() -> None:
    """The worker's request has the run's budget: a 429 asking for 2 s (beyond 0.5) ends the
    item at once instead of being waited out."""
    async with FakeQomon(api_key=KEY, time_scale=1) as fake:
        fake.inject(RateLimited(retry_after=2.0), route="POST /contacts", nth=1)
        async with QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client:
            started = time.monotonic()
            run = client.create_contacts(
                [{"firstname": "A", "mail": "a@example.org"}], max_wait=0.5
            )
            results = [r async for r in run]
            assert time.monotonic() - started < 1.0
            assert [str(r.status) for r in results] == ["failed"]
            assert isinstance(results[0].error, RateLimitError)
            assert [r.status for r in fake.requests] == [429]
            assert CALL_BUDGET.get() is None
