"""What one call carries besides its request: the headers built once per client, and the call's
waiting budget (``max_wait``) shared by every request the call makes.

A public call that makes several requests (``create_contact`` with its reconciliation searches,
``ensure_contact``, ``update_contact``) sets :data:`CALL_BUDGET` for its duration; the client's
``_request`` takes its budget from there when it is given none.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

from ._bulk import BulkRun, CreateResult
from ._retry import Budget

__all__ = ["CALL_BUDGET", "AuthHeaders", "BudgetedRun", "check_max_wait"]

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


class AuthHeaders(Mapping[str, str]):
    """The request headers of a client, built once; the key stays out of reprs."""

    __slots__ = ("_items",)

    def __init__(self, key: str, user_agent: str) -> None:
        self._items = {
            "Authorization": f"Bearer {key}",
            "User-Agent": user_agent,
            "Accept": "application/json",
        }

    def __getitem__(self, name: str) -> str:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return "<request headers, Authorization redacted>"

    __str__ = __repr__


class BudgetedRun(BulkRun):
    """A bulk run whose every request may wait ``max_wait`` seconds at most before it is sent.

    The pool's workers start within the first ``__anext__`` and inherit its context: each step
    of the iteration runs with :data:`CALL_BUDGET` set to the per-request limit, and restores
    the caller's context afterwards.
    """

    def __init__(self, *args: Any, max_wait: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_wait = max_wait

    async def __anext__(self) -> CreateResult:
        token = CALL_BUDGET.set(self._max_wait)
        try:
            return await super().__anext__()
        finally:
            CALL_BUDGET.reset(token)
