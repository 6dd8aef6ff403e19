"""Shared fixtures.

* A real ``redis-server`` for the shared-bucket tests. It runs on a free port, in a temporary
  directory, without persistence, and is stopped afterwards. Without ``redis-server`` on PATH the
  tests that need it FAIL (never skip), saying how to install it.
* ``http``: a plain aiohttp session on the emulator of the test module's own ``fake`` fixture,
  with its API key as bearer token (the tests that speak HTTP to the emulator directly).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, settings

from qomon_async.testing import FakeQomon

# The property tests' profiles, loaded here (before any test module) so that every module runs
# under the same one whatever the order of collection: "default", short and without a per-example
# deadline (a loaded machine must not fail a test that is only slow); "fuzz", the long run of
# `nox -s fuzz` (HYPOTHESIS_PROFILE=fuzz).
settings.register_profile(
    "default", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "fuzz", max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

INSTALL_HINT = (
    "redis-server is not on PATH: the shared-bucket tests need a real Redis. "
    "Install it with `sudo apt-get install redis-server` (Debian/Ubuntu) and run again."
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process; :meth:`kill` (SIGKILL) and :meth:`start` again on the
    same port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.directory,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited at start (code {self.process.returncode})")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        self.stop()
        pytest.fail("redis-server did not answer PING within 10 s")

    def kill(self) -> None:
        """kill -9, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_session_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session (use ``redis_url``, which empties it first)."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_session_server: RedisServer) -> str:
    """The URL of an empty Redis database (FLUSHALL before the test)."""
    import socket  # noqa: PLC0415

    with socket.create_connection(("127.0.0.1", redis_session_server.port), timeout=2) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        assert sock.recv(16).startswith(b"+OK")
    return redis_session_server.url


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the test may kill -9 and start again."""
    with running_redis(tmp_path_factory.mktemp("redis-own")) as server:
        yield server


@pytest.fixture
async def http(fake: FakeQomon) -> AsyncIterator[aiohttp.ClientSession]:
    """A session on the module's ``fake`` emulator, authenticated with its key."""
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession(fake.base_url, headers=headers) as session:
        yield session
