"""Instructions per create: the client's work counted by valgrind, not timed.

CPU time on a shared machine moves with the other load (caches, frequency, a neighbour's
burst): whole jobs run one after the other differ by ±10-35%, and ``bench_client_cost`` has its
contenders take turns to bring its ratios to a few per cent. A count does not move at all: the
same job executes the same instructions whoever else runs.

Each contender runs the job of ``bench_client_cost`` (the same senders, the tiny create server
in its own process, not under valgrind) under ``valgrind --tool=cachegrind --cache-sim=yes
--branch-sim=yes`` twice, with ``n1`` and ``n2`` creates; ``(count(n2) - count(n1)) / (n2 -
n1)`` is the count per create, free of what does not grow with the job (interpreter start,
imports, the client's open and close, the warm-up). Counted: instructions (Ir), first-level
cache misses (instruction and data), last-level misses, and mispredicted branches; from them
KCachegrind's cycle estimate, ``CEst = Ir + 10 Bm + 10 L1m + 100 LLm``: not time either (the
simulated caches and predictor are simple models of the real ones), but it counts what
makes one instruction cost more than another, the stalls an instruction count hides. Needs
the ``valgrind`` binary (Debian package ``valgrind``); without it the benchmark records that
it could not run, and says so in its headline.

Beside it, the same two jobs without valgrind under ``sys.settrace`` with opcode events: the
**Python bytecodes** each contender's process interprets per create, split by package. This
count is as steady as the instruction count, and it tracks time better: the client trades C
work (``json``'s scanner, which raw aiohttp runs) for interpreted work (its own checks,
bookkeeping and models), and the interpreter runs fewer instructions per cycle (its dispatch
mispredicts branches and misses caches). Equal instructions can hide a time gap; a bytecode gap
shows it.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import FrameType
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
#: cachegrind's summary lines (on stderr), and the events each gives: the total, or the
#: parts in brackets.
_SUMMARY = {
    "ir": re.compile(r"I\s+refs:\s+([\d,]+)"),
    "i1": re.compile(r"I1\s+misses:\s+([\d,]+)"),
    "d1": re.compile(r"D1\s+misses:\s+([\d,]+)"),
    "ll": re.compile(r"LL misses:\s+([\d,]+)"),
    "bm": re.compile(r"Mispredicts:\s+([\d,]+)"),
}
#: KCachegrind's "cycle estimation": CEst = Ir + 10 Bm + 10 L1m + 100 LLm.
_WEIGHTS = {"ir": 1, "bm": 10, "i1": 10, "d1": 10, "ll": 100}
#: Where an interpreted bytecode is counted: the first of these found in its file's path.
PACKAGES = ("qomon_async", "aiohttp", "asyncio", "json")


def _job(mode: str, contender: str, n: int, concurrency: int, url: str) -> str:
    """Run one job process (``--job`` under callgrind, ``--bytecodes`` as it is); the output
    that carries its count (callgrind's stderr, the tracer's stdout)."""
    under = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=yes",
        "--branch-sim=yes",
        "--cachegrind-out-file=/dev/null",
    ]
    command = [
        *(under if mode == "--job" else []),
        sys.executable,
        "-m",
        "benchmarks.bench_instructions",
        mode,
        contender,
        str(n),
        str(concurrency),
        url,
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} job {contender} n={n} failed:\n{done.stderr[-3000:]}")
    return done.stderr if mode == "--job" else done.stdout


def _count(contender: str, n: int, concurrency: int, url: str) -> dict[str, int]:
    """cachegrind's counts (see ``_SUMMARY``) of one job process sending ``n`` creates."""
    output = _job("--job", contender, n, concurrency, url)
    counts = {}
    for event, pattern in _SUMMARY.items():
        found = pattern.search(output)
        if found is None:
            raise RuntimeError(f"cachegrind job {contender} n={n}: no {event} in\n{output[-3000:]}")
        counts[event] = int(found.group(1).replace(",", ""))
    return counts


def _bytecodes(contender: str, n: int, concurrency: int, url: str) -> dict[str, int]:
    """Bytecodes interpreted by one job process sending ``n`` creates, by package."""
    output = _job("--bytecodes", contender, n, concurrency, url)
    counts: dict[str, int] = json.loads(output.strip().splitlines()[-1])
    return counts


def _package(filename: str) -> str:
    for package in PACKAGES:
        if f"/{package}/" in filename:
            return package
    return "other"


def job_main(contender: str, n: int, concurrency: int, url: str, *, trace: bool = False) -> None:
    """The job under valgrind: a warm-up on a throwaway client, then ``n`` creates.

    With ``trace``, the timed job runs under an opcode tracer instead, and the bytecodes it
    interpreted are printed as one JSON line, by package.
    """
    from benchmarks._common import make_contact  # noqa: PLC0415
    from benchmarks.bench_client_cost import Items, opener  # noqa: PLC0415

    warm = [make_contact(i, "iw") for i in range(max(200, 2 * concurrency))]
    items = [make_contact(i, f"i{n}-") for i in range(n)]
    gc.collect()
    gc.freeze()

    async def run(batch: Items) -> None:
        async with opener(contender, url, concurrency) as send:
            done = await send(batch)
        if done != len(batch):
            raise RuntimeError(f"{contender}: {done} creates of {len(batch)}")

    asyncio.run(run(warm))
    if not trace:
        asyncio.run(run(items))
        return
    counts: collections.Counter[str] = collections.Counter()
    packages: dict[str, str] = {}

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        frame.f_trace_opcodes = True
        filename = frame.f_code.co_filename
        package = packages.get(filename)
        if package is None:
            package = packages[filename] = _package(filename)

        def local(frame: FrameType, event: str, arg: object) -> Any:
            if event == "opcode":
                counts[package] += 1
            return local

        return local

    sys.settrace(tracer)
    try:
        asyncio.run(run(items))
    finally:
        sys.settrace(None)
    print(json.dumps(dict(counts)))


def run(settings: Settings) -> dict[str, Any]:
    if settings.quick:
        concurrencies: tuple[int, ...] = (64,)
        sizes, repeats = (400, 1200), 1
    else:
        concurrencies, sizes, repeats = (1, 64, 256), (500, 1500), 1
    params = {"concurrencies": concurrencies, "n": sizes, "repeats": repeats}
    valgrind = shutil.which("valgrind") is not None
    if not valgrind:
        log(f"{NAME}: valgrind is not installed (apt-get install valgrind): bytecodes only")
    runs: list[dict[str, Any]] = []
    bytecodes = []
    with server("tiny") as srv:
        for concurrency in concurrencies:
            for contender in CONTENDERS:
                small_b, large_b = (_bytecodes(contender, n, concurrency, srv.url) for n in sizes)
                per = {
                    package: (large_b.get(package, 0) - small_b.get(package, 0))
                    / (sizes[1] - sizes[0])
                    for package in (*PACKAGES, "other")
                }
                bytecodes.append(
                    {"contender": contender, "concurrency": concurrency, "by_package": per}
                )
                log(f"{NAME}: c={concurrency} {contender}: {sum(per.values()):,.0f} bytecodes")
            for repeat in range(repeats if valgrind else 0):
                for contender in CONTENDERS:
                    small, large = (_count(contender, n, concurrency, srv.url) for n in sizes)
                    per = {e: (large[e] - small[e]) / (sizes[1] - sizes[0]) for e in _SUMMARY}
                    cycles = sum(_WEIGHTS[e] * per[e] for e in _SUMMARY)
                    runs.append(
                        {
                            "contender": contender,
                            "concurrency": concurrency,
                            "repeat": repeat,
                            "instructions": per["ir"],
                            "events": per,
                            "cycles": cycles,
                        }
                    )
                    log(
                        f"{NAME}: c={concurrency} {contender}: {per['ir']:,.0f} instructions, "
                        f"{cycles:,.0f} estimated cycles per create"
                    )
    summary = []
    for concurrency in concurrencies if valgrind else ():
        here = [r for r in runs if r["concurrency"] == concurrency]

        def measure(contender: str, key: str, rows: list[dict[str, Any]] = here) -> float:
            return median([r[key] for r in rows if r["contender"] == contender])

        for contender in CONTENDERS:
            value, cycles = measure(contender, "instructions"), measure(contender, "cycles")
            summary.append(
                {
                    "contender": contender,
                    "concurrency": concurrency,
                    "instructions": value,
                    "vs_aiohttp": ratio(value, measure("aiohttp", "instructions")),
                    "cycles": cycles,
                    "cycles_vs_aiohttp": ratio(cycles, measure("aiohttp", "cycles")),
                    "events": {
                        event: median(
                            [
                                r["events"][event]
                                for r in here
                                if r["contender"] == contender and "events" in r
                            ]
                        )
                        for event in _SUMMARY
                    },
                }
            )
    document: dict[str, Any] = {
        "title": TITLE,
        "parameters": params,
        "summary": summary,
        "runs": runs,
        "bytecodes": bytecodes,
    }
    if not valgrind:
        document["unavailable"] = "valgrind not found"
    write_json(settings, NAME, document)
    return document


def render(document: dict[str, Any], out: Path) -> str:
    params = document["parameters"]
    concurrencies = params["concurrencies"]
    small, large = params["n"]
    parts = [f"## {TITLE}"]
    if "unavailable" in document:
        parts.append(
            f"**Instructions not measured: {document['unavailable']} (install the Debian "
            "package valgrind and run `python -m benchmarks --only instructions`).**"
        )
    else:
        parts.extend(_render_instructions(document, concurrencies, small, large))
    if document.get("bytecodes"):
        parts.extend(_render_bytecodes(document["bytecodes"], concurrencies))
    return "\n\n".join(parts)


def _render_instructions(
    document: dict[str, Any], concurrencies: list[int], small: int, large: int
) -> list[str]:
    by = {(s["contender"], s["concurrency"]): s for s in document["summary"]}
    rows = []
    for c in concurrencies:
        for name in CONTENDERS:
            row = by[name, c]
            events = row.get("events") or {}
            rows.append(
                [
                    str(c),
                    LABELS[name],
                    f"{row['instructions'] / 1000:,.0f}k ({row['vs_aiohttp']:.2f}x)",
                    *(
                        f"{events[event] / 1000:,.1f}k" if event in events else "—"
                        for event in ("i1", "d1", "ll", "bm")
                    ),
                    f"{row['cycles'] / 1000:,.0f}k ({row['cycles_vs_aiohttp']:.2f}x)"
                    if "cycles" in row
                    else "—",
                ]
            )
    table = markdown_table(
        [
            "c",
            "contender",
            "instructions",
            "I1 misses",
            "D1 misses",
            "LL misses",
            "mispredicted branches",
            "estimated cycles",
        ],
        rows,
    )
    default = [by["default", c]["vs_aiohttp"] for c in concurrencies]
    plain = [by["no_limit", c]["vs_aiohttp"] for c in concurrencies]
    headline = (
        f"Per create, the default client executes {_span(default)} the instructions of raw "
        f"aiohttp + json, rate_limit=False {_span(plain)}"
    )
    if all("cycles" in by[name, c] for name in CONTENDERS for c in concurrencies):
        default_cycles = [by["default", c]["cycles_vs_aiohttp"] for c in concurrencies]
        plain_cycles = [by["no_limit", c]["cycles_vs_aiohttp"] for c in concurrencies]
        headline += (
            f"; with cache misses and mispredicted branches weighed in (estimated cycles), "
            f"{_span(default_cycles)} and {_span(plain_cycles)} (valgrind: counts the "
            "machine's other load does not move)."
        )
    else:
        headline += " (valgrind: a count the machine's other load does not move)."
    return [
        f"**{headline}**",
        f"Counts of the client process per create under cachegrind (simulated caches and "
        f"branch predictor): the difference between a job of {large:,} and one of {small:,} "
        f"creates over their difference, medians of {document['parameters']['repeats']} "
        "repeat(s); the tiny create server of the client cost benchmark, in its own process and "
        "not counted. Estimated cycles: KCachegrind's cycle estimate, instructions + 10 x "
        "mispredicted branches + 10 x first-level misses + 100 x last-level misses.",
        table,
        "Caveats:\n\n"
        "- Neither count is time. The instruction count shows how much work each client does, "
        "and whether a change added or removed some; the estimate adds what makes one "
        "instruction cost more than another, with fixed weights on simple models of the real "
        "caches and predictor (the last level simulated here is this machine's large shared "
        "cache, so it almost never misses). Measured against the client cost benchmark's CPU "
        "times (contenders taking turns), the estimate runs low for the client: it puts "
        "the client at or under raw aiohttp where CPU time says 1.02x to 1.15x, the "
        "interpreter's real stalls weighing more than the model's. Read it as the size and "
        "direction of a change, not as the target's measure; the bytecode count below shows "
        "which kind of work it is.\n"
        "- Under valgrind the client runs some 50 times slower while the server does not: "
        "answers are always ready, so the event loop's share (fewer, fuller iterations) is "
        "smaller than at full speed, for every contender alike.",
    ]


def _render_bytecodes(bytecodes: list[dict[str, Any]], concurrencies: list[int]) -> list[str]:
    by = {(b["contender"], b["concurrency"]): b["by_package"] for b in bytecodes}
    columns = (*PACKAGES, "other")
    rows = []
    for c in concurrencies:
        floor = sum(by["aiohttp", c].values())
        for name in CONTENDERS:
            counts = by[name, c]
            total = sum(counts.values())
            rows.append(
                [
                    str(c),
                    LABELS[name],
                    f"{total:,.0f} ({ratio(total, floor):.2f}x)",
                    *(f"{counts[package]:,.0f}" for package in columns),
                ]
            )
    table = markdown_table(["c", "contender", "bytecodes per create", *columns], rows)
    own = [by[name, c]["qomon_async"] for name in ("no_limit", "default") for c in concurrencies]
    return [
        "### Python bytecodes per create",
        f"**The client's own code interprets {min(own):,.0f} to {max(own):,.0f} bytecodes per "
        "create; that, not the instruction count, is what its CPU time over raw aiohttp "
        "follows.**",
        "The same two jobs, without valgrind, under `sys.settrace` with opcode events: "
        "bytecodes interpreted per create (the difference of the two jobs over their "
        "difference), by the package whose file holds the code. Raw aiohttp's `json` work runs "
        "in C (the scanner and encoder), so its column holds only the Python wrappers. An "
        "interpreted bytecode costs some 25-30 instructions at a lower rate per cycle than "
        "the C parsers, which is why equal instruction counts can hide a CPU-time gap.",
        table,
    ]


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}x" if round(low, 2) == round(high, 2) else f"{low:.2f}x to {high:.2f}x"


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] in ("--job", "--bytecodes"):
        job_main(
            sys.argv[2],
            int(sys.argv[3]),
            int(sys.argv[4]),
            sys.argv[5],
            trace=sys.argv[1] == "--bytecodes",
        )
    else:
        print("usage: python -m benchmarks --only instructions")
        sys.exit(2)
