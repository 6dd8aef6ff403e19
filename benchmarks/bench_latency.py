"""Latency hiding: creates/s against concurrency, beside Little's law (concurrency / latency).

The tiny create server of the client-cost benchmark in its own process, answering every create
after a fixed delay (``--latency``, a timer: it spends no CPU waiting) with the ``X-Ratelimit-*``
headers of a huge bucket, so that the default client's limiter does its per-answer work and
never waits. The default client (limiter on), the same with ``rate_limit=False`` and the raw
aiohttp floor run the same sweep of concurrencies, up to 256. At low c every client reaches
the bound; at high c the bound asks for thousands of creates/s and the client's CPU per create
decides how close it gets: the ratio to raw aiohttp's creates/s is the measure there.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    COLOURS,
    MALLOC_ENV,
    Settings,
    fmt,
    log,
    make_contact,
    markdown_table,
    median,
    pyplot,
    ratio,
    run_queue_wait,
    run_worker_retrying,
    server,
    spread,
    worker_main,
    write_json,
)
from benchmarks.bench_client_cost import failure_notes, opener

NAME = "latency"
TITLE = "Latency hiding"
CLIENTS = ("default", "no_limit", "aiohttp")
LABELS = {
    "default": "qomon_async, default (limiter on)",
    "no_limit": "qomon_async, rate_limit=False",
    "aiohttp": "raw aiohttp",
}
COLOURS_HERE = {
    "default": COLOURS["qomon_async"],
    "no_limit": "#17becf",
    "aiohttp": COLOURS["aiohttp"],
}
#: The issue's target: the default client's creates/s over raw aiohttp's, at these c.
TARGET = 0.95
TARGET_CONCURRENCIES = (128, 256)
TARGET_LATENCY = 0.05


#: At the target points (where the client's CPU sets the pace) each worker does this many
#: times more creates: a point of seconds, not a second and a half.
TARGET_STRETCH = 4


def _count(concurrency: int, per_worker: int, minimum: int, stretch: bool = False) -> int:
    if stretch and concurrency in TARGET_CONCURRENCIES:
        per_worker *= TARGET_STRETCH
    return max(minimum, per_worker * concurrency)


async def _sweep(params: dict[str, Any]) -> list[dict[str, Any]]:
    points = []
    for concurrency in params["concurrencies"]:
        n = _count(concurrency, params["per_worker"], params["minimum"], params["stretch"])
        tag = f"{params['tag']}c{concurrency}-"
        warm = [make_contact(i, tag + "w") for i in range(max(concurrency, 8))]
        items = [make_contact(i, tag) for i in range(n)]
        # One client per point: the warm-up opens its connections (and ends the default
        # client's slow start), then the timed creates run on it: the steady state.
        async with opener(params["client"], params["url"], concurrency) as send:
            await send(warm)
            queued0 = run_queue_wait()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            done = await send(items)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            queued = run_queue_wait() - queued0
        if done != n:
            raise RuntimeError(f"{params['client']}: {done} creates of {n}")
        points.append(
            {"concurrency": concurrency, "done": done, "wall": wall, "cpu": cpu, "queued": queued}
        )
    return points


def worker(params: dict[str, Any]) -> dict[str, Any]:
    """One sweep over the concurrencies for one client; a fresh client per concurrency."""
    return {"points": asyncio.run(_sweep(params))}


def run(settings: Settings) -> dict[str, Any]:
    latencies: tuple[float, ...]
    concurrencies: tuple[int, ...]
    if settings.quick:
        latencies, concurrencies = (0.05,), (1, 8, 64, 128, 256)
        repeats, per_worker, minimum = {0.05: 2}, 10, 20
    else:
        latencies, concurrencies = (0.05, 0.2), (1, 2, 4, 8, 16, 32, 64, 128, 256)
        # More sweeps at the target's latency: its ratio is a median over them.
        repeats, per_worker, minimum = {0.05: 5, 0.2: 3}, 20, 40
    runs = []
    failures: list[dict[str, Any]] = []
    for latency in latencies:
        with server("tiny", latency=latency) as srv:
            for repeat in range(repeats[latency]):
                shift = repeat % len(CLIENTS)
                for client in CLIENTS[shift:] + CLIENTS[:shift]:
                    answer = run_worker_retrying(
                        "bench_latency",
                        {
                            "client": client,
                            "url": srv.url,
                            "concurrencies": concurrencies,
                            "per_worker": per_worker if latency < 0.1 else per_worker // 2,
                            "minimum": minimum,
                            "stretch": latency == TARGET_LATENCY and not settings.quick,
                            "tag": f"l{latency}r{repeat}{client}",
                        },
                        failures,
                        env=MALLOC_ENV,
                    )
                    for point in answer["points"]:
                        runs.append(
                            {"client": client, "latency": latency, "repeat": repeat, **point}
                        )
                log(f"{NAME}: latency {latency:g} s, round {repeat + 1}/{repeats[latency]} done")
    summary = []
    for latency in latencies:
        for client in CLIENTS:
            for concurrency in concurrencies:
                mine = [
                    r
                    for r in runs
                    if r["client"] == client
                    and r["latency"] == latency
                    and r["concurrency"] == concurrency
                ]
                throughput = median([r["done"] / r["wall"] for r in mine])
                bound = concurrency / latency
                summary.append(
                    {
                        "client": client,
                        "latency": latency,
                        "concurrency": concurrency,
                        "creates_per_s": throughput,
                        "littles_bound": bound,
                        "of_bound": ratio(throughput, bound),
                        "client_busy": median([r["cpu"] / r["wall"] for r in mine]),
                        "client_starved": median([r["queued"] / r["wall"] for r in mine]),
                        "cpu_us_per_create": median([r["cpu"] / r["done"] * 1e6 for r in mine]),
                        "requests": mine[0]["done"],
                        "runs": len(mine),
                    }
                )
    # The ratio to raw aiohttp is taken within each sweep round (its clients ran one after the
    # other, minutes apart at most), then the median over the rounds: a machine whose pace
    # changes between rounds moves both sides of a round's ratio.
    rate = {
        (r["client"], r["latency"], r["concurrency"], r["repeat"]): r["done"] / r["wall"]
        for r in runs
    }
    for s in summary:
        ratios = [
            ratio(value, rate[floor_key])
            for (client, latency, concurrency, repeat), value in rate.items()
            if (client, latency, concurrency) == (s["client"], s["latency"], s["concurrency"])
            and (floor_key := ("aiohttp", latency, concurrency, repeat)) in rate
        ]
        s["vs_aiohttp"] = median(ratios)
        s["vs_aiohttp_spread"] = spread(ratios)
    payload = {
        "title": TITLE,
        "parameters": {
            "latencies_s": latencies,
            "concurrencies": concurrencies,
            "repeats": [repeats[latency] for latency in latencies],
            "requests_per_point": f"max({minimum}, {per_worker} x concurrency) at 50 ms"
            + (
                f" ({TARGET_STRETCH * per_worker} x at c = 128 and 256)"
                if not settings.quick
                else ""
            )
            + (
                f", max({minimum}, {per_worker // 2} x concurrency) at 200 ms"
                if 0.2 in latencies
                else ""
            ),
            "target": {"default_vs_aiohttp": TARGET, "at_concurrencies": TARGET_CONCURRENCIES},
            "malloc": MALLOC_ENV,
        },
        "summary": summary,
        "runs": runs,
        "failures": failures,
    }
    write_json(settings, NAME, payload)
    return payload


CAVEATS = [
    "The bound is Little's law with the server's added latency alone (c / L); each request "
    "also spends the round trip and both sides' CPU, so 100% is out of reach. At c = 128 and "
    "256 with 50 ms the bound (2,560 and 5,120 creates/s) asks more than one core can do for "
    "any of the clients: there the client's CPU per create sets the pace, and 'client busy' "
    "(its CPU seconds over wall seconds) shows it near a whole core.",
    "The server is the tiny create server (a bare asyncio.Protocol, tens of µs per request) "
    "with a timer per answer; it advertises a huge bucket (burst:1000000;rate:1000000.0), so "
    "the default client's limiter re-syncs on every answer and never waits.",
    "qomon_async runs with `max_connections=max(64, c)` (the default pool holds 64 "
    "connections, which would cap c = 128 and 256 at 64 requests in flight). Each point is a "
    "fresh client: a warm-up of c creates opens its connections (and ends the default "
    "client's slow start), then the timed creates run on it.",
    "Every worker runs with glibc's malloc thresholds fixed (MALLOC_MMAP_THRESHOLD_=524288, "
    "MALLOC_TRIM_THRESHOLD_=1048576), as in the client-cost benchmark: left to glibc, "
    "asyncio's 256 KiB read buffer cost a process 0 to 2 minor page faults per answer "
    "depending on its allocation history, not on its code. The runs before 53c94b9 had "
    "that lottery in them.",
    "Where the client's CPU sets the pace (c = 128 and 256 at 50 ms) a point of 20 creates "
    "per worker lasts about 1.5 s, in which a burst of the machine's other load or of garbage "
    "collection moves the ratio a lot (two full runs of one commit once gave 0.65x and 0.92x "
    "for the default client at c = 256). So those points run 4 times the creates, the 50 ms "
    "sweep has 5 rounds, and the ratio is the median of each round's ratio. Even so the "
    "client-cost benchmark (contenders taking turns over 100,000 creates) is the steadier "
    "measure of the same CPU: at c = 256 the creates/s ratio is about the inverse of the CPU "
    "ratio there.",
    "At c = 256 with 50 ms the garbage collector runs about twice as many young collections "
    "for the client as for raw aiohttp (119 to 238 against 60 to 77 per 20,480 creates, "
    "gc.callbacks, a fresh process per run), and their time per create differs from run to "
    "run (10 to 21 µs against 8 to 10). It is not what an item in flight keeps alive (about "
    "75 tracked objects per item for the client, 80 for raw aiohttp) but what each result "
    "carries to the loop that consumes it: the result and the decoded contact's lists, about "
    "7 objects the collector counts, freed together when the consumer takes a batch of "
    "results. CPython 3.11 does not count frees below zero since its last collection, so "
    "those frees are mostly lost to its count; more young collections promote more of the "
    "items in flight to the older generations and, in some runs, set off a full collection "
    "(about 30 ms each, over this benchmark's own 20,480 input dicts). With the collector off, the "
    "CPU per create of one client still moved by about ±12% from run to run: the point stays "
    "noisy.",
]


def render(document: dict[str, Any], out: Path) -> str:
    summary = document["summary"]
    params = document["parameters"]
    by = {(s["client"], s["latency"], s["concurrency"]): s for s in summary}
    rows = []
    for latency in params["latencies_s"]:
        for concurrency in params["concurrencies"]:
            cells = [f"{latency * 1000:.0f} ms", str(concurrency), fmt(concurrency / latency)]
            for client in CLIENTS:
                s = by[client, latency, concurrency]
                cells.append(
                    f"{fmt(s['creates_per_s'])} ({s['of_bound'] * 100:.0f}%, "
                    f"{s['client_busy'] * 100:.0f}% / {s['client_starved'] * 100:.0f}%)"
                )
            for client in ("default", "no_limit"):
                s = by[client, latency, concurrency]
                spread_ = s.get("vs_aiohttp_spread")
                cells.append(
                    f"{s['vs_aiohttp']:.2f}x"
                    + (f" ±{spread_ * 100:.0f}%" if spread_ is not None else "")
                )
            rows.append(cells)
    table = markdown_table(
        [
            "latency",
            "c",
            "bound c/L",
            *(f"{LABELS[c]}: creates/s (of bound, busy / starved)" for c in CLIENTS),
            "default / aiohttp",
            "rate_limit=False / aiohttp",
        ],
        rows,
    )
    _plot(summary, params, out / f"{NAME}.png")
    first = params["latencies_s"][0]
    checks = [by["default", first, c] for c in TARGET_CONCURRENCIES if ("default", first, c) in by]
    parts = ", ".join(
        f"{s['vs_aiohttp']:.2f}x at c={s['concurrency']} "
        f"({s['of_bound'] * 100:.0f}% of the bound; aiohttp "
        f"{by['aiohttp', first, s['concurrency']]['of_bound'] * 100:.0f}%)"
        for s in checks
    )
    met = all(s["vs_aiohttp"] >= TARGET for s in checks)
    headline = (
        f"With {first * 1000:.0f} ms of latency the default client does {parts} of raw "
        f"aiohttp's creates/s (target {TARGET:.2f}x: {'met' if met else 'not met'})."
    )
    return "\n\n".join(
        [
            f"## {TITLE}",
            f"**{headline}**",
            f"The tiny create server with a fixed answer delay; requests per point: "
            f"{params['requests_per_point']}; medians of {_sweeps(params)}, each "
            "in its own process, clients alternated; the ratios are the medians of each "
            "round's ratio (± half their inter-quartile range). Busy: the client's CPU seconds "
            "over the wall seconds; starved: the share of the wall time its thread was ready to "
            "run but waited for a core (the machine's other load).",
            table,
            f"![{TITLE}]({NAME}.png)",
            "Caveats:\n\n" + "\n".join(f"- {c}" for c in [*CAVEATS, *failure_notes(document)]),
        ]
    )


def _sweeps(params: dict[str, Any]) -> str:
    """How many sweeps each latency had (one count for all, in older results)."""
    repeats = params["repeats"]
    if isinstance(repeats, int):
        return f"{repeats} sweeps"
    return ", ".join(
        f"{count} sweeps at {latency * 1000:.0f} ms"
        for latency, count in zip(params["latencies_s"], repeats, strict=True)
    )


def docs_summary(document: dict[str, Any]) -> str:
    """The docs site's summary: creates/s at the target concurrencies, against the bound."""
    params = document["parameters"]
    by = {(s["client"], s["latency"], s["concurrency"]): s for s in document["summary"]}
    rows = []
    for latency in params["latencies_s"]:
        for concurrency in params["concurrencies"]:
            if concurrency < 64:
                continue
            row = [f"{latency * 1000:.0f} ms", str(concurrency), fmt(concurrency / latency)]
            row += [fmt(by[c, latency, concurrency]["creates_per_s"]) for c in CLIENTS]
            row.append(f"{by['default', latency, concurrency]['vs_aiohttp']:.2f}x")
            rows.append(row)
    headers = ["latency", "c", "bound c/L", "default creates/s", "rate_limit=False creates/s"]
    headers.append("raw aiohttp creates/s")
    return (
        f"Creates/s at high concurrency (target: the default client at least {TARGET:.2f}x "
        "of raw aiohttp's at c = 128 and 256):\n\n"
        + markdown_table([*headers, "default / aiohttp"], rows)
    )


def _plot(summary: list[dict[str, Any]], params: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    latencies = params["latencies_s"]
    concurrencies = params["concurrencies"]
    fig, axes = plt.subplots(
        1, len(latencies), figsize=(max(6.4, 4.6 * len(latencies)), 3.6), sharey=True, squeeze=False
    )
    for ax, latency in zip(axes[0], latencies, strict=True):
        ax.plot(
            concurrencies,
            [c / latency for c in concurrencies],
            color=COLOURS["ideal"],
            ls="--",
            label="Little's bound c / L",
        )
        for client in CLIENTS:
            values = [
                next(
                    s["creates_per_s"]
                    for s in summary
                    if s["client"] == client and s["latency"] == latency and s["concurrency"] == c
                )
                for c in concurrencies
            ]
            ax.plot(
                concurrencies, values, marker="o", ms=3, color=COLOURS_HERE[client], label=client
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
        ax.set_title(f"latency {latency * 1000:.0f} ms")
        ax.set_xlabel("concurrency")
    axes[0][0].set_ylabel("creates / s")
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.suptitle("Creates/s against concurrency (fixed answer latency; medians)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    worker_main(worker)
