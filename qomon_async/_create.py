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
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Mapping
from typing import Any, Protocol

import msgspec

from . import _bodies, _http, _protocol
from ._budget import Budget
from ._claims import Claims
from ._claims import aware as _aware
from ._config import RetryPolicy
from ._exceptions import (
    APIConnectionError,
    OutcomeUnknownError,
    QomonError,
    ResponseDecodeError,
    ServerError,
)
from ._indoubt import InDoubtStore, MemoryInDoubtStore, identity_key
from ._models import ConfirmedContact, Contact, confirmed
from ._query import Condition, Query
from ._retry import is_ambiguous, retry_wait
from ._stats import ClientStats

__all__ = [
    "NAME_FIELDS",
    "Claims",
    "CreateOutcome",
    "CreateProtocol",
    "Request",
    "Search",
    "lookup_schedule",
    "maybe_await",
    "same_person",
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
        max_wait: float | Budget | None = None,
    ) -> Awaitable[_http.RawResponse]: ...


#: Every contact matching a query, page after page (the client's ``search_contacts``).
Search = Callable[[Query], AsyncIterator[Contact]]


def lookup_schedule(lag: float) -> tuple[float, ...]:
    """The waits before each lookup of an ambiguous create: growing, summing to ``lag``.

    ``lag=5`` gives 0.5, 1, 1.5 and 2 s: a contact Qomon's search shows up to 5 s after it was
    stored is found by the last lookup at the latest. ``lag=0``: four lookups in a row.
    """
    return tuple(max(lag, 0.0) * share for share in (0.1, 0.2, 0.3, 0.4))


async def maybe_await(value: Awaitable[None] | None) -> None:
    """Await a hook's result when it returned an awaitable (hooks may be sync or async)."""
    if value is not None:
        await value


class CreateOutcome(msgspec.Struct, frozen=True, gc=False):
    """The confirmed contact of one create, with how it was obtained."""

    # A Struct the garbage collector does not track (it holds a contact, itself untracked, and
    # atomic values: it cannot be part of a cycle): one create allocates no tracked object for
    # it, where a dataclass instance and its dict were two, counted toward every collection.

    contact: ConfirmedContact
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
        reconcile_lag: how far (seconds) Qomon's search may lag behind a stored create: after
            an ambiguous failure the contact is looked up after waits of 10%, 20%, 30% and 40%
            of it (5 s: 0.5, 1, 1.5 and 2 s), and sent again only when all four miss it.
        in_doubt: where creates cancelled or left unknown after sending are remembered, so that
            a later create of the same contact reconciles first (None: not remembered).
        in_doubt_ttl: seconds an in-doubt record is kept (a day by default).
    """

    #: Seconds of drift allowed between Qomon's clock and the offset learned from the last
    #: confirmed create (see :meth:`reconcile`).
    clock_slack: float = 5.0
    #: The largest clock offset believed (seconds, a day): a CreatedAt further from this
    #: machine's clock than that is not learned from.
    max_offset: float = 86400.0

    def __init__(
        self,
        *,
        request: Request,
        search: Search,
        stats: ClientStats,
        retry: RetryPolicy,
        reconcile_margin: float,
        reconcile_lag: float = 5.0,
        in_doubt: InDoubtStore | None = None,
        in_doubt_ttl: float = 86400.0,
    ) -> None:
        if reconcile_lag < 0 or reconcile_margin < 0:
            raise ValueError("reconcile_lag and reconcile_margin must not be negative")
        if in_doubt_ttl <= 0:
            raise ValueError("in_doubt_ttl must be positive")
        self._request = request
        self._search = search
        self.stats = stats
        self.retry = retry
        self.reconcile_margin = reconcile_margin
        self.reconcile_lag = reconcile_lag
        self.schedule = lookup_schedule(reconcile_lag)
        self.in_doubt = in_doubt
        self.in_doubt_ttl = in_doubt_ttl
        # Qomon's clock minus ours, at most (seconds), from the last confirmed create.
        self._offset: float | None = None
        # Records being written in the background (a store that is not in memory), by key.
        self._recording: dict[str, asyncio.Task[None]] = {}

    def qomon_seconds(self, now: float) -> float | None:
        """``now`` (``time.time()``, this machine's clock) on Qomon's clock at the earliest, or
        None before a create was confirmed (until then, :attr:`reconcile_margin` covers the
        skew)."""
        offset = self._offset  # _on_qomon_clock's arithmetic inline: asked once per bulk item
        return None if offset is None else now + offset - self.clock_slack

    def _on_qomon_clock(self, now: float, offset: float | None) -> float | None:
        return None if offset is None else now + offset - self.clock_slack

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
        after this time; it is looked up before anything is sent (so is a record of the
        client's in-doubt store). ``abort``: see the client's ``_request``.
        ``on_attempt(started_at)`` is awaited before each round of sending (a journal records it
        durably first).
        ``attempts_out`` receives the count of requests sent, whatever the outcome. ``exclude``:
        contact ids that reconciliation may not claim (the bulk pool's :class:`Claims` with
        ``dedupe=False``; nothing with dedupe, where no two items are one person).
        """
        attempts = attempts_out if attempts_out is not None else []
        store = self.in_doubt
        key: str | None = None
        recorded = False
        if store is not None and not (isinstance(store, MemoryInDoubtStore) and not store):
            key = identity_key(data)
        if key is not None:
            recorded_at = await self._lookup_record(key)
            if recorded_at is not None:
                recorded = True
                if in_doubt_since is None or recorded_at < in_doubt_since:
                    in_doubt_since = recorded_at
        rounds = 0  # rounds of sending begun
        first_round: float | None = None  # when the first began (time.time())
        # The rounds of sending are written here, not in a coroutine of their own: one frame
        # less on every create and every resumption of it (15 bytecodes less per create).
        try:
            policy = retry or self.retry
            body = _bodies.contact_body(data)
            # One budget for the whole create: the policy's attempts and total time bound every
            # request of every round, not each round afresh.
            deadline = time.monotonic() + policy.max_time
            outcome: CreateOutcome | None = None
            if in_doubt_since is not None:
                found = await self._look(
                    data, in_doubt_since, None, cause=None, exclude=exclude, fresh=False
                )
                if found is not None:
                    outcome = CreateOutcome(confirmed(found), 0, reconciled=True)
            while outcome is None:
                started_ts = time.time()
                rounds += 1
                if first_round is None:
                    first_round = started_ts
                # Qomon's clock minus ours at the attempt's start, from what was known before
                # it: the attempt's start on Qomon's clock, if it must be searched for.
                offset = self._offset
                if on_attempt is not None:
                    await maybe_await(on_attempt(_utc(started_ts)))
                if rounds == 1:
                    round_policy = policy
                else:
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
                    created_at = contact.created_at
                    if created_at is not None:
                        self._learn_offset(created_at)
                    outcome = CreateOutcome(contact, len(attempts), False)
                except (ServerError, APIConnectionError, ResponseDecodeError) as exc:
                    if not is_ambiguous(exc):
                        raise
                    outcome = await self._after_ambiguous(
                        exc,
                        data,
                        started_ts,
                        offset,
                        reconcile=reconcile,
                        exclude=exclude,
                        attempts=attempts,
                    )
                    if outcome is not None:
                        break
                    out_of_budget = (
                        len(attempts) >= policy.max_attempts or time.monotonic() >= deadline
                    )
                    if out_of_budget or (abort is not None and abort() is not None):
                        # Surely absent, and out of attempts: nothing was created; the cause
                        # stands.
                        raise
                    wait = retry_wait(policy, exc, rounds)
                    logger.info(
                        "create surely did not land (%s); sending it again in %.3f s", exc, wait
                    )
                    await asyncio.sleep(wait)
        except asyncio.CancelledError:
            if store is not None and attempts and first_round is not None:
                key = key or identity_key(data)
                if key is not None:
                    self._record(key, _utc(first_round))
            raise
        except OutcomeUnknownError:
            if store is not None and (attempts or recorded):
                key = key or identity_key(data)
                if key is not None:
                    started_at = None if first_round is None else _utc(first_round)
                    self._record(key, started_at or in_doubt_since or _now())
            raise
        if recorded and key is not None:
            assert self.in_doubt is not None
            await self.in_doubt.clear(key)
        return outcome

    def _learn_offset(self, created_at: dt.datetime) -> None:
        """Learn Qomon's clock from a confirmed create: it stored the contact before now, so
        its clock minus ours is at least ``created_at - now``. The largest such bound is the
        tightest; a slow answer gives a looser one, which lowers the estimate by at most
        :attr:`clock_slack` (so an estimate never exceeds the latest bound by more than the
        slack that :meth:`qomon_seconds` subtracts). A naive ``created_at`` is taken as UTC."""
        sample = _aware(created_at).timestamp() - time.time()
        if abs(sample) > self.max_offset:
            # A date no clock is that far off from (a hostile or broken answer): learning it
            # would make every later date on Qomon's clock overflow. The margin covers the skew.
            logger.warning(
                "ignoring a CreatedAt %.0f s away from this machine's clock: not Qomon's clock",
                sample,
            )
            return
        previous = self._offset
        if previous is None or sample >= previous:
            self._offset = sample
        elif sample + self.clock_slack < previous:
            # min(previous, sample + slack), written only when it moves (rarely: a slow answer).
            self._offset = sample + self.clock_slack

    async def _lookup_record(self, key: str) -> dt.datetime | None:
        assert self.in_doubt is not None
        pending = self._recording.get(key)
        if pending is not None:
            # A record written in the background by a cancelled create: let it land first.
            await asyncio.wait([pending])
        return await self.in_doubt.lookup(key)

    def _record(self, key: str, started: dt.datetime) -> None:
        """Record an in-doubt create without awaiting (the task may be being cancelled)."""
        store = self.in_doubt
        assert store is not None
        logger.info("create in doubt: recorded, a later create of it will look it up first")
        if isinstance(store, MemoryInDoubtStore):
            store.record_nowait(key, started, self.in_doubt_ttl)
            return
        task = asyncio.ensure_future(store.record(key, started, self.in_doubt_ttl))
        self._recording[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._recording.get(key) is finished:
                del self._recording[key]
            if not finished.cancelled() and finished.exception() is not None:
                logger.error("in-doubt record failed: %s", finished.exception())

        task.add_done_callback(done)

    async def _after_ambiguous(
        self,
        exc: QomonError,
        data: Mapping[str, Any],
        started_ts: float,
        offset: float | None,
        *,
        reconcile: bool,
        exclude: Container[int],
        attempts: list[int],
    ) -> CreateOutcome | None:
        """After a round that may have stored the contact: the contact it stored (looked up on
        the lag schedule), None when surely absent; :class:`OutcomeUnknownError` otherwise."""
        started = _utc(started_ts)
        if not reconcile:
            raise OutcomeUnknownError(
                f"the create may have been stored ({exc}); reconciliation is off",
                cause=exc,
                attempt_started_at=started,
                reconciliation="not attempted",
            ) from exc
        # Qomon may store the contact after failing to answer (a gateway's 504, a timeout), and
        # its search may lag behind a write: look on a schedule that covers the lag before
        # concluding that nothing was stored.
        on_qomon = self._on_qomon_clock(started_ts, offset)
        not_before = _utc(on_qomon) if on_qomon is not None else None
        found = await self._look(data, started, not_before, cause=exc, exclude=exclude, fresh=True)
        if found is not None:
            return CreateOutcome(confirmed(found), len(attempts), reconciled=True)
        return None

    async def _look(
        self,
        data: Mapping[str, Any],
        since: dt.datetime,
        not_before: dt.datetime | None,
        *,
        cause: BaseException | None,
        exclude: Container[int],
        fresh: bool,
    ) -> Contact | None:
        """Look the contact up on the lag schedule; None when every lookup missed it.

        ``fresh``: the attempt just failed (wait before each lookup). Otherwise (an in-doubt
        record) one lookup at once, then those of the schedule not yet past since ``since``.
        """
        if fresh:
            for wait in self.schedule:
                if wait > 0:
                    await asyncio.sleep(wait)
                found = await self.reconcile(
                    data, since, cause=cause, exclude=exclude, not_before=not_before
                )
                if found is not None:
                    return found
            return None
        found = await self.reconcile(data, since, cause=cause, exclude=exclude)
        if found is not None:
            return found
        # The record is recent: look again until the lag it may hide behind has passed.
        elapsed = max((_now() - since).total_seconds(), 0.0)
        mark = 0.0
        for wait in self.schedule:
            mark += wait
            if mark <= elapsed:
                continue
            await asyncio.sleep(mark - elapsed)
            elapsed = mark
            found = await self.reconcile(data, since, cause=cause, exclude=exclude)
            if found is not None:
                return found
        return None

    async def reconcile(
        self,
        data: Mapping[str, Any],
        since: dt.datetime,
        *,
        cause: BaseException | None,
        exclude: Container[int] = (),
        not_before: dt.datetime | None = None,
    ) -> Contact | None:
        """The contact an ambiguous create made, None if surely absent; else OutcomeUnknownError.

        Candidates: same mail (exactly) and the very names sent (first name, surname and
        married name, case-folded; a name absent on one side and present on the other is a
        mismatch), not in ``exclude`` (contacts other items of a bulk run already obtained),
        created since the attempt began: ``not_before`` (Qomon's clock, see :meth:`qomon_seconds`)
        when known; else ``since`` less the clock margin, preferring those created after
        ``since``. Two or more equally good candidates
        cannot be told apart, and the outcome stays unknown.
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
        earliest = since - dt.timedelta(seconds=self.reconcile_margin)
        if not_before is not None and not_before < earliest:
            earliest = not_before  # Qomon's clock is behind ours by more than the margin
        conditions = [
            Condition("mail", "eql:strictdata", mail.strip()),
            Condition("CreatedAt", "gte", earliest),
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
        matches = [c for c in candidates if same_person(c, data) and c.id not in exclude]
        cutoff = not_before
        if cutoff is not None:
            best = [c for c in matches if c.created_at is None or _aware(c.created_at) >= cutoff]
        else:
            recent = [c for c in matches if c.created_at and _aware(c.created_at) >= since]
            best = recent or matches
        if isinstance(exclude, Claims) and exclude.floor is not None:
            # Claims created between the first dropped one and the floor were forgotten: a
            # candidate created then may be another item's.
            unsure = [c for c in best if exclude.forgotten(c.created_at)]
            if unsure:
                raise OutcomeUnknownError(
                    f"the create may have been stored ({cause or 'earlier attempt'}), and contact "
                    f"{unsure[0].id} matches it, but another item of the run may have obtained it",
                    cause=cause,
                    attempt_started_at=since,
                    reconciliation="candidate older than the run's remembered claims",
                )
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


#: The name fields compared by :func:`same_person`.
NAME_FIELDS = ("firstname", "surname", "married_name")


def same_person(found: Contact, data: Mapping[str, Any]) -> bool:
    """Whether a contact found by mail is the one a create of ``data`` wrote: the same mail and
    the same first name, surname and married name (case-folded, stripped), a name absent on one
    side and present on the other being a mismatch (Qomon's ``eql`` is a prefix match, so the
    mail is compared again)."""
    if _bodies.fold(found.mail) != _bodies.fold(data.get("mail")):
        return False
    return all(
        _bodies.fold(getattr(found, key)) == _bodies.fold(data.get(key)) for key in NAME_FIELDS
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
