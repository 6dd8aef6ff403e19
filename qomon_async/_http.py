"""The one module that performs HTTP: a request out, ``(status, headers, body)`` back.

Every aiohttp exception is translated here into :class:`APIConnectionError` or
:class:`APITimeoutError`, with ``request_sent`` telling whether the request may have reached
Qomon (the line between "safe to send again" and "outcome unknown" for a create).

What an answer may cost is bounded here: the body is read in chunks, decompressed here (not by
aiohttp) with a running count, and refused beyond ``max_bytes``. A redirect is never followed
and never taken for an answer. The API key lives in a :class:`Secret` and in header values whose
``repr`` is redacted, so that no frame's locals show it, and it is cut out of every answer before
any text is built from it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import zlib
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp.payload import BytesPayload, Payload
from multidict import CIMultiDict, CIMultiDictProxy

from ._exceptions import (
    APIConnectionError,
    APITimeoutError,
    ResponseDecodeError,
    UnexpectedRedirectError,
)

#: The default bound on an answer's size, decompressed (bytes). Qomon's largest answer, a
#: 1,000-contact search page, weighs a few megabytes.
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024

_REDACTED = "<redacted>"

T = TypeVar("T")

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def check_base_url(base_url: str) -> str:
    """The base URL without its trailing slash; plain http only to a loopback address.

    The API key travels in every request's Authorization header: never in clear over a network.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"base_url must be an https:// URL, not {base_url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ValueError(
            f"https is required: refusing to send the API key in clear to {parts.hostname} "
            "(plain http is allowed only to a loopback address such as 127.0.0.1, for the emulator)"
        )
    return base_url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Secret:
    """The API key, kept out of reprs, logs and tracebacks' locals.

    Refuses a key that cannot travel in an HTTP header (a control character: a pasted newline or
    tab), with a message that names the problem and its position, never the key.
    """

    __slots__ = ("_needles", "_value")

    def __init__(self, value: str) -> None:
        for position, char in enumerate(value):
            if ord(char) < 0x20 or ord(char) == 0x7F:
                raise ValueError(
                    f"the API key contains a control character (U+{ord(char):04X}) at position "
                    f"{position + 1} of {len(value)}: check for a stray newline or tab where it "
                    "was pasted"
                )
        self._value = value
        encoded = value.encode("utf-8")
        # The key as it may come back in an answer: raw, or escaped by a JSON encoder.
        escaped = json_escaped(value)
        slashed = escaped.replace(b"/", b"\\/")  # some encoders escape "/" too
        self._needles = tuple(dict.fromkeys(n for n in (encoded, escaped, slashed) if n))

    def reveal(self) -> str:
        """The key itself (for the Authorization header, and for a caller's own redaction)."""
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of the key replaced by ``<redacted>``."""
        if self._value and self._value in text:
            text = text.replace(self._value, _REDACTED)
        return text

    def redact_headers(self, headers: Mapping[str, str]) -> Mapping[str, str]:
        """``headers`` (names looked up in any case), the key cut out of any value that echoes
        it. Headers that do not echo it come back as they are (no copy)."""
        if self._value and self._value in "\n".join(headers.values()):
            redacted: dict[str, str] = {}
            for name, value in headers.items():
                # The first of repeated headers, as a multidict's get() gives it.
                redacted.setdefault(name.lower(), self.redact(value))
            return redacted
        return headers

    def redact_bytes(self, data: bytes) -> bytes:
        """``data`` with every occurrence of the key (raw or JSON-escaped) replaced."""
        for needle in self._needles:
            if needle in data:
                data = data.replace(needle, _REDACTED.encode())
        return data

    def __repr__(self) -> str:
        return _REDACTED

    __str__ = __repr__


def json_escaped(value: str) -> bytes:
    """``value`` as a JSON encoder may write it inside a string (without the quotes)."""
    return json.dumps(value).encode()[1:-1]


class _HeaderValue(str):
    """A header value that aiohttp writes as it is, but whose ``repr`` is redacted.

    Frames' locals are rendered with ``repr`` by tracebacks and error reporters: a dict holding
    this value shows ``'<redacted>'``. ``str()`` and formatting are untouched (the wire needs them).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(_REDACTED)


class Auth:
    """What every request of one client carries, built once: the key and the header dicts.

    ``for_body`` and ``for_bodyless`` are the headers handed to aiohttp with each request:
    ``json_headers`` and ``headers``, or None for both once :meth:`preset` says the session
    carries ``headers`` as its defaults (the client's own session: aiohttp then merges nothing
    per request, and a body brings its own Content-Type, see :func:`json_body`).
    """

    __slots__ = ("for_body", "for_bodyless", "headers", "json_headers", "secret")

    def __init__(self, api_key: str, *, user_agent: str) -> None:
        self.secret = Secret(api_key)
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in user_agent):
            raise ValueError(f"user_agent contains a control character: {user_agent!r}")
        # Case-insensitive multidicts, as aiohttp takes them without converting them.
        self.headers: Mapping[str, str] = CIMultiDictProxy(
            CIMultiDict(
                {
                    "Authorization": _HeaderValue(f"Bearer {api_key}"),
                    "User-Agent": user_agent,
                    "Accept": "application/json",
                    # Decompressed here, with a bound: only what this module can decode.
                    "Accept-Encoding": "gzip, deflate",
                }
            )
        )
        self.json_headers: Mapping[str, str] = CIMultiDictProxy(
            CIMultiDict({**self.headers, "Content-Type": "application/json"})
        )
        self.for_body: Mapping[str, str] | None = self.json_headers
        self.for_bodyless: Mapping[str, str] | None = self.headers

    def preset(self) -> None:
        """Say that the session every request of this client goes through carries
        :attr:`headers` as its default headers (see :func:`make_session`): none are passed per
        request any more."""
        self.for_body = self.for_bodyless = None

    def __repr__(self) -> str:
        return f"Auth({_REDACTED})"


class RawResponse:
    """What came back: status, reason, headers (looked up by lower-case names) and body bytes.

    ``secret``: the key to cut out of the reason and the headers each time they are read (an
    answer whose reason and headers nobody reads, a success, costs nothing; they are read
    at most once or twice, on error paths); the body comes already redacted.
    """

    __slots__ = ("_headers", "_reason", "_secret", "body", "status")

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        secret: Secret | None = None,
    ) -> None:
        self.status = status
        self._reason = reason
        self._headers = headers
        self._secret = secret
        self.body = body

    @property
    def reason(self) -> str:
        """The status line's reason phrase, the key cut out."""
        secret = self._secret
        return self._reason if secret is None else secret.redact(self._reason)

    def numbers_in_headers(self, parse: Callable[[Mapping[str, str]], T]) -> T:
        """``parse`` applied to the headers as they came, unredacted: only for a parser whose
        result holds numbers alone, never text (the rate-limit headers), so that the key cannot
        travel through it; it saves the redaction's scan on every answer."""
        return parse(self._headers)

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers, the key cut out of any value that echoes it."""
        secret = self._secret
        return self._headers if secret is None else secret.redact_headers(self._headers)

    def __repr__(self) -> str:
        return f"RawResponse(status={self.status}, {len(self.body)} bytes)"


def make_session(*, max_connections: int, auth: Auth) -> aiohttp.ClientSession:
    """The client's own session: a bounded connection pool, created in the running loop, whose
    default headers are ``auth``'s (:meth:`Auth.preset` is called: requests pass none)."""
    # One limit: the session only ever talks to base_url's host (redirects are not followed),
    # so a per-host limit would say the same again, at the cost of aiohttp's per-host
    # bookkeeping on every request (~26 bytecodes per create, measured).
    connector = aiohttp.TCPConnector(limit=max_connections)
    session = aiohttp.ClientSession(
        connector=connector,
        # The headers every request carries, as the session's defaults: aiohttp copies them
        # into each request in one C call, where headers passed per request are merged one by
        # one in Python (twice: the session's merge, then the request's). The key's value
        # keeps its redacted repr there too. No cookies: the API authenticates by key, and a
        # jar would be consulted on every request for nothing.
        headers=auth.headers,
        cookie_jar=aiohttp.DummyCookieJar(),
        # No timeout here: each request carries its own (the session may be the caller's).
        timeout=aiohttp.ClientTimeout(total=None),
        raise_for_status=False,
    )
    auth.preset()
    return session


#: The Content-Type of every body this client sends, as the payload's own header.
_JSON_TYPE: Mapping[str, str] = CIMultiDictProxy(CIMultiDict({"Content-Type": "application/json"}))


class _JSONBody(BytesPayload):
    """A JSON body, handed to aiohttp as the payload it would have built from the bytes.

    Given bytes, aiohttp looks their payload type up in its registry and builds a
    ``BytesPayload`` through two ``__init__`` with keyword handling and a fresh header multidict;
    this one sets the same attributes directly and shares one read-only header multidict (aiohttp
    only reads a payload's headers). :func:`json_body` checks once that it matches what aiohttp
    builds, and falls back to aiohttp's own construction where it does not (another version).
    """

    def __init__(self, value: bytes) -> None:  # no super().__init__: the attributes set here
        self._value = value
        self._size = len(value)
        self._headers = _JSON_TYPE  # type: ignore[assignment]
        self._encoding = None
        self._filename = None


def _aiohttp_json_body(value: bytes) -> Payload:
    return BytesPayload(value, content_type="application/json")


def _slim_matches() -> bool:
    """Whether :class:`_JSONBody` holds what aiohttp's own ``BytesPayload`` holds."""
    probe = b'{"probe": 1}'
    try:
        ours, theirs = vars(_JSONBody(probe)), vars(_aiohttp_json_body(probe))
    except Exception:  # any surprise: aiohttp's own construction
        return False
    if ours.keys() != theirs.keys():
        return False
    return all(
        dict(value.items()) == dict(theirs[key].items())
        if key == "_headers"
        else value == theirs[key]
        for key, value in ours.items()
    )


#: The payload of a JSON body: what aiohttp builds from bytes, built with less work.
json_body: Callable[[bytes], Payload] = _JSONBody if _slim_matches() else _aiohttp_json_body


_timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}


def client_timeout(total: float, connect: float) -> aiohttp.ClientTimeout:
    """aiohttp's timeout object for ``total`` and ``connect`` seconds (shared, cached)."""
    timeout = _timeouts.get((total, connect))
    if timeout is None:
        if len(_timeouts) > 64:
            _timeouts.clear()
        timeout = _timeouts[total, connect] = aiohttp.ClientTimeout(total=total, connect=connect)
    return timeout


class _TooLarge(Exception):
    def __init__(self, size: int, compressed: bool) -> None:
        self.size = size
        self.compressed = compressed


def _decompressor(encoding: str, first: bytes) -> zlib._Decompress | None:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        # RFC 9110 says zlib-wrapped; some servers send raw deflate. Tell them apart.
        wrapped = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
    raise ValueError(f"unsupported Content-Encoding {encoding[:50]!r}")


async def _read_body(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The whole body, decompressed; :class:`_TooLarge` beyond ``max_bytes`` (either side of
    decompression). Memory stays within ``max_bytes`` plus one chunk. (:func:`send` reads the
    common case itself: a body without Content-Encoding of a known, allowed size.)"""
    declared = response.content_length
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if declared is not None and declared > max_bytes:
        raise _TooLarge(declared, False)
    decompressor: zlib._Decompress | None = None
    parts: list[bytes] = []
    wire = size = 0
    async for chunk in response.content.iter_any():
        if wire == 0:
            decompressor = _decompressor(encoding, chunk)
        wire += len(chunk)
        if wire > max_bytes:
            raise _TooLarge(wire, False)
        if decompressor is None:
            size += len(chunk)
            parts.append(chunk)
            continue
        pending = chunk
        while pending:
            out = decompressor.decompress(pending, max_bytes - size + 1)
            size += len(out)
            if size > max_bytes:
                raise _TooLarge(size, True)
            parts.append(out)
            pending = decompressor.unconsumed_tail
    if decompressor is not None:
        tail = decompressor.flush()
        size += len(tail)
        if size > max_bytes:
            raise _TooLarge(size, True)
        parts.append(tail)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def send(  # noqa: PLR0917 (called positionally, once per request)
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    path: str,
    auth: Auth,
    body: bytes | None,
    timeout: aiohttp.ClientTimeout,
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> RawResponse:
    """Send one request and read the whole answer; translate every transport failure.

    ``path``: the URL's path, named in errors. ``timeout``: see :func:`client_timeout`. The key
    is cut out of the answer (body, reason, headers) before anything is built from it.

    Raises:
        APIConnectionError: no complete answer (``APITimeoutError`` for a timeout); a closed
            session is one too, with ``request_sent=False``.
        UnexpectedRedirectError: a 3xx (redirects are not followed: the key stays on the host
            it was meant for, and a redirect confirms nothing).
        ResponseDecodeError: a 2xx larger than ``max_bytes`` (decompressed or not), or
            compressed in a way this client did not ask for.

    The error raised carries the aiohttp failure's type and message, not the aiohttp exception
    itself: the Authorization header must not travel in a chained exception's frames.
    """
    if body is None:
        request_headers = auth.for_bodyless
        data = None
    else:
        request_headers = auth.for_body
        data = json_body(body)
    secret = auth.secret
    error: Exception
    # Its repr shows the answer's headers, which may echo the key: never left in this frame.
    response: aiohttp.ClientResponse | None = None
    try:
        # Awaited directly, not through ``async with``: what its exit does (release, then wait
        # for the request's writer) is done in the finally below, without aiohttp's two
        # context-manager coroutines on each side (40 bytecodes less per request).
        response = await session.request(
            method,
            url,
            data=data,
            headers=request_headers,
            timeout=timeout,
            allow_redirects=False,
            auto_decompress=False,
        )
        try:
            status = response.status
            if 300 <= status < 400:
                reason = secret.redact(response.reason or "")
                location = secret.redact(response.headers.get("Location", ""))
                error = UnexpectedRedirectError(
                    f"{status}{' ' + reason if reason else ''} on {method} {path}, redirecting to "
                    f"{location[:200] or '(no Location)'}: redirects are not followed (check "
                    "base_url)",
                    status_code=status,
                    method=method,
                    url=path,
                    location=location,
                )
            else:
                headers = response.headers
                problem = ""
                try:
                    declared = response.content_length
                    if (
                        declared is not None
                        and declared <= max_bytes
                        and "Content-Encoding" not in headers
                    ):
                        # The common case: a plain body of a known, allowed size, read at once
                        # (aiohttp stops at Content-Length, so nothing beyond it is read),
                        # without _read_body's frame; anything else is _read_body's.
                        payload = await response.read()
                    else:
                        payload = await _read_body(response, max_bytes)
                except _TooLarge as exc:
                    what = "decompressed " if exc.compressed else ""
                    problem = (
                        f"exceeds max_response_bytes: {exc.size:,}+ {what}bytes, more than "
                        f"{max_bytes:,}"
                    )
                except (ValueError, zlib.error) as exc:
                    encoding = headers.get("Content-Encoding", "")
                    problem = f"cannot be decompressed ({encoding[:50]!r}: {exc})"
                if problem and status < 400:
                    error = ResponseDecodeError(
                        f"the answer to {method} {path} ({status}) {problem}", status_code=status
                    )
                else:
                    if problem:
                        # An error status matters more than its body: keep the status, drop
                        # the body (the exception's text says why it is empty).
                        payload = f"(body dropped: it {problem})".encode()
                    return RawResponse(
                        status,
                        response.reason or "",
                        headers,
                        secret.redact_bytes(payload),
                        secret=secret,
                    )
        finally:
            response.release()
            await response.wait_for_close()
    except aiohttp.ConnectionTimeoutError:
        # Timed out while connecting: the request was never written.
        error = APITimeoutError(
            f"timed out connecting for {method} {path}", method=method, url=path, request_sent=False
        )
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
        error = APITimeoutError(
            f"no complete answer to {method} {path} within {timeout.total or 0:g} s",
            method=method,
            url=path,
            request_sent=True,
        )
    except aiohttp.ClientConnectorError as exc:
        # Connection refused, DNS or TLS failure: nothing reached Qomon.
        error = APIConnectionError(
            secret.redact(f"cannot connect for {method} {path}: {exc.os_error or exc}"),
            method=method,
            url=path,
            request_sent=False,
        )
    except (aiohttp.ClientError, OSError) as exc:
        # Disconnected, reset, or a broken answer (ClientPayloadError, a truncated body): the
        # request may have been processed.
        error = APIConnectionError(
            secret.redact(f"connection lost during {method} {path}: {type(exc).__name__}: {exc}"),
            method=method,
            url=path,
            request_sent=True,
        )
    except RuntimeError as exc:
        if not session.closed:
            raise
        # A session handed in and closed by its owner: nothing was sent.
        error = APIConnectionError(
            f"cannot send {method} {path}: the aiohttp session is closed ({exc})",
            method=method,
            url=path,
            request_sent=False,
        )
    response = None
    raise error
