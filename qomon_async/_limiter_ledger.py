"""The local limiter's bookkeeping, kept so that no answer scans what came before it.

Two structures serve :class:`qomon_async._local_limiter.RateLimiter` on every answer:

* :class:`InFlightLedger`: the permits granted and not yet answered. An answer needs the tokens
  of the permits granted *after* it and still unanswered. Answers arrive in any order, so this
  is a prefix sum over a set that loses arbitrary members (no exact O(1) method is known for
  that in general). Here: O(1) for an answer to the oldest permit in flight (answers in order),
  and O(log n) for one that overtook older permits, n being the spread of sequence numbers in
  flight (a Fenwick tree over a ring of sequence numbers, which doubles when a straggler stays
  in flight that long).
* :class:`OthersWindow`: what other consumers of the space were seen to spend, per server
  reading, over a sliding window of time: a running sum (added on arrival, subtracted on
  expiry) and a monotonic deque for the largest bite, each amortised O(1) per reading.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

__all__ = ["InFlight", "InFlightLedger", "OthersWindow"]


class InFlight(NamedTuple):
    """What the limiter remembers of a permit until its response (or failure) comes back."""

    cost: float
    granted_total: float  # tokens granted by the limiter so far, this permit included
    in_flight_before: float  # tokens of the permits in flight when this one was granted


class InFlightLedger:
    """The permits in flight, by sequence number (granted in increasing order, answered in any).

    The tokens granted between two permits are known from their ``granted_total``; what is
    missing from that range is the permits already answered in it, the *holes* left by answers
    that overtook an older permit. Only holes go into a Fenwick tree (over a ring of sequence
    numbers), and leave it when the oldest permit in flight moves past them: answers in order
    cost no tree operation at all, an answer out of order O(log n).

    Attributes:
        total: tokens of the permits in flight.
    """

    __slots__ = ("_entries", "_holes", "_mask", "_newest", "_oldest", "_size", "_tree", "total")

    def __init__(self, size: int = 64) -> None:
        if size < 1 or size & (size - 1):
            raise ValueError("size must be a power of two")
        self._entries: dict[int, InFlight] = {}
        self._holes: dict[int, float] = {}  # seq -> cost, answered while an older one is not
        self._size = size
        self._mask = size - 1
        # Fenwick tree of the holes' costs over ring positions 0..size-1 (1-based in the list).
        self._tree = [0.0] * (size + 1)
        self._oldest = 0  # the lowest sequence number in flight (when any is)
        self._newest = 0
        self.total = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def add(self, seq: int, entry: InFlight) -> None:
        """Record the permit ``seq``, greater than every sequence number recorded before."""
        if not self._entries:
            self._oldest = seq
        elif seq - self._oldest >= self._size:
            self._grow(seq - self._oldest + 1)
        self._newest = seq
        self._entries[seq] = entry
        self.total += entry.cost

    def pop(self, seq: int) -> InFlight | None:
        """Forget the permit ``seq``; None when it is not (or no longer) in flight."""
        entries = self._entries
        entry = entries.pop(seq, None)
        if entry is None:
            return None
        if entries:
            self.total -= entry.cost
        else:
            self.total = 0.0  # no float residue
        if seq != self._oldest:
            self._holes[seq] = entry.cost
            self._update(seq & self._mask, entry.cost)
            return entry
        # The oldest one: step over the holes up to the next permit in flight. Each sequence
        # number is stepped over once: amortised O(1).
        holes = self._holes
        newest = self._newest
        oldest = seq + 1
        while oldest <= newest and oldest not in entries:
            cost = holes.pop(oldest, None)
            if cost is not None:
                self._update(oldest & self._mask, -cost)
            oldest += 1
        self._oldest = oldest
        return entry

    def later(self, seq: int, entry: InFlight) -> float:
        """Tokens of the permits in flight granted after ``seq``, just popped (its ``entry``)."""
        oldest = self._oldest
        if seq < oldest:
            return self.total  # nothing older is in flight: everything in flight is later
        first = self._entries[oldest]
        # Granted from the oldest in flight up to seq (excluded), less the holes among them.
        granted = (entry.granted_total - entry.cost) - (first.granted_total - first.cost)
        return self.total - (granted - self._between(oldest + 1, seq))

    # -- the Fenwick tree of holes -----------------------------------------------------------

    def _update(self, position: int, value: float) -> None:
        tree, size = self._tree, self._size
        i = position + 1
        while i <= size:
            tree[i] += value
            i += i & -i

    def _prefix(self, count: int) -> float:
        """Sum over ring positions ``0 .. count - 1``."""
        tree = self._tree
        total = 0.0
        i = count
        while i:
            total += tree[i]
            i &= i - 1
        return total

    def _between(self, low: int, high: int) -> float:
        """Holes with ``low <= seq < high`` (``high - low`` below the ring's size)."""
        if high <= low:
            return 0.0
        a, b = low & self._mask, high & self._mask
        if a < b:
            return self._prefix(b) - self._prefix(a)
        return self._tree[self._size] - self._prefix(a) + self._prefix(b)

    def _grow(self, span: int) -> None:
        size = self._size
        while size < 2 * span:
            size *= 2
        self._size, self._mask = size, size - 1
        self._tree = [0.0] * (size + 1)
        for seq, cost in self._holes.items():
            self._update(seq & self._mask, cost)


class OthersWindow:
    """Tokens other consumers spent, one signed measure per server reading, over a window.

    Attributes:
        total: the sum of the measures in the window.
    """

    __slots__ = ("_items", "_maxima", "total")

    def __init__(self) -> None:
        self._items: collections.deque[tuple[float, float]] = collections.deque()
        # The candidates for the largest measure: decreasing values, in time order.
        self._maxima: collections.deque[tuple[float, float]] = collections.deque()
        self.total = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, when: float, spent: float) -> None:
        """A measure taken at loop time ``when`` (never earlier than the previous one)."""
        item = (when, spent)
        self._items.append(item)
        self.total += spent
        maxima = self._maxima
        while maxima and maxima[-1][1] <= spent:
            maxima.pop()
        maxima.append(item)

    def expire(self, cutoff: float) -> None:
        """Drop the measures taken before loop time ``cutoff``."""
        items = self._items
        while items and items[0][0] < cutoff:
            self.total -= items.popleft()[1]
        maxima = self._maxima
        while maxima and maxima[0][0] < cutoff:
            maxima.popleft()
        if not items:
            self.total = 0.0  # no float residue

    def oldest(self) -> float | None:
        """Loop time of the oldest measure in the window, or None when empty."""
        return self._items[0][0] if self._items else None

    def largest(self) -> float:
        """The largest measure in the window (0.0 when empty)."""
        return self._maxima[0][1] if self._maxima else 0.0
