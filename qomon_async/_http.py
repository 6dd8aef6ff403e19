"""The one module that performs HTTP: a request out, ``(status, headers, body)`` back.

Every aiohttp exception is translated here into :class:`APIConnectionError` or
:class:`APITimeoutError`, with ``request_sent`` telling whether the request may have reached
Qomon (the line between "safe to send again" and "outcome unknown" for a create).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp

from ._exceptions import APIConnectionError, APITimeoutError

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


@dataclasses.dataclass(frozen=True)
class RawResponse:
    """What came back: status, headers (lower-case names), body bytes, and the elapsed seconds."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    elapsed: float


def make_session(*, max_connections: int, user_agent: str) -> aiohttp.ClientSession:
    """The client's own session: a bounded connection pool, created in the running loop."""
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": user_agent, "Accept": "application/json"},
        # No timeout here: each request carries its own (the session may be the caller's).
        timeout=aiohttp.ClientTimeout(total=None),
        raise_for_status=False,
    )


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: float | aiohttp.ClientTimeout,
    connect_timeout: float,
) -> RawResponse:
    """Send one request and read the whole answer; translate every transport failure.

    The error raised carries the aiohttp failure's type and message, not the aiohttp exception
    itself, and is raised after the header dicts are dropped: the Authorization header must not
    travel in a traceback's frames or in a chained exception (error reporters record both).
    """
    request_headers = dict(headers)
    del headers
    if body is not None:
        request_headers["Content-Type"] = "application/json"
    # A prebuilt ClientTimeout (the client's default, built once) is used as it is.
    if isinstance(timeout, aiohttp.ClientTimeout):
        client_timeout = timeout
    else:
        client_timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
    started = time.perf_counter()
    path = urlsplit(url).path
    error: APIConnectionError
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=request_headers,
            timeout=client_timeout,
            allow_redirects=False,
        ) as response:
            payload = await response.read()
            return RawResponse(
                status=response.status,
                reason=response.reason or "",
                headers={k.lower(): v for k, v in response.headers.items()},
                body=payload,
                elapsed=time.perf_counter() - started,
            )
    except aiohttp.ConnectionTimeoutError:
        # Timed out while connecting: the request was never written.
        error = APITimeoutError(
            f"timed out connecting for {method} {path}", method=method, url=path, request_sent=False
        )
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
        error = APITimeoutError(
            f"no complete answer to {method} {path} within {client_timeout.total or 0:g} s",
            method=method,
            url=path,
            request_sent=True,
        )
    except aiohttp.ClientConnectorError as exc:
        # Connection refused, DNS or TLS failure: nothing reached Qomon.
        error = APIConnectionError(
            f"cannot connect for {method} {path}: {exc.os_error or exc}",
            method=method,
            url=path,
            request_sent=False,
        )
    except (aiohttp.ClientError, OSError) as exc:
        # Disconnected, reset, or a broken answer (ClientPayloadError, a truncated body): the
        # request may have been processed.
        error = APIConnectionError(
            f"connection lost during {method} {path}: {type(exc).__name__}: {exc}",
            method=method,
            url=path,
            request_sent=True,
        )
    del request_headers
    raise error
