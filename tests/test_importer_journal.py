"""The import journal: states, resume rules, input identity, and kill -9 safety."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qomon_async._importer import (
    InputFingerprint,
    Journal,
    JournalError,
    JournalMismatchError,
    ResumeAction,
    RowState,
    fingerprint_input,
)

REPO = Path(__file__).resolve().parents[1]
T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(seconds=1)
        return self.now


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "contacts.csv"
    path.write_text("mail\na@example.org\nb@example.org\n", encoding="utf-8")
    return path


@pytest.fixture
def journal(tmp_path: Path, source: Path) -> Iterator[Journal]:
    with Journal.open(
        tmp_path / "j.db", fingerprint_input(source, "create"), durable=False, clock=Clock()
    ) as j:
        yield j


def test_fingerprint(source: Path) -> None:
    fp = fingerprint_input(source, "create")
    assert fp.path == str(source.resolve())
    assert fp.size == source.stat().st_size
    assert len(fp.head_sha256) == 64


def test_states_and_resume_rules(journal: Journal) -> None:
    assert journal.decide(1).action is ResumeAction.SEND

    started = journal.begin_attempt(1)
    assert journal.get(1).state is RowState.ATTEMPTING  # type: ignore[union-attr]
    decision = journal.decide(1)
    assert decision.action is ResumeAction.RECONCILE
    assert decision.since == started

    journal.record_outcome(1, "created", contact_id=101, attempts=1)
    record = journal.get(1)
    assert record is not None
    assert (record.state, record.contact_id, record.in_doubt_since) == (RowState.CREATED, 101, None)
    assert journal.decide(1).action is ResumeAction.DONE
    assert journal.decide(1, retry_failed=True).action is ResumeAction.DONE

    journal.begin_attempt(2)
    journal.record_outcome(2, "failed", error="422 mail invalid", permanent=True, attempts=1)
    assert journal.decide(2).action is ResumeAction.DONE
    assert journal.decide(2, retry_failed=True).action is ResumeAction.SEND

    journal.begin_attempt(3)
    journal.record_outcome(3, "failed", error="429 until retries ran out", attempts=5)
    assert journal.decide(3).action is ResumeAction.SEND

    first = journal.begin_attempt(4)
    journal.record_outcome(4, "unknown", error="timeout after sending", attempts=1)
    journal.begin_attempt(4)  # a later run tries again: the doubt still starts at `first`
    assert journal.decide(4).since == first
    journal.record_outcome(4, "unknown", error="timeout again", attempts=1)
    record = journal.get(4)
    assert record is not None
    assert (record.runs, record.attempts, record.in_doubt_since) == (2, 2, first)

    journal.record_outcome(5, "skipped", error="fatal 401")
    assert journal.decide(5).action is ResumeAction.SEND

    assert journal.counts() == {
        RowState.CREATED: 1,
        RowState.FAILED: 2,
        RowState.UNKNOWN: 1,
        RowState.SKIPPED: 1,
    }
    assert [r.row for r in journal.in_doubt()] == [4]
    assert [r.row for r in journal.records()] == [1, 2, 3, 4, 5]


def test_reconciled_outcome_clears_the_doubt(journal: Journal) -> None:
    journal.begin_attempt(1)
    journal.record_outcome(1, "created", contact_id=7, reconciled=True)
    record = journal.get(1)
    assert record is not None and record.reconciled and record.in_doubt_since is None
    assert list(journal.in_doubt()) == []


def test_skipped_never_erases_a_doubt_or_an_outcome(journal: Journal) -> None:
    started = journal.begin_attempt(1)
    assert journal.record_outcome(1, "skipped", error="fatal 401") is RowState.UNKNOWN
    assert journal.decide(1).action is ResumeAction.RECONCILE
    assert journal.decide(1).since == started

    journal.record_outcome(2, "created", contact_id=9)
    assert journal.record_outcome(2, "skipped") is RowState.CREATED
    assert journal.record_outcome(2, "failed", error="late") is RowState.CREATED
    journal.record_outcome(3, "failed", error="bad row", permanent=True)
    assert journal.record_outcome(3, "skipped") is RowState.FAILED


def test_created_rows_refuse_a_new_attempt(journal: Journal) -> None:
    journal.record_outcome(1, "created", contact_id=1)
    with pytest.raises(JournalError, match="already created"):
        journal.begin_attempt(1)


def test_attempting_is_not_an_outcome(journal: Journal) -> None:
    with pytest.raises(ValueError, match="begin_attempt"):
        journal.record_outcome(1, "attempting")


def test_reopen_keeps_everything(tmp_path: Path, source: Path) -> None:
    fp = fingerprint_input(source, "create")
    with Journal.open(tmp_path / "j.db", fp) as j:
        j.begin_attempt(1)
        j.record_outcome(1, "created", contact_id=5)
        j.begin_attempt(2)
    with Journal.open(tmp_path / "j.db", fp) as j:
        assert j.decide(1).action is ResumeAction.DONE
        assert j.decide(2).action is ResumeAction.RECONCILE


def test_another_input_or_route_is_refused(tmp_path: Path, source: Path) -> None:
    fp = fingerprint_input(source, "create")
    Journal.open(tmp_path / "j.db", fp).close()
    with pytest.raises(JournalMismatchError, match="route: journal has 'create'"):
        Journal.open(tmp_path / "j.db", fingerprint_input(source, "upsert"))
    source.write_text("mail\nc@example.org\nd@example.org\n", encoding="utf-8")
    with pytest.raises(JournalMismatchError, match="SHA-256") as caught:
        Journal.open(tmp_path / "j.db", fingerprint_input(source, "create"))
    assert "another --journal" in str(caught.value)
    other = InputFingerprint("/elsewhere.csv", fp.size, fp.head_sha256, "create")
    with pytest.raises(JournalMismatchError, match="input file"):
        Journal.open(tmp_path / "j.db", other)


def test_not_a_journal(tmp_path: Path, source: Path) -> None:
    path = tmp_path / "j.db"
    path.write_bytes(b"this is no database" * 100)
    with pytest.raises(JournalError, match="not a journal"):
        Journal.open(path, fingerprint_input(source, "create"))


def test_one_run_at_a_time(tmp_path: Path, source: Path) -> None:
    fp = fingerprint_input(source, "create")
    with Journal.open(tmp_path / "j.db", fp), pytest.raises(JournalError, match="in use"):
        Journal.open(tmp_path / "j.db", fp, lock_timeout=0.05)


# -- kill -9 ---------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    r"""
    import sys
    sys.path.insert(0, sys.argv[1])
    from qomon_async._importer import Journal, fingerprint_input

    journal = Journal.open(sys.argv[2], fingerprint_input(sys.argv[3], "create"))
    start = int(sys.argv[4])
    for row in range(start, start + 1_000_000):
        decision = journal.decide(row)
        if decision.action.value == "done":
            continue
        journal.begin_attempt(row)
        sys.stdout.write(f"A {row}\n")
        sys.stdout.flush()
        journal.record_outcome(row, "created", contact_id=row * 10, attempts=1)
        sys.stdout.write(f"C {row}\n")
        sys.stdout.flush()
    """
)


def run_and_kill(
    tmp_path: Path, source: Path, journal: Path, start: int, delay: float
) -> list[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(REPO), str(journal), str(source), str(start)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    # Wait for the first committed row, then let it run a little and kill it mid-stride.
    first = proc.stdout.readline()
    assert first.startswith("A"), first
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return [first.strip(), *rest.split("\n")]


@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_kill_9_leaves_a_consistent_journal(tmp_path: Path, source: Path, delay: float) -> None:
    path = tmp_path / "j.db"
    fp = fingerprint_input(source, "create")
    start = 1
    attempted: set[int] = set()
    created: set[int] = set()
    unseen: set[int] = set()  # per run, the row that may be committed but not yet printed
    for _ in range(2):  # kill, resume, kill again
        # A line cut by the kill is left out: its row counts as committed-but-unseen.
        output = run_and_kill(tmp_path, source, path, start, delay)
        lines = [line for line in output if re.fullmatch(r"[AC] \d+", line)]
        run_attempted = {int(line.split()[1]) for line in lines if line.startswith("A")}
        attempted |= run_attempted
        created |= {int(line.split()[1]) for line in lines if line.startswith("C")}
        unseen.add(max(run_attempted) + 1)

        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
        with Journal.open(path, fp) as journal:
            records = {r.row: r for r in journal.records()}
            # Everything the writer saw committed is there, with its outcome.
            for row in created:
                assert records[row].state is RowState.CREATED
                assert records[row].contact_id == row * 10
            for row in attempted - created:
                assert records[row].state in (RowState.ATTEMPTING, RowState.CREATED)
            # Nothing was recorded that the writer had not begun (at most one in flight).
            assert set(records) - attempted <= unseen
            # Every row is either created or in doubt: none is lost, none half-written.
            for record in records.values():
                if record.state is RowState.CREATED:
                    assert journal.decide(record.row).action is ResumeAction.DONE
                else:
                    assert record.state is RowState.ATTEMPTING
                    assert record.in_doubt_since is not None
                    assert journal.decide(record.row).action is ResumeAction.RECONCILE
                    # Resolve the doubt as the command line would after reconciliation.
                    journal.record_outcome(record.row, "created", contact_id=record.row * 10)
            start = max(records) + 1


@pytest.mark.parametrize("contact_id", [2**63 + 5, 2**64 + 1, -(2**63) - 1, 10**30, 2**63 - 1])
def test_an_id_beyond_64_bits_is_kept_whole(tmp_path: Path, source: Path, contact_id: int) -> None:
    # SQLite's INTEGER holds 64 bits: a server id above 2**63 must not crash the journal
    # (OverflowError) nor come back rounded (a text in an INTEGER column turns into a REAL).
    path = tmp_path / "big.db"
    with Journal.open(path, fingerprint_input(source, "create"), durable=False) as journal:
        journal.begin_attempt(1)
        journal.record_outcome(1, "created", contact_id=contact_id, attempts=1)
        journal.record_outcome(2, "created", contact_id=7, attempts=1)
    with Journal.open(path, fingerprint_input(source, "create"), durable=False) as journal:
        first = journal.decide(1)
        assert first.action is ResumeAction.DONE
        assert first.record is not None and first.record.contact_id == contact_id
        second = journal.decide(2).record
        assert second is not None and second.contact_id == 7
