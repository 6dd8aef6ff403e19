"""Typed dicts of what a contact write holds, so that a type checker catches a misspelled key.

Every key is optional (``total=False``): a write sends only what it names. ``None`` is sent as
``null`` (it clears the field). At run time these are plain dicts; the client checks the keys
again (strict writes), so code that is not type-checked gets the same refusal::

    from qomon_async import ContactDict

    jeanne: ContactDict = {"firstname": "Jeanne", "mail": "jeanne@example.org", "tags": "vip"}

A field Qomon adds later, that these types do not list yet, is sent with ``strict=False`` on the
client or the call, from a dict typed ``dict[str, Any]`` passed through ``typing.cast``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal, TypedDict

from ._writes import TagWrite

__all__ = [
    "AddressDict",
    "AnswerDict",
    "ContactDict",
    "FormValueDict",
    "NoteDict",
    "TagDict",
    "UpsertDict",
]


class TagDict(TypedDict):
    """A tag as Qomon writes it."""

    name: str


class AddressDict(TypedDict, total=False):
    """An address. Every part is text: write ``"01000"``, never ``1000``."""

    housenumber: str | None
    street: str | None
    postalcode: str | None
    citycode: str | None
    city: str | None
    county: str | None
    state: str | None
    country: str | None
    addition: str | None
    infos: str | None
    building: str | None
    floor: str | None
    door: str | None
    pollingstation: str | None


class AnswerDict(TypedDict, total=False):
    """An advanced-field answer of a create or PATCH (``formdatas``, ``custom_fields``)."""

    form_id: int
    form_ref_id: int
    data: str | None
    date: str | dt.datetime | None
    survey_id: int | None


class NoteDict(TypedDict, total=False):
    """A note to write."""

    content: str
    id: int
    pinned: bool


#: Tags: ``"a;b"``, a list of names, of ``{"name": ...}`` dicts, or of :class:`TagWrite`.
Tags = str | Sequence[str | TagDict | TagWrite]

#: A birthdate: a date, a datetime, or text (``YYYY-MM-DD``, ``DD/MM/YYYY``, RFC 3339).
DateValue = str | dt.date | dt.datetime

Gender = Literal["F", "M", "O"]


class _ContactBase(TypedDict, total=False):
    firstname: str | None
    surname: str | None
    married_name: str | None
    gender: Gender | str | None
    birthdate: DateValue | None
    age_category: int | None
    birthdept: str | None
    birthcity: str | None
    birthcountry: str | None
    nationality: str | None
    mail: str | None
    phone: str | None
    mobile: str | None
    address: AddressDict | None
    tags: Tags
    black_list: bool | None
    notes: Sequence[NoteDict]


class ContactDict(_ContactBase, total=False):
    """A contact to create (``POST /contacts``) or to write whole (``PATCH``), in Qomon's field
    names. Unknown keys are refused by mypy here and by the client at run time."""

    actions_ids: Sequence[int]
    user_id: int | None
    user_contact_id: int | None
    formdatas: Sequence[AnswerDict]
    custom_fields: Sequence[AnswerDict]


class FormValueDict(TypedDict, total=False):
    """An advanced-field item of an upsert: a form by ``id`` or ``label``, and its ``value``."""

    id: int
    label: str
    value: str


class UpsertDict(_ContactBase, total=False):
    """The ``data`` of an upsert (``POST /contacts/upsert``): matched by ``id``, then mail and
    names, then names, birthdate and address. Advanced fields are per type."""

    id: int
    nationbuilderid: int
    consents: Sequence[FormValueDict]
    status: Sequence[FormValueDict]
    forms: Sequence[FormValueDict]
    custom_fields: Sequence[FormValueDict]
    actions: Sequence[FormValueDict]
    name_presences: Sequence[FormValueDict]
