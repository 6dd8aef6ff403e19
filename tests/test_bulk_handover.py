"""How the pool hands results over: a bounded look-ahead in order, every result once."""

from __future__ import annotations

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
