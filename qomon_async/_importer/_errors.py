"""Errors of the importer, and the per-row problem record.

Two kinds of trouble, kept apart on purpose:

- :class:`RowError` is a *value*: one problem in one input row (a bad email, an unknown form
  value). Validation collects them; the row becomes ``failed`` in a real run. Never raised.
- :class:`ImporterError` and its subclasses are *raised*: the run cannot go on at all (the file
  cannot be decoded, the mapping file is wrong, the journal belongs to another input). The
  command line turns them into exit code 2 (:data:`~qomon_async._importer.EXIT_USAGE`)::

      ImporterError
       ├── InputFileError        the input file cannot be read or decoded
       ├── MappingError          the mapping file (TOML) is invalid or cannot be resolved
       ├── ReportError           the report path cannot be used
       └── JournalError          the journal file is unusable
            └── JournalMismatchError   the journal was made for another input or route
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

__all__ = [
    "ImporterError",
    "InputFileError",
    "JournalError",
    "JournalMismatchError",
    "MappingError",
    "ReportError",
    "RowError",
]

# Values quoted in messages are cut here: a row error must stay one readable line.
_MAX_VALUE_CHARS = 60


def _shorten(value: str) -> str:
    return value if len(value) <= _MAX_VALUE_CHARS else value[: _MAX_VALUE_CHARS - 1] + "…"


@dataclasses.dataclass(frozen=True, slots=True)
class RowError:
    """One problem found in one input row.

    Attributes:
        row: The 1-based number of the data row (the CSV header is not counted: the first row
            under the header is row 1). ``None`` for a problem of the whole file, such as an
            unknown column in a CSV header.
        column: The input column (or JSON key) at fault, as named in the file, or ``None`` when
            the problem is the row as a whole (a JSON line that does not parse).
        message: What is wrong, in words meant for the person who fixes the file.
        value: The offending value as text, or ``None``.
        line: The physical line of the file where the row starts (CSV header is line 1), when
            known.
    """

    row: int | None
    column: str | None
    message: str
    value: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        return format_row_error(self)


def format_row_error(error: RowError) -> str:
    """Render a :class:`RowError` as one line, e.g.
    ``row 12 (line 13), column "E-mail": not an email address: 'jean@'``."""
    if error.row is None:
        where = "file"
    else:
        where = f"row {error.row}"
        if error.line is not None:
            where += f" (line {error.line})"
    if error.column is not None:
        where += f', column "{error.column}"'
    text = f"{where}: {error.message}"
    if error.value is not None:
        text += f": {_shorten(error.value)!r}"
    return text


class ImporterError(Exception):
    """Base of the errors that stop an import before or during its run (exit code 2)."""


class InputFileError(ImporterError):
    """The input file cannot be opened, decoded or parsed as a whole.

    Attributes:
        path: The input file.
        line: The 1-based physical line of the problem, when known.
        byte_offset: The 0-based byte offset of the problem in the file, when known.
    """

    def __init__(
        self,
        path: str,
        message: str,
        *,
        line: int | None = None,
        byte_offset: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.byte_offset = byte_offset
        where = path
        if line is not None:
            where += f", line {line}"
        if byte_offset is not None:
            where += f" (byte {byte_offset})"
        super().__init__(f"{where}: {message}")


class MappingError(ImporterError):
    """The mapping file is invalid, or names forms or fields that do not exist.

    Attributes:
        problems: Every problem found, one line each (all are reported at once, so that the
            user fixes the file in one go).
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: invalid mapping:\n{lines}")


class ReportError(ImporterError):
    """The report path cannot be used (unknown extension, cannot be created)."""


class JournalError(ImporterError):
    """The journal file cannot be used (not a journal, unreadable, newer schema)."""


class JournalMismatchError(JournalError):
    """The journal records another input file or another route than this run's."""
