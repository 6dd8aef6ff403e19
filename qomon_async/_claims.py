"""The contacts the items of a bulk run obtained, so that no two items get the same one."""

from __future__ import annotations

import datetime as dt
from array import array

from ._models import Contact

__all__ = ["Claims", "aware"]


class Claims:
    """The contacts the items of one bulk run obtained, kept only while another item could meet
    them in a reconciliation.

    A reconciliation considers contacts created since its attempt began (on Qomon's clock, as
    learned from confirmed creates); a claim created before every attempt still in flight began
    can never be a candidate again and is dropped (:meth:`drop_before`). Memory: 16 bytes per
    claim of the last seconds (the in-flight window), not one per item of the run; contacts
    found for in-doubt items (created before the run) are kept apart, one per such item.
    """

    def __init__(self) -> None:
        self._ids = array("q")
        self._times = array("q")  # created_at on Qomon's clock, microseconds since the epoch
        self._kept: set[int] = set()
        self._limit = 1024
        #: Claims created before this time (Qomon's clock) may have been dropped...
        self.floor: dt.datetime | None = None
        #: ...and none of those dropped was created before this one.
        self.dropped_from: dt.datetime | None = None

    def __len__(self) -> int:
        return len(self._ids) + len(self._kept)

    def __contains__(self, contact_id: object) -> bool:
        return contact_id in self._kept or contact_id in self._ids

    def add(self, contact: Contact, *, keep: bool = False) -> None:
        """Claim ``contact`` for an item; ``keep``: never drop it (found for an in-doubt item,
        it may be older than the run)."""
        if contact.id is None:
            return
        created = contact.created_at
        if keep or created is None or not -(2**63) <= contact.id < 2**63:
            self._kept.add(contact.id)
            return
        self._ids.append(contact.id)
        self._times.append(_micros(created))

    def full(self) -> bool:
        """Whether it is time to drop old claims (amortised: the limit doubles with the kept)."""
        return len(self._ids) >= self._limit

    def keep_all(self) -> None:
        """Nothing can be dropped yet (Qomon's clock unknown, or an item in doubt in flight):
        ask again when the claims have doubled, not on every claim."""
        self._limit = max(2 * len(self._ids), 1024)

    def drop_before(self, floor: dt.datetime) -> None:
        """Drop the claims created before ``floor`` (Qomon's clock)."""
        cut = _micros(floor)
        ids, times = array("q"), array("q")
        oldest: int | None = None
        for contact_id, created in zip(self._ids, self._times, strict=True):
            if created >= cut:
                ids.append(contact_id)
                times.append(created)
            elif oldest is None or created < oldest:
                oldest = created
        self._ids, self._times = ids, times
        self._limit = max(2 * len(ids), 1024)
        if oldest is None:
            return
        dropped = dt.datetime.fromtimestamp(oldest / 1_000_000, dt.timezone.utc)
        if self.dropped_from is None or dropped < self.dropped_from:
            self.dropped_from = dropped
        if self.floor is None or floor > self.floor:
            self.floor = floor

    def forgotten(self, created_at: dt.datetime | None) -> bool:
        """Whether a contact created then may have been claimed, and the claim dropped."""
        if created_at is None or self.floor is None or self.dropped_from is None:
            return False
        return self.dropped_from <= aware(created_at) < self.floor


def _micros(when: dt.datetime) -> int:
    return int(aware(when).timestamp() * 1_000_000)


def aware(when: dt.datetime) -> dt.datetime:
    """A time with a zone (a naive one from a search answer is taken as UTC)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)
