"""The sans-I/O protocol: decoding every documented variant (docs/qomon.md), errors, bodies."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from qomon_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    Condition,
    Contact,
    ContactValidationError,
    ContactWrite,
    Group,
    NotFoundError,
    PermissionDeniedError,
    Query,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
    UnprocessableEntityError,
)
from qomon_async import _bodies as b
from qomon_async import _protocol as p
from qomon_async._models import Address, ConfirmedContact

# The example answer of Qomon's "Create a contact synchronously" page, verbatim but for "…".
SEED = (Path(__file__).parent / "data" / "seed-create-response.json").read_bytes()


def test_seed_response_decodes_completely() -> None:
    c = p.decode_contact(200, SEED)
    assert c.id == 12345678 and c.group_id == 1
    assert c.created_at == dt.datetime(2022, 10, 13, 15, 50, 34, 643724, tzinfo=dt.timezone.utc)
    assert c.updated_at is not None and c.lastchange is not None
    assert c.lastchange.microsecond == 163000
    assert (c.firstname, c.surname, c.married_name, c.gender) == ("Jeanne", "Dupont", "Dupont", "F")
    assert c.birthdate == dt.datetime(1955, 7, 6, tzinfo=dt.timezone.utc)
    assert (c.birthdept, c.birthcity, c.birthcountry) == ("75", "Paris", "France")
    assert c.address is not None
    a = c.address
    assert (a.housenumber, a.postalcode, a.citycode, a.floor) == ("1", "75000", "75101", "2")
    assert isinstance(a.postalcode, str)
    assert a.score == pytest.approx(0.965753) and a.invalid is None and a.id == 1001
    assert a.addition == "Résidence de la paix"
    assert c.tags[0].name == "vip" and c.tags[0].appearance_count == 123
    assert c.action_ids == [123]
    assert c.formdatas is not None and c.formdatas[0].form_ref_id == 2001
    assert c.formdatas[0].donedate is None
    assert [f.data for f in c.custom_fields] == ["Architect"]
    assert c.black_list is True
    assert c.notes[0].text == "hello" and c.notes[0].pinned is True


@pytest.mark.parametrize(
    "body",
    [
        {"status": "success", "data": {"contact": {"id": 7}}},
        {"data": {"contact": {"id": 7}}},  # DOC-NEW: no status
        {"data": {"id": 7}},  # a bare contact in data (Trellis)
        {"contact": {"id": 7}},
        {"id": 7},  # the v1 draft: no envelope
    ],
)
def test_envelope_variants(body: dict[str, object]) -> None:
    assert p.decode_contact(200, json.dumps(body).encode()).id == 7


def test_field_variants() -> None:
    body = {
        "data": {
            "contact": {
                "id": 1,
                "birth_city": "Lyon",
                "birth_country": "France",
                "birth_dept": "69",
                "action_ids": [4, 5],
                "custom_fields": [{"form_id": 1, "form_ref_id": 2, "data": 42}],
                "customfields": [{"form_id": 3, "form_ref_id": 4, "data": "x"}],
                "tags": ["important", {"name": "vip"}],
                "notes": {"id": 9, "data": "single note object"},
                "created_at": "2023-11-07T05:31:56Z",
                "address": {"house_number": 12, "postal_code": "01000", "latitude": 48},
                "unknown_field": {"nested": True},
            }
        }
    }
    c = p.decode_contact(200, json.dumps(body).encode())
    assert (c.birthcity, c.birthcountry, c.birthdept) == ("Lyon", "France", "69")
    assert c.action_ids == [4, 5]
    assert sorted(f.form_id or 0 for f in c.custom_fields) == [1, 3]
    assert [f.data for f in c.custom_fields if f.form_id == 1] == ["42"]
    assert [t.name for t in c.tags] == ["important", "vip"]
    assert [n.text for n in c.notes] == ["single note object"]
    assert c.created_at == dt.datetime(2023, 11, 7, 5, 31, 56, tzinfo=dt.timezone.utc)
    assert c.address is not None
    assert (c.address.housenumber, c.address.postalcode, c.address.latitude) == (
        "12",
        "01000",
        "48",
    )


@pytest.mark.parametrize("digits", range(7))
def test_dates_with_0_to_6_fractional_digits(digits: int) -> None:
    frac = ("." + "123456"[:digits]) if digits else ""
    body = {"data": {"contact": {"id": 1, "CreatedAt": f"2022-10-13T15:50:34{frac}Z"}}}
    c = p.decode_contact(200, json.dumps(body).encode())
    assert c.created_at is not None
    assert c.created_at.microsecond == int(("123456"[:digits] or "0").ljust(6, "0"))


def test_a_2xx_without_an_id_is_an_error() -> None:
    for body in (b'{"status": "success", "data": {"contact": {}}}', b"{}", b"not json", b""):
        with pytest.raises(ResponseDecodeError):
            p.decode_contact(200, body)


def test_search_page_null_and_missing_are_empty() -> None:
    assert p.decode_contacts_page(200, b'{"status":"success","data":{"contacts":null}}') == []
    assert p.decode_contacts_page(200, b'{"data":{}}') == []
    page = p.decode_contacts_page(200, b'{"data":{"contacts":[{"id":1},{"id":2}]}}')
    assert [c.id for c in page] == [1, 2]


def test_forms_actions_total() -> None:
    forms = p.decode_forms(
        200,
        b'{"data":{"forms":[{"id":5,"label":"Consent","type":"checkbox","group_id":[631],'
        b'"refvalues":[{"id":9,"value":"consent_email","label":"Email"}]}]}}',
    )
    assert forms[0].refvalue("Email") is not None and forms[0].refvalue("consent_email").id == 9  # type: ignore[union-attr]
    assert p.decode_forms(200, b'{"data":{"forms":null}}') == []
    assert p.decode_form(200, b'{"data":{"form":{"id":5}}}').id == 5
    actions = p.decode_actions(
        200, b'{"data":{"ActionsAggreg":[{"Action":{"id":1,"name":"Porte"},"NbVisites":79}]}}'
    )
    assert actions[0].action is not None and actions[0].action.name == "Porte"
    assert actions[0].visits == 79
    assert p.decode_total(200, b'{"status":"success","data":{"total":1597}}') == 1597


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (409, APIStatusError),
    ],
)
def test_status_errors(status: int, cls: type[APIStatusError]) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Unprocessable",
            "status": status,
            "detail": "invalid mail",
            "errors": [{"location": "body.data.contact.mail", "message": "bad", "value": "x@"}],
        }
    ).encode()
    err = p.status_error(status, body, method="POST", path="/contacts", retry_after=2.0)
    assert type(err) is cls
    assert err.status_code == status
    assert err.problem is not None and err.problem.detail == "invalid mail"
    assert err.errors[0].location == "body.data.contact.mail"
    assert "invalid mail" in str(err) and "body.data.contact.mail" in str(err)
    if status == 429:
        assert isinstance(err, RateLimitError) and err.retry_after == 2.0


def test_other_error_formats() -> None:
    err = p.status_error(400, b'{"status":"fail"}', method="GET", path="/x")
    assert err.problem is not None and err.problem.status == "fail"
    err = p.status_error(
        404, b'{"status":"error","message":"record not found"}', method="GET", path="/x"
    )
    assert "record not found" in str(err)
    err = p.status_error(502, b"<html><body>Bad Gateway</body></html>", method="GET", path="/x")
    assert err.problem is None and "Bad Gateway" in err.text and "Bad Gateway" in str(err)


def test_contact_bodies_send_only_what_was_set() -> None:
    data = b.contact_to_dict(ContactWrite(firstname="Jeanne", mail="j@example.org", phone=None))
    assert data == {"firstname": "Jeanne", "mail": "j@example.org", "phone": None}
    body = json.loads(b.contact_body(data))
    assert body == {"data": {"contact": data}}
    assert (
        b.contact_to_dict({"birthdate": dt.date(1990, 5, 17)})["birthdate"]
        == "1990-05-17T00:00:00Z"
    )
    assert b.contact_to_dict({"birthdate": "1990-05-17"})["birthdate"] == "1990-05-17T00:00:00Z"
    # external_id is a field Qomon reads back: it is known, and sent as given.
    external: Any = {"mail": "a@b.fr", "external_id": "X1"}
    assert b.contact_to_dict(external)["external_id"] == "X1"
    # A key this library does not know is refused (strict), or sent as given (strict=False).
    unknown: Any = {"mail": "a@b.fr", "new_field": "X1"}
    with pytest.raises(ContactValidationError, match="unknown contact field 'new_field'"):
        b.contact_to_dict(unknown)
    assert b.contact_to_dict(unknown, strict=False)["new_field"] == "X1"


def test_a_read_contact_can_be_written_without_its_read_only_keys() -> None:
    c = p.decode_contact(200, SEED)
    data = b.contact_to_dict(c)
    assert "id" not in data and "CreatedAt" not in data and "group_id" not in data
    assert "id" not in data["address"] and "score" not in data["address"]
    assert data["firstname"] == "Jeanne"


@pytest.mark.parametrize(
    ("contact", "location"),
    [
        ({"firstname": 12}, "firstname"),
        ({"mail": "not-an-email"}, "mail"),
        ({"address": {"postalcode": 1000}}, "address.postalcode"),
        ({"tags": 5}, "tags"),
        ({}, ""),
        ({"data": {"contact": {"firstname": "x"}}}, "data"),
    ],
)
def test_bad_contacts_name_the_field(contact: Any, location: str) -> None:
    with pytest.raises(ContactValidationError) as info:
        b.contact_to_dict(contact)
    assert info.value.location == location


def test_query_tree_has_two_levels() -> None:
    q = Query.where(Condition("mail", "eql:strictdata", "a@b.fr"))
    assert q.to_wire() == {
        "$all": [
            {"$all": [{"$condition": {"attr": "mail", "ope": "eql:strictdata", "value": "a@b.fr"}}]}
        ]
    }
    q = Query.any(
        Group.all(Condition("CreatedAt", "range", from_="now-1d/d", to="now")),
        Group.any(Condition("form", "ext", form_id=3, form_ref_ids=[1])),
    )
    wire = q.to_wire()
    assert list(wire) == ["$at_least_one"]
    assert wire["$at_least_one"][0]["$all"][0]["$condition"]["from"] == "now-1d/d"
    assert wire["$at_least_one"][1]["$at_least_one"][0]["$condition"]["form_ref_ids"] == [1]
    assert Query.everything().to_wire() == {"$all": []}
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert (
        Condition("CreatedAt", "gte", stamp).to_wire()["$condition"]["value"]
        == "2026-01-02T03:04:05.000000Z"
    )
    body = json.loads(
        b.search_body(q, page=2, per_page=1000, sort_attr="lastchange", sort_asc=True)
    )
    assert body["data"]["advanced_search"]["page"] == 2
    with pytest.raises(ValueError, match="per_page"):
        b.search_body(q, page=0, per_page=1001)


def test_merge_for_update_keeps_the_rest_and_strips_read_only() -> None:
    current = msgspec.json.decode(SEED)["data"]["contact"]
    merged = b.merge_for_update(current, {"address": {"city": "Lyon"}, "mobile": "0700000000"})
    assert merged["address"]["city"] == "Lyon" and merged["address"]["street"] == "rue de la paix"
    assert "id" not in merged["address"] and "latitude" not in merged["address"]
    assert merged["mobile"] == "0700000000" and merged["firstname"] == "Jeanne"
    for key in ("id", "CreatedAt", "UpdatedAt", "lastchange", "group_id"):
        assert key not in merged
    assert "customfields" not in merged and merged["custom_fields"][0]["data"] == "Architect"
    assert merged["formdatas"] == [
        {"form_id": 1001, "form_ref_id": 2001, "data": "Oui", "date": "2022-10-13T15:50:24.163Z"}
    ]


def test_contact_model_roundtrip_from_struct() -> None:
    assert isinstance(msgspec.convert({"id": 3}, Contact), Contact)


def test_one_odd_field_is_dropped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    body = (
        b'{"data":{"contact":{"id":5,"firstname":"A","age_category":"3x","group_id":[1],'
        b'"birthdate":"","address":{"floor":{"a":1},"city":"Lyon"}}}}'
    )
    c = p.decode_contact(200, body)
    assert (c.id, c.firstname, c.age_category, c.group_id, c.birthdate) == (
        5,
        "A",
        None,
        None,
        None,
    )
    assert c.address is not None and c.address.city == "Lyon" and c.address.floor is None
    assert "$.data.contact.age_category" in caplog.text
    page = p.decode_contacts_page(
        200, b'{"data":{"contacts":[{"id":1,"lastchange":"garbage"},{"id":2}]}}'
    )
    assert [c.id for c in page] == [1, 2]


def test_bare_answers_and_non_answers() -> None:
    assert [c.id for c in p.decode_contacts_page(200, b'{"contacts":[{"id":4}]}')] == [4]
    assert [f.id for f in p.decode_forms(200, b'{"forms":[{"id":4}]}')] == [4]
    # Neither data nor contacts: reading it as "no match" could make a reconciliation re-send.
    with pytest.raises(ResponseDecodeError):
        p.decode_contacts_page(200, b'{"unexpected": true}')
    with pytest.raises(ResponseDecodeError):
        p.decode_forms(200, b"{}")


def test_mail_is_sent_as_it_will_be_searched() -> None:
    assert b.contact_to_dict({"mail": " a@b.fr "})["mail"] == "a@b.fr"


def _variants() -> list[bytes]:
    """Every schema variant of the test data, each in a contact answer and a search page."""
    seed = json.loads(SEED)["data"]["contact"]
    variants: list[dict[str, object]] = [seed]
    for change in (
        {"birth_city": "Lyon", "birth_country": "France", "birth_dept": "69"},
        {"action_ids": [4, 5]},
        {"custom_fields": [{"form_id": 1, "data": 42}], "customfields": [{"data": True}]},
        {"tags": ["important", {"name": "vip"}]},
        {"notes": {"id": 9, "data": "one note object"}},
        {"created_at": "2023-11-07T05:31:56Z", "CreatedAt": None},
        {"address": {"house_number": 12, "postal_code": "01000", "latitude": 48, "floor": 2.5}},
        {"address": {"postalcode": "75002", "housenumber": "3bis", "door": True}},
        {"external_id": 123456},
        {"lastchange": "2022-10-13T15:50:24Z", "birthdate": "1999-12-31T23:00:00.000Z"},
    ):
        variants.append({**seed, **change})
    bodies = [json.dumps({"status": "success", "data": {"contact": v}}).encode() for v in variants]
    bodies.append(json.dumps({"data": {"contacts": variants}}).encode())
    return bodies


def _as_text(node: object) -> object:
    """The answer as Qomon documents it: answers and external ids as strings."""
    if isinstance(node, list):
        return [_as_text(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _as_text(v) for k, v in node.items()}
    for key in ("data", "external_id"):
        value = out.get(key)
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (int, float)):
            out[key] = str(value)
    return out


def _contacts(envelope: Any, page: bool) -> list[Contact]:
    """The contacts of a decoded envelope."""
    contacts: list[Contact] = envelope.data.contacts if page else [envelope.data.contact]
    return contacts


def _fields(contact: Contact) -> dict[str, Any]:
    """Every field of a contact, its own (wire) ones included, nested Structs as Structs."""
    return {name: getattr(contact, name) for name in Contact.__struct_fields__}


@pytest.mark.parametrize("body", _variants())
def test_fast_and_tolerant_paths_decode_every_variant_identically(body: bytes) -> None:
    page = b'"contacts"' in body
    decoder = p._contacts_decoder if page else p._contact_answer_decoder
    tolerant = _contacts(p._tolerant(body, decoder.type, 200, "answer", ValueError("forced")), page)
    try:
        fast = _contacts(decoder.decode(body), page)  # the strict fast path: no hooks
    except msgspec.ValidationError:
        # A number where the documentation says text (an answer's data, external_id): the fast
        # path refuses it, the tolerant path reads it as the text the documentation promises.
        fast = _contacts(decoder.decode(json.dumps(_as_text(json.loads(body))).encode()), page)
    assert fast == tolerant
    # What the client's decoders return: the same values, whichever path they took.
    public: list[Contact]
    if page:
        public = p.decode_contacts_page(200, body)
        assert public == tolerant
    else:
        public = [p.decode_contact(200, body)]
        assert type(public[0]) is ConfirmedContact  # straight from the documented shape
        assert [_fields(c) for c in public] == [_fields(c) for c in tolerant]
    for contact in public:
        assert contact.address is not None
        parts = [getattr(contact.address, name) for name in _ADDRESS_TEXT]
        assert all(v is None or type(v) is str for v in parts), parts
        assert all(type(a.data) is str for a in contact.custom_fields if a.data is not None)
        assert contact.birthcity in ("Paris", "Lyon")
    # Normalising again changes nothing (``confirmed`` builds a contact from a normalised one).
    again = [ConfirmedContact(**_fields(c)) for c in public]
    assert [_fields(c) for c in again] == [_fields(c) for c in public]


#: The address parts Qomon may send as numbers, read as text.
_ADDRESS_TEXT = (
    "housenumber", "postalcode", "citycode", "floor", "door", "pollingstation", "latitude",
    "longitude",
)  # fmt: skip


def test_an_odd_field_takes_the_tolerant_path_and_keeps_the_rest() -> None:
    body = json.dumps(
        {
            "data": {
                "contacts": [{"id": i, "floor": 1, "address": {"floor": [i]}} for i in range(50)]
            }
        }
    ).encode()
    with pytest.raises(msgspec.ValidationError):
        p._contacts_decoder.decode(body)
    contacts = p.decode_contacts_page(200, body)  # one repair round for the 50 repeats
    assert [c.id for c in contacts] == list(range(50))
    assert all(c.address is not None and c.address.floor is None for c in contacts)


# -- the models normalise themselves, however they are built ----------------------------------

#: An address as Qomon may send it: numbers (and a bool) in text parts, the v1 draft's names.
_LOOSE_ADDRESS: dict[str, Any] = {
    "housenumber": 12, "postalcode": 75001, "citycode": "75101", "floor": 0, "door": True,
    "pollingstation": 6, "latitude": 48.0, "longitude": 2.35, "house_number": 3,
    "postal_code": 69001, "street": "rue de la paix",
}  # fmt: skip
#: What every construction path gives for it (what the library has always given): each part
#: as text (a whole float without ".0", a bool as "true"), the draft's names made text as well.
_TEXT_ADDRESS: dict[str, Any] = {
    "housenumber": "12", "postalcode": "75001", "citycode": "75101", "floor": "0",
    "door": "true", "pollingstation": "6", "latitude": "48", "longitude": "2.35",
    "_house_number": "3", "_postal_code": "69001", "street": "rue de la paix",
}  # fmt: skip


def _address_fields(address: Address | None) -> dict[str, Any]:
    assert address is not None
    return {name: getattr(address, name) for name in _TEXT_ADDRESS}


def _built_addresses(wire: dict[str, Any]) -> list[Address]:
    """``wire`` as an Address, every way one is built: directly, by msgspec.convert, by
    msgspec.json.decode."""
    kwargs = {{"house_number": "_house_number", "postal_code": "_postal_code"}.get(k, k): v
              for k, v in wire.items()}  # fmt: skip
    return [
        Address(**kwargs),
        msgspec.convert(wire, Address),
        msgspec.json.decode(json.dumps(wire).encode(), type=Address),
    ]


def test_an_address_built_any_way_has_its_parts_as_text() -> None:
    for address in _built_addresses(_LOOSE_ADDRESS):
        assert _address_fields(address) == _TEXT_ADDRESS
        assert msgspec.structs.replace(address) == address  # normalising again changes nothing
    # The v1 draft's names fill housenumber/postalcode only where those are missing.
    draft = {"house_number": 3, "postal_code": "69001", "floor": None}
    for address in _built_addresses(draft):
        assert (address.housenumber, address.postalcode, address.floor) == ("3", "69001", None)
        assert (address._house_number, address._postal_code) == ("3", "69001")


def test_a_contact_built_any_way_folds_its_spellings_and_its_address() -> None:
    wire = {
        "id": 7, "birth_city": "Lyon", "birth_country": "France", "birthdept": "75",
        "birth_dept": "69", "address": _LOOSE_ADDRESS,
    }  # fmt: skip
    body = json.dumps(wire).encode()
    direct = Contact(
        id=7,
        _birth_city="Lyon",
        _birth_country="France",
        birthdept="75",
        _birth_dept="69",
        address=Address(**{{"house_number": "_house_number", "postal_code": "_postal_code"}
                            .get(k, k): v for k, v in _LOOSE_ADDRESS.items()}),
    )  # fmt: skip
    built: list[Contact] = [
        direct,
        msgspec.convert(wire, Contact),
        msgspec.json.decode(body, type=Contact),
        msgspec.convert(wire, ConfirmedContact),
        p.decode_contact(200, json.dumps({"data": {"contact": wire}}).encode()),
        p.decode_contact(200, body),  # a bare contact: the general path
        *p.decode_contacts_page(200, json.dumps({"data": {"contacts": [wire]}}).encode()),
    ]
    for contact in built:
        # The second spellings fill the public fields only where those are missing.
        assert (contact.birthcity, contact.birthcountry, contact.birthdept) == (
            "Lyon",
            "France",
            "75",
        )
        assert _address_fields(contact.address) == _TEXT_ADDRESS
    assert all(_fields(c) == _fields(direct) for c in built)
