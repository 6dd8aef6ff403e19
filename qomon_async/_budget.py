"""A call's waiting budget (``max_wait``): the time a call may spend waiting before it sends.

A public call that makes several requests (``create_contact`` with its reconciliation searches,
``ensure_contact``, ``update_contact``) sets :data:`CALL_BUDGET` for its duration, and a bulk run
sets it for its workers; the client's ``_request`` takes its budget from there when it is given
none. Time spent in HTTP requests is not counted: ``timeout=`` bounds each request.
"""

from __future__ import annotations

import contextvars

__all__ = ["CALL_BUDGET", "Budget", "check_max_wait"]


class Budget:
    """The waiting one call may still do before sending (seconds; ``None``: no limit).

    A call's ``max_wait`` is one budget for the whole call: every wait for the rate limiter
    (its queue, the refill, a 429 pause) and every pause between retries is taken from it, so
    that retries never add up to more than ``max_wait`` of waiting. Time spent in HTTP requests
    is not counted (``timeout=`` bounds each request).
    """

    __slots__ = ("left", "limit")

    def __init__(self, seconds: float | None) -> None:
        check_max_wait(seconds)
        self.limit = None if seconds is None or seconds == float("inf") else float(seconds)
        self.left = self.limit

    def spend(self, seconds: float) -> None:
        """Take ``seconds`` of waiting from the budget (never below zero)."""
        if self.left is not None and seconds > 0:
            self.left = max(0.0, self.left - seconds)

    def __repr__(self) -> str:
        return f"<Budget left={self.left!r} of {self.limit!r}>"


#: The waiting budget of the public call running in this task: a :class:`Budget` shared by
#: every request of the call, or seconds (a float) for each request alone (a bulk run's
#: workers); ``None`` outside such a call.
CALL_BUDGET: contextvars.ContextVar[Budget | float | None] = contextvars.ContextVar(
    "qomon_async_call_budget", default=None
)


def check_max_wait(max_wait: float | None) -> float | None:
    """``max_wait`` as given, or ValueError when it is not a non-negative number of seconds."""
    if max_wait is not None and not (max_wait >= 0):  # NaN fails too
        raise ValueError(f"max_wait must be a non-negative number of seconds, got {max_wait!r}")
    return max_wait
