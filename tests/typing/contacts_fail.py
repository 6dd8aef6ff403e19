"""Never run: code mypy must refuse (``nox -s typecheck``, with ``warn_unused_ignores``).

Each line below is an error; its ``# type: ignore[code]`` silences exactly that error. If a
change made one of them type-check, the ignore would be unused and mypy would fail the session.
"""

from __future__ import annotations

from qomon_async import (
    Condition,
    Contact,
    ContactDict,
    CreateResult,
    QomonClient,
)


async def misspelled_keys(client: QomonClient) -> None:
    # In a union context (ContactDict | ContactWrite | Contact), mypy says arg-type.
    await client.create_contact({"firstnme": "Typo"})  # type: ignore[arg-type]
    bad: ContactDict = {"mail": "x@example.org", "adress": {}}  # type: ignore[typeddict-unknown-key]
    del bad
    await client.create_contact({"address": {"citty": "Lyon"}})  # type: ignore[arg-type]
    await client.create_contact({"firstname": 12})  # type: ignore[arg-type]
    client.create_contacts([{"surnme": "X"}])  # type: ignore[typeddict-unknown-key]


async def search_results_may_lack_an_id(client: QomonClient, found: Contact) -> None:
    contact_id: int = found.id  # type: ignore[assignment]
    del contact_id


def results_are_generic(result: CreateResult[ContactDict]) -> None:
    item: str = result.item  # type: ignore[assignment]
    del item


def operators_are_checked() -> None:
    Condition("mail", "equals", "j@example.org")  # type: ignore[arg-type]
