"""Shared helpers of the benchmarks: subprocesses, servers, machine facts, statistics, output.

Every measurement runs in a fresh subprocess (``python -m benchmarks.bench_x --worker JSON``)
that prints one JSON document as its last line of stdout; the parent process only schedules,
collects and renders. Servers are separate processes too (:func:`server`), so that the client's
``time.process_time()`` counts the client alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

API_KEY = "bench-key"

#: Libraries whose versions are recorded with every result.
LIBRARIES = (
    "qomon-async",
    "aiohttp",
    "msgspec",
    "aiolimiter",
    "python-backoff",
    "httpx",
    "requests",
    "urllib3",
    "pydantic",
    "pydantic-core",
    "matplotlib",
    "psutil",
)

if TYPE_CHECKING:
    from qomon_async import ContactDict


# --------------------------------------------------------------------------------------------
# Run configuration (set by __main__)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Settings:
    """What ``python -m benchmarks`` was asked for."""

    quick: bool = False
    out: Path = RESULTS_DIR
    verbose: bool = True

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"


def log(message: str) -> None:
    """Progress on stderr (stdout of workers is reserved for their JSON)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Workers: one measurement, one fresh process
# --------------------------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker process failed; carries its stderr."""


#: glibc's malloc thresholds for the workers that measure CPU or throughput: a mapped block
#: only above 512 KiB, twice asyncio's 256 KiB read buffer, and the heap given back to the
#: system only beyond 1 MiB free at its top. glibc raises its own thresholds (to the size of
#: the block, and twice that) the first time a process frees a large mapped block; these
#: values put every worker in that state from the start, with room to spare. Left to glibc,
#: that buffer cost a worker 0 to 2 minor page faults per answer depending on its allocation
#: history (see the client-cost benchmark). Not for the memory benchmark, which measures the
#: default. Ignored by other allocators.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "524288", "MALLOC_TRIM_THRESHOLD_": "1048576"}


def run_worker(
    module: str,
    params: Mapping[str, Any],
    *,
    timeout: float = 600.0,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> --worker JSON`` and return its JSON answer; ``env``:
    variables added to this process's environment for the worker."""
    command = [sys.executable, "-m", f"benchmarks.{module}", "--worker", json.dumps(params)]
    completed = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    if completed.returncode != 0:
        raise WorkerError(
            f"worker {module} {params} exited {completed.returncode}:\n{completed.stderr[-4000:]}"
        )
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    if not lines:
        raise WorkerError(f"worker {module} {params} printed nothing:\n{completed.stderr[-4000:]}")
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer


def run_worker_retrying(
    module: str,
    params: Mapping[str, Any],
    failures: list[dict[str, Any]],
    *,
    timeout: float = 600.0,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """:func:`run_worker`, once more in a fresh process if it fails; each failure is appended
    to ``failures`` (the parameters and the end of the error) so that the report can say so.
    A second failure is raised: a benchmark that cannot run is not silently skipped."""
    try:
        return run_worker(module, params, timeout=timeout, env=env)
    except (WorkerError, subprocess.TimeoutExpired) as exc:
        shown = {k: v for k, v in params.items() if k not in ("url", "server_pid", "tag")}
        last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
        failures.append({"params": shown, "error": last[0][:300]})
        log(f"{module}: a worker failed ({last[0][:200]}); running it again")
        return run_worker(module, params, timeout=timeout, env=env)


def worker_main(worker: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The ``__main__`` of a bench module: ``--worker JSON`` runs one measurement."""
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        result = worker(json.loads(sys.argv[2]))
        print(json.dumps(result), flush=True)
        return
    print(f"usage: python -m {sys.argv[0]} --worker JSON (run `python -m benchmarks` instead)")
    sys.exit(2)


@dataclasses.dataclass
class ServerProcess:
    """A server subprocess (see ``benchmarks._servers``): its URL and pid."""

    url: str
    pid: int
    process: subprocess.Popen[str]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server has used so far (psutil)."""
        import psutil  # noqa: PLC0415

        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)


@contextlib.contextmanager
def server(kind: str, **options: Any) -> Iterator[ServerProcess]:
    """Start ``python -m benchmarks._servers KIND --opt value...`` and stop it afterwards.

    ``kind`` is ``tiny`` (a minimal create-answering server) or ``fake`` (FakeQomon).
    """
    command = [sys.executable, "-m", "benchmarks._servers", kind]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            command.append(flag)
        elif value is not False and value is not None:
            command += [flag, str(value)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("URL="):
            raise WorkerError(f"server {kind} did not start: {line!r}")
        yield ServerProcess(line.removeprefix("URL="), process.pid, process)
    finally:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the server exits when its stdin closes
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------------------------
# The same payloads for every contender
# --------------------------------------------------------------------------------------------


def make_contact(i: int, tag: str = "") -> ContactDict:
    """A realistic contact to create, distinct by ``i`` (and ``tag``), ~300 bytes of JSON."""
    return {
        "firstname": f"Jeanne{i}",
        "surname": "Dupont",
        "mail": f"jeanne.dupont.{tag}{i}@example.org",
        "mobile": "0602030405",
        "address": {
            "housenumber": "12",
            "street": "rue de la paix",
            "postalcode": "75002",
            "city": "Paris",
            "country": "France",
        },
        "tags": [{"name": "bench"}, {"name": "volunteer"}],
    }


def request_headers() -> dict[str, str]:
    """What every contender sends besides the body (the library sends the same four)."""
    return {
        "Authorization": f"Bearer {API_KEY}",
        "User-Agent": "qomon-bench/1.0",
        "Accept": "application/json",
        "Content-Type": "application/json",
    }


# --------------------------------------------------------------------------------------------
# Machine facts
# --------------------------------------------------------------------------------------------


def run_queue_wait() -> float:
    """Seconds the calling thread has spent runnable but waiting for a CPU (Linux schedstat).

    Read at the start and the end of a timed span: the difference, over the span's wall time,
    is how much of it the machine's other load took. NaN where the kernel does not say.
    """
    try:
        fields = Path("/proc/thread-self/schedstat").read_text().split()
        return int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    return completed.stdout.strip() or "unknown"


def machine_info() -> dict[str, Any]:
    """Where the numbers came from: CPU, cores, load, Python, libraries, date."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average": load,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "git_commit": git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def spread(values: Sequence[float]) -> float:
    """Half the inter-quartile-ish range as a fraction of the median (a noise indicator)."""
    if len(values) < 2:
        return 0.0
    ordered = sorted(values)
    low = ordered[len(ordered) // 4]
    high = ordered[(3 * len(ordered)) // 4 if len(ordered) > 3 else -1]
    mid = median(values)
    return (high - low) / 2 / mid if mid else 0.0


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def write_json(settings: Settings, name: str, payload: Mapping[str, Any]) -> Path:
    settings.out.mkdir(parents=True, exist_ok=True)
    path = settings.out / f"{name}.json"
    document = {"benchmark": name, "mode": settings.mode, "machine": machine_info(), **payload}
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


def read_json(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    if not path.exists():
        return None
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def fmt(value: float | int | None, digits: int = 3) -> str:
    """A number for a table: ``—`` for missing, integers plainly, floats to ``digits`` figures."""
    if value is None:
        return "—"
    if isinstance(value, float) and value != value:  # NaN
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


#: A table cell that reads as a number: 1,234 / 0.52 / 1.3x / 45% / ±3%.
_NUMERIC = re.compile(r"^[±+-]?[\d,]*\.?\d+(e[+-]?\d+)?[x%]?$")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table; numeric-looking columns are right-aligned."""

    def numeric(column: int) -> bool:
        cells = [row[column] for row in rows if row[column] not in ("", "—")]
        return bool(cells) and all(_NUMERIC.match(c) for c in cells)

    align = ["---:" if numeric(i) else "---" for i in range(len(headers))]
    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join(align) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    return "\n".join(lines)


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend (no display needed)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "font.size": 9,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


#: One colour per contender, the same in every plot.
COLOURS = {
    "qomon_async": "#1f77b4",
    "aiohttp": "#2ca02c",
    "httpx": "#ff7f0e",
    "requests": "#d62728",
    "naive": "#d62728",
    "json": "#2ca02c",
    "pydantic": "#9467bd",
    "msgspec": "#1f77b4",
    "floor": "#17becf",
    "ideal": "#555555",
}
