"""The ``import`` and ``demo`` subcommands of ``qomon-async``: arguments and handlers.

``_cli.py`` registers them with :func:`add_import_command` and :func:`add_demo_command`;
each handler returns the exit code (:class:`~qomon_async._importer.ExitCode`)::

    0  every row created or a duplicate of an earlier row (a dry run: every row valid; the
       demo: it went as expected)
    1  the run went through, some rows failed, are unknown or were not sent (duplicates aside)
    2  usage or input error (arguments, input file, mapping, journal, key, URL)
    3  fatal: Qomon refused the API key (401/403); the rest of the rows were skipped
    130 / 143  stopped by SIGINT / SIGTERM (the journal makes the next run finish the job)

The heavy modules (the client, aiohttp, the emulator) are imported inside the handlers, so
that ``qomon-async --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from ._errors import ImporterError
from ._exit import ExitCode

if TYPE_CHECKING:
    from ._job import ImportOutcome, ProgressMode

__all__ = ["add_demo_command", "add_import_command", "cmd_demo", "cmd_import"]

_Subparsers = argparse._SubParsersAction

IMPORT_EPILOG = """\
The API key and URL come from QOMON_API_KEY and QOMON_BASE_URL (or --api-key/--base-url;
prefer the environment: a command line is visible to other users). The key is never printed
nor written to the report.

A row with the same mail and names as an earlier row (--dedupe-key mail: the same mail) is a
duplicate: skipped, never sent, counted apart in the summary and the report.

Exit codes: 0 all rows created or duplicates (dry run: all valid); 1 some rows failed, unknown
or not sent; 2 usage or input error (nothing sent after it was found); 3 Qomon refused the key
(the rest skipped); 130/143 interrupted (run again with the same --journal to finish).

Examples:
  qomon-async import contacts.csv --dry-run
  qomon-async import contacts.csv --mapping mapping.toml --journal run.sqlite --report out.csv
"""

DEMO_EPILOG = """\
The demo needs no account and no network: the emulator (qomon_async.testing.FakeQomon)
runs in the same process on 127.0.0.1 with Qomon's token bucket on a faster clock.
"""

# Qomon Seconds per real second in the demo: 1,000 creates at Qomon's 2 per second take about
# 500 Qomon seconds, so about 10 real seconds at 50x.
DEMO_TIME_SCALE = 50.0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
    return value


def _delimiter(text: str) -> str:
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
    value = named.get(text.lower(), text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"a delimiter is one character (or tab), not {text!r}")
    return value


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "plain", "none"),
        default="auto",
        help="progress display on stderr: a bar on a terminal, periodic lines otherwise (auto)",
    )


def add_import_command(subparsers: _Subparsers[argparse.ArgumentParser]) -> None:
    """Register ``qomon-async import FILE``."""
    sub = subparsers.add_parser(
        "import",
        help="import contacts from a CSV or JSON Lines file",
        description=(
            "Import contacts from a CSV (any delimiter, UTF-8) or JSON Lines file into a\n"
            "Qomon space. Columns are named as Qomon's contact fields (firstname, mail,\n"
            "address.city, tags split on ';', ...) unless a --mapping file says otherwise."
        ),
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("file", type=Path, metavar="FILE", help="the CSV or JSON Lines file")
    sub.add_argument(
        "--mapping",
        type=Path,
        metavar="PATH",
        help="TOML mapping: rename columns, constants, value maps, advanced fields by form label",
    )
    sub.add_argument(
        "--route",
        choices=("create", "upsert"),
        default="create",
        help="create: POST /contacts, one confirmed contact per row (default); upsert: POST"
        " /contacts/upsert (matched by id/mail/names, applied later by Qomon)",
    )
    sub.add_argument(
        "--concurrency", type=_positive_int, default=8, help="requests in flight (default 8)"
    )
    sub.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every row and print the problems with their row numbers; send nothing"
        " (the forms are read when the mapping has advanced fields)",
    )
    sub.add_argument(
        "--report",
        type=Path,
        metavar="PATH",
        help="per-row report: row, status, contact id, error (.csv or .jsonl)",
    )
    sub.add_argument(
        "--journal",
        type=Path,
        metavar="PATH",
        help="SQLite journal: a run killed at any moment resumes with the same journal, "
        "without creating anyone twice",
    )
    sub.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --journal: send again the rows Qomon refused in an earlier run",
    )
    sub.add_argument(
        "--verify",
        action="store_true",
        help="upsert route: read each contact back until it shows what was sent",
    )
    sub.add_argument(
        "--dedupe-key",
        choices=("mail+names", "mail"),
        default="mail+names",
        help="create route: a row with the same mail and names (default), or the same mail"
        " alone, as an earlier row is skipped as a duplicate, not sent",
    )
    sub.add_argument("--format", choices=("csv", "jsonl"), help="default: from the extension")
    sub.add_argument(
        "--delimiter", type=_delimiter, help="CSV delimiter (default: detected among , ; tab |)"
    )
    _add_progress(sub)
    sub.add_argument(
        "--api-key", metavar="KEY", help="the space's API key (default: $QOMON_API_KEY)"
    )
    sub.add_argument(
        "--base-url",
        metavar="URL",
        help="the API's URL (default: $QOMON_BASE_URL, then https://incoming.qomon.app)",
    )
    sub.add_argument(
        "--redis",
        metavar="URL",
        help="share the space's rate-limit bucket with other processes through this Redis "
        "(default: $QOMON_REDIS_URL; needs the redis extra)",
    )
    sub.set_defaults(run=cmd_import)


def add_demo_command(subparsers: _Subparsers[argparse.ArgumentParser]) -> None:
    """Register ``qomon-async demo``."""
    sub = subparsers.add_parser(
        "demo",
        help="import a bundled sample into a local emulator (no account, no network)",
        description=(
            "Start the Qomon emulator in this process, write a sample of realistic French\n"
            "contacts and its mapping file, import it through the whole pipeline (forms,\n"
            "journal, report, progress bar) and print the summary."
        ),
        epilog=DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--rows", type=_positive_int, default=1000, help="sample size (default 1000)")
    sub.add_argument(
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="where the sample, mapping, journal and report go (default ./qomon-demo, or a"
        " temporary directory if it cannot be created)",
    )
    sub.add_argument(
        "--time-scale",
        type=_positive_float,
        default=DEMO_TIME_SCALE,
        help=f"Qomon seconds per real second (default {DEMO_TIME_SCALE:g})",
    )
    sub.add_argument(
        "--concurrency", type=_positive_int, default=8, help="requests in flight (default 8)"
    )
    _add_progress(sub)
    sub.set_defaults(run=cmd_demo)


def _error(message: str) -> None:
    sys.stderr.write(f"qomon-async: error: {message}\n")
    sys.stderr.flush()


def cmd_import(args: argparse.Namespace) -> int:
    """Run ``qomon-async import``; returns the exit code."""
    from ._job import FatalImportError, ImportOptions, run_import  # noqa: PLC0415

    if args.retry_failed and args.journal is None:
        _error("--retry-failed needs --journal")
        return int(ExitCode.USAGE)
    if args.verify and args.route != "upsert":
        _error("--verify is for --route upsert")
        return int(ExitCode.USAGE)
    options = ImportOptions(
        path=args.file,
        route=args.route,
        mapping=args.mapping,
        concurrency=args.concurrency,
        dry_run=args.dry_run,
        report=args.report,
        journal=args.journal,
        retry_failed=args.retry_failed,
        api_key=args.api_key,
        base_url=args.base_url,
        input_format=args.format,
        delimiter=args.delimiter,
        progress=args.progress,
        verify=args.verify,
        dedupe_key=args.dedupe_key,
    )
    if args.redis:  # read by QomonClient when built without shared_bucket=
        os.environ["QOMON_REDIS_URL"] = args.redis
    key = args.api_key or os.environ.get("QOMON_API_KEY") or ""
    try:
        outcome = asyncio.run(run_import(options))
    except ImporterError as exc:
        _error(_redact(str(exc), key))
        return int(ExitCode.USAGE)
    except FatalImportError as exc:
        _error(_redact(str(exc), key))
        return int(ExitCode.FATAL)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    return outcome.exit_code


def _redact(text: str, key: str) -> str:
    return text.replace(key.strip(), "***") if key.strip() else text


# -- demo ------------------------------------------------------------------------------------


def _demo_dir(requested: Path | None) -> Path:
    if requested is not None:
        requested.mkdir(parents=True, exist_ok=True)
        return requested
    default = Path("qomon-demo")
    try:
        default.mkdir(exist_ok=True)
        probe = default / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return Path(tempfile.mkdtemp(prefix="qomon-demo-"))
    return default


def cmd_demo(args: argparse.Namespace) -> int:
    """Run ``qomon-async demo``; returns the exit code."""
    try:
        directory = _demo_dir(args.output_dir)
    except OSError as exc:
        _error(f"cannot create the demo directory: {exc}")
        return int(ExitCode.USAGE)
    try:
        return asyncio.run(
            _run_demo(
                directory,
                rows=args.rows,
                time_scale=args.time_scale,
                concurrency=args.concurrency,
                progress=args.progress,
            )
        )
    except ImporterError as exc:
        _error(str(exc))
        return int(ExitCode.USAGE)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _expected_bad_rows(rows: int) -> set[int]:
    """The rows the demo data makes bad on purpose, for a sample of ``rows`` rows (as placed
    by ``demo_rows``)."""
    from ._demo import DEMO_BAD_ROWS  # noqa: PLC0415

    return {max(1, round(number * rows / 1000)) for number, _, _ in DEMO_BAD_ROWS}


async def _run_demo(
    directory: Path, *, rows: int, time_scale: float, concurrency: int, progress: str
) -> int:
    from qomon_async.testing import FakeQomon  # noqa: PLC0415

    from ._demo import write_demo_csv, write_demo_mapping  # noqa: PLC0415
    from ._job import ImportOptions, run_import  # noqa: PLC0415

    csv_path = write_demo_csv(directory / "contacts.csv", rows)
    mapping_path = write_demo_mapping(directory / "mapping.toml")
    journal_path = directory / "journal.sqlite"
    report_path = directory / "report.csv"
    # A fresh emulator has no contact: a journal of an earlier demo would skip every row.
    for stale in (journal_path, Path(f"{journal_path}-wal"), Path(f"{journal_path}-shm")):
        stale.unlink(missing_ok=True)

    key = "demo-" + secrets.token_hex(12)
    out = sys.stdout
    started = time.monotonic()
    async with FakeQomon(api_key=key, time_scale=time_scale) as fake:
        out.write(
            f"Qomon emulator listening on {fake.base_url} (in this process): Qomon's token bucket"
            f" (100 tokens, +10/s, 5 per create, so 2 creates/s) on a clock {time_scale:g}x"
            " faster.\n"
            f"Sample: {rows:,} French contacts in {csv_path} (';'-separated, UTF-8 with BOM),"
            f" mapped by {mapping_path}.\n"
            f"Importing with a journal ({journal_path}) and a report ({report_path}):\n\n"
        )
        out.flush()
        options = ImportOptions(
            path=csv_path,
            mapping=mapping_path,
            concurrency=concurrency,
            report=report_path,
            journal=journal_path,
            api_key=key,
            base_url=fake.base_url,
            progress=cast("ProgressMode", progress),
            durable=False,
        )
        outcome = await run_import(options)
        stored = len(fake.contacts)
        limited = sum(1 for r in fake.requests if r.status == 429)
        qomon_seconds = fake.now()
    return _demo_verdict(
        outcome,
        rows=rows,
        stored=stored,
        limited=limited,
        qomon_seconds=qomon_seconds,
        real_seconds=time.monotonic() - started,
        report_path=report_path,
        csv_path=csv_path,
        mapping_path=mapping_path,
    )


def _demo_verdict(
    outcome: ImportOutcome,
    *,
    rows: int,
    stored: int,
    limited: int,
    qomon_seconds: float,
    real_seconds: float,
    report_path: Path,
    csv_path: Path,
    mapping_path: Path,
) -> int:
    """Print what the demo showed; 0 when it went as designed (only the deliberate bad rows
    failed, every other row created once), else the import's own exit code."""
    out = sys.stdout
    s = outcome.snapshot
    bad = _expected_bad_rows(rows)
    failed_rows = {row for row, status, _ in outcome.failures if status == "failed"}
    as_designed = (
        outcome.exit_code in (ExitCode.OK, ExitCode.ROW_FAILURES)
        and s.failed == len(bad)
        and failed_rows == bad
        and s.unknown == 0
        and s.skipped == 0
        and s.created == rows - len(bad) == stored
    )
    out.write(
        f"\nThe emulator stored {stored:,} contacts; {limited} answer(s) were 429. Qomon time:"
        f" {qomon_seconds / 60:.1f} min, real time: {real_seconds:.1f} s.\n"
    )
    if as_designed:
        out.write(
            f"As designed: the {len(bad)} failed rows are the sample's deliberate mistakes (an"
            " invalid email, an impossible date, a level of support that is not an option);"
            " they were never sent. The demo exits 0; a real import with failed rows exits 1.\n"
        )
        code = int(ExitCode.OK)
    else:
        out.write("Not as designed: see the report and the summary above.\n")
        code = outcome.exit_code if outcome.exit_code != ExitCode.OK else ExitCode.ROW_FAILURES
    out.write(
        f"\nReport: {report_path}\n"
        f"Now your own file: qomon-async import contacts.csv --mapping {mapping_path} --dry-run"
        f"\n  (the sample {csv_path} and its mapping are a starting point)\n"
    )
    out.flush()
    return int(code)
