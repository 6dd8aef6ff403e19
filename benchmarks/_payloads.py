"""The payloads of the benchmarks: Qomon's create response, and a search page built from it."""

# The seed is kept line for line as in qomon-api.md section 7.2 and tests/test_protocol.py.
# ruff: noqa: E501

from __future__ import annotations

import json
from typing import Any

#: The create response of qomon-api.md section 7.2, with the "…" filled in (as in the tests).
SEED = b"""{ "status": "success",
  "data": { "contact": { "id": 12345678, "group_id": 1,
    "CreatedAt": "2022-10-13T15:50:34.643724Z", "UpdatedAt": "2022-10-13T15:55:12.853724Z",
    "lastchange": "2022-10-13T15:50:24.163Z",
    "firstname": "Jeanne", "surname": "Dupont", "married_name": "Dupont", "gender": "F",
    "birthdate": "1955-07-06T00:00:00Z", "age_category": 123,
    "birthdept": "75", "birthcity": "Paris", "birthcountry": "France", "nationality": "FR",
    "mail": "jsmith@example.com", "phone": "0102030405", "mobile": "0602030405",
    "address": { "housenumber": 1, "street": "rue de la paix", "postalcode": 75000, "citycode": 75101,
      "city": "Paris", "state": "Ile-de-France", "country": "France", "addition": "R\xc3\xa9sidence de la paix",
      "infos": "Porte de gauche", "building": "B\xc3\xa2timent A", "floor": 2, "door": "A", "pollingstation": "BV-06",
      "id": 1001, "score": 0.965753, "latitude": "48.000000", "longitude": "2.000000",
      "location": "48.000000,2.000000", "invalid": null },
    "tags": [ { "name": "vip", "appearance_count": 123, "color": "#fff" } ],
    "actions_ids": [123], "user_id": 123, "user_contact_id": 123,
    "formdatas": [ { "form_id": 1001, "form_ref_id": 2001, "data": "Oui", "id": 3001,
      "created_at": "2022-10-13T15:50:24.163Z", "updated_at": "2022-10-13T15:50:24.163Z",
      "deleted_at": "2022-10-13T15:50:24.163Z", "date": "2022-10-13T15:50:24.163Z",
      "donedate": null, "label": null, "type_of_form": null, "group_id": 1, "contact_id": 12345678 } ],
    "customfields": [ { "form_id": 1002, "form_ref_id": 2002, "data": "Architect", "id": 3002 } ],
    "black_list": true,
    "notes": [ { "content": "hello", "id": 123, "pinned": true } ] } } }"""


def seed_contact() -> dict[str, Any]:
    """The contact object of :data:`SEED`."""
    contact: dict[str, Any] = json.loads(SEED)["data"]["contact"]
    return contact


def search_page(n: int = 1000) -> bytes:
    """A ``POST /search`` answer of ``n`` contacts shaped like the seed, with the variants Qomon
    mixes (section 15): postal codes as numbers or strings, ``birth_city``, ``action_ids``,
    ``custom_fields``, tags as strings, a single note object, 3 or 6 fractional digits."""
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
