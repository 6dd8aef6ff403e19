"""The bulk pool against the emulator's faults: one outcome per item, never a duplicate."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from qomon_async import (
    AuthenticationError,
    ContactValidationError,
    CreateResult,
    CreateStatus,
    DuplicateInputError,
    OutcomeUnknownError,
    QomonClient,
    RetryPolicy,
    UnprocessableEntityError,
)
from qomon_async.testing import (
    DropAfterProcessing,
    DropBeforeProcessing,
    ErrorAfterProcessing,
    ErrorBeforeProcessing,
    FakeQomon,
    Latency,
    NonJsonBody,
    RateLimited,
    SlowAnswer,
    TruncatedBody,
    Unauthorized,
)

KEY = "bulk-test-key"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.005, max_attempts=8)


def people(n: int, start: int = 0) -> Iterator[dict[str, Any]]:
    for i in range(start, start + n):
        yield {"firstname": f"Prénom{i}", "surname": f"Nom{i}", "mail": f"person{i}@example.org"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=1000, seed=1234) as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeQomon) -> AsyncIterator[QomonClient]:
    async with QomonClient(
        KEY, base_url=fake.base_url, retry=FAST, timeout=0.5, reconcile_delay=0
    ) as client:
        yield client


def pool_tasks() -> set[asyncio.Task[Any]]:
    """The pool's own tasks (the emulator's connection handlers live in the same loop)."""
    return {
        t for t in asyncio.all_tasks() if "BulkRun" in getattr(t.get_coro(), "__qualname__", "")
    }


def check_accounting(results: list[CreateResult], n: int, fake: FakeQomon) -> None:
    """Every index once; no duplicate stored; every stored contact accounted for."""
    assert sorted(r.index for r in results) == list(range(n))
    stored = fake.contacts
    mails = collections.Counter(c["mail"] for c in stored.values())
    assert all(count == 1 for count in mails.values()), "a contact was created twice"
    created = {r.contact.id: r for r in results if r.status is CreateStatus.CREATED and r.contact}
    for contact_id, result in created.items():
        assert contact_id in stored
        assert stored[contact_id]["mail"] == result.item["mail"]
    unknown_mails = {r.item["mail"] for r in results if r.status is CreateStatus.UNKNOWN}
    for contact_id, contact in stored.items():
        assert contact_id in created or contact["mail"] in unknown_mails


async def test_every_fault_mixed_in(client: QomonClient, fake: FakeQomon) -> None:
    n = 300
    fake.inject_mix(
        {
            DropAfterProcessing(): 0.06,
            ErrorAfterProcessing(status=500): 0.05,
            ErrorAfterProcessing(status=502): 0.03,
            SlowAnswer(seconds=5000): 0.03,  # 5 real seconds: past the client's 0.5 s timeout
            TruncatedBody(): 0.03,
            NonJsonBody(status=200, after_processing=True): 0.02,
            DropBeforeProcessing(): 0.04,
            ErrorBeforeProcessing(status=503): 0.05,
            RateLimited(retry_after=2): 0.05,
            Latency(seconds=50): 0.05,
        },
        route="POST /contacts",
    )
    fake.inject(ErrorBeforeProcessing(status=503), route="POST /search", probability=0.1)
    results = [r async for r in client.create_contacts(people(n), concurrency=16)]
    check_accounting(results, n, fake)
    by_status = collections.Counter(r.status for r in results)
    assert by_status[CreateStatus.CREATED] >= n - 3, by_status
    assert any(r.reconciled for r in results)
    assert client.stats.reconciled > 0
    assert len(fake.contacts) == by_status[CreateStatus.CREATED] + sum(
        1
        for r in results
        if r.status is CreateStatus.UNKNOWN
        and r.item["mail"] in {c["mail"] for c in fake.contacts.values()}
    )


async def test_without_reconciliation_ambiguous_items_are_unknown(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(DropAfterProcessing(), route="POST /contacts", nth=[2, 5])
    fake.inject(ErrorAfterProcessing(status=500), route="POST /contacts", nth=7)
    results = [r async for r in client.create_contacts(people(10), concurrency=1, reconcile=False)]
    check_accounting(results, 10, fake)
    unknown = [r for r in results if r.status is CreateStatus.UNKNOWN]
    assert len(unknown) == 3 and all(isinstance(r.error, OutcomeUnknownError) for r in unknown)
    assert len(fake.contacts) == 10  # the three landed: they are accounted for as "unknown"


async def test_no_mail_means_unknown_not_resent(client: QomonClient, fake: FakeQomon) -> None:
    fake.inject(DropAfterProcessing(), route="POST /contacts", nth=1)
    results = [r async for r in client.create_contacts([{"firstname": "Sans", "surname": "Mail"}])]
    assert results[0].status is CreateStatus.UNKNOWN
    assert isinstance(results[0].error, OutcomeUnknownError)
    assert "no mail" in str(results[0].error)
    assert len(fake.contacts) == 1 and len([r for r in fake.requests if r.path == "/contacts"]) == 1


async def test_surely_absent_is_sent_again(client: QomonClient, fake: FakeQomon) -> None:
    # 500 before processing looks ambiguous to the client: the search says absent, so it re-sends
    fake.inject(ErrorBeforeProcessing(status=500), route="POST /contacts", nth=1)
    (result,) = [r async for r in client.create_contacts(people(1))]
    assert result.status is CreateStatus.CREATED and not result.reconciled
    assert result.attempts == 2 and len(fake.contacts) == 1


async def test_create_contact_alone_reconciles(client: QomonClient, fake: FakeQomon) -> None:
    fake.inject(DropAfterProcessing(), route="POST /contacts", nth=1)
    contact = await client.create_contact({"firstname": "Solo", "mail": "solo@example.org"})
    assert contact.id in fake.contacts and len(fake.contacts) == 1
    assert client.stats.reconciled == 1


async def test_a_401_stops_the_pool(client: QomonClient, fake: FakeQomon) -> None:
    n, concurrency = 200, 8
    fake.inject(Unauthorized(status=401), route="POST /contacts", from_nth=40)
    results = [r async for r in client.create_contacts(people(n), concurrency=concurrency)]
    assert sorted(r.index for r in results) == list(range(n))
    creates = [r for r in fake.requests if r.path == "/contacts"]
    first_401 = next(i for i, r in enumerate(creates) if r.status == 401)
    # Only the requests already on their way when the 401 came back may follow it.
    assert len(creates) - first_401 <= concurrency
    statuses = collections.Counter(r.status for r in results)
    assert statuses[CreateStatus.CREATED] == 39
    assert statuses[CreateStatus.FAILED] == len(creates) - 39
    assert statuses[CreateStatus.SKIPPED] == n - len(creates)
    skipped = [r for r in results if r.status is CreateStatus.SKIPPED]
    assert all(isinstance(r.error, AuthenticationError) for r in skipped)
    assert all(r.attempts == 0 for r in skipped)  # never sent


async def test_one_bad_item_fails_alone(client: QomonClient, fake: FakeQomon) -> None:
    items: list[Any] = list(people(6))
    items[1] = {"firstname": "Bad", "mail": "not-an-email"}
    items[3] = {
        "firstname": "Bad",
        "mail": "x@example.org",
        "formdatas": [{"form_id": 424242, "form_ref_id": 1}],
    }
    items[4] = dict(items[0])  # a duplicate of item 0
    items[5] = 42  # not a contact at all
    results = {r.index: r async for r in client.create_contacts(items, concurrency=1)}
    assert results[0].status is CreateStatus.CREATED and results[2].status is CreateStatus.CREATED
    assert results[1].status is CreateStatus.FAILED and isinstance(
        results[1].error, ContactValidationError
    )
    assert results[3].status is CreateStatus.FAILED and isinstance(
        results[3].error, UnprocessableEntityError
    )
    assert results[4].status is CreateStatus.SKIPPED and isinstance(
        results[4].error, DuplicateInputError
    )
    assert results[4].error.first_index == 0
    assert results[5].status is CreateStatus.FAILED and isinstance(
        results[5].error, ContactValidationError
    )
    assert len(fake.contacts) == 2


async def test_duplicates_can_be_sent_when_asked(client: QomonClient, fake: FakeQomon) -> None:
    item = {"firstname": "Twin", "mail": "twin@example.org"}
    results = [r async for r in client.create_contacts([item, item], dedupe=False)]
    assert [r.status for r in results] == [CreateStatus.CREATED] * 2 and len(fake.contacts) == 2


async def test_ordered_and_async_input(client: QomonClient, fake: FakeQomon) -> None:
    fake.inject(Latency(seconds=30), route="POST /contacts", nth=[1, 2, 3])

    async def source() -> AsyncIterator[dict[str, Any]]:
        for item in people(40):
            await asyncio.sleep(0)
            yield item

    results = [r async for r in client.create_contacts(source(), concurrency=8, ordered=True)]
    assert [r.index for r in results] == list(range(40))
    assert all(r.ok for r in results) and len(fake.contacts) == 40


async def test_backpressure_reads_input_as_workers_free_up(client: QomonClient) -> None:
    pulled = 0

    def source() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for item in people(10_000):
            pulled += 1
            yield item

    run = client.create_contacts(source(), concurrency=4)
    consumed = 0
    async for _ in run:
        consumed += 1
        await asyncio.sleep(0.001)  # a slow consumer
        # in flight + results waiting to be read: bounded by the concurrency, not the input
        assert pulled - consumed <= 4 + 2 * 4 + 1
        if consumed == 60:
            break
    await run.aclose()
    assert pulled < 100


async def test_early_close_keeps_every_outcome_and_leaks_no_task(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(Latency(seconds=20), route="POST /contacts")
    run = client.create_contacts(people(500), concurrency=8)
    seen: list[CreateResult] = []
    async for result in run:
        assert len(pool_tasks()) == 8
        seen.append(result)
        if len(seen) == 10:
            break
    await run.aclose()
    assert pool_tasks() == set()
    outcomes = seen + run.unclaimed
    indexes = [r.index for r in outcomes]
    assert len(indexes) == len(set(indexes))
    created = {r.contact.id for r in outcomes if r.status is CreateStatus.CREATED and r.contact}
    assert set(fake.contacts) == created  # everything sent is accounted for
    assert len(created) < 500


async def test_cancellation_leaks_no_task(client: QomonClient, fake: FakeQomon) -> None:
    fake.inject(Latency(seconds=100), route="POST /contacts")
    run = client.create_contacts(people(100), concurrency=8)

    async def consume() -> None:
        async for _ in run:
            pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert pool_tasks() == set()
    assert all(
        r.status in (CreateStatus.CREATED, CreateStatus.UNKNOWN, CreateStatus.SKIPPED)
        for r in run.unclaimed
    )


async def test_progress_counters(client: QomonClient) -> None:
    snapshots: list[tuple[int, int, int]] = []
    run = client.create_contacts(
        [*people(30), {"mail": "bad"}],
        concurrency=4,
        on_progress=lambda p: snapshots.append((p.done, p.created, p.failed)),
    )
    async with run:
        results = [r async for r in run]
    assert len(results) == 31
    assert snapshots[-1] == (31, 30, 1)
    assert run.progress.total == 31 and run.progress.in_flight == 0
    assert run.progress.eta == 0 and run.progress.rate > 0


async def test_journal_hooks_and_in_doubt(client: QomonClient, fake: FakeQomon) -> None:
    attempts: list[int] = []
    existing = fake.add_contact(
        {"firstname": "Prénom0", "surname": "Nom0", "mail": "person0@example.org"}
    )
    since = fake.utcnow()
    results = {
        r.index: r
        async for r in client.create_contacts(
            people(3),
            on_attempt=lambda index, at: attempts.append(index),
            in_doubt=lambda index, item: since if index in (0, 1) else None,
        )
    }
    # item 0 was in doubt and is found: not sent again; item 1 in doubt and absent: sent
    assert results[0].reconciled and results[0].contact is not None
    assert results[0].contact.id == existing["id"]
    assert sorted(attempts) == [1, 2]
    assert len(fake.contacts) == 3


async def test_upsert_contacts_with_verification(client: QomonClient, fake: FakeQomon) -> None:
    items: list[dict[str, Any]] = [
        {"firstname": "Up", "surname": "One", "mail": "up1@example.org"},
        {"firstname": "Up", "surname": "Two", "mail": "up2@example.org"},
        # names a form that does not exist: Qomon accepts it (202) and drops it silently
        {
            "firstname": "Up",
            "surname": "Three",
            "mail": "up3@example.org",
            "custom_fields": [{"label": "No such field", "value": "x"}],
        },
    ]
    results = {
        r.index: r
        async for r in client.upsert_contacts(
            items, verify=True, verify_timeout=0.3, verify_interval=0.01
        )
    }
    assert results[0].status is CreateStatus.CREATED and results[0].contact is not None
    assert results[0].contact.mail == "up1@example.org"
    assert results[1].status is CreateStatus.CREATED
    assert results[2].status is CreateStatus.UNKNOWN and "not visible" in str(results[2].error)
    assert sorted(c["mail"] for c in fake.contacts.values()) == [
        "up1@example.org",
        "up2@example.org",
    ]
    upsert_requests = [r for r in fake.requests if r.path == "/contacts/upsert"]
    assert len(upsert_requests) == 3 and all(r.cost == 1 for r in upsert_requests)


async def test_an_input_that_fails_is_reported_after_the_items_it_gave(client: QomonClient) -> None:
    def source() -> Iterator[dict[str, Any]]:
        yield from people(5)
        raise ValueError("row 6 of the source is unreadable")

    seen: list[CreateResult] = []
    with pytest.raises(ValueError, match="row 6"):
        async for result in client.create_contacts(source(), concurrency=2):
            seen.append(result)
    assert sorted(r.index for r in seen) == list(range(5)) and all(r.ok for r in seen)


async def test_upserts_without_verification_are_accepted(
    client: QomonClient, fake: FakeQomon
) -> None:
    items = [{"firstname": "U", "surname": f"S{i}", "mail": f"u{i}@example.org"} for i in range(5)]
    results = [r async for r in client.upsert_contacts(items, concurrency=2)]
    assert all(r.status is CreateStatus.CREATED and r.contact is None for r in results)
    await fake.wait_for_upserts()
    assert len(fake.contacts) == 5


async def test_a_hook_that_raises_still_gives_one_outcome(
    client: QomonClient, fake: FakeQomon
) -> None:
    def on_attempt(index: int, started_at: object) -> None:
        if index == 2:
            raise RuntimeError("journal disk full")

    results = {r.index: r async for r in client.create_contacts(people(5), on_attempt=on_attempt)}
    assert sorted(results) == list(range(5))
    assert results[2].status is CreateStatus.FAILED and "journal disk full" in str(results[2].error)
    assert len(fake.contacts) == 4


async def test_a_raising_progress_callback_loses_nothing(client: QomonClient) -> None:
    def on_progress(progress: object) -> None:
        raise ValueError("display broken")

    results = [
        r async for r in client.create_contacts(people(10), concurrency=2, on_progress=on_progress)
    ]
    assert sorted(r.index for r in results) == list(range(10)) and all(r.ok for r in results)


async def test_cancellation_gives_every_picked_item_an_outcome(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(Latency(seconds=100), route="POST /contacts")
    run = client.create_contacts(people(100), concurrency=8)
    seen: list[CreateResult] = []

    async def consume() -> None:
        async for result in run:
            seen.append(result)

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    indexes = sorted(r.index for r in seen + run.unclaimed)
    assert indexes == list(range(len(indexes))) and len(indexes) >= 8
    stored = {c["mail"] for c in fake.contacts.values()}
    for r in run.unclaimed:
        if r.item["mail"] in stored:
            assert r.status in (CreateStatus.CREATED, CreateStatus.UNKNOWN)


async def test_twins_sent_on_purpose_never_share_a_contact(
    client: QomonClient, fake: FakeQomon
) -> None:
    twin = {"firstname": "Twin", "surname": "Same", "mail": "twin@example.org"}
    fake.inject(ErrorBeforeProcessing(status=502), route="POST /contacts", nth=2)
    results = [r async for r in client.create_contacts([twin, twin], concurrency=1, dedupe=False)]
    ids = [r.contact.id for r in results if r.contact is not None]
    assert all(r.ok for r in results) and len(set(ids)) == 2 and len(fake.contacts) == 2


async def test_a_401_on_the_lookup_stops_the_pool(client: QomonClient, fake: FakeQomon) -> None:
    fake.inject(DropAfterProcessing(), route="POST /contacts", nth=3)
    fake.inject(Unauthorized(), route="POST /search")
    results = {r.index: r async for r in client.create_contacts(people(30), concurrency=1)}
    assert results[2].status is CreateStatus.UNKNOWN
    assert isinstance(results[2].error, OutcomeUnknownError)
    creates = [r for r in fake.requests if r.path == "/contacts"]
    assert len(creates) == 3  # nothing is sent after the 401
    assert all(results[i].status is CreateStatus.SKIPPED for i in range(3, 30))


async def test_a_lookup_looks_twice_before_sending_again(
    client: QomonClient, fake: FakeQomon
) -> None:
    # Qomon answers 504 and stores the contact a moment later: the first search misses it.
    fake.inject(ErrorBeforeProcessing(status=504), route="POST /contacts", nth=1)
    searches = 0

    def land_late(info: object) -> bool:
        nonlocal searches
        searches += 1
        if searches == 2:
            fake.add_contact({"firstname": "Late", "surname": "Lander", "mail": "late@example.org"})
        return False

    fake.inject(Latency(seconds=0), route="POST /search", when=land_late)
    contact = await client.create_contact(
        {"firstname": "Late", "surname": "Lander", "mail": "late@example.org"}
    )
    assert len(fake.contacts) == 1 and contact.id in fake.contacts
    assert len([r for r in fake.requests if r.path == "/contacts"]) == 1


async def test_close_does_not_hang_on_a_stalled_input(client: QomonClient) -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for item in people(3):
        queue.put_nowait(item)

    async def bot_input() -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await queue.get()  # nothing more ever comes

    run = client.create_contacts(bot_input(), concurrency=2)
    seen = [await anext(run) for _ in range(3)]
    await asyncio.wait_for(run.aclose(), timeout=5)
    assert sorted(r.index for r in seen) == [0, 1, 2] and pool_tasks() == set()
