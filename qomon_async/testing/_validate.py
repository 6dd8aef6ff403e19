"""Checking request bodies the way Qomon's schema does, and normalising the write variants.

Type errors are 422 problem+json naming the location (``body.data.contact.firstname``), as
Qomon's newer server reports them. Every write variant found in Qomon's documentation is
accepted: ``birthcity``/``birth_city``, ``customfields``/``custom_fields``,
``actions_ids``/``action_ids``, notes with ``content`` or ``data``, ``house_number`` and
``postal_code``, address parts given as numbers. Unknown keys are ignored, as a Go decoder does
(an upsert's ``presence_status`` is accepted and dropped, as observed on Qomon).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ._dates import format_seconds, parse_iso
from ._problems import FieldError, Problem, unprocessable

STRING_FIELDS = (
    "firstname",
    "surname",
    "married_name",
    "gender",
    "birthdept",
    "birthcity",
    "birthcountry",
    "nationality",
    "mail",
    "phone",
    "mobile",
    "external_id",
)
INT_FIELDS = ("age_category", "user_id", "user_contact_id", "nationbuilderid")
BOOL_FIELDS = ("black_list", "phone_invalid", "mobile_invalid")
# Qomon's newer docs (create/patch) and the v1 draft spell the birth fields with underscores.
FIELD_ALIASES = {
    "birth_dept": "birthdept",
    "birth_city": "birthcity",
    "birth_country": "birthcountry",
}

ADDRESS_PARTS = (
    "housenumber",
    "street",
    "postalcode",
    "citycode",
    "city",
    "state",
    "country",
    "county",
    "addition",
    "infos",
    "building",
    "floor",
    "door",
    "pollingstation",
)
ADDRESS_ALIASES = {"house_number": "housenumber", "postal_code": "postalcode"}

# Upsert's friendly advanced-field keys and the `/forms` type each one targets.
LIGHT_KEYS = {
    "consents": "consent",
    "status": "level_of_support",
    "forms": "survey",
    "custom_fields": "custom_fields",
    "actions": "tasks",
    "name_presences": "presence_status",
}

_MAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


@dataclass(frozen=True)
class AnswerWrite:
    """One ``formdatas``/``custom_fields`` entry of a synchronous write."""

    form_id: int
    form_ref_id: int
    data: str | None = None
    survey_id: int | None = None


@dataclass(frozen=True)
class LightItem:
    """One upsert advanced-field item: a form by ``id`` and/or ``label``, and a ``value``."""

    key: str
    form_id: int | None
    label: str | None
    value: str


@dataclass
class ContactWrite:
    """A validated contact body; ``None`` means "not sent"."""

    fields: dict[str, Any] = field(default_factory=dict)
    address: dict[str, str] | None = None
    tags: list[str] | None = None
    actions_ids: list[int] | None = None
    formdatas: list[AnswerWrite] | None = None
    customfields: list[AnswerWrite] | None = None
    notes: list[tuple[str, bool]] | None = None
    # Upsert only.
    match_id: int | None = None
    light: list[LightItem] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _expected(kind: str, location: str, value: Any) -> FieldError:
    return FieldError(location, f"expected {kind}, got {_type_name(value)}", value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require_object(body: Any, location: str, key: str) -> dict[str, Any]:
    """``body[key]`` as an object, or a 422 saying the wrapper is wrong."""
    if not isinstance(body, dict):
        raise unprocessable([_expected("object", location, body)])
    inner = body.get(key)
    if inner is None:
        raise unprocessable([FieldError(f"{location}.{key}", "required property is missing")])
    if not isinstance(inner, dict):
        raise unprocessable([_expected("object", f"{location}.{key}", inner)])
    return inner


def _answers(value: Any, location: str, errors: list[FieldError]) -> list[AnswerWrite]:
    if not isinstance(value, list):
        errors.append(_expected("array", location, value))
        return []
    answers = []
    for index, item in enumerate(value):
        where = f"{location}[{index}]"
        if not isinstance(item, dict):
            errors.append(_expected("object", where, item))
            continue
        ok = True
        for name in ("form_id", "form_ref_id"):
            if name not in item:
                errors.append(FieldError(f"{where}.{name}", "required property is missing"))
                ok = False
            elif not _is_int(item[name]):
                errors.append(_expected("integer", f"{where}.{name}", item[name]))
                ok = False
        data = item.get("data")
        if data is not None and not isinstance(data, str):
            errors.append(_expected("string", f"{where}.data", data))
            ok = False
        survey_id = item.get("survey_id")
        if survey_id is not None and not _is_int(survey_id):
            errors.append(_expected("integer", f"{where}.survey_id", survey_id))
            ok = False
        if ok:
            answers.append(AnswerWrite(item["form_id"], item["form_ref_id"], data, survey_id))
    return answers


def _notes(value: Any, location: str, errors: list[FieldError]) -> list[tuple[str, bool]]:
    # Notes: a list or a single object; the text under `content` or `data` (both documented).
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list):
        errors.append(_expected("array", location, value))
        return []
    notes = []
    for index, item in enumerate(items):
        where = f"{location}[{index}]"
        if not isinstance(item, dict):
            errors.append(_expected("object", where, item))
            continue
        text = item.get("content", item.get("data"))
        if not isinstance(text, str):
            errors.append(
                FieldError(f"{where}.content", "required string property is missing", text)
            )
            continue
        pinned = item.get("pinned", False)
        if not isinstance(pinned, bool):
            errors.append(_expected("boolean", f"{where}.pinned", pinned))
            continue
        notes.append((text, pinned))
    return notes


def _address(value: Any, location: str, errors: list[FieldError]) -> dict[str, str]:
    if not isinstance(value, dict):
        errors.append(_expected("object", location, value))
        return {}
    address: dict[str, str] = {}
    for key, part in value.items():
        name = ADDRESS_ALIASES.get(key, key)
        if name not in ADDRESS_PARTS or part is None:
            continue  # read-only parts (id, latitude, score...) sent back are ignored
        # Qomon's own examples send numbers (75000); stored as strings.
        text = str(part) if _is_int(part) or isinstance(part, float) else part
        if not isinstance(text, str):
            errors.append(_expected("string", f"{location}.{key}", part))
            continue
        if text:
            address[name] = text
    return address


def _light(key: str, value: Any, location: str, errors: list[FieldError]) -> list[LightItem]:
    # Always an array of {id | label, value}, value a string.
    if not isinstance(value, list):
        errors.append(_expected("array", location, value))
        return []
    items = []
    for index, item in enumerate(value):
        where = f"{location}[{index}]"
        if not isinstance(item, dict):
            errors.append(_expected("object", where, item))
            continue
        form_id, label, text = item.get("id"), item.get("label"), item.get("value")
        ok = True
        if form_id is not None and not _is_int(form_id):
            errors.append(_expected("integer", f"{where}.id", form_id))
            ok = False
        if label is not None and not isinstance(label, str):
            errors.append(_expected("string", f"{where}.label", label))
            ok = False
        if form_id is None and label is None:
            errors.append(FieldError(where, "one of id or label is required", item))
            ok = False
        if not isinstance(text, str):
            errors.append(_expected("string", f"{where}.value", text))
            ok = False
        if ok and isinstance(text, str):
            items.append(LightItem(key, form_id, label, text))
    return items


def parse_contact(body: dict[str, Any], location: str, *, upsert: bool = False) -> ContactWrite:
    """Validate one contact object (create/patch model, or the upsert ``data``).

    Raises a 422 :class:`Problem` listing every field error found.
    """
    errors: list[FieldError] = []
    write = ContactWrite()
    for key, value in body.items():
        where = f"{location}.{key}"
        name = FIELD_ALIASES.get(key, key)
        if value is None:
            continue  # null clears, like a missing key
        if name in STRING_FIELDS:
            if not isinstance(value, str):
                errors.append(_expected("string", where, value))
            elif name == "mail" and value and not _MAIL.match(value):
                errors.append(FieldError(where, "expected a valid email address", value))
            elif value:
                write.fields[name] = value
        elif name in INT_FIELDS:
            if not _is_int(value):
                errors.append(_expected("integer", where, value))
            else:
                write.fields[name] = value
        elif name in BOOL_FIELDS:
            if not isinstance(value, bool):
                errors.append(_expected("boolean", where, value))
            else:
                write.fields[name] = value
        elif name == "birthdate":
            parsed = parse_iso(value) if isinstance(value, str) else None
            if not isinstance(value, str):
                errors.append(_expected("string", where, value))
            elif value and parsed is None:
                errors.append(FieldError(where, "expected an RFC 3339 date-time", value))
            elif parsed is not None:
                write.fields["birthdate"] = format_seconds(parsed)
        elif name == "address":
            write.address = _address(value, where, errors)
        elif name == "tags":
            write.tags = _tags(value, where, errors)
        elif name in ("actions_ids", "action_ids"):
            if not isinstance(value, list) or not all(_is_int(item) for item in value):
                errors.append(_expected("array of integers", where, value))
            else:
                write.actions_ids = list(value)
        elif name == "notes":
            write.notes = _notes(value, where, errors)
        elif upsert and name == "id":
            if not _is_int(value):
                errors.append(_expected("integer", where, value))
            else:
                write.match_id = value
        elif upsert and name in LIGHT_KEYS:
            write.light.extend(_light(name, value, where, errors))
        elif not upsert and name == "formdatas":
            write.formdatas = _answers(value, where, errors)
        elif not upsert and name in ("custom_fields", "customfields"):
            write.customfields = _answers(value, where, errors)
        else:
            write.ignored_keys.append(key)
    if errors:
        raise unprocessable(errors)
    return write


def _tags(value: Any, location: str, errors: list[FieldError]) -> list[str]:
    if not isinstance(value, list):
        errors.append(_expected("array", location, value))
        return []
    names: list[str] = []
    for index, item in enumerate(value):
        where = f"{location}[{index}]"
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(item, dict):
            errors.append(_expected("object", where, item))
        elif not isinstance(name, str):
            errors.append(_expected("string", f"{where}.name", name))
        elif name and name not in names:
            names.append(name)
    return names


def parse_upsert(body: Any) -> ContactWrite:
    """Validate ``{"kind": "contact", "data": {...}}`` (``POST /contacts/upsert``)."""
    data = require_object(body, "body", "data")
    kind = body.get("kind")
    if kind != "contact":
        raise unprocessable(
            [FieldError("body.kind", 'expected "contact"' if kind else "required", kind)]
        )
    return parse_contact(data, "body.data", upsert=True)


def bad_json(detail: str) -> Problem:
    """The 400 for a body that is not JSON."""
    return Problem(400, detail, [FieldError("body", "invalid JSON")])
