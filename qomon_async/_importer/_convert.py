"""Cell converters: text (or a JSON value) in, the value Qomon expects out.

Every converter raises :class:`ConversionError` with a message for the user; the row builder
turns it into a :class:`~qomon_async._importer.RowError` naming the row and the column.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping

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


class ConversionError(ValueError):
    """A cell's value cannot be converted; ``str(error)`` says why, for the user."""


_TRUE = frozenset({"1", "true", "yes", "y", "oui", "o", "vrai", "t"})
_FALSE = frozenset({"0", "false", "no", "n", "non", "faux", "f"})

_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
# French exports: 05/03/1980 is 5 March. One-digit day or month is tolerated (Excel writes it).
_FRENCH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2})?"
)
# Deliberately simple: catches what a typo or a shifted column produces (no @, two @, no
# domain, spaces), without rejecting the odd-but-valid addresses a full RFC 5322 check allows.
_EMAIL = re.compile(
    r"[^@\s\"(),:;<>\[\]\\]{1,64}@"
    r"(?=.{4,253}$)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}",
)
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
    """Check the shape of an email address (``name@domain.tld``) and return it unchanged."""
    if not _EMAIL.fullmatch(text):
        raise ConversionError("not an email address")
    return text


def parse_gender(text: str) -> str:
    """``F``, ``M`` or ``O`` (any case), returned upper case."""
    upper = text.upper()
    if upper not in ("F", "M", "O"):
        raise ConversionError("gender must be F, M or O")
    return upper


def parse_date(text: str) -> dt.datetime:
    """Parse a date or a date-time into an aware UTC datetime.

    Accepted: ``YYYY-MM-DD``; ``DD/MM/YYYY`` (French order, one-digit day or month allowed);
    RFC 3339 date-times (``1980-05-12T08:30:00Z``, ``...+02:00``, 0 to 9 fractional digits,
    ``T`` or a space). A date alone is midnight UTC of that day. A date-time without a time
    zone is refused, unless its time is midnight (spreadsheets write dates that way), because
    guessing the zone would shift the day.
    """
    text = text.strip()
    try:
        if m := _ISO_DATE.fullmatch(text):
            return dt.datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=dt.timezone.utc)
        if m := _FRENCH_DATE.fullmatch(text):
            return dt.datetime(int(m[3]), int(m[2]), int(m[1]), tzinfo=dt.timezone.utc)
        if m := _DATETIME.fullmatch(text):
            return _parse_datetime_match(m)
    except ValueError as exc:  # a day or month out of range: 31/02/1980, 2020-13-01
        raise ConversionError(f"not a valid date ({exc})") from None
    raise ConversionError("expected a date as YYYY-MM-DD, DD/MM/YYYY or RFC 3339")


def _parse_datetime_match(m: re.Match[str]) -> dt.datetime:
    fraction = (m[7] or "")[:6].ljust(6, "0")
    naive = dt.datetime(
        int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0), int(fraction)
    )
    zone = m[8]
    if zone is None:
        if naive.time() != dt.time(0):
            raise ConversionError("a date-time needs a time zone (Z or +01:00)")
        return naive.replace(tzinfo=dt.timezone.utc)
    if zone in ("Z", "z"):
        return naive.replace(tzinfo=dt.timezone.utc)
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return naive.replace(tzinfo=dt.timezone(sign * offset)).astimezone(dt.timezone.utc)


def format_rfc3339(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: ``1980-05-12T00:00:00Z``; microseconds only when set."""
    value = value.astimezone(dt.timezone.utc)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_form_date(value: dt.datetime) -> str:
    """The answer format of date forms, ``YYYY-MM-DDTHH:MM:SS.sssZ`` (qomon-api.md 7.1.3)."""
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
