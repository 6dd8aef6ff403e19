"""One bucket per space, shared through Redis by every process that uses it (extra ``redis``).

Qomon meters a *space*, not a process: the workers of a web service, an ETL job and a bot all
spend the same bucket. :class:`RedisBucket` keeps that bucket in Redis (or Valkey), so that
every process books its requests in one queue::

    from qomon_async import QomonClient
    from qomon_async.redis import RedisBucket

    async with QomonClient(shared_bucket=RedisBucket("redis://localhost:6379/0")) as client:
        await client.create_contact({"firstname": "Jeanne", "mail": "jeanne@example.org"})

Setting ``QOMON_REDIS_URL`` does the same for every client built without ``shared_bucket``.

How it works: each operation is one Lua script, atomic in Redis and timed by Redis's own clock.
A request *books* its tokens (virtual time, GCRA): it gets the moment the bucket will hold them
and sleeps until then in its own process, so requests go out in the order they were booked,
across processes, whatever their cost. The processes share the bucket fairly: a booking leaves
in the bucket what the other processes need to catch up with its own, so that one process
cannot take the burst because its requests come back sooner (equal demands get equal shares,
unequal ones shares in proportion to the tokens each has waiting or in flight). A booking never
used (cancelled, aborted, refused connection) is given back. Every answer's ``X-Ratelimit-*``
headers lower the shared level when the server has less than Redis thought (spending by
Qomon's UI or another tool) and set the shape; a 429 pauses every process until its
``Retry-After``; until a first answer has told the truth, one request at a time goes out (slow
start), whichever process sends it.

When Redis cannot be reached or answers later than ``timeout``, the bucket logs one warning and
falls back to a local limiter (from an empty bucket), tries Redis again every
``retry_interval`` seconds and returns to it when it answers; ``on_error="raise"`` raises
:class:`RedisBucketError` instead. A request is never sent twice or lost because of Redis: the
bucket only decides *when* requests go out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

try:
    import redis.asyncio as _aioredis
    from redis.exceptions import RedisError
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "qomon_async.redis needs redis-py: pip install 'qomon-async[redis]'"
    ) from _exc

from ._exceptions import RateLimitError, RateLimitTimeout
from ._ratelimit import (
    DEFAULT_CAPACITY,
    DEFAULT_RATE,
    MAX_BURST,
    MAX_RATE,
    MIN_BURST,
    MIN_RATE,
    BucketState,
    LimiterStats,
    Permit,
    server_tokens,
    shape_within_bounds,
)
from ._redis_indoubt import RedisInDoubtStore
from ._redis_keys import DEFAULT_PREFIX, bucket_key, members_key, space_id
from ._redis_link import RedisBucketError, RedisDown, RedisLink, redact_url, text
from ._redis_scripts import OBSERVE, PAUSE, RELEASE, RESERVE, Script

__all__ = ["RedisBucket", "RedisBucketError", "RedisInDoubtStore"]

logger = logging.getLogger("qomon_async")


@dataclass(frozen=True)
class _RedisPermit(Permit):
    """A permit booked in Redis: where it sits in the shared queue."""

    mark: float = 0.0
    epoch: int = 0
    probe: bool = False
    charged: float = 0.0  # its process's service counted at the booking (the fair shares)


def sane_shape(capacity: float | None, rate: float | None) -> bool:
    """Whether a shape advertised by ``X-Ratelimit-Limit`` is one to adopt (the local
    limiter's bounds, which refuse infinities and NaN too)."""
    return capacity is not None and rate is not None and shape_within_bounds(capacity, rate)


class RedisBucket(RedisLink):
    """A space's token bucket kept in Redis: every process using it shares one queue.

    Implements the client's limiter interface (``try_acquire``, which never grants: a booking
    is a round trip; ``acquire``, ``observe``, ``release``, ``pause``, ``aclose``); hand it to
    ``QomonClient(shared_bucket=...)``, which binds it to the client's space. One
    ``RedisBucket`` serves one space (one base URL and key).

    Args:
        redis: a URL (``"redis://host:6379/0"``, ``"rediss://..."``, ``"unix://..."``), or an
            already built ``redis.asyncio.Redis``, which is used as is and never closed here.
        prefix: the prefix of every key written (``qomon`` by default).
        capacity: the bucket's size in tokens until an answer has said otherwise.
        rate: its refill in tokens per second until an answer has said otherwise.
        timeout: seconds a Redis call may take before Redis counts as failing.
        retry_interval: seconds between attempts to return to Redis after a failure.
        on_error: ``"fallback"`` (default): a failing Redis switches to a local limiter, with
            one warning; ``"raise"``: the call raises :class:`RedisBucketError`.
        slow_start: until an answer of the space has carried the rate-limit headers, let one
            request out at a time, across every process.
        probe_ttl: seconds after which a slow-start request that never reported back (its
            process died) no longer holds the others.
        key_ttl: seconds of idleness after which the space's bucket is forgotten by Redis (the
            next user starts with slow start).
        headroom: tokens left in the bucket after each request (one create's worth by
            default): requests reach Qomon some time after they leave, and the refill the
            server's full bucket cannot hold meanwhile must not turn into a 429.
        fair_window: seconds during which a process that has no request waiting or in flight
            still counts as competing for the bucket (the time between an answer and its
            next request); while it competes, the others leave it its share of the tokens.
            ``0`` serves bookings in arrival order only. A process whose requests never
            report back (it died) stops counting after ``probe_ttl`` seconds.

    Raises:
        ValueError: a bad argument.
    """

    def __init__(
        self,
        redis: str | _aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        capacity: float = DEFAULT_CAPACITY,
        rate: float = DEFAULT_RATE,
        timeout: float = 0.5,
        retry_interval: float = 5.0,
        on_error: Literal["fallback", "raise"] = "fallback",
        slow_start: bool = True,
        probe_ttl: float = 10.0,
        key_ttl: float = 3600.0,
        headroom: float = 5.0,
        fair_window: float = 0.5,
    ) -> None:
        if on_error not in ("fallback", "raise"):
            raise ValueError('on_error must be "fallback" or "raise"')
        if not sane_shape(capacity, rate):
            raise ValueError(
                f"capacity must be within [{MIN_BURST:g}, {MAX_BURST:g}] and rate within "
                f"[{MIN_RATE:g}, {MAX_RATE:g}]"
            )
        if not (0 <= headroom < capacity):
            raise ValueError("headroom must be at least 0 and below the capacity")
        if timeout <= 0 or retry_interval <= 0 or probe_ttl <= 0 or key_ttl <= 0:
            raise ValueError("timeout, retry_interval, probe_ttl and key_ttl must be positive")
        if not (0 <= fair_window < math.inf):
            raise ValueError("fair_window must be a number of seconds, at least 0")
        if not prefix or any(c in prefix for c in "{} \n"):
            raise ValueError("prefix must be a non-empty string without braces or spaces")
        super().__init__(redis, timeout=timeout, retry_interval=retry_interval, on_error=on_error)
        self.prefix = prefix
        self.capacity = float(capacity)
        self.rate = float(rate)
        self.slow_start = slow_start
        self.probe_ttl = float(probe_ttl)
        self.key_ttl = float(key_ttl)
        self.headroom = float(headroom)
        self.fair_window = float(fair_window)
        self._member = secrets.token_hex(8)  # this bucket's id among the space's processes
        self._outstanding = 0.0  # tokens of the requests waiting here or in flight (Redis's)
        self._space: str | None = None
        self._stats = LimiterStats(kind="redis")
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._pausing: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._refused_shapes: set[tuple[float, float]] = set()
        self._informed = not slow_start  # a booking has seen the space informed
        self.in_doubt = RedisInDoubtStore(self)
        """The in-doubt store of creates (every process of the space sees its records)."""

    # -- identity ----------------------------------------------------------------------------

    def bind(self, base_url: str, api_key_hash: str) -> None:
        """Attach the bucket to one space; the client calls it once with its base URL and the
        digest of its key (``qomon_async._redis_keys.key_hash``), never the key itself.

        Raises:
            ValueError: the bucket is already bound to another space.
        """
        space = space_id(base_url, api_key_hash)
        if self._space is not None and self._space != space:
            raise ValueError("this RedisBucket already serves another space: build one per space")
        self._space = space

    @property
    def space(self) -> str | None:
        """The id of the space served (a digest; None before :meth:`bind`)."""
        return self._space

    def require_space(self) -> str:
        if self._space is None:
            raise RuntimeError("RedisBucket.bind() was never called (QomonClient does it)")
        return self._space

    @property
    def key(self) -> str:
        """The Redis key of the bucket."""
        return bucket_key(self.prefix, self.require_space())

    @property
    def members_key(self) -> str:
        """The Redis key of the processes sharing the bucket (their shares so far)."""
        return members_key(self.prefix, self.require_space())

    @property
    def kind(self) -> Literal["local", "redis"]:
        """``"redis"``, or ``"local"`` while fallen back to the local limiter."""
        return "local" if self._fallen else "redis"

    @property
    def stats(self) -> LimiterStats:
        """Counters: permits, waits, reservations in Redis, fallbacks, pauses, re-syncs."""
        return self._stats

    def __repr__(self) -> str:
        where = "a given Redis client" if self._url is None else redact_url(self._url)
        return (
            f"<RedisBucket {where} prefix={self.prefix!r} kind={self.kind} "
            f"space={self._space or 'unbound'} permits={self._stats.permits}>"
        )

    # -- Redis calls -------------------------------------------------------------------------

    def _base_args(self) -> list[Any]:
        return [f"{self.capacity:.6f}", f"{self.rate:.6f}", round(self.key_ttl * 1000)]

    async def _ping(self) -> None:
        await self._eval(RELEASE, [self.key], [*self._base_args(), 0, -1, 0, 0])

    async def _bucket_eval(self, script: Script, args: Sequence[Any]) -> Any:
        return await self._eval(script, [self.key, self.members_key], [*self._base_args(), *args])

    # -- the limiter interface ---------------------------------------------------------------

    def try_acquire(self, cost: float) -> Permit | None:
        """Always None: a booking in the shared bucket is a round trip to Redis, so there is no
        permit without waiting for it; await :meth:`acquire` (nothing is charged here).

        Raises:
            ValueError: ``cost`` is negative or not a number.
        """
        if not (cost >= 0 and math.isfinite(cost)):
            raise ValueError(f"cost must be a non-negative number, got {cost!r}")
        return None

    async def acquire(
        self, cost: float, *, max_wait: float | None = None, max_pause: float | None = None
    ) -> Permit:
        """Book ``cost`` tokens in the shared bucket and wait for them; see the ``Limiter``
        protocol of the client.

        Raises:
            RateLimitTimeout: the predicted wait exceeds ``max_wait`` (nothing booked).
            RateLimitError: a 429 pause of the space lasts longer than ``max_pause``.
            RedisBucketError: Redis failed and ``on_error="raise"``.
            ValueError: ``cost`` is negative or not a number.
        """
        if not (cost >= 0 and math.isfinite(cost)):
            raise ValueError(f"cost must be a non-negative number, got {cost!r}")
        self.require_space()
        # The demand of this process, its weight in the shares: the tokens of its requests
        # waiting here, and of those granted by Redis until they are answered or given up.
        self._outstanding += cost
        permit: Permit | None = None
        try:
            permit = await self._acquire(cost, max_wait, max_pause)
        finally:
            if not isinstance(permit, _RedisPermit):
                self._outstanding = max(0.0, self._outstanding - cost)
        return permit

    async def _acquire(
        self, cost: float, max_wait: float | None, max_pause: float | None
    ) -> Permit:
        loop = asyncio.get_running_loop()
        start = loop.time()
        if self._pausing:  # a 429 of this process goes to Redis before the next booking
            await asyncio.gather(*list(self._pausing), return_exceptions=True)
        if await self._recovered():
            try:
                return await self._acquire_shared(cost, max_wait, max_pause, loop, start)
            except RedisDown as exc:
                self._failed(exc)
        remaining = None if max_wait is None else max(0.0, max_wait - (loop.time() - start))
        assert self._local is not None  # set by _failed
        permit = await self._local.acquire(cost, max_wait=remaining, max_pause=max_pause)
        if permit.waited != loop.time() - start:
            permit = Permit(permit.seq, permit.cost, loop.time() - start, permit.granted_at)
        return permit

    def _gate(self, loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = asyncio.Lock()
        return gate

    async def _acquire_shared(
        self,
        cost: float,
        max_wait: float | None,
        max_pause: float | None,
        loop: asyncio.AbstractEventLoop,
        start: float,
    ) -> Permit:
        epoch, mark, probe, charged = -1, 0.0, False, 0.0
        booked = slept = False
        stats = self._stats
        if not self._informed:
            # Slow start, where nothing goes before the first answer anyway: let the callers
            # started with this one register their demand first, so that the probe is counted
            # at this process's weight (the share of a process is per token of its demand).
            await asyncio.sleep(0)
        try:
            while True:
                # Until the space is known to be informed, the gate lets one waiter of this
                # process poll the slow start while the others queue behind it; then bookings
                # go to Redis at once (in the order the callers came, over several connections).
                gate = contextlib.nullcontext() if self._informed else self._gate(loop)
                async with gate:
                    while True:
                        left = (
                            -1.0 if max_wait is None else max(0.0, max_wait - (loop.time() - start))
                        )
                        fresh = epoch < 0  # a new booking, not a confirmation or a re-booking
                        reply = await self._bucket_eval(
                            RESERVE,
                            [
                                f"{cost:.6f}",
                                f"{left:.6f}",
                                -1 if max_pause is None else f"{max_pause:.6f}",
                                f"{self.probe_ttl if self.slow_start else 0:.6f}",
                                epoch,
                                f"{mark:.6f}",
                                f"{self.headroom:.6f}",
                                self._member,
                                f"{self.fair_window:.6f}",
                                f"{self.probe_ttl:.6f}",
                                f"{max(self._outstanding, cost):.6f}",
                            ],
                        )
                        status, wait_s, mark_s, epoch_s, probe_s = reply[:5]
                        if fresh and status == "ok" and len(reply) > 5:
                            charged = float(reply[5])
                        wait = float(wait_s)
                        if status not in ("probe", "defer"):
                            break
                        if max_wait is not None and loop.time() - start + wait > max_wait:
                            raise RateLimitTimeout(
                                "slow start: the first request of the space has not answered "
                                f"within max_wait={max_wait:g} s; nothing was sent"
                                if status == "probe"
                                else "the other processes' share of the shared bucket would "
                                f"make this request wait beyond max_wait={max_wait:g} s; "
                                "nothing was sent",
                                predicted_wait=None,
                                max_wait=max_wait,
                            )
                        # "probe": slow start, one request of the space at a time; "defer":
                        # this process is ahead of its share, the others book first.
                        await asyncio.sleep(wait)
                        slept = True
                if status == "timeout":
                    booked = False
                    raise RateLimitTimeout(
                        f"the shared bucket would make this request wait {wait:.3f} s, "
                        f"beyond max_wait={max_wait:g} s; nothing was sent",
                        predicted_wait=wait,
                        max_wait=max_wait,
                    )
                if status == "pause":
                    booked = False
                    raise RateLimitError(
                        f"the space is paused by a 429 for {wait:.3f} s more, beyond "
                        f"max_pause={max_pause:g} s; nothing was sent",
                        retry_after=wait,
                        status_code=429,
                    )
                if probe_s != "1" and self.slow_start:
                    self._informed = True
                new_epoch, new_mark = int(epoch_s), float(mark_s)
                if not (booked and new_epoch == epoch and new_mark == mark):
                    stats.reservations += 1
                    probe = probe_s == "1"
                epoch, mark, booked = new_epoch, new_mark, True
                if wait <= 0:
                    break
                await asyncio.sleep(wait)  # then confirm: a 429 may have voided the booking
                slept = True
        except asyncio.CancelledError:
            stats.cancelled += 1
            if booked:
                self._give_back(cost, epoch, probe, charged)
            raise
        except RedisDown:
            raise
        # A wait is time spent for tokens, a pause or slow start; Redis's round trip is not one.
        waited = loop.time() - start if slept else 0.0
        self._seq += 1
        stats.permits += 1
        stats.tokens += cost
        if waited > 0:
            stats.waits += 1
            stats.wait_seconds += waited
        return _RedisPermit(
            seq=self._seq,
            cost=cost,
            waited=waited,
            granted_at=loop.time(),
            mark=mark,
            epoch=epoch,
            probe=probe,
            charged=charged,
        )

    def _give_back(self, cost: float, epoch: int, probe: bool, charged: float) -> None:
        member = self._member if cost > 0 else ""
        self._background(
            self._bucket_eval(
                RELEASE,
                [f"{cost:.6f}", epoch, 1, 1 if probe else 0, member, 0, f"{charged:.9f}"],
            )
        )

    def release(self, permit: Permit, *, refund: bool = False) -> None:
        """The request of ``permit`` got no response; ``refund`` gives its tokens back (only
        when it surely never left). Sent to Redis in the background."""
        if not isinstance(permit, _RedisPermit):
            if self._local is not None:
                self._local.release(permit, refund=refund)
            return
        self._outstanding = max(0.0, self._outstanding - permit.cost)
        if refund:
            self._stats.tokens -= permit.cost
        self._end(permit, refund=refund)

    def _end(self, permit: _RedisPermit, *, refund: bool) -> None:
        """Tell Redis the request of ``permit`` is over without an answer that says anything:
        its booking back (``refund``), its slow-start probe ended, its process's count of
        requests in flight down."""
        if refund or permit.probe or self.fair_window > 0:
            self._background(
                self._bucket_eval(
                    RELEASE,
                    [
                        f"{permit.cost:.6f}",
                        permit.epoch,
                        int(refund),
                        int(permit.probe),
                        self._member if permit.cost > 0 else "",
                        f"{self._outstanding + permit.cost:.6f}",
                        f"{permit.charged:.9f}",
                    ],
                )
            )

    def observe(self, permit: Permit, state: BucketState | None, *, rejected: bool = False) -> None:
        """An answer to the request of ``permit`` came back: correct the shared bucket (in the
        background). Never raises the level above what Redis knows; follows a sane shape."""
        if not isinstance(permit, _RedisPermit):
            if self._local is not None:
                self._local.observe(permit, state, rejected=rejected)
            return
        self._outstanding = max(0.0, self._outstanding - permit.cost)
        capacity, rate = (None, None) if state is None else (state.capacity, state.rate)
        if capacity is not None and rate is not None and not sane_shape(capacity, rate):
            if (capacity, rate) not in self._refused_shapes:
                self._refused_shapes.add((capacity, rate))
                logger.warning(
                    "ignoring an implausible rate-limit shape: burst %g, rate %g/s", capacity, rate
                )
            capacity = rate = None
        server = (
            None
            if state is None
            else server_tokens(
                state,
                capacity if capacity is not None else self.capacity,
                rate if rate is not None else self.rate,
            )
        )
        if capacity is not None and rate is not None:
            if (capacity, rate) != (self.capacity, self.rate):
                self._stats.shape_changes += 1
                logger.info("rate limit shape: burst %g, %g/s", capacity, rate)
            self.capacity, self.rate = capacity, rate
        if server is None and capacity is None:
            self._end(permit, refund=False)  # no headers: let the next request probe
            return
        self._stats.syncs += 1
        self._background(
            self._observe(
                permit,
                -1.0 if server is None else server,
                capacity,
                rate,
                asyncio.get_running_loop().time(),
                weight=self._outstanding + permit.cost,
            ),
        )

    async def _observe(
        self,
        permit: _RedisPermit,
        server: float,
        capacity: float | None,
        rate: float | None,
        answered_at: float,
        *,
        weight: float,
    ) -> None:
        age = max(0.0, asyncio.get_running_loop().time() - answered_at)
        lowered, _reshaped, excess = await self._bucket_eval(
            OBSERVE,
            [
                f"{permit.mark:.6f}",
                permit.epoch,
                f"{server:.6f}",
                -1 if capacity is None else f"{capacity:.6f}",
                -1 if rate is None else f"{rate:.6f}",
                f"{age:.6f}",
                self._member if permit.cost > 0 else "",  # a free request is not counted
                f"{permit.cost:.6f}",
                f"{weight:.6f}",  # this process's demand now, the request included
                f"{permit.charged:.9f}",
            ],
        )
        if lowered == "1":
            self._stats.synced_down += 1
            logger.debug("re-sync down by %s tokens: the server has less than Redis knew", excess)

    def pause(self, seconds: float) -> None:
        """A 429 said ``Retry-After: seconds``: every process holds its requests until then."""
        seconds = max(0.0, seconds) if math.isfinite(seconds) else 0.0
        self._stats.pauses += 1
        if self._fallen and self._local is not None:
            self._local.pause(seconds)
            return
        logger.info("429 Too Many Requests: pausing the whole space for %.3f s", seconds)
        task = self._background(self._bucket_eval(PAUSE, [f"{seconds:.6f}"]))
        if task is not None:
            self._pausing.add(task)
            task.add_done_callback(self._pausing.discard)

    async def aclose(self) -> None:
        """Send what is pending, then close the connections this bucket opened (a Redis
        client handed in is left open). The bucket can be used again afterwards."""
        await self.flush()
        await self._leave()
        await self._close_client()

    async def _leave(self) -> None:
        """This process no longer competes for the bucket: the others stop keeping tokens
        for it at once (a process that exits without closing stops counting after
        ``fair_window``, or ``probe_ttl`` with requests in flight)."""
        if self._space is None or self._fallen or self._outstanding > 0:
            return
        client = self._client()
        with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
            await asyncio.wait_for(client.hdel(self.members_key, self._member), self.timeout)

    # -- introspection -----------------------------------------------------------------------

    async def snapshot(self) -> dict[str, float]:
        """The shared bucket as Redis holds it now: ``tokens`` (negative: bookings waiting),
        ``capacity``, ``rate``, ``paused_for`` (seconds), ``epoch``, ``informed`` (0/1).

        Raises:
            RedisBucketError: Redis could not be read.
        """
        client = self._client()
        try:
            now_s, now_us = await asyncio.wait_for(client.time(), self.timeout)
            raw = await asyncio.wait_for(client.hgetall(self.key), self.timeout)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            raise RedisBucketError(f"cannot read the shared bucket: {exc}") from exc
        now = now_s + now_us / 1e6
        state = {text(k): text(v) for k, v in raw.items()}
        cap = float(state.get("cap", self.capacity))
        rate = float(state.get("rate", self.rate))
        tat = float(state.get("tat", now))
        return {
            "tokens": cap - max(tat - now, 0.0) * rate,
            "capacity": cap,
            "rate": rate,
            "paused_for": max(float(state.get("paused", 0)) - now, 0.0),
            "epoch": float(state.get("epoch", 0)),
            "informed": 1.0 if state.get("informed") == "1" else 0.0,
        }
