"""``POST /contacts/upsert`` on the emulator: 202, the delay, the four matching rules, the
partial update and the silent drops observed on Qomon."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from qomon_async.testing import FakeQomon

KEY = "test-key"


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=1000) as fake:
        yield fake


async def upsert(http: aiohttp.ClientSession, data: dict[str, Any]) -> None:
    async with http.post("/contacts/upsert", json={"kind": "contact", "data": data}) as response:
        assert response.status == 202, await response.text()
        assert await response.read() == b""


async def upsert_and_apply(
    fake: FakeQomon, http: aiohttp.ClientSession, data: dict[str, Any]
) -> str:
    await upsert(http, data)
    await fake.wait_for_upserts()
    return fake.upserts[-1].outcome


JEANNE = {
    "firstname": "Jeanne",
    "surname": "Dupont",
    "mail": "jeanne@example.org",
    "birthdate": "1955-07-06T00:00:00Z",
    "address": {"street": "rue de la Paix", "postalcode": "75002", "city": "Paris"},
    "mobile": "0612345678",
}


async def test_upsert_answers_202_at_once_and_applies_after_the_delay() -> None:
    # 2 Qomon seconds at scale 20: 100 ms, long enough to look before it lands.
    async with FakeQomon(api_key=KEY, time_scale=20) as fake:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(fake.base_url, headers=headers) as http:
            await upsert(http, {"firstname": "Ana", "mail": "ana@example.org"})
            assert fake.contacts == {}
            assert fake.upserts[0].outcome == "pending"
            await fake.wait_for_upserts()
        record = fake.upserts[0]
        assert record.outcome == "created"
        assert record.applied_at is not None
        assert record.applied_at - record.received_at == pytest.approx(2.0, abs=1.0)
        assert fake.contacts[record.contact_id or 0]["mail"] == "ana@example.org"


async def test_apply_pending_upserts_skips_the_wait() -> None:
    async with FakeQomon(api_key=KEY) as fake:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(fake.base_url, headers=headers) as http:
            await upsert(http, {"firstname": "Ana"})
        assert fake.apply_pending_upserts() == 1
        assert len(fake.contacts) == 1


async def test_rule_1_by_id_is_a_partial_update(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    existing = fake.add_contact({**JEANNE, "tags": [{"name": "vip"}]})
    outcome = await upsert_and_apply(
        fake, http, {"id": existing["id"], "mobile": "0700000000", "tags": [{"name": "new"}]}
    )
    assert outcome == "updated"
    contact = fake.contacts[existing["id"]]
    assert contact["mobile"] == "0700000000"
    assert contact["firstname"] == "Jeanne" and contact["address"]["city"] == "Paris"
    assert [t["name"] for t in contact["tags"]] == ["vip", "new"]
    assert contact["UpdatedAt"] > existing["UpdatedAt"]


async def test_rule_1_matches_a_nationbuilder_id(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    existing = fake.add_contact({**JEANNE, "nationbuilderid": 987})
    assert await upsert_and_apply(fake, http, {"id": 987, "phone": "0100000000"}) == "updated"
    assert fake.contacts[existing["id"]]["phone"] == "0100000000"


async def test_an_unknown_id_is_dropped_as_observed(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.add_contact(JEANNE)
    outcome = await upsert_and_apply(fake, http, {"id": 1, "mail": JEANNE["mail"]})
    assert outcome == "dropped"
    assert "no contact with id 1" in (fake.upserts[-1].reason or "")
    assert len(fake.contacts) == 1


async def test_an_unknown_id_falls_through_when_configured() -> None:
    async with FakeQomon(api_key=KEY, time_scale=1000, upsert_unknown_id="match") as fake:
        existing = fake.add_contact(JEANNE)
        headers = {"Authorization": f"Bearer {KEY}"}
        async with aiohttp.ClientSession(fake.base_url, headers=headers) as http:
            outcome = await upsert_and_apply(fake, http, {"id": 1, "mail": JEANNE["mail"]})
        assert outcome == "updated"
        assert fake.upserts[-1].contact_id == existing["id"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"mail": "JEANNE@example.org"}, "updated"),
        ({"mail": "jeanne@example.org", "firstname": "Jeanne"}, "updated"),
        ({"mail": "jeanne@example.org", "firstname": "", "surname": "Dupont"}, "updated"),
        # The mail matches but the firstname differs, and the match by names has no surname.
        ({"mail": "jeanne@example.org", "firstname": "Paul"}, "created"),
    ],
)
async def test_rule_2_by_mail_then_names(
    fake: FakeQomon, http: aiohttp.ClientSession, data: dict[str, Any], expected: str
) -> None:
    fake.add_contact(JEANNE)
    assert await upsert_and_apply(fake, http, data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # Same names, same birthdate, same city: the same person.
        (
            {
                "firstname": "Jeanne",
                "surname": "Dupont",
                "birthdate": "1955-07-06T00:00:00.000Z",
                "address": {"city": "Paris", "street": "other street"},
            },
            "updated",
        ),
        # No birthdate to compare: the street must match too.
        (
            {"firstname": "Jeanne", "surname": "Dupont", "address": {"postalcode": "75002"}},
            "created",
        ),
        (
            {
                "firstname": "Jeanne",
                "surname": "Dupont",
                "address": {"postalcode": "75002", "street": "Rue de la Paix"},
            },
            "updated",
        ),
        # A different birthdate is a different person.
        (
            {"firstname": "Jeanne", "surname": "Dupont", "birthdate": "1960-01-01T00:00:00Z"},
            "created",
        ),
        # Neither birthdate nor address on the incoming side: names alone match.
        ({"firstname": "Jeanne", "surname": "Dupont"}, "updated"),
        ({"firstname": "Jeannette", "surname": "Dupont"}, "created"),
        # A mail that matches nobody falls back to the match by names.
        ({"mail": "other@example.org", "firstname": "Jeanne", "surname": "Dupont"}, "updated"),
    ],
)
async def test_rule_3_by_names_birthdate_and_address(
    fake: FakeQomon, http: aiohttp.ClientSession, data: dict[str, Any], expected: str
) -> None:
    fake.add_contact(JEANNE)
    assert await upsert_and_apply(fake, http, data) == expected


async def test_advanced_fields_by_id_label_and_value_label(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    existing = fake.add_contact(JEANNE)
    data = {
        "id": existing["id"],
        "consents": [{"id": 11240, "value": "consent_email"}],
        "status": [{"label": "Level of support", "value": "To be convinced"}],  # a label
        "custom_fields": [
            {"label": "Job", "value": "Architect"},
            {"label": "Favorites food", "value": "hamburger"},
            {"label": "Favorites food", "value": "pizza"},
        ],
        "name_presences": [{"id": 11239, "value": "present"}],
    }
    assert await upsert_and_apply(fake, http, data) == "updated"
    contact = fake.contacts[existing["id"]]
    answers = {(a["form_id"], a["data"]) for a in contact["formdatas"]}
    assert answers == {(11240, "consent_email"), (11238, "to_be_convinced"), (11239, "present")}
    custom = sorted(a["data"] for a in contact["customfields"])
    assert custom == ["Architect", "hamburger", "pizza"]

    # Radio answers and presence are replaced; checkbox values are added.
    again = {
        "id": existing["id"],
        "status": [{"label": "Level of support", "value": "citizen"}],
        "consents": [{"id": 11240, "value": "consent_mobile"}],
    }
    assert await upsert_and_apply(fake, http, again) == "updated"
    contact = fake.contacts[existing["id"]]
    support = [a["data"] for a in contact["formdatas"] if a["form_id"] == 11238]
    consents = sorted(a["data"] for a in contact["formdatas"] if a["form_id"] == 11240)
    assert support == ["citizen"]
    assert consents == ["consent_email", "consent_mobile"]


async def test_a_presence_only_write_leaves_lastchange(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    existing = fake.add_contact(JEANNE)
    data = {"id": existing["id"], "name_presences": [{"id": 11239, "value": "absent"}]}
    assert await upsert_and_apply(fake, http, data) == "updated"
    contact = fake.contacts[existing["id"]]
    assert contact["lastchange"] == existing["lastchange"]
    assert contact["UpdatedAt"] > existing["UpdatedAt"]


@pytest.mark.parametrize(
    "advanced",
    [
        {"forms": [{"label": "What do you see as the city's strengths?", "value": "Roads"}]},
        {"status": [{"label": "Level of support", "value": "undecided"}]},
        {"consents": [{"id": 11238, "value": "consent_email"}]},  # a form of another type
        {"custom_fields": [{"label": "Number of children", "value": "two"}]},
        {"forms": [{"id": 12515, "value": "11"}]},  # out of the 0-10 range
    ],
)
async def test_an_unknown_field_or_value_drops_the_whole_record(
    fake: FakeQomon, http: aiohttp.ClientSession, advanced: dict[str, Any]
) -> None:
    outcome = await upsert_and_apply(fake, http, {"firstname": "Ana", **advanced})
    assert outcome == "dropped"
    assert fake.upserts[-1].reason
    assert fake.contacts == {}


async def test_unknown_keys_are_ignored_like_presence_status(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    data = {"firstname": "Ana", "presence_status": [{"id": 11239, "value": "present"}]}
    assert await upsert_and_apply(fake, http, data) == "created"
    (contact,) = fake.contacts.values()
    assert contact["formdatas"] == []


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"data": {"firstname": "Ana"}}, "body.kind"),
        ({"kind": "user", "data": {}}, "body.kind"),
        ({"kind": "contact"}, "body.data"),
        ({"kind": "contact", "data": {"id": "12"}}, "body.data.id"),
        ({"kind": "contact", "data": {"consents": {"value": "yes"}}}, "body.data.consents"),
        (
            {"kind": "contact", "data": {"consents": [{"id": 11240, "value": True}]}},
            "body.data.consents[0].value",
        ),
        ({"kind": "contact", "data": {"status": [{"value": "citizen"}]}}, "body.data.status[0]"),
    ],
)
async def test_schema_errors_are_answered_at_once(
    fake: FakeQomon, http: aiohttp.ClientSession, body: dict[str, Any], location: str
) -> None:
    async with http.post("/contacts/upsert", json=body) as response:
        assert response.status == 422
        problem = await response.json()
    assert location in [e["location"] for e in problem["errors"]]
    assert fake.upserts == []
