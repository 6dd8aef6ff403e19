"""``ensure_contact``: the contact for a mail, created if missing, with its id; one flight per mail.

The steps, for one mail:

1. look it up (``POST /search``, ``mail eql:strictdata``, as written and in lowercase; Qomon's
   ``eql`` can match by prefix, so the answers are filtered to the exact mail, case-folded);
2. none found: create it through the create protocol (an ambiguous create is reconciled, never
   sent twice); one found: return it, or with ``update=True`` write the given fields onto it
   (read, merge, write, re-read); several: the oldest (``CreatedAt``, then id) is used and the
   others are named (ids only) in a WARNING, or ``match_policy="error"`` raises
   :class:`~qomon_async.AmbiguousMatchError`.

Concurrent calls for the same mail in one process share one flight: one lookup, one create.
A call with other fields, or another ``update``/``match_policy``, waits for the flight in
progress and then makes its own (which then finds the contact). The flight runs as its own task,
so that one caller's cancellation does not cancel the others; when every caller has gone, it
is cancelled (a create still waiting for the rate limiter then sends nothing).

Qomon's search can lag behind a write: a contact created here is remembered (mail digest to id,
for a minute) so that the next call for the same mail finds it even before search does.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import functools
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, Literal, Protocol, cast

import msgspec

from . import _bodies
from ._bodies import ContactInput
from ._budget import CALL_BUDGET, Budget
from ._config import RetryPolicy
from ._create import CreateProtocol
from ._exceptions import AmbiguousMatchError, ContactValidationError, NotFoundError
from ._models import ConfirmedContact, Contact, confirmed
from ._query import Condition, Query
from ._types import ContactDict

__all__ = ["EnsureContact", "EnsureFlights", "MatchPolicy", "ensure", "mail_key"]

logger = logging.getLogger("qomon_async")

MatchPolicy = Literal["oldest", "error"]

#: How long (seconds) and how many contacts created by ``ensure_contact`` are remembered, to
#: bridge the lag of Qomon's search index behind a create.
RECENT_TTL = 60.0
RECENT_MAX = 4096

_FAR_FUTURE = dt.datetime.max.replace(tzinfo=dt.timezone.utc)


def mail_key(mail: str) -> str:
    """A digest of the folded mail: the flight's and the memory's key (never the mail itself)."""
    return hashlib.blake2b(_bodies.fold(mail).encode(), digest_size=16).hexdigest()


def _age(contact: Contact) -> tuple[dt.datetime, int]:
    created = contact.created_at
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=dt.timezone.utc)
    return (created or _FAR_FUTURE, contact.id if contact.id is not None else 2**63)


@dataclasses.dataclass
class _Flight:
    task: asyncio.Task[Contact]
    signature: bytes
    waiters: int = 0


class EnsureFlights:
    """The flights in progress (one per mail and event loop) and the contacts created recently."""

    def __init__(self) -> None:
        self._flights: dict[tuple[int, str], _Flight] = {}
        self._recent: collections.OrderedDict[str, tuple[int, float]] = collections.OrderedDict()

    def __len__(self) -> int:
        """Flights in progress (0 once every call has returned)."""
        return len(self._flights)

    def remember(self, key: str, contact_id: int) -> None:
        loop = asyncio.get_running_loop()
        self._recent[key] = (contact_id, loop.time() + RECENT_TTL)
        self._recent.move_to_end(key)
        while len(self._recent) > RECENT_MAX:
            self._recent.popitem(last=False)

    def recent(self, key: str) -> int | None:
        entry = self._recent.get(key)
        if entry is None:
            return None
        if entry[1] < asyncio.get_running_loop().time():
            del self._recent[key]
            return None
        return entry[0]

    def forget(self, key: str) -> None:
        self._recent.pop(key, None)

    async def run(
        self, key: str, signature: bytes, flight: Callable[[], Coroutine[Any, Any, Contact]]
    ) -> Contact:
        """Join the flight for ``key`` if it does the same (``signature``), else wait for it to
        end and start one; return its contact."""
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        while True:
            current = self._flights.get(slot)
            if current is None:
                current = _Flight(loop.create_task(flight()), signature)
                self._flights[slot] = current
                current.task.add_done_callback(functools.partial(self._end, slot, current))
            elif current.signature != signature:
                # Another kind of call for the same mail: let it finish, then make our own.
                await asyncio.wait([current.task])
                continue
            return await self._join(current)

    def _end(self, slot: tuple[int, str], flight: _Flight, _task: object) -> None:
        if self._flights.get(slot) is flight:
            del self._flights[slot]

    @staticmethod
    async def _join(flight: _Flight) -> Contact:
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                # Every caller has gone (cancelled): nobody wants the answer any more.
                flight.task.cancel()


def signature(data: Mapping[str, Any], *, update: bool, match_policy: str) -> bytes:
    """What makes two calls the same flight: the fields, ``update`` and the match policy."""
    return msgspec.json.encode([data, update, match_policy], order="sorted")


def require_mail(data: Mapping[str, Any], match: str) -> str:
    """The mail to match by, or ContactValidationError/ValueError naming what is wrong."""
    if match != "mail":
        raise ValueError(f"ensure_contact matches by 'mail' only, not {match!r}")
    mail = data.get("mail")
    if not isinstance(mail, str) or not mail.strip():
        raise ContactValidationError(
            "ensure_contact needs the contact's mail to look it up by", location="mail"
        )
    return mail.strip()


async def ensure(
    data: Mapping[str, Any],
    mail: str,
    *,
    flights: EnsureFlights,
    find: Callable[[str], Awaitable[list[Contact]]],
    get: Callable[[int], Awaitable[Contact]],
    create: Callable[[Mapping[str, Any]], Awaitable[Contact]],
    update: Callable[[int, Mapping[str, Any]], Awaitable[Contact]] | None,
    match_policy: MatchPolicy,
) -> Contact:
    """One flight: look up, then create, return or update (see the module's docstring)."""
    key = mail_key(mail)
    folded = _bodies.fold(mail)
    matches = list(
        {
            c.id: c for c in await find(mail) if c.id is not None and _bodies.fold(c.mail) == folded
        }.values()
    )
    if not matches:
        known = flights.recent(key)
        if known is not None:
            try:
                matches = [await get(known)]
            except NotFoundError:
                flights.forget(key)
    if not matches:
        created = await create(data)
        if created.id is not None:
            flights.remember(key, created.id)
        return created
    matches.sort(key=_age)
    chosen, others = matches[0], matches[1:]
    if others:
        ids = tuple(c.id for c in matches if c.id is not None)
        if match_policy == "error":
            raise AmbiguousMatchError(
                f"{len(matches)} contacts have this mail (ids {', '.join(map(str, ids[:10]))}"
                f"{', ...' if len(ids) > 10 else ''})",
                ids=ids,
            )
        logger.warning(
            "ensure_contact: %d contacts have the same mail; using the oldest, %s; others: %s",
            len(matches),
            chosen.id,
            ", ".join(str(c.id) for c in others[:10]) + (", ..." if len(others) > 10 else ""),
        )
    if update is not None and chosen.id is not None:
        return await update(chosen.id, data)
    return chosen


class _Host(Protocol):
    """What :class:`EnsureContact` needs of the client it is mixed into."""

    _ensures: EnsureFlights
    _creates: CreateProtocol

    def _budget(self, max_wait: float | None) -> Budget | None: ...

    def _strict(self, strict: bool | None) -> bool: ...

    def search_contacts(
        self,
        query: Query | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Contact]: ...

    async def get_contact(
        self,
        contact_id: int,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> ConfirmedContact: ...

    async def update_contact(
        self,
        contact_id: int,
        changes: ContactDict,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> ConfirmedContact: ...


class EnsureContact:
    """``QomonClient.ensure_contact``, kept beside the logic it drives."""

    async def ensure_contact(
        self: _Host,
        contact: ContactInput,
        *,
        match: Literal["mail"] = "mail",
        update: bool = False,
        match_policy: MatchPolicy = "oldest",
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_wait: float | None = None,
    ) -> ConfirmedContact:
        """The contact with this mail, created if missing: a :class:`ConfirmedContact` with
        its id.

        Looks the mail up (exactly as written, and in lowercase when it has capitals: 1 token
        each); none found: creates the contact (with the
        guarantees of :meth:`create_contact`: an ambiguous create is reconciled, never sent
        twice); found: returns it, or with ``update=True`` writes the given fields onto it
        (:meth:`update_contact`: read, merge, write, re-read). Concurrent calls for the same mail
        in this process share one lookup and one create.

        Args:
            contact: the contact (a dict in Qomon's field names, a ContactWrite); needs a mail.
            match: the field to match by (only ``"mail"``).
            update: write the given fields onto a contact found.
            match_policy: several contacts found: ``"oldest"`` uses the oldest (``CreatedAt``,
                then id) and names the others (ids only) in a WARNING log line; ``"error"``
                raises :class:`AmbiguousMatchError`.
            max_wait: seconds the whole call may wait before its requests are sent (shared by
                the calls joined on one flight: the first caller's); default: the client's.

        Costs 1 token (lookup), + 5 (create) or + 7 (``update=True``: read, write, read).

        Raises:
            ContactValidationError: no mail, or a malformed contact; nothing was sent.
            AmbiguousMatchError: several contacts have the mail and ``match_policy="error"``.
            RateLimitTimeout: the waiting would have exceeded ``max_wait``.
            OutcomeUnknownError: the create may have been stored and could not be confirmed.
        """
        data = _bodies.contact_to_dict(contact, strict=self._strict(None))
        mail = require_mail(data, match)
        budget = self._budget(max_wait)

        async def find(mail: str) -> list[Contact]:
            # Qomon's strict match is case-sensitive: look for the mail as written and, when it
            # has capitals, as most spaces store it (lowercase).
            found: list[Contact] = []
            for variant in dict.fromkeys((mail, mail.lower())):
                query = Query.where(Condition("mail", "eql:strictdata", variant))
                found += [
                    c async for c in self.search_contacts(query, retry=retry, timeout=timeout)
                ]
            return found

        async def get(contact_id: int) -> Contact:
            return await self.get_contact(contact_id, retry=retry, timeout=timeout)

        async def create(data: Mapping[str, Any]) -> Contact:
            outcome = await self._creates.create(data, reconcile=True, retry=retry, timeout=timeout)
            return outcome.contact

        async def write(contact_id: int, changes: Mapping[str, Any]) -> Contact:
            # ``changes`` was validated above: a contact dict in Qomon's field names.
            fields = cast("ContactDict", changes)
            return await self.update_contact(contact_id, fields, retry=retry, timeout=timeout)

        async def flight() -> Contact:
            CALL_BUDGET.set(budget)  # the flight's own task: its context only
            return await ensure(
                data,
                mail,
                flights=self._ensures,
                find=find,
                get=get,
                create=create,
                update=write if update else None,
                match_policy=match_policy,
            )

        found = await self._ensures.run(
            mail_key(mail),
            signature(data, update=update, match_policy=match_policy),
            flight,
        )
        return confirmed(found)
