"""The payloads of the benchmarks: Qomon's create response, and a search page built from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The example answer of Qomon's "Create a contact synchronously" page, with the "…" filled
#: in: the same file the tests decode (tests/data/seed-create-response.json).
SEED = (
    Path(__file__).resolve().parent.parent / "tests" / "data" / "seed-create-response.json"
).read_bytes()


def seed_contact() -> dict[str, Any]:
    """The contact object of :data:`SEED`."""
    contact: dict[str, Any] = json.loads(SEED)["data"]["contact"]
    return contact


def search_page(n: int = 1000) -> bytes:
    """A ``POST /search`` answer of ``n`` contacts shaped like the seed, with the variants Qomon
    mixes (see ``docs/qomon.md``): postal codes as numbers or strings, ``birth_city``,
    ``action_ids``, ``custom_fields``, tags as strings, a single note object, 3 or 6 fractional
    digits."""
    base = seed_contact()
    contacts = []
    for i in range(n):
        c = json.loads(json.dumps(base))
        c["id"] = 20_000_000 + i
        c["firstname"] = f"Jeanne{i}"
        c["mail"] = f"jeanne.{i}@example.org"
        c["formdatas"][0]["contact_id"] = c["id"]
        if i % 2:
            c["address"]["postalcode"] = f"{75000 + i % 20:05d}"
            c["address"]["housenumber"] = str(i % 200)
            c["CreatedAt"] = "2023-01-02T03:04:05.123Z"
        if i % 3 == 0:
            c["birth_city"] = c.pop("birthcity")
            c["action_ids"] = c.pop("actions_ids")
        if i % 5 == 0:
            c["custom_fields"] = c.pop("customfields")
            c["tags"] = ["vip", "bench"]
            c["notes"] = {"data": "single note", "id": i, "pinned": False}
        contacts.append(c)
    return json.dumps({"status": "success", "data": {"contacts": contacts}}).encode()
