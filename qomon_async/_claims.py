"""The contacts the items of a bulk run obtained, so that no two items get the same one."""

from __future__ import annotations

import datetime as dt
from array import array

from ._models import Contact

__all__ = ["Claims", "aware", "micros"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)


class _Group:
    """The claims created within about one :attr:`Claims.span` of Qomon's clock.

    Ids are kept as 32-bit differences from the group's first (ids handed out in the same
    half-second are close); the first that does not fit turns the group into 64-bit ids
    (``narrow`` then False).
    """

    __slots__ = ("base", "high", "ids", "low", "narrow", "newest", "oldest", "start")

    def __init__(self, created: int, contact_id: int, span: int) -> None:
        self.start = created  # microseconds since the epoch, Qomon's clock
        self.oldest = created
        self.newest = created
        # A claim created strictly between these joins the group.
        self.low = created - span
        self.high = created + span
        # Narrow when every id within 32 bits of the first fits 64 bits (so that the group can
        # always be widened): then a claim that joins it needs no check of its own range.
        self.narrow = -(2**62) <= contact_id < 2**62
        self.base = contact_id if self.narrow else 0
        self.ids = array("i", (0,)) if self.narrow else array("q", (contact_id,))

    def widen(self, contact_id: int) -> bool:
        """Append an id its array's type could not hold: the group turned into 64-bit ids if it
        was not yet; False (nothing appended) for an id beyond 64 bits."""
        if not -(2**63) <= contact_id < 2**63:
            return False
        if self.narrow:
            self.ids = array("q", [self.base + d for d in self.ids])
            self.base = 0
            self.narrow = False
        self.ids.append(contact_id)
        return True

    def __contains__(self, contact_id: int) -> bool:
        delta = contact_id - self.base
        if self.narrow and not -(2**31) <= delta < 2**31:
            return False
        return delta in self.ids


#: The last group of a table that has none: no claim joins it.
_NONE = _Group(0, 0, 0)


class Claims:
    """The contacts the items of one bulk run obtained, kept only while another item could meet
    them in a reconciliation.

    A reconciliation considers contacts created since its attempt began (on Qomon's clock, as
    learned from confirmed creates); a claim created before every attempt still in flight began
    can never be a candidate again and is dropped (:meth:`drop_before`). Claims are grouped by
    creation time, :attr:`span` of Qomon's clock a group, and a group is dropped whole once all
    of its claims are older than the floor: dropping costs nothing per claim kept, and the pool
    is asked to drop (:meth:`full`) each time a group begins. Memory: 4 bytes per claim of the
    last seconds (the in-flight window plus a group or two; 8 when the ids of one group lie
    more than 2**31 apart), not one per item of the run;
    contacts found for in-doubt items (created before the run) are kept apart, one per such item.
    """

    #: Microseconds of Qomon's clock one group of claims covers (a claim up to this much older
    #: than its group's first joins it too).
    span: int = 500_000

    def __init__(self) -> None:
        self._groups: list[_Group] = []
        # The newest group, that claims join (at first one that no claim joins).
        self._last = _NONE
        self._count = 0  # claims in the groups
        self._kept: set[int] = set()
        self._limit = 1024
        self._due = False  # a group began since the pool last asked
        #: Claims created before this time (Qomon's clock) may have been dropped...
        self.floor: dt.datetime | None = None
        #: ...and none of those dropped was created before this one.
        self.dropped_from: dt.datetime | None = None

    def __len__(self) -> int:
        return self._count + len(self._kept)

    def __contains__(self, contact_id: object) -> bool:
        if contact_id in self._kept:
            return True
        if not isinstance(contact_id, int):
            return False
        return any(contact_id in group for group in self._groups)

    def add(self, contact: Contact, *, keep: bool = False) -> bool:
        """Claim ``contact`` for an item; ``keep``: never drop it (found for an in-doubt item,
        it may be older than the run). Returns :meth:`full` (asked after every claim).

        Written for the bulk pool's every create: the claim appended inline in the common case,
        its id's range checked only when the array refuses it.
        """
        contact_id = contact.id
        when: int | None = None
        if not keep:
            created = contact.created_at
            if created is not None:
                when = micros(created)
        if contact_id is None:
            pass
        elif keep or when is None:
            self._kept.add(contact_id)
        else:
            # Claims arrive in nearly created-at order; one far from the last group's start (a
            # reconciled contact from seconds ago, a date from the future) begins its own
            # group, so that it never holds back the dropping of the claims around it.
            group = self._last
            if group.low < when < group.high:
                try:
                    group.ids.append(contact_id - group.base)  # the common case
                    joined = True
                except OverflowError:  # beyond the array's type (the range is checked here only)
                    joined = group.widen(contact_id)
            elif joined := -(2**63) <= contact_id < 2**63:
                self._last = group = _Group(when, contact_id, self.span)
                self._groups.append(group)
                self._due = self._due or len(self._groups) > 1
            if not joined:
                self._kept.add(contact_id)  # an id no array holds
            else:
                if when > group.newest:
                    group.newest = when
                elif when < group.oldest:
                    group.oldest = when
                self._count += 1
        return self.full()

    def full(self) -> bool:
        """Whether it is time to try dropping old claims: a group began since the last try
        (once per :attr:`span` of Qomon's clock), or the claims doubled since then."""
        return self._due or self._count >= self._limit

    def keep_all(self) -> None:
        """Nothing can be dropped yet (Qomon's clock unknown, or an item in doubt in flight):
        ask again when the next group begins or the claims have doubled, not on every claim."""
        self._due = False
        self._limit = max(2 * self._count, 1024)

    def drop_before(self, floor: dt.datetime) -> None:
        """Drop the claims created before ``floor`` (Qomon's clock), a group at a time: a group
        holding a claim created at or after ``floor`` is kept whole (keeping is always safe)."""
        cut = micros(floor)
        self._due = False
        kept: list[_Group] = []
        oldest: int | None = None
        for group in self._groups:
            if group.newest >= cut:
                kept.append(group)
                continue
            self._count -= len(group.ids)
            if oldest is None or group.oldest < oldest:
                oldest = group.oldest
        self._groups = kept
        self._last = kept[-1] if kept else _NONE
        self._limit = max(2 * self._count, 1024)
        if oldest is None:
            return
        dropped = _EPOCH + oldest * _MICROSECOND
        if self.dropped_from is None or dropped < self.dropped_from:
            self.dropped_from = dropped
        floor = aware(floor)
        if self.floor is None or floor > self.floor:
            self.floor = floor

    def forgotten(self, created_at: dt.datetime | None) -> bool:
        """Whether a contact created then may have been claimed, and the claim dropped."""
        if created_at is None or self.floor is None or self.dropped_from is None:
            return False
        return self.dropped_from <= aware(created_at) < self.floor


def micros(when: dt.datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding: a drop must not move a claim
    across the floor); a naive time is taken as UTC. ``micros(when) / 1_000_000`` is
    ``when.timestamp()`` to the last bit (both divide the same integer, correctly rounded)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    # The timedelta's fields, not a floor division by one microsecond: the same integer, in a
    # third less time (the division of two timedeltas goes through their microseconds anyway).
    since = when - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def aware(when: dt.datetime) -> dt.datetime:
    """A time with a zone (a naive one from a search answer is taken as UTC)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)
