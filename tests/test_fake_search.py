"""``POST /search`` and ``/kpi`` on the emulator: the query tree, the operators that matter for
integrations, dates and date-math, paging without a total, sorting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest

from qomon_async.testing import FakeQomon

KEY = "test-key"
UTC = timezone.utc


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, rate_limit=False) as fake:
        now = fake.utcnow()
        fake.add_contact(
            {
                "firstname": "Jeanne",
                "surname": "Dupont",
                "mail": "Jeanne.Dupont@example.org",
                "mobile": "0612345678",
                "birthdate": "1955-07-06T00:00:00Z",
                "address": {"city": "Testville", "postalcode": "75002", "street": "rue Haute"},
                "tags": [{"name": "vip"}, {"name": "volunteer"}],
                "formdatas": [{"form_id": 11238, "form_ref_id": 17866}],
                "custom_fields": [{"form_id": 12519, "form_ref_id": 19491, "data": "Architect"}],
            },
            created_at=now - timedelta(days=10),
        )
        fake.add_contact(
            {
                "firstname": "Marie Jeanne",
                "surname": "Martin",
                "mail": "marie@example.org",
                "address": {"city": "Test", "postalcode": "69001"},
                "tags": [{"name": "donor"}],
            },
            created_at=now - timedelta(hours=2),
        )
        fake.add_contact(
            {"firstname": "Paul", "surname": "Bernard", "address": {"city": "Lyon"}},
            created_at=now - timedelta(minutes=5),
        )
        yield fake


def tree(*conditions: dict[str, Any], logic: str = "$all") -> dict[str, Any]:
    return {"$all": [{logic: [{"$condition": c} for c in conditions]}]}


async def search(
    http: aiohttp.ClientSession, query: dict[str, Any], **options: Any
) -> tuple[int, Any]:
    body = {"data": {"advanced_search": {"per_page": 100, "query": query, **options}}}
    async with http.post("/search", json=body) as response:
        return response.status, await response.json()


async def firstnames(
    http: aiohttp.ClientSession, *conditions: dict[str, Any], logic: str = "$all"
) -> list[str]:
    status, body = await search(http, tree(*conditions, logic=logic))
    assert status == 200, body
    return sorted(c["firstname"] for c in body["data"]["contacts"])


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # eql is a case-insensitive token or prefix match (observed on Qomon).
        ({"attr": "address.city", "ope": "eql", "value": "test"}, ["Jeanne", "Marie Jeanne"]),
        ({"attr": "firstname", "ope": "eql", "value": "jeanne"}, ["Jeanne", "Marie Jeanne"]),
        ({"attr": "firstname", "ope": "not_eql", "value": "jeanne"}, ["Paul"]),
        (
            {"attr": "mail", "ope": "eql:strictdata", "value": "Jeanne.Dupont@example.org"},
            ["Jeanne"],
        ),
        ({"attr": "mail", "ope": "eql:strictdata", "value": "jeanne.dupont@example.org"}, []),
        (
            {"attr": "mail", "ope": "not_eql:strictdata", "value": "marie@example.org"},
            ["Jeanne", "Paul"],
        ),
        ({"attr": "mail", "ope": "ext"}, ["Jeanne", "Marie Jeanne"]),
        ({"attr": "mail", "ope": "not_ext"}, ["Paul"]),
        ({"attr": "surname", "ope": "start_with", "value": "MAR"}, ["Marie Jeanne"]),
        ({"attr": "surname", "ope": "not_start_with", "value": "mar"}, ["Jeanne", "Paul"]),
        ({"attr": "mobile", "ope": "contains", "value": "2345"}, ["Jeanne"]),
        ({"attr": "address.postalcode", "ope": "start_with", "value": "75"}, ["Jeanne"]),
        (
            {"attr": "tags.name", "ope": "any_of", "value": ["vip", "donor"]},
            ["Jeanne", "Marie Jeanne"],
        ),
        ({"attr": "tags.name", "ope": "any_of", "value": "donor,nobody"}, ["Marie Jeanne"]),
        ({"attr": "tags.name", "ope": "none_of", "value": ["vip"]}, ["Marie Jeanne", "Paul"]),
        ({"attr": "tags.name", "ope": "all_of", "value": ["vip", "volunteer"]}, ["Jeanne"]),
        ({"attr": "tags.name", "ope": "eql", "value": "VIP"}, ["Jeanne"]),
        ({"attr": "birthdate", "ope": "lte", "value": "1960-01-01"}, ["Jeanne"]),
        ({"attr": "birthdate", "ope": "eql", "value": "1955-07-06"}, ["Jeanne"]),
        (
            {"attr": "black_list", "ope": "eql", "value": "false"},
            ["Jeanne", "Marie Jeanne", "Paul"],
        ),
        ({"attr": "petitions.base_id", "ope": "ext"}, []),
        ({"attr": "form", "ope": "ext", "form_id": 11238, "form_ref_ids": []}, ["Jeanne"]),
        ({"attr": "form", "ope": "eql", "form_id": 11238, "form_ref_ids": [17866]}, ["Jeanne"]),
        ({"attr": "form", "ope": "eql", "form_id": 11238, "form_ref_ids": [17867]}, []),
        (
            {
                "attr": "custom_fields",
                "ope": "eql",
                "form_id": 12519,
                "form_ref_ids": [19491],
                "value": "architect",
            },
            ["Jeanne"],
        ),
        (
            {"attr": "form", "ope": "not_ext", "form_id": 11238, "form_ref_ids": []},
            ["Marie Jeanne", "Paul"],
        ),
    ],
)
async def test_operators(
    http: aiohttp.ClientSession, condition: dict[str, Any], expected: list[str]
) -> None:
    assert await firstnames(http, condition) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("now-1d/d", ["Marie Jeanne", "Paul"]),
        ("now-1h", ["Paul"]),
        ("now-30d", ["Jeanne", "Marie Jeanne", "Paul"]),
        ("now+1y", []),
    ],
)
async def test_date_math(http: aiohttp.ClientSession, value: str, expected: list[str]) -> None:
    condition = {"attr": "CreatedAt", "ope": "gte", "value": value}
    assert await firstnames(http, condition) == expected


@pytest.mark.parametrize("digits", [0, 1, 3, 6])
async def test_iso_values_with_any_fraction_find_what_was_created_since(
    fake: FakeQomon, http: aiohttp.ClientSession, digits: int
) -> None:
    # The duplicate-reconciliation lookup: this mail, these names, created since the attempt.
    since = datetime.now(UTC)
    text = since.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + since.strftime("%f")[:digits]
    body = {"data": {"contact": {"firstname": "Lou", "surname": "Roux", "mail": "lou@example.org"}}}
    async with http.post("/contacts", json=body) as response:
        assert response.status == 200
    conditions = [
        {"attr": "mail", "ope": "eql:strictdata", "value": "lou@example.org"},
        {"attr": "firstname", "ope": "eql", "value": "Lou"},
        {"attr": "surname", "ope": "eql", "value": "Roux"},
        {"attr": "CreatedAt", "ope": "gte", "value": text + "Z"},
    ]
    assert await firstnames(http, *conditions) == ["Lou"]
    later = (fake.utcnow() + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    conditions[-1] = {"attr": "CreatedAt", "ope": "gte", "value": later}
    assert await firstnames(http, *conditions) == []


async def test_date_range_and_lte(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    now = fake.utcnow()
    frm = (now - timedelta(days=3)).isoformat()
    to = (now - timedelta(minutes=30)).isoformat()
    condition = {"attr": "CreatedAt", "ope": "range", "from": frm, "to": to}
    assert await firstnames(http, condition) == ["Marie Jeanne"]
    condition = {"attr": "UpdatedAt", "ope": "lte", "value": "now-1d"}
    assert await firstnames(http, condition) == ["Jeanne"]


async def test_logic_of_the_two_levels(http: aiohttp.ClientSession) -> None:
    paris = {"attr": "address.postalcode", "ope": "start_with", "value": "75"}
    lyon = {"attr": "address.city", "ope": "eql", "value": "Lyon"}
    assert await firstnames(http, paris, lyon, logic="$at_least_one") == ["Jeanne", "Paul"]
    assert await firstnames(http, paris, lyon) == []
    query = {"$at_least_one": [{"$all": [{"$condition": paris}]}, {"$all": [{"$condition": lyon}]}]}
    status, body = await search(http, query)
    assert status == 200 and len(body["data"]["contacts"]) == 2
    status, body = await search(http, {"$all": []})  # the "list all" idiom
    assert len(body["data"]["contacts"]) == 3


async def test_paging_has_no_total_and_ends_on_a_short_page(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    for index in range(22):
        fake.add_contact({"firstname": f"P{index:02d}", "surname": "Page"})
    condition = {"attr": "surname", "ope": "eql", "value": "Page"}
    seen: list[str] = []
    sizes = []
    for page in range(4):
        status, body = await search(http, tree(condition), per_page=10, page=page)
        assert status == 200
        assert set(body["data"]) == {"contacts"}
        sizes.append(len(body["data"]["contacts"]))
        seen += [c["firstname"] for c in body["data"]["contacts"]]
    assert sizes == [10, 10, 2, 0]
    assert seen == [f"P{index:02d}" for index in range(22)]


async def test_sorting(http: aiohttp.ClientSession) -> None:
    everyone: dict[str, Any] = {"$all": []}

    async def order(**options: Any) -> list[str]:
        status, body = await search(http, everyone, **options)
        assert status == 200
        return [c["surname"] for c in body["data"]["contacts"]]

    assert await order(sort_attr="surname", sort_asc=True) == ["Bernard", "Dupont", "Martin"]
    assert await order(sort_attr="surname") == ["Martin", "Dupont", "Bernard"]  # default desc
    assert await order(sort_attr="city", sort_asc=True) == ["Bernard", "Martin", "Dupont"]
    assert await order(sort_attr="lastchange", sort_asc=True) == ["Dupont", "Martin", "Bernard"]
    # Contacts without the attribute come last whatever the direction.
    assert (await order(sort_attr="mail", sort_asc=False))[-1] == "Bernard"


@pytest.mark.parametrize(
    ("advanced_search", "location"),
    [
        (
            {"per_page": 10, "query": {"$all": [{"$condition": {"attr": "mail", "ope": "ext"}}]}},
            "body.data.advanced_search.query.$all[0]",
        ),
        ({"per_page": 1001, "query": {"$all": []}}, "body.data.advanced_search.per_page"),
        ({"per_page": 0, "query": {"$all": []}}, "body.data.advanced_search.per_page"),
        ({"query": {"$all": []}}, "body.data.advanced_search.per_page"),
        ({"per_page": 10}, "body.data.advanced_search.query"),
        ({"per_page": 10, "query": {"$any": []}}, "body.data.advanced_search.query"),
        ({"per_page": 10, "page": -1, "query": {"$all": []}}, "body.data.advanced_search.page"),
        (
            {"per_page": 10, "sort_attr": "CreatedAt", "query": {"$all": []}},
            "body.data.advanced_search.sort_attr",
        ),
        (
            {"per_page": 10, "query": tree({"attr": "mail", "ope": "like", "value": "x"})},
            "body.data.advanced_search.query.$all[0].$all[0].$condition.ope",
        ),
        (
            {"per_page": 10, "query": tree({"attr": "CreatedAt", "ope": "gte", "value": "soon"})},
            "body.data.advanced_search.query.$all[0].$all[0].$condition.value",
        ),
    ],
)
async def test_invalid_searches_get_422(
    http: aiohttp.ClientSession, advanced_search: dict[str, Any], location: str
) -> None:
    async with http.post("/search", json={"data": {"advanced_search": advanced_search}}) as r:
        assert r.status == 422
        assert r.content_type == "application/problem+json"
        problem = await r.json()
    assert location in [e["location"] for e in problem["errors"]]


async def test_per_page_1000_is_the_maximum_and_kpi_counts(http: aiohttp.ClientSession) -> None:
    status, body = await search(http, {"$all": []}, per_page=1000)
    assert status == 200 and len(body["data"]["contacts"]) == 3
    condition = {"attr": "address.city", "ope": "eql", "value": "test"}
    kpi = {"data": {"advanced_search": {"query": tree(condition)}}}
    async with http.post("/kpi", json=kpi) as response:
        assert await response.json() == {"status": "success", "data": {"total": 2}}
