"""The import run (``qomon-async import FILE``): read, build, journal, send, report, show.

One :func:`run_import` call is one run::

    mapping -> check the encoding -> client -> forms (GET /v1/forms/type/...) -> builder
    -> check the CSV header -> count the rows -> journal -> report
    -> stream: row -> journal decision -> build -> bulk pool -> journal + report + progress

The input is streamed twice (a counting pass for the ETA, then the run) and never held in
memory. Only rows whose journal decision is SEND or RECONCILE reach the pool; a row already
finished by an earlier run is reported from the journal (``resumed``), a row that does not
build is recorded ``failed`` without a request. The pool yields results in any order; the
pool index of each item in flight maps to its row in ``_Run.pending``, a dict that holds only
the items between the feeder and the results (about three times the concurrency).

Journal protocol per row sent (see ``_journal.py``): ``begin_attempt`` is committed in the
pool's ``on_attempt`` hook, before the request leaves; ``record_outcome`` when the result
arrives. A row the journal holds in doubt is handed to the pool with ``in_doubt`` returning
the journal's ``since``: the client looks it up by mail before sending anything.

The API key is never written: every line printed goes through ``_Console``, which replaces
it by ``***``, and the report writer does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, TextIO, cast

from .._bodies import contact_to_dict, upsert_to_dict
from .._bulk import BulkRun, CreateResult, CreateStatus
from .._client import QomonClient
from .._dedupe import DedupeKey, duplicate_key, duplicate_message
from .._exceptions import (
    APIStatusError,
    AuthenticationError,
    ContactValidationError,
    PermissionDeniedError,
    QomonError,
)
from ._builder import BuiltRow, ContactBuilder
from ._errors import ImporterError, JournalError, RowError, format_row_error
from ._exit import ExitCode, exit_code_for
from ._fields import Route
from ._forms import FormCatalog
from ._journal import Journal, ResumeAction, RowState, fingerprint_input
from ._mapping import ImportMapping, load_mapping
from ._progress import ProgressRenderer, ProgressSnapshot, RateMeter, format_summary
from ._reader import InputFormat, SourceRow, check_encoding, open_input
from ._report import ReportRecord, ReportWriter

__all__ = [
    "FatalImportError",
    "ImportOptions",
    "ImportOutcome",
    "ImportUsageError",
    "ProgressMode",
    "run_import",
]

ProgressMode = Literal["auto", "bar", "plain", "none"]

# Failures shown in the summary (the report has them all).
_SHOWN_FAILURES = 10
# Status codes that resending can fix: not a permanent failure of the row.
_TRANSIENT_STATUS = frozenset({401, 403, 408, 409, 425, 429})
# How often the progress task looks at the counters (the renderer throttles the drawing).
_TICK = 0.1
# The feeder yields to the event loop every this many rows it settles without a request.
_YIELD_EVERY = 256


class ImportUsageError(ImporterError):
    """The run cannot start: no API key, a bad base URL, unknown CSV columns (exit 2)."""


class FatalImportError(QomonError):
    """Qomon refused the API key (401/403) before any row was sent (exit 3)."""


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """What to import and how (the command line's arguments).

    Attributes:
        path: The CSV or JSON Lines file.
        route: ``create`` (``POST /contacts``) or ``upsert`` (``POST /contacts/upsert``).
        mapping: A TOML mapping file, or ``None`` (columns named as Qomon's fields).
        concurrency: Requests in flight at most.
        dry_run: Validate every row and print the problems; send nothing that writes.
        report: The per-row report (``.csv``, ``.jsonl``), or ``None``.
        journal: The SQLite journal that makes the run resumable, or ``None``.
        retry_failed: With a journal: send again the rows that failed for good last time.
        api_key: The space's key (else ``$QOMON_API_KEY``). Never shown.
        base_url: The API's URL (else ``$QOMON_BASE_URL``, then Qomon's).
        input_format: ``csv`` or ``jsonl``; by default from the extension.
        delimiter: The CSV delimiter; by default sniffed.
        progress: ``auto`` (a bar on a terminal, plain lines otherwise), ``bar``, ``plain``,
            ``none``.
        verify: Upsert route: read every contact back until it shows what was sent.
        durable: Sync the journal to disk at every change (power-cut safe); kill-safe either way.
        count_rows: Count the rows first, for the percentage and the ETA.
        dedupe_key: Create route: what makes two rows one person, ``"mail+names"`` (the
            default) or ``"mail"``; a later row with the same is ``skipped`` (a duplicate),
            never sent, and does not make the exit code 1 by itself.
    """

    path: Path
    route: Route = "create"
    mapping: Path | None = None
    concurrency: int = 8
    dry_run: bool = False
    report: Path | None = None
    journal: Path | None = None
    retry_failed: bool = False
    api_key: str | None = dataclasses.field(default=None, repr=False)
    base_url: str | None = None
    input_format: InputFormat | None = None
    delimiter: str | None = None
    progress: ProgressMode = "auto"
    verify: bool = False
    durable: bool = True
    count_rows: bool = True
    dedupe_key: DedupeKey = "mail+names"


@dataclasses.dataclass
class ImportOutcome:
    """How a run ended.

    Attributes:
        exit_code: The process exit status (:class:`ExitCode`, or 128 + signal when stopped).
        snapshot: The final counters (``created`` includes rows created by an earlier run).
        resumed: Rows finished by an earlier run (from the journal), not sent again.
        reconciled: Rows whose contact was found by a lookup rather than a response.
        failures: The first failed or unknown rows, ``(row, status, error)``.
        fatal: The 401/403 that stopped the run, as text.
        interrupted: The run was stopped by a signal.
        problems: For a dry run, the problems found.
    """

    exit_code: int
    snapshot: ProgressSnapshot
    resumed: int = 0
    reconciled: int = 0
    failures: list[tuple[int, str, str]] = dataclasses.field(default_factory=list)
    fatal: str | None = None
    interrupted: bool = False
    problems: int = 0


class _Console:
    """stdout and stderr, with the API key replaced by ``***`` in anything written."""

    def __init__(self, stdout: TextIO, stderr: TextIO, secrets: Iterable[str]) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def out(self, text: str = "") -> None:
        self.stdout.write(self.redact(text) + "\n")
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(self.redact(text) + "\n")
        self.stderr.flush()


class _RedactingFilter(logging.Filter):
    def __init__(self, console: _Console) -> None:
        super().__init__()
        self._console = console

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._console.redact(record.getMessage())
        record.args = None
        return True


@contextlib.contextmanager
def _client_logging(console: _Console) -> Iterator[None]:
    """The client's warnings on stderr, one line each, redacted (instead of Python's
    last-resort handler)."""
    logger = logging.getLogger("qomon_async")
    handler = logging.StreamHandler(console.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("qomon-async: %(message)s"))
    handler.addFilter(_RedactingFilter(console))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _error_text(error: BaseException | None) -> str:
    if error is None:
        return ""
    text = str(error) or type(error).__name__
    return " ".join(text.split())


def _is_permanent(error: BaseException | None) -> bool:
    """Whether sending the row again cannot help (a refusal of the row itself)."""
    if isinstance(error, ContactValidationError):
        return True
    if isinstance(error, APIStatusError):
        code = error.status_code
        return 400 <= code < 500 and code not in _TRANSIENT_STATUS
    return False


@dataclasses.dataclass(frozen=True, slots=True)
class _Pending:
    row: int
    line: int | None
    since: dt.datetime | None  # the journal's in-doubt time, for RECONCILE rows


def _make_renderer(mode: ProgressMode, stream: TextIO) -> ProgressRenderer | None:
    if mode == "none":
        return None
    tty = None if mode == "auto" else mode == "bar"
    return ProgressRenderer(stream, tty=tty)


async def _fetch_forms(client: QomonClient, mapping: ImportMapping) -> FormCatalog | None:
    if not mapping.form_types:
        return None
    forms: dict[str, Iterable[object] | None] = {}
    for form_type in mapping.form_types:
        try:
            forms[form_type] = await client.list_forms(form_type)
        except (AuthenticationError, PermissionDeniedError) as exc:
            raise FatalImportError(
                f"Qomon refused the API key ({exc.status_code}) while reading the"
                f" {form_type} forms: {_error_text(exc)}. Nothing was sent."
            ) from None
        except QomonError as exc:
            raise ImportUsageError(
                f"cannot read the {form_type} forms from {client.base_url}: {_error_text(exc)}"
            ) from None
    return FormCatalog(forms)


def _make_client(options: ImportOptions) -> QomonClient:
    try:
        return QomonClient(options.api_key, base_url=options.base_url)
    except ValueError as exc:
        message = str(exc)
        if "API key" in message:
            message = "no API key: set QOMON_API_KEY (or pass --api-key)"
        raise ImportUsageError(message) from None


def _count_rows(options: ImportOptions) -> int:
    with open_input(
        options.path, format=options.input_format, delimiter=options.delimiter
    ) as reader:
        return sum(1 for _ in reader)


async def run_import(
    options: ImportOptions,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    client: QomonClient | None = None,
    handle_signals: bool = True,
) -> ImportOutcome:
    """Run one import (or dry run) and return how it ended; prints the problems, the progress
    (on ``stderr``) and the summary (on ``stdout``).

    Args:
        options: What to import.
        stdout, stderr: Where to write (default: the process's).
        client: A client to use (not closed); by default one is made from the options.
        handle_signals: On SIGINT/SIGTERM, stop feeding rows and let the requests in flight
            finish (a second signal stops at once); the journal keeps both safe.

    Raises:
        ImporterError: The run cannot start or go on (exit 2): input, mapping, report,
            journal, API key or URL.
        FatalImportError: Qomon refused the key before any row was sent (exit 3).
    """
    console = _Console(
        stdout or sys.stdout,
        stderr or sys.stderr,
        [options.api_key or "", client._key.reveal() if client is not None else ""],
    )
    mapping = load_mapping(options.mapping) if options.mapping is not None else ImportMapping()
    check_encoding(options.path)
    own_client = client is None
    needs_client = not options.dry_run or bool(mapping.form_types)
    if client is None and needs_client:
        client = _make_client(options)
        console = _Console(console.stdout, console.stderr, [client._key.reveal()])
    try:
        with _client_logging(console):
            forms = await _fetch_forms(client, mapping) if client is not None else None
            builder = ContactBuilder(mapping, route=options.route, forms=forms)
            if options.dry_run:
                return _dry_run(options, builder, console)
            assert client is not None
            run = _Run(options, builder, client, console)
            return await run.execute(handle_signals=handle_signals)
    finally:
        if own_client and client is not None:
            await client.aclose()


# -- dry run ---------------------------------------------------------------------------------


def _dry_run(options: ImportOptions, builder: ContactBuilder, console: _Console) -> ImportOutcome:
    started = time.monotonic()
    check = contact_to_dict if options.route == "create" else upsert_to_dict
    problems = 0
    rows = valid = 0
    report = _open_report(options, console)
    try:
        with open_input(
            options.path, format=options.input_format, delimiter=options.delimiter
        ) as reader:
            header = builder.check_columns(reader.columns or ())
            unknown_columns = {e.column for e in header}
            for error in header:
                console.out(format_row_error(error))
                problems += 1
            for row in reader:
                rows += 1
                built = builder.build(row)
                errors = [e for e in built.errors if e.column not in unknown_columns]
                if built.contact is not None:
                    try:
                        check(cast("Any", built.contact))
                    except ContactValidationError as exc:
                        column = exc.location or None
                        errors.append(RowError(row.number, column, str(exc), line=row.line))
                for error in errors:
                    console.out(format_row_error(error))
                problems += len(errors)
                ok = built.ok and not errors
                valid += ok
                if report is not None:
                    message = "; ".join(
                        format_row_error(dataclasses.replace(e, row=None, line=None))
                        .removeprefix("file")
                        .lstrip(", :")
                        for e in errors
                    )
                    report.write(
                        ReportRecord(
                            row.number,
                            "valid" if ok else "invalid",
                            error=message or None,
                            line=row.line,
                        )
                    )
    finally:
        if report is not None:
            report.close()
    elapsed = time.monotonic() - started
    invalid = rows - valid
    console.out(
        f"Dry run: {rows:,} rows checked in {elapsed:.1f}s: {valid:,} valid, {invalid:,} invalid"
        + (f", {len(unknown_columns)} unknown column(s)" if unknown_columns else "")
        + ". Nothing was sent."
    )
    if report is not None:
        console.out(f"Report: {report.path}")
    code = ExitCode.OK if problems == 0 else ExitCode.ROW_FAILURES
    snapshot = ProgressSnapshot(done=rows, total=rows, failed=invalid, elapsed=elapsed)
    return ImportOutcome(exit_code=int(code), snapshot=snapshot, problems=problems)


def _open_report(options: ImportOptions, console: _Console) -> ReportWriter | None:
    if options.report is None:
        return None
    secrets = [s for s in (options.api_key,) if s]
    secrets += console._secrets
    return ReportWriter(options.report, secrets=secrets)


# -- the run ---------------------------------------------------------------------------------


class _Run:
    """One import run's state: counters, the items in flight, the journal and the report."""

    def __init__(
        self,
        options: ImportOptions,
        builder: ContactBuilder,
        client: QomonClient,
        console: _Console,
    ) -> None:
        self.options = options
        self.builder = builder
        self.client = client
        self.console = console
        self.journal: Journal | None = None
        self.report: ReportWriter | None = None
        self.total: int | None = None
        self.done = self.created = self.failed = self.unknown = self.skipped = 0
        self.duplicates = 0  # of the skipped: rows that repeat an earlier row (never sent)
        self.resumed = self.reconciled = 0
        self.sent_done = 0
        self.failures: list[tuple[int, str, str]] = []
        self.pending: dict[int, _Pending] = {}
        self.next_index = 0
        self.seen: dict[int, int] = {}  # identity -> first row (create route)
        self.stopping: int | None = None  # the signal that asked to stop
        self.started = time.monotonic()
        self.meter = RateMeter(window=15.0)
        self.bulk: BulkRun[Any] | None = None
        self.rows: Iterator[SourceRow] | None = None

    # -- counters --------------------------------------------------------------------------

    def snapshot(self) -> ProgressSnapshot:
        remaining = None if self.total is None else max(0, self.total - self.done)
        return ProgressSnapshot(
            done=self.done,
            total=self.total,
            created=self.created,
            failed=self.failed,
            skipped=self.skipped,
            duplicates=self.duplicates,
            unknown=self.unknown,
            in_flight=self.bulk.progress.in_flight if self.bulk is not None else 0,
            rate=self.meter.rate,
            eta=self.meter.eta(remaining),
            elapsed=time.monotonic() - self.started,
        )

    def settle(
        self,
        row: int,
        line: int | None,
        status: str,
        *,
        contact_id: int | None = None,
        error: str | None = None,
        attempts: int = 0,
        reconciled: bool = False,
        resumed: bool = False,
        duplicate: bool = False,
    ) -> None:
        """Count a finished row and write its report line."""
        self.done += 1
        self.duplicates += duplicate
        if status == "created":
            self.created += 1
        elif status == "failed":
            self.failed += 1
        elif status == "unknown":
            self.unknown += 1
        else:
            self.skipped += 1
        self.resumed += resumed
        self.reconciled += reconciled
        if status in ("failed", "unknown") and len(self.failures) < _SHOWN_FAILURES:
            self.failures.append((row, status, self.console.redact(error or "")))
        if self.report is not None:
            self.report.write(
                ReportRecord(
                    row,
                    status,
                    contact_id=contact_id,
                    error=error or None,
                    attempts=attempts,
                    reconciled=reconciled,
                    line=line,
                    resumed=resumed,
                )
            )

    def record(
        self,
        row: int,
        status: str,
        *,
        contact_id: int | None = None,
        error: str | None = None,
        attempts: int = 0,
        reconciled: bool = False,
        permanent: bool = False,
    ) -> str:
        """Write an outcome to the journal; returns the state it stored (a row in doubt
        recorded ``skipped`` stays ``unknown``)."""
        if self.journal is None:
            return status
        try:
            stored = self.journal.record_outcome(
                row,
                status,
                contact_id=contact_id,
                error=error,
                attempts=attempts,
                reconciled=reconciled,
                permanent=permanent,
            )
        except sqlite3.Error as exc:
            raise JournalError(f"{self.journal.path}: cannot record row {row}: {exc}") from None
        return stored.value

    # -- the feeder --------------------------------------------------------------------------

    async def feed(self) -> AsyncIterator[Any]:
        """The contacts to send, one per row to send, read as the pool asks for them."""
        assert self.rows is not None
        settled = 0
        for row in self.rows:
            if self.stopping is not None:
                # Put the row back in front of the rest: it is reported "not sent".
                self.rows = _prepend(row, self.rows)
                return
            contact = self.prepare(row)
            if contact is None:
                settled += 1
                if settled % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                continue
            yield contact

    def prepare(self, row: SourceRow) -> dict[str, object] | None:
        """Settle a row that needs no request (done earlier, invalid, a duplicate) and return
        ``None``; or register it in flight and return the contact to send."""
        decision = None
        if self.journal is not None:
            decision = self.journal.decide(row.number, retry_failed=self.options.retry_failed)
            if decision.action is ResumeAction.DONE:
                record = decision.record
                assert record is not None
                if record.state is RowState.CREATED and self.dedupe:
                    earlier = self.builder.build(row).contact
                    if earlier is not None:
                        self.remember(earlier, row.number)
                self.settle(
                    row.number,
                    row.line,
                    record.state.value,
                    contact_id=record.contact_id,
                    error=record.error,
                    attempts=record.attempts,
                    reconciled=record.reconciled,
                    resumed=True,
                )
                return None
        in_doubt = decision is not None and decision.action is ResumeAction.RECONCILE
        built: BuiltRow = self.builder.build(row)
        if built.contact is None:
            error = built.error_message
            # A row an earlier attempt may have created is never recorded "failed".
            stored = self.record(
                row.number, "skipped" if in_doubt else "failed", error=error, permanent=True
            )
            self.settle(row.number, row.line, stored if in_doubt else "failed", error=error)
            return None
        if self.dedupe and not in_doubt:
            first = self.remember(built.contact, row.number)
            if first is not None:
                error = duplicate_message("row", row.number, first, self.options.dedupe_key)
                # "skipped" in the journal too: never sent, and a resumed run decides again.
                self.record(row.number, "skipped", error=error)
                self.settle(row.number, row.line, "skipped", error=error, duplicate=True)
                return None
        index = self.next_index
        self.next_index += 1
        since = decision.since if decision is not None and in_doubt else None
        self.pending[index] = _Pending(row.number, row.line, since)
        return built.contact

    @property
    def dedupe(self) -> bool:
        # Upserts match an existing contact by mail: a repeated row updates, it never doubles.
        return self.options.route == "create"

    def remember(self, contact: dict[str, object], row: int) -> int | None:
        """Register the row's person; returns the earlier row with the same, if any."""
        key = duplicate_key(contact, self.options.dedupe_key)
        if key is None:
            return None
        first = self.seen.setdefault(key, row)
        return first if first != row else None

    # -- pool hooks --------------------------------------------------------------------------

    def on_attempt(self, index: int, started_at: dt.datetime) -> None:
        """Commit the attempt to the journal before the request leaves. If the journal cannot
        record it, the row must not be sent: a QomonError here makes it ``failed``, unsent."""
        if self.journal is not None:
            try:
                self.journal.begin_attempt(self.pending[index].row)
            except (JournalError, sqlite3.Error) as exc:
                raise QomonError(
                    f"not sent: the journal cannot record the attempt ({exc})"
                ) from None

    def in_doubt(self, index: int, item: object) -> dt.datetime | None:
        return self.pending[index].since

    def on_result(self, result: CreateResult[Any]) -> None:
        pending = self.pending.pop(result.index)
        self.sent_done += 1
        status = result.status
        contact_id = result.contact.id if result.contact is not None else None
        error = _error_text(result.error) if status is not CreateStatus.CREATED else None
        journal_status = status.value
        if status is CreateStatus.SKIPPED and pending.since is None:
            # Never sent (the pool's promise for "skipped"), and no earlier run is in doubt:
            # the attempt begun in this run left nothing. "failed" (transient) clears that
            # doubt, so that a resumed run sends the row instead of looking it up; the report
            # still says "skipped".
            journal_status = "failed"
            error = f"not sent: {error}"
        stored = self.record(
            pending.row,
            journal_status,
            contact_id=contact_id,
            error=error,
            attempts=result.attempts,
            reconciled=result.reconciled,
            permanent=status is CreateStatus.FAILED and _is_permanent(result.error),
        )
        if status is CreateStatus.SKIPPED:
            if stored == "unknown":
                error = f"{error}; an earlier attempt's outcome is unknown"
            else:
                stored = "skipped"
        self.settle(
            pending.row,
            pending.line,
            stored,
            contact_id=contact_id,
            error=error,
            attempts=result.attempts,
            reconciled=result.reconciled,
        )

    # -- progress and signals ----------------------------------------------------------------

    async def tick(self, renderer: ProgressRenderer) -> None:
        while True:
            self.meter.update(self.sent_done)
            renderer.update(self.snapshot())
            await asyncio.sleep(_TICK)

    def install_signals(self) -> Callable[[], None]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        installed: list[int] = []

        def on_signal(signum: int) -> None:
            if self.stopping is None:
                self.stopping = signum
                in_flight = self.bulk.progress.in_flight if self.bulk is not None else 0
                self.console.err(
                    f"\nqomon-async: {signal.Signals(signum).name}: stopping; waiting for the"
                    f" {in_flight} request(s) in flight (again to stop at once)"
                )
            elif task is not None:
                task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, on_signal, signum)
                installed.append(signum)

        def remove() -> None:
            for signum in installed:
                loop.remove_signal_handler(signum)

        return remove

    # -- the whole run -----------------------------------------------------------------------

    async def execute(self, *, handle_signals: bool) -> ImportOutcome:
        options = self.options
        with open_input(
            options.path, format=options.input_format, delimiter=options.delimiter
        ) as reader:
            header = self.builder.check_columns(reader.columns or ())
            if header:
                lines = "\n".join(f"  - {format_row_error(e)}" for e in header)
                raise ImportUsageError(
                    f"{options.path}: columns the mapping does not place (nothing was sent):\n"
                    f"{lines}\n  map them in a --mapping file ([columns] or ignore = [...]),"
                    " or set ignore_unknown = true"
                )
        self.total = _count_rows(options) if options.count_rows else None
        if options.journal is not None:
            self.journal = Journal.open(
                options.journal,
                fingerprint_input(options.path, options.route),
                durable=options.durable,
            )
        renderer = _make_renderer(options.progress, self.console.stderr)
        remove_signals: Callable[[], None] = lambda: None  # noqa: E731
        ticker: asyncio.Task[None] | None = None
        cancelled = False
        try:
            self.report = _open_report(options, self.console)
            with open_input(
                options.path, format=options.input_format, delimiter=options.delimiter
            ) as reader:
                self.rows = iter(reader)
                if handle_signals:
                    remove_signals = self.install_signals()
                if renderer is not None:
                    ticker = asyncio.ensure_future(self.tick(renderer))
                try:
                    await self.send()
                except asyncio.CancelledError:
                    if self.stopping is None:
                        raise
                    cancelled = True
                if ticker is not None:
                    ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ticker
                    ticker = None
                if self.stopping is not None and not cancelled:
                    for row in self.rows:
                        self.settle(row.number, row.line, "skipped", error="not sent: interrupted")
        finally:
            remove_signals()
            if ticker is not None:
                ticker.cancel()
            if self.report is not None:
                self.report.close()
            if self.journal is not None:
                self.journal.close()
        return self.finish(renderer, cancelled=cancelled)

    async def send(self) -> None:
        options = self.options
        if options.route == "create":
            self.bulk = self.client.create_contacts(
                self.feed(),
                concurrency=options.concurrency,
                # The run de-duplicates itself (it remembers rows created by earlier runs).
                dedupe=False,
                on_attempt=self.on_attempt,
                in_doubt=self.in_doubt,
            )
        else:
            self.bulk = self.client.upsert_contacts(
                self.feed(),
                concurrency=options.concurrency,
                dedupe=False,
                verify=options.verify,
                on_attempt=self.on_attempt,
            )
        try:
            async with self.bulk as bulk:
                async for result in bulk:
                    self.on_result(result)
        finally:
            # Outcomes that came after the run was closed (a hard stop) are recorded too;
            # an item with no outcome at all keeps its journal state ("attempting": looked up
            # before anything is sent on the next run).
            for result in self.bulk.unclaimed:
                if result.index in self.pending:
                    self.on_result(result)

    def finish(self, renderer: ProgressRenderer | None, *, cancelled: bool) -> ImportOutcome:
        snapshot = dataclasses.replace(self.snapshot(), in_flight=0)
        if renderer is not None:
            renderer.update(snapshot, force=True)
            if renderer.is_tty:
                self.console.stderr.write("\n")
                self.console.stderr.flush()
        fatal = self.bulk.fatal if self.bulk is not None else None
        details: dict[str, str] = {}
        if self.resumed:
            details["resumed"] = f"{self.resumed:,} rows finished by an earlier run (journal)"
        if self.reconciled:
            details["reconciled"] = f"{self.reconciled:,} found by lookup after an unclear answer"
        if self.options.report is not None:
            details["report"] = str(self.options.report)
        if self.options.journal is not None:
            details["journal"] = str(self.options.journal)
        title = "Import finished" if self.options.route == "create" else "Upsert finished"
        if fatal is not None:
            title = "Import stopped: Qomon refused the API key"
        elif self.stopping is not None:
            title = "Import interrupted"
        self.console.stdout.write(
            self.console.redact(format_summary(snapshot, title=title, details=details))
        )
        if self.failures:
            self.console.out("First failures:")
            for row, status, error in self.failures:
                self.console.out(f"  row {row}: {status}: {error}")
        if fatal is not None:
            self.console.out(
                f"Qomon answered {getattr(fatal, 'status_code', '401')}"
                f" ({_error_text(fatal)}): nothing more was sent."
                + (
                    " Fix the key, then run again with the same --journal to finish."
                    if self.journal is not None
                    else ""
                )
            )
        elif self.stopping is not None:
            self.console.out(
                "Interrupted: the rows in flight were finished and recorded; the rest were not"
                " sent."
                + (
                    " Run the same command again (same --journal) to finish."
                    if self.journal is not None
                    else " Use --journal next time to resume where a run stopped."
                )
            )
        elif self.failed or self.unknown or self.skipped > self.duplicates:
            hint = "see the report" if self.report is not None else "use --report to list them"
            not_created = self.failed + self.unknown + self.skipped - self.duplicates
            self.console.out(f"{not_created:,} rows not created: {hint}.")
        if self.duplicates:
            same = "mail and names" if self.options.dedupe_key == "mail+names" else "mail"
            self.console.out(
                f"{self.duplicates:,} rows repeat an earlier row (same {same}): skipped, not sent."
            )
        code = int(
            exit_code_for(
                failed=self.failed,
                unknown=self.unknown,
                # Duplicates are not failures: the person they name is in the file once.
                skipped=self.skipped - self.duplicates,
                fatal=fatal is not None,
            )
        )
        if self.stopping is not None:
            code = 128 + self.stopping
        return ImportOutcome(
            exit_code=code,
            snapshot=snapshot,
            resumed=self.resumed,
            reconciled=self.reconciled,
            failures=self.failures,
            fatal=_error_text(fatal) if fatal is not None else None,
            interrupted=self.stopping is not None or cancelled,
        )


def _prepend(first: SourceRow, rest: Iterator[SourceRow]) -> Iterator[SourceRow]:
    yield first
    yield from rest
