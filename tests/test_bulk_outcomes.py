"""Each item's whole life in its worker's one frame: every kind of outcome, as before.

The pool handles an item inline in its worker (no coroutine per item); these pin what each rare
outcome carries (status, error, attempts) and that the live counters are the tally of the
outcomes, on a mixed input.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from qomon_async import (
    ContactValidationError,
    CreateResult,
    CreateStatus,
    DuplicateInputError,
    QomonClient,
    RetryPolicy,
)
from qomon_async.testing import FakeQomon

KEY = "bulk-outcomes-key"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.005, max_attempts=8)


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=1000, seed=99) as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeQomon) -> AsyncIterator[QomonClient]:
    async with QomonClient(
        KEY, base_url=fake.base_url, retry=FAST, timeout=0.5, reconcile_delay=0
    ) as client:
        yield client


def mixed(seed: int, n: int) -> tuple[list[Any], dict[int, str]]:
    """A shuffled input of good contacts, invalid ones, unreadable ones and duplicates, with the
    kind of each item."""
    rng = random.Random(seed)
    items: list[Any] = []
    kinds: dict[int, str] = {}
    for i in range(n):
        kind = rng.choice(["good", "good", "good", "invalid", "unreadable", "duplicate"])
        if kind == "duplicate" and not any(k == "good" for k in kinds.values()):
            kind = "good"
        if kind == "good":
            item: Any = {"firstname": f"P{i}", "surname": "Mix", "mail": f"mix{seed}.{i}@ex.org"}
        elif kind == "invalid":
            item = {"firstname": f"P{i}", "mail": "not-an-email"}
        elif kind == "unreadable":
            item = 42 if i % 2 else {"firstname": f"P{i}", "tags": 3.5}
        else:
            first = rng.choice([j for j, k in kinds.items() if k == "good"])
            item = dict(items[first])
        kinds[i] = kind
        items.append(item)
    return items, kinds


@pytest.mark.parametrize(("seed", "concurrency"), [(1, 1), (2, 4), (3, 16)])
async def test_a_mixed_input_gives_each_item_its_outcome_and_the_counters_their_tally(
    client: QomonClient, fake: FakeQomon, seed: int, concurrency: int
) -> None:
    items, kinds = mixed(seed, 60)
    run = client.create_contacts(items, concurrency=concurrency)
    results = {r.index: r async for r in run}
    assert sorted(results) == list(range(len(items)))
    for index, kind in kinds.items():
        result = results[index]
        assert result.item is items[index] and result.elapsed >= 0
        if kind == "good":
            assert result.status is CreateStatus.CREATED and result.error is None
            assert result.contact is not None and result.attempts == 1
        elif kind in ("invalid", "unreadable"):
            assert result.status is CreateStatus.FAILED and result.attempts == 0
            assert isinstance(result.error, ContactValidationError)
        else:
            assert result.status is CreateStatus.SKIPPED and result.attempts == 0
            assert isinstance(result.error, DuplicateInputError)
            assert kinds[result.error.first_index] == "good"
            assert items[result.error.first_index] == items[index]
    tally = collections.Counter(r.status for r in results.values())
    progress = run.progress
    assert progress.done == len(items) and progress.in_flight == 0
    assert progress.created == tally[CreateStatus.CREATED] == len(fake.contacts)
    assert progress.failed == tally[CreateStatus.FAILED]
    assert progress.skipped == tally[CreateStatus.SKIPPED]
    assert progress.unknown == tally[CreateStatus.UNKNOWN] == 0


async def test_an_input_no_rule_foresaw_fails_as_unreadable(client: QomonClient) -> None:
    unreadable: list[Any] = [42]
    results = [r async for r in client.create_contacts(unreadable, concurrency=1)]
    assert results[0].status is CreateStatus.FAILED
    assert isinstance(results[0].error, ContactValidationError)
    assert "cannot be read" in str(results[0].error)


async def test_a_raising_in_doubt_hook_fails_its_item_unsent(
    client: QomonClient, fake: FakeQomon
) -> None:
    def in_doubt(index: int, item: object) -> dt.datetime | None:
        if index == 1:
            raise RuntimeError("journal unreadable")
        return None

    people: list[Any] = [{"firstname": "A", "mail": f"doubt{i}@ex.org"} for i in range(3)]
    run = client.create_contacts(people, concurrency=1, in_doubt=in_doubt)
    results = {r.index: r async for r in run}
    assert results[1].status is CreateStatus.FAILED and results[1].attempts == 0
    assert "unexpected error" in str(results[1].error) and "journal unreadable" in str(
        results[1].error
    )
    assert results[0].ok and results[2].ok and len(fake.contacts) == 2
    assert run.progress.failed == 1 and run.progress.created == 2


async def test_a_created_result_holds_every_field_of_the_dataclass(client: QomonClient) -> None:
    """A created item's result holds every field of the dataclass, and equals the one its
    __init__ builds from them."""
    items = [{"firstname": "F", "surname": "Fields", "mail": "fields@ex.org"}]
    results = [r async for r in client.create_contacts(items)]
    assert results[0].status is CreateStatus.CREATED
    assert vars(results[0]).keys() == {f.name for f in dataclasses.fields(CreateResult)}
    built = CreateResult(**vars(results[0]))  # and it equals the one __init__ builds
    assert built == results[0]
