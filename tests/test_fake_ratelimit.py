"""The emulator's token bucket: Qomon's shape, costs and headers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from qomon_async.testing import FakeQomon
from qomon_async.testing._bucket import TokenBucket

KEY = "test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CREATE = {"data": {"contact": {"firstname": "Jeanne"}}}


async def session_for(fake: FakeQomon) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(fake.base_url, headers=AUTH)


@pytest.fixture
async def realtime() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY) as fake:
        yield fake


# -- the bucket alone --------------------------------------------------------------------


def test_bucket_pays_refills_and_rejects_without_charging() -> None:
    bucket = TokenBucket(100, 10, now=0.0)
    for _ in range(20):
        assert bucket.take(5, now=0.0).allowed
    rejected = bucket.take(5, now=0.0)
    assert not rejected.allowed
    assert rejected.retry_after == 1.0  # whole seconds, enough for 5 tokens at 10/s
    assert bucket.level(0.0) == 0.0  # the 429 cost nothing
    assert bucket.take(1, now=0.1).allowed  # 0.1 s refills one token
    answer = bucket.take(5, now=0.6)
    assert answer.allowed and answer.remaining == pytest.approx(0.0)
    assert answer.until_full == pytest.approx(10.0)
    assert bucket.level(100.0) == 100.0  # never above capacity


def test_bucket_retry_after_rounds_up_to_whole_seconds() -> None:
    bucket = TokenBucket(100, 10, now=0.0)
    bucket.spend(99, now=0.0)
    assert bucket.take(5, now=0.0).retry_after == 1.0
    bucket = TokenBucket(10, 1, now=0.0)
    bucket.spend(10, now=0.0)
    assert bucket.take(5, now=0.5).retry_after == 5.0  # 4.5 s needed: 5


# -- over HTTP ---------------------------------------------------------------------------


async def test_the_21st_create_of_a_burst_gets_429_with_retry_after(realtime: FakeQomon) -> None:
    remaining = []
    async with await session_for(realtime) as http:
        for _ in range(20):
            async with http.post("/contacts", json=CREATE) as response:
                assert response.status == 200
                assert response.headers["X-Ratelimit-Limit"] == "burst:100;rate:10.0"
                assert response.headers["X-Ratelimit-Cost"] == "5"
                remaining.append(int(response.headers["X-Ratelimit-Remaining"]))
                float(response.headers["X-Ratelimit-Reset"])
        async with http.post("/contacts", json=CREATE) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "1"
            assert response.headers["X-Ratelimit-Cost"] == "5"
            assert response.headers["X-Ratelimit-Remaining"] == "0"
            problem = await response.json()
    assert remaining == list(range(95, -1, -5))
    assert problem["status"] == 429
    assert len(realtime.contacts) == 20
    assert realtime.requests[-1].status == 429 and realtime.requests[-1].cost == 0


async def test_costs_per_route(realtime: FakeQomon) -> None:
    query: dict[str, Any] = {"$all": []}
    async with await session_for(realtime) as http:
        async with http.post("/contacts", json=CREATE) as response:
            contact_id = (await response.json())["data"]["contact"]["id"]
        calls = [
            ("PATCH", f"/contacts/{contact_id}", CREATE),
            ("GET", f"/contacts/{contact_id}", None),
            ("POST", "/contacts/upsert", {"kind": "contact", "data": {"firstname": "A"}}),
            ("POST", "/search", {"data": {"advanced_search": {"per_page": 5, "query": query}}}),
            ("POST", "/kpi", {"data": {"advanced_search": {"query": query}}}),
            ("GET", "/v1/forms/type/consent", None),
            ("GET", "/actions", None),
            ("DELETE", f"/contacts/{contact_id}", None),
        ]
        for method, path, body in calls:
            async with http.request(method, path, json=body) as response:
                assert response.status < 300, (method, path, await response.text())
    assert [record.cost for record in realtime.requests] == [5, 5, 1, 1, 1, 1, 1, 1, 1]
    assert [int(r.remaining or 0) for r in realtime.requests][:3] == [95, 90, 89]


async def test_unauthenticated_requests_do_not_touch_the_bucket(realtime: FakeQomon) -> None:
    realtime.drain()
    async with aiohttp.ClientSession(realtime.base_url) as anonymous:
        for _ in range(3):
            async with anonymous.get("/actions") as response:
                assert response.status == 401
    assert [r.cost for r in realtime.requests] == [0, 0, 0]


async def test_another_consumer_of_the_space_drains_the_same_bucket(realtime: FakeQomon) -> None:
    realtime.spend(97)
    async with await session_for(realtime) as http:
        async with http.post("/contacts", json=CREATE) as response:
            assert response.status == 429
        async with http.get("/actions") as response:
            assert response.status == 200
            assert response.headers["X-Ratelimit-Remaining"] == "2"
    realtime.refill()
    assert realtime.tokens == pytest.approx(100, abs=0.5)


async def test_time_scale_speeds_the_refill_and_the_headers_tell_real_time() -> None:
    # At ten times Qomon's pace: the 5 tokens of a create come back in 50 ms of real time,
    # longer than a loaded machine takes between the drain and the request's arrival.
    async with FakeQomon(api_key=KEY, time_scale=10) as fake:
        fake.drain()
        async with await session_for(fake) as http:
            async with http.post("/contacts", json=CREATE) as response:
                assert response.status == 429
                assert response.headers["X-Ratelimit-Limit"] == "burst:100;rate:100.0"
                retry_after = float(response.headers["Retry-After"])
                # One Qomon second, a tenth of a real one.
                assert retry_after == pytest.approx(0.1)
                assert 0 < float(response.headers["X-Ratelimit-Reset"]) <= 1.0
            await asyncio.sleep(retry_after)
            async with http.post("/contacts", json=CREATE) as response:
                assert response.status == 200


async def test_custom_bucket_shape() -> None:
    async with FakeQomon(api_key=KEY, capacity=10, rate=2.5) as fake:
        async with await session_for(fake) as http:
            statuses = []
            for _ in range(3):
                async with http.post("/contacts", json=CREATE) as response:
                    statuses.append(response.status)
                    limit = response.headers["X-Ratelimit-Limit"]
        assert statuses == [200, 200, 429]
        assert limit == "burst:10;rate:2.5"


@pytest.mark.parametrize(
    "options", [{"rate_limit": False}, {"capacity": None}, {"rate": None}], ids=str
)
async def test_rate_limiting_can_be_turned_off(options: dict[str, object]) -> None:
    async with FakeQomon(api_key=KEY, **options) as fake:  # type: ignore[arg-type]
        async with await session_for(fake) as http:
            for _ in range(30):
                async with http.post("/contacts", json=CREATE) as response:
                    assert response.status == 200
                    assert "X-Ratelimit-Limit" not in response.headers
        assert fake.tokens is None
        assert len(fake.contacts) == 30
