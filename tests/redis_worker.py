"""One OS process of the multi-process tests: its own QomonClient, optionally on a RedisBucket.

Run as ``python tests/redis_worker.py '<json config>'``. It builds its client, prints ``READY``,
waits for a line ``GO`` on stdin (so that every process starts at the same moment), runs, and
prints one JSON line with what it saw. Config keys: ``base_url``, ``key``, ``redis`` (a URL or
null), ``mode`` (``"create"``: ``n`` creates of mails ``<tag>-<i>@example.org``; ``"cheap"``:
1-token calls until ``duration`` seconds have passed), ``concurrency``, ``retry_interval``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from qomon_async import QomonClient, RetryPolicy
from qomon_async.redis import RedisBucket


async def main(config: dict[str, Any]) -> dict[str, Any]:
    bucket = (
        RedisBucket(
            config["redis"],
            timeout=config.get("timeout", 2.0),
            retry_interval=config.get("retry_interval", 0.2),
        )
        if config.get("redis")
        else None
    )
    client = QomonClient(
        config["key"],
        base_url=config["base_url"],
        shared_bucket=bucket,
        retry=RetryPolicy(max_attempts=20, max_time=600),
        reconcile_delay=0.05,
    )
    async with client:
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        start = time.time()
        report: dict[str, Any] = {"start": start, "tag": config.get("tag")}
        if config["mode"] == "create":
            tag = config["tag"]
            rows = [
                {"firstname": f"F{i}", "surname": tag, "mail": f"{tag}-{i}@example.org"}
                for i in range(config["n"])
            ]
            results = []
            done_at = []
            async for result in client.create_contacts(
                rows, concurrency=config.get("concurrency", 8)
            ):
                done_at.append(time.time())
                results.append(
                    {
                        "index": result.index,
                        "status": result.status.value,
                        "id": result.contact.id if result.contact is not None else None,
                        "error": None if result.error is None else repr(result.error)[:200],
                    }
                )
            report["results"] = results
            report["done_at"] = done_at
        else:
            deadline = start + config["duration"]
            calls = 0

            async def cheap() -> None:
                nonlocal calls
                while time.time() < deadline:
                    await client.count_contacts()
                    calls += 1

            await asyncio.gather(*(cheap() for _ in range(config.get("concurrency", 16))))
            report["calls"] = calls
        report["end"] = time.time()
        stats = client.limiter_stats
        assert stats is not None
        report["rate_limited"] = client.stats.rate_limited
        report["requests"] = client.stats.requests
        report["kind"] = stats.kind
        report["fallbacks"] = stats.fallbacks
        report["reservations"] = stats.reservations
        report["limiter_wait"] = client.stats.limiter_wait
    if bucket is not None:
        await bucket.aclose()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
