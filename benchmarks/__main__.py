"""``python -m benchmarks [--quick] [--only NAME ...] [--render-only]``: run, then render.

Each benchmark writes ``results/NAME.json``; rendering reads every JSON present, so ``--only``
re-runs one benchmark and refreshes the summary with the others' last numbers. Rendering the
full results (``benchmarks/results``, not ``--quick``'s ``results/quick``) also refreshes the
generated part of the docs site's page ``docs/benchmarks.md`` and its plots in
``docs/img/benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import (
    bench_budget,
    bench_client_cost,
    bench_decode,
    bench_instructions,
    bench_latency,
    bench_limiter,
    bench_memory,
    bench_processes,
)
from benchmarks._common import RESULTS_DIR, Settings, log, machine_info, markdown_table, read_json

BENCHMARKS: dict[str, ModuleType] = {
    "client_cost": bench_client_cost,
    "budget": bench_budget,
    "latency": bench_latency,
    "memory": bench_memory,
    "decode": bench_decode,
    "instructions": bench_instructions,
    "limiter": bench_limiter,
    "processes": bench_processes,
}
ALIASES = {
    "client-cost": "client_cost",
    "cost": "client_cost",
    "decoding": "decode",
    "callgrind": "instructions",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="qomon_async's benchmarks."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer rounds and shorter jobs, into benchmarks/results/quick (client_cost and "
        "latency: about 5 minutes on 2 idle cores, 16 under heavy load; the full run: 40 to 60 "
        "minutes idle, two hours or more under load)",
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


def _machine_section(machine: dict[str, Any], runs: list[tuple[str, dict[str, Any]]]) -> str:
    """The machine, and each benchmark's commit, date and load (``--only`` reruns some of them:
    the results of one README may come from several commits)."""
    libraries = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items())
    rows = [
        ["CPU", machine["cpu_model"]],
        ["cores", f"{machine['cores']} ({machine['usable_cores']} usable)"],
        ["Python", f"{machine['implementation']} {machine['python']}"],
        ["platform", machine["platform"]],
        ["libraries", libraries],
    ]
    table = markdown_table(["", ""], rows)
    by_run = markdown_table(
        ["benchmark", "commit", "date", "load average (1, 5, 15 min) when written"],
        [
            [title, m["git_commit"], m["date"], " / ".join(str(x) for x in m["load_average"])]
            for title, m in runs
        ]
        or [["—", machine["git_commit"], machine["date"], "—"]],
    )
    return "## Machine\n\n" + table + "\n\n" + by_run


def render(out: Path, runtimes: dict[str, float]) -> Path:
    """Render every benchmark whose JSON is in ``out``; write ``out/README.md``."""
    sections, headlines, machine, modes = [], [], None, set()
    runs: list[tuple[str, dict[str, Any]]] = []
    for name, module in BENCHMARKS.items():
        document = read_json(out, name)
        if document is None:
            continue
        machine = machine or document["machine"]
        runs.append((module.TITLE, document["machine"]))
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
            _machine_section(machine or machine_info(), runs),
        ]
    )
    path = out / "README.md"
    path.write_text(text + "\n")
    if out.resolve() == RESULTS_DIR.resolve():
        render_docs(out, headlines)
    return path


DOCS_PAGE = RESULTS_DIR.parent.parent / "docs" / "benchmarks.md"
DOCS_IMAGES = DOCS_PAGE.parent / "img" / "benchmarks"
GENERATED = ("<!-- generated by python -m benchmarks: begin -->", "<!-- generated: end -->")


def render_docs(out: Path, headlines: list[str]) -> None:
    """Refresh the generated block of ``docs/benchmarks.md`` and copy the plots next to it."""
    if not DOCS_PAGE.exists():
        return
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    parts = ["### Headlines", "\n".join(headlines)]
    for name, module in BENCHMARKS.items():
        document = read_json(out, name)
        if document is None:
            continue
        summary = getattr(module, "docs_summary", None)
        if summary is not None:
            parts += [f"### {module.TITLE}", summary(document)]
        plot = out / f"{name}.png"
        if plot.exists():
            shutil.copyfile(plot, DOCS_IMAGES / plot.name)
            if summary is None:
                parts.append(f"### {module.TITLE}")
            parts.append(f"![{module.TITLE}](img/benchmarks/{plot.name})")
    runs = []
    for name, module in BENCHMARKS.items():
        document = read_json(out, name)
        if document is not None:
            machine = document["machine"]
            load = " / ".join(str(x) for x in machine["load_average"])
            runs.append(
                f"- {module.TITLE}: {document['mode']} mode, commit {machine['git_commit']}, "
                f"{machine['date']}, load average {load} (1, 5, 15 min) when written, on "
                f"{machine['cores']} cores ({machine['cpu_model']}), "
                f"{machine['implementation']} {machine['python']}."
            )
    if runs:
        parts += ["### Where and when", "\n".join(runs)]
    text = DOCS_PAGE.read_text(encoding="utf-8")
    begin, end = GENERATED
    head, found, rest = text.partition(begin)
    if not found:
        return
    _, found, tail = rest.partition(end)
    if not found:
        return
    block = "\n\n".join(parts)
    DOCS_PAGE.write_text(f"{head}{begin}\n\n{block}\n\n{end}{tail}", encoding="utf-8")


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
