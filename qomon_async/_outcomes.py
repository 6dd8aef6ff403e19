"""The outcome of one input item of a bulk run, and the run's live counters.

:class:`CreateResult` (generic in the item's type) is what a :class:`~qomon_async.BulkRun`
yields, once per input item; :class:`CreateStatus` says which outcome it is;
:class:`BulkProgress` counts them as they come (the CLI's progress bar reads it).
"""

from __future__ import annotations

import dataclasses
import enum
import time
from typing import Any, Generic, TypeVar

from ._dedupe import DedupeKey, duplicate_message
from ._exceptions import (
    ContactValidationError,
    DuplicateInputError,
    OutcomeUnknownError,
    QomonError,
)
from ._models import ConfirmedContact

__all__ = [
    "CREATED",
    "FAILED",
    "SKIPPED",
    "UNKNOWN",
    "BulkProgress",
    "CreateResult",
    "CreateStatus",
    "ItemT",
    "cancelled_result",
    "duplicate_result",
    "invalid_result",
    "result_of",
]


class CreateStatus(str, enum.Enum):
    """The outcome of one input item."""

    CREATED = "created"
    """Qomon confirmed the contact with its id (for upserts: accepted, and read back if asked)."""
    FAILED = "failed"
    """Not created: refused by Qomon (400, 422...), invalid input, or retries ran out."""
    SKIPPED = "skipped"
    """Never sent: a fatal error stopped the run, the run was closed, or a duplicate input."""
    UNKNOWN = "unknown"
    """Sent, and whether it was stored could not be established (see the error)."""

    def __str__(self) -> str:
        return self.value


# Enum members as module constants: a member looked up on its class costs a descriptor call.
CREATED = CreateStatus.CREATED
FAILED = CreateStatus.FAILED
SKIPPED = CreateStatus.SKIPPED
UNKNOWN = CreateStatus.UNKNOWN


#: The type of the input items of a run (a ``ContactDict``, a ``ContactWrite``...).
ItemT = TypeVar("ItemT")


@dataclasses.dataclass(frozen=True)
class CreateResult(Generic[ItemT]):
    """The one outcome of one input item; generic in the item's type
    (``CreateResult[ContactDict]`` for a run over contact dicts)."""

    index: int
    """Position of the item in the input (0-based)."""
    status: CreateStatus
    item: ItemT
    """The input item, as given."""
    contact: ConfirmedContact | None = None
    """The confirmed contact (its ``id`` an ``int``), when ``status`` is ``"created"``; for an
    upsert, only when it was read back (``verify=True``)."""
    error: QomonError | None = None
    """Why it is not ``"created"``."""
    attempts: int = 0
    """Requests sent for this item (retries included)."""
    reconciled: bool = False
    """The contact was found by search after an ambiguous failure, not confirmed by the answer."""
    elapsed: float = 0.0
    """Seconds from the item's pick-up to its outcome."""

    def __init__(  # noqa: PLR0917 (the dataclass's own signature, positional as before)
        self,
        index: int,
        status: CreateStatus,
        item: ItemT,
        contact: ConfirmedContact | None = None,
        error: QomonError | None = None,
        attempts: int = 0,
        reconciled: bool = False,
        elapsed: float = 0.0,
    ) -> None:
        # One per item: written straight into the instance's dict, one field at a time (0.75x
        # the time of one dict.update with keywords, which packs them into a dict first, and
        # far less than the frozen dataclass's own __init__). Read-only all the same.
        fields = self.__dict__
        fields["index"] = index
        fields["status"] = status
        fields["item"] = item
        fields["contact"] = contact
        fields["error"] = error
        fields["attempts"] = attempts
        fields["reconciled"] = reconciled
        fields["elapsed"] = elapsed

    @property
    def ok(self) -> bool:
        """Whether the item ended ``"created"``."""
        return self.status is CREATED


@dataclasses.dataclass
class BulkProgress:
    """Live counters of a run (the CLI's progress bar reads them)."""

    total: int | None = None
    done: int = 0
    created: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    in_flight: int = 0
    reconciled: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Items done per second, on average since the start."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (None when the total or the rate is unknown)."""
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.done, 0) / self.rate

    def count(self, result: CreateResult[Any]) -> None:
        self.done += 1
        status = result.status
        if status is CREATED:
            self.created += 1
        elif status is FAILED:
            self.failed += 1
        elif status is SKIPPED:
            self.skipped += 1
        else:
            self.unknown += 1
        if result.reconciled:
            self.reconciled += 1


# -- the outcome of each kind of item (the bulk pool's rarer outcomes) ------------------------


def result_of(
    index: int, item: ItemT, started: float, status: CreateStatus, **kwargs: Any
) -> CreateResult[ItemT]:
    """The outcome of item ``index`` (picked at ``started``, ``time.monotonic()``)."""
    return CreateResult(
        index=index, status=status, item=item, elapsed=time.monotonic() - started, **kwargs
    )


def invalid_result(index: int, item: ItemT, started: float, exc: Exception) -> CreateResult[ItemT]:
    """The outcome of an item its validation refused (``exc``)."""
    if not isinstance(exc, ContactValidationError):  # an input no rule foresaw: one outcome
        exc = ContactValidationError(f"cannot be read: {exc}")
    return result_of(index, item, started, FAILED, error=exc)


def duplicate_result(
    index: int, item: ItemT, started: float, first: int, dedupe_key: DedupeKey
) -> CreateResult[ItemT]:
    """The outcome of an item with the identity of item ``first``, seen before."""
    error = DuplicateInputError(
        duplicate_message("item", index, first, dedupe_key), first_index=first
    )
    return result_of(index, item, started, SKIPPED, error=error)


def cancelled_result(
    index: int, item: ItemT, started: float, attempts: list[int]
) -> CreateResult[ItemT]:
    """The outcome of an item whose worker was cancelled while it was on it."""
    if attempts:
        unknown = OutcomeUnknownError("the run was cancelled while this item was sent")
        return result_of(index, item, started, UNKNOWN, error=unknown, attempts=len(attempts))
    error = QomonError("the run was cancelled before this item was sent")
    return result_of(index, item, started, SKIPPED, error=error)
