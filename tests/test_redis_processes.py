"""Several OS processes on one space, sharing one RedisBucket (real redis-server), against the
emulator in its own process (``qomon-async fake-server``) with Qomon's bucket shape and a
scaled clock: the budget is spent exactly, without 429s, fairly; a 429 pauses everyone;
Redis killed mid-run costs no duplicate and no lost item.

Times are real seconds at a time scale of 20: the bucket refills at 200 tokens per real second,
a create costs 25 ms of budget. The bucket's shape is learnt from the emulator's answers
(``X-Ratelimit-Limit`` says 200/s), so Redis's real clock and the emulator's agree.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qomon_async import QomonClient
from qomon_async.testing import FakeQomon, RateLimited

KEY = "multi-process-key"
SCALE = 20.0
RATE = 10 * SCALE  # tokens per real second
ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("redis_worker.py")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("QOMON_REDIS_URL", None)
    return env


@contextlib.contextmanager
def fake_server(scale: float) -> Iterator[str]:
    """``qomon-async fake-server`` in its own process; yields its base URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qomon_async._cli",
            "fake-server",
            "--port",
            "0",
            "--time-scale",
            str(scale),
            "--api-key",
            KEY,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("QOMON_BASE_URL="), line
        yield line.strip().split("=", 1)[1]
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def emulator() -> Iterator[str]:
    with fake_server(SCALE) as url:
        yield url


@pytest.fixture
def slow_emulator() -> Iterator[str]:
    """At half the time scale: startup costs (processes waking, first connections) weigh half
    as much against the ideal."""
    with fake_server(SCALE / 2) as url:
        yield url


def run_workers(configs: list[dict[str, Any]], *, during: Any = None) -> list[dict[str, Any]]:
    """Start one process per config, release them together, return their reports."""
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for config in configs
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "READY"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("GO\n")
            process.stdin.flush()
        if during is not None:
            during()
        reports = []
        for process in processes:
            out, _ = process.communicate(timeout=120)
            assert process.returncode == 0, out
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


async def mails_in(base_url: str) -> Counter[str]:
    """Every contact's mail, counted, read through the API."""
    async with QomonClient(KEY, base_url=base_url) as client:
        return Counter([c.mail or "" async for c in client.search_contacts()])


def ideal(tokens: float, capacity: float = 100.0, rate: float = RATE) -> float:
    return max(tokens - capacity, 0.0) / rate


async def test_four_processes_share_the_bucket_exactly(slow_emulator: str, redis_url: str) -> None:
    emulator = slow_emulator
    n, procs = 40, 4
    reports = run_workers(
        [
            {
                "base_url": emulator,
                "key": KEY,
                "redis": redis_url,
                "mode": "create",
                "n": n,
                "tag": f"w{p}",
                "concurrency": 1,
            }
            for p in range(procs)
        ]
    )
    # Every contact created once.
    mails = await mails_in(emulator)
    for report in reports:
        assert [r["status"] for r in report["results"]].count("created") == n, report
        assert sorted(r["index"] for r in report["results"]) == list(range(n))
    expected = {f"w{p}-{i}@example.org" for p in range(procs) for i in range(n)}
    assert set(mails) == expected and set(mails.values()) == {1}
    # The aggregate time is the bucket's ideal, within 10%; at most 2 answers 429.
    start = min(r["start"] for r in reports)
    elapsed = max(r["end"] for r in reports) - start
    best = ideal(procs * n * 5, rate=RATE / 2)
    assert best <= elapsed * 1.02 and elapsed <= best * 1.10, (elapsed, best)
    assert sum(r["rate_limited"] for r in reports) <= 2
    assert all(r["kind"] == "redis" and r["fallbacks"] == 0 for r in reports)
    # Fairness: equal demands finish within 15% of each other. (The shares are kept equal,
    # the burst included, whichever process's answers come back sooner; within a round the
    # bookings go in arrival order, so a process can trail the others by one round of
    # everyone's requests in flight: 4 creates here, one per process, about 3% of the run.)
    finished = [r["end"] - start for r in reports]
    assert max(finished) <= min(finished) * 1.15, finished


async def test_cheap_calls_do_not_starve_creates(emulator: str, redis_url: str) -> None:
    n = 30
    creator, cheap = run_workers(
        [
            {
                "base_url": emulator,
                "key": KEY,
                "redis": redis_url,
                "mode": "create",
                "n": n,
                "tag": "c",
            },
            {
                "base_url": emulator,
                "key": KEY,
                "redis": redis_url,
                "mode": "cheap",
                "duration": 1.5,
                "concurrency": 16,
            },
        ]
    )
    assert [r["status"] for r in creator["results"]].count("created") == n
    # The cheap process competed all along: it ran past the creator's end, calling meanwhile.
    assert cheap["end"] >= creator["end"] and cheap["calls"] >= 30, cheap["calls"]
    # The creates kept flowing: no gap between two of them longer than 20 creates' budget,
    # and the creator spent at least a quarter of the bucket's refill while both ran. (In
    # arrival order its 8 queued creates weigh 40 tokens against the 16 cheap calls' 16, so
    # it should get most of it; "spent" counts the whole first burst as the creator's, which
    # the cheap calls share, so the figure is a floor: a starved creator is far below it.)
    done = [creator["start"], *creator["done_at"]]
    gaps = [b - a for a, b in itertools.pairwise(done)]
    assert max(gaps) < 20 * 5 / RATE, max(gaps)
    spent = n * 5 - 100
    assert spent / (creator["end"] - creator["start"]) >= RATE / 4
    assert creator["rate_limited"] + cheap["rate_limited"] <= 2


async def test_a_429_seen_by_one_process_pauses_the_others(redis_url: str) -> None:
    # The emulator on a thread of this process (faults are injected in process), at half the
    # usual scale; the workers are OS processes as everywhere here.
    scale = SCALE / 2
    retry_after = 5.0  # Qomon seconds: 0.5 real s
    with FakeQomon(api_key=KEY, time_scale=scale) as fake:
        fake.inject(RateLimited(retry_after=retry_after), route="POST /contacts", nth=30)
        reports = run_workers(
            [
                {
                    "base_url": fake.base_url,
                    "key": KEY,
                    "redis": redis_url,
                    "mode": "create",
                    "n": 30,
                    "tag": f"p{p}",
                }
                for p in range(2)
            ]
        )
        requests = list(fake.requests)
        contacts = dict(fake.contacts)
    rejected = [r for r in requests if r.status == 429]
    assert rejected[0].number == 30 and len(rejected) <= 2, rejected  # the injected one first
    paused_at = rejected[0].real_time
    pause_end = paused_at + retry_after / scale
    # Nothing is sent during the pause: what arrives in it was already on its way when the 429
    # came (at most the 15 other requests the two pools of 8 can have in flight), and arrives
    # early in it (150 ms of a 500 ms pause: a loaded machine delays a request on its way, but
    # not that long). A process that ignored the pause would go on at the bucket's pace, about
    # 20 requests spread over the whole pause.
    during = [r for r in requests if paused_at < r.real_time < pause_end - 0.01]
    late = [r for r in during if r.real_time > paused_at + 0.15]
    assert len(during) <= 15 and late == [], [(r.number, r.real_time - paused_at) for r in during]
    # Both processes went on after it.
    after = {
        contacts[r.contact_id]["surname"]
        for r in requests
        if r.real_time >= pause_end - 0.01 and r.contact_id in contacts
    }
    assert after == {"p0", "p1"}
    assert sum(len(r["results"]) for r in reports) == 60
    assert len(contacts) == 60


async def test_redis_killed_mid_run_then_back(emulator: str, redis_server: Any) -> None:
    n = 60  # 600 tokens: 2.5 s at the bucket's pace

    def chaos() -> None:
        time.sleep(0.4)
        redis_server.kill()  # kill -9
        time.sleep(0.4)
        redis_server.start()  # on the same port, empty

    thread_errors: list[BaseException] = []

    def during() -> None:
        thread = threading.Thread(target=lambda: _catch(chaos, thread_errors))
        thread.start()
        thread.join()

    reports = run_workers(
        [
            {
                "base_url": emulator,
                "key": KEY,
                "redis": redis_server.url,
                "mode": "create",
                "n": n,
                "tag": f"k{p}",
                "retry_interval": 0.1,
            }
            for p in range(2)
        ],
        during=during,
    )
    assert not thread_errors
    mails = await mails_in(emulator)
    for report in reports:
        statuses = Counter(r["status"] for r in report["results"])
        assert statuses == {"created": n}, statuses
        # Fell back once, and was back on Redis at the end.
        assert report["fallbacks"] == 1 and report["kind"] == "redis", report
    assert len(mails) == 2 * n and set(mails.values()) == {1}


def _catch(work: Any, errors: list[BaseException]) -> None:
    try:
        work()
    except BaseException as exc:  # pragma: no cover - reported by the test
        errors.append(exc)
