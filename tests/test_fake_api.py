"""FakeQomon from outside, through a plain aiohttp client: auth, contact routes, validation,
forms and actions, and conformance of every answer to the response schemas of the OpenAPI file.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml

from qomon_async.testing import FakeQomon

KEY = "test-key"
SPEC = yaml.safe_load((Path(__file__).parent / "data" / "qomon-openapi.yaml").read_text())
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")


def _openapi_to_jsonschema(node: Any) -> Any:
    # OpenAPI 3.0 says `nullable: true`; JSON Schema says `type: [x, "null"]`.
    if isinstance(node, list):
        return [_openapi_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _openapi_to_jsonschema(value) for key, value in node.items()}
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    return node


COMPONENTS = _openapi_to_jsonschema(SPEC["components"])
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time")
def _is_datetime(value: object) -> bool:
    return not isinstance(value, str) or bool(RFC3339.match(value))


def assert_conforms(document: Any, path: str, method: str, status: int = 200) -> None:
    """Validate ``document`` against the spec's response schema (components resolved)."""
    response = SPEC["paths"][path][method]["responses"][status]
    schema = _openapi_to_jsonschema(response["content"]["application/json"]["schema"])
    # 2020-12 so that keywords beside `$ref` (`required: [id]` on the created contact) count.
    validator = jsonschema.Draft202012Validator(
        {**schema, "components": COMPONENTS}, format_checker=FORMATS
    )
    validator.validate(document)


def assert_problem(document: dict[str, Any], status: int) -> None:
    assert document["type"] == "about:blank"
    assert document["status"] == status
    assert isinstance(document["title"], str) and isinstance(document["detail"], str)
    assert isinstance(document["instance"], str)
    for error in document.get("errors", []):
        assert set(error) == {"location", "message", "value"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=1000) as fake:
        yield fake


FULL_CONTACT: dict[str, Any] = {
    "gender": "F",
    "firstname": "Jeanne",
    "surname": "Dupont",
    "married_name": "Martin",
    "birthdate": "1955-07-06T00:00:00.000Z",
    "age_category": 5,
    "birth_city": "Lyon",
    "birthcountry": "France",
    "nationality": "Française",
    "mail": "jeanne.dupont@example.org",
    "phone": "0123456789",
    "mobile": "0612345678",
    "address": {
        "housenumber": 12,
        "street": "rue de la Paix",
        "postal_code": "75002",
        "city": "Paris",
        "country": "France",
        "floor": "2",
        "pollingstation": "BV-06",
    },
    "tags": [{"name": "volunteer"}, {"name": "vip"}],
    "action_ids": [152],
    "formdatas": [
        {"form_id": 11240, "form_ref_id": 17874, "data": "consent_email"},
        {"form_id": 11238, "form_ref_id": 17866},
    ],
    "custom_fields": [{"form_id": 12519, "form_ref_id": 19491, "data": "Architect"}],
    "black_list": False,
    "notes": [{"data": "Met at the market", "pinned": True}],
}


async def create(http: aiohttp.ClientSession, contact: dict[str, Any]) -> dict[str, Any]:
    async with http.post("/contacts", json={"data": {"contact": contact}}) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


# -- auth --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}],
    ids=["missing", "wrong-key", "wrong-scheme"],
)
async def test_requests_without_the_bearer_key_get_401_problem(
    fake: FakeQomon, headers: dict[str, str]
) -> None:
    async with (
        aiohttp.ClientSession(fake.base_url) as session,
        session.get("/actions", headers=headers) as response,
    ):
        assert response.status == 401
        assert response.content_type == "application/problem+json"
        assert_problem(await response.json(), 401)
        assert "X-Ratelimit-Remaining" not in response.headers
    assert fake.requests[-1].status == 401
    assert fake.requests[-1].cost == 0


async def test_revoke_mid_run_makes_requests_fail_with_401(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    async with http.get("/actions") as response:
        assert response.status == 200
    fake.revoke()
    async with http.get("/actions") as response:
        assert response.status == 401
    fake.accept_key(KEY)
    async with http.get("/actions") as response:
        assert response.status == 200


async def test_a_second_key_reaches_the_same_space(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    fake.accept_key("other")
    created = await create(http, {"firstname": "Ana"})
    contact_id = created["data"]["contact"]["id"]
    async with (
        aiohttp.ClientSession(fake.base_url, headers={"Authorization": "Bearer other"}) as other,
        other.get(f"/contacts/{contact_id}") as response,
    ):
        assert response.status == 200


# -- contacts ----------------------------------------------------------------------------


async def test_create_answers_the_stored_contact_in_the_read_shape(
    fake: FakeQomon, http: aiohttp.ClientSession
) -> None:
    before = fake.utcnow()
    body = await create(http, FULL_CONTACT)
    assert_conforms(body, "/contacts", "post")
    contact = body["data"]["contact"]
    assert body["status"] == "success"
    assert isinstance(contact["id"], int)
    assert contact["group_id"] == 631
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", contact["CreatedAt"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", contact["lastchange"])
    assert contact["CreatedAt"] >= before.strftime("%Y-%m-%dT%H:%M:%S")
    # The documented write variants are stored under the 1.1.0 names.
    assert contact["birthcity"] == "Lyon"
    assert contact["actions_ids"] == [152]
    assert contact["birthdate"] == "1955-07-06T00:00:00Z"
    address = contact["address"]
    assert address["housenumber"] == "12" and address["postalcode"] == "75002"
    assert {"id", "latitude", "longitude", "location", "score"} <= set(address)
    assert contact["tags"] == [{"name": "volunteer"}, {"name": "vip"}]
    consent, support = contact["formdatas"]
    assert (consent["form_id"], consent["form_ref_id"], consent["data"]) == (
        11240,
        17874,
        "consent_email",
    )
    assert support["data"] == "citizen"  # a choice answer without data takes the value
    assert consent["contact_id"] == contact["id"]
    assert contact["customfields"][0]["data"] == "Architect"
    assert contact["notes"][0]["content"] == "Met at the market"
    assert fake.contacts[contact["id"]] == contact
    assert fake.requests[-1].contact_id == contact["id"]


async def test_the_spec_example_create_body_is_accepted(http: aiohttp.ClientSession) -> None:
    example = SPEC["paths"]["/contacts"]["post"]["requestBody"]["content"]["application/json"]
    for sample in example["examples"].values():
        async with http.post("/contacts", json=sample["value"]) as response:
            assert response.status == 200, await response.text()


async def test_get_patch_delete_round_trip(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    created = (await create(http, FULL_CONTACT))["data"]["contact"]
    url = f"/contacts/{created['id']}"
    async with http.get(url) as response:
        body = await response.json()
        assert response.status == 200
        assert_conforms(body, "/contacts/{contactId}", "get")
        assert body["data"]["contact"] == created

    # PATCH is a full replace: what the body leaves out is cleared.
    replacement = {"firstname": "Jeanne", "surname": "Durand", "mail": "jd@example.org"}
    async with http.patch(url, json={"data": {"contact": replacement}}) as response:
        body = await response.json()
        assert response.status == 200
        assert_conforms(body, "/contacts/{contactId}", "patch")
    patched = body["data"]["contact"]
    assert patched["surname"] == "Durand"
    assert "address" not in patched and "mobile" not in patched
    assert patched["tags"] == [] and patched["formdatas"] == []
    assert patched["CreatedAt"] == created["CreatedAt"]
    assert patched["UpdatedAt"] > created["UpdatedAt"]
    assert fake.requests[-1].cost == 5

    async with http.delete(url) as response:
        assert response.status == 204
        assert await response.read() == b""
    for method in ("GET", "PATCH", "DELETE"):
        async with http.request(method, url, json={"data": {"contact": replacement}}) as response:
            assert response.status == 404
            assert_problem(await response.json(), 404)
    assert fake.contacts == {}


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "location"),
    [
        (b'{"data": {"contact": {"firstname": "Jea', 400, "body"),
        (b"", 400, "body"),
        (b"[1, 2]", 422, "body"),
        (b'{"contact": {"firstname": "x"}}', 422, "body.data"),
        (b'{"data": {"firstname": "x"}}', 422, "body.data.contact"),
        (b'{"data": {"contact": {"firstname": 12}}}', 422, "body.data.contact.firstname"),
        (b'{"data": {"contact": {"mail": "not-an-email"}}}', 422, "body.data.contact.mail"),
        (b'{"data": {"contact": {"black_list": "no"}}}', 422, "body.data.contact.black_list"),
        (b'{"data": {"contact": {"age_category": "3"}}}', 422, "body.data.contact.age_category"),
        (b'{"data": {"contact": {"birthdate": "yesterday"}}}', 422, "body.data.contact.birthdate"),
        (b'{"data": {"contact": {"tags": ["vip"]}}}', 422, "body.data.contact.tags[0]"),
        (
            b'{"data": {"contact": {"address": {"city": ["Paris"]}}}}',
            422,
            "body.data.contact.address.city",
        ),
        (
            b'{"data": {"contact": {"formdatas": [{"form_id": 1, "form_ref_id": 2}]}}}',
            422,
            "body.data.contact.formdatas[0].form_id",
        ),
        (
            b'{"data": {"contact": {"formdatas": [{"form_id": 11240, "form_ref_id": 19491}]}}}',
            422,
            "body.data.contact.formdatas[0].form_ref_id",
        ),
        (
            b'{"data": {"contact": {"custom_fields": [{"form_id": "12519"}]}}}',
            422,
            "body.data.contact.custom_fields[0].form_id",
        ),
    ],
)
async def test_create_rejects_invalid_bodies_with_problem_json(
    fake: FakeQomon, http: aiohttp.ClientSession, body: bytes, status: int, location: str
) -> None:
    headers = {"Content-Type": "application/json"}
    async with http.post("/contacts", data=body, headers=headers) as response:
        assert response.status == status
        assert response.content_type == "application/problem+json"
        problem = await response.json()
    assert_problem(problem, status)
    assert location in [error["location"] for error in problem["errors"]]
    assert problem["instance"] == "/contacts"
    assert fake.contacts == {}


async def test_validation_lists_every_field_error(http: aiohttp.ClientSession) -> None:
    body = {"data": {"contact": {"firstname": 1, "surname": True, "mail": "x@"}}}
    async with http.post("/contacts", json=body) as response:
        problem = await response.json()
    assert response.status == 422
    assert [e["location"] for e in problem["errors"]] == [
        "body.data.contact.firstname",
        "body.data.contact.surname",
        "body.data.contact.mail",
    ]
    assert problem["errors"][0]["value"] == 1


async def test_unknown_routes_and_methods(http: aiohttp.ClientSession) -> None:
    async with http.get("/nowhere") as response:
        assert response.status == 404
        assert_problem(await response.json(), 404)
    async with http.put("/contacts/1") as response:
        assert response.status == 405
        assert "PATCH" in response.headers["Allow"]
    async with http.get("/contacts/abc") as response:
        assert response.status == 422
        assert (await response.json())["errors"][0]["location"] == "path.contactId"


async def test_add_contact_seeds_data_with_a_chosen_creation_time(fake: FakeQomon) -> None:
    stamp = fake.utcnow().replace(year=2020)
    contact = fake.add_contact({"firstname": "Old", "mail": "old@example.org"}, created_at=stamp)
    assert contact["CreatedAt"].startswith("2020-")
    assert fake.requests == []
    with pytest.raises(ValueError, match="mail"):
        fake.add_contact({"mail": "nope"})


# -- forms and actions -------------------------------------------------------------------


@pytest.mark.parametrize(
    "form_type",
    ["consent", "level_of_support", "presence_status", "custom_fields", "survey", "tasks"],
)
async def test_forms_by_type_on_both_routes(http: aiohttp.ClientSession, form_type: str) -> None:
    async with http.get(f"/v1/forms/type/{form_type}") as response:
        assert response.status == 200
        canonical = await response.json()
    assert_conforms(canonical, "/forms/{type}", "get")
    forms = canonical["data"]["forms"]
    assert forms and all(form["refvalues"] for form in forms)
    for form in forms:
        for ref in form["refvalues"]:
            assert ref["form_id"] == form["id"]
    async with http.get(f"/forms/{form_type}") as response:
        assert response.status == 200
        assert response.headers["Deprecation"] == "true"
        assert await response.json() == canonical


async def test_seeded_forms_match_the_spec_examples(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/forms/type/presence_status") as response:
        (presence,) = (await response.json())["data"]["forms"]
    assert presence["id"] == 11239
    assert [r["value"] for r in presence["refvalues"]] == ["present", "absent", "refus", "repasse"]
    async with http.get("/v1/forms/type/level_of_support") as response:
        (support,) = (await response.json())["data"]["forms"]
    assert "to_be_convinced" in [r["value"] for r in support["refvalues"]]


async def test_form_by_id_and_errors(http: aiohttp.ClientSession) -> None:
    async with http.get("/forms/12515") as response:
        body = await response.json()
    assert_conforms(body, "/forms/{formId}", "get")
    form = body["data"]["form"]
    assert form["type"] == "range" and form["refvalues"][0]["max"] == 10
    async with http.get("/forms/999") as response:
        assert response.status == 404
    async with http.get("/v1/forms/type/petitions") as response:
        assert response.status == 422
        assert (await response.json())["errors"][0]["location"] == "path.type"


async def test_actions(http: aiohttp.ClientSession) -> None:
    async with http.get("/actions") as response:
        body = await response.json()
    assert response.status == 200 and body["status"] == "success"
    aggregates = body["data"]["ActionsAggreg"]
    assert aggregates
    for item in aggregates:
        assert {"Action", "NbVisites", "NbContacts", "NbVisitesDeclared"} <= set(item)
        action = item["Action"]
        assert action["type_data"] in {"canvassing", "calling", "event"}
        assert action["status"] in {"todo", "finished"}
        assert isinstance(action["id"], int) and isinstance(action["group_id"], int)


# -- schema conformance of search and kpi answers ----------------------------------------


async def test_search_and_kpi_answers_conform(fake: FakeQomon, http: aiohttp.ClientSession) -> None:
    await create(http, FULL_CONTACT)
    query = {"$all": [{"$all": [{"$condition": {"attr": "mail", "ope": "ext"}}]}]}
    search = {"per_page": 10, "query": query, "include_interactions": True}
    async with http.post("/search", json={"data": {"advanced_search": search}}) as response:
        body = await response.json()
    assert_conforms(body, "/search", "post")
    assert body["data"]["contacts"][0]["interactions"] == []
    async with http.post("/kpi", json={"data": {"advanced_search": {"query": query}}}) as response:
        body = await response.json()
    assert_conforms(body, "/kpi", "post")
    assert body == {"status": "success", "data": {"total": 1}}
