"""The per-row report file (``--report PATH``): one line per input row, written as outcomes
arrive.

The format follows the extension: ``.csv``, or ``.jsonl`` / ``.ndjson`` for JSON Lines. Each
record is flushed as it is written, so the file can be followed (``tail -f``) and survives a
crash up to the last outcome. The journal, not the report, is the durable record for resuming.

CSV cells are made safe for spreadsheets: a text cell starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return is prefixed with ``'`` so that it is not run as a formula (CSV
injection). Any secret handed to the writer (the API key) is replaced by ``***`` wherever it
would appear: it is never written.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import msgspec

from ._errors import ReportError

__all__ = ["REPORT_COLUMNS", "ReportFormat", "ReportRecord", "ReportWriter", "neutralise_cell"]

ReportFormat = Literal["csv", "jsonl"]

REPORT_COLUMNS = (
    "row",
    "line",
    "status",
    "contact_id",
    "attempts",
    "reconciled",
    "resumed",
    "error",
)
"""The report's columns (CSV header and JSON keys), in order."""

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SUFFIXES: dict[str, ReportFormat] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclasses.dataclass(frozen=True, slots=True)
class ReportRecord:
    """The outcome of one input row.

    Attributes:
        row: The data row number (see :class:`~qomon_async._importer.SourceRow`).
        status: ``created``, ``failed``, ``skipped`` or ``unknown`` (a dry run may write
            ``valid``/``invalid``): any text.
        contact_id: Qomon's id of the contact, when known.
        error: Why the row failed or is unknown, or ``None``.
        attempts: How many requests were sent for the row (0: none).
        reconciled: Whether the outcome was established by looking the contact up after an
            ambiguous failure, rather than by a response.
        line: The line where the row starts in the input file, when known.
        resumed: Whether the outcome comes from the journal of an earlier run (the row was
            not sent again).
    """

    row: int
    status: str
    contact_id: int | None = None
    error: str | None = None
    attempts: int = 0
    reconciled: bool = False
    line: int | None = None
    resumed: bool = False


def neutralise_cell(text: str) -> str:
    """Prefix ``'`` to a text a spreadsheet would run as a formula (``=``, ``+``, ``-``,
    ``@``, tab, carriage return at the start)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


class ReportWriter:
    """Writes :class:`ReportRecord` s to a CSV or JSON Lines file, one per row, flushed.

    Args:
        path: The report file; created, or truncated if it exists. Its extension chooses the
            format: ``.csv``, ``.jsonl`` or ``.ndjson``.
        secrets: Texts that must never be written (the API key): replaced by ``***``.

    Raises:
        ReportError: Unknown extension, or the file cannot be created.
    """

    def __init__(self, path: str | Path, *, secrets: Iterable[str] = ()) -> None:
        self.path = str(path)
        suffix = Path(path).suffix.lower()
        if suffix not in _SUFFIXES:
            raise ReportError(f"{path}: the report must end in .csv, .jsonl or .ndjson")
        self.format: ReportFormat = _SUFFIXES[suffix]
        # Longest first, so that a secret containing another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self.count = 0
        try:
            self._file: IO[str] = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise ReportError(f"{path}: cannot create the report: {exc.strerror or exc}") from None
        self._csv = csv.writer(self._file) if self.format == "csv" else None
        if self._csv is not None:
            self._csv.writerow(REPORT_COLUMNS)
            self._file.flush()

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def write(self, record: ReportRecord) -> None:
        """Append one record and flush it to the OS."""
        error = self._redact(record.error) if record.error else None
        status = self._redact(record.status)
        if self._csv is not None:
            self._csv.writerow(
                (
                    record.row,
                    "" if record.line is None else record.line,
                    neutralise_cell(status),
                    "" if record.contact_id is None else record.contact_id,
                    record.attempts,
                    "true" if record.reconciled else "false",
                    "true" if record.resumed else "false",
                    neutralise_cell(error) if error else "",
                )
            )
        else:
            line = {
                "row": record.row,
                "line": record.line,
                "status": status,
                "contact_id": record.contact_id,
                "attempts": record.attempts,
                "reconciled": record.reconciled,
                "resumed": record.resumed,
                "error": error,
            }
            self._file.write(msgspec.json.encode(line).decode() + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReportWriter({self.path!r}, format={self.format!r}, written={self.count})"
