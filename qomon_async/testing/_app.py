"""``FakeQomon``: serving, the request pipeline (auth, bucket, faults, request log), controls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

import msgspec
from aiohttp import web

from ._bucket import BucketAnswer, TokenBucket
from ._clock import QomonClock
from ._control import CLIENT_HEADER, CONTROL_PREFIX, handle_control
from ._faults import (
    DropAfterProcessing,
    DropBeforeProcessing,
    ErrorAfterProcessing,
    ErrorBeforeProcessing,
    Fault,
    FaultPlan,
    FaultRule,
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
from ._index import SearchIndex
from ._problems import PROBLEM_CONTENT_TYPE, Problem
from ._records import RequestRecord, UpsertRecord
from ._routes import Answer, Exchange, QomonRoutes, Route
from ._seed import GROUP_ID, public_form
from ._store import (
    ContactStore,
    UnknownIdPolicy,
    contact_write_from_dict,
)
from ._validate import bad_json

_JSON = "application/json"
_encode = msgspec.json.encode
_logger = logging.getLogger("qomon_async.testing")


def _number(value: float) -> str:
    """A duration or rate as a header value: ``1``, ``0.6``, ``0.004``."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _rate(value: float) -> str:
    # Qomon's format keeps one decimal: `burst:100;rate:10.0`.
    return f"{value:.1f}" if abs(value * 10 - round(value * 10)) < 1e-9 else _number(value)


class FakeQomon:
    """A local emulator of the Qomon API, served by aiohttp on 127.0.0.1.

    Use it in the running event loop::

        async with FakeQomon(api_key="k", time_scale=100) as fake:
            ...  # point a client at fake.base_url with fake.api_key

    or on a background thread with its own loop (any test runner, or none)::

        with FakeQomon() as fake:
            ...

    Every request it receives is in :attr:`requests`, whatever became of it. A fault
    predicate that raises, or a failure of the emulator itself, is logged (logger
    ``qomon_async.testing``), kept in :attr:`errors` and, with ``raise_errors=True``, raised
    when the ``with``/``async with`` block ends (unless that block is already raising), so
    that the test fails and says why.

    Args:
        api_key: the key accepted as ``Authorization: Bearer <key>``.
        host: the address to listen on.
        port: the port to listen on; 0 picks a free port.
        capacity: the token bucket's size (100 tokens); ``None``, or ``rate_limit=False``,
            turns rate limiting off.
        rate: the bucket's refill (10 tokens per Qomon second); ``None`` turns rate
            limiting off.
        rate_limit: False to serve without any bucket (benchmarks).
        time_scale: Qomon seconds per real second. Every duration configured here (bucket
            refill, ``upsert_delay``, ``search_lag``, fault latencies) is in Qomon seconds;
            with ``time_scale=100`` the 2 s upsert delay takes 20 ms. The rate-limit headers
            tell the scaled truth as a client measuring real time sees it.
        upsert_delay: Qomon seconds between the 202 of an upsert and its effect (about 2 s).
        search_lag: Qomon seconds before a write shows in ``/search`` and ``/kpi``, as with
            Qomon's search index: a contact created, updated or deleted is missing from (or
            stale in) search results until then, while ``GET /contacts/{id}`` shows it at
            once. Contacts seeded with :meth:`add_contact` are searchable at once. Default 0.
        latency: Qomon seconds added before every answer.
        seed: seeds the random generator of probabilistic faults.
        group_id: the space id written on contacts.
        first_contact_id: the id of the first contact created (then +1 each); e.g.
            ``2**63 + 1`` to test ids beyond a signed 64-bit integer.
        upsert_unknown_id: ``"drop"`` (observed on Qomon: an upsert naming an unknown id is
            dropped) or ``"match"`` (documented: fall through to the other matching rules).
        start_time: the UTC time the emulated clock starts at (default: now).
        shutdown_timeout: real seconds given to in-flight requests when closing.
        raise_errors: raise the first of :attr:`errors` when the block ends (default True).

    Raises:
        FaultPredicateError: at the end of the block, when a ``when=`` predicate raised.
        RuntimeError: at the end of the block, when the emulator failed on a request.
    """

    def __init__(
        self,
        api_key: str = "fake-qomon-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        capacity: int | None = 100,
        rate: float | None = 10.0,
        rate_limit: bool = True,
        time_scale: float = 1.0,
        upsert_delay: float = 2.0,
        search_lag: float = 0.0,
        latency: float = 0.0,
        seed: int | None = None,
        group_id: int = GROUP_ID,
        first_contact_id: int = 83854767,
        upsert_unknown_id: UnknownIdPolicy = "drop",
        start_time: datetime | None = None,
        shutdown_timeout: float = 0.25,
        raise_errors: bool = True,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port: int | None = None
        self._keys = {api_key}
        self._primary_key = api_key
        self.clock = QomonClock(time_scale, start_time)
        self.rate_limited = rate_limit and capacity is not None and rate is not None
        self._capacity = capacity or 0
        self._rate = rate or 0.0
        self._bucket: TokenBucket | None = None
        self.latency = latency
        self.shutdown_timeout = shutdown_timeout
        self._lock = threading.RLock()
        self._store = ContactStore(
            self.clock,
            group_id=group_id,
            first_contact_id=first_contact_id,
            upsert_unknown_id=upsert_unknown_id,
        )
        self._index = SearchIndex(search_lag)
        self._api = QomonRoutes(
            self.clock, self._store, self._index, self._lock, upsert_delay=upsert_delay
        )
        self.raise_errors = raise_errors
        self._errors: list[Exception] = []
        self._faults = FaultPlan(seed)
        self._requests: list[RequestRecord] = []
        self._count = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._reset_bucket()

    def __repr__(self) -> str:
        state = self.base_url if self.port else "not started"
        return (
            f"<FakeQomon {state} contacts={len(self._store.contacts)} "
            f"requests={len(self._requests)} bucket={self._bucket!r}>"
        )

    # -- public state ---------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` once started."""
        if self.port is None:
            raise RuntimeError("FakeQomon is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        """The key given at construction (see :meth:`accept_key` and :meth:`revoke`)."""
        return self._primary_key

    @property
    def time_scale(self) -> float:
        """Qomon seconds per real second."""
        return self.clock.time_scale

    @property
    def upsert_delay(self) -> float:
        """Qomon seconds between the 202 of an upsert and its effect (settable)."""
        return self._api.upsert_delay

    @upsert_delay.setter
    def upsert_delay(self, seconds: float) -> None:
        self._api.upsert_delay = seconds

    @property
    def search_lag(self) -> float:
        """Qomon seconds before a write shows in ``/search`` and ``/kpi``."""
        return self._index.lag

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received, in arrival order (a snapshot).

        A request shows here once its answer is decided (sent, dropped or cut off), whatever
        it was: answered, rejected (400, 401, 404, 422, 429), struck by a fault, or cut off by
        the client. ``record.body`` is the decoded JSON body.
        """
        with self._lock:
            return sorted(self._requests, key=lambda record: record.number)

    @property
    def errors(self) -> list[Exception]:
        """Bugs met while serving: fault predicates that raised (:class:`FaultPredicateError`)
        and failures of the emulator itself (``RuntimeError``), in order (a snapshot)."""
        with self._lock:
            return list(self._errors)

    @property
    def contacts(self) -> dict[int, dict[str, Any]]:
        """The stored contacts in the read shape, keyed by id in id order (a snapshot)."""
        with self._lock:
            return {cid: self._store.render(c) for cid, c in sorted(self._store.contacts.items())}

    @property
    def upserts(self) -> list[UpsertRecord]:
        """Every accepted upsert and its outcome (``pending`` until applied)."""
        with self._lock:
            return list(self._api.upserts)

    @property
    def forms(self) -> list[dict[str, Any]]:
        """The seeded forms, as ``GET /forms/{id}`` shows them."""
        return [public_form(form) for form in self._store.forms]

    @property
    def capacity(self) -> int | None:
        """The bucket's size in tokens (None when rate limiting is off)."""
        return self._capacity if self.rate_limited else None

    @property
    def rate(self) -> float | None:
        """The bucket's refill, tokens per Qomon second (None when rate limiting is off)."""
        return self._rate if self.rate_limited else None

    @property
    def tokens(self) -> float | None:
        """Tokens in the bucket now (None when rate limiting is off)."""
        with self._lock:
            return self._bucket.level(self.clock.now()) if self._bucket else None

    def now(self) -> float:
        """Qomon seconds since the emulator started."""
        return self.clock.now()

    def advance(self, seconds: float) -> float:
        """Move the emulated clock ``seconds`` (Qomon seconds) forward at once.

        The bucket refills for that time, writes older than ``search_lag`` become searchable,
        and the upserts due by then are applied. Latencies already being waited are not
        shortened. Returns the new :meth:`now`.
        """
        with self._lock:
            self.clock.advance(seconds)
            now = self.clock.now()
            self._api.apply_due_upserts(now)
            return now

    def utcnow(self) -> datetime:
        """The emulated UTC time (what ``CreatedAt`` of a contact created now would say)."""
        return self.clock.utcnow()

    # -- test controls --------------------------------------------------------------------

    def add_contact(
        self, contact: Mapping[str, Any], *, created_at: datetime | None = None
    ) -> dict[str, Any]:
        """Store a contact directly (no request, no bucket), from Qomon's write model.

        The contact is searchable at once, whatever ``search_lag`` is.

        Args:
            contact: the fields as in ``POST /contacts`` ``data.contact``.
            created_at: an aware datetime for ``CreatedAt``/``UpdatedAt``/``lastchange``
                (default: the emulated now), to seed old contacts.

        Returns:
            The stored contact in the read shape, with its new ``id``.

        Raises:
            ValueError: the contact does not validate.
        """
        write = contact_write_from_dict(dict(contact))
        with self._lock:
            try:
                stored = self._store.create(write, "contact", created_at=created_at)
            except Problem as problem:
                raise ValueError("; ".join(e.message for e in problem.errors)) from None
            self._index.seed(stored)
            return self._store.render(stored)

    def accept_key(self, api_key: str) -> None:
        """Accept another key for the same space (same contacts, same bucket)."""
        with self._lock:
            self._keys.add(api_key)

    def revoke(self, api_key: str | None = None) -> None:
        """Stop accepting ``api_key`` (default: every key): from now on requests get 401."""
        with self._lock:
            if api_key is None:
                self._keys.clear()
            else:
                self._keys.discard(api_key)

    def spend(self, tokens: float) -> None:
        """Take ``tokens`` from the bucket, as another consumer of the space would."""
        with self._lock:
            if self._bucket is not None:
                self._bucket.spend(tokens, self.clock.now())

    def drain(self) -> None:
        """Empty the bucket."""
        self.spend(float("inf"))

    def refill(self) -> None:
        """Fill the bucket to capacity."""
        with self._lock:
            if self._bucket is not None:
                self._bucket.fill(self.clock.now())

    def inject(
        self,
        fault: Fault,
        *,
        route: str | None = None,
        when: Callable[[RequestInfo], bool] | None = None,
        nth: int | Collection[int] | None = None,
        from_nth: int | None = None,
        times: int | None = None,
        probability: float | None = None,
    ) -> FaultRule:
        """Make ``fault`` strike the requests the filter selects.

        Filter by route first, then by body: the predicate then only sees the requests of
        that route (a predicate that raises is reported, see :attr:`errors`)::

            fake.inject(
                DropAfterProcessing(),
                route="POST /contacts",
                when=lambda r: (r.contact or {}).get("mail") == "jeanne@example.org",
                nth=1,
            )

        Args:
            fault: what happens (see :mod:`qomon_async.testing` for the kinds).
            route: ``"METHOD /path"`` with ``{x}`` for a segment, e.g. ``"POST /contacts"``
                or ``"PATCH /contacts/{id}"``; default every request.
            when: a predicate on :class:`RequestInfo` (method, path, route, decoded body,
                ``.contact`` for ``body["data"]["contact"]`` or None).
            nth: strike the nth matching request (1-based), or each of several numbers.
            from_nth: strike every matching request from the nth on.
            times: strike at most this many times.
            probability: strike each matching request with this probability, drawn from the
                emulator's seeded generator.

        Without ``nth``, ``from_nth``, ``times`` or ``probability`` the fault strikes every
        matching request. Rules are tried in the order they were added; latencies add up,
        and the first other fault that strikes wins.

        Returns:
            The rule (``.fired`` counts its strikes; ``.remove()`` disables it).
        """
        rule = FaultRule(
            {fault: 1.0 if probability is None else probability},
            route=route,
            when=when,
            nth=nth,
            from_nth=from_nth,
            times=times,
            random_draw=probability is not None,
        )
        return self._faults.add(rule)

    def inject_mix(
        self,
        weights: Mapping[Fault, float],
        *,
        route: str | None = None,
        when: Callable[[RequestInfo], bool] | None = None,
        times: int | None = None,
    ) -> FaultRule:
        """Strike each matching request with at most one of ``weights``' faults, at random.

        ``weights`` maps each fault to its probability (their sum is at most 1; the rest is
        the chance of no fault). Draws come from the seeded generator, so a run with the same
        seed and the same request order sees the same faults.
        """
        rule = FaultRule(weights, route=route, when=when, times=times, random_draw=True)
        return self._faults.add(rule)

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._faults.clear()

    def apply_pending_upserts(self) -> int:
        """Apply every accepted upsert now instead of after its delay; return how many."""
        with self._lock:
            numbers = sorted(self._api.pending)
            for number in numbers:
                self._api.apply_upsert(number)
            return len(numbers)

    async def wait_for_upserts(self, timeout: float = 10.0) -> None:
        """Wait until no upsert is pending (polling; works from any event loop).

        Raises:
            TimeoutError: some upsert is still pending after ``timeout`` real seconds.
        """
        deadline = time.monotonic() + timeout
        step = min(0.05, max(0.001, self.clock.to_real(self.upsert_delay) / 4))
        while self._api.pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._api.pending)} upserts still pending")
            await asyncio.sleep(step)

    # -- serving --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving in the running event loop."""
        if self._runner is not None:
            raise RuntimeError("FakeQomon is already started")
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        self.clock.start(self._loop)
        self._api.loop = self._loop
        self._reset_bucket()
        # One catch-all route: routing, auth, bucket and faults are decided in `_handle`.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=self.shutdown_timeout
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def aclose(self) -> None:
        """Stop serving; pending upserts are abandoned."""
        runner, self._runner = self._runner, None
        if self._closing is not None:
            self._closing.set()
        with self._lock:
            self._api.cancel_upserts()
        if runner is not None:
            await runner.cleanup()

    def _raise_errors(self, exc: BaseException | None) -> None:
        # A block already failing keeps its own exception: ours were logged as they came.
        errors = self.errors
        if errors and exc is None and self.raise_errors:
            raise errors[0]

    async def __aenter__(self) -> FakeQomon:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        self._raise_errors(exc)

    def start_in_thread(self) -> None:
        """Start serving on a background thread that runs its own event loop."""
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self.start())
            except BaseException as error:
                self._thread_error = error
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
                loop.run_until_complete(self.aclose())
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="FakeQomon", daemon=True)
        self._thread.start()
        ready.wait()
        if self._thread_error is not None:
            self._thread.join()
            raise self._thread_error

    def stop_thread(self) -> None:
        """Stop the background thread started by :meth:`start_in_thread`."""
        thread, self._thread = self._thread, None
        if thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        thread.join()

    def __enter__(self) -> FakeQomon:
        self.start_in_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_thread()
        self._raise_errors(exc)

    # -- the request pipeline -------------------------------------------------------------

    def _reset_bucket(self) -> None:
        self._bucket = (
            TokenBucket(self._capacity, self._rate, self.clock.now()) if self.rate_limited else None
        )

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            return scheme.lower() == "bearer" and token.strip() in self._keys

    async def _sleep(self, qomon_seconds: float) -> None:
        if qomon_seconds <= 0:
            return
        assert self._closing is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.clock.to_real(qomon_seconds))

    def _ratelimit_headers(
        self, answer: BucketAnswer, retry_after: float | str | None = None
    ) -> dict[str, str]:
        assert self._bucket is not None
        headers = {
            "X-Ratelimit-Limit": (
                f"burst:{int(self._bucket.capacity)};"
                f"rate:{_rate(self._bucket.rate * self.clock.time_scale)}"
            ),
            "X-Ratelimit-Remaining": str(math.floor(answer.remaining + 1e-9)),
            "X-Ratelimit-Cost": str(answer.cost),
            "X-Ratelimit-Reset": _number(self.clock.to_real(answer.until_full)),
        }
        if retry_after is None:
            retry_after = answer.retry_after
        if retry_after is not None:
            headers["Retry-After"] = self._retry_after(retry_after)
        return headers

    def _retry_after(self, value: float | str) -> str:
        # A string is sent as given (an HTTP date, a huge value); a number is Qomon seconds.
        return value if isinstance(value, str) else _number(self.clock.to_real(value))

    def _report(self, error: Exception, cause: BaseException | None = None) -> None:
        _logger.error("%s", error, exc_info=cause)
        with self._lock:
            self._errors.append(error)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handle_control(self, request)
        with self._lock:
            self._count += 1
            number = self._count
        path = request.path.rstrip("/") or "/"
        ex = Exchange(
            number,
            request.method.upper(),
            path,
            self.clock.now(),
            self.clock.real_elapsed(),
            request.headers.get(CLIENT_HEADER),
            route=f"? {path}",
        )
        try:
            return await self._serve(request, ex)
        except Exception as error:
            if ex.logged:
                raise  # the answer was decided (e.g. the client left while it was written)
            # A failure of the emulator itself: answer 500 and make sure the test hears of it.
            message = f"FakeQomon failed on request #{number} {ex.method} {path}: {error!r}"
            self._report(RuntimeError(message), error)
            ex.error = message
            return self._send(ex, self._problem(Problem(500, message), path))
        finally:
            if not ex.logged:
                # Cut off before an answer was decided (the client went away): still logged.
                self._log(ex, None)

    async def _serve(self, request: web.Request, ex: Exchange) -> web.StreamResponse:
        try:
            ex.raw_body = await request.read()
        except web.HTTPException as error:  # 413: beyond client_max_size
            return self._send(ex, self._problem(Problem(error.status, error.reason), ex.path))
        except Exception as error:  # the client went away while sending its body
            ex.error = f"request body not received: {error!r}"
            self._log(ex, None)
            return self._drop(request)
        body_error: str | None = None
        if ex.raw_body.strip():
            try:
                ex.body = msgspec.json.decode(ex.raw_body)
            except (msgspec.DecodeError, RecursionError) as error:  # too deep: malformed too
                body_error = f"malformed JSON: {error}"
        route, params, allowed = self._api.match(ex.method, ex.path)
        if route is not None:
            ex.route = f"{ex.method} {route.template}"
        info = RequestInfo(ex.number, ex.method, ex.path, ex.route, ex.body, request.headers)
        decision = self._faults.decide(info)
        for predicate_error in decision.errors:
            self._report(predicate_error)
        if decision.errors:
            ex.error = "; ".join(str(e) for e in decision.errors)
        ex.faults, ex.extra_headers = decision.struck, decision.headers
        await self._sleep(decision.latency + self.latency)
        if "id" in params and params["id"].isdigit():
            ex.contact_id = int(params["id"])

        fault = decision.fault
        if fault is not None and not fault.after_processing:
            return await self._fault_before(request, ex, fault)
        if not self._authorized(request):
            # Qomon wants a Bearer key; an unauthenticated request does not touch the bucket.
            answer = self._problem(Problem(401, "missing or invalid bearer token"), ex.path)
            answer.headers["WWW-Authenticate"] = 'Bearer realm="qomon"'
            return self._send(ex, answer)
        with self._lock:
            if self._bucket is not None:
                cost = route.cost if route else 1
                decided = self._bucket.take(cost, self.clock.now())
                ex.headers = self._ratelimit_headers(decided)
                ex.remaining = int(ex.headers["X-Ratelimit-Remaining"])
                if not decided.allowed:
                    problem = Problem(429, "rate limit exceeded: see Retry-After")
                    return self._send(ex, self._problem(problem, ex.path))
                ex.cost = cost
            answer = self._process(
                ex, route, params, allowed=allowed, body=ex.body, body_error=body_error
            )
        if fault is not None:
            return await self._fault_after(request, ex, fault, answer)
        return self._send(ex, answer)

    def _process(
        self,
        ex: Exchange,
        route: Route | None,
        params: dict[str, str],
        *,
        allowed: list[str],
        body: Any,
        body_error: str | None,
    ) -> Answer:
        try:
            if route is None:
                if allowed:
                    problem = Problem(405, f"{ex.method} is not allowed on {ex.path}")
                    answer = self._problem(problem, ex.path)
                    answer.headers["Allow"] = ", ".join(allowed)
                    return answer
                raise Problem(404, f"no route {ex.method} {ex.path}")
            if body_error is not None:
                raise bad_json(body_error)
            return route.handler(ex, body, params)
        except Problem as problem:
            return self._problem(problem, ex.path)

    def _problem(self, problem: Problem, path: str) -> Answer:
        return Answer(problem.status, problem.body(path), PROBLEM_CONTENT_TYPE)

    def _log(self, ex: Exchange, status: int | None) -> None:
        ex.logged = True
        record = RequestRecord(
            ex.number,
            ex.method,
            ex.path,
            ex.route,
            status,
            ex.time,
            ex.real_time,
            ex.cost,
            ex.remaining,
            ex.contact_id,
            ex.faults,
            body=ex.body,
            raw_body=ex.raw_body,
            client=ex.client,
            error=ex.error,
        )
        with self._lock:
            self._requests.append(record)

    @staticmethod
    def _headers(ex: Exchange, *more: Mapping[str, str]) -> dict[str, str]:
        # Rate-limit headers, then the answer's own, then those of ExtraHeaders faults.
        headers = dict(ex.headers)
        for extra in more:
            headers.update(extra)
        headers.update(ex.extra_headers)
        return headers

    def _response(self, ex: Exchange, answer: Answer) -> web.Response:
        headers = self._headers(ex, answer.headers)
        if answer.body is None:
            return web.Response(status=answer.status, headers=headers)
        response = web.Response(status=answer.status, body=_encode(answer.body), headers=headers)
        response.content_type = answer.content_type
        return response

    def _send(self, ex: Exchange, answer: Answer) -> web.Response:
        self._log(ex, answer.status)
        return self._response(ex, answer)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        # Closing the transport before anything is written: the client sees the server
        # disconnect with no status line (aiohttp: ServerDisconnectedError).
        if request.transport is not None:
            request.transport.close()
        return web.Response()

    async def _fault_before(
        self, request: web.Request, ex: Exchange, fault: Fault
    ) -> web.StreamResponse:
        if isinstance(fault, DropBeforeProcessing):
            self._log(ex, None)
            return self._drop(request)
        if isinstance(fault, RateLimited):
            with self._lock:
                if self._bucket is not None:
                    now = self.clock.now()
                    level, until_full = self._bucket.level(now), self._bucket.until_full(now)
                    ex.headers = self._ratelimit_headers(
                        BucketAnswer(False, 0, level, until_full, None), fault.retry_after
                    )
                    ex.remaining = int(ex.headers["X-Ratelimit-Remaining"])
                else:
                    ex.headers = {"Retry-After": self._retry_after(fault.retry_after)}
            problem = Problem(429, "rate limit exceeded: see Retry-After")
            return self._send(ex, self._problem(problem, ex.path))
        if isinstance(fault, Unauthorized):
            problem = Problem(fault.status, "missing or invalid bearer token")
            return self._send(ex, self._problem(problem, ex.path))
        if isinstance(fault, (NonJsonBody, RawAnswer)):
            return self._send_raw(ex, fault)
        if isinstance(fault, Redirect):
            return self._send_redirect(ex, fault, None)
        if isinstance(fault, StreamedBody):
            return await self._send_stream(request, ex, fault)
        assert isinstance(fault, ErrorBeforeProcessing), fault
        problem = Problem(fault.status, "injected failure before processing")
        return self._send(ex, self._problem(problem, ex.path))

    def _send_raw(self, ex: Exchange, fault: NonJsonBody | RawAnswer) -> web.Response:
        self._log(ex, fault.status)
        if isinstance(fault, NonJsonBody):
            body, own_headers = fault.body.encode(), {}
        else:
            body, own_headers = fault.body, dict(fault.headers)
        headers = self._headers(ex, own_headers)
        response = web.Response(status=fault.status, body=body, headers=headers)
        if not any(name.lower() == "content-type" for name in headers):
            response.content_type = fault.content_type
        return response

    def _send_redirect(self, ex: Exchange, fault: Redirect, answer: Answer | None) -> web.Response:
        redirect = Answer(fault.status)
        if answer is not None and fault.with_body:
            redirect = Answer(fault.status, answer.body, answer.content_type)
        if fault.location is not None:
            redirect.headers["Location"] = fault.location
        return self._send(ex, redirect)

    async def _send_stream(
        self, request: web.Request, ex: Exchange, fault: StreamedBody
    ) -> web.StreamResponse:
        self._log(ex, fault.status)
        response = web.StreamResponse(status=fault.status, headers=self._headers(ex))
        response.content_type = fault.content_type
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        with contextlib.suppress(ConnectionError):  # the client went away: the point of it
            while fault.repeat is None or sent < fault.repeat:
                await response.write(fault.chunk)
                sent += 1
            await response.write_eof()
        return response

    async def _fault_after(
        self, request: web.Request, ex: Exchange, fault: Fault, answer: Answer
    ) -> web.StreamResponse:
        if isinstance(fault, DropAfterProcessing):
            self._log(ex, None)
            return self._drop(request)
        if isinstance(fault, ErrorAfterProcessing):
            problem = Problem(fault.status, "injected failure after processing")
            return self._send(ex, self._problem(problem, ex.path))
        if isinstance(fault, SlowAnswer):
            self._log(ex, answer.status)
            await self._sleep(fault.seconds)
            return self._response(ex, answer)
        if isinstance(fault, (NonJsonBody, RawAnswer)):
            return self._send_raw(ex, fault)
        if isinstance(fault, Redirect):
            return self._send_redirect(ex, fault, answer)
        if isinstance(fault, StreamedBody):
            return await self._send_stream(request, ex, fault)
        assert isinstance(fault, TruncatedBody), fault
        self._log(ex, answer.status)
        data = _encode(answer.body) if answer.body is not None else b"{}"
        response = web.StreamResponse(status=answer.status, headers=self._headers(ex))
        response.content_type = answer.content_type
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: int(len(data) * fault.fraction)])
        if request.transport is not None:
            request.transport.close()
        return response
