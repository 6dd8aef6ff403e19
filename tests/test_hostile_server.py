"""A hostile or broken server, over real HTTP on 127.0.0.1: what reaches the caller.

Each test starts a small aiohttp server whose handler misbehaves in one way (a 2xx that is not
JSON, a redirect, an echoed key, a huge or endless or compressed-bomb body) and checks that the
caller gets the library's documented exception, with the API key nowhere to be seen.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import traceback
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from qomon_async import (
    APIConnectionError,
    AuthenticationError,
    OutcomeUnknownError,
    QomonClient,
    ResponseDecodeError,
    RetryPolicy,
    ServerError,
    UnexpectedRedirectError,
)
from qomon_async._retry import is_ambiguous

KEY = "sk-live-7f3a9c1e5b2d4a6f8e0c"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hostile:
    """A one-route-table server: ``routes[(method, path)]`` answers; every request is logged."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.requests: list[tuple[str, str]] = []
        self.url = ""

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return web.json_response({"title": "no route"}, status=404)
        return await handler(request)

    def count(self, method: str, path: str) -> int:
        return self.requests.count((method, path))


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    server = Hostile()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.dispatch)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


def client_for(server: Hostile, **kwargs: object) -> QomonClient:
    options: dict[str, object] = {
        "base_url": server.url,
        "rate_limit": False,
        "retry": RetryPolicy(base_delay=0.001, max_delay=0.002),
        "reconcile_delay": 0.0,
    }
    options.update(kwargs)
    return QomonClient(KEY, **options)  # type: ignore[arg-type]


def text(body: str | bytes, status: int = 200, **headers: str) -> Handler:
    return encoded(body, {}, status=status, **headers)


def encoded(body: str | bytes, more: dict[str, str], status: int = 200, **headers: str) -> Handler:
    """An answer with headers whose names are not identifiers (``Content-Encoding``)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(status=status, body=data, headers={**headers, **more})

    return handler


def rendered(exc: BaseException) -> str:
    """Everything an error reporter could record: message, chain, every frame's locals."""
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


CONTACT = {"id": 41, "firstname": "Jeanne", "surname": "Martin", "mail": "jeanne@example.org"}


# ------------------------------------------------------------------------------------------
# 12.3: no raw exception reaches a caller
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "502 Bad Gateway",
        '{"status": true, "data": {"contact": {"id": 1, "firstname": "Je',
        "[" * 200_000,
        '{"data": {"contact": ' * 50_000,
        "",
        "\xff\xfe garbage",
    ],
    ids=["proxy-text", "truncated-json", "deep-arrays", "deep-objects", "empty", "binary"],
)
async def test_a_2xx_that_cannot_be_read_is_a_response_decode_error(
    hostile: Hostile, body: str
) -> None:
    hostile.routes["GET", "/contacts/41"] = text(body)
    hostile.routes["POST", "/search"] = text(body)
    hostile.routes["POST", "/contacts"] = text(body, status=201)
    async with client_for(hostile) as client:
        with pytest.raises(ResponseDecodeError) as got:
            await client.get_contact(41)
        assert got.value.status_code == 200
        with pytest.raises(ResponseDecodeError):
            await anext(aiter(client.search_contacts()))
        # On a create, the unreadable success is ambiguous: never sent again blindly.
        with pytest.raises(OutcomeUnknownError) as unknown:
            await client.create_contact({"firstname": "Jeanne", "mail": "j@example.org"},
                                        reconcile=False)  # fmt: skip
        assert isinstance(unknown.value.cause, ResponseDecodeError)
        assert is_ambiguous(unknown.value.cause)
    assert hostile.count("POST", "/contacts") == 1


async def test_an_unreadable_create_answer_is_reconciled(hostile: Hostile) -> None:
    created = {**CONTACT, "CreatedAt": dt.datetime.now(dt.timezone.utc).isoformat()}
    hostile.routes["POST", "/contacts"] = text("502 Bad Gateway", status=200)
    hostile.routes["POST", "/search"] = text(json.dumps({"data": {"contacts": [created]}}))
    async with client_for(hostile) as client:
        contact = await client.create_contact(
            {"firstname": "Jeanne", "surname": "Martin", "mail": "jeanne@example.org"}
        )
    assert contact.id == 41
    assert hostile.count("POST", "/contacts") == 1


async def test_a_created_at_without_a_zone_is_utc_and_reconciliation_compares(
    hostile: Hostile,
) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    naive = now.replace(tzinfo=None).isoformat()  # "2026-11-30T05:30:37.123456", no zone
    found = {**CONTACT, "CreatedAt": naive, "UpdatedAt": naive, "lastchange": naive}
    hostile.routes["POST", "/contacts"] = text('{"title": "boom"}', status=500)
    hostile.routes["POST", "/search"] = text(json.dumps({"data": {"contacts": [found]}}))
    async with client_for(hostile) as client:
        contacts = [c async for c in client.search_contacts()]
        assert contacts[0].created_at is not None
        assert contacts[0].created_at.tzinfo is not None
        assert contacts[0].created_at.utcoffset() == dt.timedelta(0)
        assert contacts[0].created_at == now.replace(microsecond=contacts[0].created_at.microsecond)
        # A 500 is ambiguous: the lookup compares the found contact's date with the attempt's.
        contact = await client.create_contact(
            {"firstname": "Jeanne", "surname": "Martin", "mail": "jeanne@example.org"}
        )
    assert contact.id == 41 and contact.created_at is not None
    assert contact.created_at.tzinfo is not None


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\t", "\x7f"])
def test_a_key_with_a_control_character_is_refused_at_construction(char: str) -> None:
    key = f"sk-live-{char}secretpart"
    with pytest.raises(ValueError, match="control character") as got:
        QomonClient(key, base_url="http://127.0.0.1:1")
    assert "secretpart" not in str(got.value) and "sk-live" not in str(got.value)


# ------------------------------------------------------------------------------------------
# 12.4: the key never in an exception, a text built from an answer, or a frame's locals
# ------------------------------------------------------------------------------------------


async def test_a_401_echoing_the_key_does_not_show_it(hostile: Hostile) -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        header = request.headers["Authorization"]
        problem = {
            "title": f"invalid credentials {header}",
            "detail": f"the key {header.removeprefix('Bearer ')} is revoked",
            "errors": [{"location": "header", "message": header, "value": header}],
        }
        echo = {"WWW-Authenticate": f'Bearer error="invalid_token", token="{header}"'}
        return web.json_response(problem, status=401, reason=f"Denied {header}", headers=echo)

    hostile.routes["GET", "/contacts/41"] = echo
    async with client_for(hostile) as client:
        with pytest.raises(AuthenticationError) as got:
            await client.get_contact(41)
    error = got.value
    assert "<redacted>" in str(error)
    for shown in (str(error), repr(error), error.text, repr(error.problem), rendered(error)):
        assert KEY not in shown


SLASHED_KEY = "sk/live+abc"  # "/" may come back escaped as "\/"


async def test_a_json_escaped_key_in_a_2xx_is_cut_out_of_the_error(hostile: Hostile) -> None:
    hostile.routes["GET", "/contacts/41"] = text('{"data": {"contact": {"note": "sk\\/live+abc"}}}')
    async with QomonClient(SLASHED_KEY, base_url=hostile.url, rate_limit=False) as client:
        with pytest.raises(ResponseDecodeError) as got:
            await client.get_contact(41)
    shown = rendered(got.value)
    assert "<redacted>" in got.value.text
    assert "live+abc" not in got.value.text and "live+abc" not in shown


async def test_a_cancelled_request_leaves_the_key_in_no_frame(hostile: Hostile) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await release.wait()
        return web.Response()

    hostile.routes["GET", "/contacts/41"] = stall
    async with client_for(hostile) as client:
        task = asyncio.create_task(client.get_contact(41))
        await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError) as got:
            await task
    release.set()
    shown = rendered(got.value)
    assert "request_headers" in shown  # the transport's frame is there, its locals rendered
    assert KEY not in shown


async def test_a_closed_session_handed_in_is_a_connection_error_without_the_key(
    hostile: Hostile,
) -> None:
    session = aiohttp.ClientSession()
    await session.close()
    client = client_for(hostile, session=session)
    with pytest.raises(APIConnectionError) as got:
        await client.get_contact(41)
    assert got.value.request_sent is False and "closed" in str(got.value)
    assert KEY not in rendered(got.value)
    assert hostile.requests == []


async def test_a_401_leaves_the_key_in_no_frame(hostile: Hostile) -> None:
    hostile.routes["GET", "/contacts/41"] = text('{"title": "Unauthorized"}', status=401)
    async with client_for(hostile) as client:
        with pytest.raises(AuthenticationError) as got:
            await client.get_contact(41)
    shown = rendered(got.value)
    assert "self = " in shown and KEY not in shown


# ------------------------------------------------------------------------------------------
# 12.5: what an answer may cost is bounded
# ------------------------------------------------------------------------------------------


def streamed(chunks: Callable[[], AsyncIterator[bytes]], **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            async for chunk in chunks():
                await response.write(chunk)
        except (ConnectionResetError, ConnectionError):
            return response
        await response.write_eof()
        return response

    return handler


async def zeros(total: int, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    block = b"0" * size
    for _ in range(total // size):
        yield block


async def gzip_bomb(total: int) -> AsyncIterator[bytes]:
    """``total`` bytes of spaces, gzip-compressed on the fly (about 1,000 to 1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1024 * 1024)
    for _ in range(total // len(block)):
        yield compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)
        await asyncio.sleep(0)  # the client shares this loop: let it read
    yield compressor.flush()


async def test_a_body_beyond_the_limit_is_refused_with_its_size(hostile: Hostile) -> None:
    hostile.routes["GET", "/contacts/1"] = streamed(lambda: zeros(4 * 1024 * 1024))
    hostile.routes["GET", "/contacts/2"] = text(b"0" * 300_000)  # a declared Content-Length
    hostile.routes["GET", "/contacts/3"] = encoded(b"0" * 300_000, {"Content-Encoding": "identity"})
    async with client_for(hostile, max_response_bytes=100_000) as client:
        for contact_id in (1, 2, 3):
            with pytest.raises(ResponseDecodeError, match="exceeds max_response_bytes") as got:
                await client.get_contact(contact_id)
            assert "100,000" in str(got.value) and got.value.status_code == 200


async def test_an_endless_stream_stops_at_the_limit(hostile: Hostile) -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"[" * 65536

    hostile.routes["GET", "/contacts/1"] = streamed(endless)
    async with client_for(hostile, max_response_bytes=1_000_000) as client:
        with pytest.raises(ResponseDecodeError, match="exceeds max_response_bytes"):
            await client.get_contact(1)


async def test_a_gzip_bomb_stops_at_the_limit_decompressed(hostile: Hostile) -> None:
    hostile.routes["GET", "/contacts/1"] = streamed(
        lambda: gzip_bomb(256 * 1024 * 1024), **{"Content-Encoding": "gzip"}
    )
    async with client_for(hostile, max_response_bytes=2_000_000) as client:
        with pytest.raises(ResponseDecodeError, match="decompressed bytes, more than 2,000,000"):
            await client.get_contact(1)


async def test_compressed_answers_within_the_limit_are_read(hostile: Hostile) -> None:
    body = json.dumps({"data": {"contact": CONTACT}}).encode()
    gz = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    hostile.routes["GET", "/contacts/1"] = encoded(
        gz.compress(body) + gz.flush(), {"Content-Encoding": "gzip"}
    )
    hostile.routes["GET", "/contacts/2"] = encoded(
        zlib.compress(body), {"Content-Encoding": "deflate"}
    )
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)  # "deflate" without its wrapper
    hostile.routes["GET", "/contacts/4"] = encoded(
        raw.compress(body) + raw.flush(), {"Content-Encoding": "deflate"}
    )
    hostile.routes["GET", "/contacts/3"] = encoded(body, {"Content-Encoding": "br"})
    # Said plainly: read like any body that is not compressed.
    hostile.routes["GET", "/contacts/5"] = encoded(body, {"Content-Encoding": "identity"})
    async with client_for(hostile) as client:
        assert (await client.get_contact(1)).id == 41
        assert (await client.get_contact(2)).id == 41
        assert (await client.get_contact(4)).id == 41
        assert (await client.get_contact(5)).id == 41
        with pytest.raises(ResponseDecodeError, match="cannot be decompressed"):
            await client.get_contact(3)


async def test_an_error_status_beyond_the_limit_keeps_its_status(hostile: Hostile) -> None:
    hostile.routes["GET", "/contacts/1"] = text(b"x" * 50_000, status=500)
    async with client_for(hostile, max_response_bytes=10_000, retry=RetryPolicy.disabled()) as c:
        with pytest.raises(ServerError, match="body dropped") as got:
            await c.get_contact(1)
    assert got.value.status_code == 500


# ------------------------------------------------------------------------------------------
# 12.7: a redirect is never a confirmation; ids that cannot be stored are refused
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_body", [True, False])
async def test_a_redirect_on_a_create_is_an_error_sent_once(
    hostile: Hostile, with_body: bool
) -> None:
    body = json.dumps({"data": {"contact": CONTACT}}) if with_body else ""
    hostile.routes["POST", "/contacts"] = text(
        body, status=302, Location=f"https://elsewhere.example/login?next={KEY}"
    )
    async with client_for(hostile) as client:
        with pytest.raises(UnexpectedRedirectError) as got:
            await client.create_contact({"firstname": "Jeanne", "mail": "jeanne@example.org"})
    error = got.value
    assert error.status_code == 302 and "elsewhere.example/login" in str(error)
    assert error.location.startswith("https://elsewhere.example/login")
    assert KEY not in rendered(error) and KEY not in error.location
    assert not is_ambiguous(error)
    assert hostile.count("POST", "/contacts") == 1 and hostile.count("POST", "/search") == 0


async def test_a_redirect_on_a_read_is_not_followed(hostile: Hostile) -> None:
    hostile.routes["GET", "/contacts/41"] = text("", status=301, Location="/contacts/42")
    hostile.routes["GET", "/contacts/42"] = text(json.dumps({"data": {"contact": CONTACT}}))
    async with client_for(hostile) as client:
        with pytest.raises(UnexpectedRedirectError, match="/contacts/42"):
            await client.get_contact(41)
    assert hostile.count("GET", "/contacts/42") == 0


@pytest.mark.parametrize("big", [2**63, 2**64 + 5, 10**30, -(2**63) - 1])
async def test_an_id_beyond_64_bits_is_refused(hostile: Hostile, big: int) -> None:
    body = json.dumps({"data": {"contact": {**CONTACT, "id": big}}})
    hostile.routes["GET", "/contacts/41"] = text(body)
    hostile.routes["POST", "/search"] = text(json.dumps({"data": {"contacts": [{"id": big}]}}))
    async with client_for(hostile) as client:
        with pytest.raises(ResponseDecodeError, match=r"922337203685477580|out of range"):
            await client.get_contact(41)
        with pytest.raises(ResponseDecodeError):
            await anext(aiter(client.search_contacts()))


async def test_the_largest_64_bit_id_is_read(hostile: Hostile) -> None:
    body = json.dumps({"data": {"contact": {**CONTACT, "id": 2**63 - 1}}})
    hostile.routes["GET", "/contacts/41"] = text(body)
    async with client_for(hostile) as client:
        assert (await client.get_contact(41)).id == 2**63 - 1


def test_a_user_agent_with_a_control_character_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="user_agent contains a control character"):
        QomonClient(KEY, base_url="http://127.0.0.1:1", user_agent="my-sync/1.0\r\nX-Evil: 1")


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 2OO OK\r\n\r\n",  # not a status line
        b"garbage\r\n\r\n",
        b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"data":',  # closed mid-body
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n",  # a header too long
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",  # a broken chunk
        b"",  # closed at once
    ],
    ids=["status", "garbage", "truncated", "long-header", "bad-chunk", "closed"],
)
async def test_a_broken_http_answer_is_a_connection_error(raw: bytes) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        client = QomonClient(KEY, base_url=f"http://127.0.0.1:{port}", rate_limit=False,
                             retry=RetryPolicy.disabled())  # fmt: skip
        async with client:
            with pytest.raises(APIConnectionError) as got:
                await client.get_contact(41)
    finally:
        server.close()
        await server.wait_closed()
    assert got.value.request_sent is True
    assert KEY not in rendered(got.value)
