"""Never run: code a typed caller writes, which must type-check (``nox -s typecheck``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from qomon_async import (
    AddressDict,
    BulkRun,
    Condition,
    ConfirmedContact,
    Contact,
    ContactDict,
    ContactWrite,
    CreateResult,
    CustomOperator,
    Operator,
    QomonClient,
    Query,
    RowMapper,
    UpsertDict,
    contact_from_row,
)


async def confirmed_contacts_have_an_int_id(client: QomonClient) -> None:
    created = await client.create_contact({"firstname": "Jeanne", "mail": "j@example.org"})
    contact_id: int = created.id
    got: ConfirmedContact = await client.get_contact(contact_id)
    replaced: ConfirmedContact = await client.replace_contact(got.id, {"firstname": "J"})
    updated: ConfirmedContact = await client.update_contact(replaced.id, {"mobile": "0600000000"})
    as_contact: Contact = updated  # a ConfirmedContact is a Contact
    del as_contact
    async for found in client.search_contacts(Query.everything()):
        maybe: int | None = found.id  # search results stay tolerant
        del maybe


async def contact_dicts(client: QomonClient) -> None:
    address: AddressDict = {"city": "Lyon", "postalcode": "69003"}
    jeanne: ContactDict = {
        "firstname": "Jeanne",
        "mail": "j@example.org",
        "birthdate": dt.date(1980, 5, 12),
        "address": address,
        "tags": "vip;bénévole",
    }
    await client.create_contact(jeanne, strict=True)
    await client.create_contact({"tags": ["vip", {"name": "x"}]})
    upsert: UpsertDict = {"id": 12, "mail": "j@example.org", "consents": [{"id": 1, "value": "x"}]}
    await client.upsert_contact(upsert)
    # A field this release does not know: strict=False, and a cast.
    future = cast(ContactDict, {"firstname": "A", "new_field": 1})
    await client.create_contact(future, strict=False)
    QomonClient("key", strict=False)


async def generic_results(client: QomonClient) -> None:
    run: BulkRun[ContactDict] = client.create_contacts([{"firstname": "A"}], dedupe=True)
    async for result in run:
        item: ContactDict = result.item
        if result.contact is not None:
            new_id: int = result.contact.id
            del new_id
        del item
    writes = [ContactWrite(firstname="B")]
    async for typed in client.create_contacts(writes):
        struct_item: ContactWrite = typed.item
        del struct_item
    upserts: list[UpsertDict] = [{"mail": "u@example.org"}]
    async for up in client.upsert_contacts(upserts, verify=True):
        r: CreateResult[UpsertDict] = up
        del r


def operators() -> None:
    ope: Operator = "eql:strictdata"
    Condition("mail", ope, "j@example.org")
    Condition("CreatedAt", "gte", dt.datetime.now(dt.timezone.utc))
    Condition("tags.name", "any_of", "vip")
    Condition("some.new_attr", CustomOperator("near"), "x")  # the documented escape hatch


async def rows(client: QomonClient, row: dict[str, Any]) -> None:
    contact: ContactDict = contact_from_row(row)
    mapper = await RowMapper.load("mapping.toml", client=client)
    again: ContactDict = mapper(row, number=2)
    await client.create_contact(contact)
    async for _ in client.create_contacts([again, mapper({"mail": "x@example.org"})]):
        pass
