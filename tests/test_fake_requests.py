"""``fake.requests`` logs every request whatever became of it, with its body; a fault predicate
that raises is reported (log, ``fake.errors``, raised at the end of the block), not turned into
a 500 for the client under test."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from qomon_async import QomonClient, RetryPolicy
from qomon_async.testing import (
    DropAfterProcessing,
    DropBeforeProcessing,
    ErrorBeforeProcessing,
    FakeQomon,
    Fault,
    FaultPredicateError,
    RequestInfo,
    SlowAnswer,
    TruncatedBody,
)

KEY = "test-key"
NO_ANSWER = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError)


def contact_body(firstname: str = "Jeanne", mail: str = "j@example.org") -> dict[str, Any]:
    return {"data": {"contact": {"firstname": firstname, "mail": mail}}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    # A bucket that refills slowly (0.1 token per real second), so that a drain holds.
    async with FakeQomon(api_key=KEY, time_scale=100, rate=0.001) as fake:
        yield fake


@pytest.fixture
async def http(fake: FakeQomon) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {KEY}", "X-Fake-Client": "tester"}
    async with aiohttp.ClientSession(fake.base_url, headers=headers) as session:
        yield session


async def status_of(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> int:
    async with http.request(method, path, **kwargs) as response:
        await response.read()
        return response.status


async def test_every_request_is_logged_whatever_became_of_it(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    # aiohttp sends an idempotent request again once when a pooled connection drops: 2 GETs.
    fake.inject(DropBeforeProcessing(), route="GET /contacts/{id}")
    fake.inject(DropAfterProcessing(), route="POST /contacts", nth=2)
    fake.inject(TruncatedBody(), route="POST /contacts", nth=3)
    fake.inject(ErrorBeforeProcessing(503), route="GET /actions")

    assert await status_of(http, "POST", "/contacts", json=contact_body()) == 200
    with pytest.raises(NO_ANSWER):
        await status_of(http, "POST", "/contacts", json=contact_body("Two"))
    with pytest.raises(NO_ANSWER):
        await status_of(http, "POST", "/contacts", json=contact_body("Three"))
    with pytest.raises(NO_ANSWER):
        await status_of(http, "GET", "/contacts/1")
    assert await status_of(http, "GET", "/actions") == 503
    assert await status_of(http, "POST", "/contacts", data=b"{not json") == 400
    assert await status_of(http, "POST", "/search", json={"data": {}}) == 422
    assert await status_of(http, "GET", "/nowhere") == 404
    assert await status_of(http, "GET", "/contacts", headers={"Authorization": "Bearer x"}) == 401
    fake.drain()
    assert await status_of(http, "POST", "/contacts", json=contact_body("Four")) == 429

    records = fake.requests
    assert [r.number for r in records] == list(range(1, 12))
    statuses = [200, None, 200, None, None, 503, 400, 422, 404, 401, 429]
    assert [r.status for r in records] == statuses
    assert [r.route for r in records][:6] == [
        "POST /contacts",
        "POST /contacts",
        "POST /contacts",
        "GET /contacts/{id}",
        "GET /contacts/{id}",
        "GET /actions",
    ]
    assert records[8].route == "? /nowhere"
    assert [r.cost for r in records] == [5, 5, 5, 0, 0, 0, 5, 1, 1, 0, 0]
    assert all(r.client == "tester" for r in records)
    assert all(r.error is None for r in records)
    assert fake.errors == []


async def test_records_show_the_request_body(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    await status_of(http, "POST", "/contacts", json=contact_body("Ana", "ana@example.org"))
    await status_of(http, "POST", "/contacts", data=b"{not json")
    await status_of(http, "GET", "/actions")
    created, broken, read = fake.requests
    assert created.body == contact_body("Ana", "ana@example.org")
    assert created.contact == {"firstname": "Ana", "mail": "ana@example.org"}
    assert created.raw_body.startswith(b'{"data"')
    assert (broken.body, broken.raw_body, broken.contact) == (None, b"{not json", None)
    assert (read.body, read.raw_body) == (None, b"")
    # The key is not in a record's repr; the raw body is left out of it too.
    assert KEY not in repr(created) and "raw_body" not in repr(created)
    assert created.to_json()["body"] == created.body


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition`` (an event on the server's side), bounded by ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        await asyncio.sleep(0.005)


async def test_a_request_cut_off_by_the_client_is_logged(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(SlowAnswer(60_000), route="POST /contacts")
    task = asyncio.create_task(status_of(http, "POST", "/contacts", json=contact_body()))
    await until(lambda: len(fake.requests) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The contact was stored, and the request logged with the status it was going to get.
    assert len(fake.contacts) == 1
    [record] = fake.requests
    assert (record.route, record.status, record.contact_id) == (
        "POST /contacts",
        200,
        next(iter(fake.contacts)),
    )


async def test_a_predicate_that_raises_is_reported_not_answered_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The mistake of issue 14: a predicate reading the create body, run on every request.
    def jeanne(request: RequestInfo) -> bool:
        return bool(request.body["data"]["contact"]["mail"] == "jeanne@example.org")

    fake = FakeQomon(api_key=KEY, time_scale=100)
    with pytest.raises(FaultPredicateError) as raised, caplog.at_level(logging.ERROR):
        async with fake:
            rule = fake.inject(DropAfterProcessing(), when=jeanne, nth=1)
            headers = {"Authorization": f"Bearer {KEY}"}
            async with aiohttp.ClientSession(fake.base_url, headers=headers) as http:
                # GET: no body; the predicate raises TypeError; the request is answered.
                assert await status_of(http, "GET", "/actions") == 200
                search = {"data": {"advanced_search": {"per_page": 5, "query": {"$all": []}}}}
                assert await status_of(http, "POST", "/search", json=search) == 200
                with pytest.raises(NO_ANSWER):
                    await status_of(
                        http, "POST", "/contacts", json=contact_body("J", "jeanne@example.org")
                    )
            assert rule.fired == 1
    error = raised.value
    assert isinstance(error.error, TypeError)
    assert error.request.method == "GET" and error.request.path == "/actions"
    message = str(error)
    assert "jeanne" in message and "test_fake_requests.py" in message
    assert "TypeError" in message and "#1 GET /actions" in message
    assert [type(e.error) for e in fake.errors if isinstance(e, FaultPredicateError)] == [
        TypeError,
        KeyError,
    ]
    assert [r.status for r in fake.requests] == [200, 200, None]
    assert [r.error is not None for r in fake.requests] == [True, True, False]
    logged = [r.getMessage() for r in caplog.records if r.name == "qomon_async.testing"]
    assert len(logged) == 2 and "#2 POST /search" in logged[1]
    # The key never shows in what is reported.
    assert KEY not in message and all(KEY not in line for line in logged)


async def test_the_filtered_predicate_is_what_the_documentation_shows() -> None:
    # Route first, then the body through `.contact`: no error, the right create is struck.
    async with FakeQomon(api_key=KEY, time_scale=100) as fake:
        fake.inject(
            DropAfterProcessing(),
            route="POST /contacts",
            when=lambda r: (r.contact or {}).get("mail") == "jeanne@example.org",
            nth=1,
        )
        retry = RetryPolicy(max_attempts=3, max_delay=0.01, max_time=5.0)
        async with QomonClient(
            KEY, base_url=fake.base_url, retry=retry, reconcile_delay=0.01
        ) as client:
            other = await client.create_contact({"firstname": "P", "mail": "paul@example.org"})
            jeanne = await client.create_contact(
                {"firstname": "Jeanne", "mail": "jeanne@example.org"}
            )
        assert fake.errors == []
        assert set(fake.contacts) == {other.id, jeanne.id}
        creates = [r for r in fake.requests if r.route == "POST /contacts"]
        assert [r.status for r in creates] == [200, None]
        assert [r.contact["mail"] for r in creates if r.contact] == [
            "paul@example.org",
            "jeanne@example.org",
        ]


async def test_raise_errors_false_keeps_them_for_the_test_to_read() -> None:
    async with FakeQomon(api_key=KEY, raise_errors=False) as fake:
        fake.inject(DropBeforeProcessing(), when=lambda r: r.body["x"])
        async with aiohttp.ClientSession(fake.base_url) as http:
            assert await status_of(http, "GET", "/actions") == 401
    assert [type(e) for e in fake.errors] == [FaultPredicateError]


async def test_a_failing_block_keeps_its_own_exception() -> None:
    with pytest.raises(ZeroDivisionError):
        async with FakeQomon(api_key=KEY) as fake:
            fake.inject(DropBeforeProcessing(), when=lambda r: r.body["x"])
            async with aiohttp.ClientSession(fake.base_url) as http:
                await status_of(http, "GET", "/actions")
            _ = 1 / 0
    assert len(fake.errors) == 1


class _UnknownFault(Fault):
    """A fault the emulator does not know how to answer: a stand-in for an emulator bug."""


async def test_a_failure_of_the_emulator_is_a_500_logged_and_raised() -> None:
    fake = FakeQomon(api_key=KEY)
    with pytest.raises(RuntimeError, match=r"FakeQomon failed on request #1 GET /actions"):
        async with fake:
            fake.inject(_UnknownFault(), route="GET /actions")
            async with (
                aiohttp.ClientSession(fake.base_url) as http,
                http.get("/actions") as response,
            ):
                assert response.status == 500
                problem = await response.json(content_type=None)
            assert "FakeQomon failed" in problem["detail"]
    [record] = fake.requests
    assert record.status == 500 and record.error is not None


def test_the_threaded_emulator_raises_predicate_errors_too() -> None:
    import urllib.request  # noqa: PLC0415

    with pytest.raises(FaultPredicateError), FakeQomon(api_key=KEY) as fake:
        fake.inject(DropBeforeProcessing(), when=lambda r: r.body["x"])
        request = urllib.request.Request(
            f"{fake.base_url}/actions", headers={"Authorization": f"Bearer {KEY}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200


async def test_a_body_nested_too_deep_is_a_400_not_an_emulator_failure(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    assert await status_of(http, "POST", "/contacts", data=b"[" * 200_000) == 400
    assert fake.errors == []
    [record] = fake.requests
    assert record.status == 400 and record.body is None and len(record.raw_body) == 200_000
