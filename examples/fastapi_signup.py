"""A FastAPI service that records each signup as a Qomon contact.

One ``QomonClient`` for the whole service, opened in the lifespan and shared by every request.
Each signup may wait ``MAX_WAIT`` seconds for the rate limiter at most: when Qomon's bucket is
busy, the route answers ``503 Service Unavailable`` with a ``Retry-After`` header at once
rather than holding the visitor for seconds.

Run it (``pip install "qomon-async[examples]"``)::

    QOMON_API_KEY=... uvicorn examples.fastapi_signup:app --port 8000
    curl -X POST localhost:8000/signup -H 'content-type: application/json' \\
         -d '{"mail": "jeanne@example.org", "firstname": "Jeanne"}'

Configuration: ``QOMON_API_KEY``, ``QOMON_BASE_URL`` (the emulator: ``qomon-async fake-server``),
``SIGNUP_MAX_WAIT`` (seconds, default 2).
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from qomon_async import (
    ContactDict,
    ContactValidationError,
    QomonClient,
    QomonError,
    RateLimitError,
    RateLimitTimeout,
)

MAX_WAIT = float(os.environ.get("SIGNUP_MAX_WAIT", "2"))


class Signup(BaseModel):
    mail: str
    firstname: str | None = None
    surname: str | None = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Key and URL from QOMON_API_KEY / QOMON_BASE_URL; one client, one connection pool,
    # one rate limiter for the whole service.
    async with QomonClient() as client:
        app.state.qomon = client
        yield


app = FastAPI(lifespan=lifespan)


def unavailable(seconds: float | None) -> JSONResponse:
    """503 with a Retry-After in whole seconds: the visitor (or their browser) tries again."""
    wait = seconds if seconds is not None else MAX_WAIT
    return JSONResponse(
        {"error": "busy, try again shortly"},
        status_code=503,
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


# --8<-- [start:handlers]
@app.exception_handler(RateLimitTimeout)
async def busy(request: Request, exc: RateLimitTimeout) -> JSONResponse:
    # The bucket could not pay within MAX_WAIT: nothing was sent to Qomon.
    return unavailable(exc.predicted_wait)


@app.exception_handler(RateLimitError)
async def rate_limited(request: Request, exc: RateLimitError) -> JSONResponse:
    # Qomon said 429 with a Retry-After longer than the client waits out.
    return unavailable(exc.retry_after)


# --8<-- [end:handlers]


@app.exception_handler(ContactValidationError)
async def invalid(request: Request, exc: ContactValidationError) -> JSONResponse:
    return JSONResponse({"error": str(exc), "field": exc.location}, status_code=422)


@app.exception_handler(QomonError)
async def failed(request: Request, exc: QomonError) -> JSONResponse:
    return JSONResponse({"error": type(exc).__name__}, status_code=502)


@app.post("/signup", status_code=201)
async def signup(body: Signup, request: Request) -> dict[str, object]:
    client: QomonClient = request.app.state.qomon
    # The contact for this mail, created if missing: signing up twice makes no twin. Waits
    # MAX_WAIT seconds for the rate limiter at most; timeout= (the client's) bounds each request.
    person: ContactDict = {"mail": body.mail}
    if body.firstname:
        person["firstname"] = body.firstname
    if body.surname:
        person["surname"] = body.surname
    contact = await client.ensure_contact(person, max_wait=MAX_WAIT)
    return {"id": contact.id, "mail": contact.mail}
