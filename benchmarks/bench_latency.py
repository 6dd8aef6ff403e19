"""Latency hiding: throughput against concurrency, beside Little's law (concurrency / latency).

The emulator in its own process, without a bucket, answering every request after a fixed
latency (``FakeQomon(rate_limit=False, latency=L)`` at time scale 1, so L real seconds), and
qomon_async's pool at concurrency 1 to 128. The raw aiohttp loop of the client-cost benchmark
runs the same sweep for reference: where both fall short of the bound, the emulator or the
two shared cores are the limit, not the pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks._common import (
    COLOURS,
    Settings,
    fmt,
    log,
    make_contact,
    markdown_table,
    median,
    pyplot,
    ratio,
    run_worker,
    server,
    worker_main,
    write_json,
)
from benchmarks.bench_client_cost import run_contender

NAME = "latency"
TITLE = "Latency hiding"
CLIENTS = ("qomon_async", "aiohttp")


def _count(concurrency: int, per_worker: int, minimum: int) -> int:
    return max(minimum, per_worker * concurrency)


def worker(params: dict[str, Any]) -> dict[str, Any]:
    """One sweep over the concurrencies for one client; a fresh client per concurrency."""
    points = []
    for concurrency in params["concurrencies"]:
        n = _count(concurrency, params["per_worker"], params["minimum"])
        tag = f"{params['tag']}c{concurrency}-"
        warm = [make_contact(i, tag + "w") for i in range(concurrency)]
        items = [make_contact(i, tag) for i in range(n)]
        timing = run_contender(params["client"], params["url"], [warm, items], concurrency)[-1]
        points.append({"concurrency": concurrency, **timing})
    return {"points": points}


def run(settings: Settings) -> dict[str, Any]:
    latencies = (0.05, 0.2)
    concurrencies: tuple[int, ...]
    if settings.quick:
        concurrencies, repeats, per_worker, minimum = (1, 8, 64), 1, 4, 8
    else:
        concurrencies, repeats, per_worker, minimum = (1, 2, 4, 8, 16, 32, 64, 128), 3, 10, 16
    runs = []
    for latency in latencies:
        with server("fake", latency=latency, no_rate_limit=True) as srv:
            for repeat in range(repeats):
                for client in CLIENTS:
                    answer = run_worker(
                        "bench_latency",
                        {
                            "client": client,
                            "url": srv.url,
                            "concurrencies": concurrencies,
                            "per_worker": per_worker,
                            "minimum": minimum,
                            "tag": f"l{latency}r{repeat}{client}",
                        },
                    )
                    for point in answer["points"]:
                        runs.append(
                            {"client": client, "latency": latency, "repeat": repeat, **point}
                        )
        log(f"{NAME}: latency {latency:g} s done")
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
                        "requests": mine[0]["done"],
                        "runs": len(mine),
                    }
                )
    payload = {
        "title": TITLE,
        "parameters": {
            "latencies_s": latencies,
            "concurrencies": concurrencies,
            "repeats": repeats,
            "requests_per_point": f"max({minimum}, {per_worker} x concurrency)",
        },
        "summary": summary,
        "runs": runs,
    }
    write_json(settings, NAME, payload)
    return payload


CAVEATS = [
    "The bound is Little's law with the server's added latency alone (c / L); each request "
    "also spends the round trip and both sides' CPU, so 100% is out of reach and the gap grows "
    "with c once the emulator (one process, one core: validation, store, rendering of each "
    "contact) or the client saturates its core. The raw aiohttp series shows where that is.",
    "qomon_async runs with `rate_limit=False` and `max_connections=max(64, c)`: the client's "
    "default pool holds 64 connections, so c=128 with the default would be capped at 64 "
    "requests in flight.",
    "Each point is a fresh client: a warm-up of c creates opens the connections, then the "
    "timed creates (at least 10 per worker, so the ramp-down tail is a small part).",
]


def render(document: dict[str, Any], out: Path) -> str:
    summary = document["summary"]
    params = document["parameters"]
    concurrencies = params["concurrencies"]
    rows = []
    for latency in params["latencies_s"]:
        for concurrency in concurrencies:
            mine = {
                s["client"]: s
                for s in summary
                if s["latency"] == latency and s["concurrency"] == concurrency
            }
            q, a = mine["qomon_async"], mine["aiohttp"]
            rows.append(
                [
                    f"{latency * 1000:.0f} ms",
                    str(concurrency),
                    f"{q['of_bound'] * 100:.0f}%",
                    fmt(q["creates_per_s"]),
                    fmt(q["littles_bound"]),
                    f"{a['of_bound'] * 100:.0f}%",
                    fmt(a["creates_per_s"]),
                    f"{ratio(q['creates_per_s'], a['creates_per_s']):.2f}x",
                ]
            )
    table = markdown_table(
        [
            "latency",
            "c",
            "qomon_async of bound",
            "qomon_async creates/s",
            "bound c/L",
            "aiohttp of bound",
            "aiohttp creates/s",
            "qomon_async / aiohttp",
        ],
        rows,
    )
    _plot(summary, params, out / f"{NAME}.png")
    qomon = [s for s in summary if s["client"] == "qomon_async"]
    small = [s for s in qomon if s["concurrency"] <= 16]
    best = max(qomon, key=lambda s: s["creates_per_s"])
    headline = (
        f"Up to c=16, qomon_async reaches {min(s['of_bound'] for s in small) * 100:.0f}-"
        f"{max(s['of_bound'] for s in small) * 100:.0f}% of Little's bound c/L at 50 and 200 ms; "
        f"its best is {best['creates_per_s']:.0f} creates/s (c={best['concurrency']}, "
        f"{best['latency'] * 1000:.0f} ms), where the two shared cores are the limit."
    )
    return "\n\n".join(
        [
            f"## {TITLE}",
            f"**{headline}**",
            f"FakeQomon without a bucket, latency 50 and 200 ms; requests per point: "
            f"{params['requests_per_point']}; medians of {params['repeats']} sweeps, each "
            "in its own process, clients alternated.",
            table,
            f"![{TITLE}]({NAME}.png)",
            "Caveats:\n\n" + "\n".join(f"- {c}" for c in CAVEATS),
        ]
    )


def _plot(summary: list[dict[str, Any]], params: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    latencies = params["latencies_s"]
    concurrencies = params["concurrencies"]
    fig, axes = plt.subplots(1, len(latencies), figsize=(9, 3.6), sharey=True)
    for ax, latency in zip(axes, latencies, strict=True):
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
            ax.plot(concurrencies, values, marker="o", ms=3, color=COLOURS[client], label=client)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
        ax.set_title(f"latency {latency * 1000:.0f} ms")
        ax.set_xlabel("concurrency")
    axes[0].set_ylabel("creates / s")
    axes[0].legend(frameon=False)
    fig.suptitle("Throughput against concurrency (FakeQomon, no bucket; medians)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    worker_main(worker)
