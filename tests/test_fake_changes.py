"""What a change feed needs from the emulator: ``UpdatedAt``/``lastchange`` moved by every write,
``/search`` on ``UpdatedAt`` with the operators and sorting Qomon documents, pages of 1000,
a search index that lags behind writes, and a clock a test can move."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest

from qomon_async.testing import FakeQomon

KEY = "test-key"
MICRO = "%Y-%m-%dT%H:%M:%S.%fZ"


def parse(stamp: str) -> datetime:
    # Qomon writes UTC with a `Z`: the parsed value must be timezone-aware.
    value = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert value.tzinfo is not None
    return value


def changed_since(since: str, *, ope: str = "gte", **options: Any) -> dict[str, Any]:
    condition = {"attr": "UpdatedAt", "ope": ope, "value": since}
    search = {"per_page": 1000, "query": {"$all": [{"$all": [{"$condition": condition}]}]}}
    return {"data": {"advanced_search": {**search, **options}}}


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=100, rate_limit=False) as fake:
        yield fake


async def call(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
    async with http.request(method, path, json=body) as response:
        assert response.status < 300, await response.text()
        return await response.json() if response.status not in (202, 204) else None


async def search(http: aiohttp.ClientSession, body: dict[str, Any]) -> list[dict[str, Any]]:
    answer = await call(http, "POST", "/search", body)
    contacts: list[dict[str, Any]] = answer["data"]["contacts"]
    return contacts


async def create(http: aiohttp.ClientSession, **fields: Any) -> dict[str, Any]:
    answer = await call(http, "POST", "/contacts", {"data": {"contact": fields}})
    contact: dict[str, Any] = answer["data"]["contact"]
    return contact


# -- the timestamps ------------------------------------------------------------------------


async def test_create_patch_and_upsert_move_updated_at_on_the_emulated_clock(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    before = fake.utcnow()
    created = await create(http, firstname="Ana", mail="ana@example.org")
    assert created["CreatedAt"] == created["UpdatedAt"]
    assert abs(parse(created["UpdatedAt"]) - parse(created["lastchange"])) < timedelta(
        milliseconds=1
    )
    # Microseconds for CreatedAt/UpdatedAt, milliseconds for lastchange, both UTC with Z.
    assert datetime.strptime(created["UpdatedAt"], MICRO).microsecond >= 0
    assert len(created["lastchange"]) == len("2026-11-26T10:00:00.123Z")
    # On the emulated clock: between the moments before and after the call.
    assert before <= parse(created["CreatedAt"]) <= fake.utcnow()

    fake.advance(10)
    patched = (
        await call(
            http, "PATCH", f"/contacts/{created['id']}", {"data": {"contact": {"firstname": "A"}}}
        )
    )["data"]["contact"]
    assert patched["CreatedAt"] == created["CreatedAt"]
    assert parse(patched["UpdatedAt"]) - parse(created["UpdatedAt"]) >= timedelta(seconds=10)
    assert parse(patched["lastchange"]) - parse(created["lastchange"]) >= timedelta(seconds=10)

    fake.advance(10)
    await call(
        http,
        "POST",
        "/contacts/upsert",
        {"kind": "contact", "data": {"id": created["id"], "surname": "Martin"}},
    )
    fake.apply_pending_upserts()
    upserted = fake.contacts[created["id"]]
    assert upserted["surname"] == "Martin"
    assert parse(upserted["UpdatedAt"]) - parse(patched["UpdatedAt"]) >= timedelta(seconds=10)
    assert parse(upserted["lastchange"]) - parse(patched["lastchange"]) >= timedelta(seconds=10)


async def test_a_presence_only_upsert_moves_updated_at_but_not_lastchange(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    created = await create(http, firstname="Ana")
    fake.advance(5)
    presence = {"name_presences": [{"id": 11239, "value": "present"}]}
    await call(
        http,
        "POST",
        "/contacts/upsert",
        {"kind": "contact", "data": {"id": created["id"], **presence}},
    )
    fake.apply_pending_upserts()
    assert fake.upserts[-1].outcome == "updated", fake.upserts[-1].reason
    after = fake.contacts[created["id"]]
    assert after["lastchange"] == created["lastchange"]
    assert parse(after["UpdatedAt"]) - parse(created["UpdatedAt"]) >= timedelta(seconds=5)


# -- /search as a change feed ----------------------------------------------------------------


async def test_updated_at_gte_finds_exactly_what_changed_since(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    old = await create(http, firstname="Old")
    fake.advance(60)
    since = fake.utcnow()
    fresh = await create(http, firstname="Fresh")
    fake.advance(60)
    touched = await call(
        http, "PATCH", f"/contacts/{old['id']}", {"data": {"contact": {"firstname": "Touched"}}}
    )
    touched_id = touched["data"]["contact"]["id"]
    # The value as a client would format it: microseconds and an offset, or Z.
    for value in (since.isoformat(), since.strftime(MICRO)):
        found = await search(http, changed_since(value))
        assert sorted(c["id"] for c in found) == sorted([fresh["id"], touched_id])
    later = fake.utcnow() + timedelta(seconds=1)
    assert await search(http, changed_since(later.isoformat())) == []
    # `lte` and `range` bound the window from above.
    before = await search(http, changed_since(since.isoformat(), ope="lte"))
    assert before == []
    window = {"attr": "UpdatedAt", "ope": "range", "from": since.isoformat()}
    body = changed_since(since.isoformat())
    body["data"]["advanced_search"]["query"] = {"$all": [{"$all": [{"$condition": window}]}]}
    # Up to just after the fresh contact: the touched one came a minute later.
    window["to"] = (parse(fresh["UpdatedAt"]) + timedelta(seconds=1)).isoformat()
    assert [c["id"] for c in await search(http, body)] == [fresh["id"]]


async def test_sorted_by_lastchange_ascending_the_oldest_change_comes_first(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    since = fake.utcnow()
    ids = [(await create(http, firstname=f"N{i}"))["id"] for i in range(3)]
    fake.advance(1)
    await call(http, "PATCH", f"/contacts/{ids[0]}", {"data": {"contact": {"firstname": "Z"}}})
    body = changed_since(since.isoformat(), sort_attr="lastchange", sort_asc=True)
    assert [c["id"] for c in await search(http, body)] == [ids[1], ids[2], ids[0]]
    body = changed_since(since.isoformat(), sort_attr="lastchange", sort_asc=False)
    assert [c["id"] for c in await search(http, body)] == [ids[0], ids[2], ids[1]]


@pytest.mark.parametrize(
    ("options", "location"),
    [
        # Qomon documents no `gt` operator, and sorts only on its listed attributes.
        ({"ope": "gt"}, "body.data.advanced_search.query.$all[0].$all[0].$condition.ope"),
        ({"sort_attr": "UpdatedAt"}, "body.data.advanced_search.sort_attr"),
    ],
)
async def test_what_qomon_does_not_document_is_a_422(
    http: aiohttp.ClientSession, options: dict[str, str], location: str
) -> None:
    body = changed_since("now-1h", ope=options.get("ope", "gte"))
    if "sort_attr" in options:
        body["data"]["advanced_search"]["sort_attr"] = options["sort_attr"]
    async with http.post("/search", json=body) as response:
        assert response.status == 422
        problem = await response.json()
    assert [e["location"] for e in problem["errors"]] == [location]


async def test_pages_of_1000_until_a_short_page(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    since = fake.utcnow() - timedelta(seconds=1)
    for i in range(2345):
        fake.add_contact({"firstname": f"C{i}"})
    seen: list[int] = []
    page = 0
    while True:
        found = await search(http, changed_since(since.isoformat(), page=page))
        seen += [c["id"] for c in found]
        if len(found) < 1000:
            break
        page += 1
    assert page == 2
    assert len(seen) == len(set(seen)) == 2345
    body = changed_since(since.isoformat())
    body["data"]["advanced_search"]["per_page"] = 1001
    async with http.post("/search", json=body) as response:
        assert response.status == 422


# -- the lagging search index -------------------------------------------------------------------


async def test_search_lag_hides_a_create_from_search_and_kpi_but_not_from_get() -> None:
    # Scale 1: the lag is 2.5 real seconds, far more than the calls below take; the clock
    # is then moved by hand, so nothing waits.
    async with FakeQomon(api_key=KEY, search_lag=2.5) as fake:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(fake.base_url, headers=headers) as http:
            since = (fake.utcnow() - timedelta(seconds=1)).isoformat()
            created = await create(http, firstname="Lag", mail="lag@example.org")
            got = await call(http, "GET", f"/contacts/{created['id']}")
            assert got["data"]["contact"]["mail"] == "lag@example.org"
            assert await search(http, changed_since(since)) == []
            kpi = await call(http, "POST", "/kpi", changed_since(since))
            assert kpi["data"]["total"] == 0

            fake.advance(2.5)
            assert [c["id"] for c in await search(http, changed_since(since))] == [created["id"]]
            kpi = await call(http, "POST", "/kpi", changed_since(since))
            assert kpi["data"]["total"] == 1


async def test_search_lag_shows_the_old_version_of_an_update_and_a_deleted_contact() -> None:
    async with FakeQomon(api_key=KEY, search_lag=3) as fake:
        seeded = fake.add_contact({"firstname": "Before", "mail": "b@example.org"})
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(fake.base_url, headers=headers) as http:
            everyone = changed_since("now-1d")
            # A seeded contact is searchable at once.
            assert [c["firstname"] for c in await search(http, everyone)] == ["Before"]
            await call(
                http,
                "PATCH",
                f"/contacts/{seeded['id']}",
                {"data": {"contact": {"firstname": "After", "mail": "b@example.org"}}},
            )
            assert [c["firstname"] for c in await search(http, everyone)] == ["Before"]
            fake.advance(3)
            assert [c["firstname"] for c in await search(http, everyone)] == ["After"]

            await call(http, "DELETE", f"/contacts/{seeded['id']}")
            assert [c["firstname"] for c in await search(http, everyone)] == ["After"]
            async with http.get(f"/contacts/{seeded['id']}") as response:
                assert response.status == 404
            fake.advance(3)
            assert await search(http, everyone) == []


async def test_search_lag_applies_to_upserts_from_when_they_land() -> None:
    async with FakeQomon(api_key=KEY, search_lag=2, upsert_delay=2) as fake:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(fake.base_url, headers=headers) as http:
            await call(
                http, "POST", "/contacts/upsert", {"kind": "contact", "data": {"firstname": "U"}}
            )
            fake.advance(2)  # the upsert lands...
            assert len(fake.contacts) == 1
            assert await search(http, changed_since("now-1d")) == []
            fake.advance(2)  # ...and is searchable 2 s later
            assert len(await search(http, changed_since("now-1d"))) == 1


def test_search_lag_cannot_be_negative() -> None:
    with pytest.raises(ValueError, match="search_lag"):
        FakeQomon(search_lag=-1)


# -- the clock -------------------------------------------------------------------------------


async def test_advance_moves_the_clock_refills_the_bucket_and_applies_due_upserts() -> None:
    async with FakeQomon(api_key=KEY, upsert_delay=2) as fake:
        start = fake.now()
        fake.drain()
        assert (fake.tokens or 0) < 1
        utc = fake.utcnow()
        assert fake.advance(5) >= start + 5
        assert fake.utcnow() - utc >= timedelta(seconds=5)
        assert 50 <= (fake.tokens or 0) < 60  # 5 s at 10 tokens/s, and the real time since
        fake.advance(100)
        assert fake.tokens == 100
        with pytest.raises(ValueError, match="forward"):
            fake.advance(-1)
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(fake.base_url, headers=headers) as http:
            await call(
                http, "POST", "/contacts/upsert", {"kind": "contact", "data": {"firstname": "A"}}
            )
        fake.advance(1)
        assert [u.outcome for u in fake.upserts] == ["pending"]
        fake.advance(1)
        assert [u.outcome for u in fake.upserts] == ["created"]
        assert fake.utcnow().tzinfo == timezone.utc
