"""The shared bucket's link to Redis: connections, calls, and what happens when Redis fails.

Every call runs within the bucket's ``timeout``; scripts go by ``EVALSHA`` and are loaded again
when Redis has forgotten them. A call that fails or times out makes the bucket fall back to a
local limiter (from an empty bucket, with one warning) and try Redis again every
``retry_interval`` seconds, or raise :class:`RedisBucketError` with ``on_error="raise"``.
Updates that need no answer (corrections, give-backs, pauses) run in the background and are
flushed on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Sequence
from typing import Any, Literal

import redis.asyncio as _aioredis
from redis.exceptions import NoScriptError, RedisError

from ._exceptions import QomonError
from ._local_limiter import LocalLimiter
from ._ratelimit import LimiterStats
from ._redis_scripts import Script

__all__ = ["RedisBucketError", "RedisDown", "RedisLink", "redact_url", "text"]

logger = logging.getLogger("qomon_async")


class RedisBucketError(QomonError):
    """Redis could not be used by a :class:`RedisBucket` built with ``on_error="raise"``.

    Raised by the call that needed the bucket, before anything was sent. The cause (redis-py's
    error, or a timeout) is chained as ``__cause__``; the message never carries the API key.
    """

    __module__ = "qomon_async.redis"


class RedisDown(Exception):
    """Internal: a Redis call failed or timed out."""


class RedisLink:
    """The Redis side of a :class:`~qomon_async.redis.RedisBucket`: connections (one client per
    event loop, or the client handed in), timed calls, fallback and return, background
    updates. The bucket sets ``capacity``, ``rate``, ``slow_start`` and ``_stats`` (the
    fallback limiter is built from them) and answers :meth:`_ping`."""

    capacity: float
    rate: float
    slow_start: bool
    _stats: LimiterStats

    def __init__(
        self,
        redis: str | _aioredis.Redis,
        *,
        timeout: float,
        retry_interval: float,
        on_error: Literal["fallback", "raise"],
    ) -> None:
        if isinstance(redis, str):
            self._url: str | None = redis
            self._given: _aioredis.Redis | None = None
        else:
            self._url = None
            self._given = redis
        self.timeout = float(timeout)
        self.retry_interval = float(retry_interval)
        self.on_error = on_error
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _aioredis.Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._local: LocalLimiter | None = None  # the fallback while Redis fails
        self._fallen = False
        self._retry_at = 0.0

    async def _ping(self) -> None:
        """One harmless call, to see whether Redis answers again (raises :class:`RedisDown`)."""
        raise NotImplementedError

    def _client(self) -> _aioredis.Redis:
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            assert self._url is not None
            client = _aioredis.Redis.from_url(
                self._url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry_on_timeout=False,
            )
            self._clients[loop] = client
        return client

    async def _eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` (EVALSHA; loaded on NOSCRIPT) within the timeout."""
        client = self._client()
        try:
            try:
                result = await asyncio.wait_for(
                    client.evalsha(script.sha, len(keys), *keys, *args), self.timeout
                )
            except NoScriptError:
                await asyncio.wait_for(client.script_load(script.source), self.timeout)
                result = await asyncio.wait_for(
                    client.evalsha(script.sha, len(keys), *keys, *args), self.timeout
                )
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise RedisDown(f"{type(exc).__name__}: {exc}") from exc
        return decode(result)

    def _failed(self, exc: RedisDown, *, background: bool = False) -> None:
        """Redis failed: raise (``on_error="raise"``) or switch to the local limiter."""
        if self.on_error == "raise":
            if background:
                logger.warning("Redis bucket: a background update failed (%s)", exc)
                return
            raise RedisBucketError(f"the shared rate-limit bucket is unavailable: {exc}") from exc
        if self._fallen:
            return
        self._fallen = True
        self._stats.fallbacks += 1
        self._stats.kind = "local"
        loop = asyncio.get_running_loop()
        self._retry_at = loop.time() + self.retry_interval
        # One set of counters, whichever limiter grants; an empty bucket to start from. A
        # fallback again while the last one still has permits in flight or callers waiting
        # keeps it: their answers go to self._local, and its waiters wait for those answers
        # (the local limiter credits no refill past the permits in flight).
        if self._local is None or not self._local.in_use:
            self._local = LocalLimiter(
                self.capacity,
                self.rate,
                slow_start=self.slow_start,
                stats=self._stats,
                start_empty=True,
            )
        logger.warning(
            "Redis bucket unavailable (%s): falling back to a local rate limiter; "
            "retrying Redis every %g s",
            exc,
            self.retry_interval,
        )

    async def _recovered(self) -> bool:
        """While fallen back: try Redis again when due; True once back on it."""
        if not self._fallen:
            return True
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            return False
        self._retry_at = loop.time() + self.retry_interval
        if self._given is None:
            # Connections opened before the failure may point at a dead server: drop them.
            with contextlib.suppress(RedisError, OSError):
                await self._client().connection_pool.disconnect()
        try:
            await self._ping()
        except RedisDown as exc:
            logger.debug("Redis bucket still unavailable: %s", exc)
            return False
        self._fallen = False
        self._stats.kind = "redis"
        logger.warning("Redis bucket answers again: back to the shared bucket")
        return True

    async def _store_call(self, script: Script, keys: list[str], args: list[Any]) -> Any | None:
        """For the in-doubt store: a script, or None when Redis failed (and we fall back)."""
        if self._fallen and not await self._recovered():
            return None
        try:
            return await self._eval(script, keys, args)
        except RedisDown as exc:
            self._failed(exc)
            return None

    async def _store_command(self, op: Literal["get", "delete"], key: str) -> tuple[Any] | None:
        """For the in-doubt store: GET or DEL, its answer in a 1-tuple, or None on failure."""
        if self._fallen and not await self._recovered():
            return None
        client = self._client()
        try:
            command = client.get(key) if op == "get" else client.delete(key)
            answer = await asyncio.wait_for(command, self.timeout)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._failed(RedisDown(f"{type(exc).__name__}: {exc}"))
            return None
        return (answer,)

    def _background(self, work: Any) -> asyncio.Task[None] | None:
        """Run a Redis update without blocking the caller; kept until done, flushed by aclose.

        While fallen back, updates of permits granted by Redis earlier are dropped: Redis is
        failing, and the next booking after it answers again starts from what it holds."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            work.close()
            logger.debug("Redis bucket: no running event loop; an update was dropped")
            return None
        if self._fallen:
            work.close()
            return None
        task = loop.create_task(self._guarded(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guarded(self, work: Any) -> None:
        try:
            await work
        except RedisDown as exc:
            self._failed(exc, background=True)
        except Exception:  # pragma: no cover - a bug, never a lost task
            logger.exception("Redis bucket: a background update failed")

    async def flush(self) -> None:
        """Wait until every background update has reached Redis (or failed)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _close_client(self) -> None:
        """Close the client this link opened for the running loop (one handed in stays open)."""
        if self._given is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # pragma: no cover
                return
            client = self._clients.pop(loop, None)
            if client is not None:
                await client.aclose()


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def redact_url(url: str) -> str:
    """A Redis URL without its password."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    auth, _, host = rest.rpartition("@")
    user = auth.split(":", 1)[0]
    return f"{scheme}://{user + ':' if user else ''}***@{host}"
