"""Input de-duplication for the bulk pool: a compact set of 64-bit digests, spilling to disk.

A bulk run skips an item whose identity (its mail, and with ``dedupe_key="mail+names"`` its
first name and surname, case-folded) was already seen in the run. The identities are kept as
8-byte keys (Python's hash of the folded identity: SipHash, keyed at random per process) with
the 4-byte index of their first occurrence, in 64 open-addressing tables of two ``array``
columns each: 12 bytes a slot, each table at most 85% full and at least 42% after it grew, so
14 to 28 bytes per distinct item (Python ints in a dict would cost 100 to 150). The tables grow
one at a time, so a growth briefly adds 1/64 of the whole, not a copy of it. Beyond ``spill``
distinct items the table moves to a temporary SQLite file (of the same process: the keys are
never compared across processes).

Two distinct identities share a key with probability about n^2 / 2^65 (one in 10^7 for ten
million items); the later one would then be skipped as a duplicate. The hash being keyed, an
input cannot be crafted to make two persons collide.
"""

from __future__ import annotations

import logging
import sqlite3
from array import array
from collections.abc import Mapping
from typing import Any, Literal

from ._bodies import identity_text

__all__ = [
    "DEDUPE_KEYS",
    "DedupeKey",
    "SeenTable",
    "duplicate_key",
    "duplicate_message",
    "identity_digest",
]

logger = logging.getLogger("qomon_async")

DedupeKey = Literal["mail+names", "mail"]
"""What makes two input items one person: the mail and the names (the default: a family may
share a mail), or the mail alone."""

DEDUPE_KEYS: tuple[DedupeKey, ...] = ("mail+names", "mail")


def duplicate_key(data: Mapping[str, Any], dedupe_key: DedupeKey = "mail+names") -> int | None:
    """A compact key (64-bit, never 0) of the person a contact dict describes, for input
    de-duplication within this process; ``None`` without a mail (such items are never taken as
    duplicates).

    The key is Python's own hash of the folded text: SipHash, keyed at random per process, so
    nobody can build two different persons that share a key (as one could for an unkeyed
    digest), and two share one by chance with probability about n^2 / 2^65. It is not stable
    across processes (``PYTHONHASHSEED``): never store it.
    """
    digest = identity_digest(data, dedupe_key == "mail+names")
    if digest is None:
        return None
    if dedupe_key not in DEDUPE_KEYS:
        raise ValueError(f"dedupe_key must be one of {DEDUPE_KEYS}, not {dedupe_key!r}")
    return digest


def identity_digest(data: Mapping[str, Any], names: bool) -> int | None:
    """:func:`duplicate_key` of ``data`` (``names``: the key ``"mail+names"``), without the
    check of the key's name (the bulk pool checked it once, for the run)."""
    text = identity_text(data, names=names)
    if not text:
        return None
    return (hash(text) & 0xFFFF_FFFF_FFFF_FFFF) or 1  # never 0: the table's empty slot


def duplicate_message(
    what: Literal["item", "row"], number: int, first: int, dedupe_key: DedupeKey = "mail+names"
) -> str:
    """The one text of a duplicate input (a :class:`DuplicateInputError`'s message)."""
    same = "mail and names" if dedupe_key == "mail+names" else "mail"
    earlier = f"{what} {first}" if first >= 0 else f"an earlier {what}"  # -1: index not kept
    return (
        f"duplicate: {what} {number} has the same {same} as {earlier}: not sent"
        " (nobody is created twice)"
    )


_NO_INDEX = 0xFFFFFFFF  # an index that does not fit in 4 bytes (the message then omits it)
_MIN_SLOTS = 64


class _Segment:
    __slots__ = ("digests", "firsts", "mask", "room")

    def __init__(self, size: int) -> None:
        self.digests = array("Q", bytes(8 * size))
        self.firsts = array("I", bytes(4 * size))
        self.mask = size - 1
        self.room = _room(size, 0)

    def grow(self) -> None:
        old_digests, old_firsts = self.digests, self.firsts
        count = _room(self.mask + 1, 0) - self.room
        size = 2 * (self.mask + 1)
        self.digests = digests = array("Q", bytes(8 * size))
        self.firsts = firsts = array("I", bytes(4 * size))
        self.mask = mask = size - 1
        self.room = _room(size, count)
        for digest, first in zip(old_digests, old_firsts, strict=True):
            if digest:
                slot = (digest >> 6) & mask
                while digests[slot]:
                    slot = (slot + 1) & mask
                digests[slot] = digest
                firsts[slot] = first


def _room(size: int, count: int) -> int:
    """New keys a segment of ``size`` slots holding ``count`` takes before it grows: it grows
    when more than 85% full."""
    return 17 * size // 20 + 1 - count


class SeenTable:
    """The identities seen so far in a run, each with the index of its first item.

    Args:
        spill: distinct identities kept in memory at most; beyond, the table moves to a
            temporary SQLite file (deleted when the run ends). None: never.
    """

    def __init__(self, *, spill: int | None = None) -> None:
        if spill is not None and spill < 1:
            raise ValueError("dedupe_spill must be at least 1")
        self._spill = spill
        self._segments = [_Segment(_MIN_SLOTS) for _ in range(64)]
        self._count = 0
        self._db: sqlite3.Connection | None = None
        self._spilled = False

    def __len__(self) -> int:
        if self._spill is not None or not self._segments:  # counted, or closed
            return self._count
        return sum(_room(segment.mask + 1, 0) - segment.room for segment in self._segments)

    @property
    def spilled(self) -> bool:
        """Whether the table moved to disk."""
        return self._spilled

    @property
    def nbytes(self) -> int:
        """Bytes of the in-memory table."""
        return sum(12 * (segment.mask + 1) for segment in self._segments)

    def first(self, digest: int, index: int) -> int | None:
        """Record ``digest`` at ``index`` if new (returns None); else the index it was first
        seen at (-1 when that index does not fit the table's 4 bytes)."""
        # Written for speed (once per item of a bulk run: 0.8x the time, 86 bytecodes down to
        # 60, of a count and a load ratio per item): the growth is a countdown (room), the count
        # kept only for a spill limit, and an index too large for 4 bytes is found by the array
        # refusing it rather than checked on every item.
        if self._db is not None:
            return self._first_on_disk(digest, index)
        segment = self._segments[digest >> 58]
        digests = segment.digests
        slot = (digest >> 6) & segment.mask
        while found := digests[slot]:
            if found == digest:
                first = segment.firsts[slot]
                return -1 if first == _NO_INDEX else first
            slot = (slot + 1) & segment.mask
        digests[slot] = digest
        try:
            segment.firsts[slot] = index
        except OverflowError:  # does not fit 4 bytes: kept as "an earlier item"
            segment.firsts[slot] = _NO_INDEX
        if self._spill is not None:  # counted only for the spill (len() sums the segments)
            self._count += 1
            if self._count > self._spill:
                self._to_disk()
                return None
        segment.room -= 1
        if not segment.room:
            segment.grow()
        return None

    def close(self) -> None:
        """Free the table (and delete its file)."""
        if self._db is not None:
            self._db.close()
            self._db = None
        self._count = len(self)
        self._segments = []

    def _to_disk(self) -> None:
        logger.info("input de-duplication: %d distinct items, moving to disk", self._count)
        # An empty name: SQLite's private temporary file, deleted when the connection closes;
        # its page cache is capped at 4 MB, the rest stays on disk.
        db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA cache_size=-4096")
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE seen (digest INTEGER PRIMARY KEY, first INTEGER) WITHOUT ROWID")
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO seen VALUES (?, ?)",
            (
                (_signed(digest), -1 if first == _NO_INDEX else first)
                for segment in self._segments
                for digest, first in zip(segment.digests, segment.firsts, strict=True)
                if digest
            ),
        )
        db.execute("COMMIT")
        self._db = db
        self._spilled = True
        self._segments = []

    def _first_on_disk(self, digest: int, index: int) -> int | None:
        assert self._db is not None
        key = _signed(digest)
        cursor = self._db.execute("INSERT OR IGNORE INTO seen VALUES (?, ?)", (key, index))
        if cursor.rowcount == 1:
            self._count += 1
            return None
        row = self._db.execute("SELECT first FROM seen WHERE digest = ?", (key,)).fetchone()
        return int(row[0])


def _signed(digest: int) -> int:
    """A 64-bit unsigned digest as SQLite's signed INTEGER."""
    return digest - (1 << 64) if digest >= 1 << 63 else digest
