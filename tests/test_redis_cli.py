"""``qomon-async import --redis URL``: the import spends the space's bucket shared in Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from qomon_async._redis_keys import bucket_key, key_hash, space_id
from qomon_async.testing import FakeQomon

KEY = "sk-live-REDISCLI-0b9e2d"
SCRIPT = str(Path(sys.executable).with_name("qomon-async"))
ROOT = Path(__file__).resolve().parents[1]


async def test_import_with_redis_shares_the_bucket(tmp_path: Path, redis_url: str) -> None:
    source = tmp_path / "people.csv"
    source.write_text(
        "firstname,surname,mail\n" + "".join(f"P{i},Martin,p{i}@example.org\n" for i in range(12)),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QOMON_")}
    env["QOMON_API_KEY"] = KEY
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with FakeQomon(api_key=KEY, time_scale=100) as fake:
        done = subprocess.run(
            [SCRIPT, "import", source, "--base-url", fake.base_url, "--progress", "none",
             "--redis", redis_url],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
        )  # fmt: skip
        base_url = fake.base_url
        stored = len(fake.contacts)
    assert done.returncode == 0, done.stderr
    assert stored == 12
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        state = await client.hgetall(bucket_key("qomon", space_id(base_url, key_hash(KEY))))
        keys = await client.keys("*")
    finally:
        await client.aclose()
    # The import's answers informed the shared bucket (and 12 creates were booked in it).
    assert state["informed"] == "1" and float(state["booked"]) >= 60, state
    assert all(KEY not in k for k in keys)
    assert KEY not in done.stdout + done.stderr
