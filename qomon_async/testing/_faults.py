"""Fault injection: what can go wrong between a client and Qomon, scripted or at random.

A fault is a small frozen value describing one failure; a rule says when it strikes (which
request, which route, what body, how often, with what probability). Durations are in Qomon
seconds, divided by the emulator's time scale in real time.

Where each fault strikes, relative to the request's processing:

- before processing, nothing stored: :class:`Latency` (then continues normally),
  :class:`ErrorBeforeProcessing`, :class:`RateLimited`, :class:`Unauthorized`,
  :class:`DropBeforeProcessing`, :class:`NonJsonBody` (by default);
- after processing, the write done: :class:`DropAfterProcessing` (the case that makes
  duplicates: the contact is stored and no answer arrives), :class:`ErrorAfterProcessing`,
  :class:`SlowAnswer`, :class:`TruncatedBody`, ``NonJsonBody(after_processing=True)``.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
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
    """Answer 429 with ``Retry-After`` (Qomon seconds) without touching the bucket."""

    retry_after: float = 1.0


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
    headers: Mapping[str, str]


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
        """Count the request if it passes the filter and return the fault to apply, if any."""
        if not self.active:
            return None
        if self._route_re is not None and not self._route_re.match(f"{info.method} {info.path}"):
            return None
        if self.when is not None and not self.when(info):
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

    def decide(self, info: RequestInfo) -> tuple[float, Fault | None, tuple[Fault, ...]]:
        """Latency to add (Qomon s), the first other fault that strikes, and all that struck.

        Every rule counts the requests that pass its filter; latencies add up, and of the
        other faults the earliest rule that strikes wins (later ones do not strike).
        """
        latency = 0.0
        main: Fault | None = None
        struck: list[Fault] = []
        with self._lock:
            for rule in self.rules:
                is_latency = all(isinstance(f, Latency) for f in rule.choices)
                fault = rule.decide(info, self.rng, may_strike=is_latency or main is None)
                if fault is None:
                    continue
                if isinstance(fault, Latency):
                    latency += fault.seconds
                else:
                    main = fault
                struck.append(fault)
        return latency, main, tuple(struck)
