"""Client cost: CPU microseconds per create of the default client, against the raw floor.

Every contender sends the same ``POST /contacts`` bodies (``{"data": {"contact": ...}}``, the
contacts of :func:`benchmarks._common.make_contact`) with the same headers to the same tiny
server process (``benchmarks._servers tiny``: Qomon's seed create answer with a new id and the
``X-Ratelimit-*`` headers of a huge bucket, ``burst:1000000;rate:1000000.0``, so that a rate
limiter does its real work on every answer and never waits), reads each answer whole and takes
the new id out of it.

The contenders:

- ``default``: ``QomonClient`` as users build it (rate limiter on, retries, dedupe), its pool
  ``create_contacts(items, concurrency=c)``; only ``max_connections=max(64, c)`` is set.
- ``no_limit``: the same with ``rate_limit=False``.
- ``aiohttp``: the floor: ``c`` tasks on one ``aiohttp.ClientSession`` (``limit=c``), each
  ``json.dumps`` a body, posts it, reads the answer and ``json.loads`` it for the id.
- ``httpx`` and ``requests`` (full mode only, 2,000 creates, c <= 64): references.

Each measurement is one process: imports, the input list built, a warm-up job (a throwaway
client, so that every code path has run once), then the timed job: a fresh client opened, the
``n`` creates, the client closed. CPU is the process's ``time.process_time()`` (every thread)
over the timed job alone; the input list is built before and frozen out of the garbage
collector's sight (``gc.freeze``), as a streamed input would be. The server's CPU over the same
span is read from ``/proc`` (psutil) to show it is not the bottleneck. Contenders alternate
(rotated each round) within each (n, c) block; medians of the rounds are reported.

``python -m benchmarks.bench_client_cost --profile`` profiles one job instead (cProfile): see
:func:`profile_main`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks._common import (
    API_KEY,
    COLOURS,
    Settings,
    fmt,
    log,
    make_contact,
    markdown_table,
    median,
    pyplot,
    ratio,
    request_headers,
    run_queue_wait,
    run_worker_retrying,
    server,
    spread,
    worker_main,
    write_json,
)

NAME = "client_cost"
TITLE = "Client cost per create"
#: The contenders of the matrix, and the references run at the smallest n only (full mode).
MAIN = ("default", "no_limit", "aiohttp")
REFERENCES = ("httpx", "requests")
CONTENDERS = MAIN + REFERENCES
#: httpx is 5-30x slower per request here: it sends a quarter of the requests.
SHARE = {"httpx": 0.25}
LABELS = {
    "default": "qomon_async, default (limiter on)",
    "no_limit": "qomon_async, rate_limit=False",
    "aiohttp": "raw aiohttp + json (floor)",
    "httpx": "httpx.AsyncClient + json",
    "requests": "requests.Session (c=1 sequential; c>1 threads)",
}
SHORT = {"default": "default", "no_limit": "rate_limit=False", "aiohttp": "aiohttp"}
#: The issue's targets: CPU per create over raw aiohttp's at the same c and n.
TARGETS = {"default": 1.10, "no_limit": 1.05}
COLOURS_HERE = {
    "default": COLOURS["qomon_async"],
    "no_limit": "#17becf",
    "aiohttp": COLOURS["aiohttp"],
    "httpx": COLOURS["httpx"],
    "requests": COLOURS["requests"],
}

#: The matrix: run lengths, concurrencies, rounds per run length.
FULL = {"sizes": (2_000, 20_000, 100_000), "rounds": {2_000: 5, 20_000: 3, 100_000: 3}}
QUICK = {"sizes": (2_000, 20_000), "rounds": {2_000: 3, 20_000: 2}}
CONCURRENCIES = (1, 8, 64, 256)
REFERENCE_CONCURRENCIES = (1, 8, 64)
REFERENCE_ROUNDS = 3


# --------------------------------------------------------------------------------------------
# The contenders (run inside the worker process)
# --------------------------------------------------------------------------------------------


Items = list[dict[str, Any]]
#: An open contender: sends a list of items, returns how many creates were confirmed.
Sender = Callable[[Items], Awaitable[int]]


def _body(item: dict[str, Any]) -> bytes:
    return json.dumps({"data": {"contact": item}}).encode()


def _id_of(payload: bytes) -> int:
    contact_id: int = json.loads(payload)["data"]["contact"]["id"]
    return contact_id


@contextlib.asynccontextmanager
async def open_qomon(url: str, concurrency: int, *, rate_limit: bool) -> AsyncIterator[Sender]:
    """A ``QomonClient`` (default settings but ``rate_limit``), its bulk pool as the sender."""
    from qomon_async import QomonClient  # noqa: PLC0415
    from qomon_async._config import DEFAULT_MAX_CONNECTIONS  # noqa: PLC0415

    connections = max(DEFAULT_MAX_CONNECTIONS, concurrency)
    if rate_limit:  # the default: nothing said about it
        client = QomonClient(API_KEY, base_url=url, max_connections=connections)
    else:
        client = QomonClient(API_KEY, base_url=url, max_connections=connections, rate_limit=False)

    async def send(items: Items) -> int:
        done = 0
        async for result in client.create_contacts(items, concurrency=concurrency):
            if not result.ok or result.contact is None or result.contact.id is None:
                raise RuntimeError(f"create failed: {result}")
            done += 1
        return done

    async with client:
        yield send


@contextlib.asynccontextmanager
async def open_aiohttp(url: str, concurrency: int) -> AsyncIterator[Sender]:
    """``concurrency`` tasks on one ClientSession, each sending the next item."""
    import aiohttp  # noqa: PLC0415

    headers = request_headers()
    endpoint = url + "/contacts"

    async def send(items: Items) -> int:
        done = 0

        async def work(source: Iterator[dict[str, Any]]) -> None:
            nonlocal done
            for item in source:
                async with session.post(endpoint, data=_body(item), headers=headers) as r:
                    payload = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"status {r.status}")
                _id_of(payload)
                done += 1

        source = iter(items)
        await asyncio.gather(*(work(source) for _ in range(concurrency)))
        return done

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield send


@contextlib.asynccontextmanager
async def open_httpx(url: str, concurrency: int) -> AsyncIterator[Sender]:
    """``concurrency`` tasks on one AsyncClient whose pool holds ``concurrency`` connections."""
    import httpx  # noqa: PLC0415

    headers = request_headers()
    endpoint = url + "/contacts"

    async def send(items: Items) -> int:
        done = 0

        async def work(source: Iterator[dict[str, Any]]) -> None:
            nonlocal done
            for item in source:
                r = await client.post(endpoint, content=_body(item), headers=headers)
                if r.status_code != 200:
                    raise RuntimeError(f"status {r.status_code}")
                _id_of(r.content)
                done += 1

        source = iter(items)
        await asyncio.gather(*(work(source) for _ in range(concurrency)))
        return done

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        yield send


def opener(
    contender: str, url: str, concurrency: int
) -> contextlib.AbstractAsyncContextManager[Sender]:
    """The async contender ``contender``, opened on ``url`` for ``concurrency``."""
    if contender == "default":
        return open_qomon(url, concurrency, rate_limit=True)
    if contender == "no_limit":
        return open_qomon(url, concurrency, rate_limit=False)
    if contender == "aiohttp":
        return open_aiohttp(url, concurrency)
    if contender == "httpx":
        return open_httpx(url, concurrency)
    raise ValueError(f"unknown async contender {contender!r}")


def run_requests(url: str, items: Items, concurrency: int) -> int:
    """A whole job with requests: c=1 a sequential loop on one Session; c>1 c threads, one
    Session each, pulling from a shared iterator."""
    import requests  # noqa: PLC0415

    headers = request_headers()
    lock = threading.Lock()
    source: Iterator[dict[str, Any]] = iter(items)
    counts = [0] * concurrency
    sessions = [requests.Session() for _ in range(concurrency)]

    def work(slot: int) -> None:
        session = sessions[slot]
        while True:
            with lock:
                item = next(source, None)
            if item is None:
                return
            r = session.post(url + "/contacts", data=_body(item), headers=headers, timeout=30)
            if r.status_code != 200:
                raise RuntimeError(f"status {r.status_code}")
            _id_of(r.content)
            counts[slot] += 1

    if concurrency == 1:
        work(0)  # plainly sequential, as the public integrations do
    else:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for session in sessions:
        session.close()
    return sum(counts)


class _ServerClock:
    """CPU seconds of the server process (by pid), read from /proc through psutil."""

    def __init__(self, pid: int | None) -> None:
        self.process: Any = None
        if pid:
            import psutil  # noqa: PLC0415

            self.process = psutil.Process(pid)

    def read(self) -> float:
        if self.process is None:
            return float("nan")
        times = self.process.cpu_times()
        return float(times.user + times.system)


def _count_iterations(loop: asyncio.AbstractEventLoop) -> list[int]:
    """Count the loop's iterations from now on (``BaseEventLoop._run_once`` calls): a task that
    waits one iteration for a lock or a future shows here. Costs well under 1 µs each."""
    counter = [0]
    run_once = loop._run_once  # type: ignore[attr-defined]

    def counting() -> None:
        counter[0] += 1
        run_once()

    loop._run_once = counting  # type: ignore[attr-defined]
    return counter


def measure_job(
    contender: str, url: str, items: Items, warm: Items, concurrency: int, server_pid: int | None
) -> dict[str, float]:
    """Warm up on a throwaway client, then time one whole job on a fresh one (see module doc)."""
    server_clock = _ServerClock(server_pid)
    if contender == "requests":
        run_requests(url, warm, concurrency)
    else:

        async def warm_up() -> None:
            async with opener(contender, url, concurrency) as send:
                await send(warm)

        asyncio.run(warm_up())
    gc.collect()
    gc.freeze()  # the input list and the imported modules: out of the collector's sight
    result: dict[str, float] = {}

    def start() -> None:
        result["server_cpu0"] = server_clock.read()
        result["queued0"] = run_queue_wait()
        result["wall0"], result["cpu0"] = time.perf_counter(), time.process_time()

    def stop(done: int) -> None:
        cpu1, wall1 = time.process_time(), time.perf_counter()
        result.update(
            done=done,
            cpu=cpu1 - result.pop("cpu0"),
            wall=wall1 - result.pop("wall0"),
            server_cpu=server_clock.read() - result.pop("server_cpu0"),
            queued=run_queue_wait() - result.pop("queued0"),
        )

    if contender == "requests":
        start()
        stop(run_requests(url, items, concurrency))
    else:

        async def timed() -> None:
            loop = asyncio.get_running_loop()
            iterations = _count_iterations(loop)
            start()
            async with opener(contender, url, concurrency) as send:
                done = await send(items)
            stop(done)
            result["loop_iterations"] = iterations[0]

        asyncio.run(timed())
    if result["done"] != len(items):
        raise RuntimeError(f"{contender}: {result['done']} creates of {len(items)}")
    return result


def worker(params: dict[str, Any]) -> dict[str, Any]:
    """One timed job: ``contender``, ``concurrency``, ``n`` creates after ``warmup``."""
    n, warmup, tag = params["n"], params["warmup"], params["tag"]
    warm = [make_contact(i, tag + "w") for i in range(warmup)]
    items = [make_contact(i, tag) for i in range(n)]
    return measure_job(
        params["contender"],
        params["url"],
        items,
        warm,
        params["concurrency"],
        params.get("server_pid"),
    )


# --------------------------------------------------------------------------------------------
# The benchmark (parent process)
# --------------------------------------------------------------------------------------------


def plan(settings: Settings) -> list[dict[str, Any]]:
    """Every measurement, in run order: per (n, c) block, rounds of alternating contenders."""
    matrix = QUICK if settings.quick else FULL
    sizes: tuple[int, ...] = matrix["sizes"]  # type: ignore[assignment]
    rounds: dict[int, int] = matrix["rounds"]  # type: ignore[assignment]
    jobs = []
    for n in sizes:
        for concurrency in CONCURRENCIES:
            with_references = (
                not settings.quick and n == sizes[0] and concurrency in REFERENCE_CONCURRENCIES
            )
            for repeat in range(rounds[n]):
                contenders = list(MAIN)
                if with_references and repeat < REFERENCE_ROUNDS:
                    contenders += REFERENCES
                shift = repeat % len(contenders)
                for contender in contenders[shift:] + contenders[:shift]:
                    count = max(int(n * SHARE.get(contender, 1.0)), 50)
                    jobs.append(
                        {
                            "contender": contender,
                            "concurrency": concurrency,
                            "size": n,
                            "n": count,
                            "repeat": repeat,
                            "warmup": max(200, 2 * concurrency),
                        }
                    )
    return jobs


def run(settings: Settings) -> dict[str, Any]:
    jobs = plan(settings)
    runs: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    started = time.perf_counter()
    with server("tiny") as srv:
        for number, job in enumerate(jobs, 1):
            answer = run_worker_retrying(
                "bench_client_cost",
                {
                    **job,
                    "url": srv.url,
                    "server_pid": srv.pid,
                    "tag": f"r{job['repeat']}{job['contender']}{job['concurrency']}n{job['n']}-",
                },
                failures,
                timeout=3600,
            )
            runs.append({**job, **answer})
            if (
                number == len(jobs)
                or jobs[number]["size"] != job["size"]
                or (jobs[number]["concurrency"] != job["concurrency"])
            ):
                log(
                    f"{NAME}: n={job['size']:,} c={job['concurrency']} done "
                    f"({number}/{len(jobs)} jobs, {time.perf_counter() - started:.0f} s)"
                )
    summary = summarize(runs)
    matrix = QUICK if settings.quick else FULL
    payload = {
        "title": TITLE,
        "parameters": {
            "sizes": list(matrix["sizes"]),  # type: ignore[call-overload]
            "concurrencies": list(CONCURRENCIES),
            "rounds": {str(k): v for k, v in matrix["rounds"].items()},  # type: ignore[attr-defined]
            "references": {
                "contenders": list(REFERENCES) if not settings.quick else [],
                "size": matrix["sizes"][0],  # type: ignore[index]
                "concurrencies": list(REFERENCE_CONCURRENCIES),
                "rounds": REFERENCE_ROUNDS,
                "httpx_share": SHARE["httpx"],
            },
            "warmup": "max(200, 2 x c) creates on a throwaway client",
            "server_bucket": "burst:1000000;rate:1000000.0",
            "targets": TARGETS,
        },
        "summary": summary,
        "runs": runs,
        "failures": failures,
    }
    write_json(settings, NAME, payload)
    return payload


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per (contender, c, n); ratios to raw aiohttp at the same (c, n)."""
    keys = sorted({(r["size"], r["concurrency"]) for r in runs})
    summary = []
    for size, concurrency in keys:
        block = [r for r in runs if r["size"] == size and r["concurrency"] == concurrency]
        floor_runs = {r["repeat"]: r for r in block if r["contender"] == "aiohttp"}
        rows = {}
        for contender in CONTENDERS:
            mine = [r for r in block if r["contender"] == contender]
            if not mine:
                continue
            cpu_us = [r["cpu"] / r["done"] * 1e6 for r in mine]
            rps = [r["done"] / r["wall"] for r in mine]
            paired = [
                ratio(r["cpu"] / r["done"], f["cpu"] / f["done"])
                for r in mine
                if (f := floor_runs.get(r["repeat"])) is not None
            ]
            rows[contender] = {
                "contender": contender,
                "size": size,
                "concurrency": concurrency,
                "requests": mine[0]["done"],
                "cpu_us_per_create": median(cpu_us),
                "cpu_spread": spread(cpu_us),
                "creates_per_s": median(rps),
                "server_cpu_us_per_req": median([r["server_cpu"] / r["done"] * 1e6 for r in mine]),
                "server_busy": median([r["server_cpu"] / r["wall"] for r in mine]),
                "client_busy": median([r["cpu"] / r["wall"] for r in mine]),
                "client_starved": median([r["queued"] / r["wall"] for r in mine]),
                "loop_iterations_per_create": median(
                    [r.get("loop_iterations", float("nan")) / r["done"] for r in mine]
                ),
                "paired_cpu_ratio": median(paired),
                "runs": len(mine),
            }
        base = rows["aiohttp"]
        for row in rows.values():
            row["cpu_vs_aiohttp"] = ratio(row["cpu_us_per_create"], base["cpu_us_per_create"])
            row["rps_vs_aiohttp"] = ratio(row["creates_per_s"], base["creates_per_s"])
            summary.append(row)
    return summary


CAVEATS = [
    "Server: a dedicated process on a bare asyncio.Protocol (no HTTP framework) answering "
    "the seed create answer with a new id, CreatedAt now, and the four X-Ratelimit-* headers "
    "of a real token bucket (burst 1,000,000, 1,000,000 tokens/s: the limiter re-syncs on "
    "every answer and "
    "never waits). 'server busy' is its CPU over the job's wall time: well below 100%, it is "
    "not the bottleneck. Client and server share the machine's 2 cores (with whatever else "
    "runs): creates/s depends on both; CPU µs per create (client process only) is the measure.",
    "The timed job is what a user's job costs: a fresh client opened (connections made, "
    "for the default client its slow start: one request until the first answer), the n "
    "creates, the client closed. Before it, a warm-up job on a throwaway client runs every "
    "code path once; the input list is built before timing and frozen out of the garbage "
    "collector's sight (gc.freeze), as a streamed input would be.",
    "qomon_async does more per create than raw aiohttp: it validates each input dict against "
    "its write model, de-duplicates inputs (dedupe=True, the default), runs each request under "
    "its retry policy (and, by default, its rate limiter), decodes the whole answer into a "
    "typed Contact, and yields one CreateResult per item. The floor json.dumps the body, "
    "json.loads the answer and reads data.contact.id.",
    "References (full mode only, at the smallest n and c <= 64, where they fit the time "
    "budget): httpx with `Limits(max_connections=c, max_keepalive_connections=c)`, sending a "
    "quarter as many requests (its per-request cost at c=64 is its pool's bookkeeping: "
    "encode/httpx#3215, encode/httpcore#1035); requests as a sequential loop at c=1 and c "
    "threads with a Session each above. At c=256 both would take minutes per run.",
    "Time and instructions disagree: counted by callgrind (see 'Instructions per create'), "
    "the client executes fewer instructions per create than raw aiohttp (it decodes with "
    "msgspec where raw aiohttp runs json.loads), yet spends as much or more CPU time. The "
    "kind of work differs: the client interprets 1.2x to 1.4x raw aiohttp's Python bytecodes "
    "per create (its checks, bookkeeping and models), and the interpreter runs fewer "
    "instructions per cycle than the C parsers it saves. valgrind's cache simulation "
    "(cachegrind, c=64, rate_limit=False) shows it: 0.89x the instructions, but 1.14x the "
    "first-level instruction-cache misses and 1.06x the data-cache misses per create. These "
    "runs also vary by 20% "
    "or more from one to the next on this shared machine (see 'spread').",
]


def _cell(rows: dict[str, dict[str, Any]], contender: str) -> str:
    row = rows.get(contender)
    if row is None:
        return "—"
    mark = "" if row["cpu_vs_aiohttp"] <= TARGETS[contender] else " ✗"
    return f"{row['cpu_vs_aiohttp']:.2f}x{mark}"


def summary_table(document: dict[str, Any]) -> str:
    """c by n: the default client's and rate_limit=False's CPU per create over raw aiohttp."""
    summary = document["summary"]
    params = document["parameters"]
    by = {(s["contender"], s["size"], s["concurrency"]): s for s in summary}
    sizes = params["sizes"]
    rows = []
    for concurrency in params["concurrencies"]:
        cells = [str(concurrency)]
        for size in sizes:
            mine = {
                contender: by[contender, size, concurrency]
                for contender in ("default", "no_limit")
                if (contender, size, concurrency) in by
            }
            cells.append(f"{_cell(mine, 'default')} / {_cell(mine, 'no_limit')}")
        rows.append(cells)
    headers = ["c", *(f"{size:,} creates: default / rate_limit=False" for size in sizes)]
    return markdown_table(headers, rows)


def headline(document: dict[str, Any]) -> str:
    summary = document["summary"]
    parts = []
    for contender in ("default", "no_limit"):
        ratios = [s["cpu_vs_aiohttp"] for s in summary if s["contender"] == contender]
        met = sum(r <= TARGETS[contender] for r in ratios)
        parts.append(
            f"the {SHORT[contender]} client spends {min(ratios):.2f}x to {max(ratios):.2f}x "
            f"the client CPU of raw aiohttp per create (target {TARGETS[contender]:.2f}x: "
            f"met in {met} of {len(ratios)} cells)"
        )
    busy = max(s["server_busy"] for s in summary)
    return (
        f"{parts[0][0].upper()}{parts[0][1:]}; {parts[1]}. The server is at most {busy:.0%} busy."
    )


def render(document: dict[str, Any], out: Path) -> str:
    summary = document["summary"]
    params = document["parameters"]
    rows = []
    for s in summary:
        rows.append(
            [
                f"{s['size']:,}",
                str(s["concurrency"]),
                LABELS[s["contender"]],
                f"{s['cpu_vs_aiohttp']:.2f}x",
                fmt(s["cpu_us_per_create"]),
                f"±{s['cpu_spread'] * 100:.0f}%",
                fmt(s["creates_per_s"]),
                f"{s['client_busy'] * 100:.0f}%",
                f"{s['client_starved'] * 100:.0f}%",
                fmt(s.get("loop_iterations_per_create")),
                fmt(s["server_cpu_us_per_req"]),
                f"{s['server_busy'] * 100:.0f}%",
                str(s["runs"]),
            ]
        )
    detail = markdown_table(
        [
            "n",
            "c",
            "client",
            "CPU vs aiohttp",
            "client CPU µs/create",
            "spread",
            "creates/s",
            "client busy",
            "client starved",
            "loop iterations / create",
            "server CPU µs/req",
            "server busy",
            "runs",
        ],
        rows,
    )
    _plot(document, out / f"{NAME}.png")
    rounds = ", ".join(f"{int(k):,}: {v}" for k, v in params["rounds"].items())
    return "\n\n".join(
        [
            f"## {TITLE}",
            f"**{headline(document)}**",
            "CPU per create over raw aiohttp + json's at the same c and n (✗: above the target, "
            f"{TARGETS['default']:.2f}x for the default client, {TARGETS['no_limit']:.2f}x for "
            "rate_limit=False). Each job in its own process, contenders alternated, medians of "
            f"the rounds (n: rounds = {rounds}).",
            summary_table(document),
            "All figures (spread: half the inter-quartile range over the median; busy: CPU "
            "seconds over wall seconds of the job; starved: the share of the job's wall time the "
            "client's thread was ready to run but waited for a core, the machine's other load; "
            "loop iterations: event-loop iterations of the job per create):",
            detail,
            f"![{TITLE}]({NAME}.png)",
            "Caveats:\n\n" + "\n".join(f"- {c}" for c in [*CAVEATS, *failure_notes(document)]),
        ]
    )


def failure_notes(document: dict[str, Any]) -> list[str]:
    """One caveat per worker that failed and was run again (none in a clean run)."""
    return [
        f"A job failed and was run again in a fresh process: {f['params']}: {f['error']}"
        for f in document.get("failures", [])
    ]


def docs_summary(document: dict[str, Any]) -> str:
    """The docs site's summary: the c-by-n table of ratios, with the targets."""
    return (
        f"Client CPU per create over raw aiohttp's, default client / `rate_limit=False` "
        f"(targets {TARGETS['default']:.2f}x / {TARGETS['no_limit']:.2f}x; ✗: above):\n\n"
        + summary_table(document)
    )


def _plot(document: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    summary = document["summary"]
    params = document["parameters"]
    sizes = params["sizes"]
    concurrencies = params["concurrencies"]
    by = {(s["contender"], s["size"], s["concurrency"]): s for s in summary}
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.3 * len(sizes), 3.4), sharey=True)
    axes = list(axes) if len(sizes) > 1 else [axes]
    for ax, size in zip(axes, sizes, strict=True):
        xs = range(len(concurrencies))
        for contender, style in (("default", "-"), ("no_limit", "--")):
            values = [by[contender, size, c]["cpu_vs_aiohttp"] for c in concurrencies]
            ax.plot(
                xs,
                values,
                style,
                marker="o",
                ms=4,
                color=COLOURS_HERE[contender],
                label=SHORT[contender],
            )
            ax.axhline(TARGETS[contender], color=COLOURS_HERE[contender], lw=0.8, ls=":")
        ax.axhline(1.0, color=COLOURS_HERE["aiohttp"], lw=1, label="raw aiohttp (floor)")
        ax.set_xticks(list(xs), [f"c={c}" for c in concurrencies])
        ax.set_title(f"{size:,} creates")
    axes[0].set_ylabel("client CPU per create / raw aiohttp's")
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle(
        "Client CPU per create over raw aiohttp's (dotted: the targets 1.10x and 1.05x)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Profiling one job: python -m benchmarks.bench_client_cost --profile
# --------------------------------------------------------------------------------------------


def profile_main(argv: list[str]) -> None:
    """Profile one timed job with cProfile; print the top costs in µs per create.

    ``python -m benchmarks.bench_client_cost --profile [--contender default] [-c 64]
    [-n 20000] [--top 40] [--sort cumulative|tottime] [--dump FILE]`` starts its own tiny
    server, runs the warm-up, then the job under the profiler. It also prints the event-loop
    iterations per create (calls of ``BaseEventLoop._run_once``). cProfile slows every Python
    call down, so its µs are inflated; read them against each other and against the
    unprofiled CPU per create printed first.
    """
    import cProfile  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_client_cost --profile")
    parser.add_argument("--contender", default="default", choices=[*MAIN, "httpx"])
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    parser.add_argument("--dump", type=Path, default=None, help="write the raw pstats here")
    args = parser.parse_args(argv)
    warm = [make_contact(i, "pw") for i in range(max(200, 2 * args.concurrency))]
    items = [make_contact(i, "p") for i in range(args.n)]
    items2 = [make_contact(i, "q") for i in range(args.n)]
    with server("tiny") as srv:
        plain = measure_job(args.contender, srv.url, items2, warm, args.concurrency, srv.pid)
        print(
            f"{args.contender}, c={args.concurrency}, n={args.n:,}, unprofiled: "
            f"{plain['cpu'] / plain['done'] * 1e6:.0f} µs CPU per create, "
            f"{plain['done'] / plain['wall']:.0f} creates/s, server "
            f"{plain['server_cpu'] / plain['done'] * 1e6:.0f} µs per request"
        )

        async def job() -> None:
            async with opener(args.contender, srv.url, args.concurrency) as send:
                await send(items)

        profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
        cpu0 = time.process_time()
        profiler.enable()
        asyncio.run(job())
        profiler.disable()
        cpu = time.process_time() - cpu0
    stats = pstats.Stats(profiler)
    if args.dump:
        stats.dump_stats(args.dump)
    print(f"profiled: {cpu / args.n * 1e6:.0f} µs CPU per create")
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    iterations = sum(
        v[1] for (file, _, func), v in raw.items() if func == "_run_once" and "asyncio" in file
    )
    print(f"event-loop iterations per create: {iterations / args.n:.2f}")
    key = 3 if args.sort == "cumulative" else 2
    ordered = sorted(raw.items(), key=lambda kv: kv[1][key], reverse=True)
    print(
        f"{'cum µs/create':>13} {'share':>6} {'own µs/create':>13} {'calls/create':>12}  function"
    )
    for (file, line, func), (_cc, nc, tt, ct, _callers) in ordered[: args.top]:
        where = f"{Path(file).name}:{line}" if line else file
        print(
            f"{ct / args.n * 1e6:13.1f} {ct / cpu:6.1%} {tt / args.n * 1e6:13.1f} "
            f"{nc / args.n:12.2f}  {func} ({where})"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--profile":
        profile_main(sys.argv[2:])
    else:
        worker_main(worker)
