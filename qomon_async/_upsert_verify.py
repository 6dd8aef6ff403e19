"""Sending an upsert, and reading it back: Qomon answers 202 and applies it later, or silently
not at all."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._bodies import fold, upsert_body
from ._config import RetryPolicy
from ._create import Request, Search, maybe_await
from ._exceptions import OutcomeUnknownError, QomonError
from ._models import Contact
from ._query import Condition, Query
from ._retry import is_ambiguous

__all__ = ["ReadBack", "read_back", "send_upsert", "shows"]

# Scalar fields compared when reading back an upsert.
VERIFIED_FIELDS = (
    "firstname", "surname", "married_name", "gender", "mail", "phone", "mobile", "nationality",
    "birthcity", "birthcountry", "birthdept", "age_category", "black_list",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ReadBack:
    """How a bulk run reads its upserts back: by id or mail, for ``timeout`` seconds, every
    ``interval`` seconds."""

    get_contact: Callable[[int], Awaitable[Contact]]
    search: Search
    timeout: float
    interval: float

    async def __call__(
        self, data: dict[str, Any], since: dt.datetime, *, cause: BaseException | None
    ) -> Contact:
        return await read_back(
            self.get_contact,
            self.search,
            data,
            since,
            cause=cause,
            timeout=self.timeout,
            interval=self.interval,
        )


async def send_upsert(
    request: Request,
    data: dict[str, Any],
    *,
    attempts: list[int],
    retry: RetryPolicy | None,
    timeout: float | None,
    abort: Callable[[], BaseException | None],
    on_attempt: Callable[[dt.datetime], Awaitable[None] | None] | None,
    read: ReadBack | None,
) -> tuple[Contact | None, bool]:
    """Send one upsert of a bulk run; with ``read``, read it back.

    Returns (the contact read back or None, whether it took a read after an ambiguous failure).
    Raises :class:`OutcomeUnknownError` when the upsert may have been queued and nothing reads
    it back; ``attempts`` gets one entry per request sent.
    """
    started = dt.datetime.now(dt.timezone.utc)
    await maybe_await(on_attempt(started) if on_attempt is not None else None)
    try:
        await request(
            "POST",
            "/contacts/upsert",
            body=upsert_body(data),
            idempotent=False,
            retry=retry,
            timeout=timeout,
            attempts=attempts,
            abort=abort,
        )
    except QomonError as exc:
        if not is_ambiguous(exc):
            raise
        if read is None:
            raise OutcomeUnknownError(
                f"the upsert may have been queued ({exc})",
                cause=exc,
                attempt_started_at=started,
            ) from exc
        return await read(data, started, cause=exc), True
    if read is None:
        return None, False
    return await read(data, started, cause=None), False


async def read_back(
    get_contact: Callable[[int], Awaitable[Contact]],
    search: Search,
    data: dict[str, Any],
    since: dt.datetime,
    *,
    cause: BaseException | None,
    timeout: float,
    interval: float,
) -> Contact:
    """Poll until the upserted contact shows the values sent; OutcomeUnknownError on timeout.

    Qomon applies an upsert about 2 s after its 202, and drops silently a record that names
    an unknown form or value: only a read shows it was applied.
    """
    deadline = time.monotonic() + timeout
    contact_id = data.get("id")
    mail = data.get("mail")
    if contact_id is None and not mail:
        raise OutcomeUnknownError(
            "the upsert has neither id nor mail to read it back by",
            cause=cause,
            attempt_started_at=since,
            reconciliation="nothing to look it up by",
        )
    while True:
        try:
            if contact_id is not None:
                candidates = [await get_contact(int(contact_id))]
            else:
                query = Query.where(Condition("mail", "eql:strictdata", str(mail).strip()))
                candidates = [c async for c in search(query)]
        except QomonError as exc:
            if getattr(exc, "status_code", None) != 404:
                raise OutcomeUnknownError(
                    f"the upsert was accepted, and reading it back failed: {exc}",
                    cause=cause or exc,
                    attempt_started_at=since,
                    reconciliation=f"read-back failed: {exc}",
                ) from exc
            candidates = []
        for contact in candidates:
            if shows(contact, data):
                return contact
        if time.monotonic() >= deadline:
            raise OutcomeUnknownError(
                f"the upsert was not visible after {timeout:g} s (Qomon drops a "
                "record naming an unknown form or value without an error)",
                cause=cause,
                attempt_started_at=since,
                reconciliation="read back until the timeout",
            )
        await asyncio.sleep(interval)


def shows(contact: Contact, data: dict[str, Any]) -> bool:
    """Whether a contact read back shows the scalar values an upsert sent."""
    for key in VERIFIED_FIELDS:
        if key in data and data[key] is not None:
            have = getattr(contact, key)
            if isinstance(data[key], str):
                if fold(have) != fold(data[key]):
                    return False
            elif have != data[key]:
                return False
    return True
