"""Never run: type-checked by ``nox -s typecheck`` to pin the public signatures (stamina's idea).

A change that breaks a caller's typed code breaks this file first.
"""

from __future__ import annotations

import datetime as dt

from qomon_async import (
    BulkRun,
    Condition,
    ConfirmedContact,
    Contact,
    ContactDict,
    ContactWatch,
    ContactWrite,
    CreateResult,
    CreateStatus,
    Form,
    QomonClient,
    Query,
    RateLimit,
    RetryPolicy,
    WatchCursor,
)


async def typed_usage() -> None:
    async with QomonClient("key", base_url="https://incoming.qomon.app", timeout=10.0) as client:
        contact: ConfirmedContact = await client.create_contact({"firstname": "Jeanne"})
        contact_id: int = contact.id
        again: Contact = await client.create_contact(ContactWrite(mail="j@example.org"))
        got: Contact = await client.get_contact(contact_id, retry=RetryPolicy.disabled())
        await client.update_contact(contact_id, {"mobile": "0600000000"})
        await client.replace_contact(contact_id, again)
        await client.delete_contact(contact_id)
        await client.upsert_contact({"mail": "j@example.org"})
        query = Query.where(Condition("CreatedAt", "gte", dt.datetime.now(dt.timezone.utc)))
        async for found in client.search_contacts(query, per_page=500):
            name: str | None = found.firstname
            del name
        total: int = await client.count_contacts(query)
        forms: list[Form] = await client.list_forms("consent")
        run: BulkRun[ContactDict] = client.create_contacts(
            [{"firstname": "A"}], concurrency=4, ordered=True
        )
        async for result in run:
            r: CreateResult[ContactDict] = result
            status: CreateStatus = r.status
            assert status == "created" or r.error is not None
        del got, total, forms
        # Deadlines, get-or-create, the change feed.
        quick: Contact = await client.get_contact(contact_id, max_wait=1.5)
        ensured: Contact = await client.ensure_contact(
            {"mail": "j@example.org"}, update=True, match_policy="error", max_wait=2.0
        )
        watch: ContactWatch = client.watch_contacts(query, interval=30.0, overlap=60.0)
        async for changed in watch:
            saved: str = watch.cursor.to_json()
            resumed: WatchCursor = WatchCursor.from_json(saved)
            client.watch_contacts(cursor=resumed, max_wait=5.0)
            del changed
            break
        del quick, ensured
    QomonClient(rate_limit=RateLimit(capacity=50, rate=5), retry=RetryPolicy(max_attempts=3))
    QomonClient(max_wait=2.0)
