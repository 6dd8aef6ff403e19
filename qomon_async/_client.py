"""``QomonClient``: the asyncio session manager.

Every request of the client goes out and comes back through :meth:`QomonClient._request` (one
attempt: rate limiter, transport, limiter re-sync, status to exception), wrapped in the retry
policy of :mod:`qomon_async._retry`. The endpoints are mixins, each in its own module: the
single-contact ones (create, get, replace, update, delete, upsert) in
:mod:`qomon_async._contacts`, the read-only ones (search, count, forms, actions) in
:mod:`qomon_async._reads`, the bulk writes in :mod:`qomon_async._bulk_endpoints`,
``ensure_contact`` in :mod:`qomon_async._ensure` and ``watch_contacts`` in
:mod:`qomon_async._watch`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import aiohttp

from . import _http, _protocol
from ._budget import CALL_BUDGET, Budget, check_max_wait
from ._bulk import BulkBackend
from ._bulk_endpoints import BulkEndpoints
from ._config import (
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    DEFAULT_USER_AGENT,
    ENV_API_KEY,
    ENV_BASE_URL,
    ENV_REDIS_URL,
    RateLimit,
    RetryPolicy,
)
from ._contacts import ContactEndpoints
from ._create import CreateProtocol
from ._ensure import EnsureContact, EnsureFlights
from ._exceptions import Aborted, APIConnectionError, QomonError
from ._indoubt import InDoubtStore, MemoryInDoubtStore
from ._local_limiter import LocalLimiter, RateLimiter
from ._ratelimit import (
    Limiter,
    LimiterStats,
    parse_lowercase_ratelimit_headers,
    parse_retry_after,
    route_cost,
)
from ._reads import ReadEndpoints
from ._retry import retrying
from ._stats import ClientStats
from ._watch import WatchContacts

if TYPE_CHECKING:
    from .redis import RedisBucket

__all__ = ["ClientStats", "QomonClient"]

logger = logging.getLogger("qomon_async")


class QomonClient(ContactEndpoints, ReadEndpoints, BulkEndpoints, EnsureContact, WatchContacts):
    """An asyncio client for one Qomon space.

    ::

        async with QomonClient() as client:          # key from QOMON_API_KEY
            contact = await client.create_contact({"firstname": "Jeanne", "mail": "j@example.org"})

    Args:
        api_key: the space's API key; defaults to ``$QOMON_API_KEY``. Never logged or shown.
        base_url: defaults to ``$QOMON_BASE_URL``, then ``https://incoming.qomon.app``
            (``https://incoming-us.qomon.app`` for US spaces). ``http://`` is refused except to
            a loopback address (the emulator).
        session: an ``aiohttp.ClientSession`` to use; the client does not close it.
        timeout: seconds for a whole request; ``connect_timeout`` for the connection alone.
        max_connections: size of the connection pool of the client's own session.
        user_agent: the User-Agent header (an explicit one: Qomon blocks generic ones).
        retry: the default :class:`RetryPolicy` (``RetryPolicy.disabled()`` never retries);
            every endpoint also takes ``retry=`` for one call.
        rate_limit: the local model of the space's bucket (:class:`RateLimit`), or ``False`` to
            send without limiting (not advised against Qomon).
        reconcile_margin: seconds subtracted from an attempt's start when searching for the
            contact an ambiguous create may have made (clock skew between client and Qomon).
        reconcile_lag: seconds Qomon's search may lag behind a stored create (default 5).
            After an ambiguous create the contact is looked up after growing waits (10%, 20%,
            30% and 40% of it: 0.5, 1, 1.5 and 2 s), and sent again only when every lookup
            missed it (``0``: four lookups in a row).
        reconcile_delay: deprecated; sets ``reconcile_lag`` to twice it.
        in_doubt: where creates cancelled, or left unknown, after sending are remembered
            (``True``: in this client's memory; an :class:`InDoubtStore`, e.g. shared through
            Redis; ``False``: not remembered). A later create of the same contact (same mail
            and names) through this client looks it up first: found, it is returned.
        in_doubt_ttl: seconds an in-doubt record is kept (a day).
        strict: refuse a contact key this library does not know (``ContactValidationError``
            naming the closest known field; nothing is sent). ``False`` sends unknown keys as
            given, for fields Qomon adds later (a warning is logged once per key); every write
            also takes ``strict=`` for one call.
        max_wait: the default of every call's ``max_wait``: seconds a call may spend waiting
            before its request is sent (for the rate limiter's tokens, a 429 pause, the pause
            between retries); beyond it the call raises :class:`RateLimitTimeout` (nothing
            sent). ``None`` (the default): no limit. ``timeout`` bounds each HTTP request.
        max_response_bytes: the largest answer read (bytes, after decompression; default
            32 MiB, far above Qomon's largest, a 1,000-contact page). A larger 2xx raises
            :class:`ResponseDecodeError`; the body of a larger error status is dropped.

        shared_bucket: a :class:`~qomon_async.redis.RedisBucket` shared by every process using
            the space (the ``redis`` extra); the client binds it to its space and never closes
            it. Without it, ``$QOMON_REDIS_URL`` (when set) makes the client build one (and
            close it in :meth:`aclose`). Ignored with ``rate_limit=False``.
    Raises:
        ValueError: no API key, a key with a control character (a pasted newline or tab; the
            message names its position, never the key), a ``user_agent`` with one, a bad
            ``base_url``, timeout or ``max_response_bytes``.

    The session is created lazily inside the running event loop (or in ``async with``); the
    rate limiter is one per client and per event loop.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        user_agent: str = DEFAULT_USER_AGENT,
        retry: RetryPolicy | None = None,
        rate_limit: RateLimit | bool = True,
        reconcile_margin: float = 120.0,
        reconcile_lag: float = 5.0,
        reconcile_delay: float | None = None,
        in_doubt: InDoubtStore | bool = True,
        in_doubt_ttl: float = 86400.0,
        strict: bool = True,
        max_wait: float | None = None,
        max_response_bytes: int = _http.DEFAULT_MAX_RESPONSE_BYTES,
        shared_bucket: RedisBucket | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
        if not key:
            raise ValueError(f"no API key: pass api_key= or set ${ENV_API_KEY}")
        self._auth = _http.Auth(key.strip(), user_agent=user_agent)
        self._key = self._auth.secret
        if max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")
        self.max_response_bytes = max_response_bytes
        self.base_url = _http.check_base_url(
            base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
        )
        self._set_timeouts(timeout, connect_timeout)
        self.max_wait = check_max_wait(max_wait)
        self.max_connections = max_connections
        self.user_agent = user_agent
        self.retry = retry or RetryPolicy()
        self.strict = strict
        if rate_limit is True:
            rate_limit = RateLimit()
        self.rate_limit: RateLimit | None = rate_limit or None
        self.stats = ClientStats()
        # The shared bucket: given, or built from $QOMON_REDIS_URL (then the client owns it).
        self._owns_bucket = False
        if self.rate_limit is not None and shared_bucket is None:
            redis_url = os.environ.get(ENV_REDIS_URL, "").strip()
            if redis_url:
                from .redis import RedisBucket  # noqa: PLC0415 - the optional extra

                shared_bucket = RedisBucket(
                    redis_url,
                    capacity=self.rate_limit.capacity,
                    rate=self.rate_limit.rate,
                    slow_start=self.rate_limit.slow_start,
                )
                self._owns_bucket = True
        self._shared_bucket = shared_bucket if self.rate_limit is not None else None
        if self._shared_bucket is not None:
            from ._redis_keys import key_hash  # noqa: PLC0415

            self._shared_bucket.bind(self.base_url, key_hash(self._key.reveal()))
        self._creates = CreateProtocol(
            request=self._request,
            search=self.search_contacts,
            stats=self.stats,
            retry=self.retry,
            reconcile_margin=reconcile_margin,
            # reconcile_delay (before 0.2): two lookups that far apart, i.e. a lag of twice it.
            reconcile_lag=reconcile_lag if reconcile_delay is None else 2 * reconcile_delay,
            in_doubt=self._in_doubt_store(in_doubt),
            in_doubt_ttl=in_doubt_ttl,
        )
        self._ensures = EnsureFlights()
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._limiter: Limiter | None = self._shared_bucket or (
            LocalLimiter(
                self.rate_limit.capacity,
                self.rate_limit.rate,
                slow_start=self.rate_limit.slow_start,
            )
            if self.rate_limit is not None
            else None
        )
        # Whether the limiter grants at once without a coroutine (try_acquire); a limiter
        # written before it existed is awaited for every request. Looked up once, here.
        self._limiter_tries = callable(getattr(self._limiter, "try_acquire", None))

    def __repr__(self) -> str:
        return f"QomonClient(base_url={self.base_url!r}, api_key=<redacted>)"

    @property
    def timeout(self) -> float:
        """Seconds for a whole request (a call's ``timeout=`` replaces it for that call)."""
        return self._total_timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._set_timeouts(value, self._connect_timeout)

    @property
    def connect_timeout(self) -> float:
        """Seconds for establishing a connection."""
        return self._connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, value: float) -> None:
        self._set_timeouts(self._total_timeout, value)

    def _set_timeouts(self, total: float, connect: float) -> None:
        if total <= 0 or connect <= 0:
            raise ValueError("timeouts must be positive")
        self._total_timeout = total
        self._connect_timeout = connect
        # aiohttp's timeout object, built once here rather than looked up per request.
        self._timeout = _http.client_timeout(total, connect)

    def _client_timeout(self, total: float) -> aiohttp.ClientTimeout:
        """The timeout object of one call's own ``timeout=``."""
        return _http.client_timeout(total, self._connect_timeout)

    def _in_doubt_store(self, in_doubt: InDoubtStore | bool) -> InDoubtStore | None:
        """Where in-doubt creates are remembered: ``True`` means the shared bucket's store (seen
        by every process of the space) when there is one, else this client's memory."""
        if in_doubt is not True:
            return in_doubt or None
        if self._shared_bucket is not None:
            return self._shared_bucket.in_doubt
        return MemoryInDoubtStore()

    @property
    def limiter_stats(self) -> LimiterStats | None:
        """The rate limiter's counters (permits, tokens, waits, 429 pauses, re-syncs); ``kind``
        says which bucket is in use (``"redis"``, or ``"local"``), ``fallbacks`` how often a
        shared bucket fell back to the local one, ``reservations`` its bookings in Redis."""
        return self._limiter.stats if self._limiter is not None else None

    # ----------------------------------------------------------------------------------------
    # Life cycle
    # ----------------------------------------------------------------------------------------

    async def __aenter__(self) -> QomonClient:
        # A closed client may be entered again (e.g. by another event loop): it opens a new
        # session; the rate limiter is per loop, and keeps the bucket's shape it learned.
        if self._owns_session:
            self._closed = False
        self._get_session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's own session (a session handed in is left open), and the shared
        bucket if the client built it (from ``$QOMON_REDIS_URL``); a bucket handed in only has
        its pending updates sent."""
        self._closed = True
        if self._shared_bucket is not None:
            if self._owns_bucket:
                await self._shared_bucket.aclose()
            else:
                await self._shared_bucket.flush()
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this QomonClient is closed")
        if self._session is None:
            self._session = _http.make_session(
                max_connections=self.max_connections, auth=self._auth
            )
        return self._session

    @property
    def limiter(self) -> RateLimiter | None:
        """The local rate limiter of the running event loop (None when rate limiting is off or
        the bucket is not local)."""
        limiter = self._limiter
        return limiter.get() if isinstance(limiter, LocalLimiter) else None

    # ----------------------------------------------------------------------------------------
    # The seam: every request goes out and comes back here.
    # ----------------------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        idempotent: bool,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        attempts: list[int] | None = None,
        abort: Callable[[], BaseException | None] | None = None,
        max_wait: float | Budget | None = None,
        _retrying: bool = False,
    ) -> _http.RawResponse:
        """Send with the retry policy: wait for the bucket, send, re-sync the bucket, map the
        status; after a failure, the retries of the policy.

        ``attempts`` (if given) receives one entry per request actually sent. ``abort`` is asked
        once the bucket has paid, right before sending: if it returns an exception (a bulk run
        hit a fatal 401), nothing is sent and :class:`Aborted` is raised. ``max_wait``: a
        :class:`Budget` shared with the other requests of one call, or seconds for this request
        alone; by default the budget of the public call running in this task (``CALL_BUDGET``),
        else the client's ``max_wait``. The policy's ``max_retry_after`` is the longest 429
        pause worth waiting. A wait cancelled in the limiter sends nothing and charges nothing.
        ``_retrying``: one attempt of the retries, and no retries of its own.
        """
        # Written for the success path, the one every request takes: one frame for the whole
        # attempt; the waiting budget resolved only where it is spent (the limiter, the pauses
        # between retries); the retry machinery entered only after a first failure (see
        # _retry_failed), with no partial, closure or retry context built before it. Against
        # a forwarding _request, a _send and retrying's frame: 100 bytecodes less per create.
        if max_wait is not None and not isinstance(max_wait, Budget):
            check_max_wait(max_wait)  # refused at once, even when nothing would wait
        policy = retry or self.retry
        budget: Budget | None = None
        started = time.monotonic()
        try:
            session = self._session
            if session is None or self._closed:
                session = self._get_session()
            limiter = self._limiter
            permit = None
            if limiter is not None:
                cost = route_cost(method, path)
                # A permit at once (the bucket covers it, nobody waits): no coroutine, and no
                # waiting budget to resolve (a grant at once waits for nothing). Else the queue.
                if not self._limiter_tries or (permit := limiter.try_acquire(cost)) is None:
                    budget = self._budget(max_wait)
                    permit = await limiter.acquire(
                        cost,
                        max_wait=budget.left if budget is not None else None,
                        max_pause=policy.max_retry_after,
                    )
                    if permit.waited:
                        self.stats.limiter_wait += permit.waited
                        if budget is not None:
                            budget.spend(permit.waited)
            if abort is not None and (reason := abort()) is not None:
                if limiter is not None and permit is not None:
                    limiter.release(permit, refund=True)
                raise Aborted(reason)
            if attempts is not None:
                attempts.append(len(attempts) + 1)
            stats = self.stats
            stats.requests += 1
            try:
                response = await _http.send(
                    session,
                    method,
                    self.base_url + path,
                    path,
                    self._auth,
                    body,
                    self._timeout if not timeout else self._client_timeout(timeout),
                    self.max_response_bytes,
                )
            except APIConnectionError as exc:
                if limiter is not None and permit is not None:
                    # A request that never left costs the server nothing: give the tokens back.
                    limiter.release(permit, refund=not exc.request_sent)
                raise
            except BaseException:
                if limiter is not None and permit is not None:
                    limiter.release(permit)
                raise
            stats.responses += 1
            status = response.status
            if limiter is not None and permit is not None:
                try:
                    limiter.observe(
                        permit,
                        response.numbers_in_headers(parse_lowercase_ratelimit_headers),
                        rejected=status == 429,
                    )
                except BaseException:
                    # Never a permit left in flight: the local limiter credits no refill
                    # past the permits in flight, so a lost one would hold it for good.
                    limiter.release(permit)
                    raise
            if status < 400:
                return response
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if status == 429:
                stats.rate_limited += 1
                wait = retry_after if retry_after is not None else self.retry.default_retry_after
                logger.info("429 on %s %s: pausing every request for %.3f s", method, path, wait)
                if limiter is not None:
                    # Paused for the whole Retry-After, however long: while it lasts, a call
                    # whose max_pause (its policy's max_retry_after) or max_wait it exceeds
                    # fails at once instead of blocking; the pause ends when the server said.
                    limiter.pause(wait)
            raise _protocol.status_error(
                status,
                response.body,
                method=method,
                path=path,
                reason=response.reason,
                retry_after=retry_after,
            )
        except QomonError as exc:
            if _retrying:
                raise
            first = exc
        if budget is None:
            # Not resolved yet (no limiter, or a permit granted at once), or resolved to no
            # limit, which resolving again finds as well.
            budget = self._budget(max_wait)
        # Outside the except block: the retries' errors do not chain to the first failure.
        return await self._retry_failed(
            first, started, method, path, body, timeout, abort, attempts, budget, policy, idempotent
        )

    async def _retry_failed(  # noqa: PLR0917
        self,
        first: QomonError,
        started: float,
        method: str,
        path: str,
        body: bytes | None,
        timeout: float | None,
        abort: Callable[[], BaseException | None] | None,
        attempts: list[int] | None,
        budget: Budget | None,
        policy: RetryPolicy,
        idempotent: bool,
    ) -> _http.RawResponse:
        """The retries of a request whose first attempt (begun at ``started``) failed."""

        def attempt(_number: int) -> Awaitable[_http.RawResponse]:
            return self._request(
                method,
                path,
                body=body,
                idempotent=idempotent,
                retry=policy,
                timeout=timeout,
                attempts=attempts,
                abort=abort,
                max_wait=budget,
                _retrying=True,
            )

        def count_retry(exc: BaseException, wait: float) -> None:
            self.stats.retries += 1
            self.stats.retry_wait += wait

        return await retrying(
            first,
            attempt,
            started=started,
            policy=policy,
            idempotent=idempotent,
            describe=f"{method} {path}",
            on_retry=count_retry,
            budget=budget,
        )

    def _budget(self, max_wait: float | Budget | None) -> Budget | None:
        """The waiting budget of one call: its own ``max_wait`` (a shared :class:`Budget`, or
        seconds), else that of the public call running in this task, else the client's
        ``max_wait`` (None: no limit). Asked only where a wait begins (the limiter's queue, the
        retries): the common case (no ``max_wait`` anywhere) first."""
        if max_wait is None:
            budget = CALL_BUDGET.get()
            if budget is None:
                return None if self.max_wait is None else Budget(self.max_wait)
            # A bulk run's limit (seconds) is for each request alone.
            return Budget(budget) if isinstance(budget, float) else budget
        if isinstance(max_wait, Budget):
            return max_wait
        return Budget(check_max_wait(max_wait))

    def _strict(self, strict: bool | None) -> bool:
        return self.strict if strict is None else strict

    def _bulk_backend(self) -> BulkBackend:
        return BulkBackend(
            creates=self._creates,
            request=self._request,
            get_contact=self.get_contact,
            search=self.search_contacts,
        )
