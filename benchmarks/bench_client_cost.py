"""Client cost: CPU microseconds and requests per second per create, against one fast server.

Every contender sends the same ``POST /contacts`` bodies (``{"data": {"contact": ...}}``, the
contacts of :func:`benchmarks._common.make_contact`) with the same headers to the same tiny
server process (``benchmarks._servers tiny``, Qomon's seed create response with a new id, no
bucket), reads each answer whole and takes the new id out of it. CPU is
``time.process_time()`` of the client process over the timed requests only (after a warm-up
that opens the connections); each (contender, concurrency) runs in its own process, contenders
alternate, medians of the repeats are reported.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from collections.abc import Iterator
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
    run_worker,
    server,
    spread,
    worker_main,
    write_json,
)

NAME = "client_cost"
TITLE = "Client cost per create"
CONTENDERS = ("qomon_async", "aiohttp", "httpx", "requests")
#: httpx is ~10x slower per request here: it sends a quarter of the requests to keep the suite
#: within its time budget (per-create figures are averages; the payloads are the same prefix).
SHARE = {"httpx": 0.25}
LABELS = {
    "qomon_async": "qomon_async pool",
    "aiohttp": "raw aiohttp + json (floor)",
    "httpx": "httpx.AsyncClient + json",
    "requests": "requests.Session (c=1 sequential; c>1 thread pool)",
}


# --------------------------------------------------------------------------------------------
# The contenders (run inside the worker process)
# --------------------------------------------------------------------------------------------


Batch = list[dict[str, Any]]


def _body(item: dict[str, Any]) -> bytes:
    return json.dumps({"data": {"contact": item}}).encode()


def _id_of(payload: bytes) -> int:
    contact_id: int = json.loads(payload)["data"]["contact"]["id"]
    return contact_id


class _Clock:
    """CPU (``process_time``, every thread of the process) and wall time of one batch."""

    def __enter__(self) -> _Clock:
        gc.collect()
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.wall = time.perf_counter() - self.wall0

    def record(self, done: int) -> dict[str, float]:
        return {"done": done, "cpu": self.cpu, "wall": self.wall}


async def run_qomon(url: str, batches: list[Batch], concurrency: int) -> list[dict[str, float]]:
    """Each batch through ``client.create_contacts`` on one client (connections kept)."""
    from qomon_async import QomonClient  # noqa: PLC0415

    out = []
    async with QomonClient(
        API_KEY, base_url=url, rate_limit=False, max_connections=max(64, concurrency)
    ) as client:
        for items in batches:
            done = 0
            with _Clock() as clock:
                async for result in client.create_contacts(items, concurrency=concurrency):
                    if not result.ok or result.contact is None or result.contact.id is None:
                        raise RuntimeError(f"create failed: {result}")
                    done += 1
            out.append(clock.record(done))
    return out


async def run_aiohttp(url: str, batches: list[Batch], concurrency: int) -> list[dict[str, float]]:
    """``concurrency`` tasks on one ClientSession, each sending the next item."""
    import aiohttp  # noqa: PLC0415

    headers = request_headers()
    done = 0

    async def work(session: aiohttp.ClientSession, source: Iterator[dict[str, Any]]) -> None:
        nonlocal done
        for item in source:
            async with session.post(url + "/contacts", data=_body(item), headers=headers) as r:
                payload = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"status {r.status}")
            _id_of(payload)
            done += 1

    out = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for items in batches:
            done = 0
            source = iter(items)
            with _Clock() as clock:
                await asyncio.gather(*(work(session, source) for _ in range(concurrency)))
            out.append(clock.record(done))
    return out


async def run_httpx(url: str, batches: list[Batch], concurrency: int) -> list[dict[str, float]]:
    """``concurrency`` tasks on one AsyncClient whose pool holds ``concurrency`` connections."""
    import httpx  # noqa: PLC0415

    headers = request_headers()
    done = 0

    async def work(client: httpx.AsyncClient, source: Iterator[dict[str, Any]]) -> None:
        nonlocal done
        for item in source:
            r = await client.post(url + "/contacts", content=_body(item), headers=headers)
            if r.status_code != 200:
                raise RuntimeError(f"status {r.status_code}")
            _id_of(r.content)
            done += 1

    out = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        for items in batches:
            done = 0
            source = iter(items)
            with _Clock() as clock:
                await asyncio.gather(*(work(client, source) for _ in range(concurrency)))
            out.append(clock.record(done))
    return out


def run_requests(url: str, batches: list[Batch], concurrency: int) -> list[dict[str, float]]:
    """c=1: a sequential loop on one Session; c>1: c threads, one Session each."""
    import requests  # noqa: PLC0415

    headers = request_headers()
    lock = threading.Lock()
    sessions = [requests.Session() for _ in range(concurrency)]
    out = []
    for items in batches:
        source: Iterator[dict[str, Any]] = iter(items)
        counts = [0] * concurrency

        def work(slot: int, source: Iterator[dict[str, Any]], counts: list[int]) -> None:
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

        with _Clock() as clock:
            if concurrency == 1:
                work(0, source, counts)  # plainly sequential, as the public integrations do
            else:
                threads = [
                    threading.Thread(target=work, args=(i, source, counts))
                    for i in range(concurrency)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
        out.append(clock.record(sum(counts)))
    for session in sessions:
        session.close()
    return out


_ASYNC = {"qomon_async": run_qomon, "aiohttp": run_aiohttp, "httpx": run_httpx}


def run_contender(
    contender: str, url: str, batches: list[Batch], concurrency: int
) -> list[dict[str, float]]:
    """Send the batches one after the other on one client; a timing per batch."""
    if contender == "requests":
        return run_requests(url, batches, concurrency)
    return asyncio.run(_ASYNC[contender](url, batches, concurrency))


def worker(params: dict[str, Any]) -> dict[str, Any]:
    """One timed run: ``contender``, ``concurrency``, ``n`` requests after ``warmup``."""
    n, warmup, tag = params["n"], params["warmup"], params["tag"]
    warm = [make_contact(i, tag + "w") for i in range(warmup)]
    items = [make_contact(i, tag) for i in range(n)]
    timings = run_contender(
        params["contender"], params["url"], [warm, items], params["concurrency"]
    )
    return timings[-1]


# --------------------------------------------------------------------------------------------
# The benchmark (parent process)
# --------------------------------------------------------------------------------------------


def run(settings: Settings) -> dict[str, Any]:
    concurrencies = (1, 8, 64)
    repeats = 2 if settings.quick else 4
    n = 300 if settings.quick else 1500
    warmup = 100 if settings.quick else 200
    configs = [(c, k) for k in concurrencies for c in CONTENDERS]
    runs: list[dict[str, Any]] = []
    with server("tiny") as srv:
        for repeat in range(repeats):
            # Alternate: every contender once per round, the order rotated each round.
            shift = repeat % len(configs)
            for contender, concurrency in configs[shift:] + configs[:shift]:
                count = max(int(n * SHARE.get(contender, 1.0)), 50)
                server_cpu0 = srv.cpu_seconds()
                answer = run_worker(
                    "bench_client_cost",
                    {
                        "contender": contender,
                        "concurrency": concurrency,
                        "n": count,
                        "warmup": warmup,
                        "url": srv.url,
                        "tag": f"r{repeat}{contender}{concurrency}-",
                    },
                )
                server_cpu = srv.cpu_seconds() - server_cpu0
                answer.update(
                    contender=contender,
                    concurrency=concurrency,
                    repeat=repeat,
                    server_cpu_us_per_req=server_cpu / (count + warmup) * 1e6,
                )
                runs.append(answer)
            log(f"{NAME}: round {repeat + 1}/{repeats} done")
    summary: list[dict[str, Any]] = []
    for concurrency in concurrencies:
        for contender in CONTENDERS:
            mine = [
                r for r in runs if r["contender"] == contender and r["concurrency"] == concurrency
            ]
            cpu_us = [r["cpu"] / r["done"] * 1e6 for r in mine]
            rps = [r["done"] / r["wall"] for r in mine]
            summary.append(
                {
                    "contender": contender,
                    "concurrency": concurrency,
                    "cpu_us_per_create": median(cpu_us),
                    "cpu_spread": spread(cpu_us),
                    "creates_per_s": median(rps),
                    "rps_spread": spread(rps),
                    "server_cpu_us_per_req": median([r["server_cpu_us_per_req"] for r in mine]),
                    "runs": len(mine),
                }
            )
    floor = {s["concurrency"]: s for s in summary if s["contender"] == "aiohttp"}
    for s in summary:
        base = floor[s["concurrency"]]
        s["cpu_vs_aiohttp"] = ratio(s["cpu_us_per_create"], base["cpu_us_per_create"])
        s["rps_vs_aiohttp"] = ratio(s["creates_per_s"], base["creates_per_s"])
    payload = {
        "title": TITLE,
        "parameters": {
            "concurrencies": concurrencies,
            "repeats": repeats,
            "requests_per_run": n,
            "httpx_share": SHARE["httpx"],
            "warmup_requests": warmup,
        },
        "summary": summary,
        "runs": runs,
    }
    write_json(settings, NAME, payload)
    return payload


CAVEATS = [
    "Server: a dedicated minimal aiohttp process answering the seed create response with a new "
    "id (no bucket, no validation, no store); it shares the 2 cores with the client, so "
    "creates/s is bounded by both and CPU µs (client process only) is the cleaner measure.",
    "qomon_async does more per create than the others: it validates each input dict against "
    "its write model (msgspec.convert), de-duplicates inputs (dedupe=True, the default), runs "
    "each request through its retry policy, decodes the whole answer into a typed Contact, and "
    "yields one CreateResult per item. The others json.dumps the body, json.loads the answer "
    "and read data.contact.id. `rate_limit=False`, `max_connections=max(64, c)`.",
    "httpx: `Limits(max_connections=c, max_keepalive_connections=c)`; body passed as bytes "
    "(`content=`), the same bytes as aiohttp's. It sends a quarter as many requests per run "
    "as the others (it is much slower per request here), so its run is as long as theirs.",
    "httpx's cost at c=64 is its connection pool's bookkeeping: httpcore's "
    "`_assign_requests_to_connections` rescans the pool and the queue on every request "
    "(known upstream: encode/httpx#3215, encode/httpcore#1035).",
    "requests: c=1 is a plain sequential loop on one Session; c=8 and c=64 are a pool of c "
    "threads, each with its own Session, pulling from a shared iterator (CPU time counts all "
    "threads).",
    "Each process first sends the warm-up creates, then the timed ones on the same client "
    "(connections already open): the steady state of a long job.",
]


def render(document: dict[str, Any], out: Path) -> str:
    summary = document["summary"]
    params = document["parameters"]
    rows = []
    for s in summary:
        rows.append(
            [
                LABELS[s["contender"]] if s["concurrency"] == 1 else s["contender"],
                str(s["concurrency"]),
                f"{s['cpu_vs_aiohttp']:.2f}x",
                fmt(s["cpu_us_per_create"]),
                f"±{s['cpu_spread'] * 100:.0f}%",
                f"{s['rps_vs_aiohttp']:.2f}x",
                fmt(s["creates_per_s"]),
                fmt(s["server_cpu_us_per_req"]),
            ]
        )
    table = markdown_table(
        [
            "client",
            "c",
            "CPU vs aiohttp",
            "client CPU µs/create",
            "spread",
            "creates/s vs aiohttp",
            "creates/s",
            "server CPU µs/req",
        ],
        rows,
    )
    _plot(summary, params, out / f"{NAME}.png")
    qomon = {s["concurrency"]: s for s in summary if s["contender"] == "qomon_async"}
    seq = next(s for s in summary if s["contender"] == "requests" and s["concurrency"] == 1)
    best = max(qomon.values(), key=lambda s: s["creates_per_s"])
    order = sorted(qomon)
    cpu_ratios = ", ".join(f"{qomon[c]['cpu_vs_aiohttp']:.2f}x" for c in order)
    speedup = ratio(best["creates_per_s"], seq["creates_per_s"])
    headline = (
        f"qomon_async spends {cpu_ratios} the client CPU of raw aiohttp per create at "
        f"c = {', '.join(str(c) for c in order)}; its pool at c={best['concurrency']} does "
        f"{speedup:.1f}x the creates/s of sequential requests."
    )
    return "\n\n".join(
        [
            f"## {TITLE}",
            f"**{headline}**",
            f"Medians of {params['repeats']} runs of {params['requests_per_run']} creates "
            f"(after {params['warmup_requests']} warm-up creates), each run in its own process, "
            "contenders alternated. Spread: half the inter-quartile range over the median.",
            table,
            f"![{TITLE}]({NAME}.png)",
            "Caveats:\n\n" + "\n".join(f"- {c}" for c in CAVEATS),
        ]
    )


def _plot(summary: list[dict[str, Any]], params: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    concurrencies = list(params["concurrencies"])
    by = {(s["contender"], s["concurrency"]): s for s in summary}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    width = 0.2
    for i, contender in enumerate(CONTENDERS):
        rows = [by[contender, c] for c in concurrencies]
        xs = [j + (i - 1.5) * width for j in range(len(concurrencies))]
        colour = COLOURS[contender]
        bars = axes[0].bar(
            xs, [r["cpu_us_per_create"] for r in rows], width, label=contender, color=colour
        )
        axes[0].bar_label(
            bars, labels=[f"{r['cpu_vs_aiohttp']:.1f}x" for r in rows], fontsize=7, padding=2
        )
        axes[1].bar(xs, [r["creates_per_s"] for r in rows], width, label=contender, color=colour)
    titles = ("client CPU µs per create (lower is better)", "creates/s (higher is better)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xticks(range(len(concurrencies)), [f"c={c}" for c in concurrencies])
        ax.set_title(title)
        ax.grid(axis="x", visible=False)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("µs, log scale (labels: x raw aiohttp)")
    axes[1].set_ylabel("creates / s")
    axes[0].legend(frameon=False, fontsize=8, loc="upper left")
    fig.suptitle("Client cost against a minimal local create server (medians)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    worker_main(worker)
