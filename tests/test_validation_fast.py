"""The one-pass check of the common contact shape (``_plain_contact``) gives exactly what the
step-by-step path gives, or steps aside: a property test over contacts near that shape
(hypothesis; ``HYPOTHESIS_PROFILE=fuzz`` runs many more examples)."""

from __future__ import annotations

import os
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qomon_async import ContactValidationError
from qomon_async._bodies import contact_body, contact_to_dict, encode
from qomon_async._validation import (
    _PLAIN_ADDRESS_FIELDS,
    _PLAIN_TEXT_FIELDS,
    CONTACT_KEYS,
    UPSERT_KEYS,
    _plain_contact,
    _validate_full,
    validate_contact,
)

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
RUNS = settings(max_examples=3000 if LONG else 300, deadline=None)

TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "  Jeanne ", "01000", "é", "\t", "a;b", " F ", "m", "x"]),
)
MAILS = st.one_of(
    st.sampled_from(
        [
            "jeanne@example.org", " jeanne@example.org ", "a.b+c@sub.example.fr", "a@b.c0",
            "a@b.12", "a..b@example.org", ".a@example.org", "a@-b.org", "a@b-.org", "a@b",
            "a@.org", "@example.org", "a b@example.org", "x" * 65 + "@example.org",
            "a@" + "b" * 64 + ".org", "jérôme@exemple.fr", "a@exämple.fr", "", " ",
            "a@b_c.org", "a@b.org.", "A@EXAMPLE.ORG",
        ]
    ),
    st.emails().map(str),
    TEXT,
)  # fmt: skip
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 99_999), st.floats(), TEXT)
ADDRESS_KEYS = st.sampled_from(
    [*sorted(_PLAIN_ADDRESS_FIELDS), "postal_code", "house_number", "lat", "zip", "Street"]
)
ADDRESS = st.dictionaries(ADDRESS_KEYS, VALUES | TEXT, max_size=6)
TAG = st.one_of(
    TEXT,
    st.fixed_dictionaries({"name": TEXT}),
    st.fixed_dictionaries({"name": VALUES}),
    st.fixed_dictionaries({"name": TEXT, "colour": TEXT}),
    st.none(),
    st.integers(),
)
TAGS = st.one_of(st.lists(TAG, max_size=5), TEXT, st.tuples(TEXT, TEXT), st.none())
FIELDS: dict[str, Any] = {
    **{key: st.one_of(TEXT, VALUES) for key in sorted(_PLAIN_TEXT_FIELDS)},
    "mail": MAILS | VALUES,
    "mobile": TEXT | VALUES,
    "phone": TEXT | VALUES,
    "gender": st.sampled_from(["F", "m", " o ", "x", "", "FM"]) | VALUES,
    "address": ADDRESS | VALUES,
    "tags": TAGS,
    "birthdate": st.sampled_from(["1980-05-12", "12/05/1980", "x"]),
    "firstnme": TEXT,
    "data": TEXT,
}
CONTACTS = st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=len(FIELDS)).flatmap(
    lambda keys: st.fixed_dictionaries({key: FIELDS[key] for key in keys})
)


def _full(data: dict[str, Any], kind: Any) -> dict[str, Any] | ContactValidationError:
    try:
        return _validate_full(data, kind=kind, strict=True, today=None)
    except ContactValidationError as exc:
        return exc


@RUNS
@given(CONTACTS, st.sampled_from(["create", "upsert"]))
def test_the_one_pass_check_agrees_with_the_full_path(data: dict[str, Any], kind: Any) -> None:
    fast = _plain_contact(dict(data))
    full = _full(dict(data), kind)
    if fast is not None:
        # It answers only for contacts the full path accepts, with the very same dict (and order:
        # the body sent is the same bytes).
        assert not isinstance(full, ContactValidationError), (data, full)
        assert list(fast.items()) == list(full.items())
        assert encode(fast) == encode(full)  # the address's order too
    # Whoever answers, validate_contact's verdict is the full path's.
    try:
        got: Any = validate_contact(dict(data), kind=kind)
    except ContactValidationError as exc:
        got = exc
    if isinstance(full, ContactValidationError):
        assert isinstance(got, ContactValidationError)
        assert str(got) == str(full)
    else:
        assert got == full
    if kind == "create":  # and the body of a create (contact_to_dict, then contact_body)
        try:
            body: Any = contact_body(contact_to_dict(cast("Any", dict(data))))
        except ContactValidationError as exc:
            body = exc
        if isinstance(full, ContactValidationError):
            assert isinstance(body, ContactValidationError)
            assert str(body) == str(full)
        else:
            assert body == contact_body(full)


def test_the_common_shape_takes_the_one_pass_check() -> None:
    contact = {
        "firstname": "Jeanne",
        "surname": "Dupont",
        "mail": " jeanne.dupont@example.org ",
        "mobile": " 0602030405",
        "gender": "f",
        "address": {"housenumber": 12, "postalcode": " 75002", "city": "Paris"},
        "tags": [{"name": "a"}, " b ", {"name": "a"}, ""],
    }
    fast = _plain_contact(contact)
    assert fast == {
        "firstname": "Jeanne",
        "surname": "Dupont",
        "mail": "jeanne.dupont@example.org",
        "mobile": "0602030405",
        "gender": "F",
        "address": {"housenumber": "12", "postalcode": "75002", "city": "Paris"},
        "tags": [{"name": "a"}, {"name": "b"}],
    }
    assert fast == _validate_full(contact, kind="create", strict=True, today=None)


@pytest.mark.parametrize(
    "contact",
    [
        {},
        {"firstname": None},
        {"mail": "a@-b.org"},
        {"firstnme": "Jeanne"},
        {"address": {"postal_code": "75002"}},
        {"address": {"postalcode": 75002}},
        {"tags": "a;b"},
        {"tags": [{"name": None}]},
        {"birthdate": "1980-05-12"},
    ],
)
def test_anything_else_takes_the_full_path(contact: dict[str, Any]) -> None:
    assert _plain_contact(contact) is None


def test_the_common_fields_are_known_to_both_write_kinds() -> None:
    common = _PLAIN_TEXT_FIELDS | {"mail", "mobile", "phone", "address", "tags", "gender"}
    assert common <= CONTACT_KEYS
    assert common <= UPSERT_KEYS


async def test_a_number_too_long_to_write_fails_its_item_alone() -> None:
    # Python refuses to turn an integer of thousands of digits into text (ValueError): the item
    # fails with a ContactValidationError naming the field, and the run goes on.
    from qomon_async import CreateStatus, QomonClient  # noqa: PLC0415
    from qomon_async.testing import FakeQomon  # noqa: PLC0415

    items = [
        {"mail": "a@example.org"},
        {"address": {"housenumber": 10**5000}, "mail": "not a mail"},
        {"address": {"housenumber": 10**5000}},
        {"mail": "b@example.org"},
    ]
    async with FakeQomon(api_key="k" * 20) as fake:
        client = QomonClient("k" * 20, base_url=fake.base_url)
        async with client:
            results = [r async for r in client.create_contacts(items, concurrency=2)]
    by_index = {r.index: r for r in results}
    assert sorted(by_index) == [0, 1, 2, 3]
    assert [by_index[i].status for i in range(4)] == [
        CreateStatus.CREATED,
        CreateStatus.FAILED,
        CreateStatus.FAILED,
        CreateStatus.CREATED,
    ]
    assert isinstance(by_index[1].error, ContactValidationError)
    assert isinstance(by_index[2].error, ContactValidationError)
    assert "address.housenumber" in str(by_index[2].error)
    assert len(fake.contacts) == 2
