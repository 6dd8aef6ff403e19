"""Streaming readers for the input file: CSV (any of ``, ; TAB |``) and JSON Lines.

Rows are produced one at a time from a file read line by line, so memory stays flat whatever
the file's length. Numbering, used in every message and in the report and the journal:

- ``SourceRow.number`` is the 1-based number of the *data* row. In a CSV file the header does
  not count: the first row under the header is row 1. Blank lines (and CSV lines whose cells
  are all empty) are skipped and not counted, in CSV and in JSON Lines alike.
- ``SourceRow.line`` is the physical line of the file where the row starts (the CSV header is
  line 1), so that an editor can jump to it. A quoted CSV cell may span lines.

A row that cannot be parsed (a JSON line that is not JSON, a CSV row with the wrong number of
cells) comes out with :attr:`SourceRow.error` set, as a row error; the reading goes on. A file
that cannot be decoded raises :class:`InputFileError`, which names the line and the byte and
says how to convert the file.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import itertools
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

import msgspec

from ._errors import InputFileError

__all__ = [
    "DELIMITERS",
    "InputFormat",
    "RowReader",
    "SourceRow",
    "check_encoding",
    "detect_format",
    "open_input",
    "sniff_delimiter",
]

InputFormat = Literal["csv", "jsonl"]

DELIMITERS = ",;\t|"
"""The CSV delimiters recognised, in order of preference when the sample cannot decide."""

_CSV_SUFFIXES = frozenset({".csv", ".tsv", ".txt"})
_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".jsonlines"})
_SNIFF_BYTES = 64 * 1024
_SNIFF_LINES = 200
_CHECK_CHUNK = 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class SourceRow:
    """One data row of the input.

    Attributes:
        number: The 1-based data row number (the CSV header is not counted).
        line: The physical line where the row starts (the CSV header is line 1).
        values: Column (or JSON key, nested objects flattened to ``a.b``) -> cell. CSV cells
            are strings; JSON values keep their JSON type.
        error: Why the row could not be parsed, or ``None``; ``values`` is then empty.
    """

    number: int
    line: int
    values: dict[str, object]
    error: str | None = None


def detect_format(path: str | Path) -> InputFormat:
    """``"csv"`` or ``"jsonl"`` from the file's extension (``.csv .tsv .txt`` / ``.jsonl
    .ndjson``); for another extension, from the first non-blank character (``{`` -> JSON
    Lines)."""
    suffix = Path(path).suffix.lower()
    if suffix in _CSV_SUFFIXES:
        return "csv"
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip(codecs.BOM_UTF8 + b" \t\r\n")
    except OSError as exc:
        raise InputFileError(str(path), f"cannot read the file: {exc.strerror or exc}") from None
    return "jsonl" if head.startswith(b"{") else "csv"


def _conversion_hint(path: str, encoding: str) -> str:
    name = Path(path).name
    target = Path(path).with_suffix(".utf8" + Path(path).suffix).name
    return (
        f"not valid {encoding.upper()}. If it comes from Excel or an older tool it is probably"
        f" Windows-1252 (Latin-1); convert it first, e.g.:"
        f" iconv -f WINDOWS-1252 -t UTF-8 {name} > {target}"
    )


def _utf16_check(path: str, head: bytes) -> None:
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        name = Path(path).name
        raise InputFileError(
            path,
            "this file is UTF-16 (Excel's 'Unicode text'); convert it first, e.g.:"
            f" iconv -f UTF-16 -t UTF-8 {name} > {Path(name).with_suffix('.utf8.csv')}",
            line=1,
            byte_offset=0,
        )


def check_encoding(path: str | Path, encoding: str = "utf-8") -> None:
    """Check that the whole file decodes, quickly (about a second per GB), before a run
    sends anything. A leading UTF-8 byte-order mark is fine.

    Raises:
        InputFileError: Naming the line and the byte of the first invalid sequence, with an
            ``iconv`` command to convert the file.
    """
    name = str(path)
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    newlines = 0
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(_CHECK_CHUNK)
                if offset == 0:
                    _utf16_check(name, chunk)
                pending = decoder.getstate()[0]
                try:
                    decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    data = pending + chunk
                    line = newlines + data[: exc.start].count(b"\n") + 1
                    byte = offset - len(pending) + exc.start
                    bad = data[exc.start : exc.start + 1].hex().upper()
                    raise InputFileError(
                        name,
                        f"byte 0x{bad} is {_conversion_hint(name, encoding)}",
                        line=line,
                        byte_offset=byte,
                    ) from None
                if not chunk:
                    return
                offset += len(chunk)
                newlines += chunk.count(b"\n")
    except OSError as exc:
        raise InputFileError(name, f"cannot read the file: {exc.strerror or exc}") from None


def sniff_delimiter(lines: list[str], *, complete: bool = True) -> str:
    """Choose the CSV delimiter among :data:`DELIMITERS` from the first lines of a file.

    The winner splits every sampled record into the same number of cells as the header, and
    into the most cells; ties go to the earlier candidate. With no consistent candidate, the
    one that splits the header into the most cells wins; a one-column file gets ``,``.
    ``complete=False`` says that the sample was cut, so its last record may be partial.
    """
    best, best_score = ",", (False, 1)
    for delimiter in DELIMITERS:
        try:
            records = [r for r in csv.reader(lines, delimiter=delimiter) if r]
        except csv.Error:
            continue
        if not complete and len(records) > 1:
            records = records[:-1]
        if not records:
            continue
        width = len(records[0])
        consistent = width > 1 and all(len(r) == width for r in records[1:])
        score = (consistent, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


class RowReader:
    """An open input file: iterate it once for its :class:`SourceRow` s.

    Use :func:`open_input` to make one; close it (or use it as a context manager).

    Attributes:
        path: The input file, as given.
        format: ``"csv"`` or ``"jsonl"``.
        delimiter: The CSV delimiter (given or sniffed), ``None`` for JSON Lines.
        columns: The CSV header's column names, in file order (unnamed columns left out);
            ``None`` for JSON Lines, whose keys may vary from row to row.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        format: InputFormat | None = None,
        delimiter: str | None = None,
        encoding: str = "utf-8",
    ) -> None:
        self.path = str(path)
        self.format: InputFormat = format or detect_format(path)
        self.delimiter: str | None = None
        self.columns: tuple[str, ...] | None = None
        self._encoding = encoding
        self._header: list[str] = []
        self._header_lines = 0
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise InputFileError(
                self.path, f"cannot read the file: {exc.strerror or exc}"
            ) from None
        try:
            _utf16_check(self.path, self._file.read(4))
            self._file.seek(0)
            self._lines = self._decoded_lines()
            if self.format == "csv":
                self._open_csv(delimiter)
        except BaseException:
            self._file.close()
            raise

    # -- decoding ---------------------------------------------------------------------------

    def _decoded_lines(self) -> Iterator[str]:
        # Decoding line by line (not through a TextIOWrapper) is what lets an error name its
        # line and exact byte.
        offset = 0
        for number, raw in enumerate(self._file, start=1):
            try:
                text = raw.decode(self._encoding)
            except UnicodeDecodeError as exc:
                bad = raw[exc.start : exc.start + 1].hex().upper()
                raise InputFileError(
                    self.path,
                    f"byte 0x{bad} is {_conversion_hint(self.path, self._encoding)}",
                    line=number,
                    byte_offset=offset + exc.start,
                ) from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            offset += len(raw)
            yield text

    # -- CSV --------------------------------------------------------------------------------

    def _open_csv(self, delimiter: str | None) -> None:
        sample: list[str] = []
        size = 0
        for line in self._lines:
            sample.append(line)
            size += len(line)
            if size >= _SNIFF_BYTES or len(sample) >= _SNIFF_LINES:
                break
        complete = size < _SNIFF_BYTES and len(sample) < _SNIFF_LINES
        self.delimiter = delimiter or sniff_delimiter(sample, complete=complete)
        self._lines = itertools.chain(sample, self._lines)
        self._csv = csv.reader(self._lines, delimiter=self.delimiter)
        for record in self._csv_records():
            if record:
                self._header = [cell.strip() for cell in record]
                break
        self._header_lines = self._csv.line_num
        named = [c for c in self._header if c]
        seen: dict[str, int] = {}
        for index, name in enumerate(self._header, start=1):
            if name and name in seen:
                raise InputFileError(
                    self.path,
                    f'column "{name}" appears twice in the header (columns {seen[name]}'
                    f" and {index})",
                    line=self._header_lines,
                )
            seen[name] = index
        if not named:
            raise InputFileError(self.path, "no header line (the file is empty)", line=1)
        self.columns = tuple(named)

    def _csv_records(self) -> Iterator[list[str]]:
        while True:
            try:
                record = next(self._csv)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputFileError(
                    self.path, f"CSV cannot be parsed: {exc}", line=self._csv.line_num
                ) from None
            yield record

    def _csv_rows(self) -> Iterator[SourceRow]:
        width = len(self._header)
        number = 0
        previous_line = self._header_lines
        for record in self._csv_records():
            start_line = previous_line + 1
            previous_line = self._csv.line_num
            # Blank lines, and lines of empty cells only (spreadsheets leave them at the end of
            # exports), are not rows: they are skipped and not counted.
            if not any(cell.strip() for cell in record):
                continue
            number += 1
            # Exports often end every line with a delimiter: extra cells that are empty are
            # harmless; any other difference means shifted cells, so the row is refused.
            extra = record[width:]
            if len(record) < width or any(cell.strip() for cell in extra):
                yield SourceRow(
                    number,
                    start_line,
                    {},
                    f"the row has {len(record)} cells, the header has {width}"
                    " (a missing quote or delimiter?)",
                )
                continue
            values: dict[str, object] = {}
            for index, name in enumerate(self._header):
                cell = record[index]
                if name:
                    values[name] = cell
                elif cell.strip():
                    yield SourceRow(
                        number,
                        start_line,
                        {},
                        f"cell {index + 1} has a value but its column has no name in the header",
                    )
                    break
            else:
                yield SourceRow(number, start_line, values)

    # -- JSON Lines -------------------------------------------------------------------------

    def _jsonl_rows(self) -> Iterator[SourceRow]:
        number = 0
        for line_number, line in enumerate(self._lines, start=1):
            if not line.strip():
                continue
            number += 1
            try:
                decoded = msgspec.json.decode(line)
            except msgspec.DecodeError as exc:
                yield SourceRow(number, line_number, {}, f"not valid JSON: {exc}")
                continue
            if not isinstance(decoded, dict):
                yield SourceRow(number, line_number, {}, "expected a JSON object on each line")
                continue
            yield SourceRow(number, line_number, _flatten(decoded))

    # -- protocol ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[SourceRow]:
        """The rows, one pass only (the file is read as they are consumed).

        Raises:
            InputFileError: The file cannot be decoded, or its CSV cannot be parsed.
        """
        return self._csv_rows() if self.format == "csv" else self._jsonl_rows()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> RowReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RowReader({self.path!r}, format={self.format!r}, delimiter={self.delimiter!r})"


def _flatten(obj: dict[str, object], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in obj.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def open_input(
    path: str | Path,
    *,
    format: InputFormat | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
) -> RowReader:
    """Open an input file for streaming.

    Args:
        path: The CSV or JSON Lines file.
        format: ``"csv"`` or ``"jsonl"``; by default from the extension (:func:`detect_format`).
        delimiter: The CSV delimiter; by default sniffed among ``, ; TAB |``.
        encoding: The file's encoding; UTF-8 by default, with or without a byte-order mark.

    Raises:
        InputFileError: The file cannot be opened, is UTF-16, has no or a duplicated header.
    """
    return RowReader(path, format=format, delimiter=delimiter, encoding=encoding)
