"""Property tests (hypothesis) of ``qomon-async import``'s front end: CSV and JSON Lines readers,
the TOML mapping, the row builder, the validation and the report, fed arbitrary input.

The promise: every run ends with exit code 0, 1 or 2 (never a traceback), and a run that reads
the rows writes one report line per row (rows numbered 1..N, each once).

The default profile keeps the suite fast (a few seconds); ``HYPOTHESIS_PROFILE=fuzz`` runs many
more examples (``nox -s fuzz``, or ``HYPOTHESIS_PROFILE=fuzz pytest tests/test_importer_fuzz.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qomon_async import QomonClient
from qomon_async._cli import main
from qomon_async._importer import ImporterError
from qomon_async._importer._fields import CONTACT_FIELDS, FIELD_ALIASES
from qomon_async._importer._job import FatalImportError, ImportOptions, run_import
from qomon_async.testing import FakeQomon

KEY = "sk-test-fuzz-0c4e91"
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
# Each example is a whole run (files written, a report read back): a few dozen by default.
SHORT = settings(
    max_examples=300 if LONG else 15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

COLUMNS = [*CONTACT_FIELDS, *FIELD_ALIASES]
# Cells that hit the converters' edges: dates, booleans, mails, numbers, separators, quotes.
CELLS = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "", " ", "12/03/1980", "1980-02-31", "2999-01-01", "1980-03-05T10:00", "oui",
            "non", "yes", "2", "-1", "1e9", "a@b.org", "a@-b.org", ";@x.org", "tag1;tag2;;",
            '"', "\n", "\r\n", "é", "\x00", "\ufeff", "F", "m", "01000", "NaN",
        ]
    ),
)  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeQomon]:
    with FakeQomon(api_key=KEY, time_scale=1000, rate_limit=False) as fake:
        yield fake


def _cli(args: list[str]) -> tuple[int, str]:
    """``qomon-async`` in this process; an exception escaping it fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue() + err.getvalue()


def _send(options: ImportOptions, base_url: str) -> int:
    """A real run, as ``qomon-async import`` maps its outcome to an exit code, with a client
    that does not rate-limit (the emulator's bucket is off too): fast examples."""

    async def run() -> int:
        async with QomonClient(KEY, base_url=base_url, rate_limit=False) as client:
            outcome = await run_import(
                options, stdout=io.StringIO(), stderr=io.StringIO(), client=client,
                handle_signals=False,
            )  # fmt: skip
        return outcome.exit_code

    try:
        return asyncio.run(run())
    except ImporterError:
        return 2
    except FatalImportError:
        return 3


def _report_rows(path: Path) -> list[int]:
    with open(path, encoding="utf-8", newline="") as f:
        return [int(r["row"]) for r in csv.DictReader(f)]


def _check(code: int, output: str, report: Path, rows: int | None) -> None:
    assert code in (0, 1, 2), output
    assert "Traceback" not in output
    if code == 2:
        return  # refused before reading the rows (a bad file, header or mapping)
    numbers = _report_rows(report)
    assert numbers == list(range(1, len(numbers) + 1)) or sorted(numbers) == list(
        range(1, len(numbers) + 1)
    ), numbers
    if rows is not None:
        assert len(numbers) == rows


def _write_csv(path: Path, header: list[str], rows: list[list[str]], delimiter: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


@st.composite
def csv_tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=6, unique=True))
    rows = draw(
        st.lists(
            st.lists(CELLS, min_size=len(header), max_size=len(header)), min_size=1, max_size=6
        )
    )
    return header, rows


def _data_rows(rows: list[list[str]]) -> int:
    # A row whose cells are all blank is not a row (spreadsheets leave such lines).
    return sum(1 for r in rows if any(c.strip() for c in r))


@SHORT
@given(table=csv_tables(), delimiter=st.sampled_from([",", ";", "\t"]))
def test_csv_dry_run_any_cells(table: tuple[list[str], list[list[str]]], delimiter: str) -> None:
    header, rows = table
    with tempfile.TemporaryDirectory() as tmp:
        source, report = Path(tmp) / "in.csv", Path(tmp) / "report.csv"
        _write_csv(source, header, rows, delimiter)
        code, output = _cli(
            ["import", str(source), "--dry-run", "--report", str(report), "--api-key", KEY,
             "--delimiter", delimiter, "--progress", "none"]
        )  # fmt: skip
        _check(code, output, report, None)
        if code != 2:
            assert len(_report_rows(report)) == _data_rows(rows)


@SHORT
@given(table=csv_tables())
def test_csv_import_any_cells(fake: FakeQomon, table: tuple[list[str], list[list[str]]]) -> None:
    header, rows = table
    with tempfile.TemporaryDirectory() as tmp:
        source, report = Path(tmp) / "in.csv", Path(tmp) / "report.csv"
        _write_csv(source, header, rows, ",")
        options = ImportOptions(
            path=source, report=report, delimiter=",", progress="none", count_rows=False,
            route="upsert" if "id" in header or "nationbuilderid" in header else "create",
        )  # fmt: skip
        code = _send(options, fake.base_url)
        _check(code, "", report, None)
        if code != 2:
            assert len(_report_rows(report)) == _data_rows(rows)


@SHORT
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".jsonl"]))
def test_any_bytes(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source, report = Path(tmp) / f"in{suffix}", Path(tmp) / "report.csv"
        source.write_bytes(data)
        code, output = _cli(
            ["import", str(source), "--dry-run", "--report", str(report), "--api-key", KEY,
             "--progress", "none"]
        )  # fmt: skip
        _check(code, output, report, None)


@SHORT
@given(
    lines=st.lists(
        st.one_of(
            st.dictionaries(
                st.sampled_from(COLUMNS) | st.text(max_size=8), JSON_VALUES, max_size=5
            ).map(json.dumps),
            JSON_VALUES.map(json.dumps),
            st.text(max_size=20).filter(lambda t: "\n" not in t and "\r" not in t),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_jsonl_any_lines(fake: FakeQomon, lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source, report = Path(tmp) / "in.jsonl", Path(tmp) / "report.csv"
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        options = ImportOptions(
            path=source, report=report, progress="none", count_rows=False,
            mapping=None,
        )  # fmt: skip
        code = _send(options, fake.base_url)
        # Blank lines are not rows; every other line is one row with one outcome.
        rows = sum(1 for line in lines if line.strip() and not _splits(line))
        _check(code, "", report, rows if not any(_splits(line) for line in lines) else None)


def _splits(line: str) -> bool:
    # Characters that str.splitlines() (and so a text reader) may take as line breaks.
    return any(c in line for c in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


TOML_SNIPPETS = st.sampled_from(
    [
        "", "ignore_unknown = true\n", "ignore = [\"x\"]\n", "[columns]\nPrénom = \"firstname\"\n",
        "[columns]\nx = \"nope\"\n", "[constants]\ntags = \"a;b\"\n", "[constants]\nid = 3\n",
        "[values.gender]\nmonsieur = \"M\"\n", "[advanced.x]\nform_type = \"consent\"\n",
        "[advanced.y]\nform_type = \"survey\"\nform = \"Q\"\n", "columns = 3\n", "[[x]]\n",
        "= broken\n", "[constants]\nbirthdate = 1980-01-01\n", "[values]\nx = 1\n",
    ]
)  # fmt: skip


@SHORT
@given(
    mapping=st.one_of(
        st.lists(TOML_SNIPPETS, max_size=4).map("".join),
        st.text(max_size=80),
        st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3).map(
            lambda d: "\n".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in d.items())
        ),
    ),
    table=csv_tables(),
)
def test_any_mapping(
    fake: FakeQomon, mapping: str, table: tuple[list[str], list[list[str]]]
) -> None:
    header, rows = table
    with tempfile.TemporaryDirectory() as tmp:
        source, report = Path(tmp) / "in.csv", Path(tmp) / "report.csv"
        toml = Path(tmp) / "mapping.toml"
        toml.write_text(mapping, encoding="utf-8")
        _write_csv(source, [*header, "x"], [[*r, "v"] for r in rows], ",")
        code, output = _cli(
            ["import", str(source), "--mapping", str(toml), "--dry-run", "--report", str(report),
             "--api-key", KEY, "--base-url", fake.base_url, "--progress", "none"]
        )  # fmt: skip
        _check(code, output, report, None)


def test_the_properties_can_fail(tmp_path: Path) -> None:
    # The checks are not vacuous: a report with a gap, or a traceback, is caught.
    report = tmp_path / "r.csv"
    report.write_text("row,status\n1,created\n3,created\n", encoding="utf-8")
    with pytest.raises(AssertionError):
        _check(0, "", report, None)
    with pytest.raises(AssertionError):
        _check(1, "Traceback (most recent call last):", report, None)
    with pytest.raises(AssertionError):
        _check(5, "", report, None)
