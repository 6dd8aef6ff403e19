"""The control routes under ``/__fake__/``: what a test in another process reads and drives,
in process and through ``qomon-async fake-server`` in a subprocess."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from _helpers import fake_server_process

from qomon_async.testing import DropAfterProcessing, FakeQomon

KEY = "test-key"
BODY = {"data": {"contact": {"firstname": "Jeanne", "mail": "j@example.org"}}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    # A bucket that refills slowly (1 token per 100 s), so that its level is what the test set.
    async with FakeQomon(api_key=KEY, time_scale=100, capacity=20, rate=0.0001) as fake:
        yield fake


async def control(
    fake: FakeQomon, method: str, name: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    # No key: the control routes are not Qomon's.
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{fake.base_url}/__fake__/{name}", json=body) as response,
    ):
        document: dict[str, Any] = await response.json()
        return response.status, document


async def test_stats_count_statuses_clients_and_the_bucket(fake: FakeQomon) -> None:
    fake.inject(DropAfterProcessing(), route="POST /contacts", nth=2)
    async with aiohttp.ClientSession(fake.base_url) as http:
        for client in ("worker-1", "worker-2", "worker-1"):
            headers = {"Authorization": f"Bearer {KEY}", "X-Fake-Client": client}
            try:
                async with http.post("/contacts", json=BODY, headers=headers) as response:
                    await response.read()
            except aiohttp.ServerDisconnectedError:
                pass
        async with http.get("/actions") as response:  # no key: 401, no client tag
            assert response.status == 401
        fake.drain()
        async with http.get("/actions", headers={"Authorization": f"Bearer {KEY}"}) as response:
            assert response.status == 429
    status, stats = await control(fake, "GET", "stats")
    assert status == 200
    assert stats["contacts"] == 3
    assert stats["requests"] == 5
    assert stats["statuses"] == {"200": 2, "401": 1, "429": 1, "dropped": 1}
    assert stats["rate_limited"] == 1
    assert stats["clients"] == {
        "worker-1": {"requests": 2, "statuses": {"200": 2}, "rate_limited": 0},
        "worker-2": {"requests": 1, "statuses": {"dropped": 1}, "rate_limited": 0},
    }
    assert stats["bucket"]["capacity"] == 20 and stats["bucket"]["rate"] == 0.0001
    assert 0 <= stats["bucket"]["tokens"] < 20
    assert stats["time_scale"] == 100 and stats["errors"] == []
    assert datetime.fromisoformat(stats["utcnow"].replace("Z", "+00:00")).tzinfo is not None
    # The control requests themselves are neither logged nor charged.
    assert len(fake.requests) == 5


async def test_requests_are_served_with_their_body_time_and_client(fake: FakeQomon) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "X-Fake-Client": "p1"}
    async with aiohttp.ClientSession(fake.base_url, headers=headers) as http:
        for _ in range(3):
            async with http.post("/contacts", json=BODY) as response:
                assert response.status == 200
    _, served = await control(fake, "GET", "requests")
    records = served["requests"]
    assert [r["number"] for r in records] == [1, 2, 3]
    assert all(r["body"] == BODY and r["client"] == "p1" for r in records)
    assert all(r["status"] == 200 and r["cost"] == 5 for r in records)
    assert records[0]["time"] <= records[1]["time"] <= records[2]["time"]
    assert [r["contact_id"] for r in records] == sorted(fake.contacts)
    _, later = await control(fake, "GET", "requests?after=2")
    assert [r["number"] for r in later["requests"]] == [3]
    _, contacts = await control(fake, "GET", "contacts")
    assert [c["id"] for c in contacts["contacts"]] == sorted(fake.contacts)


async def test_clock_and_bucket_are_driven_from_outside(fake: FakeQomon) -> None:
    _, before = await control(fake, "GET", "clock")
    _, after = await control(fake, "POST", "clock", {"advance": 60})
    assert after["now"] - before["now"] >= 60
    _, bucket = await control(fake, "POST", "bucket", {"drain": True})
    assert bucket["tokens"] < 1
    _, bucket = await control(fake, "POST", "bucket", {"refill": True})
    assert bucket["tokens"] == 20
    _, bucket = await control(fake, "POST", "bucket", {"spend": 5})
    assert 15 <= bucket["tokens"] < 16
    status, problem = await control(fake, "POST", "clock", {"advance": -1})
    assert status == 400 and "advance" in problem["error"]
    status, problem = await control(fake, "GET", "nothing")
    assert status == 404 and "/__fake__/nothing" in problem["error"]
    assert fake.requests == []


# -- out of process ---------------------------------------------------------------------------


def get(url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def server() -> Iterator[tuple[str, str]]:
    with fake_server_process("--time-scale", "5", "--search-lag", "20") as lines:
        yield lines["QOMON_BASE_URL"], lines["QOMON_API_KEY"]


def test_a_test_in_another_process_reads_what_the_server_saw(server: tuple[str, str]) -> None:
    base_url, key = server
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "X-Fake-Client": "proc-7",
    }
    for _ in range(2):
        request = urllib.request.Request(
            f"{base_url}/contacts", data=json.dumps(BODY).encode(), headers=headers
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            # Qomon's bucket shape, as a client measuring real time sees it at scale 5.
            assert response.headers["X-Ratelimit-Limit"] == "burst:100;rate:50.0"
    stats = get(f"{base_url}/__fake__/stats")
    assert stats["requests"] == 2 and stats["contacts"] == 2
    assert stats["clients"] == {
        "proc-7": {"requests": 2, "statuses": {"200": 2}, "rate_limited": 0}
    }
    assert stats["bucket"] == {"capacity": 100, "rate": 10.0, "tokens": stats["bucket"]["tokens"]}
    records = get(f"{base_url}/__fake__/requests")["requests"]
    assert [(r["route"], r["client"], r["body"]) for r in records] == [
        ("POST /contacts", "proc-7", BODY)
    ] * 2
    # --search-lag 20 (4 real s at scale 5): not searchable yet; moving the clock from
    # outside makes it so, without waiting.
    search = {"data": {"advanced_search": {"per_page": 10, "query": {"$all": []}}}}
    request = urllib.request.Request(
        f"{base_url}/search", data=json.dumps(search).encode(), headers=headers
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["data"]["contacts"] == []
    clock = get(f"{base_url}/__fake__/clock", {"advance": 20})
    assert clock["now"] >= 20
    with urllib.request.urlopen(request, timeout=10) as response:
        assert len(json.loads(response.read())["data"]["contacts"]) == 2
    with pytest.raises(urllib.error.HTTPError) as raised:
        get(f"{base_url}/__fake__/bucket", {"spend": "x"})
    assert raised.value.code == 400
