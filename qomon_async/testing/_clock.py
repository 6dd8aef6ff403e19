"""The emulator's clock, in "Qomon seconds": real seconds multiplied by the time scale."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

from ._dates import UTC


class QomonClock:
    """Elapsed time as Qomon would see it, and the matching UTC wall clock.

    ``now()`` is ``(loop.time() - t0) * time_scale``: with a scale of 100, one real second is a
    hundred Qomon seconds, so the bucket refills a hundred times faster and a 2 s upsert delay
    takes 20 ms. ``utcnow()`` starts at the real UTC time of ``start()`` and runs at the same
    scaled pace, so timestamps never fall behind the caller's wall clock (a client searching
    ``CreatedAt gte <when it started>`` finds what it created).
    """

    def __init__(self, time_scale: float = 1.0, start_utc: datetime | None = None) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self.time_scale = float(time_scale)
        self._start_utc = start_utc
        self._anchor_utc = start_utc or datetime.now(UTC)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = time.monotonic()
        self._offset = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Anchor the clock at the current time of ``loop`` (the server's loop)."""
        self._loop = loop
        self._t0 = loop.time()
        self._offset = 0.0
        self._anchor_utc = self._start_utc or datetime.now(UTC)

    def _real_now(self) -> float:
        # loop.time() is a plain read of a monotonic clock, safe from any thread; it also
        # follows a mocked loop clock (looptime) when the server shares the test's loop.
        return self._loop.time() if self._loop is not None else time.monotonic()

    def real_elapsed(self) -> float:
        """Real seconds since the clock started."""
        return self._real_now() - self._t0

    def now(self) -> float:
        """Qomon seconds since the clock started (jumps included, see :meth:`advance`)."""
        return self.real_elapsed() * self.time_scale + self._offset

    def advance(self, qomon_seconds: float) -> None:
        """Jump forward by ``qomon_seconds``: the emulated time moves on at once."""
        if qomon_seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += qomon_seconds

    def utcnow(self) -> datetime:
        """The emulated UTC wall clock (aware datetime)."""
        return self._anchor_utc + timedelta(seconds=self.now())

    def to_real(self, qomon_seconds: float) -> float:
        """Convert a Qomon duration into real seconds."""
        return qomon_seconds / self.time_scale
