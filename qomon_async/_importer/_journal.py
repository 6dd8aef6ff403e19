"""The import journal (``--journal PATH``): every row's state, durable, so that a run killed at
any moment resumes without creating anyone twice.

It is one SQLite file (stdlib ``sqlite3``, WAL mode, ``synchronous=FULL``); every state change
is one committed transaction, so a ``kill -9`` or a power cut at any moment leaves the journal
as it was after the last change: never half a row. Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)      -- schema_version, input_path, input_size,
                                                -- input_head_sha256, route, created_at
    rows(row                INTEGER PRIMARY KEY, -- the data row number (header not counted)
         state              TEXT,     -- attempting | created | failed | unknown | skipped
         runs               INTEGER,  -- times the row was handed to the client (begin_attempt)
         attempts           INTEGER,  -- requests the client reported, summed over runs
         attempt_started_at TEXT,     -- UTC start of the latest attempt (RFC 3339)
         in_doubt_since     TEXT,     -- UTC start of the earliest attempt whose outcome is
                                      -- not known; NULL once the outcome is certain
         contact_id         INTEGER,  -- for created rows (upserts return none); an id
                                      -- outside SQLite's 64-bit range is kept whole as a
                                      -- BLOB of its decimal digits
         error              TEXT,     -- for failed / unknown / skipped rows
         permanent          INTEGER,  -- 1: a failure that resending cannot fix (4xx, bad row)
         reconciled         INTEGER,  -- 1: outcome established by a lookup, not a response
         updated_at         TEXT)

The protocol, per row: :meth:`Journal.begin_attempt` (state ``attempting``, committed *before*
the request is sent), then :meth:`Journal.record_outcome` with the final status.

Resume rules (:meth:`Journal.decide`):

- no record, ``skipped`` (never sent), or ``failed`` with a transient error: **send** it;
- ``created``: **done**, not sent again (the report takes the contact id from the journal);
- ``failed`` with a permanent error (a 4xx, an invalid row): **done**, unless
  ``retry_failed=True`` (``--retry-failed``), then sent again;
- ``attempting`` or ``unknown`` (a request may have been processed): **reconcile**, i.e. look
  the contact up among those created since :attr:`JournalRecord.in_doubt_since` before sending
  anything. A row in doubt stays in doubt until an outcome is certain: recording it
  ``skipped`` keeps it ``unknown``.

A journal belongs to one input (path, size, SHA-256 of its first MiB) and one route; opening
it for anything else raises :class:`JournalMismatchError`. Only one run may use a journal at a
time (it is locked while open).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType

from ._errors import JournalError, JournalMismatchError

__all__ = [
    "InputFingerprint",
    "Journal",
    "JournalRecord",
    "ResumeAction",
    "ResumeDecision",
    "RowState",
    "fingerprint_input",
]

SCHEMA_VERSION = 1
_HEAD_BYTES = 1024 * 1024
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE IF NOT EXISTS rows (
        row                INTEGER PRIMARY KEY,
        state              TEXT    NOT NULL
            CHECK (state IN ('attempting', 'created', 'failed', 'unknown', 'skipped')),
        runs               INTEGER NOT NULL DEFAULT 0,
        attempts           INTEGER NOT NULL DEFAULT 0,
        attempt_started_at TEXT,
        in_doubt_since     TEXT,
        contact_id         INTEGER,
        error              TEXT,
        permanent          INTEGER NOT NULL DEFAULT 0 CHECK (permanent IN (0, 1)),
        reconciled         INTEGER NOT NULL DEFAULT 0 CHECK (reconciled IN (0, 1)),
        updated_at         TEXT    NOT NULL
    )
    """,
)


class RowState(str, enum.Enum):
    """A row's state in the journal."""

    ATTEMPTING = "attempting"
    CREATED = "created"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"


class ResumeAction(str, enum.Enum):
    """What a resumed run does with a row."""

    SEND = "send"
    """Not done, and no earlier request can have created it: send it."""
    DONE = "done"
    """Finished in an earlier run (created, or failed for good): do not send it."""
    RECONCILE = "reconcile"
    """An earlier request may have created it: look it up before sending anything."""


@dataclasses.dataclass(frozen=True)
class InputFingerprint:
    """What identifies an input for a journal.

    Attributes:
        path: The input's absolute, resolved path.
        size: Its size in bytes.
        head_sha256: The SHA-256 of its first MiB, hex.
        route: ``"create"`` or ``"upsert"``.
    """

    path: str
    size: int
    head_sha256: str
    route: str

    def _as_meta(self) -> dict[str, str]:
        return {
            "input_path": self.path,
            "input_size": str(self.size),
            "input_head_sha256": self.head_sha256,
            "route": self.route,
        }


def fingerprint_input(path: str | Path, route: str) -> InputFingerprint:
    """Fingerprint an input file for :meth:`Journal.open` (reads at most its first MiB)."""
    resolved = Path(path).resolve()
    with open(resolved, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest = hashlib.sha256(f.read(_HEAD_BYTES)).hexdigest()
    return InputFingerprint(str(resolved), size, digest, route)


@dataclasses.dataclass(frozen=True)
class JournalRecord:
    """A row as the journal knows it (see the module docstring for the fields)."""

    row: int
    state: RowState
    runs: int
    attempts: int
    attempt_started_at: dt.datetime | None
    in_doubt_since: dt.datetime | None
    contact_id: int | None
    error: str | None
    permanent: bool
    reconciled: bool
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class ResumeDecision:
    """What to do with a row on this run, and what the journal knows of it.

    Attributes:
        action: Send, done, or reconcile.
        record: The journal's record, ``None`` for a row never seen.
    """

    action: ResumeAction
    record: JournalRecord | None

    @property
    def since(self) -> dt.datetime | None:
        """For :attr:`ResumeAction.RECONCILE`: when the earliest unresolved attempt started
        (UTC); a contact created before then cannot be this row's."""
        return self.record.in_doubt_since if self.record is not None else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _fmt(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime(_TIME_FORMAT)


def _parse(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=dt.timezone.utc)


_COLUMNS = (
    "row, state, runs, attempts, attempt_started_at, in_doubt_since, contact_id, error,"
    " permanent, reconciled, updated_at"
)


_INT64 = range(-(2**63), 2**63)


def _store_id(contact_id: int | None) -> int | bytes | None:
    """A contact id as SQLite keeps it losslessly: an int when it fits 64 bits, else the BLOB
    of its digits (an INTEGER column would turn a longer text into a lossy REAL)."""
    if contact_id is None or contact_id in _INT64:
        return contact_id
    return str(int(contact_id)).encode("ascii")


def _load_id(value: object) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, bytes):
        return int(value.decode("ascii"))
    raise AssertionError(f"unexpected contact_id in the journal: {value!r}")


def _record(values: tuple[object, ...]) -> JournalRecord:
    row, state, runs, attempts, started, doubt, contact_id, error, permanent, rec, updated = values
    assert isinstance(row, int) and isinstance(runs, int) and isinstance(attempts, int)
    assert started is None or isinstance(started, str)
    assert doubt is None or isinstance(doubt, str)
    loaded_id = _load_id(contact_id)
    assert error is None or isinstance(error, str)
    assert isinstance(updated, str)
    updated_at = _parse(updated)
    assert updated_at is not None
    return JournalRecord(
        row=row,
        state=RowState(state),
        runs=runs,
        attempts=attempts,
        attempt_started_at=_parse(started),
        in_doubt_since=_parse(doubt),
        contact_id=loaded_id,
        error=error,
        permanent=bool(permanent),
        reconciled=bool(rec),
        updated_at=updated_at,
    )


class Journal:
    """An open journal. Make one with :meth:`Journal.open`; close it when the run ends.

    Every method commits before it returns. Not thread-safe: use it from one thread (the
    event loop's: each call is one small local transaction).
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: str,
        fingerprint: InputFingerprint,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self._db = connection
        self.path = path
        self.fingerprint = fingerprint
        self._clock = clock

    @classmethod
    def open(
        cls,
        path: str | Path,
        fingerprint: InputFingerprint,
        *,
        durable: bool = True,
        clock: Callable[[], dt.datetime] = _now,
        lock_timeout: float = 2.0,
    ) -> Journal:
        """Open (or create) the journal at ``path`` for the input ``fingerprint``.

        Args:
            path: The journal file (SQLite); created if missing.
            fingerprint: The input and route of this run (:func:`fingerprint_input`).
            durable: Sync every change to disk (``synchronous=FULL``), so that even a power
                cut loses nothing committed. ``False`` keeps kill-safety but not power-cut
                safety.
            clock: Returns the current UTC time (for tests).
            lock_timeout: Seconds to wait for another run holding the journal.

        Raises:
            JournalMismatchError: The journal was made for another input or route.
            JournalError: Not a journal, a newer schema, or in use by another run.
        """
        name = str(path)
        try:
            db = sqlite3.connect(name, timeout=lock_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise JournalError(f"{name}: cannot open the journal: {exc}") from None
        try:
            # Exclusive locking: a second run on the same journal would send the same rows;
            # the lock makes it fail instead. The OS drops the lock if the process dies.
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise JournalError(f"{name}: cannot switch the journal to WAL mode")
            db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            db.execute("BEGIN IMMEDIATE")
            try:
                # One statement at a time: executescript() would commit the open transaction.
                for statement in _SCHEMA:
                    db.execute(statement)
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                if not meta:
                    # A journal killed before this commit has no meta: it starts afresh.
                    fresh = {
                        **fingerprint._as_meta(),
                        "schema_version": str(SCHEMA_VERSION),
                        "created_at": _fmt(clock()),
                    }
                    db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(fresh.items()))
                else:
                    _check_meta(name, meta, fingerprint)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            db.close()
            if "locked" in str(exc):
                raise JournalError(f"{name}: the journal is in use by another run") from None
            raise JournalError(f"{name}: cannot use the journal: {exc}") from None
        except sqlite3.DatabaseError as exc:
            db.close()
            raise JournalError(f"{name}: not a journal ({exc})") from None
        except BaseException:
            db.close()
            raise
        return cls(db, name, fingerprint, clock)

    # -- writes -----------------------------------------------------------------------------

    def begin_attempt(self, row: int) -> dt.datetime:
        """Record that ``row`` is about to be sent; call it before the request, and send only
        once it has returned (it is committed then). Returns the attempt's start time (UTC).

        Raises:
            JournalError: The row is already created: sending it again would duplicate it.
        """
        now = _fmt(self._clock())
        cursor = self._db.execute(
            """
            INSERT INTO rows (row, state, runs, attempt_started_at, in_doubt_since, updated_at)
            VALUES (?1, 'attempting', 1, ?2, ?2, ?2)
            ON CONFLICT (row) DO UPDATE SET
                state = 'attempting',
                runs = runs + 1,
                attempt_started_at = ?2,
                in_doubt_since = COALESCE(in_doubt_since, ?2),
                updated_at = ?2
            WHERE state != 'created'
            """,
            (row, now),
        )
        if cursor.rowcount != 1:
            raise JournalError(f"row {row} is already created: it must not be sent again")
        started = _parse(now)
        assert started is not None
        return started

    def record_outcome(
        self,
        row: int,
        status: str,
        *,
        contact_id: int | None = None,
        error: str | None = None,
        attempts: int = 0,
        reconciled: bool = False,
        permanent: bool = False,
    ) -> RowState:
        """Record the final status of ``row`` and commit.

        Args:
            row: The data row number.
            status: ``created``, ``failed``, ``unknown`` or ``skipped`` (a str-valued enum
                member works too).
            contact_id: The created contact's id, if known.
            error: The failure, for ``failed``/``unknown``/``skipped``. Never put the API key
                in it.
            attempts: Requests sent for the row in this run (added to the journal's count).
            reconciled: Whether the outcome came from a lookup after an ambiguous failure.
            permanent: For ``failed``: resending cannot help (a 4xx other than 408/429, an
                invalid row); such rows are not retried on resume without ``retry_failed``.
                ``failed`` must only be recorded when no contact can have been created;
                otherwise record ``unknown``.

        Returns:
            The state stored: ``skipped`` on a row in doubt is stored as ``unknown`` (the
            doubt remains), and on a row already finished it changes nothing.
        """
        state = RowState(status)
        if state is RowState.ATTEMPTING:
            raise ValueError("use begin_attempt() to record an attempt")
        now = _fmt(self._clock())
        self._db.execute("BEGIN IMMEDIATE")
        try:
            current = self._db.execute(
                "SELECT state, in_doubt_since, permanent FROM rows WHERE row = ?", (row,)
            ).fetchone()
            stored = state
            if current is not None:
                old_state, doubt, old_permanent = current
                # Never downgrade a created row (its contact exists), nor let "skipped" erase
                # a permanent failure.
                keep = old_state == "created" and state is not RowState.CREATED
                keep |= state is RowState.SKIPPED and old_state == "failed" and old_permanent
                if keep:
                    self._db.execute("COMMIT")
                    return RowState(old_state)
                if state is RowState.SKIPPED and doubt is not None:
                    stored = RowState.UNKNOWN
                    error = f"{error or 'not sent'}; an earlier attempt's outcome is unknown"
            certain = stored in (RowState.CREATED, RowState.FAILED)
            self._db.execute(
                """
                INSERT INTO rows (row, state, attempts, in_doubt_since, contact_id, error,
                                  permanent, reconciled, updated_at)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                ON CONFLICT (row) DO UPDATE SET
                    state = ?2,
                    attempts = attempts + ?3,
                    in_doubt_since = CASE WHEN ?10 THEN NULL
                        ELSE COALESCE(in_doubt_since, ?4) END,
                    contact_id = COALESCE(?5, contact_id),
                    error = ?6,
                    permanent = ?7,
                    reconciled = ?8,
                    updated_at = ?9
                """,
                (
                    row,
                    stored.value,
                    attempts,
                    # An unknown outcome with no recorded attempt: in doubt from now on.
                    None if stored is not RowState.UNKNOWN else now,
                    _store_id(contact_id),
                    None if stored is RowState.CREATED else error,
                    int(permanent and stored is RowState.FAILED),
                    int(reconciled),
                    now,
                    int(certain),
                ),
            )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return stored

    # -- reads ------------------------------------------------------------------------------

    def get(self, row: int) -> JournalRecord | None:
        """The journal's record of ``row``, or ``None``."""
        found = self._db.execute(f"SELECT {_COLUMNS} FROM rows WHERE row = ?", (row,)).fetchone()
        return None if found is None else _record(tuple(found))

    def decide(self, row: int, *, retry_failed: bool = False) -> ResumeDecision:
        """What this run does with ``row`` (module docstring, "Resume rules")."""
        record = self.get(row)
        if record is None:
            return ResumeDecision(ResumeAction.SEND, None)
        if record.state is RowState.CREATED:
            return ResumeDecision(ResumeAction.DONE, record)
        if record.state is RowState.FAILED:
            done = record.permanent and not retry_failed
            return ResumeDecision(ResumeAction.DONE if done else ResumeAction.SEND, record)
        if record.in_doubt_since is not None:
            return ResumeDecision(ResumeAction.RECONCILE, record)
        return ResumeDecision(ResumeAction.SEND, record)

    def in_doubt(self) -> Iterator[JournalRecord]:
        """The rows whose outcome is unknown (``attempting`` or ``unknown``), by row number."""
        cursor = self._db.execute(
            f"SELECT {_COLUMNS} FROM rows WHERE in_doubt_since IS NOT NULL"
            " AND state NOT IN ('created', 'failed') ORDER BY row"
        )
        for found in cursor:
            yield _record(tuple(found))

    def records(self) -> Iterator[JournalRecord]:
        """Every recorded row, by row number (streams)."""
        for found in self._db.execute(f"SELECT {_COLUMNS} FROM rows ORDER BY row"):
            yield _record(tuple(found))

    def counts(self) -> dict[RowState, int]:
        """How many rows are in each state (states with no row are left out)."""
        return {
            RowState(state): count
            for state, count in self._db.execute("SELECT state, COUNT(*) FROM rows GROUP BY state")
        }

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the journal (checkpointing its WAL into the main file)."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        fp = self.fingerprint
        return f"Journal({self.path!r}, input={fp.path!r}, route={fp.route!r})"


def _check_meta(name: str, meta: dict[str, str], fingerprint: InputFingerprint) -> None:
    version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"{name}: journal schema {version} is newer than this version understands"
            f" ({SCHEMA_VERSION}): upgrade qomon-async"
        )
    expected = fingerprint._as_meta()
    labels = {
        "input_path": "input file",
        "input_size": "input size (bytes)",
        "input_head_sha256": "input content (SHA-256 of the first MiB)",
        "route": "route",
    }
    differences = [
        f"{labels[key]}: journal has {meta.get(key)!r}, this run has {value!r}"
        for key, value in expected.items()
        if meta.get(key) != value
    ]
    if differences:
        raise JournalMismatchError(
            f"{name} was made for another input or route; use another --journal file,"
            " or remove this one to start over:\n  - " + "\n  - ".join(differences)
        )
