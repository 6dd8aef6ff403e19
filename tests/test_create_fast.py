"""What a confirmed create's date teaches the create protocol: Qomon's clock against ours."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qomon_async import RetryPolicy
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
    ahead=st.floats(min_value=-3600.0, max_value=3600.0),
    zone=st.sampled_from([None, dt.timezone.utc, dt.timezone(dt.timedelta(hours=-7))]),
)
def test_the_offset_learned_is_the_dates_distance_from_this_clock(
    ahead: float, zone: dt.tzinfo | None
) -> None:
    """A date ``ahead`` seconds from now (naive: UTC) gives an offset of ``ahead`` seconds,
    within the time the call took."""
    now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=ahead)
    when = now.replace(tzinfo=None) if zone is None else now.astimezone(zone)
    protocol = _protocol()
    before = time.time()
    protocol._learn_offset(when)
    after = time.time()
    assert protocol._offset is not None
    assert now.timestamp() - after <= protocol._offset <= now.timestamp() - before


def test_a_naive_date_is_utc_whatever_the_local_zone() -> None:
    """Not the machine's local time (``datetime.timestamp`` of a naive date would be)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    try:
        protocol = _protocol()
        protocol._learn_offset(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
        assert protocol._offset is not None and abs(protocol._offset) < 60
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_a_date_a_day_away_is_not_learned() -> None:
    """A hostile or broken CreatedAt: the margin covers the skew, nothing is learned."""
    protocol = _protocol()
    protocol._learn_offset(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2))
    assert protocol._offset is None
