"""Pydantic v2 twins of the library's read models, for the decoding benchmark only.

The same tolerance as ``qomon_async._models``: unknown fields ignored, every field optional,
address parts and answers as strings whether Qomon sent a number or a string, the two spellings
of ``CreatedAt``/``created_at``, ``birthcity``/``birth_city``, ``actions_ids``/``action_ids``,
``customfields``/``custom_fields``, tags as objects or strings, notes as a list or one object,
``house_number``/``postal_code`` folded into ``housenumber``/``postalcode``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


def _loose(value: Any) -> Any:
    """Number or string to string (as ``LooseStr``): 75000 and "75000" both give "75000"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return value


LooseStr = Annotated[str | None, BeforeValidator(_loose)]


class _Read(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PTag(_Read):
    name: str | None = None
    appearance_count: int | None = None
    color: str | None = None


class PAddress(_Read):
    id: int | None = None
    housenumber: LooseStr = None
    street: str | None = None
    postalcode: LooseStr = None
    citycode: LooseStr = None
    city: str | None = None
    county: str | None = None
    state: str | None = None
    country: str | None = None
    addition: str | None = None
    infos: str | None = None
    building: str | None = None
    building_type: str | None = None
    floor: LooseStr = None
    door: LooseStr = None
    pollingstation: LooseStr = None
    score: float | None = None
    latitude: LooseStr = None
    longitude: LooseStr = None
    location: str | None = None
    invalid: bool | None = None
    wire_house_number: LooseStr = Field(None, alias="house_number")
    wire_postal_code: LooseStr = Field(None, alias="postal_code")

    @model_validator(mode="after")
    def _fold(self) -> PAddress:
        if self.housenumber is None:
            self.housenumber = self.wire_house_number
        if self.postalcode is None:
            self.postalcode = self.wire_postal_code
        return self


class PFormData(_Read):
    id: int | None = None
    form_id: int | None = None
    form_ref_id: int | None = None
    data: LooseStr = None
    survey_id: int | None = None
    label: str | None = None
    type_of_form: str | None = None
    group_id: int | None = None
    contact_id: int | None = None
    date: dt.datetime | None = None
    donedate: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None


class PNote(_Read):
    id: int | None = None
    content: str | None = None
    data: str | None = None
    pinned: bool | None = None
    contact_id: int | None = None
    group_id: int | None = None
    user_id: int | None = None
    only_super_admin: bool | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @property
    def text(self) -> str | None:
        return self.content if self.content is not None else self.data


class PContact(_Read):
    id: int | None = None
    group_id: int | None = None
    firstname: str | None = None
    surname: str | None = None
    married_name: str | None = None
    gender: str | None = None
    birthdate: dt.datetime | None = None
    age_category: int | None = None
    birthdept: str | None = None
    birthcity: str | None = None
    birthcountry: str | None = None
    nationality: str | None = None
    mail: str | None = None
    phone: str | None = None
    mobile: str | None = None
    phone_invalid: bool | None = None
    mobile_invalid: bool | None = None
    address: PAddress | None = None
    user_id: int | None = None
    user_contact_id: int | None = None
    lastchangeuserid: int | None = None
    formdatas: list[PFormData] | None = None
    black_list: bool | None = None
    nationbuilderid: int | None = None
    external_id: LooseStr = None
    membership_code: str | None = None
    membership_number: int | None = None
    lastchange: dt.datetime | None = None
    interactions: list[dict[str, Any]] | None = None
    wire_created_at: dt.datetime | None = Field(None, alias="CreatedAt")
    wire_updated_at: dt.datetime | None = Field(None, alias="UpdatedAt")
    wire_created_at_snake: dt.datetime | None = Field(None, alias="created_at")
    wire_updated_at_snake: dt.datetime | None = Field(None, alias="updated_at")
    wire_birth_city: str | None = Field(None, alias="birth_city")
    wire_birth_country: str | None = Field(None, alias="birth_country")
    wire_birth_dept: str | None = Field(None, alias="birth_dept")
    wire_actions_ids: list[int] | None = Field(None, alias="actions_ids")
    wire_action_ids: list[int] | None = Field(None, alias="action_ids")
    wire_customfields: list[PFormData] | None = Field(None, alias="customfields")
    wire_custom_fields: list[PFormData] | None = Field(None, alias="custom_fields")
    wire_tags: list[PTag | str] | None = Field(None, alias="tags")
    wire_notes: list[PNote] | PNote | None = Field(None, alias="notes")

    @model_validator(mode="after")
    def _fold(self) -> PContact:
        if self.birthcity is None:
            self.birthcity = self.wire_birth_city
        if self.birthcountry is None:
            self.birthcountry = self.wire_birth_country
        if self.birthdept is None:
            self.birthdept = self.wire_birth_dept
        return self

    @property
    def created_at(self) -> dt.datetime | None:
        return self.wire_created_at or self.wire_created_at_snake

    @property
    def action_ids(self) -> list[int]:
        return list(self.wire_action_ids or self.wire_actions_ids or [])

    @property
    def tags(self) -> list[PTag]:
        return [PTag(name=t) if isinstance(t, str) else t for t in self.wire_tags or []]

    @property
    def notes(self) -> list[PNote]:
        if self.wire_notes is None:
            return []
        return [self.wire_notes] if isinstance(self.wire_notes, PNote) else list(self.wire_notes)


class PContactBox(_Read):
    contact: PContact | None = None


class PCreateAnswer(_Read):
    status: str | None = None
    data: PContactBox | None = None


class PContactsBox(_Read):
    contacts: list[PContact] | None = None


class PSearchAnswer(_Read):
    status: str | None = None
    data: PContactsBox | None = None
