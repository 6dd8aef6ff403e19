"""The bounded worker pool: many creates at once, each one a synchronous create, none twice.

``QomonClient.create_contacts(items)`` returns a :class:`BulkRun`, an async iterator of one
:class:`CreateResult` per input item. Inside: ``concurrency`` workers pull the input one item
at a time (so the input is read only as fast as workers free up: backpressure), each sends one
``POST /contacts`` through the client's shared rate limiter and awaits it to a confirmed id, or to
a reconciled one after an ambiguous failure (see ``QomonClient.create_contact``). With
``concurrency=1`` over a plain iterable there is no worker task: each ``anext()`` sends the next
item in the caller's own task and returns its result (nothing is sent between two calls).

Every input item gets exactly one result; after a 401/403 no new request is sent and the rest of
the input ends ``"skipped"``; closing the run early (``break``, ``aclose()``, ``aclosing``) lets the
requests already sent finish and keeps their outcomes in :attr:`BulkRun.unclaimed`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import logging
import time
import types
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Container,
    Iterable,
    Iterator,
    Sized,
)
from typing import Any, Literal

from . import _bodies
from ._budget import CALL_BUDGET
from ._config import RetryPolicy
from ._create import Claims, CreateProtocol, Request, Search
from ._dedupe import DedupeKey, SeenTable, identity_digest
from ._exceptions import (
    Aborted,
    AuthenticationError,
    ContactValidationError,
    OutcomeUnknownError,
    PermissionDeniedError,
    QomonError,
)
from ._models import Contact, confirmed
from ._outcomes import (
    CREATED,
    FAILED,
    SKIPPED,
    UNKNOWN,
    BulkProgress,
    CreateResult,
    CreateStatus,
    ItemT,
    cancelled_result,
    duplicate_result,
    invalid_result,
    result_of,
)
from ._upsert_verify import ReadBack, send_upsert

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


_Mode = Literal["create", "upsert"]


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
        dedupe_key: DedupeKey = "mail+names",
        dedupe_spill: int | None = None,
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
        max_wait: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._backend = backend
        self._mode = mode
        self._concurrency = concurrency
        self._ordered = ordered
        self._reconcile = reconcile
        if dedupe_key not in ("mail+names", "mail"):
            raise ValueError(f"dedupe_key must be 'mail+names' or 'mail', not {dedupe_key!r}")
        self._dedupe_key: DedupeKey = dedupe_key
        self._seen = SeenTable(spill=dedupe_spill) if dedupe else None
        # With dedupe=False (twins wanted): the contacts items obtained, kept while another
        # item's reconciliation could meet them, so that a contact is never given to two items.
        # With dedupe, none is kept: no two items of the run are one person (one mail, or one
        # mail and names, folded), and a reconciliation takes only a contact with the mail and
        # names of its own item (same_person); a contact without a mail is never taken. So no
        # reconciliation can meet another item's contact (Qomon stores what was sent).
        self._claims = None if dedupe else Claims()
        self._retry = retry
        self._timeout = timeout
        self._on_progress = on_progress
        self._on_attempt = on_attempt
        self._in_doubt = in_doubt
        self._read_back = (
            ReadBack(backend.get_contact, backend.search, verify_timeout, verify_interval)
            if verify
            else None
        )
        self._strict = strict
        if total is None and isinstance(items, Sized):
            total = len(items)
        self.progress = BulkProgress(total=total)
        #: The fatal error (401/403) that stopped the run, if any.
        self.fatal: QomonError | None = None
        #: Outcomes that happened after the run was closed (never yielded).
        self.unclaimed: list[CreateResult[ItemT]] = []
        self._sync_items: Iterator[tuple[int, Any]] | None = None
        self._async_items: AsyncIterator[Any] | None = None
        if isinstance(items, AsyncIterable):
            self._async_items = aiter(items)
        else:
            self._sync_items = enumerate(items)  # numbered as read, in C
        self._max_wait = max_wait
        # One worker over a plain iterable: the task that iterates the run sends each item itself
        # (no worker task, no hand-over of each result from one task to another).
        self._inline = concurrency == 1 and self._async_items is None
        # The results deque while an unordered run is open (None: every result goes through
        # the run's generator).
        self._ready_results: collections.deque[CreateResult[ItemT]] | None = None
        self._ready: asyncio.Future[None] | None = None  # the consumer waits for a result
        self._live = concurrency  # workers not ended
        # Set when another task asks the run to end while it runs (see aclose); done once ended.
        self._ended: asyncio.Future[None] | None = None
        self._gen = self._run()

    # -- the iterator protocol ------------------------------------------------------------------

    def __aiter__(self) -> BulkRun[ItemT]:
        return self

    def __anext__(self) -> Awaitable[CreateResult[ItemT]]:
        # The inline path (one item at a time, sent in the caller's task): the run's
        # generator's own awaitable, without a coroutine of this method in between, resumed
        # with every answer of every item. Everything else (worker runs, a second consumer)
        # takes the checks and waiting below, when awaited.
        if self._inline and not _running(self._gen):
            return self._gen.__anext__()
        return self._anext()

    async def _anext(self) -> CreateResult[ItemT]:
        results = self._ready_results
        if results is not None:
            # Unordered and running (the run's generator is paused at a yield): results are
            # taken, and waited for, here without resuming the generator for each.
            while not results and self._live:
                if self._ready is not None and not self._ready.done():
                    raise RuntimeError("anext(): the bulk run is already awaited by another task")
                ready = self._ready = self._loop.create_future()
                try:
                    await ready
                except asyncio.CancelledError as exc:
                    # Into the generator at its yield: it shuts the run down as if it had been
                    # waiting itself, and the cancellation goes on.
                    await self._gen.athrow(exc)
                    raise
                if self._ready_results is None:  # closed meanwhile by another task
                    await self._until_ended()
                    raise StopAsyncIteration
            if results:
                result = results.popleft()
                self._wake(self._room)
                return result
        elif self._inline and _running(self._gen):
            # The first consumer is sending an item itself (its generator would say "running").
            raise RuntimeError("anext(): the bulk run is already awaited by another task")
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop the run: nothing new is sent; requests in flight finish into ``unclaimed``.

        May be called from another task while one iterates: the iteration then ends (once the
        requests in flight have finished into ``unclaimed``) and so does this call."""
        if _running(self._gen):
            # Another task is inside the run, waiting for a result: ask the run to end there.
            if self._inline:
                # That task is sending an item itself: nothing new is sent (nor retried), its
                # outcome goes to unclaimed and the iteration ends.
                self._closing = True
            await self._until_ended(wake=self._ready)
            return
        await self._gen.aclose()

    async def _until_ended(self, wake: asyncio.Future[None] | None = None) -> None:
        """Wait until the run's generator, running or closing in another task, has ended."""
        if not _running(self._gen):
            return
        ended = self._ended
        if ended is None:
            ended = self._ended = self._loop.create_future()
        self._wake(wake)
        await asyncio.shield(ended)

    async def __aenter__(self) -> BulkRun[ItemT]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the run ---------------------------------------------------------------------------------
    #
    # Workers append results to a deque and wake the consumer through one future; the consumer
    # takes them without awaiting while any are ready. A worker waits only when ``2 * concurrency``
    # results are unconsumed (backpressure), and in ordered mode when its next item would leave
    # the look-ahead window. With one worker over a plain iterable there is no worker task: the
    # run's generator drives the same item loop (``_items(inline=True)``) in the consumer's own
    # task, one item per ``anext()``, and yields what it yields.

    async def _run(self) -> AsyncGenerator[CreateResult[ItemT], None]:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._closing = False
        self._closed_error = QomonError("the bulk run was closed before this item was sent")
        self._next_index = 0
        self._yielded = 0
        self._input_done = False
        self._input_error: BaseException | None = None
        self._input_lock = asyncio.Lock() if self._async_items is not None else None
        self._window_size = max(4 * self._concurrency, 64)
        self._results: collections.deque[CreateResult[ItemT]] = collections.deque()
        self._room_size = 2 * self._concurrency
        self._room: asyncio.Future[None] | None = None  # workers wait for the consumer
        self._window: asyncio.Future[None] | None = None  # ordered: workers wait to advance
        # Qomon's clock (epoch seconds) when each item in flight was picked; None: unknown.
        self._in_flight: dict[int, float | None] = {}
        self._pulling: set[asyncio.Task[None]] = set()
        buffer: dict[int, CreateResult[ItemT]] = {}
        results = self._results
        finished = False
        items: AsyncGenerator[CreateResult[ItemT], None] | None = None
        if self._inline:
            self._workers: list[asyncio.Future[None]] = []
            items = self._items(inline=True)
        else:
            # The workers' requests each wait ``max_wait`` at most before they are sent: the
            # workers inherit this context (the caller's own context is left as it was).
            token = CALL_BUDGET.set(self._max_wait) if self._max_wait is not None else None
            try:
                self._workers = [
                    asyncio.ensure_future(self._work()) for _ in range(self._concurrency)
                ]
            finally:
                if token is not None:
                    CALL_BUDGET.reset(token)
            if not self._ordered:
                self._ready_results = results
        try:
            if items is not None:
                # The consumer's own task sends each item (one at a time: results come in order).
                budget = self._max_wait
                step = items.__anext__
                while True:
                    # Its requests wait ``max_wait`` at most; the caller's context is given back
                    # as it was before each result is yielded.
                    token = CALL_BUDGET.set(budget) if budget is not None else None
                    try:
                        result = await step()
                    except StopAsyncIteration:
                        break
                    finally:
                        if token is not None:
                            CALL_BUDGET.reset(token)
                    if self._closing:  # closed by another task while this item was in flight
                        self.unclaimed.append(result)
                        return
                    yield result
            else:
                while True:
                    if self._ordered and self._yielded in buffer:
                        result = buffer.pop(self._yielded)
                        self._advance()
                        yield result
                        continue
                    if results:
                        result = results.popleft()
                        room = self._room
                        if room is not None and not room.done():
                            room.set_result(None)
                        if self._ordered:
                            buffer[result.index] = result
                            continue
                        self._yielded += 1
                        yield result
                        continue
                    if self._live == 0:
                        break
                    self._ready = loop.create_future()
                    await self._ready
                    if self._ended is not None:  # closed by another task
                        return
            finished = True
            # A worker that died of a bug must not pass for a run that ended well.
            await asyncio.gather(*self._workers)
            if self._input_error is not None:
                raise self._input_error
        except asyncio.CancelledError:
            await self._shutdown(cancel=True, buffer=buffer)
            raise
        finally:
            self._ready_results = None
            if not finished:
                await self._shutdown(cancel=False, buffer=buffer)
            if items is not None:
                await items.aclose()
            if self._seen is not None:
                self._seen.close()
            self._wake(self._ended)

    @staticmethod
    def _wake(waiter: asyncio.Future[None] | None) -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _advance(self) -> None:
        self._yielded += 1
        self._wake(self._window)

    async def _shutdown(self, *, cancel: bool, buffer: dict[int, CreateResult[ItemT]]) -> None:
        """Stop pulling input, let (or make) the workers end, keep every outcome."""
        self._ready_results = None
        if self._closing:
            return
        self._closing = True
        self._wake(self._window)
        self._wake(self._room)
        if cancel:
            for task in self._workers:
                task.cancel()
        else:
            # Workers waiting on the input (a queue fed by a bot may wait forever) hold no item.
            for task in list(self._pulling):
                task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self.unclaimed.extend(self._results)
        self._results.clear()
        self.unclaimed.extend(buffer.values())
        self.unclaimed.sort(key=lambda r: r.index)
        buffer.clear()

    async def _pull(self) -> tuple[int, Any] | None:
        """The next input item and its index, or None when the input is over or the run closed."""
        if self._ordered:
            while not (self._closing or self._next_index < self._yielded + self._window_size):
                if self._window is None or self._window.done():
                    self._window = self._loop.create_future()
                await self._window
        if self._input_lock is None:
            return self._next_item()
        async with self._input_lock:
            return await self._next_item_async()

    def _next_item(self) -> tuple[int, Any] | None:
        if self._closing or self._input_done:
            return None
        assert self._sync_items is not None
        try:
            picked = next(self._sync_items)
        except StopIteration:
            self._input_done = True
            return None
        except Exception as exc:  # the input itself failed: report it after the rest
            self._input_failed(exc)
            return None
        self._next_index = picked[0] + 1
        return picked

    async def _next_item_async(self) -> tuple[int, Any] | None:
        if self._closing or self._input_done:
            return None
        assert self._async_items is not None
        try:
            item = await anext(self._async_items)
        except StopAsyncIteration:
            self._input_done = True
            return None
        except Exception as exc:  # the input itself failed: report it after the rest
            self._input_failed(exc)
            return None
        index = self._next_index
        self._next_index = index + 1
        return index, item

    def _input_failed(self, exc: Exception) -> None:
        self._input_done = True
        self._input_error = exc
        logger.error("bulk input raised %s: no more items are read", exc)

    async def _work(self) -> None:
        """A worker task: the item loop, which hands each result over to the consumer itself."""
        try:
            # Never yields (inline=False): driven to its end in one step, no hop per item.
            async for _ in self._items(inline=False):
                pass
        finally:
            self._live -= 1
            if self._live == 0:
                self._wake(self._ready)

    async def _items(self, *, inline: bool) -> AsyncGenerator[CreateResult[ItemT], None]:
        """Send items one at a time: a worker's loop, or (``inline``) the run's own.

        Every item's whole life is here: picked, checked, sent, counted and handed over, without
        a coroutine of its own (a frame built, and resumed with each answer, per item); the rare
        outcomes are built by the helpers below. A worker task drives it to its end in one step
        (each result handed over to the consumer through ``self._results``: nothing is
        yielded); with one worker over a plain iterable (``inline``), the run's generator drives
        it in the consumer's task and it yields each result.
        """
        task = asyncio.current_task()
        assert task is not None
        pulling = self._pulling
        # A plain iterable read in order of arrival is read without awaiting (and in order
        # when one item at a time is sent).
        direct = self._input_lock is None and (inline or not self._ordered)
        results = self._results
        progress = self.progress
        on_progress = self._on_progress
        creating = self._mode == "create"
        to_dict = _bodies.contact_to_dict if creating else _bodies.upsert_to_dict
        strict = self._strict
        seen = self._seen
        dedupe_key = self._dedupe_key
        creates = self._backend.creates
        claims = self._claims
        exclude: Container[int] = () if claims is None else claims
        in_flight = self._in_flight
        in_doubt = self._in_doubt
        reconcile = self._reconcile
        abort = self._abort
        monotonic = time.monotonic
        on_attempt = self._attempt_hook if self._on_attempt is not None else None
        names = dedupe_key == "mail+names"
        while True:
            if direct:
                picked = self._next_item()
            else:
                pulling.add(task)
                try:
                    picked = await self._pull()
                finally:
                    pulling.discard(task)
            if picked is None:
                break
            index, item = picked
            # Not kept while the item is in flight: one tracked tuple less per item for every
            # garbage collection meanwhile to traverse.
            del picked
            started = monotonic()
            result: CreateResult[ItemT] | None = None
            data: dict[str, Any] | None = None
            if self.fatal is not None or self._closing:
                result = result_of(index, item, started, SKIPPED, error=self._abort())
            else:
                try:
                    data = to_dict(item, strict=strict)
                except (ContactValidationError, TypeError, ValueError) as exc:
                    result = invalid_result(index, item, started, exc)
                if seen is not None and data is not None:
                    digest = identity_digest(data, names)
                    if digest is not None:
                        first = seen.first(digest, index)
                        if first is not None:
                            result = duplicate_result(index, item, started, first, dedupe_key)
            if result is None:
                assert data is not None
                attempts: list[int] = []
                progress.in_flight += 1
                try:
                    if creating:
                        in_doubt_since = in_doubt(index, item) if in_doubt else None
                        if claims is not None:
                            # Qomon's clock when the item was picked (None: claims are kept
                            # meanwhile).
                            in_flight[index] = (
                                None
                                if in_doubt_since is not None
                                else creates.qomon_seconds(time.time())
                            )
                        outcome = await creates.create(
                            data,
                            reconcile=reconcile,
                            retry=self._retry,
                            timeout=self._timeout,
                            in_doubt_since=in_doubt_since,
                            abort=abort,
                            on_attempt=None if on_attempt is None else on_attempt(index),
                            attempts_out=attempts,
                            exclude=exclude,
                        )
                        if claims is not None and claims.add(
                            outcome.contact, keep=outcome.reconciled and outcome.attempts == 0
                        ):
                            self._forget_old_claims()  # a group of claims began, or doubled
                        # result_of's CreateResult, built here positionally: no frame, no
                        # keyword dict to pack and unpack on every create.
                        result = CreateResult(
                            index,
                            CREATED,
                            item,
                            outcome.contact,
                            None,
                            outcome.attempts,
                            outcome.reconciled,
                            monotonic() - started,
                        )
                        # Not kept while this worker's next item is in flight: its contact
                        # would stay alive until the next answer, one more per worker for
                        # every garbage collection to traverse.
                        del outcome
                    else:
                        result = await self._upsert(index, item, data, started, attempts)
                except asyncio.CancelledError:
                    self.unclaimed.append(cancelled_result(index, item, started, attempts))
                    raise
                except Exception as exc:
                    result = self._failed(index, item, started, exc, attempts)
                finally:
                    progress.in_flight -= 1
                    if claims is not None:
                        in_flight.pop(index, None)
            progress.count(result)
            if on_progress is not None:
                try:
                    on_progress(progress)
                except Exception:  # a display must not cost an item its outcome
                    logger.exception("the on_progress callback raised; ignored")
            if inline:
                yield result
            elif len(results) < self._room_size and not self._closing:
                results.append(result)  # room for it: handed over without awaiting
                self._wake(self._ready)
            else:
                await self._emit(result)

    async def _emit(self, result: CreateResult[ItemT]) -> None:
        while len(self._results) >= self._room_size and not self._closing:
            if self._room is None or self._room.done():
                self._room = self._loop.create_future()
            try:
                await self._room
            except asyncio.CancelledError:
                self.unclaimed.append(result)
                raise
        if self._closing:
            self.unclaimed.append(result)
            return
        self._results.append(result)
        self._wake(self._ready)

    def _abort(self) -> QomonError | None:
        """Asked right before each request: a reason not to send it, or None."""
        if self.fatal is not None:
            return self.fatal
        if self._closing:
            return self._closed_error
        return None

    # -- one item's rarer paths (the common one is inline in _work) ------------------------------

    async def _upsert(
        self, index: int, item: Any, data: dict[str, Any], started: float, attempts: list[int]
    ) -> CreateResult[ItemT]:
        contact, reconciled = await send_upsert(
            self._backend.request,
            data,
            attempts=attempts,
            retry=self._retry,
            timeout=self._timeout,
            abort=self._abort,
            on_attempt=self._attempt_hook(index),
            read=self._read_back,
        )
        return result_of(
            index,
            item,
            started,
            CREATED,
            contact=confirmed(contact) if contact is not None else None,
            attempts=len(attempts),
            reconciled=reconciled,
        )

    def _failed(
        self, index: int, item: Any, started: float, exc: Exception, attempts: list[int]
    ) -> CreateResult[ItemT]:
        """The outcome of an item whose create (or upsert) raised ``exc``."""
        if isinstance(exc, Aborted):
            error = exc.reason if isinstance(exc.reason, QomonError) else QomonError(str(exc))
            return result_of(index, item, started, SKIPPED, error=error, attempts=len(attempts))
        if isinstance(exc, OutcomeUnknownError):
            # A lookup refused with 401/403 is as fatal as a create refused so.
            if isinstance(exc.__cause__, AuthenticationError | PermissionDeniedError):
                self._set_fatal(exc.__cause__)
            return result_of(index, item, started, UNKNOWN, error=exc, attempts=len(attempts))
        if isinstance(exc, AuthenticationError | PermissionDeniedError):
            self._set_fatal(exc)
            return result_of(index, item, started, FAILED, error=exc, attempts=len(attempts))
        if isinstance(exc, QomonError):
            return result_of(index, item, started, FAILED, error=exc, attempts=len(attempts))
        # A bug, or a caller's hook that raised: still one outcome.
        logger.exception("unexpected error on bulk item %d", index, exc_info=exc)
        if attempts:  # it was sent: whether it landed is not known
            unknown = OutcomeUnknownError(f"unexpected error after sending: {exc!r}", cause=exc)
            return result_of(index, item, started, UNKNOWN, error=unknown, attempts=len(attempts))
        error = QomonError(f"unexpected error: {exc!r}")
        return result_of(index, item, started, FAILED, error=error, attempts=0)

    def _forget_old_claims(self) -> None:
        """Drop the claims no item in flight (or picked later) can meet in a reconciliation."""
        assert self._claims is not None
        floor = self._backend.creates.qomon_seconds(time.time())
        for start in self._in_flight.values():
            if start is None or floor is None:
                self._claims.keep_all()
                return
            floor = min(floor, start)
        # Items picked later start later: with none in flight, "now" is the floor.
        if floor is None:
            self._claims.keep_all()
        else:
            self._claims.drop_before(dt.datetime.fromtimestamp(floor, dt.timezone.utc))

    def _set_fatal(self, exc: AuthenticationError | PermissionDeniedError) -> None:
        if self.fatal is None:
            self.fatal = exc
            logger.error("fatal %s: the bulk run sends nothing more", exc.status_code)

    def _attempt_hook(self, index: int) -> Callable[[dt.datetime], Awaitable[None] | None] | None:
        hook = self._on_attempt
        if hook is None:
            return None
        return lambda started_at: hook(index, started_at)


def _running(gen: AsyncGenerator[Any, None]) -> bool:
    """Whether ``gen`` is executing (awaiting inside, driven by some task)."""
    return isinstance(gen, types.AsyncGeneratorType) and gen.ag_running
