"""The servers the benchmarks talk to, each in its own process.

``python -m benchmarks._servers tiny [--latency 0.05] [--burst N --rate R]``: a minimal HTTP/1.1
server on a bare :class:`asyncio.Protocol` that answers every ``POST /contacts`` with Qomon's
create response (the seed answer of ``tests/data/seed-create-response.json``) carrying a new
id, and 404 elsewhere. No store, no validation: its cost per request (a few tens of µs) is small
and the same for every client, so it is never the bottleneck of a client measured against it.
Like Qomon, every answer carries the ``X-Ratelimit-Limit`` / ``-Remaining`` / ``-Cost`` /
``-Reset`` headers of a real token bucket (by default a huge one, ``burst:1000000;
rate:1000000.0``, that never runs dry), so that a client's rate limiter does its real work on
every answer without ever waiting. ``--latency`` delays each answer by that many seconds
(a timer, no CPU).

``python -m benchmarks._servers fake --latency 0.05 [--no-rate-limit] [--time-scale 1]``: the
library's emulator, FakeQomon, on a free port.

Both print ``URL=http://127.0.0.1:PORT`` on stdout once listening, and exit when stdin closes
(the parent closes it, or dies).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import email.utils
import sys
import time
from typing import Any

from benchmarks._payloads import SEED

_ID = b"12345678"
_PARTS = SEED.split(_ID)  # the seed names its id twice: data.contact.id and formdatas' contact_id
# The seed's creation time, replaced by the server's clock in each answer: Qomon stamps a create
# with its own now, and the client learns Qomon's clock from it (a 2022 date would be ignored as
# no clock's, which leaves the client without Qomon's clock).
_SEED_CREATED = b"2022-10-13T15:50:34.643724Z"
_CREATE_COST = 5
_OTHER_COST = 1
_NOT_FOUND = b'{"status":"fail","message":"not found"}'


def _decimal(seconds: float) -> bytes:
    """``0.000005`` rather than ``5e-06``: Reset as Qomon writes it (``0.6``)."""
    return (f"{seconds:.6f}".rstrip("0").rstrip(".") or "0").encode()


class TinyBucket:
    """Qomon's token bucket: ``burst`` tokens, refilled at ``rate`` per second (no 429 here:
    a request the bucket cannot cover still passes, and the bucket goes to zero)."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self.tokens = float(burst)
        self.last = time.monotonic()
        self.limit = f"burst:{burst};rate:{rate!r}".encode()

    def charge(self, cost: int) -> bytes:
        """Spend ``cost`` tokens now; the four ``X-Ratelimit-*`` header lines of the answer."""
        now = time.monotonic()
        tokens = min(self.burst, self.tokens + (now - self.last) * self.rate) - cost
        self.tokens, self.last = max(tokens, 0.0), now
        reset = (self.burst - self.tokens) / self.rate
        return (
            b"X-Ratelimit-Limit: %s\r\nX-Ratelimit-Remaining: %d\r\n"
            b"X-Ratelimit-Cost: %d\r\nX-Ratelimit-Reset: %s\r\n"
            % (self.limit, int(self.tokens), cost, _decimal(reset))
        )


class TinyCreateProtocol(asyncio.Protocol):
    """One connection: HTTP/1.1 keep-alive, requests with a ``Content-Length`` body (no chunked
    bodies, no pipelining beyond what arrives in order: answers go out in request order)."""

    def __init__(self, app: TinyCreateServer) -> None:
        self.app = app
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            length = 0
            start = head.find(b"\r\nContent-Length:")
            if start < 0:
                start = head.lower().find(b"\r\ncontent-length:")
            if start >= 0:
                stop = head.find(b"\r\n", start + 2)
                length = int(head[start + 17 : stop if stop >= 0 else len(head)])
            if len(buffer) < end + 4 + length:
                break
            request_line = head[: head.find(b"\r\n")]
            buffer = buffer[end + 4 + length :]
            self.app.answer(self, request_line)
        self.buffer = buffer

    def send(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)


class TinyCreateServer:
    """Answers ``POST /contacts`` with the seed response, a fresh id and CreatedAt now; 404
    elsewhere."""

    def __init__(self, *, latency: float = 0.0, burst: int = 1_000_000, rate: float = 1e6) -> None:
        self.next_id = 1
        self.latency = latency
        self.bucket = TinyBucket(burst, rate)
        self.loop = asyncio.get_running_loop()
        self._date = b""
        self._date_at = 0.0

    def date(self) -> bytes:
        now = time.time()
        if now - self._date_at >= 1.0:
            self._date = email.utils.formatdate(now, usegmt=True).encode()
            self._date_at = now
        return self._date

    def created_at(self) -> bytes:
        """Now, as Qomon writes a ``CreatedAt`` (RFC 3339, microseconds, ``Z``)."""
        now = dt.datetime.now(dt.timezone.utc)
        return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()

    def answer(self, protocol: TinyCreateProtocol, request_line: bytes) -> None:
        if request_line.startswith(b"POST /contacts "):
            number = str(self.next_id).encode()
            self.next_id += 1
            body = number.join(_PARTS).replace(_SEED_CREATED, self.created_at())
            status, cost = b"200 OK", _CREATE_COST
        else:
            status, body, cost = b"404 Not Found", _NOT_FOUND, _OTHER_COST
        response = b"HTTP/1.1 %s\r\nContent-Type: application/json; charset=utf-8\r\n" % status
        response += b"Content-Length: %d\r\nDate: %s\r\nServer: tiny\r\n" % (
            len(body),
            self.date(),
        )
        response += self.bucket.charge(cost) + b"\r\n" + body
        if self.latency > 0:
            self.loop.call_later(self.latency, protocol.send, response)
        else:
            protocol.send(response)


async def _wait_for_stdin_close() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def serve_tiny(options: argparse.Namespace) -> None:
    app = TinyCreateServer(latency=options.latency, burst=options.burst, rate=options.rate)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(
        lambda: TinyCreateProtocol(app), "127.0.0.1", 0, backlog=4096, reuse_address=True
    )
    port = srv.sockets[0].getsockname()[1]
    print(f"URL=http://127.0.0.1:{port}", flush=True)
    try:
        await _wait_for_stdin_close()
    finally:
        srv.close()


async def serve_fake(options: argparse.Namespace) -> None:
    from benchmarks._common import API_KEY  # noqa: PLC0415
    from qomon_async.testing import FakeQomon  # noqa: PLC0415

    kwargs: dict[str, Any] = {
        "api_key": API_KEY,
        "time_scale": options.time_scale,
        "rate_limit": not options.no_rate_limit,
        "latency": options.latency,
    }
    async with FakeQomon(**kwargs) as fake:
        print(f"URL={fake.base_url}", flush=True)
        await _wait_for_stdin_close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._servers")
    parser.add_argument("kind", choices=["tiny", "fake"])
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    parser.add_argument("--time-scale", type=float, default=1.0, help="fake: Qomon s per real s")
    parser.add_argument("--no-rate-limit", action="store_true", help="fake: no bucket")
    parser.add_argument("--burst", type=int, default=1_000_000, help="tiny: bucket size")
    parser.add_argument("--rate", type=float, default=1_000_000.0, help="tiny: tokens per s")
    options = parser.parse_args()
    if options.kind == "tiny":
        asyncio.run(serve_tiny(options))
    else:
        asyncio.run(serve_fake(options))


if __name__ == "__main__":
    main()
