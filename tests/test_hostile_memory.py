"""What a hostile answer may cost in memory: a 1 GB gzip bomb and a 200 MB body, each read by a
client in a subprocess (so that this process's memory does not count), cost less than 50 MB of
peak RSS growth there. Both are streamed by a server in this process, generated on the fly."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import zlib
from collections.abc import AsyncIterator

from aiohttp import web

CLIENT = r"""
import asyncio, json, resource, sys
from qomon_async import QomonClient, ResponseDecodeError

def peak_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

async def main(url):
    growth = {}
    async with QomonClient("sk-test", base_url=url, rate_limit=False) as client:
        await client.get_contact(1)  # warm: imports, session, connection pool
        for name, contact_id in ((sys.argv[2], 2 if sys.argv[2] == "bomb" else 3),):
            before = peak_kb()
            try:
                await client.get_contact(contact_id)
                error = None
            except ResponseDecodeError as exc:
                error = str(exc)
            growth[name] = {"kb": peak_kb() - before, "error": error}
    print(json.dumps(growth))

asyncio.run(main(sys.argv[1]))
"""

GB = 1024**3
MB = 1024**2


async def _stream(
    request: web.Request, chunks: AsyncIterator[bytes], **headers: str
) -> web.StreamResponse:
    response = web.StreamResponse(headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        pass
    return response


async def _bomb(total: int) -> AsyncIterator[bytes]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * MB
    for _ in range(total // MB):
        yield compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
    yield compressor.flush()


async def _plain(total: int) -> AsyncIterator[bytes]:
    block = b"7" * MB
    for _ in range(total // MB):
        yield block


async def handler(request: web.Request) -> web.StreamResponse:
    if request.path == "/contacts/1":
        return web.json_response({"data": {"contact": {"id": 1}}})
    if request.path == "/contacts/2":
        return await _stream(request, _bomb(GB), **{"Content-Encoding": "gzip"})
    return await _stream(request, _plain(200 * MB))


async def test_a_gzip_bomb_and_a_huge_body_keep_memory_flat() -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    growth = {}
    try:
        for scenario in ("bomb", "big"):  # one fresh process each: peak RSS only grows
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CLIENT, f"http://127.0.0.1:{port}", scenario,
                stdout=asyncio.subprocess.PIPE, env={**os.environ},
            )  # fmt: skip
            out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
            assert process.returncode == 0
            growth.update(json.loads(out))
    finally:
        await runner.cleanup()
    print("rss growth (KB):", {k: v["kb"] for k, v in growth.items()})
    for name in ("bomb", "big"):
        assert growth[name]["error"] is not None and "max_response_bytes" in growth[name]["error"]
        assert growth[name]["kb"] < 50 * 1024, growth
    assert "decompressed" in growth["bomb"]["error"]
