"""A confirmed create's date, as the create path hands it to the pool's claims."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qomon_async import RetryPolicy
from qomon_async._claims import micros
from qomon_async._create import CreateProtocol
from qomon_async._models import Contact
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
    """_learn_offset returns micros() of the date, to the microsecond."""
    assert _protocol()._learn_offset(when) == micros(when)
