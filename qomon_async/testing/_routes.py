"""What Qomon's routes do with the space's data: contacts, upsert, search, forms, actions.

The handlers are synchronous and free of network I/O: the app (``_app.py``) decides auth, the
bucket and faults, then calls one handler under its lock with the decoded body. A handler
returns an :class:`Answer` or raises :class:`Problem` (rendered as problem+json).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ._clock import QomonClock
from ._faults import Fault
from ._index import SearchIndex
from ._problems import FieldError, Problem, unprocessable
from ._records import UpsertRecord
from ._search import page_of, parse_search, run_search
from ._seed import FORM_TYPES, build_actions, public_form
from ._store import ContactStore, StoredContact, UpsertOutcome
from ._validate import ContactWrite, parse_contact, parse_upsert, require_object

_JSON = "application/json"


@dataclass
class Exchange:
    """One request on its way through the emulator; logged as a ``RequestRecord`` at the end."""

    number: int
    method: str
    path: str
    time: float
    real_time: float
    client: str | None
    route: str = ""
    faults: tuple[Fault, ...] = ()
    body: Any = None
    raw_body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    extra_headers: dict[str, str] = field(default_factory=dict)
    cost: int = 0
    remaining: int | None = None
    contact_id: int | None = None
    error: str | None = None
    logged: bool = False


@dataclass
class Answer:
    """What a handler answers: a status, a JSON document (None: empty body), headers."""

    status: int
    body: Any = None  # JSON document, or None for an empty body
    content_type: str = _JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    """One of Qomon's routes: method, path template, token cost, handler."""

    method: str
    template: str
    pattern: re.Pattern[str]
    cost: int
    handler: Callable[[Exchange, Any, dict[str, str]], Answer]


class QomonRoutes:
    """Qomon's routes over one space: its contacts, search index, pending upserts and seeds."""

    def __init__(
        self,
        clock: QomonClock,
        store: ContactStore,
        index: SearchIndex,
        lock: threading.RLock,
        *,
        upsert_delay: float,
    ) -> None:
        self.clock = clock
        self.store = store
        self.index = index
        self.lock = lock
        self.upsert_delay = upsert_delay
        self.loop: asyncio.AbstractEventLoop | None = None
        """The serving loop, which schedules the upserts; None until started."""
        self.actions = build_actions()
        self.upserts: list[UpsertRecord] = []
        self._upsert_index: dict[int, int] = {}
        # request number -> (write, timer, Qomon time it is due)
        self.pending: dict[int, tuple[ContactWrite, asyncio.TimerHandle | None, float]] = {}
        self._routes = self._build()

    def apply_due_upserts(self, now: float) -> None:
        """Apply the upserts due by Qomon time ``now`` (after the clock jumped)."""
        for number in sorted(n for n, (_, _, at) in self.pending.items() if at <= now):
            self.apply_upsert(number)

    def cancel_upserts(self) -> None:
        """Cancel the timers of the pending upserts (they stay pending)."""
        for _, handle, _ in self.pending.values():
            if handle is not None:
                handle.cancel()

    def _build(self) -> list[Route]:
        def route(method: str, template: str, cost: int, handler: Any) -> Route:
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            return Route(method, template, re.compile(f"^{regex}$"), cost, handler)

        # Qomon's costs: the synchronous contact writes take 5 tokens, everything else 1.
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

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[str]]:
        allowed: list[str] = []
        for candidate in self._routes:
            found = candidate.pattern.match(path)
            if found is None:
                continue
            if candidate.method == method:
                return candidate, found.groupdict(), allowed
            allowed.append(candidate.method)
        return None, {}, allowed

    # -- contacts -------------------------------------------------------------------------

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

    def _create(self, ex: Exchange, body: Any, params: dict[str, str]) -> Answer:
        write = parse_contact(self._contact_body(body), "body.data.contact")
        stored = self.store.create(write, "body.data.contact")
        ex.contact_id = stored.id
        self.index.record(stored.id, stored, self.clock.now())
        return Answer(200, self._envelope({"contact": self.store.render(stored)}))

    def _get(self, ex: Exchange, body: Any, params: dict[str, str]) -> Answer:
        stored = self.store.get(self._contact_id(params))
        return Answer(200, self._envelope({"contact": self.store.render(stored)}))

    def _patch(self, ex: Exchange, body: Any, params: dict[str, str]) -> Answer:
        contact_id = self._contact_id(params)
        self.store.get(contact_id)
        write = parse_contact(self._contact_body(body), "body.data.contact")
        stored = self.store.replace(contact_id, write, "body.data.contact")
        self.index.record(contact_id, stored, self.clock.now())
        return Answer(200, self._envelope({"contact": self.store.render(stored)}))

    def _delete(self, ex: Exchange, body: Any, params: dict[str, str]) -> Answer:
        contact_id = self._contact_id(params)
        self.store.delete(contact_id)
        self.index.record(contact_id, None, self.clock.now())
        return Answer(204)

    def _upsert(self, ex: Exchange, body: Any, params: dict[str, str]) -> Answer:
        if body is None:
            raise Problem(400, "a JSON body is required", [FieldError("body", "required")])
        write = parse_upsert(body)
        self._upsert_index[ex.number] = len(self.upserts)
        self.upserts.append(UpsertRecord(ex.number, dict(body["data"]), self.clock.now()))
        handle = None
        if self.loop is not None:
            # As observed on Qomon: 202 at once, the change visible about 2 s later.
            delay = self.clock.to_real(self.upsert_delay)
            handle = self.loop.call_later(delay, self.apply_upsert, ex.number)
        self.pending[ex.number] = (write, handle, self.clock.now() + self.upsert_delay)
        return Answer(202)

    def apply_upsert(self, number: int) -> None:
        with self.lock:
            pending = self.pending.pop(number, None)
            if pending is None:
                return
            write, handle, _ = pending
            if handle is not None:
                handle.cancel()
            outcome: UpsertOutcome = self.store.apply_upsert(write)
            if outcome.contact_id is not None:
                contact = self.store.contacts[outcome.contact_id]
                self.index.record(contact.id, contact, self.clock.now())
            index = self._upsert_index[number]
            self.upserts[index] = replace(
                self.upserts[index],
                outcome=outcome.outcome,
                contact_id=outcome.contact_id,
                reason=outcome.reason,
                applied_at=self.clock.now(),
            )

    # -- search ---------------------------------------------------------------------------

    def _search_body(self, body: Any, *, per_page_required: bool) -> Any:
        if body is None:
            raise Problem(400, "a JSON body is required", [FieldError("body", "required")])
        return parse_search(
            body, self.store, self.clock.utcnow(), per_page_required=per_page_required
        )

    def _searchable(self) -> Mapping[int, StoredContact]:
        # What Qomon's search index shows now: `search_lag` behind the store.
        return self.index.view(self.store.contacts, self.clock.now())

    def _search(self, ex: Exchange, body: Any, params: dict[str, str]) -> Answer:
        query = self._search_body(body, per_page_required=True)
        contacts = []
        for stored in page_of(run_search(self._searchable(), query), query):
            item = self.store.render(stored)
            if query.include_interactions:
                item["interactions"] = []
            contacts.append(item)
        return Answer(200, self._envelope({"contacts": contacts}))

    def _kpi(self, ex: Exchange, body: Any, params: dict[str, str]) -> Answer:
        query = self._search_body(body, per_page_required=False)
        return Answer(200, self._envelope({"total": len(run_search(self._searchable(), query))}))

    # -- forms and actions ----------------------------------------------------------------

    def _forms_of_type(self, form_type: str, location: str) -> Answer:
        if form_type not in FORM_TYPES:
            message = f"expected one of {', '.join(FORM_TYPES)}"
            raise unprocessable([FieldError(location, message, form_type)])
        forms = [public_form(f) for f in self.store.forms if f["_category"] == form_type]
        return Answer(200, self._envelope({"forms": forms}))

    def _forms_by_type(self, ex: Exchange, body: Any, params: dict[str, str]) -> Answer:
        return self._forms_of_type(params["type"], "path.type")

    def _forms_legacy(self, ex: Exchange, body: Any, params: dict[str, str]) -> Answer:
        # One template for two routes: a number is a form id, anything else a type.
        key = params["form"]
        if key.isdigit():
            form = self.store.forms_by_id.get(int(key))
            if form is None:
                raise Problem(404, f"form {key} not found")
            return Answer(200, self._envelope({"form": public_form(form)}))
        answer = self._forms_of_type(key, "path.type")
        answer.headers["Deprecation"] = "true"
        answer.headers["Link"] = f'</v1/forms/type/{key}>; rel="successor-version"'
        return answer

    def _list_actions(self, ex: Exchange, body: Any, params: dict[str, str]) -> Answer:
        return Answer(200, self._envelope({"ActionsAggreg": self.actions}))
