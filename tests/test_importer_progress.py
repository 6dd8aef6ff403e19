"""Progress display (bar on a terminal, plain lines otherwise, summary) and exit codes."""

from __future__ import annotations

import io

from qomon_async._importer import (
    EXIT_FATAL,
    EXIT_OK,
    EXIT_ROW_FAILURES,
    EXIT_USAGE,
    ExitCode,
    ProgressRenderer,
    ProgressSnapshot,
    RateMeter,
    exit_code_for,
    format_duration,
    format_summary,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


SNAP = ProgressSnapshot(
    done=450,
    total=1000,
    created=440,
    failed=7,
    unknown=3,
    in_flight=8,
    rate=2.0,
    eta=275,
    elapsed=225,
)


def test_bar_fits_the_width_and_shows_counters() -> None:
    for width in (200, 80, 60, 40, 20):
        line = ProgressRenderer.bar_line(SNAP, width)
        assert len(line) <= width - 1, (width, line)
    wide = ProgressRenderer.bar_line(SNAP, 120)
    assert wide.startswith("[")
    assert " 45% 450/1,000" in wide
    assert "created 440, failed 7, unknown 3" in wide
    assert "8 in flight" in wide
    assert "2.0 rows/s" in wide
    assert "ETA 4m35s" in wide
    assert "skipped" not in wide  # zero counters other than created are left out


def test_bar_without_total() -> None:
    line = ProgressRenderer.bar_line(ProgressSnapshot(done=12, created=12), 80)
    assert line.startswith("12 rows")
    assert "ETA" not in line
    assert "%" not in line


def test_tty_redraws_in_place_and_is_throttled() -> None:
    clock = FakeClock()
    out = io.StringIO()
    renderer = ProgressRenderer(out, tty=True, width=100, clock=clock)
    assert renderer.update(ProgressSnapshot(done=1, total=10))
    clock.now = 0.05
    assert not renderer.update(ProgressSnapshot(done=2, total=10))  # < 0.1 s
    clock.now = 0.11
    assert renderer.update(ProgressSnapshot(done=3, total=10))
    assert renderer.update(ProgressSnapshot(done=4, total=10), force=True)
    text = out.getvalue()
    assert text.count("\r") == 3
    assert "\n" not in text
    renderer.finish(ProgressSnapshot(done=10, total=10, created=10, elapsed=5))
    assert out.getvalue().count("\n") > 3
    assert "Import finished" in out.getvalue()


def test_shorter_redraw_erases_the_previous_line() -> None:
    out = io.StringIO()
    renderer = ProgressRenderer(out, tty=True, width=200, clock=FakeClock())
    renderer.update(SNAP)
    first = len(out.getvalue())
    renderer.update(ProgressSnapshot(done=1), force=True)
    second = out.getvalue()[first:]
    assert len(second) == first  # padded with spaces over the longer line


def test_plain_lines_by_time_or_rows() -> None:
    clock = FakeClock()
    out = io.StringIO()
    renderer = ProgressRenderer(out, tty=False, plain_interval=5, plain_every=100, clock=clock)
    assert renderer.update(ProgressSnapshot(done=1, total=1000))
    clock.now = 1
    assert not renderer.update(ProgressSnapshot(done=50, total=1000))
    assert renderer.update(ProgressSnapshot(done=101, total=1000))  # 100 rows later
    clock.now = 7
    assert renderer.update(ProgressSnapshot(done=110, total=1000))  # 5 s later
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "\r" not in out.getvalue()
    assert lines[1].startswith("[0s] 101/1,000 rows (10%)")


def test_rate_meter_and_eta() -> None:
    clock = FakeClock()
    meter = RateMeter(window=10, clock=clock)
    assert meter.rate is None
    for second in range(31):
        clock.now = second
        meter.update(done=2 * second)
    assert meter.rate == 2.0
    assert meter.eta(100) == 50.0
    assert meter.eta(None) is None


def test_durations() -> None:
    assert format_duration(None) == "--"
    assert format_duration(7.4) == "7s"
    assert format_duration(245) == "4m05s"
    assert format_duration(7380) == "2h03m"


def test_summary_block() -> None:
    text = format_summary(SNAP, title="Imported demo.csv", details={"report": "out.csv"})
    lines = text.splitlines()
    assert lines[0] == "Imported demo.csv"
    assert "  rows     450 of 1,000" in lines
    assert any(line.split() == ["report", "out.csv"] for line in lines)
    assert text.endswith("\n")


def test_exit_codes() -> None:
    assert (EXIT_OK, EXIT_ROW_FAILURES, EXIT_USAGE, EXIT_FATAL) == (0, 1, 2, 3)
    assert exit_code_for(failed=0, unknown=0) is ExitCode.OK
    assert exit_code_for(failed=1, unknown=0) is ExitCode.ROW_FAILURES
    assert exit_code_for(failed=0, unknown=1) is ExitCode.ROW_FAILURES
    assert exit_code_for(failed=0, unknown=0, skipped=2) is ExitCode.ROW_FAILURES
    assert exit_code_for(failed=5, unknown=0, fatal=True) is ExitCode.FATAL
