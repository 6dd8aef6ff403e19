"""Budget use: bulk creates against the emulator's token bucket, at Qomon's shape, time-scaled.

FakeQomon with its default bucket (100 tokens, 10 per Qomon second, a create costs 5) at
``time_scale`` 20: the ideal is the first 20 creates in the burst, then 2 creates per Qomon
second. Two clients at the same concurrency: qomon_async's pool (default settings, its limiter
on), and a naive aiohttp loop (no limiter; on a 429 it sleeps one Qomon second, 1/time_scale
real, and sends again). Each alone, then with a second consumer of the same space spending
tokens in the background (``fake.spend``), as another process would.

The emulator runs in the worker's own event loop (as in the tests): budget use is bounded by the
bucket, not by CPU (about 40 creates per real second here).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    request_headers,
    run_worker,
    worker_main,
    write_json,
)

if TYPE_CHECKING:
    from qomon_async import ContactDict

NAME = "budget"
TITLE = "Budget use against Qomon's bucket"
CLIENTS = ("qomon_async", "naive")
LABELS = {
    "qomon_async": "qomon_async pool",
    "naive": "naive aiohttp (no limiter, fixed 1 Qomon-s sleep on 429)",
}
SCENARIOS = ("alone", "shared")
CAPACITY, RATE, COST = 100.0, 10.0, 5.0
#: The second consumer's spending, in tokens per Qomon second (30% of the refill), paid in
#: bites of 0.05 Qomon seconds.
CONSUMER_RATE = 3.0
CONSUMER_TICK = 0.05


async def _naive(url: str, items: list[ContactDict], concurrency: int, scale: float) -> int:
    import aiohttp  # noqa: PLC0415

    headers = request_headers()
    source = iter(items)
    done = 0

    async def work(session: aiohttp.ClientSession) -> None:
        nonlocal done
        for item in source:
            body = json.dumps({"data": {"contact": item}}).encode()
            while True:
                async with session.post(url + "/contacts", data=body, headers=headers) as r:
                    payload = await r.read()
                if r.status == 429:
                    await asyncio.sleep(1.0 / scale)  # one Qomon second, Retry-After ignored
                    continue
                if r.status != 200:
                    raise RuntimeError(f"status {r.status}")
                json.loads(payload)
                done += 1
                break

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await asyncio.gather(*(work(s) for _ in range(concurrency)))
    return done


async def _qomon(url: str, items: list[ContactDict], concurrency: int) -> tuple[int, int]:
    from qomon_async import QomonClient  # noqa: PLC0415

    done = failed = 0
    async with QomonClient(API_KEY, base_url=url) as client:
        async for result in client.create_contacts(items, concurrency=concurrency):
            if result.ok:
                done += 1
            else:
                failed += 1
    return done, failed


async def _measure(params: dict[str, Any]) -> dict[str, Any]:
    from qomon_async.testing import FakeQomon  # noqa: PLC0415

    n, scale, concurrency = params["n"], params["scale"], params["concurrency"]
    items = [make_contact(i, "budget") for i in range(n)]
    taken = 0.0
    async with FakeQomon(api_key=API_KEY, time_scale=scale) as fake:
        stop = asyncio.Event()

        async def other_consumer() -> None:
            nonlocal taken
            bite = CONSUMER_RATE * CONSUMER_TICK
            while not stop.is_set():
                before = fake.tokens or 0.0
                fake.spend(bite)
                taken += before - (fake.tokens or 0.0)
                await asyncio.sleep(CONSUMER_TICK / scale)

        drainer = asyncio.ensure_future(other_consumer()) if params["shared"] else None
        started, wall0 = fake.now(), time.perf_counter()
        failed = 0
        try:
            if params["client"] == "naive":
                done = await _naive(fake.base_url, items, concurrency, scale)
            else:
                done, failed = await _qomon(fake.base_url, items, concurrency)
        finally:
            stop.set()
            if drainer is not None:
                await drainer
        wall = time.perf_counter() - wall0
        creates = [r for r in fake.requests if r.path == "/contacts"]
    ok_times = [r.time - started for r in creates if r.status == 200]
    elapsed = max(ok_times)  # Qomon seconds from the start to the last create's arrival
    # The ideal: every token the bucket supplies (capacity + refill) that the other consumer did
    # not take goes to creates. Alone: 20 in the burst, then 2 per Qomon second.
    ideal = max(0.0, (COST * n - CAPACITY + taken) / RATE)
    return {
        "created": done,
        "failed": failed,
        "requests": len(creates),
        "rejected_429": sum(1 for r in creates if r.status == 429),
        "elapsed_qomon_s": elapsed,
        "wall_s": wall,
        "ideal_qomon_s": ideal,
        "consumer_tokens": taken,
        "efficiency": ideal / elapsed if elapsed > 0 else float("nan"),
        "timeline": [round(t, 3) for t in sorted(ok_times)],
    }


def worker(params: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_measure(params))


def run(settings: Settings) -> dict[str, Any]:
    n = 60 if settings.quick else 200
    repeats = 1 if settings.quick else 3
    scale, concurrency = 20.0, 8
    runs = []
    for repeat in range(repeats):
        for scenario in SCENARIOS:
            for client in CLIENTS:
                answer = run_worker(
                    "bench_budget",
                    {
                        "client": client,
                        "shared": scenario == "shared",
                        "n": n,
                        "scale": scale,
                        "concurrency": concurrency,
                    },
                )
                answer.update(client=client, scenario=scenario, repeat=repeat)
                runs.append(answer)
        log(f"{NAME}: round {repeat + 1}/{repeats} done")
    summary = []
    for scenario in SCENARIOS:
        for client in CLIENTS:
            mine = [r for r in runs if r["client"] == client and r["scenario"] == scenario]
            elapsed = median([r["elapsed_qomon_s"] for r in mine])
            ideal = median([r["ideal_qomon_s"] for r in mine])
            summary.append(
                {
                    "client": client,
                    "scenario": scenario,
                    "efficiency": median([r["efficiency"] for r in mine]),
                    "creates_per_qomon_s": n / elapsed,
                    "ideal_creates_per_qomon_s": n / ideal if ideal else float("nan"),
                    "rejected_429": median([r["rejected_429"] for r in mine]),
                    "requests_per_create": median([r["requests"] / n for r in mine]),
                    "failed": max(r["failed"] for r in mine),
                    "elapsed_qomon_s": elapsed,
                    "ideal_qomon_s": ideal,
                    "consumer_tokens": median([r["consumer_tokens"] for r in mine]),
                    "runs": len(mine),
                }
            )
    payload = {
        "title": TITLE,
        "parameters": {
            "creates": n,
            "time_scale": scale,
            "concurrency": concurrency,
            "repeats": repeats,
            "bucket": {"capacity": CAPACITY, "rate": RATE, "create_cost": COST},
            "consumer_tokens_per_qomon_s": CONSUMER_RATE,
        },
        "summary": summary,
        "runs": runs,
    }
    write_json(settings, NAME, payload)
    return payload


CAVEATS = [
    "Ideal time = (5 x creates - 100 + tokens the other consumer actually took) / 10 Qomon "
    "seconds: the whole supply of the bucket (full at the start, 10 tokens per Qomon second) "
    "minus the other consumer's share goes to creates. Alone, that is 20 creates in the burst, "
    "then 2 per Qomon second. Efficiency = ideal time / time of the last successful create.",
    "The other consumer calls `fake.spend(0.15)` every 0.05 Qomon s (3 tokens per Qomon second, "
    "30% of the refill); `spend` never takes the bucket below zero, so what it takes depends on "
    "the client: the ideal uses what it actually took (median in the table).",
    "Time-scaled at 20 (Qomon seconds per real second): a create's 5 tokens refill in 25 ms "
    "real; event-loop and scheduling jitter of a few ms is 10-20% of that, so the efficiency "
    "here is a lower bound of what the same client gets at Qomon's real pace.",
    "A rejected request costs no tokens (Qomon's documentation, and the emulator), so the naive "
    "client, hammering through its 429s, keeps up with the refill just as well here: what it "
    "pays is 3-4 extra requests per create (requests / create), Retry-After ignored, and the "
    "429s every other user of the space then meets. Its sleep of one Qomon second after a 429 "
    "is what keeps it near the ideal; a shorter one would only add 429s.",
    "Both clients run at concurrency 8 in the same process and event loop as the emulator.",
    "qomon_async starts with one request in flight until a first answer has told it the "
    "bucket's state (slow start), and re-syncs from X-Ratelimit-Remaining on every answer.",
]


def render(document: dict[str, Any], out: Path) -> str:
    summary = document["summary"]
    params = document["parameters"]
    rows = [
        [
            LABELS[s["client"]] if s["scenario"] == "alone" else s["client"],
            "alone" if s["scenario"] == "alone" else "+ other consumer",
            f"{s['efficiency'] * 100:.0f}%",
            fmt(s["creates_per_qomon_s"]),
            fmt(s["ideal_creates_per_qomon_s"]),
            fmt(s["rejected_429"]),
            fmt(s["requests_per_create"]),
            fmt(s["consumer_tokens"]) if s["scenario"] == "shared" else "—",
            str(s["failed"]),
        ]
        for s in summary
    ]
    table = markdown_table(
        [
            "client",
            "bucket",
            "efficiency",
            "creates / Qomon s",
            "ideal",
            "429s",
            "requests / create",
            "tokens taken by other",
            "failed",
        ],
        rows,
    )
    _plot(document, out / f"{NAME}.png")
    by = {(s["client"], s["scenario"]): s for s in summary}
    headline = (
        f"qomon_async reaches {by['qomon_async', 'alone']['efficiency'] * 100:.0f}% of the "
        f"bucket's ideal create rate with {by['qomon_async', 'alone']['rejected_429']:g} 429s "
        f"(naive: {by['naive', 'alone']['efficiency'] * 100:.0f}%, "
        f"{by['naive', 'alone']['rejected_429']:g} 429s); sharing the bucket with another "
        f"consumer: {by['qomon_async', 'shared']['efficiency'] * 100:.0f}% with "
        f"{by['qomon_async', 'shared']['rejected_429']:g} 429s "
        f"(naive: {by['naive', 'shared']['efficiency'] * 100:.0f}%, "
        f"{by['naive', 'shared']['rejected_429']:g})."
    )
    return "\n\n".join(
        [
            f"## {TITLE}",
            f"**{headline}**",
            f"{params['creates']} creates at concurrency {params['concurrency']} against "
            f"FakeQomon's bucket (100 tokens, 10/s, 5 per create) at time scale "
            f"{params['time_scale']:g}; medians of {params['repeats']} runs, each in its own "
            "process.",
            table,
            f"![{TITLE}]({NAME}.png)",
            "Caveats:\n\n" + "\n".join(f"- {c}" for c in CAVEATS),
        ]
    )


def _plot(document: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    params = document["parameters"]
    n = params["creates"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, scenario in zip(axes, SCENARIOS, strict=True):
        ideal_end = 0.0
        for client in CLIENTS:
            runs = [
                r
                for r in document["runs"]
                if r["client"] == client and r["scenario"] == scenario and r["repeat"] == 0
            ]
            if not runs:
                continue
            run = runs[0]
            times = run["timeline"]
            ax.step(
                times,
                range(1, len(times) + 1),
                where="post",
                color=COLOURS[client],
                label=f"{client} ({run['rejected_429']} 429s)",
            )
            ideal_end = max(ideal_end, run["ideal_qomon_s"])
        burst = CAPACITY / COST
        ax.plot([0, 0, ideal_end], [0, burst, n], color=COLOURS["ideal"], ls="--", label="ideal")
        ax.set_title("alone" if scenario == "alone" else "with another consumer (3 tokens/s)")
        ax.set_xlabel("Qomon seconds")
        ax.legend(frameon=False, loc="lower right")
    axes[0].set_ylabel("creates confirmed")
    fig.suptitle("Creates over time against the bucket (first run of each)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    worker_main(worker)
