"""The space's contacts: storage, the read shape, PATCH as a full replace, upsert matching.

Everything here is synchronous and free of I/O; the app calls it under one lock, so that the
emulator can also be driven from another thread (the pytest plugin's mode).
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ._clock import QomonClock
from ._dates import format_micro, format_milli, parse_iso
from ._problems import FieldError, Problem, unprocessable
from ._seed import FREE_FORM_TYPES, GROUP_ID, build_forms
from ._validate import LIGHT_KEYS, AnswerWrite, ContactWrite, LightItem, parse_contact

UnknownIdPolicy = Literal["drop", "match"]


@dataclass
class StoredContact:
    """One contact as the emulator keeps it; :meth:`ContactStore.render` gives the read shape."""

    id: int
    created_at: datetime
    updated_at: datetime
    lastchange: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    address: dict[str, str] | None = None
    address_id: int | None = None
    tags: list[str] = field(default_factory=list)
    actions_ids: list[int] | None = None
    formdatas: list[dict[str, Any]] = field(default_factory=list)
    customfields: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class UpsertOutcome:
    """What an upsert did once applied: ``created``, ``updated`` or ``dropped`` (and why)."""

    outcome: Literal["created", "updated", "dropped"]
    contact_id: int | None
    reason: str | None = None


class _Dropped(Exception):
    """An upsert record Qomon silently discards (202 answered, nothing written)."""


def _norm(text: Any) -> str:
    return str(text).strip().casefold() if text is not None else ""


class ContactStore:
    """Contacts and forms of one emulated space."""

    def __init__(
        self,
        clock: QomonClock,
        *,
        group_id: int = GROUP_ID,
        first_contact_id: int = 83854767,
        upsert_unknown_id: UnknownIdPolicy = "drop",
    ) -> None:
        self.clock = clock
        self.group_id = group_id
        self.upsert_unknown_id = upsert_unknown_id
        self.contacts: dict[int, StoredContact] = {}
        self.forms = build_forms()
        self.forms_by_id = {form["id"]: form for form in self.forms}
        self.refs_by_id = {
            ref["id"]: (form, ref) for form in self.forms for ref in form["refvalues"]
        }
        self._next_contact_id = first_contact_id
        self._next_answer_id = 1178304
        self._next_note_id = 1234
        self._next_address_id = 8971

    # -- ids ------------------------------------------------------------------------------

    def _new_contact_id(self) -> int:
        value = self._next_contact_id
        self._next_contact_id += 1
        return value

    def _new_answer_id(self) -> int:
        value = self._next_answer_id
        self._next_answer_id += 1
        return value

    # -- synchronous writes ---------------------------------------------------------------

    def check_answers(self, write: ContactWrite, location: str) -> None:
        """422 for a ``formdatas``/``custom_fields`` entry naming an unknown form or refvalue."""
        errors: list[FieldError] = []
        for key, answers in (("formdatas", write.formdatas), ("custom_fields", write.customfields)):
            for index, answer in enumerate(answers or []):
                where = f"{location}.{key}[{index}]"
                if answer.form_id not in self.forms_by_id:
                    errors.append(FieldError(f"{where}.form_id", "unknown form", answer.form_id))
                    continue
                owner = self.refs_by_id.get(answer.form_ref_id)
                if owner is None or owner[0]["id"] != answer.form_id:
                    errors.append(
                        FieldError(
                            f"{where}.form_ref_id",
                            f"no such refvalue for form {answer.form_id}",
                            answer.form_ref_id,
                        )
                    )
        if errors:
            raise unprocessable(errors)

    def _answer(
        self, contact_id: int, form_id: int, ref_id: int, data: str | None, now: datetime
    ) -> dict[str, Any]:
        form = self.forms_by_id[form_id]
        ref = self.refs_by_id[ref_id][1]
        if data is None:
            data = "" if form["type"] in FREE_FORM_TYPES else str(ref.get("value", ""))
        stamp = format_milli(now)
        # Qomon's FormData read shape; a fresh id on every write (PATCH recreates them).
        return {
            "id": self._new_answer_id(),
            "created_at": stamp,
            "updated_at": stamp,
            "deleted_at": None,
            "data": data,
            "date": stamp,
            "donedate": None,
            "label": None,
            "type_of_form": None,
            "group_id": self.group_id,
            "contact_id": contact_id,
            "form_id": form_id,
            "form_ref_id": ref_id,
        }

    def _answers(
        self, contact_id: int, answers: list[AnswerWrite] | None, now: datetime
    ) -> list[dict[str, Any]]:
        result = []
        for answer in answers or []:
            entry = self._answer(contact_id, answer.form_id, answer.form_ref_id, answer.data, now)
            if answer.survey_id is not None:
                entry["survey_id"] = answer.survey_id
            result.append(entry)
        return result

    def _notes(
        self, contact_id: int, notes: list[tuple[str, bool]], now: datetime
    ) -> list[dict[str, Any]]:
        result = []
        for text, pinned in notes:
            self._next_note_id += 1
            stamp = format_milli(now)
            # Both spellings of the text (Qomon's docs use both), so either reader finds it.
            result.append(
                {
                    "id": self._next_note_id,
                    "content": text,
                    "data": text,
                    "pinned": pinned,
                    "created_at": stamp,
                    "updated_at": stamp,
                    "contact_id": contact_id,
                    "group_id": self.group_id,
                    "only_super_admin": False,
                }
            )
        return result

    def _fill(self, contact: StoredContact, write: ContactWrite, now: datetime) -> None:
        contact.fields = dict(write.fields)
        contact.address = dict(write.address) if write.address else None
        if contact.address and contact.address_id is None:
            self._next_address_id += 1
            contact.address_id = self._next_address_id
        contact.tags = list(write.tags or [])
        contact.actions_ids = list(write.actions_ids) if write.actions_ids is not None else None
        contact.formdatas = self._answers(contact.id, write.formdatas, now)
        contact.customfields = self._answers(contact.id, write.customfields, now)
        contact.notes = self._notes(contact.id, write.notes or [], now)

    def create(
        self, write: ContactWrite, location: str, *, created_at: datetime | None = None
    ) -> StoredContact:
        """Store a new contact (``POST /contacts``)."""
        self.check_answers(write, location)
        now = self.clock.utcnow()
        stamp = created_at or now
        contact = StoredContact(self._new_contact_id(), stamp, stamp, stamp)
        self._fill(contact, write, stamp)
        self.contacts[contact.id] = contact
        return contact

    def get(self, contact_id: int) -> StoredContact:
        """The contact, or a 404 :class:`Problem`."""
        contact = self.contacts.get(contact_id)
        if contact is None:
            raise Problem(404, f"contact {contact_id} not found")
        return contact

    def replace(self, contact_id: int, write: ContactWrite, location: str) -> StoredContact:
        """PATCH: a full replace; whatever the body leaves out is cleared."""
        contact = self.get(contact_id)
        self.check_answers(write, location)
        now = self.clock.utcnow()
        self._fill(contact, write, now)
        contact.updated_at = contact.lastchange = now
        return contact

    def delete(self, contact_id: int) -> None:
        """``DELETE /contacts/{id}``."""
        self.get(contact_id)
        del self.contacts[contact_id]

    # -- the read shape -------------------------------------------------------------------

    def render(self, contact: StoredContact) -> dict[str, Any]:
        """The contact in Qomon's read shape (the field names of API version 1.1.0)."""
        out: dict[str, Any] = {
            "id": contact.id,
            "group_id": self.group_id,
            "CreatedAt": format_micro(contact.created_at),
            "UpdatedAt": format_micro(contact.updated_at),
            "lastchange": format_milli(contact.lastchange),
        }
        out.update(contact.fields)
        out.setdefault("black_list", False)
        if contact.address:
            out["address"] = self._render_address(contact)
        out["tags"] = [{"name": name} for name in contact.tags]
        if contact.actions_ids is not None:
            out["actions_ids"] = list(contact.actions_ids)
        out["formdatas"] = copy.deepcopy(contact.formdatas)
        out["customfields"] = copy.deepcopy(contact.customfields)
        if contact.notes:
            out["notes"] = copy.deepcopy(contact.notes)
        return out

    def _render_address(self, contact: StoredContact) -> dict[str, Any]:
        assert contact.address is not None
        address: dict[str, Any] = dict(contact.address)
        # A deterministic stand-in for Qomon's geocoding, somewhere in mainland France.
        key = f"{contact.address.get('postalcode', '')}|{_norm(contact.address.get('city'))}"
        digest = zlib.crc32(key.encode())
        latitude = 43.5 + (digest % 50000) / 10000
        longitude = -1.0 + (digest // 50000 % 70000) / 10000
        address.update(
            id=contact.address_id,
            score=0.965753 if "city" in contact.address else 0.5,
            latitude=f"{latitude:.6f}",
            longitude=f"{longitude:.6f}",
            location=f"{latitude:.6f},{longitude:.6f}",
            invalid=None,
        )
        return address

    # -- upsert ---------------------------------------------------------------------------

    def _resolve(self, item: LightItem) -> tuple[dict[str, Any], dict[str, Any], str]:
        category = LIGHT_KEYS[item.key]
        candidates = [form for form in self.forms if form["_category"] == category]
        if item.form_id is not None:
            found = [form for form in candidates if form["id"] == item.form_id]
            if item.label is not None:
                found = [form for form in found if form["label"] == item.label]
        else:
            found = [form for form in candidates if form["label"] == item.label]
        if len(found) != 1:
            raise _Dropped(f"{item.key}: no form {item.form_id or item.label!r}")
        form = found[0]
        refs = form["refvalues"]
        if form["type"] in FREE_FORM_TYPES:
            if not self._free_value_ok(form, item.value):
                raise _Dropped(f"{item.key}: {item.value!r} is not a valid {form['type']}")
            return form, refs[0], item.value
        # Observed on Qomon: a refvalue's label is accepted in place of its value.
        for ref in refs:
            if item.value in (ref.get("value"), ref.get("label")):
                return form, ref, str(ref.get("value", item.value))
        raise _Dropped(f"{item.key}: form {form['id']} has no value {item.value!r}")

    @staticmethod
    def _free_value_ok(form: dict[str, Any], value: str) -> bool:
        kind = form["type"]
        if kind == "date":
            return parse_iso(value) is not None
        if kind in ("numeric", "range"):
            try:
                number = float(value)
            except ValueError:
                return False
            if kind == "range":
                ref = form["refvalues"][0]
                return bool(ref.get("min", number) <= number <= ref.get("max", number))
        return True

    def _match(self, write: ContactWrite) -> StoredContact | None:
        fields = write.fields
        # 1. By id: a Qomon id or a NationBuilder id.
        if write.match_id is not None:
            for contact in self.contacts.values():
                if write.match_id in (contact.id, contact.fields.get("nationbuilderid")):
                    return contact
            if self.upsert_unknown_id == "drop":
                # Observed on Qomon (2026-10): an unknown id is dropped, not turned into a create.
                raise _Dropped(f"no contact with id {write.match_id}")
        firstname, surname = _norm(fields.get("firstname")), _norm(fields.get("surname"))
        # 2. By email, then firstname and surname when given.
        mail = _norm(fields.get("mail"))
        if mail:
            for contact in self.contacts.values():
                if _norm(contact.fields.get("mail")) != mail:
                    continue
                if firstname and _norm(contact.fields.get("firstname")) != firstname:
                    continue
                if surname and _norm(contact.fields.get("surname")) != surname:
                    continue
                return contact
        # 3. By surname + firstname, then birthdate and address where both sides have them.
        if surname:
            for contact in self.contacts.values():
                if _norm(contact.fields.get("surname")) != surname:
                    continue
                if _norm(contact.fields.get("firstname")) != firstname:
                    continue
                compared_birthdate = False
                theirs, ours = contact.fields.get("birthdate"), fields.get("birthdate")
                if theirs and ours:
                    if parse_iso(theirs) != parse_iso(ours):
                        continue
                    compared_birthdate = True
                if contact.address and write.address:
                    a, b = contact.address, write.address
                    same_city = bool(a.get("city")) and _norm(a.get("city")) == _norm(b.get("city"))
                    same_postcode = bool(a.get("postalcode")) and _norm(
                        a.get("postalcode")
                    ) == _norm(b.get("postalcode"))
                    if not (same_city or same_postcode):
                        continue
                    if not compared_birthdate and _norm(a.get("street")) != _norm(b.get("street")):
                        continue
                return contact
        # 4. No match: create.
        return None

    def apply_upsert(self, write: ContactWrite) -> UpsertOutcome:
        """Apply one accepted upsert now: match, then update partially or create."""
        try:
            # The whole record is dropped if any advanced field does not resolve.
            resolved = [self._resolve(item) for item in write.light]
            contact = self._match(write)
        except _Dropped as dropped:
            return UpsertOutcome("dropped", None, str(dropped))
        now = self.clock.utcnow()
        created = contact is None
        if contact is None:
            contact = StoredContact(self._new_contact_id(), now, now, now)
            self.contacts[contact.id] = contact
        # Partial update (observed): only what the record carries changes.
        contact.fields.update(write.fields)
        if write.address:
            contact.address = {**(contact.address or {}), **write.address}
            if contact.address_id is None:
                self._next_address_id += 1
                contact.address_id = self._next_address_id
        for tag in write.tags or []:
            if tag not in contact.tags:
                contact.tags.append(tag)
        if write.actions_ids is not None:
            merged = list(contact.actions_ids or [])
            merged += [item for item in write.actions_ids if item not in merged]
            contact.actions_ids = merged
        contact.notes += self._notes(contact.id, write.notes or [], now)
        for item, (form, ref, value) in zip(write.light, resolved, strict=True):
            answers = contact.customfields if item.key == "custom_fields" else contact.formdatas
            if form["type"] == "checkbox":
                # Multi-select: a new value is added to the existing ones.
                if any(a["form_ref_id"] == ref["id"] for a in answers):
                    continue
            else:
                # Single answer (radio, presence, free text...): the new one replaces the old.
                answers[:] = [a for a in answers if a["form_id"] != form["id"]]
            answers.append(self._answer(contact.id, form["id"], ref["id"], value, now))
        contact.updated_at = now
        # Observed: `lastchange` does not move for a presence-only write (`UpdatedAt` does).
        presence_only = (
            not created
            and write.light
            and all(item.key == "name_presences" for item in write.light)
            and not (write.fields or write.address or write.tags or write.notes)
        )
        if not presence_only:
            contact.lastchange = now
        return UpsertOutcome("created" if created else "updated", contact.id)


def contact_write_from_dict(data: dict[str, Any]) -> ContactWrite:
    """Validate a plain dict in Qomon's write model (for seeding), raising ValueError."""
    try:
        return parse_contact(data, "contact")
    except Problem as problem:
        raise ValueError(
            "; ".join(f"{e.location}: {e.message}" for e in problem.errors) or problem.detail
        ) from None
