"""What goes on the wire with each request, over real HTTP on 127.0.0.1.

The client's own session carries the key and the common headers as its defaults, and a JSON
body brings its own Content-Type (a payload built without aiohttp's registry); a caller's
session gets every header with each request instead. Both must put the same headers and the
same body on the wire.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.payload import BytesPayload

from qomon_async import QomonClient, _http

KEY = "sk-live-7f3a9c1e5b2d4a6f8e0c"
SEED = (Path(__file__).parent / "data" / "seed-create-response.json").read_bytes()
#: The headers the client chooses (aiohttp adds Host and Content-Length).
CHOSEN = ("Authorization", "User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        chosen = {name: request.headers[name] for name in CHOSEN if name in request.headers}
        self.seen.append((request.method, request.path, chosen, body))
        return web.Response(body=SEED, content_type="application/json")


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    server = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


async def _exchange(client: QomonClient) -> None:
    await client.create_contact({"firstname": "Jeanne", "mail": "jeanne@example.org"})
    await client.get_contact(12345678)


async def test_own_session_and_callers_session_send_the_same_headers_and_body(
    recorder: Recorder,
) -> None:
    async with QomonClient(KEY, base_url=recorder.url, user_agent="probe/1") as client:
        await _exchange(client)
        session = client._session
        assert session is not None
        # The client's own session carries the headers: none are passed per request.
        assert client._auth.for_body is None and client._auth.for_bodyless is None
        assert KEY not in repr(dict(session.headers))  # the key's value keeps its redacted repr
    own = list(recorder.seen)
    recorder.seen.clear()
    async with (
        aiohttp.ClientSession() as caller_session,
        QomonClient(
            KEY, base_url=recorder.url, user_agent="probe/1", session=caller_session
        ) as client,
    ):
        await _exchange(client)
        assert client._auth.for_body is client._auth.json_headers
        assert not caller_session.headers  # the caller's session is left as it was
    assert recorder.seen == own
    (post_method, post_path, post_headers, post_body), (get_method, _, get_headers, get_body) = own
    assert (post_method, post_path, get_method) == ("POST", "/contacts", "GET")
    common = {
        "Authorization": f"Bearer {KEY}",
        "User-Agent": "probe/1",
        "Accept": "application/json",
        "Accept-Encoding": "gzip, deflate",
    }
    assert post_headers == {**common, "Content-Type": "application/json"}
    assert get_headers == common  # no Content-Type without a body
    assert json.loads(post_body) == {
        "data": {"contact": {"firstname": "Jeanne", "mail": "jeanne@example.org"}}
    }
    assert get_body == b""


def test_the_json_payload_holds_what_aiohttp_builds_from_bytes() -> None:
    body = b'{"data": {"contact": {"mail": "a@example.org"}}}'
    ours = _http.json_body(body)
    theirs = BytesPayload(body, content_type="application/json")
    assert _http.json_body is _http._JSONBody  # the installed aiohttp takes the slim payload
    assert isinstance(ours, BytesPayload)
    as_seen: dict[str, Any] = {
        "size": ours.size,
        "content_type": ours.content_type,
        "headers": dict(ours.headers),
        "value": ours._value,
        "consumed": ours.consumed,
    }
    assert as_seen == {
        "size": theirs.size,
        "content_type": theirs.content_type,
        "headers": dict(theirs.headers),
        "value": theirs._value,
        "consumed": theirs.consumed,
    }
    assert vars(ours).keys() == vars(theirs).keys()


def test_a_payload_that_does_not_match_falls_back_to_aiohttps_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another aiohttp whose BytesPayload holds other attributes: aiohttp builds the payload."""

    def extra_init(self: BytesPayload, value: bytes, *args: Any, **kwargs: Any) -> None:
        original(self, value, *args, **kwargs)
        self._extra = True  # type: ignore[attr-defined]

    original = BytesPayload.__init__
    monkeypatch.setattr(BytesPayload, "__init__", extra_init)
    assert not _http._slim_matches()
