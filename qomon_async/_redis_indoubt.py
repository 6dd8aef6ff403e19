"""In-doubt creates kept in Redis, so that every process of a space sees them.

A create whose outcome is unknown (sent, then cancelled, timed out or cut off) is recorded
under the digest of the contact's mail and names (``identity_key``), with the attempt's start;
a later create of the same contact, in any process, looks it up and reconciles before sending.
One Redis string per record (``<prefix>:{<space>}:indoubt:<digest>``: the start as seconds
since the epoch), expiring after its TTL.

While Redis cannot be reached the records are kept in this process's memory (with the same
expiry), and looked up there too; with ``on_error="raise"`` the error is raised instead.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

from ._redis_keys import in_doubt_key
from ._redis_scripts import INDOUBT_RECORD

if TYPE_CHECKING:
    from .redis import RedisBucket

__all__ = ["RedisInDoubtStore"]


class RedisInDoubtStore:
    """The in-doubt store of a :class:`~qomon_async.redis.RedisBucket` (its ``in_doubt``).

    Implements the ``InDoubtStore`` protocol of the create loop: ``record``, ``lookup``,
    ``clear``. Usable once the bucket is bound to a space (a client does it).
    """

    def __init__(self, bucket: RedisBucket) -> None:
        self._bucket = bucket
        # Fallback while Redis is down: key -> (start, monotonic expiry).
        self._memory: dict[str, tuple[dt.datetime, float]] = {}

    def _key(self, key: str) -> str:
        return in_doubt_key(self._bucket.prefix, self._bucket.require_space(), key)

    async def record(self, key: str, started_at: dt.datetime, ttl: float) -> None:
        """Remember that a create of ``key`` began at ``started_at`` and may have landed.

        Args:
            key: the contact's ``identity_key``.
            started_at: the attempt's start (aware; a naive one is taken as UTC).
            ttl: seconds after which the record is forgotten.
        """
        start = _aware(started_at)
        ttl_ms = max(1, round(ttl * 1000))
        done = await self._bucket._store_call(
            INDOUBT_RECORD, [self._key(key)], [f"{start.timestamp():.6f}", ttl_ms]
        )
        if done is None:
            previous = self._memory_get(key)
            if previous is not None and previous < start:
                start = previous
            self._memory[key] = (start, time.monotonic() + ttl)

    async def lookup(self, key: str) -> dt.datetime | None:
        """The earliest start of an in-doubt create of ``key``, or None."""
        found = await self._bucket._store_command("get", self._key(key))
        if found is None:
            return self._memory_get(key)
        value = found[0]
        if value is None:
            return self._memory_get(key)
        text = value.decode() if isinstance(value, bytes) else str(value)
        return dt.datetime.fromtimestamp(float(text), tz=dt.timezone.utc)

    async def clear(self, key: str) -> None:
        """The create of ``key`` is settled: forget it."""
        self._memory.pop(key, None)
        await self._bucket._store_command("delete", self._key(key))

    def _memory_get(self, key: str) -> dt.datetime | None:
        entry = self._memory.get(key)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._memory[key]
            return None
        return entry[0]


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)
