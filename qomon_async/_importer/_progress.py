"""Progress display of an import: a one-line bar on a terminal, periodic lines otherwise,
and a final summary block. Standard library only.

On a terminal the line is redrawn in place with ``\\r``, fitted to the terminal's width, at most
every ``min_interval`` seconds (10 times a second by default). When the output is a file or a
pipe (a CI log, ``nohup``), a plain line is written every ``plain_interval`` seconds (5 by
default) or every ``plain_every`` rows, so that logs stay readable.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import shutil
import time
from collections.abc import Callable, Mapping
from typing import TextIO

__all__ = [
    "ProgressRenderer",
    "ProgressSnapshot",
    "RateMeter",
    "format_duration",
    "format_summary",
]

_MIN_BAR = 10


@dataclasses.dataclass(frozen=True)
class ProgressSnapshot:
    """The counters at one moment.

    Attributes:
        done: Rows finished (any outcome).
        total: Rows in the input, when known (``None``: unknown, no percentage or ETA).
        created, failed, skipped, unknown: Rows per outcome.
        duplicates: Of the skipped, rows that repeat an earlier row (never sent).
        in_flight: Rows sent and not yet finished.
        rate: Rows finished per second, recently (``None`` until measurable).
        eta: Seconds left, estimated (``None`` when unknown).
        elapsed: Seconds since the start.
    """

    done: int = 0
    total: int | None = None
    created: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    in_flight: int = 0
    duplicates: int = 0
    rate: float | None = None
    eta: float | None = None
    elapsed: float = 0.0


class RateMeter:
    """Rows per second over a sliding window, and the ETA it implies.

    Args:
        window: Seconds of history the rate is measured over.
        clock: Monotonic seconds (for tests).
    """

    def __init__(self, window: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def update(self, done: int) -> None:
        """Record that ``done`` rows are finished now."""
        now = self._clock()
        self._samples.append((now, done))
        # Keep one sample older than the window, so that the rate spans the whole window.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self._window:
            self._samples.popleft()

    @property
    def rate(self) -> float | None:
        """Rows per second, or ``None`` before two samples a moment apart."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 - t0 <= 0:
            return None
        return (d1 - d0) / (t1 - t0)

    def eta(self, remaining: int | None) -> float | None:
        """Seconds to finish ``remaining`` rows at the current rate, or ``None``."""
        rate = self.rate
        if remaining is None or rate is None or rate <= 0:
            return None
        return remaining / rate


def format_duration(seconds: float | None) -> str:
    """``45s``, ``4m05s``, ``2h03m``; ``--`` for ``None``."""
    if seconds is None or math.isnan(seconds) or math.isinf(seconds):
        return "--"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _rate(rate: float | None) -> str:
    if rate is None:
        return "-- rows/s"
    return f"{rate:,.1f} rows/s" if rate < 100 else f"{rate:,.0f} rows/s"


def _outcomes(s: ProgressSnapshot) -> str:
    parts = [f"created {s.created:,}"]
    parts += [
        f"{name} {n:,}"
        for name, n in (("failed", s.failed), ("unknown", s.unknown), ("skipped", s.skipped))
        if n
    ]
    return ", ".join(parts)


class ProgressRenderer:
    """Draws :class:`ProgressSnapshot` s to a stream.

    Args:
        stream: Where to draw (usually ``sys.stderr``).
        tty: Whether ``stream`` is a terminal; by default ``stream.isatty()``.
        width: The terminal width; by default asked of the terminal at each redraw.
        min_interval: Seconds between two redraws on a terminal.
        plain_interval: Seconds between two plain lines when not on a terminal.
        plain_every: Also write a plain line every this many rows (``None``: by time only).
        clock: Monotonic seconds (for tests).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        tty: bool | None = None,
        width: int | None = None,
        min_interval: float = 0.1,
        plain_interval: float = 5.0,
        plain_every: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._width = width
        self._min_interval = min_interval
        self._plain_interval = plain_interval
        self._plain_every = plain_every
        self._clock = clock
        self._last_draw: float | None = None
        self._last_done = 0
        self._drawn_length = 0

    @property
    def is_tty(self) -> bool:
        """Whether the in-place bar is used."""
        return self._tty

    def _columns(self) -> int:
        if self._width is not None:
            return self._width
        return shutil.get_terminal_size((80, 24)).columns

    def update(self, snapshot: ProgressSnapshot, *, force: bool = False) -> bool:
        """Draw ``snapshot`` if the throttle allows (or ``force``); returns whether it drew."""
        now = self._clock()
        if not force and self._last_draw is not None:
            since = now - self._last_draw
            if self._tty:
                if since < self._min_interval:
                    return False
            else:
                by_rows = (
                    self._plain_every is not None
                    and snapshot.done - self._last_done >= self._plain_every
                )
                if since < self._plain_interval and not by_rows:
                    return False
        self._last_draw = now
        self._last_done = snapshot.done
        if self._tty:
            line = self.bar_line(snapshot, self._columns())
            padding = " " * max(0, self._drawn_length - len(line))
            self._stream.write("\r" + line + padding)
            self._drawn_length = len(line)
        else:
            self._stream.write(self.plain_line(snapshot) + "\n")
        self._stream.flush()
        return True

    def finish(
        self,
        snapshot: ProgressSnapshot,
        *,
        title: str = "Import finished",
        details: Mapping[str, str] | None = None,
    ) -> None:
        """Draw the last state, end the bar's line, and write the summary block."""
        self.update(snapshot, force=True)
        if self._tty:
            self._stream.write("\n")
        self._stream.write(format_summary(snapshot, title=title, details=details))
        self._stream.flush()

    @staticmethod
    def bar_line(snapshot: ProgressSnapshot, columns: int) -> str:
        """The terminal line for ``snapshot``, at most ``columns - 1`` characters (the last
        column is left free: writing into it wraps on some terminals)."""
        s = snapshot
        room = max(1, columns - 1)
        count = f"{s.done:,}/{s.total:,}" if s.total is not None else f"{s.done:,} rows"
        tail = [
            count,
            _outcomes(s),
            f"{s.in_flight} in flight",
            _rate(s.rate),
            f"ETA {format_duration(s.eta)}" if s.total is not None else "",
        ]
        text = " | ".join(t for t in tail if t)
        # Drop the least useful parts until the text fits, then cut it.
        for drop in (2, 4, 1):
            if len(text) + 12 <= room:
                break
            tail[drop] = ""
            text = " | ".join(t for t in tail if t)
        if s.total is None or s.total <= 0:
            return text[:room]
        fraction = min(1.0, s.done / s.total)
        percent = f"{math.floor(fraction * 100):3d}%"
        bar_width = room - len(text) - len(percent) - 4
        if bar_width < _MIN_BAR:
            return f"{percent} {text}"[:room]
        filled = math.floor(fraction * bar_width)
        bar = "#" * filled + "-" * (bar_width - filled)
        return f"[{bar}] {percent} {text}"

    @staticmethod
    def plain_line(snapshot: ProgressSnapshot) -> str:
        """The periodic line for logs."""
        s = snapshot
        if s.total:
            count = f"{s.done:,}/{s.total:,} rows ({math.floor(100 * s.done / s.total)}%)"
        else:
            count = f"{s.done:,} rows"
        line = f"[{format_duration(s.elapsed)}] {count}: {_outcomes(s)}; {s.in_flight} in flight"
        line += f"; {_rate(s.rate)}"
        if s.total is not None:
            line += f"; ETA {format_duration(s.eta)}"
        return line


def format_summary(
    snapshot: ProgressSnapshot,
    *,
    title: str = "Import finished",
    details: Mapping[str, str] | None = None,
) -> str:
    """The final summary block (ends with a newline); ``details`` adds lines (report path,
    journal path, ...)."""
    s = snapshot
    rate = s.done / s.elapsed if s.elapsed > 0 else None
    rows: list[tuple[str, str]] = [
        ("rows", f"{s.done:,}" + (f" of {s.total:,}" if s.total is not None else "")),
        ("created", f"{s.created:,}"),
        ("failed", f"{s.failed:,}"),
        ("unknown", f"{s.unknown:,}"),
        ("skipped", f"{s.skipped:,}" + (f" ({s.duplicates:,} duplicates)" if s.duplicates else "")),
        ("elapsed", format_duration(s.elapsed)),
        ("rate", _rate(rate)),
    ]
    rows += list((details or {}).items())
    width = max(len(name) for name, _ in rows)
    lines = [title] + [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines) + "\n"
