"""The local limiter's bookkeeping, kept so that no answer scans what came before it.

Two structures serve :class:`qomon_async._local_limiter.RateLimiter` on every answer:

* :class:`InFlightLedger`: the permits granted and not yet answered. An answer needs the tokens
  of the permits granted *after* it and still unanswered. Answers arrive in any order, so this
  is a prefix sum over a set that loses arbitrary members: a Fenwick tree over a ring of
  sequence numbers gives it in O(log n) steps, n being the spread of sequence numbers in flight
  (about the concurrency; the ring doubles when a straggler stays in flight that long), and in
  O(1) when the oldest permit in flight is the one answered (answers in order).
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

    Attributes:
        total: tokens of the permits in flight.
    """

    __slots__ = ("_entries", "_mask", "_newest", "_oldest", "_size", "_tree", "total")

    def __init__(self, size: int = 64) -> None:
        if size < 1 or size & (size - 1):
            raise ValueError("size must be a power of two")
        self._entries: dict[int, InFlight] = {}
        self._size = size
        self._mask = size - 1
        # Fenwick tree over ring positions 0..size-1 (1-based inside the list).
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
        self._update(seq & self._mask, entry.cost)

    def pop(self, seq: int) -> InFlight | None:
        """Forget the permit ``seq``; None when it is not (or no longer) in flight."""
        entry = self._entries.pop(seq, None)
        if entry is None:
            return None
        self._update(seq & self._mask, -entry.cost)
        entries = self._entries
        if not entries:
            self.total = 0.0  # no float residue
            self._oldest = self._newest + 1
        else:
            self.total -= entry.cost
            if seq == self._oldest:
                # Each sequence number is stepped over once: amortised O(1).
                oldest = seq + 1
                while oldest not in entries:
                    oldest += 1
                self._oldest = oldest
        return entry

    def later(self, seq: int) -> float:
        """Tokens of the permits in flight granted after ``seq`` (``seq`` itself popped)."""
        if seq < self._oldest:
            return self.total  # nothing older is in flight: everything in flight is later
        return self.total - self._between(self._oldest, seq)

    # -- the Fenwick tree --------------------------------------------------------------------

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
        """Tokens in flight with ``low <= seq < high`` (``high - low`` below the ring's size)."""
        a, b = low & self._mask, high & self._mask
        if a <= b:
            return self._prefix(b) - self._prefix(a)
        return self._tree[self._size] - self._prefix(a) + self._prefix(b)

    def _grow(self, span: int) -> None:
        size = self._size
        while size < 2 * span:
            size *= 2
        self._size, self._mask = size, size - 1
        self._tree = [0.0] * (size + 1)
        for seq, entry in self._entries.items():
            self._update(seq & self._mask, entry.cost)


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
