"""ensure_contact against the emulator: one flight per mail, create when missing, update, matches."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator

import pytest

from qomon_async import (
    AmbiguousMatchError,
    ContactValidationError,
    QomonClient,
    QomonError,
    RetryPolicy,
)
from qomon_async.testing import DropAfterProcessing, FakeQomon, Latency, NonJsonBody

KEY = "sk-test-ensure-key-do-not-leak"
FAST = RetryPolicy(base_delay=0.001, max_delay=0.005)
MAIL = "jeanne.martin@example.org"


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=1000) as fake:
        yield fake


@pytest.fixture
async def client(fake: FakeQomon) -> AsyncIterator[QomonClient]:
    async with QomonClient(KEY, base_url=fake.base_url, retry=FAST, reconcile_delay=0) as client:
        yield client


def routes(fake: FakeQomon) -> list[str]:
    return [r.route for r in fake.requests]


async def test_twenty_concurrent_calls_for_one_mail_create_one_contact(
    client: QomonClient, fake: FakeQomon
) -> None:
    # A slow search keeps the first flight in the air while the other nineteen arrive.
    fake.inject(Latency(50.0), route="POST /search", times=1)
    contact = {"firstname": "Jeanne", "surname": "Martin", "mail": MAIL}
    results = await asyncio.gather(*(client.ensure_contact(contact) for _ in range(20)))
    assert len(fake.contacts) == 1
    (stored_id,) = fake.contacts
    assert {r.id for r in results} == {stored_id}
    assert routes(fake) == ["POST /search", "POST /contacts"]  # one lookup, one create
    assert len(client._ensures) == 0  # the flight is cleaned up


async def test_an_existing_contact_is_returned_not_created(
    client: QomonClient, fake: FakeQomon
) -> None:
    old = fake.add_contact({"firstname": "Jeanne", "mail": MAIL})
    # Another mail that starts with the same text is not the same contact.
    fake.add_contact({"firstname": "Other", "mail": MAIL + ".uk"})
    found = await client.ensure_contact({"mail": MAIL.upper(), "firstname": "J"})
    assert found.id == old["id"] and found.firstname == "Jeanne"
    assert len(fake.contacts) == 2
    assert routes(fake) == ["POST /search", "POST /search"]  # as written, then lowercase


async def test_update_writes_the_given_fields_onto_the_found_contact(
    client: QomonClient, fake: FakeQomon
) -> None:
    old = fake.add_contact(
        {"firstname": "Jeanne", "surname": "Martin", "mail": MAIL, "address": {"city": "Paris"}}
    )
    updated = await client.ensure_contact(
        {"mail": MAIL, "mobile": "0600000000", "address": {"postalcode": "75001"}}, update=True
    )
    assert updated.id == old["id"]
    assert updated.mobile == "0600000000" and updated.firstname == "Jeanne"
    assert updated.address is not None
    assert (updated.address.city, updated.address.postalcode) == ("Paris", "75001")
    assert len(fake.contacts) == 1
    assert routes(fake) == [
        "POST /search",
        "GET /contacts/{id}",
        "PATCH /contacts/{id}",
        "GET /contacts/{id}",
    ]


async def test_several_matches_use_the_oldest_and_name_the_others(
    client: QomonClient, fake: FakeQomon, caplog: pytest.LogCaptureFixture
) -> None:
    now = fake.utcnow()
    newer = fake.add_contact({"firstname": "B", "mail": MAIL}, created_at=now)
    oldest = fake.add_contact(
        {"firstname": "A", "mail": MAIL}, created_at=now - dt.timedelta(days=3)
    )
    middle = fake.add_contact(
        {"firstname": "C", "mail": MAIL}, created_at=now - dt.timedelta(days=1)
    )
    with caplog.at_level(logging.WARNING, logger="qomon_async"):
        found = await client.ensure_contact({"mail": MAIL})
    assert found.id == oldest["id"]
    (record,) = [r for r in caplog.records if "ensure_contact" in r.getMessage()]
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert str(newer["id"]) in message and str(middle["id"]) in message
    assert MAIL not in message and "jeanne" not in message.lower()

    with pytest.raises(AmbiguousMatchError) as info:
        await client.ensure_contact({"mail": MAIL}, match_policy="error")
    assert info.value.ids == (oldest["id"], middle["id"], newer["id"])
    assert isinstance(info.value, QomonError)
    assert MAIL not in str(info.value)
    assert len(fake.contacts) == 3


async def test_a_call_with_other_fields_waits_for_the_flight_then_makes_its_own(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(Latency(50.0), route="POST /search", times=1)
    first, second = await asyncio.gather(
        client.ensure_contact({"firstname": "Jeanne", "mail": MAIL}),
        client.ensure_contact({"mail": MAIL, "mobile": "0611111111"}, update=True),
    )
    assert first.id == second.id and second.mobile == "0611111111"
    assert len(fake.contacts) == 1
    assert routes(fake)[:3] == ["POST /search", "POST /contacts", "POST /search"]


async def test_an_ambiguous_create_is_reconciled_not_sent_twice(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(DropAfterProcessing(), route="POST /contacts", times=1)
    contact = await client.ensure_contact({"firstname": "Jeanne", "mail": MAIL})
    assert list(fake.contacts) == [contact.id]
    assert routes(fake).count("POST /contacts") == 1


async def test_the_contact_created_is_found_by_the_next_call_even_if_search_misses_it(
    client: QomonClient, fake: FakeQomon
) -> None:
    created = await client.ensure_contact({"firstname": "Jeanne", "mail": MAIL})
    # Qomon's search index may lag behind a create: a search that does not show it yet.
    lagging = '{"status": "success", "data": {"contacts": []}}'
    fake.inject(
        NonJsonBody(status=200, body=lagging, content_type="application/json"),
        route="POST /search",
    )
    before = len(fake.requests)
    again = await client.ensure_contact({"firstname": "Jeanne", "mail": MAIL})
    assert again.id == created.id
    assert len(fake.contacts) == 1
    assert routes(fake)[before:] == ["POST /search", "GET /contacts/{id}"]


async def test_cancelling_every_caller_cancels_the_flight(
    client: QomonClient, fake: FakeQomon
) -> None:
    fake.inject(Latency(5000.0), route="POST /search", times=1)  # 5 s real: never reached
    tasks = [asyncio.ensure_future(client.ensure_contact({"mail": MAIL})) for _ in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)  # let the callers start and join the flight
    assert len(client._ensures) == 1
    tasks[0].cancel()
    await asyncio.sleep(0)
    assert len(client._ensures) == 1  # two callers still wait
    for task in tasks[1:]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(100):
        if len(client._ensures) == 0:
            break
        await asyncio.sleep(0)
    assert len(client._ensures) == 0
    assert fake.contacts == {}


async def test_a_contact_without_mail_is_refused_before_sending(
    client: QomonClient, fake: FakeQomon
) -> None:
    with pytest.raises(ContactValidationError) as info:
        await client.ensure_contact({"firstname": "Jeanne"})
    assert info.value.location == "mail"
    with pytest.raises(ValueError, match="mail"):
        await client.ensure_contact({"mail": MAIL}, match="phone")  # type: ignore[arg-type]
    assert fake.requests == []
