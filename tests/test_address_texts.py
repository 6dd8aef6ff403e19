"""Address parts sent as numbers are read as their text; a bool is never read as 1 or 0."""

from __future__ import annotations

import json

import msgspec

from qomon_async import Address


def _decode(wire: dict[str, object]) -> Address:
    return msgspec.json.decode(json.dumps(wire).encode(), type=Address)


def test_integer_parts_are_read_as_their_text() -> None:
    address = _decode({"postalcode": 69001, "housenumber": 1, "citycode": 69381, "floor": 0})
    parts = (address.postalcode, address.housenumber, address.citycode, address.floor)
    assert parts == ("69001", "1", "69381", "0")
    address = _decode({"door": 12, "pollingstation": 3, "latitude": 48, "longitude": -2})
    parts = (address.door, address.pollingstation, address.latitude, address.longitude)
    assert parts == ("12", "3", "48", "-2")


def test_a_bool_is_not_read_as_the_integer_it_equals() -> None:
    address = _decode({"housenumber": True, "floor": False, "postalcode": 1.0, "door": 2.5})
    parts = (address.housenumber, address.floor, address.postalcode, address.door)
    assert parts == ("true", "false", "1", "2.5")
