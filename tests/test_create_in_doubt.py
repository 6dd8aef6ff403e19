"""In-doubt records: a create cut off after sending is looked up by the next create of it."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from qomon_async import CreateStatus, OutcomeUnknownError, QomonClient, RetryPolicy
from qomon_async._indoubt import MemoryInDoubtStore, identity_key
from qomon_async.testing import (
    DropBeforeProcessing,
    ErrorAfterProcessing,
    FakeQomon,
    Latency,
    SlowAnswer,
)

KEY = "in-doubt-test-key"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.005, max_attempts=4)


def signup(i: int) -> dict[str, str]:
    return {"firstname": "Inès", "surname": f"Signup{i}", "mail": f"signup{i}@example.org"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=100, seed=11) as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeQomon) -> AsyncIterator[QomonClient]:
    # 20 Qomon seconds of search lag covered (0.2 real s): a create that lands late is found.
    async with QomonClient(
        KEY, base_url=fake.base_url, retry=FAST, timeout=30, reconcile_lag=0.2
    ) as client:
        yield client


def stored_with(fake: FakeQomon, mail: str) -> list[int]:
    return [cid for cid, c in fake.contacts.items() if c["mail"] == mail]


async def test_fifty_signups_cut_off_after_sending_then_retried_make_one_contact_each(
    client: QomonClient, fake: FakeQomon
) -> None:
    for i in range(50):
        data = signup(i)
        if i % 2:
            # Stored at once, answered 1000 Qomon seconds later: the caller gives up first.
            rule = fake.inject(SlowAnswer(seconds=1000), route="POST /contacts", times=1)
            cut_off = 0.05
        else:
            # Held 5 Qomon seconds (50 ms) before being processed: stored after the caller left.
            rule = fake.inject(Latency(seconds=5), route="POST /contacts", times=1)
            cut_off = 0.02
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.create_contact(data), timeout=cut_off)
        rule.remove()
        contact = await client.create_contact(data)  # the signup, retried
        assert stored_with(fake, data["mail"]) == [contact.id], f"signup {i}"
    assert len(fake.contacts) == 50
    assert client.stats.reconciled >= 25  # every stored-at-once one was found, not re-sent


async def test_an_unknown_outcome_is_reconciled_by_the_next_create(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(ErrorAfterProcessing(status=500), route="POST /contacts", nth=1)
    with pytest.raises(OutcomeUnknownError):
        await client.create_contact(signup(1), reconcile=False)
    contact = await client.create_contact(signup(1))
    assert stored_with(fake, "signup1@example.org") == [contact.id]
    creates = [r for r in fake.requests if r.path == "/contacts"]
    assert len(creates) == 1  # found, not sent again
    # Settled: the record is cleared, and a third create is an ordinary one.
    await client.create_contact(signup(1))
    assert len(stored_with(fake, "signup1@example.org")) == 2


async def test_the_pool_looks_up_a_create_cut_off_earlier(
    client: QomonClient, fake: FakeQomon
) -> None:
    rule = fake.inject(SlowAnswer(seconds=1000), route="POST /contacts", times=1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(client.create_contact(signup(7)), timeout=0.2)
    rule.remove()
    results = [r async for r in client.create_contacts([signup(6), signup(7)], ordered=True)]
    assert [r.status for r in results] == [CreateStatus.CREATED] * 2
    assert results[1].reconciled and results[1].attempts == 0
    assert stored_with(fake, "signup7@example.org") == [results[1].contact.id]  # type: ignore[union-attr]
    assert len(fake.contacts) == 2


async def test_a_create_cancelled_before_sending_leaves_no_record(
    client: QomonClient, fake: FakeQomon
) -> None:
    store = client._creates.in_doubt
    assert isinstance(store, MemoryInDoubtStore)
    task = asyncio.ensure_future(client.create_contact(signup(3)))
    task.cancel()  # before it ran: nothing was sent
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(store) == 0 and fake.requests == []


class SlowStore:
    """An in-doubt store whose writes take a while (as over a network)."""

    def __init__(self) -> None:
        self.records: dict[str, dt.datetime] = {}
        self.lookups = 0

    async def record(self, key: str, started_at: dt.datetime, ttl: float) -> None:
        await asyncio.sleep(0.01)
        self.records.setdefault(key, started_at)

    async def lookup(self, key: str) -> dt.datetime | None:
        self.lookups += 1
        return self.records.get(key)

    async def clear(self, key: str) -> None:
        self.records.pop(key, None)


async def test_a_remote_store_is_written_from_a_cancelled_task(fake: FakeQomon) -> None:
    store = SlowStore()
    async with QomonClient(
        KEY, base_url=fake.base_url, retry=FAST, reconcile_lag=0.2, in_doubt=store
    ) as client:
        rule = fake.inject(SlowAnswer(seconds=1000), route="POST /contacts", times=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.create_contact(signup(4)), timeout=0.2)
        rule.remove()
        # The record is still being written: the retry waits for it, then finds the contact.
        contact = await client.create_contact(signup(4))
    assert stored_with(fake, "signup4@example.org") == [contact.id]
    assert store.records == {}  # settled, cleared


async def test_without_in_doubt_records_a_retry_makes_a_twin(fake: FakeQomon) -> None:
    # What the records prevent (in_doubt=False turns them off).
    async with QomonClient(
        KEY, base_url=fake.base_url, retry=FAST, reconcile_lag=0.2, in_doubt=False
    ) as client:
        rule = fake.inject(SlowAnswer(seconds=1000), route="POST /contacts", times=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.create_contact(signup(5)), timeout=0.2)
        rule.remove()
        await client.create_contact(signup(5))
    assert len(stored_with(fake, "signup5@example.org")) == 2


async def test_the_memory_store_expires_and_is_bounded() -> None:
    now = [0.0]
    store = MemoryInDoubtStore(max_records=3, clock=lambda: now[0])
    start = dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)
    store.record_nowait("a", start, ttl=10)
    store.record_nowait("a", start + dt.timedelta(seconds=5), ttl=10)
    assert await store.lookup("a") == start  # the earliest start is kept
    now[0] = 10.5
    assert await store.lookup("a") is None  # expired
    for key in "bcde":
        await store.record(key, start, ttl=100)
    assert len(store) == 3 and await store.lookup("b") is None  # the oldest was forgotten
    await store.clear("c")
    assert await store.lookup("c") is None and await store.lookup("e") == start


def test_the_identity_key_names_neither_the_mail_nor_the_names() -> None:
    key = identity_key(signup(1))
    assert key is not None and "signup" not in key and "Inès" not in key
    assert key == identity_key({**signup(1), "mail": " SIGNUP1@example.org "})
    assert key != identity_key({**signup(1), "firstname": "Ines"})
    assert identity_key({"firstname": "No mail"}) is None


class DictStore:
    """An in-doubt store in a dict, written at once."""

    def __init__(self) -> None:
        self.records: dict[str, dt.datetime] = {}

    async def record(self, key: str, started_at: dt.datetime, ttl: float) -> None:
        self.records.setdefault(key, started_at)

    async def lookup(self, key: str) -> dt.datetime | None:
        return self.records.get(key)

    async def clear(self, key: str) -> None:
        self.records.pop(key, None)


async def test_a_create_cut_off_in_its_second_round_is_recorded_from_its_first(
    fake: FakeQomon,
) -> None:
    # Round 1 is dropped before Qomon processed it; reconciliation finds nothing, so round 2
    # sends again; the caller gives up while round 2 waits for its answer. The record must
    # date from round 1: a contact stored by either round is found from that time on.
    store = DictStore()
    async with QomonClient(
        KEY, base_url=fake.base_url, retry=FAST, reconcile_lag=0.2, in_doubt=store
    ) as client:
        fake.inject(DropBeforeProcessing(), route="POST /contacts", nth=1)
        fake.inject(SlowAnswer(seconds=1000), route="POST /contacts", nth=2)
        data = signup(8)
        before = dt.datetime.now(dt.timezone.utc)
        task = asyncio.ensure_future(client.create_contact(data))
        loop = asyncio.get_running_loop()
        limit = loop.time() + 10
        while len([r for r in fake.requests if r.path == "/contacts"]) < 2:
            assert loop.time() < limit, "the second round was never sent"
            await asyncio.sleep(0.005)
        second_round = dt.datetime.now(dt.timezone.utc)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    key = identity_key(data)
    assert key is not None and list(store.records) == [key]
    started_at = store.records[key]
    assert second_round - before >= dt.timedelta(seconds=0.1)  # the rounds are told apart
    # From round 1's start, nearer the call than round 2 (a loaded machine may delay both).
    assert before <= started_at < before + (second_round - before) / 2
