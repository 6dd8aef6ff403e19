"""The local limiter's bookkeeping, kept so that no answer scans what came before it.

Two structures serve :class:`qomon_async._local_limiter.RateLimiter` on every answer:

* :class:`InFlightLedger`: the permits granted and not yet answered. An answer needs the tokens
  of the permits granted *after* it and still unanswered; answers arrive in any order. The
  permits in flight are kept as sorted lists of sequence numbers, one per cost (a client uses
  two costs, 1 and 5): the permits after an answer are counted by a binary search in each list
  (O(log n), in C). An answer to the oldest permit of its cost (answers in order) moves the
  head of its list, O(1); one out of order is deleted in place, a ``memmove`` of the numbers
  after it (O(n) bytes moved by C: tens of nanoseconds at hundreds in flight, about a
  microsecond at ten thousand). No Python loop ever runs over the permits.
* :class:`OthersWindow`: what other consumers of the space were seen to spend, per server
  reading, over a sliding window of time: a running sum (added on arrival, subtracted on
  expiry) and a monotonic deque for the largest bite, each amortised O(1) per reading.
"""

from __future__ import annotations

import collections
from bisect import bisect_left, bisect_right

__all__ = ["InFlight", "InFlightLedger", "OthersWindow"]


#: What the limiter remembers of a permit until its response (or failure) comes back:
#: ``(cost, granted_total, in_flight_before)``: its tokens, the tokens granted by the limiter so
#: far (this permit included), and the tokens of the permits in flight when it was granted.
#: A plain tuple: one is built per request, and a named tuple costs several times more.
InFlight = tuple[float, float, float]

# Costs kept as (possibly empty) deques before the empty ones are dropped: a client uses two.
_MAX_CLASSES = 8


class InFlightLedger:
    """The permits in flight, by sequence number (granted in increasing order, answered in any).

    The limiter (:class:`qomon_async._limiter_fifo.RateLimiter`) calls :meth:`add` on every
    grant and :meth:`answer` on an answer in general. Its steady answer writes the common case
    in line: an answer to the oldest permit in flight, when a single cost is in use, is the
    start of :meth:`answer` and the first case of :meth:`leave` (any other answer calls
    :meth:`leave`).

    Attributes:
        total: tokens of the permits in flight.
    """

    __slots__ = ("_classes", "_entries", "total")

    def __init__(self) -> None:
        self._entries: dict[int, InFlight] = {}
        # cost -> the sequence numbers in flight at that cost, increasing: an answer to the
        # oldest (in order) is a popleft; one out of order is deleted where it is (C).
        self._classes: dict[float, collections.deque[int]] = {}
        self.total = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def add(self, seq: int, cost: float, granted_total: float) -> None:
        """Record the permit ``seq`` (greater than every sequence number recorded before),
        costing ``cost``, with ``granted_total`` tokens granted so far, this permit included."""
        total = self.total
        self._entries[seq] = (cost, granted_total, total)
        self.total = total + cost
        try:
            self._classes[cost].append(seq)
        except KeyError:  # the first permit at this cost (a client uses two costs)
            self.new_class(cost, seq)

    def new_class(self, cost: float, seq: int) -> None:
        """The first permit in flight at ``cost`` (its entry already recorded)."""
        classes = self._classes
        if len(classes) >= _MAX_CLASSES:
            for empty in [c for c, seqs in classes.items() if not seqs]:
                del classes[empty]
        classes[cost] = collections.deque((seq,))

    def pop(self, seq: int) -> InFlight | None:
        """Forget the permit ``seq``; None when it is not (or no longer) in flight."""
        answered = self.answer(seq)
        return None if answered is None else answered[0]

    def later(self, seq: int) -> float:
        """Tokens of the permits in flight granted after ``seq`` (one binary search per cost)."""
        tokens = 0.0
        for cost, seqs in self._classes.items():
            count = len(seqs) - bisect_right(seqs, seq)
            if count:
                tokens += cost * count
        return tokens

    def answer(self, seq: int) -> tuple[InFlight, float] | None:
        """Forget the permit ``seq`` and count the tokens in flight granted after it (an
        answer's re-sync needs both): the permit's entry and those tokens; None when it is not
        (or no longer) in flight."""
        entries = self._entries
        entry = entries.pop(seq, None)
        if entry is None:
            return None
        cost = entry[0]
        if entries:
            self.total -= cost
        else:
            self.total = 0.0  # no float residue
        return entry, self.leave(cost, seq)

    def leave(self, cost: float, seq: int) -> float:
        """Take the permit ``seq``, costing ``cost``, out of the list of its cost (its entry
        already forgotten, as :meth:`answer` does first) and count the tokens in flight granted
        after it."""
        classes = self._classes
        seqs = classes[cost]
        if seqs[0] == seq:  # the oldest of its cost: answers in order
            seqs.popleft()
            later = cost * len(seqs)
        else:
            index = bisect_left(seqs, seq)
            del seqs[index]
            later = cost * (len(seqs) - index)
        if len(classes) > 1:
            for other_cost, others in classes.items():
                if others is not seqs:
                    later += other_cost * (len(others) - bisect_right(others, seq))
        return later


class OthersWindow:
    """Tokens other consumers spent, one signed measure per server reading, over a window.

    Attributes:
        total: the sum of the measures in the window.

    (The limiter reads ``_items`` directly on every answer, to know the window empty without
    a call.)
    """

    __slots__ = ("_items", "_maxima", "total")

    def __init__(self) -> None:
        self._items: collections.deque[tuple[float, float]] = collections.deque()
        # The candidates for the largest measure: decreasing values, in time order.
        self._maxima: collections.deque[tuple[float, float]] = collections.deque()
        self.total = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, when: float, spent: float, cutoff: float) -> float:
        """A measure taken at loop time ``when`` (never earlier than the previous one); then
        the measures taken before loop time ``cutoff`` are dropped. Returns :attr:`total`."""
        item = (when, spent)
        items = self._items
        items.append(item)
        maxima = self._maxima
        while maxima and maxima[-1][1] <= spent:
            maxima.pop()
        maxima.append(item)
        total = self.total + spent
        # (expire, inlined: one measure in, about one out, on every answer)
        while items and items[0][0] < cutoff:
            total -= items.popleft()[1]
        while maxima and maxima[0][0] < cutoff:
            maxima.popleft()
        self.total = total if items else 0.0  # no float residue
        return self.total

    def expire(self, cutoff: float) -> float:
        """Drop the measures taken before loop time ``cutoff``. Returns :attr:`total`."""
        items = self._items
        while items and items[0][0] < cutoff:
            self.total -= items.popleft()[1]
        maxima = self._maxima
        while maxima and maxima[0][0] < cutoff:
            maxima.popleft()
        if not items:
            self.total = 0.0  # no float residue
        return self.total

    def oldest(self) -> float | None:
        """Loop time of the oldest measure in the window, or None when empty."""
        return self._items[0][0] if self._items else None

    def largest(self) -> float:
        """The largest measure in the window (0.0 when empty)."""
        return self._maxima[0][1] if self._maxima else 0.0
