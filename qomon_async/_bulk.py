"""The bounded worker pool: many creates at once, each one a synchronous create, none twice.

``QomonClient.create_contacts(items)`` returns a :class:`BulkRun`, an async iterator of one
:class:`CreateResult` per input item. Inside: ``concurrency`` workers pull the input one item
at a time (so the input is read only as fast as workers free up: backpressure), each sends one
``POST /contacts`` through the client's shared rate limiter and awaits it to a confirmed id, or to
a reconciled one after an ambiguous failure (see ``QomonClient.create_contact``).

Every input item gets exactly one result; after a 401/403 no new request is sent and the rest of
the input ends ``"skipped"``; closing the run early (``break``, ``aclose()``, ``aclosing``) lets the
requests already sent finish and keeps their outcomes in :attr:`BulkRun.unclaimed`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import hashlib
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sized,
)
from typing import Any, Generic, Literal, TypeVar

from . import _protocol
from ._config import RetryPolicy
from ._create import CreateProtocol, Request, Search, maybe_await
from ._exceptions import (
    Aborted,
    AuthenticationError,
    ContactValidationError,
    DuplicateInputError,
    OutcomeUnknownError,
    PermissionDeniedError,
    QomonError,
)
from ._models import ConfirmedContact, Contact, confirmed
from ._protocol import fold
from ._query import Condition, Query
from ._retry import is_ambiguous
from ._validation import duplicate_message

__all__ = ["BulkBackend", "BulkProgress", "BulkRun", "CreateResult", "CreateStatus"]

logger = logging.getLogger("qomon_async")

InDoubt = Callable[[int, Any], "dt.datetime | None"]
OnAttempt = Callable[[int, dt.datetime], "Awaitable[None] | None"]
OnProgress = Callable[["BulkProgress"], None]


@dataclasses.dataclass(frozen=True)
class BulkBackend:
    """What the pool needs of a client: the create protocol and three ways to reach Qomon."""

    creates: CreateProtocol
    request: Request
    get_contact: Callable[[int], Awaitable[Contact]]
    search: Search


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

    @property
    def ok(self) -> bool:
        """Whether the item ended ``"created"``."""
        return self.status is CreateStatus.CREATED


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
        setattr(self, result.status.value, getattr(self, result.status.value) + 1)
        if result.reconciled:
            self.reconciled += 1


_END = object()
_Mode = Literal["create", "upsert"]

# Scalar fields compared when reading back an upsert.
_VERIFIED_FIELDS = (
    "firstname", "surname", "married_name", "gender", "mail", "phone", "mobile", "nationality",
    "birthcity", "birthcountry", "birthdept", "age_category", "black_list",
)  # fmt: skip


class BulkRun(AsyncIterator[CreateResult[ItemT]]):
    """A running bulk job: iterate it for results; ``progress`` for counters.

    Use it with ``async for``; close it early with ``break`` (then ``await run.aclose()``), or
    ``async with client.create_contacts(...) as run``. Closing stops reading the input and sends
    nothing new; requests already sent finish, and their results land in :attr:`unclaimed`.
    """

    def __init__(
        self,
        backend: BulkBackend,
        items: Iterable[ItemT] | AsyncIterable[ItemT],
        *,
        mode: _Mode,
        concurrency: int,
        ordered: bool,
        reconcile: bool,
        dedupe: bool,
        retry: RetryPolicy | None,
        timeout: float | None,
        total: int | None,
        on_progress: OnProgress | None,
        on_attempt: OnAttempt | None,
        in_doubt: InDoubt | None,
        verify: bool = False,
        verify_timeout: float = 30.0,
        verify_interval: float = 2.0,
        strict: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._backend = backend
        self._mode = mode
        self._concurrency = concurrency
        self._ordered = ordered
        self._reconcile = reconcile
        self._dedupe = dedupe
        self._retry = retry
        self._timeout = timeout
        self._on_progress = on_progress
        self._on_attempt = on_attempt
        self._in_doubt = in_doubt
        self._verify = verify
        self._verify_timeout = verify_timeout
        self._verify_interval = verify_interval
        self._strict = strict
        if total is None and isinstance(items, Sized):
            total = len(items)
        self.progress = BulkProgress(total=total)
        #: The fatal error (401/403) that stopped the run, if any.
        self.fatal: QomonError | None = None
        #: Outcomes that happened after the run was closed (never yielded).
        self.unclaimed: list[CreateResult[ItemT]] = []
        self._sync_items: Iterator[Any] | None = None
        self._async_items: AsyncIterator[Any] | None = None
        if isinstance(items, AsyncIterable):
            self._async_items = aiter(items)
        else:
            self._sync_items = iter(items)
        self._gen = self._run()

    # -- the iterator protocol ------------------------------------------------------------------

    def __aiter__(self) -> BulkRun[ItemT]:
        return self

    async def __anext__(self) -> CreateResult[ItemT]:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop the run: nothing new is sent; requests in flight finish into ``unclaimed``."""
        await self._gen.aclose()

    async def __aenter__(self) -> BulkRun[ItemT]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the run ---------------------------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[CreateResult[ItemT], None]:
        self._closing = False
        self._closed_error = QomonError("the bulk run was closed before this item was sent")
        self._next_index = 0
        self._yielded = 0
        self._input_done = False
        self._input_error: BaseException | None = None
        self._input_lock = asyncio.Lock()
        self._window = asyncio.Condition()
        self._window_size = max(4 * self._concurrency, 64)
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._room = asyncio.Semaphore(2 * self._concurrency)
        self._seen: dict[int, int] = {}
        # Without de-duplication, twins are wanted: reconciliation must not give one twin the
        # contact another twin created (memory: one id per created item).
        self._claimed: set[int] = set()
        self._pulling: set[asyncio.Task[None]] = set()
        self._live = self._concurrency
        self._workers = [asyncio.ensure_future(self._work()) for _ in range(self._concurrency)]
        buffer: dict[int, CreateResult[ItemT]] = {}
        finished = False
        try:
            while True:
                if self._ordered and self._yielded in buffer:
                    result = buffer.pop(self._yielded)
                    await self._advance()
                    yield result
                    continue
                message = await self._queue.get()
                if message is _END:
                    break
                assert isinstance(message, CreateResult)
                self._room.release()
                if self._ordered:
                    buffer[message.index] = message
                    continue
                self._yielded += 1
                yield message
            finished = True
            # A worker that died of a bug must not pass for a run that ended well.
            await asyncio.gather(*self._workers)
            if self._input_error is not None:
                raise self._input_error
        except asyncio.CancelledError:
            await self._shutdown(cancel=True, buffer=buffer)
            raise
        finally:
            if not finished:
                await self._shutdown(cancel=False, buffer=buffer)

    async def _advance(self) -> None:
        async with self._window:
            self._yielded += 1
            self._window.notify_all()

    async def _shutdown(self, *, cancel: bool, buffer: dict[int, CreateResult[ItemT]]) -> None:
        """Stop pulling input, let (or make) the workers end, keep every outcome."""
        if self._closing:
            return
        self._closing = True
        async with self._window:
            self._window.notify_all()
        if cancel:
            for task in self._workers:
                task.cancel()
        else:
            # Workers waiting on the input (a queue fed by a bot may wait forever) hold no item.
            for task in list(self._pulling):
                task.cancel()
        while True:
            message = await self._queue.get()
            if message is _END:
                break
            assert isinstance(message, CreateResult)
            self._room.release()
            self.unclaimed.append(message)
        await asyncio.gather(*self._workers, return_exceptions=True)
        self.unclaimed.extend(buffer.values())
        self.unclaimed.sort(key=lambda r: r.index)
        buffer.clear()

    async def _pull(self) -> tuple[int, Any] | None:
        """The next input item and its index, or None when the input is over or the run closed."""
        if self._ordered:
            async with self._window:
                await self._window.wait_for(
                    lambda: self._closing or self._next_index < self._yielded + self._window_size
                )
        async with self._input_lock:
            if self._closing or self._input_done:
                return None
            try:
                if self._async_items is not None:
                    item = await anext(self._async_items)
                else:
                    assert self._sync_items is not None
                    item = next(self._sync_items)
            except (StopIteration, StopAsyncIteration):
                self._input_done = True
                return None
            except Exception as exc:  # the input itself failed: report it after the rest
                self._input_done = True
                self._input_error = exc
                logger.error("bulk input raised %s: no more items are read", exc)
                return None
            index = self._next_index
            self._next_index += 1
            return index, item

    async def _work(self) -> None:
        try:
            task = asyncio.current_task()
            while True:
                if task is not None:
                    self._pulling.add(task)
                try:
                    picked = await self._pull()
                finally:
                    if task is not None:
                        self._pulling.discard(task)
                if picked is None:
                    break
                index, item = picked
                result = await self._process(index, item)
                self.progress.count(result)
                if self._on_progress is not None:
                    try:
                        self._on_progress(self.progress)
                    except Exception:  # a display must not cost an item its outcome
                        logger.exception("the on_progress callback raised; ignored")
                await self._emit(result)
        finally:
            self._live -= 1
            if self._live == 0:
                self._queue.put_nowait(_END)

    async def _emit(self, result: CreateResult[ItemT]) -> None:
        if self._closing:
            self.unclaimed.append(result)
            return
        try:
            await self._room.acquire()
        except asyncio.CancelledError:
            self.unclaimed.append(result)
            raise
        self._queue.put_nowait(result)

    def _abort(self) -> QomonError | None:
        """Asked right before each request: a reason not to send it, or None."""
        if self.fatal is not None:
            return self.fatal
        if self._closing:
            return self._closed_error
        return None

    # -- one item --------------------------------------------------------------------------------

    async def _process(self, index: int, item: Any) -> CreateResult[ItemT]:
        started = time.monotonic()

        def result(status: CreateStatus, **kwargs: Any) -> CreateResult[ItemT]:
            return CreateResult(
                index=index, status=status, item=item, elapsed=time.monotonic() - started, **kwargs
            )

        reason = self._abort()
        if reason is not None:
            return result(CreateStatus.SKIPPED, error=reason)
        try:
            if self._mode == "create":
                data = _protocol.contact_to_dict(item, strict=self._strict)
            else:
                data = _protocol.upsert_to_dict(item, strict=self._strict)
        except ContactValidationError as exc:
            return result(CreateStatus.FAILED, error=exc)
        except TypeError as exc:
            return result(CreateStatus.FAILED, error=ContactValidationError(str(exc)))
        if self._dedupe:
            key = _identity(data)
            if key is not None:
                first = self._seen.setdefault(key, index)
                if first != index:
                    return result(
                        CreateStatus.SKIPPED,
                        error=DuplicateInputError(
                            duplicate_message("item", index, first),
                            first_index=first,
                        ),
                    )
        attempts: list[int] = []
        self.progress.in_flight += 1
        try:
            if self._mode == "create":
                outcome = await self._backend.creates.create(
                    data,
                    reconcile=self._reconcile,
                    retry=self._retry,
                    timeout=self._timeout,
                    in_doubt_since=self._in_doubt(index, item) if self._in_doubt else None,
                    abort=self._abort,
                    on_attempt=self._attempt_hook(index),
                    attempts_out=attempts,
                    exclude=() if self._dedupe else self._claimed,
                )
                if not self._dedupe and outcome.contact.id is not None:
                    self._claimed.add(outcome.contact.id)
                return result(
                    CreateStatus.CREATED,
                    contact=confirmed(outcome.contact),
                    attempts=outcome.attempts,
                    reconciled=outcome.reconciled,
                )
            contact, reconciled = await self._upsert(index, data, attempts)
            return result(
                CreateStatus.CREATED,
                contact=confirmed(contact) if contact is not None else None,
                attempts=len(attempts),
                reconciled=reconciled,
            )
        except Aborted as exc:
            error = exc.reason if isinstance(exc.reason, QomonError) else QomonError(str(exc))
            return result(CreateStatus.SKIPPED, error=error, attempts=len(attempts))
        except OutcomeUnknownError as exc:
            # A lookup refused with 401/403 is as fatal as a create refused so.
            if isinstance(exc.__cause__, AuthenticationError | PermissionDeniedError):
                self._set_fatal(exc.__cause__)
            return result(CreateStatus.UNKNOWN, error=exc, attempts=len(attempts))
        except (AuthenticationError, PermissionDeniedError) as exc:
            self._set_fatal(exc)
            return result(CreateStatus.FAILED, error=exc, attempts=len(attempts))
        except QomonError as exc:
            return result(CreateStatus.FAILED, error=exc, attempts=len(attempts))
        except Exception as exc:  # a bug, or a caller's hook that raised: still one outcome
            logger.exception("unexpected error on bulk item %d", index)
            error = QomonError(f"unexpected error: {exc!r}")
            if attempts:  # it was sent: whether it landed is not known
                unknown = OutcomeUnknownError(f"unexpected error after sending: {exc!r}", cause=exc)
                return result(CreateStatus.UNKNOWN, error=unknown, attempts=len(attempts))
            return result(CreateStatus.FAILED, error=error, attempts=0)
        except asyncio.CancelledError:
            if attempts:
                cancelled = result(
                    CreateStatus.UNKNOWN,
                    error=OutcomeUnknownError("the run was cancelled while this item was sent"),
                    attempts=len(attempts),
                )
            else:
                cancelled = result(
                    CreateStatus.SKIPPED,
                    error=QomonError("the run was cancelled before this item was sent"),
                )
            self.unclaimed.append(cancelled)
            raise
        finally:
            self.progress.in_flight -= 1

    def _set_fatal(self, exc: AuthenticationError | PermissionDeniedError) -> None:
        if self.fatal is None:
            self.fatal = exc
            logger.error("fatal %s: the bulk run sends nothing more", exc.status_code)

    def _attempt_hook(self, index: int) -> Callable[[dt.datetime], Awaitable[None] | None] | None:
        hook = self._on_attempt
        if hook is None:
            return None
        return lambda started_at: hook(index, started_at)

    async def _upsert(
        self, index: int, data: dict[str, Any], attempts: list[int]
    ) -> tuple[Contact | None, bool]:
        """Send one upsert; with ``verify``, read it back. Returns (contact, reconciled)."""
        started = dt.datetime.now(dt.timezone.utc)
        await maybe_await(self._on_attempt(index, started) if self._on_attempt else None)
        try:
            await self._backend.request(
                "POST",
                "/contacts/upsert",
                body=_protocol.upsert_body(data),
                idempotent=False,
                retry=self._retry,
                timeout=self._timeout,
                attempts=attempts,
                abort=self._abort,
            )
        except QomonError as exc:
            if not is_ambiguous(exc):
                raise
            if not self._verify:
                raise OutcomeUnknownError(
                    f"the upsert may have been queued ({exc})",
                    cause=exc,
                    attempt_started_at=started,
                ) from exc
            return await self._read_back(data, started, cause=exc), True
        if not self._verify:
            return None, False
        return await self._read_back(data, started, cause=None), False

    async def _read_back(
        self, data: dict[str, Any], since: dt.datetime, *, cause: BaseException | None
    ) -> Contact:
        """Poll until the upserted contact shows the values sent; OutcomeUnknownError on timeout.

        Qomon applies an upsert about 2 s after its 202, and drops silently a record that names
        an unknown form or value (§7.6): only a read shows it was applied.
        """
        deadline = time.monotonic() + self._verify_timeout
        contact_id = data.get("id")
        mail = data.get("mail")
        if contact_id is None and not mail:
            raise OutcomeUnknownError(
                "the upsert has neither id nor mail to read it back by",
                cause=cause,
                attempt_started_at=since,
                reconciliation="nothing to look it up by",
            )
        while True:
            try:
                if contact_id is not None:
                    candidates = [await self._backend.get_contact(int(contact_id))]
                else:
                    query = Query.where(Condition("mail", "eql:strictdata", str(mail).strip()))
                    candidates = [c async for c in self._backend.search(query)]
            except QomonError as exc:
                if getattr(exc, "status_code", None) != 404:
                    raise OutcomeUnknownError(
                        f"the upsert was accepted, and reading it back failed: {exc}",
                        cause=cause or exc,
                        attempt_started_at=since,
                        reconciliation=f"read-back failed: {exc}",
                    ) from exc
                candidates = []
            for contact in candidates:
                if _shows(contact, data):
                    return contact
            if time.monotonic() >= deadline:
                raise OutcomeUnknownError(
                    f"the upsert was not visible after {self._verify_timeout:g} s (Qomon drops a "
                    "record naming an unknown form or value without an error)",
                    cause=cause,
                    attempt_started_at=since,
                    reconciliation="read back until the timeout",
                )
            await asyncio.sleep(self._verify_interval)


def _identity(data: dict[str, Any]) -> int | None:
    """A compact key of (mail, firstname, surname) for input de-duplication; None without mail.

    A 64-bit hash keeps the memory per distinct contact small (about 150 bytes with the index,
    as measured by benchmarks/bench_memory.py).
    """
    mail = fold(data.get("mail"))
    if not mail:
        return None
    text = "\x1f".join((mail, fold(data.get("firstname")), fold(data.get("surname"))))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _shows(contact: Contact, data: dict[str, Any]) -> bool:
    """Whether a contact read back shows the scalar values an upsert sent."""
    for key in _VERIFIED_FIELDS:
        if key in data and data[key] is not None:
            have = getattr(contact, key)
            if isinstance(data[key], str):
                if fold(have) != fold(data[key]):
                    return False
            elif have != data[key]:
                return False
    return True
