"""Resolving advanced columns against the space's forms, as plain data.

The command line fetches ``GET /v1/forms/type/{type}`` for each type the mapping uses
(:attr:`ImportMapping.form_types`) and hands the result here; nothing in this module does I/O.
A form is a dict (or any object with these attributes)::

    {"id": 12, "label": "Consentement email", "type": "checkbox",
     "refvalues": [{"id": 120, "label": "J'accepte", "value": "consent_email"}, ...]}

Why check before sending: Qomon's upsert accepts (202) a record naming an unknown form or
value and then drops the whole record silently, so an unresolvable answer
must be a row error here, never a request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ._convert import (
    ConversionError,
    cell_text,
    format_form_date,
    parse_date,
    parse_number,
    split_values,
)
from ._fields import ADVANCED_KEYS, Route
from ._mapping import AdvancedColumn

__all__ = ["Form", "FormAnswerer", "FormCatalog", "RefValue"]

# Widget types whose answer is free (text, date and numeric forms have a single refvalue with
# no label or value). `range` answers a number within min/max.
_FREE_WIDGETS = frozenset({"text", "numeric", "date", "range"})
_NUMERIC_WIDGETS = frozenset({"numeric", "range"})
# How many options an "unknown value" message lists before "...".
_MAX_LISTED = 8


@dataclasses.dataclass(frozen=True)
class RefValue:
    """One option of a form: ``id`` is what ``form_ref_id`` points to; ``value`` is the slug
    Qomon stores, ``label`` the text shown."""

    id: int
    label: str
    value: str

    @property
    def written(self) -> str:
        """The text written for this option: its value, or its label when it has no value."""
        return self.value or self.label


@dataclasses.dataclass(frozen=True)
class Form:
    """A form (an advanced-field definition) of one form type."""

    id: int
    label: str
    widget: str
    form_type: str
    refvalues: tuple[RefValue, ...]

    @property
    def is_free(self) -> bool:
        """Whether the answer is free (text, number, date) rather than one of the options."""
        if self.widget in _FREE_WIDGETS:
            return True
        # Unknown widget types (the spec's list is open): a lone option with neither label nor
        # value is the mark of a free form.
        return len(self.refvalues) == 1 and not (self.refvalues[0].value or self.refvalues[0].label)


def _get(obj: object, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _as_text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


class FormCatalog:
    """The forms of a space, by form type, as fetched from ``GET /v1/forms/type/{type}``.

    Args:
        forms_by_type: Form type (``"consent"``, ...) -> the forms listed for it, each a dict
            or an object with ``id``, ``label``, ``type`` and ``refvalues`` (each with ``id``,
            ``label``, ``value``). ``None`` lists count as empty (Qomon may send
            ``"forms": null``). Entries without an integer id are ignored.
    """

    def __init__(self, forms_by_type: Mapping[str, Iterable[object] | None]) -> None:
        self._forms: dict[str, tuple[Form, ...]] = {}
        for form_type, forms in forms_by_type.items():
            parsed: list[Form] = []
            for raw in forms or ():
                form_id = _as_int(_get(raw, "id"))
                if form_id is None:
                    continue
                refvalues = tuple(
                    RefValue(ref_id, _as_text(_get(r, "label")), _as_text(_get(r, "value")))
                    for r in _get(raw, "refvalues") or ()
                    if (ref_id := _as_int(_get(r, "id"))) is not None
                )
                parsed.append(
                    Form(
                        id=form_id,
                        label=_as_text(_get(raw, "label")),
                        widget=_as_text(_get(raw, "type")).lower(),
                        form_type=form_type,
                        refvalues=refvalues,
                    )
                )
            self._forms[form_type] = tuple(parsed)

    def forms(self, form_type: str) -> tuple[Form, ...]:
        """The forms of ``form_type`` (empty when that type was not fetched)."""
        return self._forms.get(form_type, ())

    def find(self, column: AdvancedColumn) -> Form:
        """The form an advanced column names, by id or by label (exact, then ignoring case
        and repeated spaces).

        Raises:
            LookupError: No such form, or the label is ambiguous; the message says which
                labels exist or which ids to choose from.
        """
        forms = self.forms(column.form_type)
        if column.form_id is not None:
            for form in forms:
                if form.id == column.form_id:
                    return form
            raise LookupError(f"no {column.form_type} form has id {column.form_id}")
        label = column.form_label or ""
        matches = [f for f in forms if f.label == label] or [
            f for f in forms if _fold(f.label) == _fold(label)
        ]
        if len(matches) == 1:
            return matches[0]
        if matches:
            ids = ", ".join(str(f.id) for f in matches)
            raise LookupError(
                f'{len(matches)} {column.form_type} forms are labelled "{label}" (ids {ids}):'
                " name the form by id = ... instead"
            )
        known = ", ".join(f'"{f.label}"' for f in forms) or "none"
        raise LookupError(f'no {column.form_type} form is labelled "{label}" (known: {known})')

    def __repr__(self) -> str:
        counts = ", ".join(f"{t}={len(f)}" for t, f in self._forms.items())
        return f"FormCatalog({counts})"


class FormAnswerer:
    """Turns the cells of one advanced column into write entries for one route.

    For ``create``, entries go under :attr:`key` (``formdatas``, or ``custom_fields`` for
    custom fields) as ``{"form_id", "form_ref_id", "data"}``. For ``upsert``, under the
    type's ``FormsLight`` key (``consents``, ``status``, ``forms``, ``custom_fields``,
    ``actions``, ``name_presences``) as ``{"id": form id, "value": text}``; the form's id is
    used rather than its label because labels need not be unique.

    Raises:
        LookupError: (from the constructor) A free form has no option to point a create's
            ``form_ref_id`` at.
    """

    def __init__(self, column: AdvancedColumn, form: Form, route: Route) -> None:
        self.column = column
        self.form = form
        self.route = route
        create_key, upsert_key = ADVANCED_KEYS[column.form_type]
        self.key = create_key if route == "create" else upsert_key
        self._free_ref: RefValue | None = None
        self._by_text: dict[str, RefValue] = {}
        self._by_folded: dict[str, RefValue | None] = {}
        if form.is_free:
            if form.refvalues:
                self._free_ref = form.refvalues[0]
            elif route == "create":
                raise LookupError(
                    f"form {form.id} ({form.label!r}) has no option: a create cannot answer it"
                )
            return
        # Lookup order: exact value, exact label, then both ignoring case and spaces. A folded
        # text shared by two options is ambiguous and matches neither (stored as None).
        for ref in form.refvalues:
            if ref.value:
                self._by_text.setdefault(ref.value, ref)
        for ref in form.refvalues:
            if ref.label:
                self._by_text.setdefault(ref.label, ref)
        for ref in form.refvalues:
            for text in {_fold(ref.value), _fold(ref.label)} - {""}:
                if self._by_folded.get(text, ref) is not ref:
                    self._by_folded[text] = None
                else:
                    self._by_folded[text] = ref

    def answers(self, value: object) -> list[dict[str, object]]:
        """The write entries for one cell (empty when the cell is empty).

        Raises:
            ConversionError: The text is not an option of the form, or not a number or a
                date for numeric and date forms.
        """
        if self.column.separator is not None:
            texts = split_values(value, self.column.separator)
        elif isinstance(value, list):
            texts = split_values(value)
        else:
            text = cell_text(value)
            texts = [text] if text is not None else []
        entries: list[dict[str, object]] = []
        for cell in texts:
            replaced = self.column.values.get(cell)
            text = cell if replaced is None else replaced.strip()
            if not text:  # the value map says "leave unanswered"
                continue
            entry = self._entry(text)
            if entry not in entries:
                entries.append(entry)
        return entries

    def _entry(self, text: str) -> dict[str, object]:
        if self.form.is_free:
            data = self._free_text(text)
            if self.route == "upsert":
                return {"id": self.form.id, "value": data}
            assert self._free_ref is not None  # checked in __init__ for create
            return {"form_id": self.form.id, "form_ref_id": self._free_ref.id, "data": data}
        ref = self._by_text.get(text) or self._by_folded.get(_fold(text))
        if ref is None:
            raise ConversionError(self._unknown_option_message())
        if self.route == "upsert":
            return {"id": self.form.id, "value": ref.written}
        return {"form_id": self.form.id, "form_ref_id": ref.id, "data": ref.written}

    def _free_text(self, text: str) -> str:
        if self.form.widget == "date":
            return format_form_date(parse_date(text))
        if self.form.widget in _NUMERIC_WIDGETS:
            return parse_number(text)
        return text

    def _unknown_option_message(self) -> str:
        options = [
            f"{r.value} ({r.label})" if r.value and r.label and r.label != r.value else r.written
            for r in self.form.refvalues
        ]
        listed = ", ".join(options[:_MAX_LISTED]) + (", ..." if len(options) > _MAX_LISTED else "")
        message = (
            f'not an option of the {self.column.form_type} form "{self.form.label}"'
            f" (id {self.form.id}); options: {listed or 'none'}"
        )
        if self.column.values:
            message += f"; or one of the mapping's values: {', '.join(self.column.values)}"
        return message
