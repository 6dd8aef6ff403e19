"""The create path's inline steps give what the functions they stand for give."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qomon_async import RetryPolicy
from qomon_async._bodies import contact_body, encode_json
from qomon_async._claims import micros
from qomon_async._create import CreateOutcome, CreateProtocol
from qomon_async._models import Contact, confirmed
from qomon_async._query import Query
from qomon_async._stats import ClientStats


async def _never_request(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("no request in these tests")


async def _never_search(query: Query) -> AsyncIterator[Contact]:
    raise AssertionError("no search in these tests")
    yield  # pragma: no cover


def _protocol() -> CreateProtocol:
    return CreateProtocol(
        request=_never_request,
        search=_never_search,
        stats=ClientStats(),
        retry=RetryPolicy(),
        reconcile_margin=1.0,
    )


@given(
    st.datetimes(
        min_value=dt.datetime(1971, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from([None, dt.timezone.utc, dt.timezone(dt.timedelta(hours=-7))]),
    )
)
def test_a_confirmed_creates_date_is_claimed_by_its_exact_micros(when: dt.datetime) -> None:
    """_learn_offset's inline conversion is micros(), to the microsecond."""
    assert _protocol()._learn_offset(when) == micros(when)


def test_the_inline_body_is_contact_body() -> None:
    data = {"firstname": "Ann", "mail": "ann@example.org", "address": {"city": "Lyon"}}
    assert encode_json({"data": {"contact": data}}) == contact_body(data)


def test_an_outcome_built_without_init_is_an_outcome() -> None:
    contact = confirmed(Contact(id=5))
    built = object.__new__(CreateOutcome)
    object.__setattr__(
        built,
        "__dict__",
        {"contact": contact, "attempts": 1, "reconciled": False, "created_us": 7},
    )
    assert built == CreateOutcome(contact, 1, False, 7)
    assert repr(built) == repr(CreateOutcome(contact, 1, False, 7))
