"""Fault injection: what can go wrong between a client and Qomon, scripted or at random.

A fault is a small frozen value describing one failure; a rule says when it strikes (which
request, which route, what body, how often, with what probability). Durations are in Qomon
seconds, divided by the emulator's time scale in real time.

Where each fault strikes, relative to the request's processing:

- before processing, nothing stored: :class:`Latency` (then continues normally),
  :class:`ErrorBeforeProcessing`, :class:`RateLimited`, :class:`Unauthorized`,
  :class:`DropBeforeProcessing`, :class:`NonJsonBody` and :class:`Redirect` (by default);
- after processing, the write done: :class:`DropAfterProcessing` (the case that makes
  duplicates: the contact is stored and no answer arrives), :class:`ErrorAfterProcessing`,
  :class:`SlowAnswer`, :class:`TruncatedBody`, :class:`RawAnswer` and
  :class:`StreamedBody` (by default),
  ``NonJsonBody(after_processing=True)``, ``Redirect(after_processing=True)``;
- on whatever answer is sent: :class:`ExtraHeaders` (like :class:`Latency`, it adds up with
  the other faults that strike the same request).

A ``when=`` predicate that raises is a bug of the test, not of the client under test: the
rule is taken as not matching (the request is answered as if the rule did not exist), the
error is logged and kept as a :class:`FaultPredicateError` in ``FakeQomon.errors``, and the
emulator raises it when its ``with``/``async with`` block ends (see ``FakeQomon``).
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Fault:
    """Base class of all faults."""

    # Not a dataclass field (no annotation): whether the request is processed first.
    after_processing = False


@dataclass(frozen=True)
class Latency(Fault):
    """Wait ``seconds`` (Qomon seconds) before handling the request, then answer normally."""

    seconds: float


@dataclass(frozen=True)
class ErrorBeforeProcessing(Fault):
    """Answer ``status`` (a 5xx by default) with a problem+json body; nothing is stored."""

    status: int = 503


@dataclass(frozen=True)
class RateLimited(Fault):
    """Answer 429 with ``Retry-After`` without touching the bucket.

    ``retry_after`` as a number is in Qomon seconds (divided by the time scale, like every
    duration of the emulator); as a string it is sent verbatim, unscaled: ``"3600"``, an
    HTTP date (``"Wed, 21 Oct 2026 07:28:00 GMT"``) or anything a broken server might send.
    """

    retry_after: float | str = 1.0


@dataclass(frozen=True)
class Unauthorized(Fault):
    """Answer 401 (or 403) as for a revoked key; nothing is stored."""

    status: int = 401


@dataclass(frozen=True)
class DropBeforeProcessing(Fault):
    """Close the connection without answering; nothing is stored."""


@dataclass(frozen=True)
class DropAfterProcessing(Fault):
    """Process the request (a create stores the contact), then close without answering."""

    after_processing = True


@dataclass(frozen=True)
class ErrorAfterProcessing(Fault):
    """Process the request, then answer ``status`` (500 by default) instead of the result."""

    after_processing = True
    status: int = 500


@dataclass(frozen=True)
class SlowAnswer(Fault):
    """Process the request, then hold the answer ``seconds`` (past any client timeout)."""

    after_processing = True
    seconds: float = 60.0


@dataclass(frozen=True)
class TruncatedBody(Fault):
    """Process the request, then send only the first ``fraction`` of the body and close."""

    after_processing = True
    fraction: float = 0.5


@dataclass(frozen=True)
class NonJsonBody(Fault):
    """Answer a body that is not JSON (by default a proxy's HTML 502 page).

    With ``after_processing=True`` the request is processed first (e.g. a 200 with garbage).
    """

    status: int = 502
    body: str = _HTML_502
    content_type: str = "text/html"
    after_processing: bool = False


@dataclass(frozen=True)
class Redirect(Fault):
    """Answer a redirect (``status``, a 3xx) with a ``Location`` header.

    Before processing (the default) nothing is stored and the body is empty. With
    ``after_processing=True`` the request is processed first (a create stores its contact);
    with ``with_body=True`` as well, the 3xx carries the body the request would have had
    (e.g. the created contact). ``location=None`` sends no ``Location`` header. The default
    location is on 127.0.0.1 port 9, where nothing listens: a client that follows it gets a
    refused connection, and a test never reaches beyond the machine.
    """

    status: int = 302
    location: str | None = "http://127.0.0.1:9/elsewhere/contacts"
    after_processing: bool = False
    with_body: bool = False


@dataclass(frozen=True, init=False)
class RawAnswer(Fault):
    """Answer ``body`` (bytes or text, sent as is) with ``status`` and ``headers``.

    By default the request is processed first (``after_processing=True``): a 200 carrying
    ``b"502 Bad Gateway"`` or a truncated ``b'{"status": "success", "data": {'`` after the
    contact was stored. ``headers`` are sent as given (``Content-Encoding: gzip`` with a
    compressed body, say; a ``Content-Type`` there wins over ``content_type``) and replace
    the rate-limit headers of the same name.
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    content_type: str
    after_processing: bool

    def __init__(
        self,
        body: bytes | str = b"",
        *,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        content_type: str = "application/json",
        after_processing: bool = True,
    ) -> None:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "body", body.encode() if isinstance(body, str) else bytes(body))
        object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in pairs))
        object.__setattr__(self, "content_type", content_type)
        object.__setattr__(self, "after_processing", after_processing)

    def __repr__(self) -> str:
        shown = self.body if len(self.body) <= 40 else self.body[:40] + b"..."
        return (
            f"RawAnswer({shown!r}, status={self.status}, headers={dict(self.headers)!r}, "
            f"after_processing={self.after_processing})"
        )


@dataclass(frozen=True)
class StreamedBody(Fault):
    """Stream ``chunk`` ``repeat`` times (chunked encoding, no length), or forever with
    ``repeat=None`` until the client goes away: a huge or endless body that the emulator never
    holds in memory. By default after processing (the contact is stored first).
    """

    chunk: bytes = b" " * 65536
    repeat: int | None = None
    status: int = 200
    content_type: str = "application/json"
    after_processing: bool = True


@dataclass(frozen=True, init=False)
class ExtraHeaders(Fault):
    """Set these headers on the answer, whatever it is (replacing those of the same name).

    For a server advertising a strange bucket, e.g.
    ``ExtraHeaders({"X-Ratelimit-Limit": "burst:100;rate:0.000000001",
    "X-Ratelimit-Remaining": "0"})``. The request is processed normally, and the bucket is
    charged as usual; other faults striking the same request still apply.
    """

    headers: tuple[tuple[str, str], ...]

    def __init__(self, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        object.__setattr__(self, "headers", tuple((str(k), str(v)) for k, v in pairs))

    def __repr__(self) -> str:
        return f"ExtraHeaders({dict(self.headers)!r})"


# Faults that modify whatever answer is sent, and add up with the others.
_MODIFIERS = (Latency, ExtraHeaders)


def contact_of(body: Any) -> dict[str, Any] | None:
    """``body["data"]["contact"]`` when it is an object, else None (never raises)."""
    data = body.get("data") if isinstance(body, dict) else None
    contact = data.get("contact") if isinstance(data, dict) else None
    return contact if isinstance(contact, dict) else None


@dataclass(frozen=True)
class RequestInfo:
    """What a fault predicate sees of a request."""

    number: int
    """1-based position of the request among all requests the emulator received."""
    method: str
    path: str
    route: str
    """The route template, e.g. ``"POST /contacts"`` or ``"GET /contacts/{id}"``."""
    body: Any
    """The decoded JSON body, or None (no body, or not JSON)."""
    headers: Mapping[str, str] = field(repr=False)
    """The request headers (kept out of the repr: they carry the API key)."""

    @property
    def contact(self) -> dict[str, Any] | None:
        """``body["data"]["contact"]`` (a create or PATCH), or None: safe in a predicate,
        ``when=lambda r: (r.contact or {}).get("mail") == "jeanne@example.org"``."""
        return contact_of(self.body)


class FaultPredicateError(Exception):
    """A fault rule's ``when=`` predicate raised: a bug of the test, not of the code tested.

    Attributes:
        rule: the :class:`FaultRule` whose predicate raised.
        request: the :class:`RequestInfo` it was called with.
        error: the exception it raised (also the ``__cause__``).
    """

    def __init__(self, rule: FaultRule, request: RequestInfo, error: BaseException) -> None:
        self.rule = rule
        self.request = request
        self.error = error
        super().__init__(
            f"fault predicate {describe_callable(rule.when)} raised {error!r} on request "
            f"#{request.number} {request.method} {request.path}; the rule was taken as not "
            f"matching (filter with route=..., or make the predicate total, e.g. with "
            f"RequestInfo.contact)"
        )
        self.__cause__ = error


def describe_callable(function: Any) -> str:
    """A callable's name and, when known, where it is defined (``file.py:12``)."""
    name = getattr(function, "__qualname__", None) or repr(function)
    code = getattr(function, "__code__", None)
    if code is not None:
        return f"{name} ({code.co_filename}:{code.co_firstlineno})"
    return name


def _route_pattern(route: str) -> re.Pattern[str]:
    method, _, path = route.strip().partition(" ")
    if not path:
        method, path = "*", method
    parts = [
        "[^/]+" if part.startswith("{") and part.endswith("}") else re.escape(part)
        for part in path.split("/")
    ]
    method_re = r"[A-Z]+" if method == "*" else re.escape(method.upper())
    return re.compile(f"^{method_re} {'/'.join(parts)}$")


class FaultRule:
    """One scripted or random fault; returned by ``FakeQomon.inject`` and friends.

    The rule counts the requests that pass its filter (``route`` and ``when``); ``nth`` and
    ``from_nth`` refer to that count, so ``nth=3`` without a route is the third request of the
    run, and with ``route="POST /contacts"`` the third create.
    """

    def __init__(
        self,
        choices: Mapping[Fault, float],
        *,
        route: str | None = None,
        when: Callable[[RequestInfo], bool] | None = None,
        nth: int | Collection[int] | None = None,
        from_nth: int | None = None,
        times: int | None = None,
        random_draw: bool = False,
    ) -> None:
        if not choices:
            raise ValueError("a fault rule needs at least one fault")
        if random_draw and sum(choices.values()) > 1.0 + 1e-9:
            raise ValueError("fault probabilities add up to more than 1")
        self.choices = dict(choices)
        self.route = route
        self._route_re = _route_pattern(route) if route else None
        self.when = when
        self.nth: frozenset[int] | None = (
            frozenset([nth]) if isinstance(nth, int) else frozenset(nth) if nth else None
        )
        self.from_nth = from_nth
        self.times = times
        self.random_draw = random_draw
        self.seen = 0
        """Requests that passed the filter so far."""
        self.fired = 0
        """Times this rule struck."""
        self.active = True

    def __repr__(self) -> str:
        faults = ", ".join(f"{fault!r}: {p:g}" for fault, p in self.choices.items())
        return (
            f"FaultRule({{{faults}}}, route={self.route!r}, nth={self.nth}, "
            f"from_nth={self.from_nth}, times={self.times}, fired={self.fired})"
        )

    def remove(self) -> None:
        """Disable the rule."""
        self.active = False

    def decide(
        self, info: RequestInfo, rng: random.Random, *, may_strike: bool = True
    ) -> Fault | None:
        """Count the request if it passes the filter and return the fault to apply, if any.

        Raises:
            FaultPredicateError: the ``when`` predicate raised.
        """
        if not self.active:
            return None
        if self._route_re is not None and not self._route_re.match(f"{info.method} {info.path}"):
            return None
        if self.when is not None:
            try:
                matched = self.when(info)
            except Exception as error:
                raise FaultPredicateError(self, info, error) from error
            if not matched:
                return None
        self.seen += 1
        if not may_strike:
            return None
        if self.nth is not None and self.seen not in self.nth:
            return None
        if self.from_nth is not None and self.seen < self.from_nth:
            return None
        if self.times is not None and self.fired >= self.times:
            return None
        fault = self._draw(rng)
        if fault is not None:
            self.fired += 1
        return fault

    def _draw(self, rng: random.Random) -> Fault | None:
        if not self.random_draw:
            return next(iter(self.choices))
        roll = rng.random()
        cumulative = 0.0
        for fault, probability in self.choices.items():
            cumulative += probability
            if roll < cumulative:
                return fault
        return None


class FaultPlan:
    """The ordered rules of one emulator and its seeded random generator."""

    def __init__(self, seed: int | None = None) -> None:
        self.rules: list[FaultRule] = []
        self.rng = random.Random(seed)
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def decide(self, info: RequestInfo) -> FaultDecision:
        """What the rules decide for one request.

        Every rule counts the requests that pass its filter; latencies and extra headers add
        up, and of the other faults the earliest rule that strikes wins (later ones do not
        strike). A rule whose predicate raises is skipped and the error returned.
        """
        decision = FaultDecision()
        struck: list[Fault] = []
        errors: list[FaultPredicateError] = []
        with self._lock:
            for rule in self.rules:
                is_modifier = all(isinstance(f, _MODIFIERS) for f in rule.choices)
                try:
                    fault = rule.decide(
                        info, self.rng, may_strike=is_modifier or decision.fault is None
                    )
                except FaultPredicateError as error:
                    errors.append(error)
                    continue
                if fault is None:
                    continue
                if isinstance(fault, Latency):
                    decision.latency += fault.seconds
                elif isinstance(fault, ExtraHeaders):
                    decision.headers.update(fault.headers)
                else:
                    decision.fault = fault
                struck.append(fault)
        decision.struck = tuple(struck)
        decision.errors = tuple(errors)
        return decision


@dataclass
class FaultDecision:
    """The faults decided for one request (see :meth:`FaultPlan.decide`)."""

    latency: float = 0.0
    """Qomon seconds to wait before handling the request."""
    fault: Fault | None = None
    """The one fault that decides the answer, if any."""
    headers: dict[str, str] = field(default_factory=dict)
    """Headers to set on the answer (:class:`ExtraHeaders`)."""
    struck: tuple[Fault, ...] = ()
    errors: tuple[FaultPredicateError, ...] = ()
