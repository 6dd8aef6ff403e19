"""Cell converters: text (or a JSON value) in, the value Qomon expects out.

Every converter raises :class:`ConversionError` with a message for the user; the row builder
turns it into a :class:`~qomon_async._importer.RowError` naming the row and the column.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping

from .. import _validation as _rules
from ._fields import FieldKind

__all__ = [
    "ConversionError",
    "ValueMap",
    "cell_text",
    "convert_field",
    "format_form_date",
    "format_rfc3339",
    "parse_bool",
    "parse_date",
    "parse_email",
    "parse_gender",
    "parse_int",
    "parse_number",
    "split_values",
]


ConversionError = _rules.FieldError
"""A cell's value cannot be converted; ``str(error)`` says why, for the user (the validation
module's error: the client raises the same texts)."""


_TRUE = frozenset({"1", "true", "yes", "y", "oui", "o", "vrai", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "non", "faux", "f"})

_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)")


def cell_text(value: object) -> str | None:
    """The text of a cell, stripped; ``None`` when the cell is empty (not set).

    CSV cells are strings already; JSON values may be numbers, which become their text
    (``12`` -> ``"12"``). Booleans, lists and objects are not text and raise.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, bool):
        raise ConversionError("expected text, got a boolean")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if not value.is_integer() else str(int(value))
    raise ConversionError(f"expected text, got a JSON {_json_kind(value)}")


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def parse_bool(value: object) -> bool:
    """``yes/no``, ``true/false``, ``1/0`` (also ``oui/non``, ``vrai/faux``), any case, or a
    JSON boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = cell_text(value)
    if text is not None:
        folded = text.casefold()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
    raise ConversionError("expected yes/no, true/false or 1/0")


def parse_int(value: object) -> int:
    """A whole number: ``"3"``, ``" 3 "``, ``3`` (never a boolean, never ``"3.5"``)."""
    if isinstance(value, bool):
        raise ConversionError("expected a whole number, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = cell_text(value)
    if text is None or not _INT.fullmatch(text):
        raise ConversionError("expected a whole number")
    return int(text)


def parse_number(text: str) -> str:
    """A number written as text, normalised for a numeric form: a decimal comma becomes a
    point (``"3,5"`` -> ``"3.5"``)."""
    if not _NUMBER.fullmatch(text):
        raise ConversionError("expected a number")
    return text.replace(",", ".")


def parse_email(text: str) -> str:
    """Check an email address by the one mail rule (:func:`qomon_async._validation.check_mail`)
    and return it stripped."""
    return _rules.check_mail(text)


def parse_gender(text: str) -> str:
    """``F``, ``M`` or ``O`` (any case), returned upper case."""
    return _rules.check_gender(text)


def parse_date(text: str) -> dt.datetime:
    """Parse a date or a date-time into an aware UTC datetime (the rule of
    :func:`qomon_async._validation.parse_date`, shared with the client)."""
    return _rules.parse_date(text)


def format_rfc3339(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: ``1980-05-12T00:00:00Z``; microseconds only when set."""
    return _rules.format_rfc3339(value)


def format_form_date(value: dt.datetime) -> str:
    """The answer format of date forms, ``YYYY-MM-DDTHH:MM:SS.sssZ`` (Qomon's write format)."""
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond // 1000:03d}Z"


def split_values(value: object, separator: str = ";") -> list[str]:
    """Split a multi-valued cell: ``"a; b;;c"`` -> ``["a", "b", "c"]``; a JSON array of
    strings (or of ``{"name": ...}`` objects, the tags shape) is taken as is. Duplicates are
    dropped, first one kept."""
    parts: list[str] = []
    if isinstance(value, list):
        for item in value:
            # Tags may come as JSON objects, the write shape: [{"name": "x"}].
            text = cell_text(item["name"] if isinstance(item, dict) and "name" in item else item)
            if text is not None:
                parts.append(text)
    else:
        text = cell_text(value)
        if text is not None:
            parts = [p.strip() for p in text.split(separator)]
    return list(dict.fromkeys(p for p in parts if p))


class ValueMap:
    """A user's replacement table for cell texts (``{"oui": "consent_email"}``).

    Looked up exactly first, then ignoring case and surrounding spaces, so that ``"Oui"`` and
    ``"OUI "`` find ``"oui"``. Replacing by ``""`` means "leave the field unset".
    """

    __slots__ = ("_exact", "_folded")

    def __init__(self, table: Mapping[str, str]) -> None:
        self._exact = dict(table)
        self._folded = {k.strip().casefold(): v for k, v in table.items()}

    def get(self, text: str) -> str | None:
        """The replacement for ``text``, or ``None`` if the table does not name it."""
        found = self._exact.get(text)
        if found is None:
            found = self._folded.get(text.strip().casefold())
        return found

    def __bool__(self) -> bool:
        return bool(self._exact)

    def __iter__(self) -> Iterator[str]:
        return iter(self._exact)

    def __repr__(self) -> str:
        return f"ValueMap({self._exact!r})"


def _mapped(value: object, value_map: ValueMap | None) -> object:
    if value_map and isinstance(value, str):
        replacement = value_map.get(value)
        if replacement is not None:
            return replacement
    return value


def convert_field(kind: FieldKind, value: object, value_map: ValueMap | None = None) -> object:
    """Convert one cell for a contact field of ``kind``; ``None`` means "not set".

    ``value_map`` is applied to the text first (to every part, for tags). Returns a ``str``,
    an ``int``, a ``bool``, or for tags a list of ``{"name": ...}`` objects.
    """
    if kind is FieldKind.TAGS:
        parts = [_mapped(part, value_map) for part in split_values(value)]
        names = split_values(parts)
        return [{"name": name} for name in names] or None
    value = _mapped(value, value_map)
    if kind is FieldKind.CODE:
        # Phones and postal codes are text: a JSON number has lost its leading zero.
        return _rules.check_text(value) or None
    if kind is FieldKind.BOOL:
        return None if _is_empty(value) else parse_bool(value)
    if kind is FieldKind.INT:
        return None if _is_empty(value) else parse_int(value)
    text = cell_text(value)
    if text is None:
        return None
    if kind is FieldKind.EMAIL:
        return parse_email(text)
    if kind is FieldKind.GENDER:
        return parse_gender(text)
    if kind is FieldKind.DATE:
        return format_rfc3339(parse_date(text))
    return text


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
