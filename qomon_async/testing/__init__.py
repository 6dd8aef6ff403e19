"""A local emulator of the Qomon API, for tests, demos and other tools.

``FakeQomon`` serves Qomon's contact, search, forms and actions routes on 127.0.0.1 with the
same authentication, token bucket (100 tokens, 10 per second; 5 per synchronous contact
write, 1 otherwise), rate-limit headers, problem+json errors, upsert delay and matching, and
search operators as Qomon, at a configurable time scale, with scripted or random faults::

    from qomon_async import QomonClient
    from qomon_async.testing import DropAfterProcessing, FakeQomon

    async with (
        FakeQomon(time_scale=100) as fake,
        QomonClient(api_key=fake.api_key, base_url=fake.base_url) as client,
    ):
        fake.inject(DropAfterProcessing(), route="POST /contacts", nth=2)
        ...  # the code under test, using client
        assert [r.body for r in fake.requests if r.route == "POST /contacts"]

Contacts carry ``CreatedAt``/``UpdatedAt`` (microseconds) and ``lastchange`` (milliseconds),
UTC, on the emulated clock: set on create, moved by PATCH and by an applied upsert (a
presence-only upsert moves ``UpdatedAt`` only), so that ``/search`` on ``UpdatedAt gte <date>``
with ``sort_attr: "lastchange"`` works as a change feed. ``search_lag=`` makes the search
index lag behind writes, as Qomon's does.

Every request received is in ``fake.requests`` (with its decoded body); mistakes of the test
(a fault predicate that raises) are reported in ``fake.errors`` and raised when the block ends.

Run in its own process with ``qomon-async fake-server --port 8888 --time-scale 10``; a test
in another process reads what it saw through the control routes under ``/__fake__/`` (see
:mod:`qomon_async.testing._control`: ``GET /__fake__/stats``, ``/__fake__/requests``, ...), and
tags its requests with an ``X-Fake-Client`` header to tell processes apart.

The pytest plugin (installed with the package) provides the ``fake_qomon`` fixture.
"""

from __future__ import annotations

from ._app import FakeQomon
from ._faults import (
    DropAfterProcessing,
    DropBeforeProcessing,
    ErrorAfterProcessing,
    ErrorBeforeProcessing,
    ExtraHeaders,
    Fault,
    FaultPredicateError,
    FaultRule,
    Latency,
    NonJsonBody,
    RateLimited,
    RawAnswer,
    Redirect,
    RequestInfo,
    SlowAnswer,
    StreamedBody,
    TruncatedBody,
    Unauthorized,
)
from ._records import RequestRecord, UpsertRecord

__all__ = [
    "DropAfterProcessing",
    "DropBeforeProcessing",
    "ErrorAfterProcessing",
    "ErrorBeforeProcessing",
    "ExtraHeaders",
    "FakeQomon",
    "Fault",
    "FaultPredicateError",
    "FaultRule",
    "Latency",
    "NonJsonBody",
    "RateLimited",
    "RawAnswer",
    "Redirect",
    "RequestInfo",
    "RequestRecord",
    "SlowAnswer",
    "StreamedBody",
    "TruncatedBody",
    "Unauthorized",
    "UpsertRecord",
]
