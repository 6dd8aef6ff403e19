"""A run at concurrency=1 over a plain iterable: the iterating task sends each item itself.

No worker task then: each ``anext()`` picks, checks and sends one item in the caller's task and
returns its result. Every promise of the pool holds there too: closing from another task while
an item is in flight, cancellation mid-create, ``max_wait`` without touching the caller's context.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from qomon_async import (
    CreateStatus,
    DuplicateInputError,
    OutcomeUnknownError,
    QomonClient,
    RateLimitTimeout,
    RetryPolicy,
)
from qomon_async._budget import CALL_BUDGET
from qomon_async.testing import FakeQomon, Latency, RateLimited

KEY = "inline-test-key"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.005, max_attempts=3)


def people(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"firstname": "I", "surname": f"N{i}", "mail": f"i{i}@example.org"}


def creates(fake: FakeQomon) -> int:
    return sum(1 for r in fake.requests if r.path == "/contacts")


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=1000, rate_limit=False) as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeQomon) -> AsyncIterator[QomonClient]:
    async with QomonClient(KEY, base_url=fake.base_url, retry=FAST, rate_limit=False) as client:
        yield client


@pytest.mark.parametrize(
    ("mode", "ordered"), [("create", False), ("create", True), ("upsert", False)]
)
async def test_the_iterating_task_sends_each_item_itself(
    client: QomonClient, fake: FakeQomon, mode: str, ordered: bool
) -> None:
    items: list[Any] = list(people(6))
    items[2] = {"firstname": "Bad", "mail": "not-an-email"}
    items[4] = dict(items[0])  # a duplicate of item 0
    senders: list[asyncio.Task[Any] | None] = []
    in_flight: list[int] = []

    def on_attempt(index: int, started_at: object) -> None:
        senders.append(asyncio.current_task())

    run = (
        client.create_contacts(items, concurrency=1, ordered=ordered, on_attempt=on_attempt)
        if mode == "create"
        else client.upsert_contacts(items, concurrency=1, ordered=ordered, on_attempt=on_attempt)
    )
    results = []
    async for result in run:
        in_flight.append(run.progress.in_flight)
        results.append(result)
    # One result per item, in input order (one item at a time), each sent by this very task.
    assert [r.index for r in results] == list(range(6))
    assert [r.status for r in results] == [
        CreateStatus.CREATED,
        CreateStatus.CREATED,
        CreateStatus.FAILED,
        CreateStatus.CREATED,
        CreateStatus.SKIPPED,
        CreateStatus.CREATED,
    ]
    assert isinstance(results[4].error, DuplicateInputError)
    assert results[4].error.first_index == 0
    assert senders == [asyncio.current_task()] * 4
    assert in_flight == [0] * 6  # nothing is in flight between two anext() calls
    assert run.progress.done == 6 and run.unclaimed == []
    if mode == "upsert":
        await fake.wait_for_upserts()
    assert len(fake.contacts) == 4


async def test_an_async_input_at_concurrency_one_is_read_by_a_worker(
    client: QomonClient, fake: FakeQomon
) -> None:
    # A wait on an async input (a queue) must stay endable by aclose(): a worker task reads it.
    async def source() -> AsyncIterator[dict[str, Any]]:
        for item in people(3):
            yield item

    senders: list[asyncio.Task[Any] | None] = []

    def on_attempt(index: int, started_at: object) -> None:
        senders.append(asyncio.current_task())

    results = [
        r async for r in client.create_contacts(source(), concurrency=1, on_attempt=on_attempt)
    ]
    assert [r.index for r in results] == [0, 1, 2] and all(r.ok for r in results)
    assert len(senders) == 3 and asyncio.current_task() not in senders


async def test_break_then_close_leaves_nothing_in_flight(
    client: QomonClient, fake: FakeQomon
) -> None:
    async with client.create_contacts(people(20), concurrency=1) as run:
        async for result in run:
            if result.index == 2:
                break
    # Nothing was in flight at the break: nothing unclaimed, nothing more sent.
    assert run.unclaimed == [] and run.progress.done == 3 and run.progress.in_flight == 0
    assert len(fake.contacts) == 3 == creates(fake)
    with pytest.raises(StopAsyncIteration):
        await anext(run)


@pytest.mark.parametrize("first_result", [False, True])
async def test_closing_from_another_task_mid_create(
    client: QomonClient, fake: FakeQomon, first_result: bool
) -> None:
    # Every create takes 500 Qomon seconds (0.5 s here): the consumer is inside one when closed.
    fake.inject(Latency(seconds=500), route="POST /contacts")
    run = client.create_contacts(people(20), concurrency=1)
    seen: list[int] = []

    async def consume() -> None:
        async for result in run:
            seen.append(result.index)

    consumer = asyncio.ensure_future(consume())
    want = 1 if first_result else 0
    while len(seen) < want or run.progress.in_flight < 1:
        await asyncio.sleep(0)
    await run.aclose()
    await asyncio.wait_for(consumer, timeout=10)  # ended by the close, not by the input
    # The item in flight finished into unclaimed; nothing new was sent.
    assert seen == list(range(want))
    assert [r.index for r in run.unclaimed] == [want] and run.unclaimed[0].ok
    assert len(fake.contacts) == want + 1 == creates(fake)
    assert run.progress.in_flight == 0 and run.progress.done == want + 1
    with pytest.raises(StopAsyncIteration):
        await anext(run)


async def test_closing_from_another_task_stops_the_retries_of_the_item_in_flight(
    client: QomonClient, fake: FakeQomon
) -> None:
    # The first create is refused with a 429 asking for 300 Qomon seconds (0.3 s here).
    fake.inject(RateLimited(retry_after=300), route="POST /contacts", nth=1)
    run = client.create_contacts(people(5), concurrency=1)
    consumer = asyncio.ensure_future(anext(run))
    while creates(fake) < 1:
        await asyncio.sleep(0)
    await run.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(consumer, timeout=10)
    # Not sent again after the close: skipped, in unclaimed, after its one attempt.
    [result] = run.unclaimed
    assert result.index == 0 and result.status is CreateStatus.SKIPPED
    assert result.attempts == 1 and "closed" in str(result.error)
    assert creates(fake) == 1 and fake.contacts == {}


@pytest.mark.parametrize("first_result", [False, True])
async def test_cancelling_the_iterating_task_mid_create(
    client: QomonClient, fake: FakeQomon, first_result: bool
) -> None:
    fake.inject(Latency(seconds=500), route="POST /contacts")
    run = client.create_contacts(people(20), concurrency=1)
    want = 1 if first_result else 0
    if first_result:
        assert (await anext(run)).index == 0
    waiting = asyncio.ensure_future(anext(run))
    while run.progress.in_flight < 1:
        await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The run is over: the item in flight was cancelled into unclaimed, nothing more comes.
    [result] = run.unclaimed
    assert result.index == want and result.status is CreateStatus.UNKNOWN
    assert isinstance(result.error, OutcomeUnknownError)
    assert run.progress.in_flight == 0
    with pytest.raises(StopAsyncIteration):
        await anext(run)
    assert creates(fake) <= want + 1  # the cancelled request may not have reached Qomon


async def test_a_second_consumer_at_the_same_time_is_refused(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(Latency(seconds=500), route="POST /contacts", nth=1)
    run = client.create_contacts(people(3), concurrency=1)
    first = asyncio.ensure_future(anext(run))
    while run.progress.in_flight < 1:
        await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already awaited"):
        await anext(run)
    result = await first
    rest = [r async for r in run]
    assert [r.index for r in [result, *rest]] == [0, 1, 2] and all(r.ok for r in rest)


async def test_a_cancelled_anext_leaves_the_callers_context_as_it_was(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(Latency(seconds=500), route="POST /contacts")
    run = client.create_contacts(people(5), concurrency=1, max_wait=5)

    async def consume() -> float | object:
        CALL_BUDGET.set(7.0)  # this task's own budget (its context is its own copy)
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_later(0.1, task.cancel)
        try:
            await anext(run)  # cancelled inside the create, in this very task
        except asyncio.CancelledError:
            return CALL_BUDGET.get()
        return "not cancelled"

    assert await asyncio.ensure_future(consume()) == 7.0
    [result] = run.unclaimed
    assert result.index == 0 and result.status is CreateStatus.UNKNOWN


async def test_max_wait_bounds_the_requests_not_the_callers_context() -> None:
    # Real time, a slow refill (1 token/s) and a drained bucket: a create would wait ~1 s.
    async with (
        FakeQomon(api_key=KEY, time_scale=1, rate=1.0) as fake,
        QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client,
    ):
        fake.spend(fake.tokens - 1 if fake.tokens is not None else 0)
        await client.count_contacts()  # its answer says: 0 tokens left
        assert fake.requests[-1].remaining == 0
        seen = len(fake.requests)
        rows = [{"firstname": "A", "mail": f"a{i}@example.org"} for i in range(3)]
        # The caller's own budget (7 s) would let every create wait for its token.
        token = CALL_BUDGET.set(7.0)
        try:
            results = []
            async for result in client.create_contacts(rows, max_wait=0.5, concurrency=1):
                assert CALL_BUDGET.get() == 7.0  # between items: the caller's, as it was
                results.append(result)
            assert CALL_BUDGET.get() == 7.0
        finally:
            CALL_BUDGET.reset(token)
        # Each request had the run's 0.5 s: refused at once, nothing sent.
        assert [r.index for r in results] == [0, 1, 2]
        assert all(r.status is CreateStatus.FAILED for r in results)
        assert all(isinstance(r.error, RateLimitTimeout) for r in results)
        assert all(r.error.max_wait == pytest.approx(0.5) for r in results)  # type: ignore[union-attr]
        assert len(fake.requests) == seen
