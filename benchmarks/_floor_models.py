"""The floor of the decoding benchmark: the library's read models without their tolerance work.

``FloorContact`` and ``FloorAddress`` have exactly the fields, wire names, types and defaults of
:class:`qomon_async.Contact` and :class:`qomon_async.Address` (built from them, so they cannot
drift), but no ``__post_init__``: address parts that Qomon sends as numbers stay numbers, and the
second spellings are not folded. Every other model (``FormData``, ``Note``, ``Tag``) is the
library's own. What the library's decoding costs above this floor is what its tolerance costs;
what pydantic costs over it is the most any model of this shape on msgspec could gain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import NODEFAULT, Struct, structs

from qomon_async import Address, Contact


def _without_post_init(model: type[Struct], name: str, swap: dict[Any, Any]) -> Any:
    """A Struct with ``model``'s fields (types swapped per ``swap``) and no ``__post_init__``."""
    fields = []
    for f in structs.fields(model):
        default = f.default if f.default is not NODEFAULT else None
        field = msgspec.field(default=default, name=f.encode_name)
        fields.append((f.name, swap.get(f.type, f.type), field))
    return msgspec.defstruct(name, fields, kw_only=True, omit_defaults=True, gc=False)


if TYPE_CHECKING:  # to a type checker, the floor has the library's shapes
    FloorAddress = Address
    FloorContact = Contact
else:
    FloorAddress = _without_post_init(Address, "FloorAddress", {})
    FloorContact = _without_post_init(
        Contact, "FloorContact", {Address | None: FloorAddress | None}
    )
    assert structs.fields(FloorContact)[Contact.__struct_fields__.index("address")].type == (
        FloorAddress | None
    ), "Contact.address's type changed: the floor would decode the library's Address"


class _ContactBox(Struct, gc=False):
    contact: FloorContact


class FloorCreateAnswer(Struct, gc=False):
    """The documented create answer, as ``decode_contact``'s fast path reads it."""

    data: _ContactBox | None = None


class _ContactsBox(Struct, gc=False):
    contacts: list[FloorContact] | None = None


class FloorSearchAnswer(Struct, gc=False):
    """A search page, as ``decode_contacts_page`` reads it."""

    data: _ContactsBox | None = None
    contacts: list[FloorContact] | None = None


decode_create = msgspec.json.Decoder(FloorCreateAnswer).decode
decode_page = msgspec.json.Decoder(FloorSearchAnswer).decode
