"""The per-row report writer: formats, spreadsheet safety, streaming, no secrets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from qomon_async._importer import (
    REPORT_COLUMNS,
    ReportError,
    ReportRecord,
    ReportWriter,
    neutralise_cell,
)

KEY = "sk_live_0123456789abcdef"


@pytest.mark.parametrize("text", ["=1+1", "+33 6", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_formula_starts_are_neutralised(text: str) -> None:
    assert neutralise_cell(text) == "'" + text


def test_plain_text_is_kept() -> None:
    assert neutralise_cell("not an email address") == "not an email address"


def test_csv_report_streams_and_is_spreadsheet_safe(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    with ReportWriter(path, secrets=[KEY]) as writer:
        writer.write(ReportRecord(1, "created", contact_id=101, attempts=1, line=2))
        # Written and flushed before the writer is closed: a crash keeps what was written.
        assert path.read_text(encoding="utf-8").count("\n") == 2
        writer.write(
            ReportRecord(2, "failed", error='=HYPERLINK("http://x") bad', attempts=2, line=3)
        )
        writer.write(ReportRecord(3, "unknown", error=f"timeout (Bearer {KEY})", reconciled=True))
        writer.write(ReportRecord(4, "created", contact_id=104, resumed=True))
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == REPORT_COLUMNS
    assert rows[1] == ["1", "2", "created", "101", "1", "false", "false", ""]
    assert rows[2][7] == '\'=HYPERLINK("http://x") bad'
    assert rows[3] == ["3", "", "unknown", "", "0", "true", "false", "timeout (Bearer ***)"]
    assert rows[4][6] == "true"
    assert KEY not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson"])
def test_jsonl_report(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"report{suffix}"
    with ReportWriter(path, secrets=[KEY]) as writer:
        writer.write(ReportRecord(1, "created", contact_id=101, attempts=1, line=2))
        writer.write(ReportRecord(2, "failed", error=f"=bad {KEY}"))
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {
        "row": 1,
        "line": 2,
        "status": "created",
        "contact_id": 101,
        "attempts": 1,
        "reconciled": False,
        "resumed": False,
        "error": None,
    }
    # JSON is not a spreadsheet: the text is kept as is, the secret is not.
    assert lines[1]["error"] == "=bad ***"


def test_unknown_extension_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"\.csv, \.jsonl or \.ndjson"):
        ReportWriter(tmp_path / "report.xlsx")
    with pytest.raises(ReportError, match="cannot create"):
        ReportWriter(tmp_path / "missing-dir" / "report.csv")
