"""The programs of examples/ run against the emulator and say what they should.

FastAPI runs under a real uvicorn on 127.0.0.1 (a free port) in this process; the CSV loader
and the chat bot run as subprocesses pointed at the emulator by QOMON_API_KEY/QOMON_BASE_URL.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import uvicorn

from qomon_async.testing import FakeQomon, RateLimited

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
KEY = "sk-test-examples-key-do-not-leak"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env_for(fake: FakeQomon, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(QOMON_API_KEY=fake.api_key, QOMON_BASE_URL=fake.base_url, **extra)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(EXAMPLES.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return env


# --------------------------------------------------------------------------------------------
# fastapi_signup.py
# --------------------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeQomon]:
    async with FakeQomon(api_key=KEY, time_scale=1, rate=1.0) as fake:
        yield fake


@pytest.fixture
async def service(
    fake: FakeQomon, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, ModuleType]]:
    monkeypatch.setenv("QOMON_API_KEY", fake.api_key)
    monkeypatch.setenv("QOMON_BASE_URL", fake.base_url)
    monkeypatch.setenv("SIGNUP_MAX_WAIT", "1")
    module = load("fastapi_signup")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(module.app, host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", module
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return response.status, await response.json(), dict(response.headers)


async def test_fastapi_signup_creates_one_contact_per_mail(
    service: tuple[str, ModuleType], fake: FakeQomon
) -> None:
    url, _ = service
    status, body, _ = await post(f"{url}/signup", {"mail": "jeanne@example.org", "firstname": "J"})
    assert status == 201 and body["mail"] == "jeanne@example.org"
    assert list(fake.contacts) == [body["id"]]
    # Signing up again gives the same contact, not a twin.
    status, again, _ = await post(f"{url}/signup", {"mail": "jeanne@example.org"})
    assert (status, again["id"]) == (201, body["id"])
    assert len(fake.contacts) == 1
    status, bad, _ = await post(f"{url}/signup", {"mail": "not a mail"})
    assert status == 422 and bad["field"] == "mail"


async def test_fastapi_signup_answers_503_with_retry_after_on_a_long_429(
    service: tuple[str, ModuleType], fake: FakeQomon
) -> None:
    url, _ = service
    fake.inject(RateLimited(retry_after=3600), route="POST /search", times=1)
    status, body, headers = await asyncio.wait_for(
        post(f"{url}/signup", {"mail": "jeanne@example.org"}), timeout=5
    )
    assert status == 503 and "busy" in body["error"]
    assert headers["Retry-After"] == "3600"
    assert fake.contacts == {}


async def test_fastapi_signup_answers_503_at_once_when_the_bucket_is_busy(
    service: tuple[str, ModuleType], fake: FakeQomon
) -> None:
    """Needs the limiter branch (acquire honours max_wait)."""
    url, _ = service
    fake.spend((fake.tokens or 0) - 1)  # one token left: the lookup takes it, and says so
    status, body, headers = await asyncio.wait_for(
        post(f"{url}/signup", {"mail": "jeanne@example.org"}), timeout=5
    )
    assert status == 503 and "busy" in body["error"]
    assert int(headers["Retry-After"]) >= 4  # 5 tokens at 1 a second
    assert [r.route for r in fake.requests] == ["POST /search"]  # the create was never sent
    assert fake.contacts == {}


# --------------------------------------------------------------------------------------------
# etl_csv.py
# --------------------------------------------------------------------------------------------


async def run(
    fake: FakeQomon, *args: str, stdin: bytes | None = None, **env: str
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env_for(fake, **env),
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_etl_csv_streams_a_file_with_a_progress_bar_and_a_summary(
    tmp_path: Path,
) -> None:
    path = tmp_path / "contacts.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["firstname", "surname", "mail", "address.city"])
        for i in range(40):
            writer.writerow([f"P{i}", "Martin", f"p{i}@example.org", "Lyon" if i % 2 else ""])
        writer.writerow(["Bad", "Row", "not-a-mail", ""])
    async with FakeQomon(api_key=KEY, time_scale=1000) as fake:
        code, out, err = await run(fake, str(EXAMPLES / "etl_csv.py"), str(path))
        assert len(fake.contacts) == 40
        cities = sorted(str((c.get("address") or {}).get("city")) for c in fake.contacts.values())
        assert cities.count("Lyon") == 20
    assert code == 1, err
    assert "41 rows: created 40, failed 1" in out
    assert "41/41" in err and "[##############################]" in err
    with (tmp_path / "contacts.errors.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["row", "status", "error"]
    assert [r[:2] for r in rows[1:]] == [["42", "failed"]]
    assert "mail" in rows[1][2]


# --------------------------------------------------------------------------------------------
# chat_bot.py
# --------------------------------------------------------------------------------------------


class Bot:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def until(self, text: str, count: int = 1) -> None:
        """Read the bot's output until ``text`` has appeared ``count`` times."""
        assert self.process.stdout is not None

        async def read() -> None:
            while sum(text in line for line in self.lines) < count:
                line = await self.process.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    raise AssertionError(f"the bot ended; it said: {self.lines}")
                self.lines.append(line.decode().rstrip())

        await asyncio.wait_for(read(), timeout=20)

    async def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        await self.until("bot stopped")
        return await asyncio.wait_for(self.process.wait(), timeout=10)


async def start_bot(fake: FakeQomon, cursor: Path) -> Bot:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "chat_bot.py"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env_for(fake, BOT_CURSOR_FILE=str(cursor), BOT_POLL_INTERVAL="0.05"),
    )
    bot = Bot(process)
    await bot.until("bot running")
    return bot


async def test_chat_bot_handles_messages_follows_changes_and_stops_on_ctrl_c(
    tmp_path: Path,
) -> None:
    cursor = tmp_path / "cursor.json"
    async with FakeQomon(api_key=KEY, time_scale=1) as fake:
        bot = await start_bot(fake, cursor)
        assert bot.process.stdin is not None
        messages = [
            {"mail": "jeanne@example.org", "firstname": "Jeanne", "text": "hello"},
            {"mail": "paul@example.org", "firstname": "Paul", "text": "hi"},
            {"mail": "jeanne@example.org", "text": "again"},
        ]
        for message in messages:
            bot.process.stdin.write((json.dumps(message) + "\n").encode())
        await bot.process.stdin.drain()
        await bot.until("message from contact", 3)
        await bot.until("changed: contact", 2)
        assert len(fake.contacts) == 2
        jeanne, paul = sorted(fake.contacts, key=lambda i: fake.contacts[i]["firstname"])
        said = [line for line in bot.lines if line.startswith("message from")]
        assert said == [
            f"message from contact {jeanne}: 'hello'",
            f"message from contact {paul}: 'hi'",
            f"message from contact {jeanne}: 'again'",
        ]
        assert await bot.interrupt() == 0
        saved = json.loads(cursor.read_text())
        assert sorted(cid for cid, _at in saved["seen"]) == sorted([jeanne, paul])

        # Restarted, it resumes from its cursor: only what changed since is reported.
        bot = await start_bot(fake, cursor)
        newcomer = fake.add_contact({"firstname": "Zoé", "mail": "zoe@example.org"})
        await bot.until("changed: contact")
        assert bot.process.stdin is not None
        bot.process.stdin.close()  # no more messages: it keeps following changes
        assert await bot.interrupt() == 0
        changed = [line for line in bot.lines if line.startswith("changed:")]
        assert len(changed) == 1 and f"contact {newcomer['id']} " in changed[0]
        assert not any("Traceback" in line for line in bot.lines)
