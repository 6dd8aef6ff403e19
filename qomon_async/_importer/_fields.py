"""The contact fields an input column may name, and what kind of value each takes.

Names are Qomon's write names of create and upsert (the 1.1.0 spelling), nested ones as dotted
paths (``address.city``). The few variant spellings Qomon's documents also use (see "Schema
variants the models tolerate" in ``docs/qomon.md``) are accepted as aliases and written under
the canonical name.
"""

from __future__ import annotations

import enum
from typing import Literal

__all__ = [
    "ADVANCED_KEYS",
    "CONTACT_FIELDS",
    "FIELD_ALIASES",
    "FORM_TYPES",
    "UPSERT_ONLY_FIELDS",
    "FieldKind",
    "Route",
    "canonical_field",
]

Route = Literal["create", "upsert"]
"""Which write a contact is built for: ``POST /contacts`` or ``POST /contacts/upsert``."""


class FieldKind(enum.Enum):
    """How a cell is converted for a field."""

    TEXT = "text"
    CODE = "code"
    """Text that looks like a number (phones, postal codes): never a JSON number."""
    EMAIL = "email"
    GENDER = "gender"
    DATE = "date"
    INT = "int"
    BOOL = "bool"
    TAGS = "tags"


# Order matters: contacts are built in this key order, so that payloads (and test
# expectations) are deterministic.
CONTACT_FIELDS: dict[str, FieldKind] = {
    "id": FieldKind.INT,
    "nationbuilderid": FieldKind.INT,
    "firstname": FieldKind.TEXT,
    "surname": FieldKind.TEXT,
    "married_name": FieldKind.TEXT,
    "gender": FieldKind.GENDER,
    "birthdate": FieldKind.DATE,
    "age_category": FieldKind.INT,
    "birthdept": FieldKind.TEXT,
    "birthcity": FieldKind.TEXT,
    "birthcountry": FieldKind.TEXT,
    "nationality": FieldKind.TEXT,
    "mail": FieldKind.EMAIL,
    "phone": FieldKind.CODE,
    "mobile": FieldKind.CODE,
    # Every address part is a string on write, postal codes included: "01000" keeps its zero
    # (Qomon's examples give some as numbers, which loses the zero; its schema says string).
    "address.housenumber": FieldKind.TEXT,
    "address.street": FieldKind.TEXT,
    "address.addition": FieldKind.TEXT,
    "address.postalcode": FieldKind.CODE,
    "address.citycode": FieldKind.CODE,
    "address.city": FieldKind.TEXT,
    "address.county": FieldKind.TEXT,
    "address.state": FieldKind.TEXT,
    "address.country": FieldKind.TEXT,
    "address.building": FieldKind.TEXT,
    "address.floor": FieldKind.TEXT,
    "address.door": FieldKind.TEXT,
    "address.infos": FieldKind.TEXT,
    "address.pollingstation": FieldKind.TEXT,
    "tags": FieldKind.TAGS,
    "black_list": FieldKind.BOOL,
}

# `id` and `nationbuilderid` are the upsert's first match keys; a create takes neither.
UPSERT_ONLY_FIELDS = frozenset({"id", "nationbuilderid"})

# Variant spellings found in Qomon's documents (docs/qomon.md, schema variants) -> the name written.
FIELD_ALIASES: dict[str, str] = {
    "birth_city": "birthcity",
    "birth_country": "birthcountry",
    "birth_dept": "birthdept",
    "address.house_number": "address.housenumber",
    "address.postal_code": "address.postalcode",
}

FORM_TYPES = (
    "consent",
    "level_of_support",
    "presence_status",
    "custom_fields",
    "survey",
    "tasks",
)
"""The form types of ``GET /v1/forms/type/{type}``."""

# Form type -> (key of the create write, key of the upsert write), as Qomon maps them. Presence
# goes to `name_presences` on upsert: `presence_status` is accepted and silently dropped.
ADVANCED_KEYS: dict[str, tuple[str, str]] = {
    "consent": ("formdatas", "consents"),
    "level_of_support": ("formdatas", "status"),
    "presence_status": ("formdatas", "name_presences"),
    "custom_fields": ("custom_fields", "custom_fields"),
    "survey": ("formdatas", "forms"),
    "tasks": ("formdatas", "actions"),
}


def canonical_field(name: str) -> str | None:
    """The canonical field path for ``name`` (an alias is resolved), or ``None`` if ``name``
    is not a contact field."""
    name = FIELD_ALIASES.get(name, name)
    return name if name in CONTACT_FIELDS else None
