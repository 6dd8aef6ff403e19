"""Fault injection seen from a real aiohttp client: every kind, and the ways to script them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from qomon_async.testing import (
    DropAfterProcessing,
    DropBeforeProcessing,
    ErrorAfterProcessing,
    ErrorBeforeProcessing,
    FakeQomon,
    Fault,
    Latency,
    NonJsonBody,
    RateLimited,
    RequestInfo,
    SlowAnswer,
    TruncatedBody,
    Unauthorized,
)

KEY = "test-key"
NO_ANSWER = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def contact(firstname: str = "Jeanne") -> dict[str, Any]:
    return {"data": {"contact": {"firstname": firstname, "mail": "j@example.org"}}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=100, seed=7) as fake:
        yield fake


async def post_contact(http: aiohttp.ClientSession, firstname: str = "Jeanne") -> int:
    async with http.post("/contacts", json=contact(firstname)) as response:
        await response.read()
        return response.status


# -- before processing: nothing is stored --------------------------------------------------


async def test_drop_before_processing(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    fake.inject(DropBeforeProcessing(), route="POST /contacts", nth=1)
    with pytest.raises(NO_ANSWER):
        await post_contact(http)
    assert fake.contacts == {}
    record = fake.requests[-1]
    assert record.status is None and record.faults == (DropBeforeProcessing(),)
    assert record.cost == 0
    assert await post_contact(http) == 200  # the next one goes through


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_error_status_before_processing(
    fake: FakeQomon, http: aiohttp.ClientSession, status: int
) -> None:
    fake.inject(ErrorBeforeProcessing(status), times=1)
    async with http.post("/contacts", json=contact()) as response:
        assert response.status == status
        assert response.content_type == "application/problem+json"
        assert (await response.json())["status"] == status
    assert fake.contacts == {}
    assert fake.requests[-1].cost == 0


async def test_injected_429_has_retry_after_and_leaves_the_bucket(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(RateLimited(retry_after=3), nth=1)
    async with http.post("/contacts", json=contact()) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "0.03"  # 3 Qomon s at scale 100
        assert response.headers["X-Ratelimit-Remaining"] == "100"
    assert fake.contacts == {}


async def test_unauthorized_from_the_nth_request_on(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(Unauthorized(), from_nth=3)
    statuses = [await post_contact(http, f"n{i}") for i in range(5)]
    assert statuses == [200, 200, 401, 401, 401]
    assert len(fake.contacts) == 2


async def test_forbidden(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    fake.inject(Unauthorized(403), route="GET /actions")
    async with http.get("/actions") as response:
        assert response.status == 403


async def test_non_json_body_like_a_proxy_page(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(NonJsonBody(), nth=1)
    async with http.post("/contacts", json=contact()) as response:
        assert response.status == 502
        assert response.content_type == "text/html"
        assert "Bad Gateway" in await response.text()
        with pytest.raises(aiohttp.ContentTypeError):
            await response.json()
    assert fake.contacts == {}


async def test_latency_delays_then_answers(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    fake.inject(Latency(5.0), nth=1)  # 5 Qomon s = 50 ms
    started = time.monotonic()
    assert await post_contact(http) == 200
    assert time.monotonic() - started >= 0.045
    assert fake.requests[-1].faults == (Latency(5.0),)


# -- after processing: the write is done, the answer is lost or wrong ---------------------


async def test_drop_after_processing_stores_the_contact_without_answer(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(DropAfterProcessing(), route="POST /contacts", nth=1)
    with pytest.raises(NO_ANSWER):
        await post_contact(http)
    (stored,) = fake.contacts.values()
    record = fake.requests[-1]
    assert record.status is None
    assert record.contact_id == stored["id"]
    assert record.cost == 5


async def test_error_after_processing(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    fake.inject(ErrorAfterProcessing(), nth=1)
    assert await post_contact(http) == 500
    assert len(fake.contacts) == 1


async def test_slow_answer_outlasts_the_client_timeout(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(SlowAnswer(60.0), nth=1)  # 0.6 real seconds
    with pytest.raises(TimeoutError):
        async with http.post(
            "/contacts", json=contact(), timeout=aiohttp.ClientTimeout(total=0.1)
        ) as response:
            await response.read()
    assert len(fake.contacts) == 1


async def test_slow_answer_arrives_eventually(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    fake.inject(SlowAnswer(2.0), nth=1)  # 20 ms
    started = time.monotonic()
    assert await post_contact(http) == 200
    assert time.monotonic() - started >= 0.015


async def test_truncated_body(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    fake.inject(TruncatedBody(), nth=1)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post("/contacts", json=contact()) as response:
            assert response.status == 200
            await response.read()
    assert len(fake.contacts) == 1


async def test_garbage_after_processing(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    fake.inject(NonJsonBody(200, "{not json", "application/json", after_processing=True), nth=1)
    async with http.post("/contacts", json=contact()) as response:
        assert response.status == 200
        assert await response.text() == "{not json"
    assert len(fake.contacts) == 1


# -- scripting ---------------------------------------------------------------------------


async def test_nth_counts_per_route(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    rule = fake.inject(ErrorAfterProcessing(502), route="POST /contacts", nth=[2, 3])
    statuses = []
    for index in range(4):
        async with http.get("/actions") as response:
            assert response.status == 200
        statuses.append(await post_contact(http, f"n{index}"))
    assert statuses == [200, 502, 502, 200]
    assert (rule.seen, rule.fired) == (4, 2)
    struck = [r.number for r in fake.requests if r.faults]
    assert struck == [4, 6]


async def test_nth_without_route_counts_every_request(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(ErrorBeforeProcessing(503), nth=2)
    async with http.get("/actions") as response:
        assert response.status == 200
    async with http.get("/v1/forms/type/consent") as response:
        assert response.status == 503


async def test_route_templates_match_any_id(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    fake.inject(ErrorBeforeProcessing(500), route="GET /contacts/{id}")
    async with http.get("/contacts/123") as response:
        assert response.status == 500
    async with http.get("/actions") as response:
        assert response.status == 200


async def test_predicate_on_the_body_and_times(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    def is_bob(request: RequestInfo) -> bool:
        return bool(request.body and request.body["data"]["contact"]["firstname"] == "Bob")

    fake.inject(DropAfterProcessing(), route="POST /contacts", when=is_bob, times=1)
    assert await post_contact(http, "Ann") == 200
    with pytest.raises(NO_ANSWER):
        await post_contact(http, "Bob")
    assert await post_contact(http, "Bob") == 200
    assert sorted(c["firstname"] for c in fake.contacts.values()) == ["Ann", "Bob", "Bob"]


async def test_latency_adds_up_with_another_fault_and_first_rule_wins(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.inject(Latency(1.0), nth=1)
    first = fake.inject(ErrorBeforeProcessing(503), nth=1)
    second = fake.inject(ErrorBeforeProcessing(504), nth=1)
    assert await post_contact(http) == 503
    assert fake.requests[-1].faults == (Latency(1.0), ErrorBeforeProcessing(503))
    assert (first.fired, second.fired, second.seen) == (1, 0, 1)


async def test_remove_and_clear(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    rule = fake.inject(ErrorBeforeProcessing(500))
    assert await post_contact(http) == 500
    rule.remove()
    assert await post_contact(http) == 200
    fake.inject(ErrorBeforeProcessing(500))
    fake.clear_faults()
    assert await post_contact(http) == 200


async def _run_random(seed: int) -> list[tuple[Fault, ...]]:
    async with FakeQomon(api_key=KEY, rate_limit=False, seed=seed) as fake:
        fake.inject(ErrorBeforeProcessing(503), probability=0.3, route="GET /actions")
        fake.inject_mix(
            {ErrorAfterProcessing(500): 0.2, NonJsonBody(): 0.2}, route="POST /contacts"
        )
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(fake.base_url, headers=headers) as http:
            for _ in range(30):
                async with http.get("/actions") as response:
                    await response.read()
                async with http.post("/contacts", json=contact()) as response:
                    await response.read()
        return [record.faults for record in fake.requests]


async def test_probabilistic_faults_are_repeatable_with_a_seed() -> None:
    first = await _run_random(seed=42)
    assert first == await _run_random(seed=42)
    assert first != await _run_random(seed=43)
    struck = [faults for faults in first if faults]
    kinds = {type(faults[0]) for faults in struck}
    assert kinds == {ErrorBeforeProcessing, ErrorAfterProcessing, NonJsonBody}
    assert 5 < len(struck) < 40


def test_mix_probabilities_cannot_exceed_one() -> None:
    fake = FakeQomon()
    with pytest.raises(ValueError, match="more than 1"):
        fake.inject_mix({ErrorBeforeProcessing(): 0.7, DropBeforeProcessing(): 0.5})
