"""The hostile answers a hardening test needs from the emulator: redirects, raw 2xx bodies,
arbitrary ``Retry-After`` and rate-limit headers, contact ids beyond 2**63, huge and endless
bodies."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from qomon_async.testing import (
    ExtraHeaders,
    FakeQomon,
    Latency,
    RateLimited,
    RawAnswer,
    Redirect,
    StreamedBody,
)

KEY = "test-key"
BODY = {"data": {"contact": {"firstname": "Jeanne", "mail": "j@example.org"}}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=100) as fake:
        yield fake


async def post(http: aiohttp.ClientSession, **kwargs: Any) -> tuple[int, Any, bytes]:
    # Redirects are not followed: the test sees what the server answered.
    async with http.post("/contacts", json=BODY, allow_redirects=False, **kwargs) as response:
        return response.status, response.headers, await response.read()


# -- redirects ---------------------------------------------------------------------------------


async def test_redirect_before_processing_stores_nothing(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(Redirect(301, location="https://elsewhere.example.org/v2/contacts"), nth=1)
    status, headers, body = await post(http)
    assert (status, headers["Location"], body) == (
        301,
        "https://elsewhere.example.org/v2/contacts",
        b"",
    )
    assert fake.contacts == {}
    assert fake.requests[0].status == 301


async def test_redirect_after_processing_with_and_without_the_contact(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(Redirect(302, after_processing=True, with_body=True), nth=1)
    fake.inject(Redirect(307, location=None, after_processing=True), nth=2)
    status, headers, body = await post(http)
    assert status == 302 and headers["Location"] == "http://127.0.0.1:9/elsewhere/contacts"
    carried = json.loads(body)["data"]["contact"]
    assert carried["id"] in fake.contacts
    status, headers, body = await post(http)
    assert (status, "Location" in headers, body) == (307, False, b"")
    assert len(fake.contacts) == 2


# -- raw bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"502 Bad Gateway", b'{"status": "success", "data": {"contact": {"id": 1', b"[" * 200_000],
)
async def test_a_2xx_with_a_raw_body_after_the_contact_was_stored(
    fake: FakeQomon, http: aiohttp.ClientSession, raw: bytes
) -> None:
    fake.inject(RawAnswer(raw), route="POST /contacts")
    status, headers, body = await post(http)
    assert (status, body) == (200, raw)
    assert headers["Content-Type"].startswith("application/json")
    # The rate-limit headers of the processed request are still there.
    assert headers["X-Ratelimit-Cost"] == "5"
    assert len(fake.contacts) == 1


async def test_a_raw_answer_before_processing_with_its_own_headers(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    bomb = gzip.compress(b"{" + b" " * 1_000_000 + b"}")
    fake.inject(
        RawAnswer(
            bomb,
            status=201,
            headers={"Content-Encoding": "gzip", "X-Ratelimit-Remaining": "7"},
            after_processing=False,
        )
    )
    async with http.post("/contacts", json=BODY, auto_decompress=False) as response:
        assert response.status == 201
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["X-Ratelimit-Remaining"] == "7"
        assert await response.read() == bomb
    assert fake.contacts == {}


# -- rate-limit headers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "sent"),
    [
        (3600.0, "36"),  # a number is Qomon seconds, scaled like every duration
        ("3600", "3600"),  # a string is sent verbatim
        ("Wed, 21 Oct 2026 07:28:00 GMT", "Wed, 21 Oct 2026 07:28:00 GMT"),
    ],
)
async def test_rate_limited_with_any_retry_after(
    fake: FakeQomon, http: aiohttp.ClientSession, retry_after: float | str, sent: str
) -> None:
    fake.inject(RateLimited(retry_after), nth=1)
    status, headers, _ = await post(http)
    assert (status, headers["Retry-After"]) == (429, sent)
    assert headers["X-Ratelimit-Limit"] == "burst:100;rate:1000.0"
    assert fake.contacts == {}


async def test_extra_headers_advertise_any_bucket_and_add_up_with_other_faults(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    shape = {"X-Ratelimit-Limit": "burst:100;rate:0.000000001", "X-Ratelimit-Remaining": "0"}
    rule = fake.inject(ExtraHeaders(shape), route="POST /contacts")
    fake.inject(Latency(0.5), route="POST /contacts", nth=2)
    fake.inject(RateLimited("1"), route="POST /contacts", nth=2)
    status, headers, _ = await post(http)
    assert status == 200
    assert headers["X-Ratelimit-Limit"] == "burst:100;rate:0.000000001"
    assert headers["X-Ratelimit-Remaining"] == "0"
    assert headers["X-Ratelimit-Cost"] == "5"
    status, headers, _ = await post(http)
    assert (status, headers["Retry-After"], headers["X-Ratelimit-Remaining"]) == (429, "1", "0")
    assert rule.fired == 2
    assert [len(r.faults) for r in fake.requests] == [1, 3]
    assert len(fake.contacts) == 1
    # The real bucket was charged as usual.
    assert fake.requests[0].remaining == 95


# -- ids -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("first_id", [2**63 + 1, 2**64 + 1])
async def test_contact_ids_beyond_a_signed_64_bit_integer(first_id: int) -> None:
    async with FakeQomon(api_key=KEY, first_contact_id=first_id) as fake:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(fake.base_url, headers=headers) as http:
            status, _, body = await post(http)
            assert status == 200
            assert json.loads(body)["data"]["contact"]["id"] == first_id
            async with http.get(f"/contacts/{first_id}") as response:
                assert (await response.json())["data"]["contact"]["id"] == first_id
    assert list(fake.contacts) == [first_id]
    assert fake.requests[1].contact_id == first_id


# -- huge and endless bodies -------------------------------------------------------------------


async def test_a_streamed_body_of_a_given_size(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(StreamedBody(b"[" * 65536, repeat=100), route="POST /contacts")
    async with http.post("/contacts", json=BODY) as response:
        assert response.status == 200
        assert "Content-Length" not in response.headers
        size = 0
        async for chunk in response.content.iter_any():
            assert set(chunk) == {ord("[")}
            size += len(chunk)
    assert size == 100 * 65536
    assert len(fake.contacts) == 1


async def test_an_endless_body_ends_when_the_client_leaves(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(StreamedBody(after_processing=False), route="POST /contacts")
    async with http.post("/contacts", json=BODY) as response:
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > 5_000_000:
                break
        response.close()
    assert size > 5_000_000
    assert fake.contacts == {}
    # The emulator is still serving, and logged the request.
    async with http.get("/actions") as response:
        assert response.status == 200
    assert [r.status for r in fake.requests] == [200, 200]
