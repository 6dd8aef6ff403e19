"""The memo of integer texts behind Address: right texts, bounded, never confused by a bool."""

from __future__ import annotations

import json

import msgspec

from qomon_async import Address, _models


def _decode(wire: dict[str, object]) -> Address:
    return msgspec.json.decode(json.dumps(wire).encode(), type=Address)


def test_an_integer_seen_again_gives_the_same_text() -> None:
    first = _decode({"postalcode": 69001, "housenumber": 1, "citycode": 69381, "floor": 0})
    again = _decode({"postalcode": 69001, "housenumber": 1, "citycode": 69381, "floor": 0})
    for address in (first, again):
        parts = (address.postalcode, address.housenumber, address.citycode, address.floor)
        assert parts == ("69001", "1", "69381", "0")
    assert again.postalcode is first.postalcode  # one string shared, not one per contact


def test_a_bool_is_not_read_as_the_integer_it_equals() -> None:
    _decode({"housenumber": 1, "floor": 0})  # 1 and 0 remembered (True == 1, False == 0)
    address = _decode({"housenumber": True, "floor": False, "postalcode": 1.0})
    assert (address.housenumber, address.floor, address.postalcode) == ("true", "false", "1")


def test_the_memo_is_bounded_and_later_integers_are_still_converted() -> None:
    start = 10**9  # not met by the other tests
    limit = _models._INT_TEXTS_MAX
    for n in range(start, start + limit + 500):
        assert _decode({"postalcode": n}).postalcode == str(n)
    assert len(_models._INT_TEXTS) <= limit
    assert Address(floor=start + limit + 1000).floor == str(start + limit + 1000)  # type: ignore[arg-type]
