"""Memory: peak RSS of a streamed bulk job, at 10x the input length.

A generator of contacts (nothing held in a list) into ``client.create_contacts`` against the
emulator in its own process (no bucket), the results consumed and dropped as they come; each
job in a fresh process. Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss``; the
baseline is the RSS after a warm-up job of the same shape (imports, connections, code paths).
Flat means the job of N items grows RSS by about as much as the job of N/10, not 10x. Run with
the default ``dedupe=True`` (bound: 40 bytes kept per distinct item, the input
de-duplication table) and with ``dedupe=False`` (bound: nothing kept per item beyond the
in-flight window: 100,000 items grow RSS by at most 1.1x what 10,000 do).

With ``dedupe=True`` the pool keeps no claims (no two items are one person, so no
reconciliation can meet another item's contact). With ``dedupe=False`` it keeps the contacts
the last seconds of creates obtained (its claims: the in-flight window plus 5 s of slack for
Qomon's clock), so a job shorter than that window has not filled it yet. Besides the headline
ratio, the report gives what the window explains: each job's rate, length and largest claims
table (sampled with RSS), and the large job's growth after its first 30% of items, once the
window is full (flat means about 0).
"""

from __future__ import annotations

import asyncio
import gc
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._common import (
    API_KEY,
    Settings,
    fmt,
    log,
    make_contact,
    markdown_table,
    pyplot,
    ratio,
    run_worker,
    server,
    worker_main,
    write_json,
)

if TYPE_CHECKING:
    from qomon_async import ContactDict

NAME = "memory"
TITLE = "Memory of a streamed bulk job"
MB = 1024 * 1024


def _max_rss() -> int:
    """Peak RSS of this process in bytes (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _contacts(n: int, tag: str) -> Iterator[ContactDict]:
    for i in range(n):
        yield make_contact(i, tag)


async def _job(params: dict[str, Any]) -> dict[str, Any]:
    import psutil  # noqa: PLC0415

    from qomon_async import QomonClient  # noqa: PLC0415

    process = psutil.Process()
    n, dedupe, concurrency = params["n"], params["dedupe"], params["concurrency"]
    step = max(1, n // params["samples"])
    # (items done, RSS, claims held by the pool): the claims table is the pool's one structure
    # that grows with the create rate (a private attribute, read here only to explain RSS).
    samples: list[tuple[int, int, int]] = []
    async with QomonClient(API_KEY, base_url=params["url"], rate_limit=False) as client:
        warm = client.create_contacts(_contacts(params["warmup"], "w"), concurrency=concurrency)
        async for result in warm:
            assert result.ok, result
        gc.collect()
        base_rss, base_peak = process.memory_info().rss, _max_rss()
        samples.append((0, base_rss, 0))
        done = 0
        started = time.perf_counter()
        run = client.create_contacts(_contacts(n, "m"), concurrency=concurrency, dedupe=dedupe)
        async for result in run:
            if not result.ok:
                raise RuntimeError(f"create failed: {result}")
            done += 1
            if done % step == 0:
                claims = run._claims  # none with dedupe (see BulkRun.__init__)
                samples.append((done, process.memory_info().rss, len(claims or ())))
        wall = time.perf_counter() - started
    end_rss = process.memory_info().rss
    return {
        "n": n,
        "dedupe": dedupe,
        "done": done,
        "wall": wall,
        "base_rss": base_rss,
        "base_peak": base_peak,
        # ru_maxrss, and the sampled RSS in case the kernel's peak lags (seen in sandboxes).
        "peak_rss": max(_max_rss(), end_rss, *(s[1] for s in samples)),
        "ru_maxrss": _max_rss(),
        "end_rss": end_rss,
        "samples": samples,
    }


def _tail_growth(run: dict[str, Any]) -> tuple[int, int]:
    """The sample at 30% of the job's items (the claims window is full by then) and how much
    the RSS rose above it afterwards (its highest later sample minus it)."""
    samples = run["samples"]
    settled = max(1, run["n"] * 3 // 10)
    at = min(samples, key=lambda s: abs(s[0] - settled))
    later = [s[1] for s in samples if s[0] >= at[0]]
    return at[0], max(later) - at[1]


def worker(params: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_job(params))


def run(settings: Settings) -> dict[str, Any]:
    sizes = (1_000, 10_000) if settings.quick else (10_000, 100_000)
    concurrency = 16
    runs = []
    # The emulator, not the tiny server: its ids and CreatedAt are a real server's (fresh, and
    # on a running clock), which the pool's bookkeeping of claimed contacts relies on.
    with server("fake", no_rate_limit=True) as srv:
        for dedupe in (True, False):
            for n in sizes:
                answer = run_worker(
                    "bench_memory",
                    {
                        "n": n,
                        "dedupe": dedupe,
                        "url": srv.url,
                        "concurrency": concurrency,
                        "warmup": 500,
                        "samples": 100,
                    },
                    timeout=900,
                )
                answer["growth"] = answer["peak_rss"] - answer["base_rss"]
                answer["rate"] = n / answer["wall"]
                answer["claims_max"] = max(s[2] for s in answer["samples"])
                runs.append(answer)
                log(
                    f"{NAME}: {n:,} items, dedupe={dedupe}: +{answer['growth'] / MB:.2f} MB, "
                    f"{answer['rate']:,.0f}/s, claims at most {answer['claims_max']:,}"
                )
    summary = []
    small, large = sizes
    for dedupe in (True, False):
        by_n = {r["n"]: r for r in runs if r["dedupe"] == dedupe}
        growth_small, growth_large = by_n[small]["growth"], by_n[large]["growth"]
        settled, tail = _tail_growth(by_n[large])
        summary.append(
            {
                "dedupe": dedupe,
                "small": small,
                "large": large,
                "peak_small_mb": by_n[small]["peak_rss"] / MB,
                "peak_large_mb": by_n[large]["peak_rss"] / MB,
                "growth_small_mb": growth_small / MB,
                "growth_large_mb": growth_large / MB,
                "growth_ratio": ratio(max(growth_large, 1), max(growth_small, 1)),
                "peak_ratio": ratio(by_n[large]["peak_rss"], by_n[small]["peak_rss"]),
                "bytes_per_extra_item": (growth_large - growth_small) / (large - small),
                "wall_small": by_n[small]["wall"],
                "wall_large": by_n[large]["wall"],
                "rate_small": by_n[small]["rate"],
                "rate_large": by_n[large]["rate"],
                "claims_max_small": by_n[small]["claims_max"],
                "claims_max_large": by_n[large]["claims_max"],
                "settled": settled,
                "tail_growth_mb": tail / MB,
                "tail_bytes_per_item": tail / (large - settled),
            }
        )
    payload = {
        "title": TITLE,
        "parameters": {"sizes": sizes, "concurrency": concurrency, "warmup": 500},
        "summary": summary,
        "runs": runs,
    }
    write_json(settings, NAME, payload)
    return payload


CAVEATS = [
    "RSS counts pages the allocator keeps: Python's obmalloc rarely hands memory back, so the "
    "peak, not the end, is what matters, and a few MB of noise between runs is normal.",
    "Growth = peak RSS during the job - RSS after the warm-up job; 'bytes per extra item' = "
    "(growth of the large job - growth of the small one) / (extra items).",
    "dedupe=True keeps 64-bit digests and 4-byte first indexes in 64 open-addressing tables "
    "(12 bytes a slot, 42% to 85% full): 14 to 28 bytes per distinct item, climbing in small "
    "steps as one table at a time doubles; dedupe_spill moves it to SQLite beyond a size.",
    "dedupe=False keeps nothing per item of the run, but the contacts the last seconds of "
    "creates obtained (claims, 4 bytes each, grouped by half-seconds of Qomon's clock): a "
    "reconciliation of an item in flight may meet any contact created since that item began, "
    "less 5 s of slack for Qomon's clock, so claims are dropped (a group at a time, each time "
    "a group begins) only once older than that. The table is bounded by the create rate (5 s "
    "at 4,000 creates/s: 20,000 claims, 80 KB), not by the run's length: a job shorter than "
    "that window has not filled it, and grows less than a longer one; the large job's growth "
    "after its first 30% of items shows whether anything grows once the window is full.",
    "Against the emulator (FakeQomon, in its own process, rate limiting off): every create "
    "gets a fresh id and a CreatedAt on a running clock, as on Qomon.",
    "Concurrency 16, rate_limit=False; results are consumed and dropped as they arrive, as an "
    "import job writing a report would.",
]


def _bytes(value: float) -> str:
    """Bytes per item for a headline; within noise of zero reads as 0."""
    return "about 0 bytes" if abs(value) < 5 else f"{value:.0f} bytes"


def _size(mb: float) -> str:
    """A growth for a sentence: KB below a megabyte (RSS moves by 4 KB pages)."""
    return f"{mb:.2f} MB" if abs(mb) >= 1 else f"{mb * 1024:,.0f} KB"


def render(document: dict[str, Any], out: Path) -> str:
    summary = document["summary"]
    rows = [
        [
            "True (default)" if s["dedupe"] else "False",
            f"{s['growth_ratio']:.2f}x",
            fmt(s["growth_small_mb"]),
            fmt(s["growth_large_mb"]),
            fmt(s["peak_small_mb"]),
            fmt(s["peak_large_mb"]),
            fmt(s["bytes_per_extra_item"]),
        ]
        for s in summary
    ]
    small, large = summary[0]["small"], summary[0]["large"]
    table = markdown_table(
        [
            "dedupe",
            f"growth {large:,} / {small:,}",
            f"growth {small:,} (MB)",
            f"growth {large:,} (MB)",
            f"peak {small:,} (MB)",
            f"peak {large:,} (MB)",
            "bytes / extra item",
        ],
        rows,
    )
    _plot(document, out / f"{NAME}.png")
    by = {s["dedupe"]: s for s in summary}
    off, on = by[False], by[True]
    small_mb, large_mb = off["growth_small_mb"], off["growth_large_mb"]
    growth_ratio = large_mb / small_mb if small_mb else 1.0
    flat = "met" if growth_ratio <= FLAT else "not met"
    headline = (
        f"With dedupe=False the job's RSS grows by {_size(off['growth_small_mb'])} for "
        f"{small:,} items and {_size(off['growth_large_mb'])} for {large:,} "
        f"({growth_ratio:.2f}x; flat, at most {FLAT:g}x: {flat}; "
        f"{_bytes(off['bytes_per_extra_item'])} per extra item); with the default "
        f"dedupe=True it is {_size(on['growth_small_mb'])} and {_size(on['growth_large_mb'])} "
        f"({_bytes(on['bytes_per_extra_item'])} per distinct item; bound: 40)."
    )
    window = (
        f"The window the claims follow (dedupe=False): the {small:,}-item job ran "
        f"{off['wall_small']:.1f} s at {off['rate_small']:,.0f} creates/s and held at most "
        f"{off['claims_max_small']:,} claims; the {large:,}-item job ran at "
        f"{off['rate_large']:,.0f} creates/s, where 5 s of slack alone span "
        f"{5 * off['rate_large']:,.0f} creates, and held at most {off['claims_max_large']:,}. "
        f"Once past {off['settled']:,} items its RSS rose by {_size(off['tail_growth_mb'])} over "
        f"the remaining {large - off['settled']:,} ({_bytes(off['tail_bytes_per_item'])} per "
        "item)."
    )
    window_rows = [
        [
            "True (default)" if s["dedupe"] else "False",
            f"{s['rate_small']:,.0f} / {s['rate_large']:,.0f}",
            f"{s['wall_small']:.1f} / {s['wall_large']:.1f}",
            f"{s['claims_max_small']:,} / {s['claims_max_large']:,}",
            fmt(s["tail_growth_mb"]),
            fmt(s["tail_bytes_per_item"]),
        ]
        for s in summary
    ]
    window_table = markdown_table(
        [
            "dedupe",
            "creates/s (small / large)",
            "seconds (small / large)",
            "claims held at most (small / large)",
            f"growth after {off['settled']:,} items (MB)",
            "bytes / item after it",
        ],
        window_rows,
    )
    return "\n\n".join(
        [
            f"## {TITLE}",
            f"**{headline}**",
            window,
            f"A generator of {small:,} and of {large:,} contacts into `create_contacts` "
            "(concurrency 16), each job in a fresh process.",
            table,
            window_table,
            f"![{TITLE}]({NAME}.png)",
            "Caveats:\n\n" + "\n".join(f"- {c}" for c in CAVEATS),
        ]
    )


#: The target: the large job's growth at most this many times the small one's (dedupe=False).
FLAT = 1.1


def _plot(document: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    large = max(document["parameters"]["sizes"])
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for run in document["runs"]:
        if run["n"] != large:
            continue
        xs = [s[0] for s in run["samples"]]
        ys = [(s[1] - run["base_rss"]) / MB for s in run["samples"]]
        label = "dedupe=True (default)" if run["dedupe"] else "dedupe=False"
        ax.plot(xs, ys, color="#1f77b4" if run["dedupe"] else "#2ca02c", label=label)
    ax.axhline(0, color="#555555", lw=0.8)
    ax.set_xlabel("items done")
    ax.set_ylabel("RSS above the warm baseline (MB)")
    ax.set_title(f"RSS during a streamed job of {large:,} creates", fontsize=10)
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    worker_main(worker)
