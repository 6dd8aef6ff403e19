"""Client cost: CPU microseconds per create of the default client, against the raw floor.

Every contender sends the same ``POST /contacts`` bodies (``{"data": {"contact": ...}}``, the
contacts of :func:`benchmarks._common.make_contact`) with the same headers to the same tiny
server process (``benchmarks._servers tiny``: Qomon's seed create answer with a new id and the
``X-Ratelimit-*`` headers of a huge bucket, ``burst:1000000;rate:1000000.0``, so that a rate
limiter does its real work on every answer and never waits), reads each answer whole and takes
the new id out of it.

The contenders:

- ``default``: ``QomonClient`` as users build it (rate limiter on, retries, dedupe), its pool
  ``create_contacts(items, concurrency=c)``; only ``max_connections=max(64, c)`` is set.
- ``no_limit``: the same with ``rate_limit=False``.
- ``aiohttp``: the floor: ``c`` tasks on one ``aiohttp.ClientSession`` (``limit=c``), each
  ``json.dumps`` a body, posts it, reads the answer and ``json.loads`` it for the id.
- ``httpx`` and ``requests`` (full mode only, 2,000 creates, c <= 64): references.

Each measurement is one process: imports, the input list built, a warm-up job (a throwaway
client, so that every code path has run once), then the timed job: a fresh client opened, the
``n`` creates, the client closed. CPU is the process's ``time.process_time()`` (every thread)
over the timed job alone; the input list is built before and frozen out of the garbage
collector's sight (``gc.freeze``), as a streamed input would be.

The jobs of one round (one per contender, same n and c) **take turns** (:class:`Turns`): each
runs ``TURN`` confirmed creates, then freezes while the next one runs, until all are done. On
this shared host the CPU of a job moves by 20-35% from one run to the next, with the host's
other load; whole jobs run one after the other meet different moments of it, turns of a few
tens of milliseconds meet the same. The ratio to raw aiohttp is taken within each round, and
its median over the rounds is reported (spread about ±2%, against ±20-35% for whole jobs). The
server's CPU is read from ``/proc`` (psutil) over the whole round, to show it is not the
bottleneck. The contender that starts rotates from round to round.

Every worker runs with glibc's malloc thresholds fixed (:data:`MALLOC_ENV`). Left to glibc,
they move with a process's history: asyncio reads each answer into a fresh 256 KiB buffer,
which glibc serves either from fresh mapped pages (up to 2 page faults per create, each 5 to
10 µs of this machine's CPU) or from its heap (none), depending on whether that process has
yet freed a large mapped block. Two workers running the same code then differed by up to 15%
of CPU per create, by luck; a long-running process settles with no faults, which the fixed
thresholds give every worker from the start. Each job's page faults per create are recorded.

``python -m benchmarks.bench_client_cost --profile`` profiles one job instead (cProfile): see
:func:`profile_main`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from benchmarks._common import (
    API_KEY,
    COLOURS,
    MALLOC_ENV,
    ROOT,
    ServerProcess,
    Settings,
    WorkerError,
    fmt,
    log,
    make_contact,
    markdown_table,
    median,
    pyplot,
    ratio,
    request_headers,
    run_queue_wait,
    server,
    spread,
    worker_main,
    write_json,
)

if TYPE_CHECKING:
    from qomon_async import ContactDict

NAME = "client_cost"
TITLE = "Client cost per create"
#: The contenders of the matrix, and the references run at the smallest n only (full mode).
MAIN = ("default", "no_limit", "aiohttp")
REFERENCES = ("httpx", "requests")
CONTENDERS = MAIN + REFERENCES
#: httpx is 5-30x slower per request here: it sends a quarter of the requests.
SHARE = {"httpx": 0.25}
LABELS = {
    "default": "qomon_async, default (limiter on)",
    "no_limit": "qomon_async, rate_limit=False",
    "aiohttp": "raw aiohttp + json (floor)",
    "httpx": "httpx.AsyncClient + json",
    "requests": "requests.Session (c=1 sequential; c>1 threads)",
}
SHORT = {"default": "default", "no_limit": "rate_limit=False", "aiohttp": "aiohttp"}
#: The issue's targets: CPU per create over raw aiohttp's at the same c and n.
TARGETS = {"default": 1.10, "no_limit": 1.05}
COLOURS_HERE = {
    "default": COLOURS["qomon_async"],
    "no_limit": "#17becf",
    "aiohttp": COLOURS["aiohttp"],
    "httpx": COLOURS["httpx"],
    "requests": COLOURS["requests"],
}

#: The matrix: run lengths, concurrencies, rounds per run length. The short runs spread most
#: from round to round (a 2,000-creates job is under a second of CPU), so they have more rounds:
#: their medians then move less with one round's luck.
FULL: dict[str, Any] = {
    "sizes": (2_000, 20_000, 100_000),
    "rounds": {2_000: 9, 20_000: 5, 100_000: 3},
}
QUICK: dict[str, Any] = {"sizes": (2_000, 20_000), "rounds": {2_000: 3, 20_000: 2}}
CONCURRENCIES = (1, 8, 64, 256)
REFERENCE_CONCURRENCIES = (1, 8, 64)
REFERENCE_ROUNDS = 3


# --------------------------------------------------------------------------------------------
# The contenders (run inside the worker process)
# --------------------------------------------------------------------------------------------


Items = list["ContactDict"]
#: Called once per confirmed create (see :class:`Turns`); by default it does nothing.
Tick = Callable[[], None]


class Sender(Protocol):
    """An open contender: sends a list of items, returns how many creates were confirmed,
    calling ``tick`` after each."""

    def __call__(self, items: Items, tick: Tick = ..., /) -> Awaitable[int]: ...


def _no_tick() -> None:
    """The tick of a job that does not take turns."""


def _body(item: ContactDict) -> bytes:
    return json.dumps({"data": {"contact": item}}).encode()


def _id_of(payload: bytes) -> int:
    contact_id: int = json.loads(payload)["data"]["contact"]["id"]
    return contact_id


@contextlib.asynccontextmanager
async def open_qomon(url: str, concurrency: int, *, rate_limit: bool) -> AsyncIterator[Sender]:
    """A ``QomonClient`` (default settings but ``rate_limit``), its bulk pool as the sender."""
    from qomon_async import QomonClient  # noqa: PLC0415
    from qomon_async._config import DEFAULT_MAX_CONNECTIONS  # noqa: PLC0415

    connections = max(DEFAULT_MAX_CONNECTIONS, concurrency)
    if rate_limit:  # the default: nothing said about it
        client = QomonClient(API_KEY, base_url=url, max_connections=connections)
    else:
        client = QomonClient(API_KEY, base_url=url, max_connections=connections, rate_limit=False)

    async def send(items: Items, tick: Tick = _no_tick) -> int:
        done = 0
        async for result in client.create_contacts(items, concurrency=concurrency):
            if not result.ok or result.contact is None or result.contact.id is None:
                raise RuntimeError(f"create failed: {result}")
            done += 1
            tick()
        return done

    async with client:
        yield send


@contextlib.asynccontextmanager
async def open_aiohttp(url: str, concurrency: int) -> AsyncIterator[Sender]:
    """``concurrency`` tasks on one ClientSession, each sending the next item."""
    import aiohttp  # noqa: PLC0415

    headers = request_headers()
    endpoint = url + "/contacts"

    async def send(items: Items, tick: Tick = _no_tick) -> int:
        done = 0

        async def work(source: Iterator[ContactDict]) -> None:
            nonlocal done
            for item in source:
                async with session.post(endpoint, data=_body(item), headers=headers) as r:
                    payload = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"status {r.status}")
                _id_of(payload)
                done += 1
                tick()

        source = iter(items)
        await asyncio.gather(*(work(source) for _ in range(concurrency)))
        return done

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield send


@contextlib.asynccontextmanager
async def open_httpx(url: str, concurrency: int) -> AsyncIterator[Sender]:
    """``concurrency`` tasks on one AsyncClient whose pool holds ``concurrency`` connections."""
    import httpx  # noqa: PLC0415

    headers = request_headers()
    endpoint = url + "/contacts"

    async def send(items: Items, tick: Tick = _no_tick) -> int:
        done = 0

        async def work(source: Iterator[ContactDict]) -> None:
            nonlocal done
            for item in source:
                r = await client.post(endpoint, content=_body(item), headers=headers)
                if r.status_code != 200:
                    raise RuntimeError(f"status {r.status_code}")
                _id_of(r.content)
                done += 1
                tick()

        source = iter(items)
        await asyncio.gather(*(work(source) for _ in range(concurrency)))
        return done

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        yield send


def opener(
    contender: str, url: str, concurrency: int
) -> contextlib.AbstractAsyncContextManager[Sender]:
    """The async contender ``contender``, opened on ``url`` for ``concurrency``."""
    if contender == "default":
        return open_qomon(url, concurrency, rate_limit=True)
    if contender == "no_limit":
        return open_qomon(url, concurrency, rate_limit=False)
    if contender == "aiohttp":
        return open_aiohttp(url, concurrency)
    if contender == "httpx":
        return open_httpx(url, concurrency)
    raise ValueError(f"unknown async contender {contender!r}")


def run_requests(url: str, items: Items, concurrency: int, tick: Tick = _no_tick) -> int:
    """A whole job with requests: c=1 a sequential loop on one Session; c>1 c threads, one
    Session each, pulling from a shared iterator."""
    import requests  # noqa: PLC0415

    headers = request_headers()
    lock = threading.Lock()
    source: Iterator[ContactDict] = iter(items)
    counts = [0] * concurrency
    sessions = [requests.Session() for _ in range(concurrency)]

    def work(slot: int) -> None:
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
            with lock:  # a turn taken (see Turns) holds the other threads at their next item
                tick()

    if concurrency == 1:
        work(0)  # plainly sequential, as the public integrations do
    else:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for session in sessions:
        session.close()
    return sum(counts)


class _ServerClock:
    """CPU seconds of the server process (by pid), read from /proc through psutil."""

    def __init__(self, pid: int | None) -> None:
        self.process: Any = None
        if pid:
            import psutil  # noqa: PLC0415

            self.process = psutil.Process(pid)

    def read(self) -> float:
        if self.process is None:
            return float("nan")
        times = self.process.cpu_times()
        return float(times.user + times.system)


def _count_iterations(loop: asyncio.AbstractEventLoop) -> list[int]:
    """Count the loop's iterations from now on (``BaseEventLoop._run_once`` calls): a task that
    waits one iteration for a lock or a future shows here. Costs well under 1 µs each."""
    counter = [0]
    run_once = loop._run_once  # type: ignore[attr-defined]

    def counting() -> None:
        counter[0] += 1
        run_once()

    loop._run_once = counting  # type: ignore[attr-defined]
    return counter


class Turns:
    """Contenders take turns: a job runs ``size`` creates, then hands the machine on.

    The jobs of one round (one process per contender, each a whole job from a fresh client to
    its close) run in lockstep: the parent (:func:`run_round`) gives the turn to one of them;
    it runs until it has confirmed ``size`` more creates, writes ``y`` to the parent and blocks
    (the whole process, its event loop included) until the turn comes back. A job that ends
    writes ``f``. So every contender meets the machine's other load in slices of a few tens of
    milliseconds, alternated, instead of in whole runs seconds apart: the host's drift between
    runs (±20-35% here) falls on all of them alike and leaves their ratio.

    A frozen job's requests already sent are answered by the server meanwhile; the job reads
    the answers when its turn comes back, as a loaded client would. Its CPU is
    ``process_time``, which does not move while it is frozen; its wall time is the sum of its
    turns (``active``).
    """

    def __init__(self, go_fd: int, done_fd: int, size: int) -> None:
        self.go_fd, self.done_fd, self.size = go_fd, done_fd, size
        self.left = size
        self.active = 0.0
        self.resumed = 0.0
        self.turns = 0

    def _signal(self, message: bytes) -> None:
        os.write(self.done_fd, message)

    def wait(self) -> None:
        """Block until the parent gives the turn."""
        if os.read(self.go_fd, 1) != b"g":
            raise RuntimeError("the parent closed the turn pipe")
        self.resumed = time.perf_counter()
        self.turns += 1

    def ready(self) -> None:
        """Warmed up: tell the parent, and wait for the first turn."""
        self._signal(b"r")
        self.wait()

    def tick(self) -> None:
        """One create confirmed: after ``size`` of them, hand the turn on."""
        self.left -= 1
        if self.left == 0:
            self.left = self.size
            self.active += time.perf_counter() - self.resumed
            self._signal(b"y")
            self.wait()

    def finish(self) -> None:
        """The job is over (clocks read): leave the rotation."""
        self.active += time.perf_counter() - self.resumed
        self._signal(b"f")


def _page_faults() -> float:
    """Minor page faults of this process so far (NaN where ``resource`` is missing)."""
    try:
        import resource  # noqa: PLC0415 (Unix only)
    except ImportError:  # pragma: no cover (Windows)
        return float("nan")
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def measure_job(
    contender: str,
    url: str,
    items: Items,
    warm: Items,
    concurrency: int,
    server_pid: int | None,
    turns: Turns | None = None,
) -> dict[str, float]:
    """Warm up on a throwaway client, then time one whole job on a fresh one (see module doc).

    With ``turns``, the timed job starts at the first turn the parent gives and takes turns
    with the other contenders of its round (see :class:`Turns`); its server CPU is then left
    to the parent, which reads it over the whole round.
    """
    server_clock = _ServerClock(None if turns else server_pid)
    if contender == "requests":
        run_requests(url, warm, concurrency)
    else:

        async def warm_up() -> None:
            async with opener(contender, url, concurrency) as send:
                await send(warm)

        asyncio.run(warm_up())
    gc.collect()
    gc.freeze()  # the input list and the imported modules: out of the collector's sight
    result: dict[str, float] = {}
    tick = turns.tick if turns else _no_tick

    def start() -> None:
        if turns:
            turns.ready()
        result["server_cpu0"] = server_clock.read()
        result["queued0"] = run_queue_wait()
        result["faults0"] = _page_faults()
        result["wall0"], result["cpu0"] = time.perf_counter(), time.process_time()

    def stop(done: int) -> None:
        cpu1, wall1 = time.process_time(), time.perf_counter()
        result.update(
            page_faults=_page_faults() - result.pop("faults0"),
            done=done,
            cpu=cpu1 - result.pop("cpu0"),
            wall=wall1 - result.pop("wall0"),
            server_cpu=server_clock.read() - result.pop("server_cpu0"),
            queued=run_queue_wait() - result.pop("queued0"),
        )
        if turns:
            turns.finish()
            result.update(wall=turns.active, turns=turns.turns)

    if contender == "requests":
        start()
        stop(run_requests(url, items, concurrency, tick))
    else:

        async def timed() -> None:
            loop = asyncio.get_running_loop()
            iterations = _count_iterations(loop)
            start()
            async with opener(contender, url, concurrency) as send:
                done = await send(items, tick)
            stop(done)
            result["loop_iterations"] = iterations[0]

        asyncio.run(timed())
    if result["done"] != len(items):
        raise RuntimeError(f"{contender}: {result['done']} creates of {len(items)}")
    return result


def worker(params: dict[str, Any]) -> dict[str, Any]:
    """One timed job: ``contender``, ``concurrency``, ``n`` creates after ``warmup``; taking
    turns when the parent passed its pipes (``go_fd``, ``done_fd``, ``turn``)."""
    n, warmup, tag = params["n"], params["warmup"], params["tag"]
    warm = [make_contact(i, tag + "w") for i in range(warmup)]
    items = [make_contact(i, tag) for i in range(n)]
    turns = None
    if "go_fd" in params:
        turns = Turns(params["go_fd"], params["done_fd"], params["turn"])
    return measure_job(
        params["contender"],
        params["url"],
        items,
        warm,
        params["concurrency"],
        params.get("server_pid"),
        turns,
    )


# --------------------------------------------------------------------------------------------
# The benchmark (parent process)
# --------------------------------------------------------------------------------------------


#: Confirmed creates per turn (see :class:`Turns`): tens of milliseconds of work.
TURN = 500
#: Seconds a worker may take to warm up, and to end one turn, before it is declared hung.
READY_TIMEOUT = 600.0
TURN_TIMEOUT = 300.0


def plan(settings: Settings) -> list[dict[str, Any]]:
    """Every round, in run order: per (n, c) block, rounds of one job per contender, taking
    turns; the contender that starts rotates from round to round."""
    matrix = QUICK if settings.quick else FULL
    sizes: tuple[int, ...] = matrix["sizes"]
    rounds: dict[int, int] = matrix["rounds"]
    plan_ = []
    for n in sizes:
        for concurrency in CONCURRENCIES:
            with_references = (
                not settings.quick and n == sizes[0] and concurrency in REFERENCE_CONCURRENCIES
            )
            for repeat in range(rounds[n]):
                contenders = list(MAIN)
                if with_references and repeat < REFERENCE_ROUNDS:
                    contenders += REFERENCES
                shift = repeat % len(contenders)
                jobs = [
                    {
                        "contender": contender,
                        "concurrency": concurrency,
                        "size": n,
                        "n": max(int(n * SHARE.get(contender, 1.0)), 50),
                        "repeat": repeat,
                        "warmup": max(200, 2 * concurrency),
                    }
                    for contender in contenders[shift:] + contenders[:shift]
                ]
                plan_.append({"size": n, "concurrency": concurrency, "jobs": jobs})
    return plan_


class _Member:
    """One worker of a round: its process, its ends of the two pipes, its captured output."""

    def __init__(self, job: dict[str, Any], url: str) -> None:
        """``job["tree"]``, if given: the checkout whose package (and benchmarks) the worker
        imports (see ``benchmarks.ab``); this one by default."""
        self.job = job
        tree = Path(job.get("tree", ROOT))
        go_read, self.go = os.pipe()
        self.done, done_write = os.pipe()
        params = {
            **job,
            "url": url,
            "tag": f"r{job['repeat']}{job['contender']}{job['concurrency']}n{job['n']}-",
            "go_fd": go_read,
            "done_fd": done_write,
            "turn": TURN,
        }
        # Files, not pipes: a worker that writes much cannot block on them. Closed by close().
        self.stdout = tempfile.TemporaryFile()  # noqa: SIM115
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115
        command = [sys.executable, "-m", "benchmarks.bench_client_cost", "--worker"]
        imports = {} if tree == ROOT else {"PYTHONPATH": str(tree)}
        try:
            self.process = subprocess.Popen(
                [*command, json.dumps(params)],
                cwd=tree,
                env={**os.environ, **MALLOC_ENV, **imports},
                stdout=self.stdout,
                stderr=self.stderr,
                pass_fds=(go_read, done_write),
            )
        finally:
            os.close(go_read)  # the worker holds them now: its death reads as end of file
            os.close(done_write)

    def error(self, what: str) -> WorkerError:
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors="replace")[-4000:]
        return WorkerError(f"{self.job['contender']} c={self.job['concurrency']}: {what}\n{tail}")

    def expect(self, timeout: float) -> bytes:
        """The worker's next signal: ``r`` (ready), ``y`` (turn over) or ``f`` (finished)."""
        ready, _, _ = select.select([self.done], [], [], timeout)
        if not ready:
            raise self.error(f"no word from the worker in {timeout:.0f} s")
        signal = os.read(self.done, 1)
        if signal not in (b"r", b"y", b"f"):
            self.process.wait(timeout=10)
            raise self.error(f"the worker exited ({self.process.returncode})")
        return signal

    def answer(self) -> dict[str, Any]:
        if self.process.wait(timeout=60) != 0:
            raise self.error(f"the worker exited {self.process.returncode}")
        self.stdout.seek(0)
        lines = [line for line in self.stdout.read().decode().splitlines() if line.strip()]
        if not lines:
            raise self.error("the worker printed nothing")
        answer: dict[str, Any] = json.loads(lines[-1])
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for fd in (self.go, self.done):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.stdout.close()
        self.stderr.close()


def run_round(round_: dict[str, Any], srv: ServerProcess) -> list[dict[str, Any]]:
    """One round: every contender's job in its own process, warmed up side by side, then
    timed taking turns (the rotation starts with the first job of the round)."""
    members: list[_Member] = []
    try:
        for job in round_["jobs"]:
            members.append(_Member(job, srv.url))
        for member in members:
            if member.expect(READY_TIMEOUT) != b"r":
                raise member.error("a turn ended before the first was given")
        server_cpu0, wall0 = srv.cpu_seconds(), time.perf_counter()
        active = list(members)
        while active:
            for member in list(active):
                os.write(member.go, b"g")
                signal = member.expect(TURN_TIMEOUT)
                if signal == b"f":
                    active.remove(member)
                elif signal != b"y":
                    raise member.error("a second 'ready'")
        server_cpu, wall = srv.cpu_seconds() - server_cpu0, time.perf_counter() - wall0
        answers = [{**member.job, **member.answer()} for member in members]
    finally:
        for member in members:
            member.close()
    requests = sum(answer["done"] for answer in answers)
    for answer in answers:  # the server served the whole round: its cost is the round's
        answer.update(server_cpu=server_cpu * answer["done"] / requests, round_wall=wall)
        answer["server_busy"] = server_cpu / wall
    return answers


def run(settings: Settings) -> dict[str, Any]:
    rounds = plan(settings)
    runs: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    started = time.perf_counter()
    with server("tiny") as srv:
        for number, round_ in enumerate(rounds, 1):
            try:
                runs += run_round(round_, srv)
            except (WorkerError, subprocess.TimeoutExpired) as exc:  # once more, then raise
                last = str(exc).strip().splitlines()[:1] or [type(exc).__name__]
                shown = {k: round_[k] for k in ("size", "concurrency")}
                failures.append({"params": shown, "error": last[0][:300]})
                log(f"{NAME}: a round failed ({last[0][:200]}); running it again")
                runs += run_round(round_, srv)
            if number == len(rounds) or (rounds[number]["size"], rounds[number]["concurrency"]) != (
                round_["size"],
                round_["concurrency"],
            ):
                log(
                    f"{NAME}: n={round_['size']:,} c={round_['concurrency']} done "
                    f"({number}/{len(rounds)} rounds, {time.perf_counter() - started:.0f} s)"
                )
    summary = summarize(runs)
    matrix = QUICK if settings.quick else FULL
    payload = {
        "title": TITLE,
        "parameters": {
            "sizes": list(matrix["sizes"]),
            "concurrencies": list(CONCURRENCIES),
            "rounds": {str(k): v for k, v in matrix["rounds"].items()},
            "references": {
                "contenders": list(REFERENCES) if not settings.quick else [],
                "size": matrix["sizes"][0],
                "concurrencies": list(REFERENCE_CONCURRENCIES),
                "rounds": REFERENCE_ROUNDS,
                "httpx_share": SHARE["httpx"],
            },
            "warmup": "max(200, 2 x c) creates on a throwaway client",
            "turn": f"{TURN} confirmed creates per turn",
            "server_bucket": "burst:1000000;rate:1000000.0",
            "malloc": MALLOC_ENV,
            "targets": TARGETS,
        },
        "summary": summary,
        "runs": runs,
        "failures": failures,
    }
    write_json(settings, NAME, payload)
    return payload


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (contender, c, n): medians over the rounds; the ratio to raw aiohttp is the median
    of the rounds' paired ratios (each against the aiohttp job it took turns with)."""
    keys = sorted({(r["size"], r["concurrency"]) for r in runs})
    summary = []
    for size, concurrency in keys:
        block = [r for r in runs if r["size"] == size and r["concurrency"] == concurrency]
        floor_runs = {r["repeat"]: r for r in block if r["contender"] == "aiohttp"}
        for contender in CONTENDERS:
            mine = [r for r in block if r["contender"] == contender]
            if not mine:
                continue
            cpu_us = [r["cpu"] / r["done"] * 1e6 for r in mine]
            paired = [
                ratio(r["cpu"] / r["done"], f["cpu"] / f["done"])
                for r in mine
                if (f := floor_runs.get(r["repeat"])) is not None
            ]
            summary.append(
                {
                    "contender": contender,
                    "size": size,
                    "concurrency": concurrency,
                    "requests": mine[0]["done"],
                    "cpu_us_per_create": median(cpu_us),
                    "cpu_spread": spread(cpu_us),
                    "cpu_vs_aiohttp": median(paired),
                    "ratio_spread": spread(paired),
                    "creates_per_s": median([r["done"] / r["wall"] for r in mine]),
                    "server_cpu_us_per_req": median(
                        [r["server_cpu"] / r["done"] * 1e6 for r in mine]
                    ),
                    "server_busy": median([r["server_busy"] for r in mine]),
                    "client_busy": median([r["cpu"] / r["wall"] for r in mine]),
                    "client_starved": median([r["queued"] / r["wall"] for r in mine]),
                    "loop_iterations_per_create": median(
                        [r.get("loop_iterations", float("nan")) / r["done"] for r in mine]
                    ),
                    "turns": median([r.get("turns", float("nan")) for r in mine]),
                    "page_faults_per_create": median(
                        [r.get("page_faults", float("nan")) / r["done"] for r in mine]
                    ),
                    "runs": len(mine),
                }
            )
    return summary


CAVEATS = [
    "Server: a dedicated process on a bare asyncio.Protocol (no HTTP framework) answering "
    "the seed create answer with a new id, CreatedAt now, and the four X-Ratelimit-* headers "
    "of a real token bucket (burst 1,000,000, 1,000,000 tokens/s: the limiter re-syncs on "
    "every answer and "
    "never waits). 'server busy' is its CPU over the job's wall time: well below 100%, it is "
    "not the bottleneck. Client and server share the machine's 2 cores (with whatever else "
    "runs): creates/s depends on both; CPU µs per create (client process only) is the measure.",
    "The timed job is what a user's job costs: a fresh client opened (connections made, "
    "for the default client its slow start: one request until the first answer), the n "
    "creates, the client closed. Before it, a warm-up job on a throwaway client runs every "
    "code path once; the input list is built before timing and frozen out of the garbage "
    "collector's sight (gc.freeze), as a streamed input would be.",
    "qomon_async does more per create than raw aiohttp: it validates each input dict against "
    "its write model, de-duplicates inputs (dedupe=True, the default), runs each request under "
    "its retry policy (and, by default, its rate limiter), decodes the whole answer into a "
    "typed Contact, and yields one CreateResult per item. The floor json.dumps the body, "
    "json.loads the answer and reads data.contact.id.",
    "References (full mode only, at the smallest n and c <= 64, where they fit the time "
    "budget): httpx with `Limits(max_connections=c, max_keepalive_connections=c)`, sending a "
    "quarter as many requests (its per-request cost at c=64 is its pool's bookkeeping: "
    "encode/httpx#3215, encode/httpcore#1035); requests as a sequential loop at c=1 and c "
    "threads with a Session each above. At c=256 both would take minutes per run.",
    "Time and instructions disagree: counted by cachegrind (see 'Instructions per create'), "
    "the client executes fewer instructions per create than raw aiohttp (it decodes with "
    "msgspec where raw aiohttp runs json.loads), yet spends as much or more CPU time. The "
    "kind of work differs: the client interprets 1.2x to 1.3x raw aiohttp's Python bytecodes "
    "per create (its checks, bookkeeping and models), and the interpreter runs fewer "
    "instructions per cycle than the C parsers it saves. valgrind's cache simulation "
    "(cachegrind, c=64, rate_limit=False) shows it: 0.90x the instructions, but 1.06x the "
    "first-level instruction-cache misses and 1.13x the data-cache misses per create. These "
    "runs' CPU per create varies by 20% or more from one round to the next on this shared "
    "machine (see 'µs spread'); the ratios, taken within each round, far less ('ratio "
    "spread').",
    "glibc's malloc thresholds are fixed in every worker (MALLOC_MMAP_THRESHOLD_=524288, "
    "MALLOC_TRIM_THRESHOLD_=1048576: above what glibc sets itself the first time a process "
    "frees a large mapped block). Left to glibc, asyncio's 256 KiB read buffer per answer "
    "cost a worker 0, "
    "about 0.6, 1 or 2 minor page faults per create depending on that worker's allocation "
    "history, not on its code: two workers of one contender, a round apart, differed by up to "
    "15% of CPU per create (c = 1, 40,000 creates; a page fault takes 5 to 10 µs of this "
    "machine's CPU). The runs before e360f01 had that lottery in them. Faults paid by both "
    "sides of a ratio pull it toward 1, and a floor worker that drew more of them than the "
    "client's put the client below the floor (c = 1 at 20,000 creates: 0.83x to 0.95x). With "
    "the thresholds fixed, the same package (8bba9ff's, unchanged since but for a docstring) "
    "measured at 100,000 creates 1.13 / 1.14 / 1.09 / 1.09x (default, c = 1 / 8 / 64 / 256; "
    "the run of e360f01, not this one) where two earlier runs said 1.11 / 1.10 / "
    "1.07 / 1.07x and 1.12 / 1.11 / 1.07 / 1.05x, and the ratios' spreads within a run fell "
    "from several per cent to 0% to 2% at 20,000 and 100,000 creates.",
    "Taking turns costs each job a cold start per turn (its caches refilled after the others "
    f"ran): {TURN} creates per turn keeps that to a few per cent of a turn's work, the same "
    "for every contender. It may move the ratios slightly toward 1: turns of 2,500 creates "
    "gave ratios about 2% higher than turns of 250 (c=64, 20,000 creates, 4 rounds each), "
    "within their larger spread.",
    "At c = 256 the in-flight working set outgrows the L2 cache, for every contender (raw "
    "aiohttp: 312 L2 misses per create at c = 64, 1,628 at c = 256, cachegrind with this "
    "machine's cache sizes), and the cyclic garbage collector, walking what every in-flight "
    "item keeps alive, takes 12% to 15% of each contender's CPU there (gc.callbacks, one "
    "process). What the client keeps alive per item in flight decides its share: lists alive "
    "per in-flight item, 11.3 for the client against 9.35 for raw aiohttp.",
    "Before the malloc thresholds were fixed, two full runs of one commit (964f16a, back to "
    "back) differed by up to 0.05x in a cell at 100,000 creates (default client, c = 1: 1.09x "
    "then 1.13x): the page-fault lottery above, drawn afresh by each worker.",
    "With the thresholds fixed, two full runs of one package (81287e2's, back to back on a "
    "machine busier than usual) still differed by up to 0.04x in a cell at c = 1, the noisiest "
    "concurrency: the default client at 2,000 / 20,000 / 100,000 creates measured 1.08 / 1.12 / "
    "1.12x, then 1.11 / 1.16 / 1.13x; at c = 8 1.04 / 1.11 / 1.09x, then 1.06 / 1.08 / 1.08x; "
    "at c = 64 and 256 both runs stayed within 1.02x to 1.07x. A cell within a few hundredths "
    "of its target may fall on either side of it from one run to the next.",
    "Ratios depend on the host as well as the code. The run of b88fbdd (on a fresh "
    "machine of the same kind) met every cell, but its floor was slower than the runs "
    "before: raw aiohttp's CPU per create 260 to 400 µs, against 170 to 280 µs in the runs of "
    "81287e2. The client's surplus over the floor, in µs per create, stayed about where it "
    "was (default client at c = 1: 24 to 30 µs, against 17 to 34 µs; at c = 8: 15 to 20 µs, "
    "against 8 to 24 µs), so the same surplus made a smaller ratio. b88fbdd itself changed "
    "little on the path of a create (two getpid system calls per create fewer, one coroutine "
    "less at c = 1), not enough to show in a run. The run of b98ebac, on an AMD EPYC host "
    "(the runs before were on Intel Xeons), met every cell as well, with raw aiohttp at 227 "
    "to 356 µs per create.",
]


def _cell(rows: dict[str, dict[str, Any]], contender: str) -> str:
    row = rows.get(contender)
    if row is None:
        return "—"
    mark = "" if row["cpu_vs_aiohttp"] <= TARGETS[contender] else " ✗"
    return f"{row['cpu_vs_aiohttp']:.2f}x{mark}"


def summary_table(document: dict[str, Any]) -> str:
    """c by n: the default client's and rate_limit=False's CPU per create over raw aiohttp."""
    summary = document["summary"]
    params = document["parameters"]
    by = {(s["contender"], s["size"], s["concurrency"]): s for s in summary}
    sizes = params["sizes"]
    rows = []
    for concurrency in params["concurrencies"]:
        cells = [str(concurrency)]
        for size in sizes:
            mine = {
                contender: by[contender, size, concurrency]
                for contender in ("default", "no_limit")
                if (contender, size, concurrency) in by
            }
            cells.append(f"{_cell(mine, 'default')} / {_cell(mine, 'no_limit')}")
        rows.append(cells)
    headers = ["c", *(f"{size:,} creates: default / rate_limit=False" for size in sizes)]
    return markdown_table(headers, rows)


def headline(document: dict[str, Any]) -> str:
    summary = document["summary"]
    parts = []
    for contender in ("default", "no_limit"):
        ratios = [s["cpu_vs_aiohttp"] for s in summary if s["contender"] == contender]
        met = sum(r <= TARGETS[contender] for r in ratios)
        parts.append(
            f"the {SHORT[contender]} client spends {min(ratios):.2f}x to {max(ratios):.2f}x "
            f"the client CPU of raw aiohttp per create (target {TARGETS[contender]:.2f}x: "
            f"met in {met} of {len(ratios)} cells)"
        )
    busy = max(s["server_busy"] for s in summary)
    return (
        f"{parts[0][0].upper()}{parts[0][1:]}; {parts[1]}. The server is at most {busy:.0%} busy."
    )


def render(document: dict[str, Any], out: Path) -> str:
    summary = document["summary"]
    params = document["parameters"]
    rows = []
    for s in summary:
        rows.append(
            [
                f"{s['size']:,}",
                str(s["concurrency"]),
                LABELS[s["contender"]],
                f"{s['cpu_vs_aiohttp']:.2f}x",
                f"±{s.get('ratio_spread', float('nan')) * 100:.0f}%",
                fmt(s["cpu_us_per_create"]),
                f"±{s['cpu_spread'] * 100:.0f}%",
                fmt(s["creates_per_s"]),
                f"{s['client_busy'] * 100:.0f}%",
                f"{s['client_starved'] * 100:.0f}%",
                fmt(s.get("loop_iterations_per_create")),
                fmt(s.get("page_faults_per_create", float("nan"))),
                fmt(s["server_cpu_us_per_req"]),
                f"{s['server_busy'] * 100:.0f}%",
                str(s["runs"]),
            ]
        )
    detail = markdown_table(
        [
            "n",
            "c",
            "client",
            "CPU vs aiohttp",
            "ratio spread",
            "client CPU µs/create",
            "µs spread",
            "creates/s",
            "client busy",
            "client starved",
            "loop iterations / create",
            "page faults / create",
            "server CPU µs/req",
            "server busy",
            "runs",
        ],
        rows,
    )
    _plot(document, out / f"{NAME}.png")
    rounds = ", ".join(f"{int(k):,}: {v}" for k, v in params["rounds"].items())
    return "\n\n".join(
        [
            f"## {TITLE}",
            f"**{headline(document)}**",
            "CPU per create over raw aiohttp + json's at the same c and n (✗: above the target, "
            f"{TARGETS['default']:.2f}x for the default client, {TARGETS['no_limit']:.2f}x for "
            "rate_limit=False). Each job in its own process; the jobs of a round take turns of "
            f"{TURN} creates; the median over the rounds of the ratio within each round "
            f"(n: rounds = {rounds}).",
            summary_table(document),
            "All figures (spreads: half the inter-quartile range over the median; busy: CPU "
            "seconds over wall seconds of the job's turns; starved: the share of that time the "
            "client's thread was ready to run but waited for a core, the machine's other load; "
            "loop iterations: event-loop iterations of the job per create; page faults: the job's "
            "minor page faults per create, with glibc's malloc thresholds fixed, see the "
            "caveats):",
            detail,
            f"![{TITLE}]({NAME}.png)",
            "Caveats:\n\n" + "\n".join(f"- {c}" for c in [*CAVEATS, *failure_notes(document)]),
        ]
    )


def failure_notes(document: dict[str, Any]) -> list[str]:
    """One caveat per worker that failed and was run again (none in a clean run)."""
    return [
        f"A job failed and was run again in a fresh process: {f['params']}: {f['error']}"
        for f in document.get("failures", [])
    ]


def docs_summary(document: dict[str, Any]) -> str:
    """The docs site's summary: the c-by-n table of ratios, with the targets."""
    return (
        f"Client CPU per create over raw aiohttp's, default client / `rate_limit=False` "
        f"(targets {TARGETS['default']:.2f}x / {TARGETS['no_limit']:.2f}x; ✗: above):\n\n"
        + summary_table(document)
    )


def _plot(document: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    summary = document["summary"]
    params = document["parameters"]
    sizes = params["sizes"]
    concurrencies = params["concurrencies"]
    by = {(s["contender"], s["size"], s["concurrency"]): s for s in summary}
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.3 * len(sizes), 3.4), sharey=True)
    axes = list(axes) if len(sizes) > 1 else [axes]
    for ax, size in zip(axes, sizes, strict=True):
        xs = range(len(concurrencies))
        for contender, style in (("default", "-"), ("no_limit", "--")):
            values = [by[contender, size, c]["cpu_vs_aiohttp"] for c in concurrencies]
            ax.plot(
                xs,
                values,
                style,
                marker="o",
                ms=4,
                color=COLOURS_HERE[contender],
                label=SHORT[contender],
            )
            ax.axhline(TARGETS[contender], color=COLOURS_HERE[contender], lw=0.8, ls=":")
        ax.axhline(1.0, color=COLOURS_HERE["aiohttp"], lw=1, label="raw aiohttp (floor)")
        ax.set_xticks(list(xs), [f"c={c}" for c in concurrencies])
        ax.set_title(f"{size:,} creates")
    axes[0].set_ylabel("client CPU per create / raw aiohttp's")
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle(
        "Client CPU per create over raw aiohttp's (dotted: the targets 1.10x and 1.05x)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Profiling one job: python -m benchmarks.bench_client_cost --profile
# --------------------------------------------------------------------------------------------


def profile_main(argv: list[str]) -> None:
    """Profile one timed job with cProfile; print the top costs in µs per create.

    ``python -m benchmarks.bench_client_cost --profile [--contender default] [-c 64]
    [-n 20000] [--top 40] [--sort cumulative|tottime] [--dump FILE]`` starts its own tiny
    server, runs the warm-up, then the job under the profiler. It also prints the event-loop
    iterations per create (calls of ``BaseEventLoop._run_once``). cProfile slows every Python
    call down, so its µs are inflated; read them against each other and against the
    unprofiled CPU per create printed first.
    """
    import cProfile  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_client_cost --profile")
    parser.add_argument("--contender", default="default", choices=[*MAIN, "httpx"])
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    parser.add_argument("--dump", type=Path, default=None, help="write the raw pstats here")
    args = parser.parse_args(argv)
    warm = [make_contact(i, "pw") for i in range(max(200, 2 * args.concurrency))]
    items = [make_contact(i, "p") for i in range(args.n)]
    items2 = [make_contact(i, "q") for i in range(args.n)]
    with server("tiny") as srv:
        plain = measure_job(args.contender, srv.url, items2, warm, args.concurrency, srv.pid)
        print(
            f"{args.contender}, c={args.concurrency}, n={args.n:,}, unprofiled: "
            f"{plain['cpu'] / plain['done'] * 1e6:.0f} µs CPU per create, "
            f"{plain['done'] / plain['wall']:.0f} creates/s, server "
            f"{plain['server_cpu'] / plain['done'] * 1e6:.0f} µs per request"
        )

        async def job() -> None:
            async with opener(args.contender, srv.url, args.concurrency) as send:
                await send(items)

        profiler = cProfile.Profile(time.process_time)  # CPU, not wall: the machine is shared
        cpu0 = time.process_time()
        profiler.enable()
        asyncio.run(job())
        profiler.disable()
        cpu = time.process_time() - cpu0
    stats = pstats.Stats(profiler)
    if args.dump:
        stats.dump_stats(args.dump)
    print(f"profiled: {cpu / args.n * 1e6:.0f} µs CPU per create")
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    iterations = sum(
        v[1] for (file, _, func), v in raw.items() if func == "_run_once" and "asyncio" in file
    )
    print(f"event-loop iterations per create: {iterations / args.n:.2f}")
    key = 3 if args.sort == "cumulative" else 2
    ordered = sorted(raw.items(), key=lambda kv: kv[1][key], reverse=True)
    print(
        f"{'cum µs/create':>13} {'share':>6} {'own µs/create':>13} {'calls/create':>12}  function"
    )
    for (file, line, func), (_cc, nc, tt, ct, _callers) in ordered[: args.top]:
        where = f"{Path(file).name}:{line}" if line else file
        print(
            f"{ct / args.n * 1e6:13.1f} {ct / cpu:6.1%} {tt / args.n * 1e6:13.1f} "
            f"{nc / args.n:12.2f}  {func} ({where})"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--profile":
        profile_main(sys.argv[2:])
    else:
        worker_main(worker)
