"""The servers the benchmarks talk to, each in its own process.

``python -m benchmarks._servers tiny``: a minimal aiohttp server that answers every
``POST /contacts`` with Qomon's create response (the SEED of qomon-api.md section 7.2) carrying a
new id, and nothing else: no bucket, no store, no validation, so that its cost per request is
small and the same for every client.

``python -m benchmarks._servers fake --latency 0.05 [--no-rate-limit] [--time-scale 1]``: the
library's emulator, FakeQomon, on a free port.

Both print ``URL=http://127.0.0.1:PORT`` on stdout once listening, and exit when stdin closes
(the parent closes it, or dies).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from aiohttp import web

from benchmarks._payloads import SEED

_ID = b"12345678"
_PARTS = SEED.split(_ID)  # the seed names its id twice: data.contact.id and formdatas' contact_id


class TinyCreateServer:
    """Answers ``POST /contacts`` with the seed response and a fresh id; 404 elsewhere."""

    def __init__(self) -> None:
        self.next_id = 1

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        if request.method != "POST" or request.path != "/contacts":
            return web.Response(
                status=404, body=b'{"status":"fail"}', content_type="application/json"
            )
        number = str(self.next_id).encode()
        self.next_id += 1
        return web.Response(body=number.join(_PARTS), content_type="application/json")


async def _wait_for_stdin_close() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def serve_tiny() -> None:
    app = TinyCreateServer()
    runner = web.ServerRunner(web.Server(app.handle), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    print(f"URL=http://127.0.0.1:{port}", flush=True)
    try:
        await _wait_for_stdin_close()
    finally:
        await runner.cleanup()


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
    parser.add_argument("--latency", type=float, default=0.0, help="Qomon seconds per answer")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--no-rate-limit", action="store_true")
    options = parser.parse_args()
    if options.kind == "tiny":
        asyncio.run(serve_tiny())
    else:
        asyncio.run(serve_fake(options))


if __name__ == "__main__":
    main()
