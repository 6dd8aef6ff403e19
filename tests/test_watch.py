"""watch_contacts against the emulator: every change seen once, and a resumable cursor."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
from collections.abc import AsyncIterator, Callable

import pytest

from qomon_async import (
    AuthenticationError,
    Condition,
    Contact,
    ContactWatch,
    Group,
    QomonClient,
    Query,
    RetryPolicy,
    WatchCursor,
)
from qomon_async._watch import with_condition
from qomon_async.testing import ErrorBeforeProcessing, FakeQomon

KEY = "sk-test-watch-key-do-not-leak"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.005)
SCALE = 100  # 200 Qomon seconds are 2 real seconds

Key = tuple[int, dt.datetime]


def key(contact: Contact) -> Key:
    assert contact.id is not None and contact.updated_at is not None
    return (contact.id, contact.updated_at)


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    # Each answer takes 0.5 Qomon s and the bucket refills at 50 tokens/s: the writer, one
    # request at a time, leaves the watcher room to poll every 5 Qomon seconds.
    async with FakeQomon(api_key=KEY, time_scale=SCALE, rate=50.0, latency=0.5) as fake:
        yield fake


async def write_for(fake: FakeQomon, seconds: float, written: list[Key], tag: str) -> None:
    """Another client: creates contacts and updates an older one every third, for ``seconds`` Qomon
    seconds (its pace is the space's bucket, shared with the watcher)."""
    async with QomonClient(KEY, base_url=fake.base_url, retry=FAST) as writer:
        end = fake.now() + seconds
        n = 0
        ids: list[int] = []
        while fake.now() < end:
            n += 1
            created = await writer.create_contact(
                {"firstname": f"{tag}{n}", "surname": "W", "mail": f"{tag}{n}@example.org"}
            )
            written.append(key(created))
            ids.append(key(created)[0])
            if n % 3 == 0 and n > 20:
                # Update a contact created a while ago (its creation was seen by then).
                updated = await writer.update_contact(ids[n - 21], {"mobile": f"06{n:08d}"})
                written.append(key(updated))


def last_versions(written: list[Key]) -> set[Key]:
    latest: dict[int, dt.datetime] = {}
    for cid, at in written:
        latest[cid] = max(at, latest.get(cid, at))
    return set(latest.items())


async def collect(watch: ContactWatch, delivered: list[Key]) -> None:
    async for contact in watch:
        delivered.append(key(contact))


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait (in the event loop) until ``condition()`` holds."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def finish(
    watch: ContactWatch, task: asyncio.Task[None], written: list[Key], delivered: list[Key]
) -> None:
    """Once the last version of every contact has arrived, let three more polls run (they
    must bring nothing twice), then stop the watcher."""
    await until(lambda: last_versions(written) <= set(delivered))
    polls = watch.polls
    await until(lambda: watch.polls >= polls + 3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_every_change_during_200_qomon_seconds_is_seen_exactly_once(
    fake: FakeQomon,
) -> None:
    written: list[Key] = []
    delivered: list[Key] = []
    async with QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client:
        watch = client.watch_contacts(since=fake.utcnow(), interval=0.05)
        watching = asyncio.ensure_future(collect(watch, delivered))
        await write_for(fake, 200, written, "a")
        await finish(watch, watching, written, delivered)
    assert len(written) > 100
    assert len(delivered) == len(set(delivered)), "a change was delivered twice"
    assert set(delivered) <= set(written)
    assert last_versions(written) <= set(delivered)
    # A contact created, then updated later, is delivered once per change.
    per_contact = collections.Counter(cid for cid, _at in delivered)
    updates = len(written) - len(per_contact)
    assert updates > 20
    assert sum(1 for n in per_contact.values() if n == 2) >= 0.9 * updates
    assert watch.polls > 10


async def test_resuming_from_a_persisted_cursor_misses_and_repeats_nothing(
    fake: FakeQomon,
) -> None:
    written: list[Key] = []
    delivered: list[Key] = []
    async with QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client:
        start = fake.utcnow()
        writing = asyncio.ensure_future(write_for(fake, 200, written, "b"))

        # First run: handle 40 changes, persisting the cursor after each, then stop (a bot
        # that crashed, or was restarted: what it fetched and did not handle is not counted).
        saved = ""
        first = client.watch_contacts(since=start, interval=0.05)
        async for contact in first:
            delivered.append(key(contact))
            saved = first.cursor.to_json()
            if len(delivered) == 40:
                break
        await first.aclose()
        assert len(saved) < 20_000  # small: the keys of the overlap window only

        # Second run, from the saved text, while the writer goes on.
        second = client.watch_contacts(cursor=WatchCursor.from_json(saved), interval=0.05)
        watching = asyncio.ensure_future(collect(second, delivered))
        await writing
        await finish(second, watching, written, delivered)
    assert len(delivered) == len(set(delivered)), "a change was delivered twice"
    assert set(delivered) <= set(written)
    assert last_versions(written) <= set(delivered)


async def test_changes_before_since_are_not_delivered_and_the_query_filters(
    fake: FakeQomon,
) -> None:
    fake.add_contact(
        {"firstname": "Old", "mail": "old@example.org", "address": {"city": "Lyon"}},
        created_at=fake.utcnow() - dt.timedelta(seconds=30),
    )
    start = fake.utcnow()
    lyon = fake.add_contact(
        {"firstname": "New", "mail": "new@example.org", "address": {"city": "Lyon"}}
    )
    fake.add_contact({"firstname": "Paris", "mail": "p@example.org", "address": {"city": "Paris"}})
    async with QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client:
        watch = client.watch_contacts(
            Query.where(Condition("address.city", "eql", "Lyon")), since=start, interval=0.01
        )
        first = await asyncio.wait_for(watch.__anext__(), timeout=5)
        assert first.id == lyon["id"]
        search = [r for r in fake.requests if r.route == "POST /search"]
        assert len(search) == 1  # one page: 1 token
        assert search[0].cost == 1
        # Nothing more: the next polls find the same change and do not deliver it again.
        nothing = asyncio.ensure_future(watch.__anext__())
        await until(lambda: watch.polls >= 4)
        assert not nothing.done()
        nothing.cancel()
        cursor = watch.cursor
        assert cursor.seen == ((lyon["id"], first.updated_at),)
        assert cursor.mark == first.updated_at


def test_the_cursor_is_a_small_round_tripping_string() -> None:
    at = dt.datetime(2026, 11, 30, 6, 0, 0, 123456, tzinfo=dt.timezone.utc)
    cursor = WatchCursor(mark=at, floor=at - dt.timedelta(minutes=2), seen=((7, at), (9, at)))
    text = cursor.to_json()
    assert WatchCursor.from_json(text) == cursor
    assert "2026-11-30T06:00:00.123456Z" in text
    for bad in ("", "{}", '{"v": 2}', '{"v": 1, "mark": "x", "floor": "y", "seen": []}'):
        with pytest.raises(ValueError, match="watch cursor"):
            WatchCursor.from_json(bad)


def test_the_updated_at_condition_joins_the_query_in_two_levels() -> None:
    cond = Condition("UpdatedAt", "gte", "now-1h")
    assert with_condition(None, cond) == Query.where(cond)
    city = Condition("address.city", "eql", "Lyon")
    tag = Condition("tags.name", "eql", "vip")
    both = with_condition(Query.where(city), cond)
    assert both.to_wire()["$all"][1] == {"$all": [cond.to_wire()]}
    either = with_condition(Query.any(Group.all(city), Group.all(tag)), cond)
    assert either.to_wire() == {
        "$at_least_one": [
            {"$all": [city.to_wire(), cond.to_wire()]},
            {"$all": [tag.to_wire(), cond.to_wire()]},
        ]
    }
    with pytest.raises(ValueError, match="OR"):
        with_condition(Query.any(Group.any(city, tag)), cond)


def test_since_and_cursor_are_exclusive() -> None:
    client = QomonClient(KEY, base_url="http://127.0.0.1:9")
    at = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(ValueError, match="not both"):
        client.watch_contacts(since=at, cursor=WatchCursor(mark=at, floor=at))


async def test_a_failed_poll_raises_and_the_watch_goes_on(fake: FakeQomon) -> None:
    start = fake.utcnow()
    fake.inject(ErrorBeforeProcessing(401), route="POST /search", times=1)
    async with QomonClient(KEY, base_url=fake.base_url, retry=FAST) as client:
        watch = client.watch_contacts(since=start, interval=0.01)
        with pytest.raises(AuthenticationError):
            await watch.__anext__()
        added = fake.add_contact({"firstname": "After", "mail": "after@example.org"})
        contact = await asyncio.wait_for(watch.__anext__(), timeout=5)
        assert contact.id == added["id"]
        assert watch.polls == 1  # the failed poll is not counted
