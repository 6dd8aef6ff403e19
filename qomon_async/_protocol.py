"""Qomon's protocol without I/O: request bodies in, ``(status, headers, body)`` out.

Everything here is a plain function, testable without an event loop or a network: encoding the
bodies of each route, decoding each answer into models, and turning an error status into the
right exception. The one module that performs I/O is :mod:`qomon_async._http`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from ._config import MAX_PER_PAGE
from ._exceptions import (
    STATUS_ERRORS,
    APIStatusError,
    RateLimitError,
    ResponseDecodeError,
    ServerError,
)
from ._models import (
    ActionSummary,
    ConfirmedContact,
    Contact,
    ContactWrite,
    Form,
    Problem,
    UpsertContact,
    confirmed,
    dec_hook,
)
from ._query import Query
from ._types import ContactDict, UpsertDict
from ._validation import validate_contact

#: What a contact write takes: a :class:`ContactDict` (a dict in Qomon's field names), a
#: :class:`ContactWrite`, or a read :class:`Contact` (its read-only keys are dropped).
ContactInput = ContactDict | ContactWrite | Contact
#: What an upsert takes: an :class:`UpsertDict` or an :class:`UpsertContact`.
UpsertInput = UpsertDict | UpsertContact

T = TypeVar("T")
logger = logging.getLogger("qomon_async")

# --------------------------------------------------------------------------------------------
# Envelopes. `status` is optional and `data` may hold the object itself (§3.1, §15): decode the
# common shape in one pass, fall back through msgspec.Raw for the others.
# --------------------------------------------------------------------------------------------


class _Envelope(msgspec.Struct):
    status: str | None = None
    # msgspec.Raw cannot be in a union: an empty Raw means "absent" (and b"null" is null).
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    contact: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    id: int | None = None


def _present(raw: msgspec.Raw) -> bool:
    return len(raw) > 0 and bytes(raw).strip() != b"null"


class _ContactBox(msgspec.Struct):
    contact: Contact | None = None
    id: int | None = None


class _ContactsBox(msgspec.Struct):
    contacts: list[Contact] | None = None


class _ContactsEnvelope(msgspec.Struct):
    status: str | None = None
    data: _ContactsBox | None = None
    contacts: list[Contact] | None = None  # a bare answer, without "data" (§15)


class _TotalBox(msgspec.Struct):
    total: int | None = None


class _TotalEnvelope(msgspec.Struct):
    data: _TotalBox | None = None


class _FormsBox(msgspec.Struct):
    forms: list[Form] | None = None
    form: Form | None = None


class _FormsEnvelope(msgspec.Struct):
    data: _FormsBox | None = None
    forms: list[Form] | None = None  # a bare answer, without "data" (§15)
    form: Form | None = None


class _ActionsBox(msgspec.Struct):
    actions: list[ActionSummary] | None = msgspec.field(default=None, name="ActionsAggreg")


class _ActionsEnvelope(msgspec.Struct):
    data: _ActionsBox | None = None


# Decoders and encoders are built once (msgspec perf tips).
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_contact_box_decoder = msgspec.json.Decoder(_ContactBox, dec_hook=dec_hook)
_contact_decoder = msgspec.json.Decoder(Contact, dec_hook=dec_hook)
_contacts_decoder = msgspec.json.Decoder(_ContactsEnvelope, dec_hook=dec_hook)
_total_decoder = msgspec.json.Decoder(_TotalEnvelope)
_forms_decoder = msgspec.json.Decoder(_FormsEnvelope, dec_hook=dec_hook)
_actions_decoder = msgspec.json.Decoder(_ActionsEnvelope)
_problem_decoder = msgspec.json.Decoder(Problem)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_dict_or_list_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def encode(payload: Any) -> bytes:
    """JSON bytes of a request body (Structs, dicts, datetimes)."""
    return _encoder.encode(payload)


def _text(body: bytes | msgspec.Raw) -> str:
    return bytes(body).decode("utf-8", "replace")


_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_MAX_DROPPED = 20


def _drop_at(document: Any, path: str) -> bool:
    """Remove the value at a msgspec error path (``$.data.contacts[3].address.floor``)."""
    tokens: list[str | int] = [
        name if name else int(index) for name, index in _PATH_TOKEN.findall(path[1:])
    ]
    if not tokens:
        return False
    node = document
    for token in tokens[:-1]:
        try:
            node = node[token]
        except (KeyError, IndexError, TypeError):
            return False
    last = tokens[-1]
    if isinstance(node, dict) and isinstance(last, str) and last in node:
        del node[last]
        return True
    return False


def _decode(
    decoder: msgspec.json.Decoder[T], body: bytes | msgspec.Raw, status: int, what: str
) -> T:
    """Decode ``body``; a field of an unexpected type is dropped (and logged), not fatal.

    Qomon's schema drifts (qomon-api.md §15): one odd field must not cost the caller a whole
    answer, least of all a create that was stored. Bodies that are not JSON still fail.
    """
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        error: msgspec.DecodeError = exc
    except msgspec.DecodeError as exc:
        raise ResponseDecodeError(
            f"Qomon answered {status} but the body is not a valid {what}: {exc}",
            status_code=status,
            text=_text(body),
        ) from exc
    document = _dict_or_list_decoder.decode(body)
    for _ in range(_MAX_DROPPED):
        where = str(error).rpartition(" - at `")[2].rstrip("`")
        if not where.startswith("$") or not _drop_at(document, where):
            break
        logger.warning("ignored %s in a %s: %s", where, what, str(error).partition(" - at")[0])
        try:
            converted: T = msgspec.convert(document, decoder.type, dec_hook=dec_hook, str_keys=True)
            return converted
        except msgspec.ValidationError as exc:
            error = exc
    raise ResponseDecodeError(
        f"Qomon answered {status} but the body is not a valid {what}: {error}",
        status_code=status,
        text=_text(body),
    ) from error


def decode_contact(status: int, body: bytes) -> ConfirmedContact:
    """The contact of a ``POST /contacts``, ``GET``/``PATCH /contacts/{id}`` answer.

    Accepts ``data.contact``, a bare contact in ``data``, ``contact`` at the top, or a bare
    contact (§7.3). Raises :class:`ResponseDecodeError` when no contact with an id is found: the
    synchronous-create promise is a confirmed id.
    """
    envelope = _decode(_envelope_decoder, body, status, "JSON object")
    contact: Contact | None = None
    if _present(envelope.data):
        box = _decode(_contact_box_decoder, envelope.data, status, "contact envelope")
        if box.contact is not None:
            contact = box.contact
        elif box.id is not None:
            contact = _decode(_contact_decoder, envelope.data, status, "contact")
    elif _present(envelope.contact):
        contact = _decode(_contact_decoder, envelope.contact, status, "contact")
    elif envelope.id is not None:
        contact = _decode(_contact_decoder, body, status, "contact")
    if contact is None or contact.id is None:
        raise ResponseDecodeError(
            f"Qomon answered {status} without a contact id", status_code=status, text=_text(body)
        )
    return confirmed(contact)


def decode_contact_dict(status: int, body: bytes) -> dict[str, Any]:
    """The contact of a ``GET /contacts/{id}`` answer as a plain dict, every key kept.

    ``update_contact`` writes back what it read, and PATCH clears what is left out (§7.4): the
    fields this library does not model must survive the round trip.
    """
    payload = _decode(_dict_decoder, body, status, "JSON object")
    data = payload.get("data", payload)
    if isinstance(data, dict) and isinstance(data.get("contact"), dict):
        data = data["contact"]
    elif isinstance(payload.get("contact"), dict):
        data = payload["contact"]
    if not isinstance(data, dict) or data.get("id") is None:
        raise ResponseDecodeError(
            f"Qomon answered {status} without a contact id", status_code=status, text=_text(body)
        )
    return data


def decode_contacts_page(status: int, body: bytes) -> list[Contact]:
    """The contacts of a ``POST /search`` page (``contacts: null`` or missing is empty)."""
    envelope = _decode(_contacts_decoder, body, status, "search answer")
    if envelope.data is not None:
        return envelope.data.contacts or []
    if envelope.contacts is not None:
        return envelope.contacts
    # Neither data nor contacts: not a search answer. Reading it as "no match" could make a
    # reconciliation conclude that a create did not land.
    raise ResponseDecodeError(
        f"Qomon answered {status} without data.contacts", status_code=status, text=_text(body)
    )


def decode_total(status: int, body: bytes) -> int:
    """The count of a ``POST /kpi`` answer."""
    envelope = _decode(_total_decoder, body, status, "KPI answer")
    if envelope.data is None or envelope.data.total is None:
        raise ResponseDecodeError(
            f"Qomon answered {status} without data.total", status_code=status, text=_text(body)
        )
    return envelope.data.total


def decode_forms(status: int, body: bytes) -> list[Form]:
    """The forms of a ``GET /v1/forms/type/{type}`` answer (``forms: null`` is empty)."""
    envelope = _decode(_forms_decoder, body, status, "forms answer")
    if envelope.data is not None:
        return envelope.data.forms or []
    if envelope.forms is not None:
        return envelope.forms
    raise ResponseDecodeError(
        f"Qomon answered {status} without data.forms", status_code=status, text=_text(body)
    )


def decode_form(status: int, body: bytes) -> Form:
    """The form of a ``GET /forms/{id}`` answer."""
    envelope = _decode(_forms_decoder, body, status, "form answer")
    form = envelope.data.form if envelope.data is not None else envelope.form
    if form is not None:
        return form
    raise ResponseDecodeError(
        f"Qomon answered {status} without data.form", status_code=status, text=_text(body)
    )


def decode_actions(status: int, body: bytes) -> list[ActionSummary]:
    """The items of a ``GET /actions`` answer."""
    envelope = _decode(_actions_decoder, body, status, "actions answer")
    if envelope.data is None or envelope.data.actions is None:
        return []
    return envelope.data.actions


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def decode_problem(body: bytes) -> Problem | None:
    """The error body, whichever of the three formats of §3.2 it is; None if not JSON."""
    if not body.strip():
        return None
    try:
        return _problem_decoder.decode(body)
    except msgspec.DecodeError:
        return None


def status_error(
    status: int,
    body: bytes,
    *,
    method: str,
    path: str,
    reason: str = "",
    retry_after: float | None = None,
) -> APIStatusError:
    """The exception for an error status, carrying the parsed problem or the raw text."""
    problem = decode_problem(body)
    text = _text(body)
    summary = problem.summary if problem is not None else None
    if summary is None and text.strip() and problem is None:
        summary = text.strip().splitlines()[0][:200]
    message = f"{status}{' ' + reason if reason else ''} on {method} {path}"
    if summary:
        message += f": {summary}"
    if problem is not None and problem.errors:
        details = "; ".join(
            f"{e.location or '?'}: {e.message or 'invalid'} (value {e.value!r})"
            for e in problem.errors[:10]
        )
        message += f" [{details}]"
    kwargs: dict[str, Any] = {
        "status_code": status,
        "problem": problem,
        "text": text,
        "method": method,
        "url": path,
    }
    if status == 429:
        if retry_after is not None:
            message += f" (retry after {retry_after:g} s)"
        return RateLimitError(message, retry_after=retry_after, **kwargs)
    cls = STATUS_ERRORS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIStatusError
    error = cls(message, **kwargs)
    if isinstance(error, ServerError) and status == 503:
        error.retry_after = retry_after
    return error


# --------------------------------------------------------------------------------------------
# Request bodies
# --------------------------------------------------------------------------------------------

#: Keys Qomon computes; stripped before a contact is written back (§7.4, hotglue, Trellis).
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


# Dates stay date objects until the validation writes them (a naive datetime is UTC there).
_DATES = (dt.datetime, dt.date)


def contact_to_dict(contact: ContactInput, *, strict: bool = True) -> dict[str, Any]:
    """A contact in Qomon's field names, checked, ready to send (``ContactValidationError``).

    The rules are :func:`qomon_async._validation.validate_contact`'s: with ``strict`` (the
    default) an unknown key is refused; with ``strict=False`` it is sent as given. A read
    :class:`Contact` loses its read-only keys.
    """
    data: dict[str, Any]
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
    return encode({"data": {"contact": contact}})


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
        # Inside advanced_search, as the 1.1.0 example and the 2026 guide have it (§8.1).
        search["include_interactions"] = True
    return encode({"data": {"advanced_search": search}})


def merge_for_update(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The full contact to PATCH: what was read, the changes on top, the read-only keys out.

    The address is merged key by key (a change of city keeps the street); every other key is
    replaced whole, lists included (§7.4: PATCH is a full replace; send full lists).
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
    # Qomon reads both spellings; write back one (custom_fields, §15) so answers are not doubled.
    if "customfields" in merged:
        legacy = merged.pop("customfields") or []
        if not merged.get("custom_fields"):
            merged["custom_fields"] = legacy
    # Answers go back in the write shape (§7.1.3); their ids and timestamps are Qomon's.
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
