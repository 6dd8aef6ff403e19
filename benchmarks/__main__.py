"""``python -m benchmarks [--quick] [--only NAME ...] [--render-only]``: run, then render.

Each benchmark writes ``results/NAME.json``; rendering reads every JSON present, so ``--only``
re-runs one benchmark and refreshes the summary with the others' last numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import (
    bench_budget,
    bench_client_cost,
    bench_decode,
    bench_latency,
    bench_limiter,
    bench_memory,
)
from benchmarks._common import RESULTS_DIR, Settings, log, machine_info, markdown_table, read_json

BENCHMARKS: dict[str, ModuleType] = {
    "client_cost": bench_client_cost,
    "budget": bench_budget,
    "latency": bench_latency,
    "memory": bench_memory,
    "decode": bench_decode,
    "limiter": bench_limiter,
}
ALIASES = {"client-cost": "client_cost", "cost": "client_cost", "decoding": "decode"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="qomon_async's benchmarks (design.md §8)."
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats and smaller jobs (under 2 minutes)"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default benchmarks/results, benchmarks/results/quick with --quick)",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="only re-render tables and plots from JSON"
    )
    return parser.parse_args(argv)


def _selected(only: list[str] | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = []
    for name in only:
        key = ALIASES.get(name, name.replace("-", "_"))
        if key not in BENCHMARKS:
            sys.exit(f"unknown benchmark {name!r}: choose from {', '.join(BENCHMARKS)}")
        names.append(key)
    return names


def _machine_section(machine: dict[str, Any]) -> str:
    libraries = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items())
    rows = [
        ["CPU", machine["cpu_model"]],
        ["cores", f"{machine['cores']} ({machine['usable_cores']} usable)"],
        ["load average at start", " / ".join(str(x) for x in machine["load_average"])],
        ["Python", f"{machine['implementation']} {machine['python']}"],
        ["platform", machine["platform"]],
        ["libraries", libraries],
        ["commit", machine["git_commit"]],
        ["date", machine["date"]],
    ]
    return "## Machine\n\n" + markdown_table(["", ""], rows)


def render(out: Path, runtimes: dict[str, float]) -> Path:
    """Render every benchmark whose JSON is in ``out``; write ``out/README.md``."""
    sections, headlines, machine, modes = [], [], None, set()
    for name, module in BENCHMARKS.items():
        document = read_json(out, name)
        if document is None:
            continue
        machine = machine or document["machine"]
        modes.add(document["mode"])
        section = module.render(document, out)
        sections.append(section)
        bold = next(line for line in section.splitlines() if line.startswith("**"))
        headlines.append(f"- {module.TITLE}: {bold.strip('*')}")
    meta_path = out / "runtimes.json"
    previous = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    previous.update(runtimes)
    meta_path.write_text(json.dumps(previous, indent=2) + "\n")
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in previous.items() if k != "total")
    if "total" in previous:
        timing += f"; total {previous['total']:.0f} s"
    text = "\n\n".join(
        [
            "# qomon_async benchmarks",
            f"Produced by `python -m benchmarks{' --quick' if modes == {'quick'} else ''}` "
            f"({' and '.join(sorted(modes))} mode). The machine is shared and noisy: read the "
            "ratios (contenders measured side by side, alternated, medians), not the absolute "
            "numbers. Runtimes: " + timing + ".",
            "## Headlines\n\n" + "\n".join(headlines),
            *sections,
            _machine_section(machine or machine_info()),
        ]
    )
    path = out / "README.md"
    path.write_text(text + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    settings = Settings(quick=args.quick)
    settings.out = args.out or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    settings.out.mkdir(parents=True, exist_ok=True)
    runtimes: dict[str, float] = {}
    if not args.render_only:
        started = time.perf_counter()
        for name in _selected(args.only):
            log(f"{name}: starting ({settings.mode})")
            t0 = time.perf_counter()
            BENCHMARKS[name].run(settings)
            runtimes[name] = time.perf_counter() - t0
            log(f"{name}: {runtimes[name]:.0f} s")
        if not args.only:
            runtimes["total"] = time.perf_counter() - started
    path = render(settings.out, runtimes)
    log(f"wrote {path}")
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
