"""Defaults gathered in one place, and the small frozen value objects that configure a client."""

from __future__ import annotations

import dataclasses
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("qomon-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

#: Qomon's production host.
DEFAULT_BASE_URL = "https://incoming.qomon.app"
#: The host of US-region spaces (not in Qomon's reference: given by hotglue's tap-qomon README).
US_BASE_URL = "https://incoming-us.qomon.app"
#: Environment variables read when the constructor is not given a key or a URL.
ENV_API_KEY = "QOMON_API_KEY"
ENV_BASE_URL = "QOMON_BASE_URL"
#: A Redis URL: clients built without ``shared_bucket=`` share the space's bucket through it.
ENV_REDIS_URL = "QOMON_REDIS_URL"
#: An explicit, descriptive User-Agent: Qomon has blocked generic ones.
DEFAULT_USER_AGENT = f"qomon-async/{__version__} (+https://pypi.org/project/qomon-async/)"

#: Seconds for a whole request (connect, send, read); 30 s is what integrations use.
DEFAULT_TIMEOUT = 30.0
#: Seconds to establish a connection.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Connections kept open to the host at most (the bulk pool needs no more than its concurrency).
DEFAULT_MAX_CONNECTIONS = 64

#: Qomon's bucket (https://developers.qomon.com/pages/v1/rate-limits): 100 tokens, 10 tokens/s.
DEFAULT_BUCKET_CAPACITY = 100.0
DEFAULT_BUCKET_RATE = 10.0

#: The largest ``per_page`` of ``POST /search``.
MAX_PER_PAGE = 1000

#: ``watch_contacts``: seconds between two polls, and seconds of ``UpdatedAt`` looked at again
#: at each poll (against clock skew and the lag of Qomon's search index behind a write).
DEFAULT_WATCH_INTERVAL = 60.0
DEFAULT_WATCH_OVERLAP = 120.0


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """When and how long to retry a request (see :mod:`qomon_async._retry`).

    Exponential backoff with full jitter (``base_delay * 2**n``, capped at ``max_delay``),
    bounded by ``max_attempts`` (the first try included) and ``max_time`` (seconds, from the first
    try). A 429's ``Retry-After`` is waited exactly, never shortened by jitter; one longer than
    ``max_retry_after`` (or than the time left) ends the retries with :class:`RateLimitError`.
    ``RetryPolicy.disabled()`` tries once.
    """

    max_attempts: int = 6
    max_time: float = 120.0
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 120.0
    #: Seconds to wait on a 429 that carries no usable ``Retry-After``.
    default_retry_after: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_time < 0 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays and max_time must not be negative")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """The local model of the space's token bucket, before the server has said otherwise.

    ``capacity`` tokens, refilled at ``rate`` tokens per second. The client follows the shape
    that responses advertise in ``X-Ratelimit-Limit`` and re-syncs on every response.
    ``slow_start`` keeps a single request in flight until a first response has told the truth.
    """

    capacity: float = DEFAULT_BUCKET_CAPACITY
    rate: float = DEFAULT_BUCKET_RATE
    slow_start: bool = True

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.rate <= 0:
            raise ValueError("capacity and rate must be positive")
