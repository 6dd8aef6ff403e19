"""Compare two versions of the package on one client-cost job: ``python -m benchmarks.ab``.

A development tool, not one of the benchmarks: it answers "did this change make a create
cheaper?" before a full ``client_cost`` run. Each contender is a **tree** (a checkout of this
repository: the working tree, or a ``git worktree`` of another commit) and one of
``client_cost``'s senders (``default``, ``no_limit``, ``aiohttp``). The jobs of a round run in
their own processes and take turns exactly as in ``client_cost`` (its ``run_round``), so the
host's drift falls on all of them alike; each job imports the package from its own tree.

Example, the working tree against ``main``, at c=1, 10,000 creates, 8 rounds::

    git worktree add --detach /tmp/base main
    python -m benchmarks.ab 1 10000 8 floor=/tmp/base:aiohttp old=/tmp/base:default \\
        new=.:default

The first contender is the floor: every round prints each job's CPU µs per create and its
ratio to the floor's; at the end, per contender, the median of the rounds' ratios and the
ratio of the sums. On this shared host a ratio moves by several per cent from round to round:
repeat a run before believing a difference of 1 or 2%.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import bench_client_cost as cost
from benchmarks._common import ServerProcess, median, server


def _contender(text: str) -> tuple[str, Path, str]:
    name, _, rest = text.partition("=")
    tree, _, sender = rest.rpartition(":")
    if not name or not tree or sender not in ("default", "no_limit", "aiohttp"):
        raise argparse.ArgumentTypeError(f"expected NAME=TREE:default|no_limit|aiohttp: {text!r}")
    path = Path(tree).resolve()
    if not (path / "qomon_async").is_dir() or not (path / "benchmarks").is_dir():
        raise argparse.ArgumentTypeError(f"{tree!r} is not a checkout of this repository")
    return name, path, sender


def _round(
    contenders: list[tuple[str, Path, str]],
    concurrency: int,
    n: int,
    repeat: int,
    srv: ServerProcess,
) -> dict[str, float]:
    """One round of ``client_cost``'s (:func:`run_round`), each job from its own tree; CPU µs
    per create of each contender."""
    shift = repeat % len(contenders)
    jobs = [
        {
            "contender": sender,
            "concurrency": concurrency,
            "size": n,
            "n": n,
            "repeat": repeat,
            "warmup": max(200, 2 * concurrency),
            "name": name,
            "tree": str(tree),
        }
        for name, tree, sender in contenders[shift:] + contenders[:shift]
    ]
    answers = cost.run_round({"jobs": jobs}, srv)
    return {a["name"]: a["cpu"] / a["done"] * 1e6 for a in answers}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    parser.add_argument("concurrency", type=int)
    parser.add_argument("creates", type=int, help="creates per job")
    parser.add_argument("rounds", type=int)
    parser.add_argument(
        "contenders", nargs="+", type=_contender, help="NAME=TREE:SENDER; the first is the floor"
    )
    args = parser.parse_args(argv)
    contenders: list[tuple[str, Path, str]] = args.contenders
    names = [name for name, _, _ in contenders]
    if len(set(names)) != len(names):
        parser.error("contender names must differ")
    floor = names[0]
    cpu: dict[str, list[float]] = {name: [] for name in names}
    with server("tiny") as srv:
        for repeat in range(args.rounds):
            measured = _round(contenders, args.concurrency, args.creates, repeat, srv)
            for name in names:
                cpu[name].append(measured[name])
            shown = "  ".join(
                f"{name}={measured[name]:.1f} ({measured[name] / measured[floor]:.3f})"
                for name in names
            )
            print(f"round {repeat + 1}: {shown}", flush=True)
    for name in names:
        ratios = [mine / base for mine, base in zip(cpu[name], cpu[floor], strict=True)]
        print(
            f"{name:>12}: median ratio {median(ratios):.3f}, ratio of sums "
            f"{sum(cpu[name]) / sum(cpu[floor]):.3f}, median {median(cpu[name]):.1f} µs/create"
        )


if __name__ == "__main__":
    main()
