"""A local emulator of the Qomon API, for tests, demos and other tools.

``FakeQomon`` serves Qomon's contact, search, forms and actions routes on 127.0.0.1 with the
same authentication, token bucket, headers, validation errors and upsert behaviour as Qomon
(see qomon-api.md), at a configurable time scale, with scripted or random faults::

    from qomon_async.testing import DropAfterProcessing, FakeQomon

    async with FakeQomon(api_key="k", time_scale=100) as fake:
        fake.inject(DropAfterProcessing(), route="POST /contacts", nth=2)
        ...  # a client pointed at fake.base_url
        assert len(fake.contacts) == 3

The pytest plugin (installed with the package) provides the ``fake_qomon`` fixture.
"""

from __future__ import annotations

from ._app import FakeQomon, RequestRecord, UpsertRecord
from ._faults import (
    DropAfterProcessing,
    DropBeforeProcessing,
    ErrorAfterProcessing,
    ErrorBeforeProcessing,
    Fault,
    FaultRule,
    Latency,
    NonJsonBody,
    RateLimited,
    RequestInfo,
    SlowAnswer,
    TruncatedBody,
    Unauthorized,
)

__all__ = [
    "DropAfterProcessing",
    "DropBeforeProcessing",
    "ErrorAfterProcessing",
    "ErrorBeforeProcessing",
    "FakeQomon",
    "Fault",
    "FaultRule",
    "Latency",
    "NonJsonBody",
    "RateLimited",
    "RequestInfo",
    "RequestRecord",
    "SlowAnswer",
    "TruncatedBody",
    "Unauthorized",
    "UpsertRecord",
]
