"""In-doubt records: creates whose outcome is unknown, remembered beyond the call that sent them.

A create cancelled, or left :class:`~qomon_async.OutcomeUnknownError`, after its request left is
recorded under the person's key (a digest of the folded mail and names, never the mail itself)
with the time its attempt began. A later create of the same person, in this client or (with a
shared store) in another process, finds the record and looks the contact up before sending, so
that it is not created twice. :class:`MemoryInDoubtStore` keeps them for one client;
``qomon_async.redis`` keeps them in Redis for every process of a space.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ._bodies import identity_text

__all__ = ["InDoubtStore", "MemoryInDoubtStore", "identity_key"]

logger = logging.getLogger("qomon_async")


def identity_key(data: Mapping[str, Any]) -> str | None:
    """The key of a contact for in-doubt records: a digest of its mail and names, or None
    without a mail. Never the mail itself (the key may be stored in Redis)."""
    text = identity_text(data)
    if not text:
        return None
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class InDoubtStore(Protocol):
    """Where creates whose outcome is unknown are remembered beyond the call that sent them.

    A create cancelled or timed out after sending is recorded under :func:`identity_key`; a
    later create of the same contact looks it up and reconciles before sending. Implementations:
    :class:`MemoryInDoubtStore` (one client) and the Redis bucket's (every process of a space).
    """

    async def record(self, key: str, started_at: dt.datetime, ttl: float) -> None:
        """Remember that a create of ``key`` began at ``started_at`` (UTC) and may have landed;
        forget it after ``ttl`` seconds. The earliest start of several records is kept."""
        ...

    async def lookup(self, key: str) -> dt.datetime | None:
        """The earliest start of an in-doubt create of ``key``, or None."""
        ...

    async def clear(self, key: str) -> None:
        """The create of ``key`` is settled (found, or surely absent and sent again)."""
        ...


class MemoryInDoubtStore:
    """The in-doubt records of one process: a dict with a time to live and a size bound.

    Args:
        max_records: records kept at most; beyond it the oldest is forgotten (with a warning
            log line: a create of that contact will then be sent without a lookup first).
        clock: the monotonic clock the time to live is counted on (seconds).

    ``record_nowait`` records without awaiting: the create protocol calls it from a task
    being cancelled, where an ``await`` may not complete.
    """

    def __init__(
        self, *, max_records: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.max_records = max_records
        self._clock = clock
        # key -> (earliest start, expiry on the monotonic clock); insertion order ~ expiry order.
        self._records: dict[str, tuple[dt.datetime, float]] = {}

    def __len__(self) -> int:
        self._expire()
        return len(self._records)

    def __bool__(self) -> bool:
        return bool(self._records)

    def record_nowait(self, key: str, started_at: dt.datetime, ttl: float) -> None:
        """:meth:`record`, synchronously."""
        self._expire()
        previous = self._records.pop(key, None)
        if previous is not None and previous[0] < started_at:
            started_at = previous[0]
        self._records[key] = (started_at, self._clock() + ttl)
        while len(self._records) > self.max_records:
            oldest = next(iter(self._records))
            del self._records[oldest]
            logger.warning(
                "in-doubt records: more than %d; the oldest is forgotten", self.max_records
            )

    async def record(self, key: str, started_at: dt.datetime, ttl: float) -> None:
        self.record_nowait(key, started_at, ttl)

    async def lookup(self, key: str) -> dt.datetime | None:
        entry = self._records.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._records[key]
            return None
        return entry[0]

    async def clear(self, key: str) -> None:
        self._records.pop(key, None)

    def _expire(self) -> None:
        now = self._clock()
        while self._records:
            key = next(iter(self._records))
            if self._records[key][1] > now:
                return
            del self._records[key]
