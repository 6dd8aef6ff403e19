"""Stream a CSV file of contacts into Qomon, with a progress bar and a summary.

The file is read row by row as the pool frees up (memory stays flat for any size); each row is
one ``POST /contacts`` awaited to its id, with the rate limiter pacing them all. A row whose
outcome is not ``created`` is written to ``<csv>.errors.csv`` with the reason.

Usage::

    QOMON_API_KEY=... python examples/etl_csv.py contacts.csv [--concurrency 8]

The CSV's header names Qomon's fields (``firstname``, ``surname``, ``mail``, ``mobile``...);
``address.city``-style columns fill the address. Configuration: ``QOMON_API_KEY``,
``QOMON_BASE_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from qomon_async import BulkProgress, ContactDict, QomonClient


def rows(path: Path) -> Iterator[ContactDict]:
    """The CSV's rows as contacts: empty cells dropped, ``address.x`` columns nested.

    A file's columns are only known at run time: the pool checks each row (an unknown column or
    a bad value ends that row ``failed``, naming the field), so the cast only informs mypy.
    ``qomon_async.contact_from_row`` applies the command line's full column rules instead.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            contact: dict[str, Any] = {}
            for column, value in row.items():
                if not column or value is None or not value.strip():
                    continue
                if column.startswith("address."):
                    contact.setdefault("address", {})[column.removeprefix("address.")] = value
                else:
                    contact[column] = value.strip()
            yield cast(ContactDict, contact)


def count_rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return max(sum(1 for _ in csv.reader(handle)) - 1, 0)


def draw(progress: BulkProgress) -> None:
    """One line on stderr, redrawn in place: a bar, counts, rate and ETA."""
    total = progress.total or 0
    width = 30
    filled = int(width * progress.done / total) if total else 0
    eta = f"{progress.eta:4.0f}s" if progress.eta is not None else "   ?"
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{total} "
        f"created {progress.created} failed {progress.failed} {progress.rate:6.1f}/s ETA {eta}"
    )
    sys.stderr.flush()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stream a CSV file of contacts into Qomon.")
    parser.add_argument("csv", type=Path)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)

    errors_path = args.csv.with_suffix(".errors.csv")
    outcomes: Counter[str] = Counter()
    async with QomonClient() as client:
        run = client.create_contacts(
            rows(args.csv),
            concurrency=args.concurrency,
            total=count_rows(args.csv),
            on_progress=draw,
        )
        with errors_path.open("w", newline="", encoding="utf-8") as handle:
            errors = csv.writer(handle)
            errors.writerow(["row", "status", "error"])
            async for result in run:
                outcomes[str(result.status)] += 1
                if not result.ok:
                    # Row numbers as a spreadsheet shows them (the header is row 1).
                    errors.writerow([result.index + 2, result.status, result.error])
    sys.stderr.write("\n")
    summary = ", ".join(f"{status} {n}" for status, n in sorted(outcomes.items()))
    print(f"{sum(outcomes.values())} rows: {summary}")
    if outcomes["created"] != sum(outcomes.values()):
        print(f"rows not created: {errors_path}")
        return 1
    errors_path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
