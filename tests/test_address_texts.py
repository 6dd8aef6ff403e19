"""Address parts sent as numbers are read as their text; a bool is never read as 1 or 0."""

from __future__ import annotations

import json

import msgspec
import pytest

from qomon_async import Address, _models


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


def test_the_kept_texts_of_numbers_are_bounded_and_never_wrong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The texts of numbers met in address parts are kept (they repeat); past the bound, the
    # others are still read as their text, only not kept.
    monkeypatch.setattr(_models, "_NUMBER_TEXTS_MAX", 3)
    monkeypatch.setattr(_models, "_NUMBER_TEXT", _models._NumberTexts())
    codes = [75001, 75002, 75003, 75004, 75005, 75001, -7, 0]
    got = [_decode({"postalcode": code, "citycode": code}) for code in codes]
    assert [(a.postalcode, a.citycode) for a in got] == [(str(c), str(c)) for c in codes]
    assert dict(_models._NUMBER_TEXT) == {75001: "75001", 75002: "75002", 75003: "75003"}
    # A bool is never looked up as the integer it equals (True == 1).
    assert _decode({"housenumber": 1}).housenumber == "1"
    assert _decode({"housenumber": True}).housenumber == "true"
