"""Helpers shared by several test modules (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def fake_server_process(*options: str) -> Iterator[dict[str, str]]:
    """``qomon-async fake-server --port 0 *options`` in a child process.

    Yields the two lines it prints first, as a dict (``QOMON_BASE_URL``, ``QOMON_API_KEY``);
    afterwards stops it with SIGTERM and checks that it exited with status 0.
    """
    script = Path(sys.executable).with_name("qomon-async")
    process = subprocess.Popen(
        [str(script), "fake-server", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield dict(process.stdout.readline().strip().split("=", 1) for _ in range(2))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    assert process.returncode == 0
