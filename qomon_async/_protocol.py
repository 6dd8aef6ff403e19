"""Qomon's answers without I/O: ``(status, body)`` in, models or the right exception out.

Everything here is a plain function, testable without an event loop or a network: decoding
each answer into models, tolerating the schema variants Qomon is seen to send, and turning an
error status into the right exception. The request bodies are :mod:`qomon_async._bodies`'s; the
one module that performs I/O is :mod:`qomon_async._http`.
"""

from __future__ import annotations

import logging
import re
from typing import Any, TypeVar

import msgspec

from ._bodies import encode
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
    Form,
    Problem,
    as_text,
    confirmed,
)

T = TypeVar("T")
logger = logging.getLogger("qomon_async")

# --------------------------------------------------------------------------------------------
# Answers. Each is decoded once, in one pass from the envelope down, by a plain Struct decoder
# of the documented shape (no hooks): the fast path. Only when it fails is the tolerant path
# taken: the body as builtins, repaired where a known variant or an odd field got in the way,
# then converted to the same types, so that both paths give identical values (the models fold
# their second spellings and turn numbers into text themselves, in ``__post_init__``, on
# either path). The envelopes leave out ``status`` ("success"): never read, so not decoded.
# --------------------------------------------------------------------------------------------


class _ContactBox(msgspec.Struct, gc=False):
    contact: Contact | None = None


class _ContactAnswer(msgspec.Struct, gc=False):
    data: _ContactBox | None = None


class _ConfirmedBox(msgspec.Struct, gc=False):
    contact: ConfirmedContact


class _ConfirmedAnswer(msgspec.Struct, gc=False):
    """The documented answer of a confirmed write or read, its contact decoded straight into a
    :class:`ConfirmedContact` (no copy); any other shape takes :func:`decode_contact`'s
    general path."""

    data: _ConfirmedBox | None = None


class _ContactsBox(msgspec.Struct, gc=False):
    contacts: list[Contact] | None = None


class _ContactsEnvelope(msgspec.Struct, gc=False):
    data: _ContactsBox | None = None
    contacts: list[Contact] | None = None  # a bare answer, without "data"


class _TotalBox(msgspec.Struct):
    total: int | None = None


class _TotalEnvelope(msgspec.Struct):
    data: _TotalBox | None = None


class _FormsBox(msgspec.Struct, gc=False):
    forms: list[Form] | None = None
    form: Form | None = None


class _FormsEnvelope(msgspec.Struct, gc=False):
    data: _FormsBox | None = None
    forms: list[Form] | None = None  # a bare answer, without "data"
    form: Form | None = None


class _ActionsBox(msgspec.Struct, gc=False):
    actions: list[ActionSummary] | None = msgspec.field(default=None, name="ActionsAggreg")


class _ActionsEnvelope(msgspec.Struct, gc=False):
    data: _ActionsBox | None = None


# Decoders and encoders are built once (msgspec perf tips).
_contact_answer_decoder = msgspec.json.Decoder(_ContactAnswer)
_confirmed_answer_decoder = msgspec.json.Decoder(_ConfirmedAnswer)
_decode_confirmed = _confirmed_answer_decoder.decode  # bound once: every create answer's
_contacts_decoder = msgspec.json.Decoder(_ContactsEnvelope)
_total_decoder = msgspec.json.Decoder(_TotalEnvelope)
_forms_decoder = msgspec.json.Decoder(_FormsEnvelope)
_actions_decoder = msgspec.json.Decoder(_ActionsEnvelope)
_problem_decoder = msgspec.json.Decoder(Problem)
_builtins_decoder = msgspec.json.Decoder()
#: What decoding hostile bytes may raise (200,000 nested "[" raise RecursionError); each becomes
#: a ResponseDecodeError.
_DECODE_FAILURES = (
    msgspec.MsgspecError,
    RecursionError,
    ValueError,
    TypeError,
    OverflowError,
    KeyError,
    IndexError,
)


def _text(body: bytes | msgspec.Raw) -> str:
    return bytes(body[:2000]).decode("utf-8", "replace")


def _fail(status: int, body: bytes, what: str, why: object) -> ResponseDecodeError:
    return ResponseDecodeError(
        f"Qomon answered {status} but the body is not a valid {what}: {str(why)[:300]}",
        status_code=status,
        text=_text(body),
    )


_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_MAX_REPAIRS = 20
_NAIVE = "Expected `datetime` with a timezone component"
_OUT_OF_RANGE = re.compile(r"^Expected `int` [<>]=")
_GOT = re.compile(r"^Expected `[^`]*`, got `(\w+)`")
#: Text fields that Qomon may send as a number (or a bool): read as text, not dropped.
_TEXT_KEYS = frozenset({"data", "external_id"})
_NOT_TEXT = re.compile(r"^Expected `str \| null`, got `(?:int|float|bool)`$")
_ZONED = re.compile(r"(?:[zZ]|[+-]\d\d(?::?\d\d)?)$")
_JSON_TYPE = {
    str: "str", int: "int", float: "float", bool: "bool", list: "array", dict: "object",
    type(None): "null",
}  # fmt: skip


def _split_error(error: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec's "message - at `$.path`" as (message, path)."""
    message, _, where = str(error).rpartition(" - at `")
    if not message:
        return str(error), ""
    return message, where.rstrip("`")


def _targets(node: Any, tokens: list[str | int], same: bool) -> list[tuple[Any, str]]:
    """The (container, key) pairs at a path. With ``same``, a list index matches every element
    (an odd field repeated in every contact of a page is repaired in one round)."""
    if not tokens:
        return []
    head, rest = tokens[0], tokens[1:]
    if isinstance(head, int):
        if not isinstance(node, list) or head >= len(node):
            return []
        children = node if same else [node[head]]
        return [t for child in children for t in _targets(child, rest, same)]
    if not isinstance(node, dict) or head not in node:
        return []
    if not rest:
        return [(node, head)]
    return _targets(node[head], rest, same)


def _repair(document: Any, error: msgspec.ValidationError, repaired: set[str]) -> str | None:
    """Make the value an error points at acceptable: a naive date gets a zone (UTC), another odd
    value is dropped. Returns what was done, or None when nothing could be."""
    message, path = _split_error(error)
    if not path.startswith("$"):
        return None
    if _OUT_OF_RANGE.match(message):
        return None  # an id that cannot be stored: never dropped, the answer is refused
    tokens: list[str | int] = [
        name if name else int(index) for name, index in _PATH_TOKEN.findall(path[1:])
    ]
    exact = _targets(document, tokens, same=False)
    if len(exact) != 1:
        return None
    container, key = exact[0]
    value = container[key]
    if key in _TEXT_KEYS and _NOT_TEXT.match(message):
        for node, name in _targets(document, tokens, same=True):
            other = node[name]
            if isinstance(other, (int, float)):  # bool included
                node[name] = as_text(other)
        return f"read {path} as text"
    if message == _NAIVE and isinstance(value, str) and path not in repaired:
        repaired.add(path)
        for node, name in _targets(document, tokens, same=True):
            other = node[name]
            if isinstance(other, str) and not _ZONED.search(other):
                node[name] = other + "Z"
        return f"read {path} as UTC"
    got = _GOT.match(message)
    if got is not None and _JSON_TYPE.get(type(value)) == got.group(1):
        # A type mismatch depends only on the value's type: drop it wherever it recurs.
        for node, name in _targets(document, tokens, same=True):
            if _JSON_TYPE.get(type(node[name])) == got.group(1):
                del node[name]
    else:
        del container[key]
    return f"ignored {path}"


def _tolerant(body: bytes, tp: Any, status: int, what: str, first: Exception) -> Any:
    """The slow path: the body as builtins, repaired until it converts to ``tp``.

    Qomon's schema drifts: one odd field must not cost the caller a whole answer, least of all a
    create that was stored. Bodies that are not JSON still fail, as ResponseDecodeError.
    """
    try:
        document = _builtins_decoder.decode(body)
    except _DECODE_FAILURES as exc:
        raise _fail(status, body, what, exc) from None
    error: Exception = first
    repaired: set[str] = set()
    for _ in range(_MAX_REPAIRS + 1):
        try:
            return msgspec.convert(document, tp, str_keys=True)
        except msgspec.ValidationError as exc:
            error = exc
        except _DECODE_FAILURES as exc:
            raise _fail(status, body, what, exc) from None
        done = _repair(document, error, repaired)
        if done is None:
            break
        logger.warning("%s in a %s: %s", done, what, _split_error(error)[0])
    raise _fail(status, body, what, error) from None


def _decode(decoder: msgspec.json.Decoder[T], body: bytes, status: int, what: str) -> T:
    """Decode ``body``: the fast path, then the tolerant one only if the fast path failed."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        first: Exception = exc
    except _DECODE_FAILURES as exc:
        raise _fail(status, body, what, exc) from None
    result: T = _tolerant(body, decoder.type, status, what, first)
    return result


def _find_contact(document: Any) -> Any:
    """The contact in an answer of another shape: a bare contact in ``data``, ``contact`` at
    the top, or a bare contact."""
    if not isinstance(document, dict):
        return None
    data = document.get("data")
    if isinstance(data, dict):
        if isinstance(data.get("contact"), dict):
            return data["contact"]
        return data if data.get("id") is not None else None
    if isinstance(document.get("contact"), dict):
        return document["contact"]
    return document if document.get("id") is not None else None


def decode_contact(status: int, body: bytes) -> ConfirmedContact:
    """The contact of a ``POST /contacts``, ``GET``/``PATCH /contacts/{id}`` answer.

    Accepts ``data.contact``, a bare contact in ``data``, ``contact`` at the top, or a bare
    contact. Raises :class:`ResponseDecodeError` when no contact with an id is found (the
    synchronous-create promise is a confirmed id), or when its id does not fit 64 bits.
    """
    try:  # the documented shape, straight into a ConfirmedContact: the common case, one pass
        data = _decode_confirmed(body).data
    except _DECODE_FAILURES:
        data = None
    if data is not None:
        return data.contact
    answer = _decode(_contact_answer_decoder, body, status, "contact answer")
    contact = answer.data.contact if answer.data is not None else None
    if contact is None or contact.id is None:
        # Not the documented shape: look for the contact elsewhere (a rare, slower path).
        try:
            found = _find_contact(_builtins_decoder.decode(body))
        except _DECODE_FAILURES as exc:
            raise _fail(status, body, "contact answer", exc) from None
        if found is not None:
            contact = _convert_contact(found, body, status)
    if contact is None or contact.id is None:
        raise ResponseDecodeError(
            f"Qomon answered {status} without a contact id", status_code=status, text=_text(body)
        )
    return confirmed(contact)


def _convert_contact(found: Any, body: bytes, status: int) -> Contact | None:
    try:
        contact: Contact = msgspec.convert(found, Contact, str_keys=True)
        return contact
    except msgspec.ValidationError as exc:
        first: Exception = exc
    except _DECODE_FAILURES as exc:
        raise _fail(status, body, "contact", exc) from None
    converted: _ContactBox = _tolerant(
        encode({"contact": found}), _ContactBox, status, "contact", first
    )
    return converted.contact


def decode_contact_dict(status: int, body: bytes) -> dict[str, Any]:
    """The contact of a ``GET /contacts/{id}`` answer as a plain dict, every key kept.

    ``update_contact`` writes back what it read, and PATCH clears what is left out: the fields
    this library does not model must survive the round trip.
    """
    try:
        payload = _builtins_decoder.decode(body)
    except _DECODE_FAILURES as exc:
        raise _fail(status, body, "JSON object", exc) from None
    if not isinstance(payload, dict):
        raise _fail(status, body, "JSON object", f"a JSON {type(payload).__name__}")
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
    contacts = envelope.data.contacts if envelope.data is not None else envelope.contacts
    if contacts is not None:
        return contacts
    if envelope.data is not None:
        return []
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
    """The error body, whichever of Qomon's three error formats it is; None if not JSON."""
    if not body.strip():
        return None
    try:
        return _problem_decoder.decode(body)
    except _DECODE_FAILURES:
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
    """The exception for an error status, carrying the parsed problem or the raw text.

    ``body`` and ``reason`` come from the transport with the API key already cut out.
    """
    problem = decode_problem(body)
    text = _text(body)
    summary = problem.summary if problem is not None else None
    if summary is None and text.strip() and problem is None:
        summary = text.strip().splitlines()[0][:200]
    message = f"{status}{' ' + reason if reason else ''} on {method} {path}"
    if summary:
        message += f": {summary[:500]}"
    if problem is not None and problem.errors:
        details = "; ".join(
            f"{e.location or '?'}: {e.message or 'invalid'} (value {_short(e.value)})"
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


def _short(value: object) -> str:
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 100 else text[:97] + "..."
