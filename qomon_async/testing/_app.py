"""``FakeQomon``: the aiohttp.web application, its routes, and how it is served."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

import msgspec
from aiohttp import web

from ._bucket import BucketAnswer, TokenBucket
from ._clock import QomonClock
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
    RequestInfo,
    SlowAnswer,
    TruncatedBody,
    Unauthorized,
)
from ._problems import PROBLEM_CONTENT_TYPE, FieldError, Problem, unprocessable
from ._search import page_of, parse_search, run_search
from ._seed import FORM_TYPES, GROUP_ID, build_actions, public_form
from ._store import ContactStore, UnknownIdPolicy, UpsertOutcome, contact_write_from_dict
from ._validate import ContactWrite, bad_json, parse_contact, parse_upsert, require_object

_JSON = "application/json"
_encode = msgspec.json.encode


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator received, as logged in ``FakeQomon.requests``."""

    number: int
    """1-based arrival order."""
    method: str
    path: str
    route: str
    """The route template (``"PATCH /contacts/{id}"``), or ``"? <path>"`` for an unknown one."""
    status: int | None
    """The status answered, or None when no answer was sent (connection dropped)."""
    time: float
    """Arrival, in Qomon seconds since the emulator started."""
    real_time: float
    """Arrival, in real seconds since the emulator started."""
    cost: int
    """Tokens charged to the bucket (0 when rejected or not authenticated)."""
    remaining: int | None
    """The ``X-Ratelimit-Remaining`` sent, if any."""
    contact_id: int | None
    """The contact created or addressed, if any."""
    faults: tuple[Fault, ...] = ()
    """The injected faults that struck this request."""


@dataclass(frozen=True)
class UpsertRecord:
    """One accepted ``POST /contacts/upsert`` and what became of it (``FakeQomon.upserts``)."""

    number: int
    """The request number that carried it."""
    data: dict[str, Any]
    """The ``data`` object as sent."""
    received_at: float
    """Qomon seconds since start when it was accepted."""
    outcome: Literal["pending", "created", "updated", "dropped"] = "pending"
    contact_id: int | None = None
    reason: str | None = None
    """Why it was dropped (Qomon logs nothing; the emulator tells)."""
    applied_at: float | None = None


@dataclass
class _Exchange:
    number: int
    method: str
    path: str
    route: str
    time: float
    real_time: float
    faults: tuple[Fault, ...]
    headers: dict[str, str] = field(default_factory=dict)
    cost: int = 0
    remaining: int | None = None
    contact_id: int | None = None


@dataclass
class _Answer:
    status: int
    body: Any = None  # JSON document, or None for an empty body
    content_type: str = _JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    cost: int
    handler: Callable[[_Exchange, Any, dict[str, str]], _Answer]


def _number(value: float) -> str:
    """A duration or rate as a header value: ``1``, ``0.6``, ``0.004``."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def _rate(value: float) -> str:
    # Section 4's format keeps one decimal: `burst:100;rate:10.0`.
    return f"{value:.1f}" if abs(value * 10 - round(value * 10)) < 1e-9 else _number(value)


class FakeQomon:
    """A local emulator of the Qomon API, served by aiohttp on 127.0.0.1.

    Use it in the running event loop::

        async with FakeQomon(api_key="k", time_scale=100) as fake:
            ...  # point a client at fake.base_url with fake.api_key

    or on a background thread with its own loop (any test runner, or none)::

        with FakeQomon() as fake:
            ...

    Args:
        api_key: the key accepted as ``Authorization: Bearer <key>``.
        host, port: where to listen; port 0 picks a free port.
        capacity, rate: the token bucket (100 tokens, 10 per Qomon second); ``None`` for
            either, or ``rate_limit=False``, turns rate limiting off.
        rate_limit: False to serve without any bucket (benchmarks).
        time_scale: Qomon seconds per real second. Every duration configured here (bucket
            refill, ``upsert_delay``, fault latencies) is in Qomon seconds; with
            ``time_scale=100`` the 2 s upsert delay takes 20 ms. The rate-limit headers tell
            the scaled truth as a client measuring real time sees it.
        upsert_delay: Qomon seconds between the 202 of an upsert and its effect (about 2 s).
        latency: Qomon seconds added before every answer.
        seed: seeds the random generator of probabilistic faults.
        group_id: the space id written on contacts.
        upsert_unknown_id: ``"drop"`` (observed on Qomon: an upsert naming an unknown id is
            dropped) or ``"match"`` (documented: fall through to the other matching rules).
        start_time: the UTC time the emulated clock starts at (default: now).
        shutdown_timeout: real seconds given to in-flight requests when closing.
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
        latency: float = 0.0,
        seed: int | None = None,
        group_id: int = GROUP_ID,
        upsert_unknown_id: UnknownIdPolicy = "drop",
        start_time: datetime | None = None,
        shutdown_timeout: float = 0.25,
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
        self.upsert_delay = upsert_delay
        self.latency = latency
        self.shutdown_timeout = shutdown_timeout
        self._lock = threading.RLock()
        self._store = ContactStore(
            self.clock, group_id=group_id, upsert_unknown_id=upsert_unknown_id
        )
        self._actions = build_actions()
        self._faults = FaultPlan(seed)
        self._requests: list[RequestRecord] = []
        self._upserts: list[UpsertRecord] = []
        self._upsert_index: dict[int, int] = {}
        self._pending: dict[int, tuple[ContactWrite, asyncio.TimerHandle | None]] = {}
        self._count = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self._routes = self._build_routes()
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
    def requests(self) -> list[RequestRecord]:
        """Every request received, in arrival order (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def contacts(self) -> dict[int, dict[str, Any]]:
        """The stored contacts in the read shape, keyed by id in id order (a snapshot)."""
        with self._lock:
            return {cid: self._store.render(c) for cid, c in sorted(self._store.contacts.items())}

    @property
    def upserts(self) -> list[UpsertRecord]:
        """Every accepted upsert and its outcome (``pending`` until applied)."""
        with self._lock:
            return list(self._upserts)

    @property
    def forms(self) -> list[dict[str, Any]]:
        """The seeded forms, as ``GET /forms/{id}`` shows them."""
        return [public_form(form) for form in self._store.forms]

    @property
    def tokens(self) -> float | None:
        """Tokens in the bucket now (None when rate limiting is off)."""
        with self._lock:
            return self._bucket.level(self.clock.now()) if self._bucket else None

    def now(self) -> float:
        """Qomon seconds since the emulator started."""
        return self.clock.now()

    def utcnow(self) -> datetime:
        """The emulated UTC time (what ``CreatedAt`` of a contact created now would say)."""
        return self.clock.utcnow()

    # -- test controls --------------------------------------------------------------------

    def add_contact(
        self, contact: Mapping[str, Any], *, created_at: datetime | None = None
    ) -> dict[str, Any]:
        """Store a contact directly (no request, no bucket), from Qomon's write model.

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

        Args:
            fault: what happens (see :mod:`qomon_async.testing` for the kinds).
            route: ``"METHOD /path"`` with ``{x}`` for a segment, e.g. ``"POST /contacts"``
                or ``"PATCH /contacts/{id}"``; default every request.
            when: a predicate on :class:`RequestInfo` (method, path, route, decoded body).
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
            numbers = sorted(self._pending)
            for number in numbers:
                self._apply_upsert(number)
            return len(numbers)

    async def wait_for_upserts(self, timeout: float = 10.0) -> None:
        """Wait until no upsert is pending (polling; works from any event loop).

        Raises:
            TimeoutError: some upsert is still pending after ``timeout`` real seconds.
        """
        deadline = time.monotonic() + timeout
        step = min(0.05, max(0.001, self.clock.to_real(self.upsert_delay) / 4))
        while self._pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._pending)} upserts still pending")
            await asyncio.sleep(step)

    # -- serving --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving in the running event loop."""
        if self._runner is not None:
            raise RuntimeError("FakeQomon is already started")
        self._loop = asyncio.get_running_loop()
        self._closing = asyncio.Event()
        self.clock.start(self._loop)
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
            for _, handle in self._pending.values():
                if handle is not None:
                    handle.cancel()
        if runner is not None:
            await runner.cleanup()

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

    # -- the request pipeline -------------------------------------------------------------

    def _reset_bucket(self) -> None:
        self._bucket = (
            TokenBucket(self._capacity, self._rate, self.clock.now()) if self.rate_limited else None
        )

    def _build_routes(self) -> list[_Route]:
        def route(method: str, template: str, cost: int, handler: Any) -> _Route:
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            return _Route(method, template, re.compile(f"^{regex}$"), cost, handler)

        # Section 4: the synchronous contact writes cost 5 tokens, everything else 1.
        return [
            route("POST", "/contacts/upsert", 1, self._upsert),
            route("POST", "/contacts", 5, self._create),
            route("GET", "/contacts/{id}", 1, self._get),
            route("PATCH", "/contacts/{id}", 5, self._patch),
            route("DELETE", "/contacts/{id}", 1, self._delete),
            route("POST", "/search", 1, self._search),
            route("POST", "/kpi", 1, self._kpi),
            route("GET", "/v1/forms/type/{type}", 1, self._forms_by_type),
            route("GET", "/forms/{form}", 1, self._forms_legacy),
            route("GET", "/actions", 1, self._list_actions),
        ]

    def _match_route(
        self, method: str, path: str
    ) -> tuple[_Route | None, dict[str, str], list[str]]:
        allowed: list[str] = []
        for candidate in self._routes:
            found = candidate.pattern.match(path)
            if found is None:
                continue
            if candidate.method == method:
                return candidate, found.groupdict(), allowed
            allowed.append(candidate.method)
        return None, {}, allowed

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

    def _ratelimit_headers(self, answer: BucketAnswer) -> dict[str, str]:
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
        if answer.retry_after is not None:
            headers["Retry-After"] = _number(self.clock.to_real(answer.retry_after))
        return headers

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self._count += 1
            number = self._count
        arrived, arrived_real = self.clock.now(), self.clock.real_elapsed()
        method = request.method.upper()
        path = request.path.rstrip("/") or "/"
        raw = await request.read()
        body: Any = None
        body_error: str | None = None
        if raw.strip():
            try:
                body = msgspec.json.decode(raw)
            except msgspec.DecodeError as error:
                body_error = f"malformed JSON: {error}"
        route, params, allowed = self._match_route(method, path)
        template = f"{method} {route.template}" if route else f"? {path}"
        info = RequestInfo(number, method, path, template, body, request.headers)
        latency, fault, struck = self._faults.decide(info)
        await self._sleep(latency + self.latency)
        ex = _Exchange(number, method, path, template, arrived, arrived_real, struck)
        if "id" in params and params["id"].isdigit():
            ex.contact_id = int(params["id"])

        if fault is not None and not fault.after_processing:
            return await self._fault_before(request, ex, fault)
        if not self._authorized(request):
            # Section 2: Bearer key; an unauthenticated request does not touch the bucket.
            answer = self._problem(Problem(401, "missing or invalid bearer token"), path)
            answer.headers["WWW-Authenticate"] = 'Bearer realm="qomon"'
            return self._send(ex, answer)
        with self._lock:
            if self._bucket is not None:
                cost = route.cost if route else 1
                decision = self._bucket.take(cost, self.clock.now())
                ex.headers = self._ratelimit_headers(decision)
                ex.remaining = int(ex.headers["X-Ratelimit-Remaining"])
                if not decision.allowed:
                    problem = Problem(429, "rate limit exceeded: see Retry-After")
                    return self._send(ex, self._problem(problem, path))
                ex.cost = cost
            answer = self._process(
                ex, route, params, allowed=allowed, body=body, body_error=body_error
            )
        if fault is not None:
            return await self._fault_after(request, ex, fault, answer)
        return self._send(ex, answer)

    def _process(
        self,
        ex: _Exchange,
        route: _Route | None,
        params: dict[str, str],
        *,
        allowed: list[str],
        body: Any,
        body_error: str | None,
    ) -> _Answer:
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

    def _problem(self, problem: Problem, path: str) -> _Answer:
        return _Answer(problem.status, problem.body(path), PROBLEM_CONTENT_TYPE)

    def _log(self, ex: _Exchange, status: int | None) -> None:
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
        )
        with self._lock:
            self._requests.append(record)

    def _response(self, ex: _Exchange, answer: _Answer) -> web.Response:
        headers = {**ex.headers, **answer.headers}
        if answer.body is None:
            return web.Response(status=answer.status, headers=headers)
        response = web.Response(status=answer.status, body=_encode(answer.body), headers=headers)
        response.content_type = answer.content_type
        return response

    def _send(self, ex: _Exchange, answer: _Answer) -> web.Response:
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
        self, request: web.Request, ex: _Exchange, fault: Fault
    ) -> web.StreamResponse:
        if isinstance(fault, DropBeforeProcessing):
            self._log(ex, None)
            return self._drop(request)
        if isinstance(fault, RateLimited):
            with self._lock:
                if self._bucket is not None:
                    level = self._bucket.level(self.clock.now())
                    until_full = self._bucket.until_full(self.clock.now())
                    ex.headers = self._ratelimit_headers(
                        BucketAnswer(False, 0, level, until_full, fault.retry_after)
                    )
                    ex.remaining = int(ex.headers["X-Ratelimit-Remaining"])
                else:
                    ex.headers = {"Retry-After": _number(self.clock.to_real(fault.retry_after))}
            problem = Problem(429, "rate limit exceeded: see Retry-After")
            return self._send(ex, self._problem(problem, ex.path))
        if isinstance(fault, Unauthorized):
            problem = Problem(fault.status, "missing or invalid bearer token")
            return self._send(ex, self._problem(problem, ex.path))
        if isinstance(fault, NonJsonBody):
            return self._send_raw(ex, fault)
        assert isinstance(fault, ErrorBeforeProcessing), fault
        problem = Problem(fault.status, "injected failure before processing")
        return self._send(ex, self._problem(problem, ex.path))

    def _send_raw(self, ex: _Exchange, fault: NonJsonBody) -> web.Response:
        self._log(ex, fault.status)
        response = web.Response(status=fault.status, text=fault.body, headers=ex.headers)
        response.content_type = fault.content_type
        return response

    async def _fault_after(
        self, request: web.Request, ex: _Exchange, fault: Fault, answer: _Answer
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
        if isinstance(fault, NonJsonBody):
            return self._send_raw(ex, fault)
        assert isinstance(fault, TruncatedBody), fault
        self._log(ex, answer.status)
        data = _encode(answer.body) if answer.body is not None else b"{}"
        response = web.StreamResponse(status=answer.status, headers=ex.headers)
        response.content_type = answer.content_type
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: int(len(data) * fault.fraction)])
        if request.transport is not None:
            request.transport.close()
        return response

    # -- contacts (section 7) -------------------------------------------------------------

    @staticmethod
    def _contact_id(params: dict[str, str]) -> int:
        if not params["id"].isdigit():
            raise unprocessable([FieldError("path.contactId", "expected integer", params["id"])])
        return int(params["id"])

    @staticmethod
    def _contact_body(body: Any) -> dict[str, Any]:
        if body is None:
            raise Problem(400, "a JSON body is required", [FieldError("body", "required")])
        data = require_object(body, "body", "data")
        return require_object(data, "body.data", "contact")

    def _envelope(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"status": "success", "data": data}

    def _create(self, ex: _Exchange, body: Any, params: dict[str, str]) -> _Answer:
        write = parse_contact(self._contact_body(body), "body.data.contact")
        stored = self._store.create(write, "body.data.contact")
        ex.contact_id = stored.id
        return _Answer(200, self._envelope({"contact": self._store.render(stored)}))

    def _get(self, ex: _Exchange, body: Any, params: dict[str, str]) -> _Answer:
        stored = self._store.get(self._contact_id(params))
        return _Answer(200, self._envelope({"contact": self._store.render(stored)}))

    def _patch(self, ex: _Exchange, body: Any, params: dict[str, str]) -> _Answer:
        contact_id = self._contact_id(params)
        self._store.get(contact_id)
        write = parse_contact(self._contact_body(body), "body.data.contact")
        stored = self._store.replace(contact_id, write, "body.data.contact")
        return _Answer(200, self._envelope({"contact": self._store.render(stored)}))

    def _delete(self, ex: _Exchange, body: Any, params: dict[str, str]) -> _Answer:
        self._store.delete(self._contact_id(params))
        return _Answer(204)

    def _upsert(self, ex: _Exchange, body: Any, params: dict[str, str]) -> _Answer:
        if body is None:
            raise Problem(400, "a JSON body is required", [FieldError("body", "required")])
        write = parse_upsert(body)
        self._upsert_index[ex.number] = len(self._upserts)
        self._upserts.append(UpsertRecord(ex.number, dict(body["data"]), self.clock.now()))
        handle = None
        if self._loop is not None:
            # Section 7.6 [OBS]: 202 at once, the change visible about 2 s later.
            delay = self.clock.to_real(self.upsert_delay)
            handle = self._loop.call_later(delay, self._apply_upsert, ex.number)
        self._pending[ex.number] = (write, handle)
        return _Answer(202)

    def _apply_upsert(self, number: int) -> None:
        with self._lock:
            pending = self._pending.pop(number, None)
            if pending is None:
                return
            write, handle = pending
            if handle is not None:
                handle.cancel()
            outcome: UpsertOutcome = self._store.apply_upsert(write)
            index = self._upsert_index[number]
            self._upserts[index] = replace(
                self._upserts[index],
                outcome=outcome.outcome,
                contact_id=outcome.contact_id,
                reason=outcome.reason,
                applied_at=self.clock.now(),
            )

    # -- search (section 8) ---------------------------------------------------------------

    def _search_body(self, body: Any, *, per_page_required: bool) -> Any:
        if body is None:
            raise Problem(400, "a JSON body is required", [FieldError("body", "required")])
        return parse_search(
            body, self._store, self.clock.utcnow(), per_page_required=per_page_required
        )

    def _search(self, ex: _Exchange, body: Any, params: dict[str, str]) -> _Answer:
        query = self._search_body(body, per_page_required=True)
        contacts = []
        for stored in page_of(run_search(self._store, query), query):
            item = self._store.render(stored)
            if query.include_interactions:
                item["interactions"] = []
            contacts.append(item)
        return _Answer(200, self._envelope({"contacts": contacts}))

    def _kpi(self, ex: _Exchange, body: Any, params: dict[str, str]) -> _Answer:
        query = self._search_body(body, per_page_required=False)
        return _Answer(200, self._envelope({"total": len(run_search(self._store, query))}))

    # -- forms and actions (sections 9 and 10) --------------------------------------------

    def _forms_of_type(self, form_type: str, location: str) -> _Answer:
        if form_type not in FORM_TYPES:
            message = f"expected one of {', '.join(FORM_TYPES)}"
            raise unprocessable([FieldError(location, message, form_type)])
        forms = [public_form(f) for f in self._store.forms if f["_category"] == form_type]
        return _Answer(200, self._envelope({"forms": forms}))

    def _forms_by_type(self, ex: _Exchange, body: Any, params: dict[str, str]) -> _Answer:
        return self._forms_of_type(params["type"], "path.type")

    def _forms_legacy(self, ex: _Exchange, body: Any, params: dict[str, str]) -> _Answer:
        # One template for two routes: a number is a form id, anything else a type (section 9).
        key = params["form"]
        if key.isdigit():
            form = self._store.forms_by_id.get(int(key))
            if form is None:
                raise Problem(404, f"form {key} not found")
            return _Answer(200, self._envelope({"form": public_form(form)}))
        answer = self._forms_of_type(key, "path.type")
        answer.headers["Deprecation"] = "true"
        answer.headers["Link"] = f'</v1/forms/type/{key}>; rel="successor-version"'
        return answer

    def _list_actions(self, ex: _Exchange, body: Any, params: dict[str, str]) -> _Answer:
        return _Answer(200, self._envelope({"ActionsAggreg": self._actions}))
