"""Property tests: every decoder, fed arbitrary bytes or arbitrary JSON shaped like Qomon's
answers, returns or raises only the library's documented exceptions.

The default profile is short (the fast suite); ``HYPOTHESIS_PROFILE=fuzz`` (``nox -s fuzz``)
runs many more examples.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qomon_async import APIStatusError, ResponseDecodeError
from qomon_async import _protocol as p

DECODERS: dict[str, Callable[[int, bytes], object]] = {
    "contact": p.decode_contact,
    "contact_dict": p.decode_contact_dict,
    "page": p.decode_contacts_page,
    "total": p.decode_total,
    "forms": p.decode_forms,
    "form": p.decode_form,
    "actions": p.decode_actions,
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(
        ["2022-10-13T15:50:34.643724Z", "2022-10-13T15:50:34", "2022-10-13", "", "75000", "x"]
    )
)
any_json = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
CONTACT_KEYS = [
    "id", "firstname", "mail", "CreatedAt", "created_at", "birthdate", "lastchange", "address",
    "tags", "notes", "formdatas", "customfields", "custom_fields", "actions_ids", "action_ids",
    "birth_city", "external_id", "group_id", "interactions",
]  # fmt: skip
ADDRESS_KEYS = ["id", "postalcode", "postal_code", "house_number", "floor", "latitude", "score"]
value = scalars | st.lists(scalars, max_size=3) | any_json
address = st.dictionaries(st.sampled_from(ADDRESS_KEYS), value, max_size=5)
contact = st.dictionaries(
    st.sampled_from(CONTACT_KEYS), value | address | st.lists(address, max_size=2), max_size=8
)
form = st.dictionaries(
    st.sampled_from(["id", "label", "activate", "group_id", "refvalues", "CreatedAt"]),
    value | st.lists(st.dictionaries(st.sampled_from(["id", "value", "label"]), value)),
    max_size=5,
)
shaped = st.one_of(
    st.fixed_dictionaries({"data": st.fixed_dictionaries({"contact": contact})}),
    st.fixed_dictionaries(
        {"data": st.fixed_dictionaries({"contacts": st.lists(contact, max_size=3)})}
    ),
    st.fixed_dictionaries({"status": value, "data": contact}),
    st.fixed_dictionaries({"contact": contact}),
    contact,
    st.fixed_dictionaries({"data": st.fixed_dictionaries({"total": value})}),
    st.fixed_dictionaries(
        {"data": st.fixed_dictionaries({"forms": st.lists(form, max_size=2), "form": form})}
    ),
    st.fixed_dictionaries(
        {"data": st.fixed_dictionaries({"ActionsAggreg": st.lists(any_json, max_size=2)})}
    ),
    any_json,
)


def only_documented(body: bytes) -> None:
    for name, decode in DECODERS.items():
        try:
            decode(200, body)
        except ResponseDecodeError:
            pass
        except Exception as exc:  # pragma: no cover - the failure being looked for
            raise AssertionError(f"{name} raised {type(exc).__name__}: {exc}") from exc
    error = p.status_error(500, body, method="GET", path="/x")
    assert isinstance(error, APIStatusError)


@given(st.binary(max_size=200))
def test_arbitrary_bytes(body: bytes) -> None:
    only_documented(body)


@given(shaped)
def test_arbitrary_json_shaped_like_answers(document: Any) -> None:
    only_documented(json.dumps(document).encode())


@given(shaped, st.integers(min_value=0, max_value=400))
def test_truncated_json(document: Any, cut: int) -> None:
    only_documented(json.dumps(document).encode()[:cut])


def test_deep_nesting() -> None:
    for body in (b"[" * 200_000, b'{"data":' * 100_000, b'{"data":{"contacts":[' + b"[" * 200_000):
        only_documented(body)
