"""The limiter's own cost: one acquire plus one observe, against a bare aiolimiter acquire.

No HTTP: a loop whose clock the benchmark moves (``1 / throughput`` per request), a bucket far
larger than the traffic (every grant is immediate), and answers computed beforehand from a
simulated server (Qomon's bucket less another consumer's random bites), fed back in random order
among the ``c`` requests in flight. Two contenders per setting, interleaved in each repeat:

- ``qomon_async``: the client's limiter, ``LocalLimiter``, called as the client calls it:
  ``acquire(1, max_pause=120.0)`` (the default retry policy's ``max_retry_after``) then
  ``observe(permit, BucketState)``: the grant, the re-sync, the measure of other consumers over
  its window, the reserve;
- ``aiolimiter``: ``AsyncLimiter.acquire(1)`` alone (the floor: a leaky bucket that follows no
  server).

The window of other consumers' spending spans ``capacity / rate`` = 1 s of loop time, so the
throughput is also the number of answers in that window: the cost per request must not grow
with it (the bookkeeping is O(1) per answer), nor much with the requests in flight.
"""

from __future__ import annotations

import asyncio
import math
import random
import selectors
import time
from pathlib import Path
from typing import Any

from benchmarks._common import (
    COLOURS,
    Settings,
    fmt,
    log,
    markdown_table,
    median,
    pyplot,
    run_worker,
    spread,
    worker_main,
    write_json,
)

NAME = "limiter"
TITLE = "The rate limiter's cost per request"
CONTENDERS = ("qomon_async", "aiolimiter")
LABELS = {
    "qomon_async": "qomon_async LocalLimiter (acquire + observe)",
    "aiolimiter": "aiolimiter AsyncLimiter (acquire)",
}
#: The advertised shape: 1 s of refill in the bucket (the window), far above the traffic.
CAPACITY = RATE = 1e6


class _ManualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock only moves when the benchmark says so."""

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def _answers(n: int, throughput: float, concurrency: int, seed: int) -> list[tuple[int, Any]]:
    """(index among the requests in flight to answer, BucketState) for each request."""
    from qomon_async._ratelimit import BucketState  # noqa: PLC0415

    rng = random.Random(seed)
    dt = 1.0 / throughput
    tokens = CAPACITY
    answers = []
    in_flight = 0
    for _ in range(n):
        in_flight += 1
        tokens = min(CAPACITY, tokens + dt * RATE) - 1
        if rng.random() < 0.05:  # another consumer's bite
            tokens -= rng.uniform(0, 50)
        pick = rng.randrange(in_flight) if in_flight >= concurrency else -1
        if pick >= 0:
            in_flight -= 1
        state = BucketState(CAPACITY, RATE, math.floor(tokens), 1.0, None)
        answers.append((pick, state))
    return answers


async def _qomon(loop: _ManualClockLoop, answers: list[tuple[int, Any]], dt: float) -> float:
    from qomon_async._local_limiter import LocalLimiter  # noqa: PLC0415

    limiter = LocalLimiter(CAPACITY, RATE, slow_start=False)
    acquire, observe = limiter.acquire, limiter.observe
    pending: list[Any] = []
    warmup = len(answers) // 2
    started = 0.0
    for i, (pick, state) in enumerate(answers):
        if i == warmup:
            started = time.process_time()
        loop.now += dt
        pending.append(await acquire(1, max_pause=120.0))
        if pick >= 0:
            observe(pending.pop(pick), state)
    elapsed = time.process_time() - started
    assert limiter.stats.waits == 0, "every grant must be immediate"
    return elapsed / (len(answers) - warmup)


async def _aiolimiter(loop: _ManualClockLoop, answers: list[tuple[int, Any]], dt: float) -> float:
    from aiolimiter import AsyncLimiter  # noqa: PLC0415

    limiter = AsyncLimiter(CAPACITY, CAPACITY / RATE)
    acquire = limiter.acquire
    pending: list[Any] = []
    warmup = len(answers) // 2
    started = 0.0
    for i, (pick, _state) in enumerate(answers):
        if i == warmup:
            started = time.process_time()
        loop.now += dt
        await acquire(1)
        pending.append(None)
        if pick >= 0:
            pending.pop(pick)
    elapsed = time.process_time() - started
    return elapsed / (len(answers) - warmup)


def worker(params: dict[str, Any]) -> dict[str, Any]:
    throughput, concurrency = params["throughput"], params["concurrency"]
    # Half warm-up: the window (1 s of answers) is full before the timing starts.
    n = 2 * max(params["measured"], int(throughput * 1.2))
    answers = _answers(n, throughput, concurrency, seed=params["seed"])
    results: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    for _ in range(params["repeats"]):
        for contender in CONTENDERS:
            loop = _ManualClockLoop()
            try:
                run = _qomon if contender == "qomon_async" else _aiolimiter
                seconds = loop.run_until_complete(run(loop, answers, 1.0 / throughput))
            finally:
                loop.close()
            results[contender].append(seconds * 1e6)
    return {"us": results, "requests_timed": n - n // 2}


def run(settings: Settings) -> dict[str, Any]:
    throughputs = [100, 10_000] if settings.quick else [100, 1_000, 10_000, 100_000]
    concurrencies = [1, 64] if settings.quick else [1, 8, 64, 256]
    repeats = 3 if settings.quick else 5
    measured = 5_000 if settings.quick else 20_000
    summary = []
    for throughput in throughputs:
        for concurrency in concurrencies:
            answer = run_worker(
                "bench_limiter",
                {
                    "throughput": throughput,
                    "concurrency": concurrency,
                    "repeats": repeats,
                    "measured": measured,
                    "seed": 1,
                },
            )
            us = answer["us"]
            ours, floor = median(us["qomon_async"]), median(us["aiolimiter"])
            summary.append(
                {
                    "throughput": throughput,
                    "concurrency": concurrency,
                    "qomon_async_us": ours,
                    "aiolimiter_us": floor,
                    "ratio": ours / floor if floor else float("nan"),
                    "spread": spread(us["qomon_async"]),
                    "requests_timed": answer["requests_timed"],
                }
            )
        log(f"{NAME}: {throughput:,} requests/s done")
    payload = {
        "title": TITLE,
        "parameters": {
            "throughputs": throughputs,
            "concurrencies": concurrencies,
            "repeats": repeats,
            "capacity": CAPACITY,
            "rate": RATE,
            "window_s": CAPACITY / RATE,
        },
        "summary": summary,
    }
    write_json(settings, NAME, payload)
    return payload


CAVEATS = [
    "CPU time (time.process_time) over the second half of each run, divided by the requests "
    "in it; the first half fills the 1 s window. Medians of the repeats; the loop's clock is "
    "moved by the benchmark, so no request ever waits and only bookkeeping is measured.",
    "The throughput is in requests per second of loop time; it sets how many answers the "
    "window of other consumers' spending holds (about half of them: an answer overtaken by a "
    "later one is not a measure).",
    "Answers come back in random order among the requests in flight, the worst case for the "
    "ledger of permits in flight (sorted lists per cost: a binary search and a deletion in C "
    "per answer, a head move when answers come in order). The server's answers are computed "
    "before the timing starts.",
    "The CPU includes the benchmark's own loop (moving the clock, keeping the permits in "
    "flight): a few tenths of a µs per request, in both contenders' figures.",
    "aiolimiter's figure is a floor, not an alternative: it follows no server, measures no "
    "other consumer and has no FIFO order across costs.",
]


def render(document: dict[str, Any], out: Path) -> str:
    summary = document["summary"]
    rows = [
        [
            f"{s['throughput']:,}",
            str(s["concurrency"]),
            fmt(s["qomon_async_us"]),
            fmt(s["aiolimiter_us"]),
            f"{s['ratio']:.1f}x",
            f"±{s['spread'] * 100:.0f}%",
        ]
        for s in summary
    ]
    table = markdown_table(
        [
            "requests / s (answers in the window)",
            "in flight",
            "qomon_async µs / request",
            "aiolimiter µs / request",
            "ratio",
            "spread",
        ],
        rows,
    )
    _plot(document, out / f"{NAME}.png")
    costs = [s["qomon_async_us"] for s in summary]
    throughputs = document["parameters"]["throughputs"]
    low_t = [s for s in summary if s["throughput"] == min(throughputs)]
    high_t = [s for s in summary if s["throughput"] == max(throughputs)]
    growth = median([h["qomon_async_us"] for h in high_t]) / median(
        [lo["qomon_async_us"] for lo in low_t]
    )
    lowest, highest = min(throughputs), max(throughputs)
    headline = (
        f"An acquire plus an observe costs {min(costs):.1f} to {max(costs):.1f} µs of CPU "
        f"({min(s['ratio'] for s in summary):.1f}x to {max(s['ratio'] for s in summary):.1f}x a "
        f"bare aiolimiter acquire); from {lowest:,} to {highest:,} requests/s (a window of "
        f"answers {highest // lowest:,} times larger) the cost changes by {growth:.2f}x."
    )
    return "\n\n".join(
        [
            f"## {TITLE}",
            f"**{headline}**",
            "The client's `LocalLimiter` fed answers from a simulated server, its loop clock moved "
            "by the benchmark; each setting in its own process, contenders interleaved.",
            table,
            f"![{TITLE}]({NAME}.png)",
            "Caveats:\n\n" + "\n".join(f"- {c}" for c in CAVEATS),
        ]
    )


def _plot(document: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    summary = document["summary"]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for concurrency in document["parameters"]["concurrencies"]:
        rows = [s for s in summary if s["concurrency"] == concurrency]
        ax.plot(
            [s["throughput"] for s in rows],
            [s["qomon_async_us"] for s in rows],
            marker="o",
            label=f"qomon_async, {concurrency} in flight",
        )
    floor = [s for s in summary if s["concurrency"] == document["parameters"]["concurrencies"][0]]
    ax.plot(
        [s["throughput"] for s in floor],
        [s["aiolimiter_us"] for s in floor],
        color=COLOURS["ideal"],
        ls="--",
        label="aiolimiter acquire",
    )
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("requests per second (answers in the 1 s window)")
    ax.set_ylabel("µs of CPU per request")
    ax.legend(frameon=False, fontsize=8)
    fig.suptitle("Limiter cost per request: flat in the window's size", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    worker_main(worker)
