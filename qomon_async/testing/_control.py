"""The emulator's control routes: what a test in another process reads and drives over HTTP.

When the emulator runs in its own process (``qomon-async fake-server``), a test cannot read
``fake.requests``; these routes serve the same facts as JSON. They live under ``/__fake__/``,
a prefix Qomon does not have: they need no key, cost no token, and are not logged in
``fake.requests`` (they are not requests to Qomon).

- ``GET /__fake__/stats``: a summary: the clock (``now`` in Qomon seconds since start,
  ``utcnow``, ``time_scale``), the bucket (``capacity``, ``rate`` per Qomon second,
  ``tokens`` now; null without rate limiting), counts (``contacts``, ``requests``,
  ``statuses`` by status code with ``"dropped"`` for no answer, ``rate_limited`` for the
  429s, ``upserts_pending``), ``errors`` (their messages), and ``clients``: the same counts
  per ``X-Fake-Client`` header value, for requests that carried one.
- ``GET /__fake__/requests?after=N``: ``{"requests": [...]}``, every request numbered above
  ``N`` (default 0), in arrival order, each as :meth:`RequestRecord.to_json` (``number``,
  ``method``, ``path``, ``route``, ``status``, ``time`` and ``real_time`` of arrival, ``cost``,
  ``remaining``, ``contact_id``, ``faults``, ``body``, ``client``, ``error``).
- ``GET /__fake__/contacts``: ``{"contacts": [...]}``, the stored contacts in the read shape.
- ``GET /__fake__/clock``: ``{"now": ..., "utcnow": ...}``; ``POST /__fake__/clock`` with
  ``{"advance": seconds}`` moves the clock forward (see ``FakeQomon.advance``) and answers the
  same.
- ``POST /__fake__/bucket`` with ``{"spend": tokens}``, ``{"drain": true}`` or
  ``{"refill": true}``: as ``FakeQomon.spend``/``drain``/``refill``; answers ``{"tokens": ...}``.

A client tags its requests with the ``X-Fake-Client`` header (any text, e.g. ``worker-3``); the
emulator keeps it in ``RequestRecord.client``. Qomon ignores the header.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from ._dates import format_micro

if TYPE_CHECKING:
    from ._app import FakeQomon
    from ._records import RequestRecord

CONTROL_PREFIX = "/__fake__/"
CLIENT_HEADER = "X-Fake-Client"


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(document), content_type="application/json"
    )


def _counts(records: Iterable[RequestRecord]) -> dict[str, Any]:
    statuses = Counter("dropped" if r.status is None else str(r.status) for r in records)
    return {
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "rate_limited": statuses.get("429", 0),
    }


def stats(fake: FakeQomon) -> dict[str, Any]:
    """The summary served by ``GET /__fake__/stats``."""
    records = fake.requests
    tagged: dict[str, list[RequestRecord]] = {}
    for record in records:
        if record.client is not None:
            tagged.setdefault(record.client, []).append(record)
    bucket = None
    if fake.rate_limited:
        bucket = {"capacity": fake.capacity, "rate": fake.rate, "tokens": fake.tokens}
    return {
        **_clock(fake),
        "time_scale": fake.time_scale,
        "bucket": bucket,
        "contacts": len(fake.contacts),
        **_counts(records),
        "upserts_pending": sum(1 for u in fake.upserts if u.outcome == "pending"),
        "errors": [str(error) for error in fake.errors],
        "clients": {client: _counts(found) for client, found in sorted(tagged.items())},
    }


def _clock(fake: FakeQomon) -> dict[str, Any]:
    return {"now": fake.now(), "utcnow": format_micro(fake.utcnow())}


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(await request.read())
    except (msgspec.DecodeError, RecursionError) as error:
        raise web.HTTPBadRequest(text=f"malformed JSON: {error}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body


def _number(body: dict[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise web.HTTPBadRequest(text=f"{key} must be a number >= 0")
    return float(value)


async def handle_control(fake: FakeQomon, request: web.Request) -> web.Response:
    """Answer one request under ``/__fake__/``."""
    name = request.path[len(CONTROL_PREFIX) :].strip("/")
    method = request.method.upper()
    try:
        if (method, name) == ("GET", "stats"):
            return _json(stats(fake))
        if (method, name) == ("GET", "requests"):
            try:
                after = int(request.query.get("after", "0"))
            except ValueError:
                raise web.HTTPBadRequest(text="after must be an integer") from None
            return _json({"requests": [r.to_json() for r in fake.requests if r.number > after]})
        if (method, name) == ("GET", "contacts"):
            return _json({"contacts": list(fake.contacts.values())})
        if (method, name) == ("GET", "clock"):
            return _json(_clock(fake))
        if (method, name) == ("POST", "clock"):
            fake.advance(_number(await _body(request), "advance"))
            return _json(_clock(fake))
        if (method, name) == ("POST", "bucket"):
            body = await _body(request)
            if body.get("drain") is True:
                fake.drain()
            elif body.get("refill") is True:
                fake.refill()
            else:
                fake.spend(_number(body, "spend"))
            return _json({"tokens": fake.tokens})
    except web.HTTPBadRequest as error:
        return _json({"error": error.text}, status=400)
    return _json({"error": f"no control route {method} {request.path}"}, status=404)
