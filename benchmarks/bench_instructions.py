"""Instructions per create: the client's work counted by valgrind's callgrind, not timed.

CPU time on a shared machine moves with the other load (caches, frequency, a neighbour's
burst): ``bench_client_cost`` needs rounds and medians, and still shows ±10-30%. An instruction
count does not move: the same job executes the same instructions whoever else runs. It is not
time (a cache miss costs more than an add), so it complements CPU time without replacing it.

Each contender runs the job of ``bench_client_cost`` (the same senders, the tiny create server
in its own process, not under valgrind) under ``valgrind --tool=callgrind`` twice, with ``n1``
and ``n2`` creates; ``(Ir(n2) - Ir(n1)) / (n2 - n1)`` is the count per create, free of what
does not grow with the job (interpreter start, imports, the client's open and close, the
warm-up). Needs the ``valgrind`` binary (Debian package ``valgrind``); without it the
benchmark records that it could not run, and says so in its headline.
"""

from __future__ import annotations

import asyncio
import gc
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._common import (
    ROOT,
    Settings,
    log,
    markdown_table,
    median,
    ratio,
    server,
    write_json,
)

NAME = "instructions"
TITLE = "Instructions per create"
CONTENDERS = ("aiohttp", "no_limit", "default")
LABELS = {
    "aiohttp": "raw aiohttp + json (floor)",
    "no_limit": "qomon_async, rate_limit=False",
    "default": "qomon_async, default (limiter on)",
}
_COLLECTED = re.compile(r"Collected : (\d+)")


def _count(contender: str, n: int, concurrency: int, url: str) -> int:
    """Instructions (callgrind's Ir) of one job process sending ``n`` creates."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.bench_instructions",
        "--job",
        contender,
        str(n),
        str(concurrency),
        url,
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind job {contender} n={n} failed:\n{done.stderr[-3000:]}")
    return int(found.group(1))


def job_main(contender: str, n: int, concurrency: int, url: str) -> None:
    """The job under valgrind: a warm-up on a throwaway client, then ``n`` creates."""
    from benchmarks.bench_client_cost import make_contact, opener  # noqa: PLC0415

    warm = [make_contact(i, "iw") for i in range(max(200, 2 * concurrency))]
    items = [make_contact(i, f"i{n}-") for i in range(n)]
    gc.collect()
    gc.freeze()

    async def run(batch: list[dict[str, Any]]) -> None:
        async with opener(contender, url, concurrency) as send:
            done = await send(batch)
        if done != len(batch):
            raise RuntimeError(f"{contender}: {done} creates of {len(batch)}")

    asyncio.run(run(warm))
    asyncio.run(run(items))


def run(settings: Settings) -> dict[str, Any]:
    if settings.quick:
        concurrencies, sizes, repeats = (64,), (400, 1200), 1
    else:
        concurrencies, sizes, repeats = (1, 64, 256), (500, 1500), 1
    params = {"concurrencies": concurrencies, "n": sizes, "repeats": repeats}
    if shutil.which("valgrind") is None:
        log(f"{NAME}: valgrind is not installed (apt-get install valgrind): not measured")
        document = {"title": TITLE, "parameters": params, "unavailable": "valgrind not found"}
        write_json(settings, NAME, document)
        return document
    runs = []
    with server("tiny") as srv:
        for concurrency in concurrencies:
            for repeat in range(repeats):
                for contender in CONTENDERS:
                    small, large = (_count(contender, n, concurrency, srv.url) for n in sizes)
                    per_create = (large - small) / (sizes[1] - sizes[0])
                    runs.append(
                        {
                            "contender": contender,
                            "concurrency": concurrency,
                            "repeat": repeat,
                            "instructions": per_create,
                        }
                    )
                    log(f"{NAME}: c={concurrency} {contender}: {per_create:,.0f} per create")
    summary = []
    for concurrency in concurrencies:
        floor = median(
            [
                r["instructions"]
                for r in runs
                if r["contender"] == "aiohttp" and r["concurrency"] == concurrency
            ]
        )
        for contender in CONTENDERS:
            value = median(
                [
                    r["instructions"]
                    for r in runs
                    if r["contender"] == contender and r["concurrency"] == concurrency
                ]
            )
            summary.append(
                {
                    "contender": contender,
                    "concurrency": concurrency,
                    "instructions": value,
                    "vs_aiohttp": ratio(value, floor),
                }
            )
    document = {"title": TITLE, "parameters": params, "summary": summary, "runs": runs}
    write_json(settings, NAME, document)
    return document


def render(document: dict[str, Any], out: Path) -> str:
    if "unavailable" in document:
        return "\n\n".join(
            [
                f"## {TITLE}",
                f"**Not measured: {document['unavailable']} (install the Debian package "
                "valgrind and run `python -m benchmarks --only instructions`).**",
            ]
        )
    summary = document["summary"]
    params = document["parameters"]
    by = {(s["contender"], s["concurrency"]): s for s in summary}
    concurrencies = params["concurrencies"]
    rows = [
        [
            str(c),
            *(
                f"{by[name, c]['instructions'] / 1000:,.0f}k ({by[name, c]['vs_aiohttp']:.2f}x)"
                for name in CONTENDERS
            ),
        ]
        for c in concurrencies
    ]
    table = markdown_table(["c", *(LABELS[name] for name in CONTENDERS)], rows)
    default = [by["default", c]["vs_aiohttp"] for c in concurrencies]
    plain = [by["no_limit", c]["vs_aiohttp"] for c in concurrencies]
    headline = (
        f"Per create, the default client executes {_span(default)} the instructions of raw "
        f"aiohttp + json, rate_limit=False {_span(plain)} (callgrind: a count the machine's "
        "other load does not move)."
    )
    small, large = params["n"]
    return "\n\n".join(
        [
            f"## {TITLE}",
            f"**{headline}**",
            f"Instructions (callgrind's Ir) of the client process per create: the difference "
            f"between a job of {large:,} and one of {small:,} creates over their difference, "
            f"medians of {params['repeats']} repeat(s); the tiny create server of the client "
            "cost benchmark, in its own process and not counted.",
            table,
            "Caveats:\n\n"
            "- An instruction count is not time: allocation patterns and cache misses make one "
            "instruction cost more than another, so the CPU-time ratios of the client cost "
            "benchmark can differ. What it shows without noise is how much work each client "
            "does, and whether a change added or removed some.\n"
            "- Under valgrind the client runs some 50 times slower while the server does not: "
            "answers are always ready, so the event loop's share (fewer, fuller iterations) is "
            "smaller than at full speed, for every contender alike.",
        ]
    )


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}x" if round(low, 2) == round(high, 2) else f"{low:.2f}x to {high:.2f}x"


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--job":
        job_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        print("usage: python -m benchmarks --only instructions")
        sys.exit(2)
