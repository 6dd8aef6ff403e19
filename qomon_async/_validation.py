"""The one set of rules a contact is checked against before it is sent.

Used by every front door: :meth:`QomonClient.create_contact` and its siblings, the bulk pool
(``create_contacts``/``upsert_contacts``) and ``qomon-async import``. A value refused here is
refused everywhere, with the same message.

The rules:

* **Known keys** (strict writes, the default): every top-level and address key must be a
  field this library knows; an unknown one raises :class:`ContactValidationError` naming the
  key and the closest known field (``did you mean `firstname`?``). With ``strict=False`` an
  unknown key is sent as given (for fields Qomon adds later) and logged once per key.
* **Mail**: ``local@domain``, the local part an RFC 5321 dot-atom (letters, digits and
  ``!#$%&'*+-/=?^_`{|}~``, dots only between characters; non-ASCII letters allowed), the domain
  at least two dot-separated labels of letters, digits and hyphens, no label empty, none
  starting or ending with a hyphen, the last one not all digits; at most 64 characters before
  the ``@`` and 254 in all. Surrounding spaces are stripped.
* **Dates** (``birthdate``): a ``datetime``, a ``date``, or text as ``YYYY-MM-DD``,
  ``DD/MM/YYYY`` or RFC 3339; written as RFC 3339 in UTC (a date alone is midnight UTC); a
  date-time without a zone is refused unless at midnight; a birthdate must be between
  1900-01-01 and today.
* **Phones and postal codes** (``phone``, ``mobile``, ``address.postalcode``,
  ``address.citycode``): text, never a number (a number loses its leading zero: ``01000`` would
  become ``1000``). Other address parts given as whole numbers (``housenumber: 12``) are sent as
  text.
* **Gender**: ``F``, ``M`` or ``O``, any case (written upper case).
* **Tags**: ``"a;b"``, ``["a", "b"]`` or ``[{"name": "a"}]``, all written ``[{"name": "a"},
  {"name": "b"}]`` (empty names dropped, duplicates once).
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

from ._exceptions import ContactValidationError
from ._models import Address, Contact
from ._writes import AddressWrite, ContactWrite, UpsertContact

__all__ = [
    "ADDRESS_KEYS",
    "CONTACT_KEYS",
    "UPSERT_KEYS",
    "FieldError",
    "check_gender",
    "check_mail",
    "format_rfc3339",
    "normalise_birthdate",
    "normalise_tags",
    "parse_date",
    "suggest",
    "validate_contact",
]

logger = logging.getLogger("qomon_async")

WriteKind = Literal["create", "upsert"]


class FieldError(ValueError):
    """One value breaks a rule; ``str(error)`` says which, for a person (the same text on every
    front door). The importer adds the row and column; the client adds the field."""


# -- known keys -------------------------------------------------------------------------------


def _wire_names(struct: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(struct)}


# Read keys are known too: a contact read from Qomon may be written back (replace_contact with a
# dict from a read); the read-only ones are accepted and stripped where they would be refused.
CONTACT_KEYS: frozenset[str] = frozenset(
    _wire_names(ContactWrite)
    | _wire_names(Contact)
    | {"birth_city", "birth_country", "birth_dept", "action_ids", "customfields"}
)
"""Every top-level key a contact write may hold (``POST /contacts``, ``PATCH``)."""

UPSERT_KEYS: frozenset[str] = frozenset(
    _wire_names(UpsertContact) | {"birth_city", "birth_country", "birth_dept"}
)
"""Every top-level key the ``data`` of an upsert may hold."""

ADDRESS_KEYS: frozenset[str] = frozenset(_wire_names(AddressWrite) | _wire_names(Address))
"""Every key an ``address`` may hold."""

# Where the suggestion is looked for: the names a person writes (not the internal spellings).
_SUGGESTED_CONTACT = sorted(_wire_names(ContactWrite) | {"id", "nationbuilderid"})
_SUGGESTED_UPSERT = sorted(_wire_names(UpsertContact))
_SUGGESTED_ADDRESS = sorted(_wire_names(AddressWrite))


def suggest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``name`` (a typo's likely intent), or ``None``."""
    choices = list(known)
    folded = {c.casefold(): c for c in choices}
    if name.casefold() in folded:
        return folded[name.casefold()]
    found = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=0.6)
    return folded[found[0]] if found else None


def unknown_key_message(key: str, known: Iterable[str], *, where: str = "contact field") -> str:
    """``unknown contact field 'firstnme': did you mean `firstname`?`` (the one text)."""
    close = suggest(key, known)
    hint = f": did you mean `{close}`?" if close else ""
    return f"unknown {where} {key!r}{hint}"


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(path: str) -> None:
    with _warned_lock:
        if path in _warned:
            return
        _warned.add(path)
    logger.warning(
        "sending unknown contact field %r as given (strict=False): Qomon may ignore it", path
    )


# -- mail -------------------------------------------------------------------------------------

_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]"
_LOCAL = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_LABEL = re.compile(r"[^\W_](?:[\w-]*[^\W_])?")
_MAIL_MESSAGE = "not an email address"
# The common case in one match: at most 254 characters, at most 64 before the "@" (the two
# lookaheads), ASCII, dot-atom local part, labels without an edge hyphen, a last label not all
# digits. Anything else (non-ASCII, an error) takes the step-by-step path. No possessive
# repeats or atomic groups: Python reads them from 3.11 only, and the package supports 3.10
# (a part never holds the "." or "@" that ends it, so there is little to backtrack anyway).
_ASCII_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
_ASCII_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST_MAIL = re.compile(
    r"(?=.{1,254}\Z)(?=[^@]{1,64}@)"
    rf"{_ASCII_ATEXT}+(?:\.{_ASCII_ATEXT}+)*@(?:{_ASCII_LABEL}\.)+(?![0-9]+$){_ASCII_LABEL}"
)


def check_mail(value: object) -> str:
    """The mail, stripped, if it follows the rule above; else :class:`FieldError`."""
    if not isinstance(value, str):
        raise FieldError(f"{_MAIL_MESSAGE} (expected text, got {_kind(value)})")
    text = value.strip()
    if _FAST_MAIL.fullmatch(text) is not None:
        return text
    if any(c.isspace() for c in text):
        raise FieldError(_MAIL_MESSAGE)
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise FieldError(_MAIL_MESSAGE)
    if len(local) > 64 or len(text) > 254 or not _LOCAL.fullmatch(local):
        raise FieldError(_MAIL_MESSAGE)
    labels = domain.split(".")
    if len(labels) < 2 or any(
        not _LABEL.fullmatch(label) or "_" in label or len(label) > 63 for label in labels
    ):
        raise FieldError(_MAIL_MESSAGE)
    if labels[-1].isdigit():
        raise FieldError(_MAIL_MESSAGE)
    return text


# -- dates ------------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
# French exports: 05/03/1980 is 5 March. One-digit day or month is tolerated (Excel writes it).
_FRENCH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2})?"
)
OLDEST_BIRTHDATE = dt.date(1900, 1, 1)


def parse_date(text: str) -> dt.datetime:
    """Parse a date or a date-time into an aware UTC datetime.

    Accepted: ``YYYY-MM-DD``; ``DD/MM/YYYY`` (French order, one-digit day or month allowed);
    RFC 3339 date-times (``1980-05-12T08:30:00Z``, ``...+02:00``, 0 to 9 fractional digits,
    ``T`` or a space). A date alone is midnight UTC of that day. A date-time without a time
    zone is refused, unless its time is midnight (spreadsheets write dates that way), because
    guessing the zone would shift the day.

    Raises:
        FieldError: Not one of these forms, or not a real day.
    """
    text = text.strip()
    try:
        if m := _ISO_DATE.fullmatch(text):
            return dt.datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=dt.timezone.utc)
        if m := _FRENCH_DATE.fullmatch(text):
            return dt.datetime(int(m[3]), int(m[2]), int(m[1]), tzinfo=dt.timezone.utc)
        if m := _DATETIME.fullmatch(text):
            return _datetime_match(m)
    except (ValueError, OverflowError) as exc:  # 31/02/1980, 2020-13-01
        if isinstance(exc, FieldError):
            raise
        raise FieldError(f"not a valid date ({exc})") from None
    raise FieldError("expected a date as YYYY-MM-DD, DD/MM/YYYY or RFC 3339")


def _datetime_match(m: re.Match[str]) -> dt.datetime:
    fraction = (m[7] or "")[:6].ljust(6, "0")
    naive = dt.datetime(
        int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6] or 0), int(fraction)
    )
    zone = m[8]
    if zone is None:
        if naive.time() != dt.time(0):
            raise FieldError("a date-time needs a time zone (Z or +01:00)")
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


def normalise_birthdate(value: object, *, today: dt.date | None = None) -> str:
    """A birthdate as Qomon writes it (RFC 3339, UTC), between 1900-01-01 and ``today``.

    Raises:
        FieldError: Not a date, or out of that range.
    """
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
    elif isinstance(value, str):
        when = parse_date(value)
    else:
        raise FieldError(f"expected a date, got {_kind(value)}")
    day = when.astimezone(dt.timezone.utc).date()
    limit = today or dt.datetime.now(dt.timezone.utc).date()
    if not OLDEST_BIRTHDATE <= day <= limit:
        raise FieldError(f"a birthdate must be between {OLDEST_BIRTHDATE.isoformat()} and today")
    return format_rfc3339(when)


# -- gender -----------------------------------------------------------------------------------

GENDERS = ("F", "M", "O")


def check_gender(value: object) -> str:
    """``F``, ``M`` or ``O`` (any case, surrounding spaces ignored), returned upper case."""
    if isinstance(value, str) and value.strip().upper() in GENDERS:
        return value.strip().upper()
    raise FieldError("gender must be F, M or O")


# -- text fields that look like numbers --------------------------------------------------------

#: Fields that must be text, never numbers (a leading zero would be lost).
TEXT_ONLY_FIELDS = frozenset({"phone", "mobile"})
TEXT_ONLY_ADDRESS_FIELDS = frozenset({"postalcode", "citycode", "postal_code"})
#: Address parts where a whole number is taken as its text (``12`` -> ``"12"``).
NUMBER_AS_TEXT_ADDRESS_FIELDS = frozenset(
    {"housenumber", "house_number", "floor", "door", "pollingstation"}
)


def check_text(value: object) -> str | None:
    """A phone or postal code: text, stripped (``None`` stays ``None``); never a number."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise FieldError(
            "write it as text, not as a number (a number loses its leading zero: 01000)"
        )
    raise FieldError(f"expected text, got {_kind(value)}")


# -- tags -------------------------------------------------------------------------------------


def normalise_tags(value: object, separator: str = ";") -> list[dict[str, str]]:
    """Tags as Qomon writes them: ``[{"name": ...}]``.

    Takes ``"a;b"`` (split on ``separator``), a list of names, of ``{"name": ...}`` objects or
    of ``TagWrite``; empty names are dropped, a repeated name is kept once (the first).

    Raises:
        FieldError: Neither text nor a list of names.
    """
    names: list[str] = []
    if isinstance(value, str):
        names = [part.strip() for part in value.split(separator)]
    elif isinstance(value, list | tuple):
        for item in value:
            name = item.get("name") if isinstance(item, Mapping) else getattr(item, "name", item)
            if not isinstance(name, str):
                raise FieldError(f"a tag is a name (text), not {_kind(name)}")
            names.append(name.strip())
    else:
        raise FieldError(f"tags are text (a;b) or a list of names, not {_kind(value)}")
    return [{"name": name} for name in dict.fromkeys(n for n in names if n)]


# -- the whole contact ------------------------------------------------------------------------


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _fail(location: str, message: str, value: object = None) -> ContactValidationError:
    shown = f" (value {value!r})" if value is not None else ""
    return ContactValidationError(f"{location}: {message}{shown}", location=location, value=value)


def validate_contact(
    data: Mapping[str, Any],
    *,
    kind: WriteKind = "create",
    strict: bool = True,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """Check and normalise a contact dict in Qomon's field names; return a new dict to send.

    Args:
        data: The contact (``POST /contacts``, ``PATCH``) or the ``data`` of an upsert.
        kind: ``"create"`` (create and PATCH) or ``"upsert"``: the known keys and types.
        strict: Refuse unknown keys (the default); ``False`` sends them as given, with a
            warning logged once per key.
        today: The latest birthdate allowed (by default today, UTC).

    Raises:
        ContactValidationError: The first problem found, naming the field (``location``).
    """
    if type(data) is dict:
        fast = _plain_contact(data)
        if fast is not None:
            return fast
    return _validate_full(data, kind=kind, strict=strict, today=today)


def _validate_full(
    data: Mapping[str, Any], *, kind: WriteKind, strict: bool, today: dt.date | None
) -> dict[str, Any]:
    """:func:`validate_contact` step by step: every shape, and every error."""
    if not data:
        raise ContactValidationError("a contact needs at least one field", location="")
    if set(data) == {"data"}:
        raise ContactValidationError(
            "pass the contact itself, not a request body wrapped in 'data'", location="data"
        )
    known = CONTACT_KEYS if kind == "create" else UPSERT_KEYS
    suggested = _SUGGESTED_CONTACT if kind == "create" else _SUGGESTED_UPSERT
    out: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise _fail(str(key), "a field name is text")
        if key not in known:
            if strict:
                raise ContactValidationError(
                    unknown_key_message(key, suggested)
                    + " (nothing was sent; strict=False sends fields this library does not know)",
                    location=key,
                    value=value,
                )
            _warn_once(key)
            unknown[key] = value
            continue
        out[key] = value
    _normalise_fields(out, kind=kind, strict=strict, today=today)
    _check_types(out, ContactWrite if kind == "create" else UpsertContact)
    out.update(unknown)
    return out


# -- the common case in one pass ----------------------------------------------------------------

#: Top-level fields that are text in both write models, taken as they are when given as text.
_PLAIN_TEXT_FIELDS = frozenset(
    {
        "firstname",
        "surname",
        "married_name",
        "birthdept",
        "birthcity",
        "birthcountry",
        "nationality",
    }
)
#: Address fields of the write model (all text); the read spellings take the full path.
_PLAIN_ADDRESS_FIELDS = frozenset(f.encode_name for f in msgspec.structs.fields(AddressWrite))
#: Whole numbers beyond this take the step-by-step path (which refuses those too long to write).
_HUGE = 10**18


# Written for speed: this runs once per item on the input side of every create (the bulk
# pool's, and create_contact's). One loop over the keys, the text fields first (the most
# common), the address and the tags inline, a set to keep the first of each tag. Measured
# side by side on the benchmark's contact (timeit, Python 3.11): 0.72x the time of the
# earlier shape (two helper calls, check_mail and check_gender called, a list of tag names
# then a dict of them then a comprehension), 375 bytecodes instead of 495. Shapes that move
# the checks into C (map over the values' types, key-set comparisons, map over the tags) cut
# the bytecodes to 187 but took 1.2x the time: for a handful of values, each C call costs
# more than the specialised bytecodes it saves.
def _plain_contact(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """:func:`validate_contact`'s answer for the common shape; ``None`` when any field falls
    outside it (then the full path decides, and gives any error).

    The common shape: text names, a mail the one-match rule accepts (ASCII; others go the full
    way), a gender among F/M/O, text phones, an ``address`` dict of write-model text parts (a
    whole-number house number, floor, door or polling station taken as its text), tags as a
    list of names or ``{"name": ...}`` dicts. Every value it returns is the one the full path
    returns (a property test holds them equal).
    """
    out = dict(data)  # (called with a dict: its copy, in the same order)
    for key, value in data.items():
        if type(value) is str:
            if key in _PLAIN_TEXT_FIELDS:
                continue
            if key == "mail":
                checked = value.strip()
                if _FAST_MAIL.fullmatch(checked) is None:
                    return None
            elif key in TEXT_ONLY_FIELDS:
                checked = value.strip()
            elif key == "gender":
                checked = value.strip().upper()
                if checked not in GENDERS:
                    return None
            else:
                return None
            out[key] = checked
        elif key == "address" and type(value) is dict:
            if not _PLAIN_ADDRESS_FIELDS.issuperset(value):
                return None
            address = out[key] = value.copy()
            for part, text in value.items():
                if type(text) is not str:
                    if (
                        type(text) is not int
                        or part not in NUMBER_AS_TEXT_ADDRESS_FIELDS
                        or not -_HUGE < text < _HUGE
                    ):
                        return None
                    address[part] = str(text)
            # The write model's text-only parts (the other one, postal_code, is not plain).
            if "postalcode" in address:
                address["postalcode"] = address["postalcode"].strip()
            if "citycode" in address:
                address["citycode"] = address["citycode"].strip()
        elif key == "tags" and type(value) is list:
            # Each name text; the first of each kept, in order; empty names dropped.
            tags = out[key] = []
            seen = set()
            for tag in value:
                name = tag.get("name") if type(tag) is dict else tag
                if type(name) is not str:
                    return None
                name = name.strip()
                if name and name not in seen:
                    seen.add(name)
                    tags.append({"name": name})
        else:
            return None
    return out or None


def _normalise_fields(
    out: dict[str, Any], *, kind: WriteKind, strict: bool, today: dt.date | None
) -> None:
    if out.get("mail") is not None:
        try:
            out["mail"] = check_mail(out["mail"])
        except FieldError as exc:
            raise _fail("mail", str(exc), out["mail"]) from None
    if out.get("birthdate") is not None:
        try:
            out["birthdate"] = normalise_birthdate(out["birthdate"], today=today)
        except FieldError as exc:
            raise _fail("birthdate", str(exc), out["birthdate"]) from None
    if out.get("gender") is not None:
        try:
            out["gender"] = check_gender(out["gender"])
        except FieldError as exc:
            raise _fail("gender", str(exc), out["gender"]) from None
    for key in TEXT_ONLY_FIELDS & out.keys():
        try:
            out[key] = check_text(out[key])
        except FieldError as exc:
            raise _fail(key, str(exc), out[key]) from None
    if "tags" in out and out["tags"] is not None:
        try:
            out["tags"] = normalise_tags(out["tags"])
        except FieldError as exc:
            raise _fail("tags", str(exc), out["tags"]) from None
    address = out.get("address")
    if isinstance(address, msgspec.Struct):
        address = msgspec.to_builtins(address)
    if isinstance(address, Mapping):
        out["address"] = _address(address, strict=strict)
    elif address is not None:
        raise _fail("address", f"an address is an object, not {_kind(address)}")


def _address(address: Mapping[str, Any], *, strict: bool) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for key, value in address.items():
        location = f"address.{key}"
        if key not in ADDRESS_KEYS:
            if strict:
                raise ContactValidationError(
                    unknown_key_message(key, _SUGGESTED_ADDRESS, where="address field")
                    + " (nothing was sent; strict=False sends fields this library does not know)",
                    location=location,
                    value=value,
                )
            _warn_once(location)
            checked[key] = value
        elif key in TEXT_ONLY_ADDRESS_FIELDS:
            try:
                checked[key] = check_text(value)
            except FieldError as exc:
                raise _fail(location, str(exc), value) from None
        elif key in NUMBER_AS_TEXT_ADDRESS_FIELDS and type(value) is int:
            try:
                checked[key] = str(value)
            except ValueError:  # beyond the interpreter's limit on digits: not an address part
                raise _fail(location, "a number far too long for an address part") from None
        else:
            checked[key] = value
    return checked


def _check_types(data: dict[str, Any], model: type[msgspec.Struct]) -> None:
    """Type-check the known fields (msgspec), naming the field that is wrong."""
    typed = {k: v for k, v in data.items() if k in model.__struct_encode_fields__}
    address = typed.get("address")
    if isinstance(address, dict):
        typed["address"] = {k: v for k, v in address.items() if k in _ADDRESS_WRITE}
    try:
        msgspec.convert(typed, model, str_keys=True)
    except msgspec.ValidationError as exc:
        # msgspec says "... - at `$.address.postalcode`": keep the path, drop the "$."
        text = str(exc)
        location = ""
        if " - at `$." in text:
            text, _, where = text.partition(" - at `$.")
            location = where.rstrip("`")
        raise ContactValidationError(f"{location or '(root)'}: {text}", location=location) from None


_ADDRESS_WRITE = frozenset(_wire_names(AddressWrite))
