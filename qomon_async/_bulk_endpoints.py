"""The bulk endpoints of :class:`~qomon_async.QomonClient`: ``create_contacts`` and
``upsert_contacts``, each a :class:`~qomon_async.BulkRun` over the client's backend.

A mixin: the methods check their options and hand them to :class:`BulkRun`, which does the work.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any, Protocol, TypeVar, overload

from ._bodies import ContactInput, UpsertInput
from ._budget import check_max_wait
from ._bulk import BulkBackend, BulkRun, InDoubt, OnAttempt, OnProgress
from ._config import RetryPolicy
from ._dedupe import DedupeKey
from ._types import ContactDict, UpsertDict

_C = TypeVar("_C", bound=ContactInput)
_U = TypeVar("_U", bound=UpsertInput)


class _Host(Protocol):
    """What :class:`BulkEndpoints` needs of the client it is mixed into."""

    def _strict(self, strict: bool | None) -> bool: ...

    def _bulk_backend(self) -> BulkBackend: ...


class BulkEndpoints:
    """``QomonClient``'s bulk writes: many contacts created or upserted through one pool."""

    # Typed callers: a list of dict literals is checked as ContactDicts (a misspelled key is a
    # type error); any other item type (ContactWrite, Contact...) is kept in the results' type.
    @overload
    def create_contacts(
        self: _Host,
        contacts: Iterable[ContactDict] | AsyncIterable[ContactDict],
        *,
        concurrency: int = 8,
        ordered: bool = False,
        reconcile: bool = True,
        dedupe: bool = True,
        dedupe_key: DedupeKey = "mail+names",
        dedupe_spill: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        total: int | None = None,
        on_progress: OnProgress | None = None,
        on_attempt: OnAttempt | None = None,
        in_doubt: InDoubt | None = None,
        strict: bool | None = None,
        max_wait: float | None = None,
    ) -> BulkRun[ContactDict]: ...

    @overload
    def create_contacts(
        self: _Host,
        contacts: Iterable[_C] | AsyncIterable[_C],
        *,
        concurrency: int = 8,
        ordered: bool = False,
        reconcile: bool = True,
        dedupe: bool = True,
        dedupe_key: DedupeKey = "mail+names",
        dedupe_spill: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        total: int | None = None,
        on_progress: OnProgress | None = None,
        on_attempt: OnAttempt | None = None,
        in_doubt: InDoubt | None = None,
        strict: bool | None = None,
        max_wait: float | None = None,
    ) -> BulkRun[_C]: ...

    def create_contacts(
        self: _Host,
        contacts: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = 8,
        ordered: bool = False,
        reconcile: bool = True,
        dedupe: bool = True,
        dedupe_key: DedupeKey = "mail+names",
        dedupe_spill: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        total: int | None = None,
        on_progress: OnProgress | None = None,
        on_attempt: OnAttempt | None = None,
        in_doubt: InDoubt | None = None,
        strict: bool | None = None,
        max_wait: float | None = None,
    ) -> BulkRun[Any]:
        """Create many contacts, ``concurrency`` at a time; one :class:`CreateResult` per item.

        Each item is one ``POST /contacts`` awaited to its confirmed id, with the guarantees of
        :meth:`create_contact` (reconciliation after an ambiguous failure: never a duplicate).
        Results come as items finish (``ordered=True``: in input order). The input (any iterable
        or async iterable of dicts or Structs) is read only as workers free up, so memory stays
        flat; all workers share the client's rate limiter.

        Args:
            concurrency: requests in flight at most. With 1 and a plain iterable, each item is
                sent by the task iterating the run, inside its ``anext()``: nothing is sent
                while that task handles a result.
            ordered: yield results in input order (a bounded look-ahead window).
            reconcile: look up ambiguous creates by mail instead of reporting them unknown.
            dedupe: an item with the same identity as an earlier one is ``"skipped"`` with a
                :class:`DuplicateInputError` (memory: 14 to 28 bytes per distinct item).
            dedupe_key: the identity: ``"mail+names"`` (mail, first name and surname, as
                Qomon matches people) or ``"mail"`` (the mail alone identifies a person).
            dedupe_spill: distinct items kept in memory for de-duplication at most; beyond,
                the table moves to a temporary SQLite file. None: never.
            total: the input's length, for the ETA (taken from ``len()`` when it has one).
            on_progress: called with the live :class:`BulkProgress` after each item.
            on_attempt: ``(index, started_at)``, called (and awaited if it returns an
                awaitable) before each round of sending an item: a journal writes it first.
            in_doubt: ``(index, item) -> datetime | None``: a time since which an earlier run
                may have created this item; it is looked up before anything is sent.
            strict: refuse unknown contact keys (``None``: the client's ``strict``); such an
                item ends ``"failed"`` with a :class:`ContactValidationError`, unsent.
            max_wait: seconds each request may wait before it is sent (default: the client's
                ``max_wait``); an item that would wait longer fails with
                :class:`RateLimitTimeout`, nothing sent for it.

        A 401 or 403 stops the run: no new request is sent, the rest ends ``"skipped"``.
        """
        return BulkRun(
            self._bulk_backend(),
            contacts,
            mode="create",
            concurrency=concurrency,
            ordered=ordered,
            reconcile=reconcile,
            dedupe=dedupe,
            dedupe_key=dedupe_key,
            dedupe_spill=dedupe_spill,
            retry=retry,
            timeout=timeout,
            total=total,
            on_progress=on_progress,
            on_attempt=on_attempt,
            in_doubt=in_doubt,
            strict=self._strict(strict),
            max_wait=check_max_wait(max_wait),
        )

    @overload
    def upsert_contacts(
        self: _Host,
        contacts: Iterable[UpsertDict] | AsyncIterable[UpsertDict],
        *,
        concurrency: int = 8,
        ordered: bool = False,
        dedupe: bool = True,
        dedupe_key: DedupeKey = "mail+names",
        dedupe_spill: int | None = None,
        verify: bool = False,
        verify_timeout: float = 30.0,
        verify_interval: float = 2.0,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        total: int | None = None,
        on_progress: OnProgress | None = None,
        on_attempt: OnAttempt | None = None,
        strict: bool | None = None,
        max_wait: float | None = None,
    ) -> BulkRun[UpsertDict]: ...

    @overload
    def upsert_contacts(
        self: _Host,
        contacts: Iterable[_U] | AsyncIterable[_U],
        *,
        concurrency: int = 8,
        ordered: bool = False,
        dedupe: bool = True,
        dedupe_key: DedupeKey = "mail+names",
        dedupe_spill: int | None = None,
        verify: bool = False,
        verify_timeout: float = 30.0,
        verify_interval: float = 2.0,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        total: int | None = None,
        on_progress: OnProgress | None = None,
        on_attempt: OnAttempt | None = None,
        strict: bool | None = None,
        max_wait: float | None = None,
    ) -> BulkRun[_U]: ...

    def upsert_contacts(
        self: _Host,
        contacts: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int = 8,
        ordered: bool = False,
        dedupe: bool = True,
        dedupe_key: DedupeKey = "mail+names",
        dedupe_spill: int | None = None,
        verify: bool = False,
        verify_timeout: float = 30.0,
        verify_interval: float = 2.0,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        total: int | None = None,
        on_progress: OnProgress | None = None,
        on_attempt: OnAttempt | None = None,
        strict: bool | None = None,
        max_wait: float | None = None,
    ) -> BulkRun[Any]:
        """The twin of :meth:`create_contacts` on ``POST /contacts/upsert`` (1 token, no id back).

        ``"created"`` means Qomon accepted the upsert (202). With ``verify=True`` each item is
        then read back (by ``id``, else by ``mail``) every ``verify_interval`` seconds until it
        shows the values sent, within ``verify_timeout``: Qomon applies upserts later and drops
        silently a record naming an unknown form or value. A result is then ``"created"`` with
        its contact, or ``"unknown"``.
        """
        return BulkRun(
            self._bulk_backend(),
            contacts,
            mode="upsert",
            concurrency=concurrency,
            ordered=ordered,
            reconcile=False,  # upserts are looked up by verify=True, not reconciled
            dedupe=dedupe,
            dedupe_key=dedupe_key,
            dedupe_spill=dedupe_spill,
            retry=retry,
            timeout=timeout,
            total=total,
            on_progress=on_progress,
            on_attempt=on_attempt,
            in_doubt=None,
            verify=verify,
            verify_timeout=verify_timeout,
            verify_interval=verify_interval,
            strict=self._strict(strict),
            max_wait=check_max_wait(max_wait),
        )
