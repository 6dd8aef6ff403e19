"""``watch_contacts``: the contacts created or updated since a point in time, as they change.

Qomon has no webhooks; its documented substitute is polling ``POST /search`` on ``UpdatedAt``
(``UpdatedAt gte <time>``, 1,000 per page, paging until a short page). :class:`ContactWatch`
does that for as long as it is iterated:

* each poll asks for every contact with ``UpdatedAt`` at or after the *mark* (the latest
  ``UpdatedAt`` delivered) less an *overlap* window, so that a change whose timestamp is a
  little older than the mark (clock skew between Qomon's hosts, a search index catching up) is
  still found;
* what the overlap brings back twice is recognised by its key ``(id, UpdatedAt)``: each change
  is delivered once (a contact changed twice is delivered twice, once per change). Only the
  keys within the overlap window are kept, so memory stays bounded;
* changes are delivered oldest first (``UpdatedAt``, then id); the *cursor*
  (:class:`WatchCursor`) always describes what has been delivered, so a bot that persists it
  after handling each change and passes it back after a restart resumes without missing or
  repeating one;
* each page costs one token of the client's rate limiter, like any search.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from ._budget import check_max_wait
from ._config import DEFAULT_WATCH_INTERVAL, DEFAULT_WATCH_OVERLAP, RetryPolicy
from ._models import Contact
from ._query import Condition, Group, Query

__all__ = ["ContactWatch", "Search", "WatchContacts", "WatchCursor"]

logger = logging.getLogger("qomon_async")

#: A search: every contact matching the query, page after page, ``max_wait`` per page.
Search = Callable[[Query, float | None], AsyncIterator[Contact]]

_UTC = dt.timezone.utc


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)


def _iso(value: dt.datetime) -> str:
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> dt.datetime:
    return _utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))


@dataclasses.dataclass(frozen=True)
class WatchCursor:
    """Where a :class:`ContactWatch` stands: persist it, pass it back to resume.

    Attributes:
        mark: the latest ``UpdatedAt`` delivered (or the watch's start), UTC.
        floor: no change older than this is delivered (the start, then the mark less the
            overlap as the watch moves on), UTC.
        seen: ``(id, UpdatedAt)`` of the changes delivered at or after ``floor``.

    ``to_json()`` gives a short string; ``WatchCursor.from_json(text)`` reads it back.
    """

    mark: dt.datetime
    floor: dt.datetime
    seen: tuple[tuple[int, dt.datetime], ...] = ()

    def to_json(self) -> str:
        """The cursor as a JSON string (version 1)."""
        return json.dumps(
            {
                "v": 1,
                "mark": _iso(self.mark),
                "floor": _iso(self.floor),
                "seen": [[cid, _iso(at)] for cid, at in self.seen],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> WatchCursor:
        """Read a cursor written by :meth:`to_json`; ValueError if it is not one."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("v") != 1:
                raise ValueError("not a version-1 watch cursor")
            return cls(
                mark=_parse(data["mark"]),
                floor=_parse(data["floor"]),
                seen=tuple((int(cid), _parse(at)) for cid, at in data["seen"]),
            )
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a watch cursor: {exc}") from None


def with_condition(query: Query | None, condition: Condition) -> Query:
    """``query`` AND ``condition``, in Qomon's two-level shape.

    Raises:
        ValueError: an OR root with an OR group (``(a or b) or (c or d)`` cannot take one more
            AND condition in two levels).
    """
    if query is None or not query.groups:
        return Query.where(condition)
    if query.kind == "all":
        return Query("all", (*query.groups, Group.all(condition)))
    groups = []
    for group in query.groups:
        if group.kind != "all" and len(group.conditions) > 1:
            raise ValueError(
                "watch_contacts cannot add its UpdatedAt condition to an OR query whose groups "
                "are ORs; write the query as an OR of AND groups"
            )
        groups.append(Group.all(*group.conditions, condition))
    return Query("any", tuple(groups))


class ContactWatch:
    """An async iterator of the contacts created or updated since a point in time.

    Built by :meth:`QomonClient.watch_contacts`; iterate it with ``async for``, read
    :attr:`cursor` after handling each contact to persist where the watch stands. It polls
    forever: stop by leaving the loop, by :meth:`aclose`, or by cancelling the task.

    A poll that fails (after the client's retries) raises its error out of the iteration; the
    watch and its cursor stay as they were, and iterating again polls again after the interval.
    """

    def __init__(
        self,
        search: Search,
        query: Query | None,
        *,
        since: dt.datetime | None,
        interval: float,
        cursor: WatchCursor | None,
        overlap: float,
        max_wait: float | None,
    ) -> None:
        if interval < 0 or overlap < 0:
            raise ValueError("interval and overlap must not be negative")
        if cursor is not None and since is not None:
            raise ValueError("pass since= or cursor=, not both")
        # Check the query now rather than at the first poll.
        with_condition(query, Condition("UpdatedAt", "gte", dt.datetime.now(_UTC)))
        self._search = search
        self._query = query
        self.interval = interval
        self.overlap = dt.timedelta(seconds=overlap)
        self._max_wait = max_wait
        if cursor is None:
            start = _utc(since) if since is not None else dt.datetime.now(_UTC)
            cursor = WatchCursor(mark=start, floor=start)
        self._mark = _utc(cursor.mark)
        self._floor = _utc(cursor.floor)
        self._seen: dict[tuple[int, dt.datetime], None] = dict.fromkeys(
            (cid, _utc(at)) for cid, at in cursor.seen
        )
        self._buffer: collections.deque[tuple[tuple[int, dt.datetime], Contact]] = (
            collections.deque()
        )
        self._next_poll: float | None = None
        self._closed = False
        #: Polls made so far (each is one search, one token per page).
        self.polls = 0

    def __repr__(self) -> str:
        return (
            f"<ContactWatch mark={_iso(self._mark)} polls={self.polls} pending={len(self._buffer)}>"
        )

    @property
    def cursor(self) -> WatchCursor:
        """Where the watch stands, counting only the contacts already delivered."""
        floor = self._window_floor()
        seen = tuple(sorted((k for k in self._seen if k[1] >= floor), key=lambda k: (k[1], k[0])))
        return WatchCursor(mark=self._mark, floor=floor, seen=seen)

    def __aiter__(self) -> ContactWatch:
        return self

    async def __anext__(self) -> Contact:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            await self._poll()
        key, contact = self._buffer.popleft()
        self._seen[key] = None
        self._mark = max(self._mark, key[1])
        return contact

    async def aclose(self) -> None:
        """Stop: the iteration ends (changes fetched and not yet delivered are dropped; the
        cursor does not count them, so a resumed watch delivers them)."""
        self._closed = True
        self._buffer.clear()

    def _window_floor(self) -> dt.datetime:
        return max(self._floor, self._mark - self.overlap)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        if self._next_poll is not None:
            delay = self._next_poll - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        self._next_poll = loop.time() + self.interval
        # Forget what fell out of the overlap window: no poll asks for it any more.
        floor = self._floor = self._window_floor()
        self._seen = {k: None for k in self._seen if k[1] >= floor}
        query = with_condition(self._query, Condition("UpdatedAt", "gte", floor))
        fresh: dict[tuple[int, dt.datetime], Contact] = {}
        skipped = 0
        async for contact in self._search(query, self._max_wait):
            updated = contact.updated_at
            if contact.id is None or updated is None:
                skipped += 1
                continue
            key = (contact.id, _utc(updated))
            if key[1] >= floor and key not in self._seen:
                fresh[key] = contact
        self.polls += 1
        if skipped:
            logger.debug("watch_contacts: %d contacts without id or UpdatedAt skipped", skipped)
        for key in sorted(fresh, key=lambda k: (k[1], k[0])):
            self._buffer.append((key, fresh[key]))
        logger.debug(
            "watch_contacts: poll %d from %s: %d new changes", self.polls, _iso(floor), len(fresh)
        )

    # Typed hook for ``async with client.watch_contacts(...) as watch``.
    async def __aenter__(self) -> ContactWatch:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()


class _Host(Protocol):
    """What :class:`WatchContacts` needs of the client it is mixed into."""

    def search_contacts(
        self,
        query: Query | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_wait: float | None = None,
    ) -> AsyncIterator[Contact]: ...


class WatchContacts:
    """``QomonClient.watch_contacts``, kept beside the iterator it builds."""

    def watch_contacts(
        self: _Host,
        query: Query | None = None,
        *,
        since: dt.datetime | None = None,
        interval: float = DEFAULT_WATCH_INTERVAL,
        cursor: WatchCursor | None = None,
        overlap: float = DEFAULT_WATCH_OVERLAP,
        max_wait: float | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> ContactWatch:
        """The contacts created or updated since ``since``, as they change, for as long as the
        returned :class:`ContactWatch` is iterated (``async for contact in watch``).

        Polls ``POST /search`` for ``UpdatedAt`` at or after the latest change delivered less
        ``overlap`` (and ``query``'s conditions), every ``interval`` seconds, 1,000 contacts a
        page (1 token each, through the client's rate limiter). Each change (contact id and
        ``UpdatedAt``) is delivered once, oldest first. ``watch.cursor`` describes what has been
        delivered: persist ``watch.cursor.to_json()`` and pass
        ``cursor=WatchCursor.from_json(text)`` to resume without missing or repeating a change.

        Args:
            query: only contacts matching it (an AND root, or an OR of AND groups).
            since: the start (an aware datetime; naive is taken as UTC); default: now. Not with
                ``cursor``.
            interval: seconds between the starts of two polls.
            cursor: resume where a watch stood (from :attr:`ContactWatch.cursor`).
            overlap: seconds of ``UpdatedAt`` looked at again at each poll, against clock skew
                and search lag; what they bring back twice is not delivered twice.
            max_wait: seconds each page's request may wait for the rate limiter.
        """

        async def search(query: Query, max_wait: float | None) -> AsyncIterator[Contact]:
            async for contact in self.search_contacts(
                query, retry=retry, timeout=timeout, max_wait=max_wait
            ):
                yield contact

        return ContactWatch(
            search,
            query,
            since=since,
            interval=interval,
            cursor=cursor,
            overlap=overlap,
            max_wait=check_max_wait(max_wait),
        )
