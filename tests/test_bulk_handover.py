"""How the pool hands results over: a bounded look-ahead in order, every result once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from qomon_async import QomonClient, RetryPolicy
from qomon_async.testing import FakeQomon, Latency

KEY = "handover-test-key"


def people(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"firstname": "H", "surname": f"N{i}", "mail": f"h{i}@example.org"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=1000, rate_limit=False) as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeQomon) -> AsyncIterator[QomonClient]:
    async with QomonClient(
        KEY, base_url=fake.base_url, retry=RetryPolicy(max_attempts=2), rate_limit=False
    ) as client:
        yield client


async def test_ordered_results_wait_for_a_slow_first_item_within_the_window(
    client: QomonClient, fake: FakeQomon
) -> None:
    # The first create takes 200 Qomon seconds; the others are immediate.
    fake.inject(Latency(seconds=200), route="POST /contacts", nth=1)
    pulled = 0

    def source() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for item in people(400):
            pulled += 1
            yield item

    run = client.create_contacts(source(), concurrency=4, ordered=True)
    first = await anext(run)
    # While item 0 was slow, the pool read at most its window (64 items) ahead, not the input.
    assert first.index == 0 and first.ok
    assert pulled <= 64 + 4 + 1
    rest = [r.index async for r in run]
    assert rest == list(range(1, 400))


async def test_every_result_is_handed_over_once_at_high_concurrency(
    client: QomonClient, fake: FakeQomon
) -> None:
    results = [r async for r in client.create_contacts(people(600), concurrency=64)]
    assert sorted(r.index for r in results) == list(range(600))
    assert all(r.ok for r in results) and len(fake.contacts) == 600


async def test_a_second_consumer_at_the_same_time_is_refused(
    client: QomonClient, fake: FakeQomon
) -> None:
    # Every create takes 500 Qomon seconds (0.5 s here): the first consumer waits for a result.
    fake.inject(Latency(seconds=500), route="POST /contacts")
    run = client.create_contacts(people(20), concurrency=2)
    first = asyncio.ensure_future(anext(run))
    while run.progress.in_flight < 2:
        await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already awaited"):
        await anext(run)
    result = await first
    assert result.ok
    rest = [r async for r in run]
    assert sorted(r.index for r in [result, *rest]) == list(range(20))


async def test_an_anext_made_before_the_run_started_is_refused_while_another_waits(
    client: QomonClient, fake: FakeQomon
) -> None:
    # An anext() made early and awaited late, while another task waits for a result of a
    # worker run: refused when awaited, and the waiting task still gets its result (the
    # run's decision is made when awaited, not when anext() was called).
    async def source() -> AsyncIterator[dict[str, Any]]:
        for item in people(20):
            yield item

    fake.inject(Latency(seconds=300), route="POST /contacts", nth=2)
    run = client.create_contacts(source(), concurrency=1)
    early = anext(run)
    first = await anext(run)
    waiting = asyncio.ensure_future(anext(run))
    while run._ready is None or run._ready.done():
        await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already awaited"):
        await early
    second = await asyncio.wait_for(waiting, 60)
    assert (first.index, second.index) == (0, 1)
    rest = [r.index async for r in run]
    assert rest == list(range(2, 20))


@pytest.mark.parametrize("first_result", [False, True])
async def test_closing_from_another_task_ends_a_waiting_consumer(
    client: QomonClient, fake: FakeQomon, first_result: bool
) -> None:
    # The consumer waits inside the run (no result yet) or, after a first result, in anext.
    fake.inject(Latency(seconds=500), route="POST /contacts")
    run = client.create_contacts(people(20), concurrency=4)
    seen: list[int] = []
    got_one = asyncio.Event()

    async def consume() -> None:
        async for result in run:
            seen.append(result.index)
            got_one.set()

    consumer = asyncio.ensure_future(consume())
    if first_result:
        await got_one.wait()
    while run.progress.in_flight < 4 or (first_result and run._results):
        await asyncio.sleep(0)
    picked = run.progress.done + run.progress.in_flight
    await run.aclose()
    await asyncio.wait_for(consumer, timeout=10)  # ended by the close, not by the input
    # Nothing new was sent; those in flight finished into unclaimed; each item once.
    assert sorted(seen + [r.index for r in run.unclaimed]) == list(range(picked))
    assert all(r.ok for r in run.unclaimed) and len(run.unclaimed) >= 4
    assert len(fake.contacts) == picked < 20


async def test_cancelling_a_waiting_consumer_shuts_the_run_down(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(Latency(seconds=500), route="POST /contacts")
    run = client.create_contacts(people(20), concurrency=4)
    waiting = asyncio.ensure_future(anext(run))
    while run.progress.in_flight < 4:
        await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The run is over: the items in flight were cancelled into unclaimed, nothing more comes.
    assert sorted(r.index for r in run.unclaimed) == [0, 1, 2, 3]
    assert all(not r.ok for r in run.unclaimed)
    with pytest.raises(StopAsyncIteration):
        await anext(run)
