"""Reading back an upsert: Qomon answers 202 and applies it later, or silently not at all."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._bodies import fold
from ._create import Search
from ._exceptions import OutcomeUnknownError, QomonError
from ._models import Contact
from ._query import Condition, Query

__all__ = ["read_back", "shows"]

# Scalar fields compared when reading back an upsert.
VERIFIED_FIELDS = (
    "firstname", "surname", "married_name", "gender", "mail", "phone", "mobile", "nationality",
    "birthcity", "birthcountry", "birthdept", "age_category", "black_list",
)  # fmt: skip


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
