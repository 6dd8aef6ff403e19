"""What the emulator keeps of what it received: one record per request, one per upsert."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ._faults import Fault, contact_of


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator received, as logged in ``FakeQomon.requests``.

    Every request gets one, whatever became of it: answered, rejected (400, 401, 404, 422,
    429), struck by a fault, dropped, or cut off by the client.
    """

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
    body: Any = None
    """The request body decoded from JSON (a dict for Qomon's routes); None when the body was
    empty or not JSON (see ``raw_body``)."""
    raw_body: bytes = field(default=b"", repr=False)
    """The request body exactly as received."""
    client: str | None = None
    """The ``X-Fake-Client`` header, if the caller sent one: a tag telling clients apart
    (e.g. one per process) in a run shared by several."""
    error: str | None = None
    """What went wrong on the emulator's side while handling this request (a fault predicate
    that raised, an emulator bug), else None. Also in ``FakeQomon.errors``."""

    @property
    def contact(self) -> dict[str, Any] | None:
        """``body["data"]["contact"]`` (a create or PATCH), or None when the body has none."""
        return contact_of(self.body)

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON values (what ``GET /__fake__/requests`` serves)."""
        return {
            "number": self.number,
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "status": self.status,
            "time": self.time,
            "real_time": self.real_time,
            "cost": self.cost,
            "remaining": self.remaining,
            "contact_id": self.contact_id,
            "faults": [repr(fault) for fault in self.faults],
            "body": self.body,
            "client": self.client,
            "error": self.error,
        }


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
