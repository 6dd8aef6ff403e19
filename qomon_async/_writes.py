"""The write models: what the client sends to Qomon, as msgspec Structs.

``ContactWrite``, ``AddressWrite``, ``FormDataWrite``, ``NoteWrite``, ``TagWrite``,
``UpsertContact``, ``FormValue``. Every field defaults to ``UNSET`` and only what was set is
encoded, so a write never clears a field by accident (an explicit ``None`` is sent as
``null``). What Qomon answers is read into the read models (:mod:`qomon_async._models`).
"""

from __future__ import annotations

import datetime as dt

from msgspec import UNSET, Struct, UnsetType

__all__ = [
    "AddressWrite",
    "ContactWrite",
    "FormDataWrite",
    "FormValue",
    "NoteWrite",
    "TagWrite",
    "UpsertContact",
]


class _Write(Struct, kw_only=True, omit_defaults=True):
    """Base of the write models: only what was set is sent."""


class TagWrite(_Write):
    """A tag to write: ``{"name": ...}``."""

    name: str


class AddressWrite(_Write):
    """An address to write (Qomon's ``Address``). Parts are strings: write ``"01000"``, not 1000."""

    housenumber: str | UnsetType | None = UNSET
    street: str | UnsetType | None = UNSET
    postalcode: str | UnsetType | None = UNSET
    citycode: str | UnsetType | None = UNSET
    city: str | UnsetType | None = UNSET
    county: str | UnsetType | None = UNSET
    state: str | UnsetType | None = UNSET
    country: str | UnsetType | None = UNSET
    addition: str | UnsetType | None = UNSET
    infos: str | UnsetType | None = UNSET
    building: str | UnsetType | None = UNSET
    floor: str | UnsetType | None = UNSET
    door: str | UnsetType | None = UNSET
    pollingstation: str | UnsetType | None = UNSET


class FormDataWrite(_Write):
    """An advanced-field answer for a synchronous write: form id, refvalue id, and the value."""

    form_id: int
    form_ref_id: int
    data: str | UnsetType | None = UNSET
    date: dt.datetime | UnsetType | None = UNSET
    survey_id: int | UnsetType | None = UNSET


class NoteWrite(_Write):
    """A note to write (``content`` per the 1.1.0 spec)."""

    content: str
    id: int | UnsetType = UNSET
    pinned: bool | UnsetType = UNSET


class ContactWrite(_Write):
    """A contact to create (``POST /contacts``) or to write whole (``PATCH /contacts/{id}``).

    Only the fields that were set are sent. Birth fields are written with the 1.1.0 names
    (``birthcity``...); custom fields as ``custom_fields``.
    """

    firstname: str | UnsetType | None = UNSET
    surname: str | UnsetType | None = UNSET
    married_name: str | UnsetType | None = UNSET
    gender: str | UnsetType | None = UNSET
    birthdate: dt.datetime | UnsetType | None = UNSET
    age_category: int | UnsetType | None = UNSET
    birthdept: str | UnsetType | None = UNSET
    birthcity: str | UnsetType | None = UNSET
    birthcountry: str | UnsetType | None = UNSET
    nationality: str | UnsetType | None = UNSET
    mail: str | UnsetType | None = UNSET
    phone: str | UnsetType | None = UNSET
    mobile: str | UnsetType | None = UNSET
    address: AddressWrite | UnsetType | None = UNSET
    tags: list[TagWrite] | UnsetType = UNSET
    actions_ids: list[int] | UnsetType = UNSET
    user_id: int | UnsetType | None = UNSET
    user_contact_id: int | UnsetType | None = UNSET
    formdatas: list[FormDataWrite] | UnsetType = UNSET
    custom_fields: list[FormDataWrite] | UnsetType = UNSET
    black_list: bool | UnsetType | None = UNSET
    notes: list[NoteWrite] | UnsetType = UNSET


class FormValue(_Write):
    """An advanced-field item of an upsert (Qomon's ``FormsLight``): a form by ``id`` (the form id,
    never a refvalue id) or ``label``, and the ``value`` (always a string)."""

    value: str
    id: int | UnsetType = UNSET
    label: str | UnsetType = UNSET


class UpsertContact(_Write):
    """The ``data`` of ``POST /contacts/upsert``: matched by id, then mail+names, then
    names+birthdate+address. Advanced fields use the per-type ``FormValue`` lists; an unknown
    form or value makes Qomon drop the whole record silently."""

    id: int | UnsetType = UNSET
    firstname: str | UnsetType = UNSET
    surname: str | UnsetType = UNSET
    married_name: str | UnsetType = UNSET
    gender: str | UnsetType = UNSET
    birthdate: dt.datetime | UnsetType = UNSET
    age_category: int | UnsetType = UNSET
    birthdept: str | UnsetType = UNSET
    birthcity: str | UnsetType = UNSET
    birthcountry: str | UnsetType = UNSET
    nationality: str | UnsetType = UNSET
    mail: str | UnsetType = UNSET
    phone: str | UnsetType = UNSET
    mobile: str | UnsetType = UNSET
    address: AddressWrite | UnsetType = UNSET
    tags: list[TagWrite] | UnsetType = UNSET
    nationbuilderid: int | UnsetType = UNSET
    black_list: bool | UnsetType = UNSET
    notes: list[NoteWrite] | UnsetType = UNSET
    consents: list[FormValue] | UnsetType = UNSET
    status: list[FormValue] | UnsetType = UNSET
    forms: list[FormValue] | UnsetType = UNSET
    custom_fields: list[FormValue] | UnsetType = UNSET
    actions: list[FormValue] | UnsetType = UNSET
    name_presences: list[FormValue] | UnsetType = UNSET
