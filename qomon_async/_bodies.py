"""Qomon's request bodies without I/O: contacts checked and encoded for each write route.

Plain functions, testable without an event loop or a network: a contact (a dict, a
:class:`ContactWrite` or a read :class:`Contact`) becomes the checked dict Qomon takes, then its
JSON body; a search query becomes its body; a partial change merges into the whole contact a
``PUT`` needs. The answers coming back are :mod:`qomon_async._protocol`'s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import msgspec

from ._config import MAX_PER_PAGE
from ._models import Contact
from ._query import Query
from ._types import ContactDict, UpsertDict
from ._validation import validate_contact
from ._writes import ContactWrite, UpsertContact

#: What a contact write takes: a :class:`ContactDict` (a dict in Qomon's field names), a
#: :class:`ContactWrite`, or a read :class:`Contact` (its read-only keys are dropped).
ContactInput = ContactDict | ContactWrite | Contact
#: What an upsert takes: an :class:`UpsertDict` or an :class:`UpsertContact`.
UpsertInput = UpsertDict | UpsertContact

_encoder = msgspec.json.Encoder()


def encode(payload: Any) -> bytes:
    """JSON bytes of a request body (Structs, dicts, datetimes)."""
    return _encoder.encode(payload)


#: Keys Qomon computes; stripped before a contact is written back (as hotglue and Trellis do).
READ_ONLY_KEYS = frozenset(
    {
        "id",
        "CreatedAt",
        "UpdatedAt",
        "created_at",
        "updated_at",
        "lastchange",
        "lastchangeuserid",
        "group_id",
        "interactions",
    }
)
READ_ONLY_ADDRESS_KEYS = frozenset({"id", "latitude", "longitude", "location", "score"})


def fold(value: object) -> str:
    """A value compared loosely: text, stripped, case-folded ("" for None)."""
    return str(value).strip().casefold() if value is not None else ""


def identity_text(data: Mapping[str, Any], *, names: bool = True) -> str:
    """The person a contact dict describes, as one folded text: its mail and (with ``names``)
    its first name and surname; "" without a mail. What input de-duplication and in-doubt
    records both key on."""
    # fold() of each part, inline (once per item of a bulk run: duplicate_key takes 0.75x the
    # time it took with a call to fold() per part, timeit side by side); the parts are
    # case-folded at once, which is the same (casefold maps each character on its own, and the
    # separator to itself).
    mail = data.get("mail")
    if mail is None:
        return ""
    mail = str(mail).strip()
    if not mail or not names:
        return mail.casefold()
    first = data.get("firstname")
    surname = data.get("surname")
    first = "" if first is None else str(first).strip()
    surname = "" if surname is None else str(surname).strip()
    return f"{mail}\x1f{first}\x1f{surname}".casefold()


# Dates stay date objects until the validation writes them (a naive datetime is UTC there).
_DATES = (dt.datetime, dt.date)


def contact_to_dict(contact: ContactInput, *, strict: bool = True) -> dict[str, Any]:
    """A contact in Qomon's field names, checked, ready to send (``ContactValidationError``).

    The rules are :func:`qomon_async._validation.validate_contact`'s: with ``strict`` (the
    default) an unknown key is refused; with ``strict=False`` it is sent as given. A read
    :class:`Contact` loses its read-only keys.
    """
    data: dict[str, Any]
    if type(contact) is dict:  # the common case, first (validation copies, never mutates)
        return validate_contact(contact, kind="create", strict=strict)
    if isinstance(contact, ContactWrite):
        data = msgspec.to_builtins(contact, builtin_types=_DATES)
    elif isinstance(contact, Contact):
        data = {
            k: v
            for k, v in msgspec.to_builtins(contact, builtin_types=_DATES).items()
            if v is not None
        }
        for key in READ_ONLY_KEYS:
            data.pop(key, None)
        address = data.get("address")
        if isinstance(address, dict):
            data["address"] = {
                k: v
                for k, v in address.items()
                if k not in READ_ONLY_ADDRESS_KEYS and v is not None
            }
    elif isinstance(contact, Mapping):
        data = dict(contact)
    else:
        raise TypeError(f"a contact is a dict, a ContactWrite or a Contact, not {type(contact)!r}")
    return validate_contact(data, kind="create", strict=strict)


def upsert_to_dict(contact: UpsertInput, *, strict: bool = True) -> dict[str, Any]:
    """The ``data`` of an upsert body in Qomon's field names, checked (see
    :func:`contact_to_dict` for ``strict``)."""
    data: dict[str, Any]
    if isinstance(contact, UpsertContact):
        data = msgspec.to_builtins(contact, builtin_types=_DATES)
    elif isinstance(contact, Mapping):
        data = dict(contact)
    else:
        raise TypeError(f"an upsert is a dict or an UpsertContact, not {type(contact)!r}")
    return validate_contact(data, kind="upsert", strict=strict)


def contact_body(contact: Mapping[str, Any]) -> bytes:
    """The body of ``POST /contacts`` and ``PATCH /contacts/{id}``: the wrapper is required."""
    return _encoder.encode({"data": {"contact": contact}})


def upsert_body(contact: Mapping[str, Any]) -> bytes:
    """The body of ``POST /contacts/upsert``."""
    return encode({"kind": "contact", "data": contact})


def search_body(
    query: Query,
    *,
    page: int,
    per_page: int | None,
    sort_attr: str | None = None,
    sort_asc: bool | None = None,
    include_interactions: bool = False,
) -> bytes:
    """The body of ``POST /search`` (and ``/kpi``, where ``per_page`` may be None)."""
    search: dict[str, Any] = {"page": page, "query": query.to_wire()}
    if per_page is not None:
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be between 1 and {MAX_PER_PAGE}, not {per_page}")
        search["per_page"] = per_page
    if sort_attr is not None:
        search["sort_attr"] = sort_attr
    if sort_asc is not None:
        search["sort_asc"] = sort_asc
    if include_interactions:
        # Inside advanced_search, as the 1.1.0 example and the 2026 guide have it (the 1.1.0
        # schema puts it at the `data` level).
        search["include_interactions"] = True
    return encode({"data": {"advanced_search": search}})


def merge_for_update(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The full contact to PATCH: what was read, the changes on top, the read-only keys out.

    The address is merged key by key (a change of city keeps the street); every other key is
    replaced whole, lists included (Qomon's PATCH is a full replace: send full lists).
    """
    merged = {k: v for k, v in current.items() if k not in READ_ONLY_KEYS}
    for key, value in changes.items():
        if (
            key == "address"
            and isinstance(value, Mapping)
            and isinstance(merged.get("address"), dict)
        ):
            merged["address"] = {**merged["address"], **value}
        else:
            merged[key] = value
    address = merged.get("address")
    if isinstance(address, dict):
        merged["address"] = {k: v for k, v in address.items() if k not in READ_ONLY_ADDRESS_KEYS}
    # Qomon reads both spellings; write back one (custom_fields) so answers are not doubled.
    if "customfields" in merged:
        legacy = merged.pop("customfields") or []
        if not merged.get("custom_fields"):
            merged["custom_fields"] = legacy
    # Answers go back in the write shape (form_id, form_ref_id, data); their ids and
    # timestamps are Qomon's.
    for key in ("formdatas", "custom_fields"):
        answers = merged.get(key)
        if isinstance(answers, list):
            merged[key] = [
                {k: v for k, v in a.items() if k in _ANSWER_WRITE_KEYS and v is not None}
                if isinstance(a, dict)
                else a
                for a in answers
            ]
    return merged


_ANSWER_WRITE_KEYS = frozenset({"form_id", "form_ref_id", "data", "date", "survey_id"})
