"""The create protocol: one ``POST /contacts`` awaited to a confirmed id, never a twin.

``POST /contacts`` is not idempotent. The client sends a create again only where it surely was
not processed (no connection, a 429, a 503). After an ambiguous failure (a timeout or a
connection lost after sending, 500/502/504, a 2xx without a readable id) it *reconciles*: it
looks the contact up by mail (``eql:strictdata``) and names among the contacts created since
the attempt, returns it when found, and sends again only when it is surely absent. Where it
cannot tell, the outcome is :class:`~qomon_async.OutcomeUnknownError`.

:class:`CreateProtocol` is that loop. ``QomonClient.create_contact`` and the bulk pool both call
it; it reaches the network only through the two callables it is given (one request, one search),
so it knows nothing of the client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Mapping
from typing import Any, Protocol

from . import _http, _protocol
from ._config import RetryPolicy
from ._exceptions import (
    APIConnectionError,
    OutcomeUnknownError,
    QomonError,
    ResponseDecodeError,
    ServerError,
)
from ._models import Contact
from ._query import Condition, Query
from ._retry import is_ambiguous, retry_wait
from ._stats import ClientStats

__all__ = [
    "CreateOutcome",
    "CreateProtocol",
    "InDoubtStore",
    "Request",
    "Search",
    "identity_key",
    "maybe_await",
]

logger = logging.getLogger("qomon_async")


class Request(Protocol):
    """One request with the retry policy (the client's ``_request``)."""

    def __call__(
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
    ) -> Awaitable[_http.RawResponse]: ...


#: Every contact matching a query, page after page (the client's ``search_contacts``).
Search = Callable[[Query], AsyncIterator[Contact]]


def identity_key(data: Mapping[str, Any]) -> str | None:
    """The key of a contact for in-doubt records: a digest of its mail and names, or None
    without a mail. Never the mail itself (the key may be stored in Redis)."""
    mail = _protocol.fold(data.get("mail"))
    if not mail:
        return None
    text = "\x1f".join(
        (mail, _protocol.fold(data.get("firstname")), _protocol.fold(data.get("surname")))
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class InDoubtStore(Protocol):
    """Where creates whose outcome is unknown are remembered beyond the call that sent them.

    A create cancelled or timed out after sending is recorded under :func:`identity_key`; a
    later create of the same contact looks it up and reconciles before sending. Implementations:
    ``MemoryInDoubtStore`` (one client) and the Redis bucket's (every process of a space).
    """

    async def record(self, key: str, started_at: dt.datetime, ttl: float) -> None:
        """Remember that a create of ``key`` began at ``started_at`` (UTC) and may have landed;
        forget it after ``ttl`` seconds. The earliest start of several records is kept."""
        ...

    async def lookup(self, key: str) -> dt.datetime | None:
        """The earliest start of an in-doubt create of ``key``, or None."""
        ...

    async def clear(self, key: str) -> None:
        """The create of ``key`` is settled (found, or surely absent and sent again)."""
        ...


async def maybe_await(value: Awaitable[None] | None) -> None:
    """Await a hook's result when it returned an awaitable (hooks may be sync or async)."""
    if value is not None:
        await value


@dataclasses.dataclass(frozen=True)
class CreateOutcome:
    """The confirmed contact of one create, with how it was obtained."""

    contact: Contact
    attempts: int
    reconciled: bool


class CreateProtocol:
    """The create loop of one client: attempt, reconcile, send again only when surely absent.

    Args:
        request: sends one request with the retry policy.
        search: every contact matching a query.
        stats: the client's counters (reconciliations).
        retry: the default retry policy.
        reconcile_margin: seconds subtracted from an attempt's start when searching for the
            contact an ambiguous create may have made (clock skew between client and Qomon).
        reconcile_delay: seconds to wait after an ambiguous create before each search for it.
        in_doubt: where creates whose outcome is unknown are remembered beyond one call (a
            shared bucket's store, seen by every process of the space), or None.
    """

    def __init__(
        self,
        *,
        request: Request,
        search: Search,
        stats: ClientStats,
        retry: RetryPolicy,
        reconcile_margin: float,
        reconcile_delay: float,
        in_doubt: InDoubtStore | None = None,
    ) -> None:
        self._request = request
        # Minimal hook: the store is kept here for the in-doubt logic of the create loop, which
        # records and looks up creates through it.
        self.in_doubt = in_doubt
        self._search = search
        self.stats = stats
        self.retry = retry
        self.reconcile_margin = reconcile_margin
        self.reconcile_delay = reconcile_delay

    async def create(
        self,
        data: Mapping[str, Any],
        *,
        reconcile: bool,
        retry: RetryPolicy | None,
        timeout: float | None,
        in_doubt_since: dt.datetime | None = None,
        abort: Callable[[], BaseException | None] | None = None,
        on_attempt: Callable[[dt.datetime], Awaitable[None] | None] | None = None,
        attempts_out: list[int] | None = None,
        exclude: Container[int] = (),
    ) -> CreateOutcome:
        """The create loop shared by ``create_contact`` and the bulk pool.

        ``in_doubt_since``: an earlier attempt (another run) may have created the contact at or
        after this time; it is looked up before anything is sent. ``abort``: see :meth:`_send`.
        ``on_attempt(started_at)`` is awaited before each round of sending (a journal records
        it durably first). ``attempts_out`` receives the count of requests sent, whatever the
        outcome. ``exclude``: contact ids that reconciliation may not claim.
        """
        policy = retry or self.retry
        body = _protocol.contact_body(data)
        attempts = attempts_out if attempts_out is not None else []
        # One budget for the whole create: the policy's attempts and total time bound every
        # request of every round, not each round afresh.
        deadline = time.monotonic() + policy.max_time
        if in_doubt_since is not None:
            found = await self.reconcile(data, in_doubt_since, cause=None, exclude=exclude)
            if found is not None:
                return CreateOutcome(found, 0, reconciled=True)
        rounds = 0
        while True:
            rounds += 1
            started = dt.datetime.now(dt.timezone.utc)
            await maybe_await(on_attempt(started) if on_attempt is not None else None)
            round_policy = dataclasses.replace(
                policy,
                max_attempts=max(policy.max_attempts - len(attempts), 1),
                max_time=max(deadline - time.monotonic(), 0.0),
            )
            try:
                response = await self._request(
                    "POST",
                    "/contacts",
                    body=body,
                    idempotent=False,
                    retry=round_policy,
                    timeout=timeout,
                    attempts=attempts,
                    abort=abort,
                )
                contact = _protocol.decode_contact(response.status, response.body)
                return CreateOutcome(contact, len(attempts), reconciled=False)
            except (ServerError, APIConnectionError, ResponseDecodeError) as exc:
                if not is_ambiguous(exc):
                    raise
                if not reconcile:
                    raise OutcomeUnknownError(
                        f"the create may have been stored ({exc}); reconciliation is off",
                        cause=exc,
                        attempt_started_at=started,
                        reconciliation="not attempted",
                    ) from exc
                # Qomon may store the contact after failing to answer (a gateway's 504, a
                # timeout), and its search may lag behind a write: let it land, look, and look
                # once more before concluding that nothing was stored.
                found = None
                for _look in range(2):
                    if self.reconcile_delay > 0:
                        await asyncio.sleep(self.reconcile_delay)
                    found = await self.reconcile(data, started, cause=exc, exclude=exclude)
                    if found is not None:
                        return CreateOutcome(found, len(attempts), reconciled=True)
                out_of_budget = len(attempts) >= policy.max_attempts or time.monotonic() >= deadline
                if out_of_budget or (abort is not None and abort() is not None):
                    # Surely absent, and out of attempts: nothing was created; the cause stands.
                    raise
                wait = retry_wait(policy, exc, rounds)
                logger.info(
                    "create surely did not land (%s); sending it again in %.3f s", exc, wait
                )
                await asyncio.sleep(wait)

    async def reconcile(
        self,
        data: Mapping[str, Any],
        since: dt.datetime,
        *,
        cause: BaseException | None,
        exclude: Container[int] = (),
    ) -> Contact | None:
        """The contact an ambiguous create made, None if surely absent; else OutcomeUnknownError.

        Candidates: same mail (exactly) and names (case-folded), created since ``since`` less
        the clock margin, not in ``exclude`` (contacts other items of a bulk run already
        claimed). Those created after ``since`` are preferred; two or more equally good
        candidates cannot be told apart, and the outcome stays unknown.
        """
        mail = data.get("mail")
        if not isinstance(mail, str) or not mail.strip():
            raise OutcomeUnknownError(
                f"the create may have been stored ({cause or 'earlier attempt'}), and the contact "
                "has no mail to look it up by",
                cause=cause,
                attempt_started_at=since,
                reconciliation="no mail to search by",
            )
        self.stats.reconciliations += 1
        conditions = [
            Condition("mail", "eql:strictdata", mail.strip()),
            Condition("CreatedAt", "gte", since - dt.timedelta(seconds=self.reconcile_margin)),
        ]
        try:
            candidates = [c async for c in self._search(Query.where(*conditions))]
        except QomonError as exc:
            raise OutcomeUnknownError(
                f"the create may have been stored ({cause or 'earlier attempt'}), and the lookup "
                f"failed: {exc}",
                cause=cause,
                attempt_started_at=since,
                reconciliation=f"search failed: {exc}",
            ) from exc
        matches = [c for c in candidates if _same_person(c, data) and c.id not in exclude]
        recent = [c for c in matches if c.created_at is not None and c.created_at >= since]
        best = recent or matches
        if not best:
            logger.info("reconciliation: no contact with this mail created since %s", since)
            return None
        if len(best) > 1:
            raise OutcomeUnknownError(
                f"the create may have been stored ({cause or 'earlier attempt'}), and "
                f"{len(best)} contacts match it (ids {', '.join(str(c.id) for c in best[:5])})",
                cause=cause,
                attempt_started_at=since,
                reconciliation=f"{len(best)} candidates",
            )
        self.stats.reconciled += 1
        logger.info("reconciliation: the ambiguous create did land, as contact %s", best[0].id)
        return best[0]


def _same_person(found: Contact, data: Mapping[str, Any]) -> bool:
    """Whether a contact found by mail is the one the create wrote (names compared exactly,
    case-folded; Qomon's ``eql`` is a prefix match, §8.1)."""
    if _protocol.fold(found.mail) != _protocol.fold(data.get("mail")):
        return False
    return all(
        _protocol.fold(getattr(found, key)) == _protocol.fold(data.get(key))
        for key in ("firstname", "surname")
        if data.get(key)
    )
