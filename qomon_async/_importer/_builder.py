"""From an input row to a contact dict in Qomon's field names, or to row errors.

The contact is the create write model (the ``contact`` of ``POST /contacts``) or the ``data``
of an upsert (``{"kind": "contact", "data": ...}``), depending on the route. Empty cells are
left out (never sent as ``""``); nested fields are built as nested objects (``address.city``
-> ``{"address": {"city": ...}}``); tags are ``[{"name": ...}]``. Birth fields are written
``birthcity``/``birthcountry``/``birthdept`` for both routes (the 1.1.0 spelling; Qomon's
documents disagree on the create spelling, some saying ``birth_city``..., so the client may
rename them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Iterator

import msgspec

from .._validation import suggest
from ._convert import ConversionError, convert_field
from ._errors import MappingError, RowError
from ._fields import ADVANCED_KEYS, CONTACT_FIELDS, UPSERT_ONLY_FIELDS, Route, canonical_field
from ._forms import FormAnswerer, FormCatalog
from ._mapping import ImportMapping
from ._reader import SourceRow

__all__ = ["BuiltRow", "ContactBuilder", "validate_rows"]

# JSON Lines rows may each have their own keys: the per-key-set plans are cached, but only so
# many, so that memory stays flat on a file whose every row differs.
_PLAN_CACHE_SIZE = 256
_OLDEST_BIRTHDATE = "1900-01-01"
_ADVANCED_ORDER = tuple(dict.fromkeys(k for pair in ADVANCED_KEYS.values() for k in pair))


@dataclasses.dataclass(frozen=True, slots=True)
class BuiltRow:
    """The outcome of building one row.

    Attributes:
        number: The data row number (see :class:`SourceRow`).
        line: The line where the row starts in the file.
        contact: The contact dict, or ``None`` when the row has errors.
        errors: Every problem of the row (empty when ``contact`` is set).
    """

    number: int
    line: int | None
    contact: dict[str, object] | None
    errors: tuple[RowError, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the row gave a contact."""
        return self.contact is not None

    @property
    def error_message(self) -> str:
        """All errors on one line, for a report's error cell (``""`` when there are none)."""
        return "; ".join(
            (f'column "{e.column}": ' if e.column else "")
            + e.message
            + (f": {e.value!r}" if e.value is not None else "")
            for e in self.errors
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    fields: tuple[tuple[str, str], ...]  # (column, field)
    advanced: tuple[tuple[str, FormAnswerer], ...]
    unknown: tuple[tuple[str, str], ...]  # (column, message)


def _value_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


class ContactBuilder:
    """Builds contacts from input rows, with a mapping and the space's forms.

    Args:
        mapping: The column mapping; by default columns are named as contact fields.
        route: ``"create"`` (``POST /contacts``) or ``"upsert"``: the shape of advanced
            fields, and whether ``id``/``nationbuilderid`` columns are allowed (upsert only).
        forms: The forms of the types in ``mapping.form_types``; required when the mapping
            has advanced columns.
        today: The day birthdates may not be after; by default today (UTC).

    Raises:
        MappingError: An advanced column names a form that does not exist, or whose label is
            ambiguous; or a constant sets a field the route does not take. All listed at once.
        ValueError: The mapping has advanced columns and ``forms`` is ``None``.
    """

    def __init__(
        self,
        mapping: ImportMapping | None = None,
        *,
        route: Route = "create",
        forms: FormCatalog | None = None,
        today: dt.date | None = None,
    ) -> None:
        self.mapping = mapping or ImportMapping()
        self.route: Route = route
        self._today = (today or dt.datetime.now(dt.timezone.utc).date()).isoformat()
        if self.mapping.advanced and forms is None:
            raise ValueError("the mapping has advanced columns: pass forms=FormCatalog(...)")
        problems: list[str] = []
        self._answerers: dict[str, FormAnswerer] = {}
        for column, spec in self.mapping.advanced.items():
            assert forms is not None
            try:
                self._answerers[column] = FormAnswerer(spec, forms.find(spec), route)
            except LookupError as exc:
                problems.append(f'[advanced."{column}"]: {exc.args[0]}')
        if route == "create":
            for field in self.mapping.constants.keys() & UPSERT_ONLY_FIELDS:
                problems.append(f"[constants] {field!r} is only taken by the upsert route")
        if problems:
            raise MappingError(self.mapping.source, problems)
        self._plans: dict[tuple[str, ...], _Plan] = {}

    # -- columns ----------------------------------------------------------------------------

    def _target(self, column: str) -> str | FormAnswerer | None:
        """The field or form answerer of a column; ``None`` when the column is left out.

        Raises:
            LookupError: The column is unknown, or names a field the route does not take.
        """
        mapping = self.mapping
        if column in mapping.ignored:
            return None
        if column in self._answerers:
            return self._answerers[column]
        field = mapping.columns.get(column) or canonical_field(column)
        if field is None:
            if mapping.ignore_unknown:
                return None
            close = suggest(column, CONTACT_FIELDS)
            hint = f" (did you mean `{close}`?)" if close else ""
            raise LookupError(
                f"unknown column{hint}: not a contact field (firstname, mail, address.city, ...);"
                " map it or ignore it in the mapping file"
            )
        if field in UPSERT_ONLY_FIELDS and self.route != "upsert":
            raise LookupError(f"{field} is only taken by the upsert route")
        return field

    def _plan(self, columns: tuple[str, ...]) -> _Plan:
        plan = self._plans.get(columns)
        if plan is not None:
            return plan
        fields: list[tuple[str, str]] = []
        advanced: list[tuple[str, FormAnswerer]] = []
        unknown: list[tuple[str, str]] = []
        for column in columns:
            try:
                target = self._target(column)
            except LookupError as exc:
                unknown.append((column, str(exc)))
                continue
            if isinstance(target, FormAnswerer):
                advanced.append((column, target))
            elif target is not None:
                fields.append((column, target))
        plan = _Plan(tuple(fields), tuple(advanced), tuple(unknown))
        if len(self._plans) >= _PLAN_CACHE_SIZE:
            self._plans.clear()
        self._plans[columns] = plan
        return plan

    def check_columns(self, columns: Iterable[str]) -> list[RowError]:
        """Check a CSV header once, before any row: one :class:`RowError` (with ``row=None``)
        per column that is neither a contact field, mapped, nor ignored. An empty list means
        every column has a place."""
        plan = self._plan(tuple(columns))
        return [RowError(None, column, message) for column, message in plan.unknown]

    # -- rows -------------------------------------------------------------------------------

    def build(self, row: SourceRow) -> BuiltRow:
        """Build the contact of one row, or collect every problem of the row."""
        if row.error is not None:
            return BuiltRow(
                row.number, row.line, None, (RowError(row.number, None, row.error, line=row.line),)
            )
        errors: list[RowError] = []

        def fail(column: str, message: str, value: object) -> None:
            errors.append(RowError(row.number, column, message, _value_text(value), row.line))

        plan = self._plan(tuple(row.values))
        for column, message in plan.unknown:
            fail(column, message, row.values[column])

        values: dict[str, object] = {}
        origin: dict[str, str] = {}
        for column, field in plan.fields:
            raw = row.values[column]
            try:
                value = convert_field(CONTACT_FIELDS[field], raw, self.mapping.values.get(field))
            except ConversionError as exc:
                fail(column, str(exc) if column == field else f"{field}: {exc}", raw)
                continue
            if value is None:
                continue
            if field == "birthdate" and not self._plausible_birthdate(str(value)):
                fail(column, f"a birthdate must be between {_OLDEST_BIRTHDATE} and today", raw)
                continue
            if field == "tags" and field in values:
                assert isinstance(value, list)
                values[field] = _merge_tags(values[field], value)
            elif field in values and values[field] != value:
                fail(
                    column, f'{field} is also given, differently, by column "{origin[field]}"', raw
                )
            else:
                values[field] = value
                origin[field] = column

        answers: dict[str, list[dict[str, object]]] = {}
        for column, answerer in plan.advanced:
            raw = row.values[column]
            try:
                entries = answerer.answers(raw)
            except ConversionError as exc:
                fail(column, str(exc), raw)
                continue
            if entries:
                answers.setdefault(answerer.key, []).extend(entries)

        if errors:
            return BuiltRow(row.number, row.line, None, tuple(errors))
        if not values and not answers:
            message = "the row sets no contact field"
            return BuiltRow(
                row.number, row.line, None, (RowError(row.number, None, message, line=row.line),)
            )
        for field, constant in self.mapping.constants.items():
            if field == "tags":
                # A fresh list per row: contacts must not share (mutable) constants.
                values[field] = _merge_tags(values.get(field, []), constant)
            else:
                values.setdefault(field, constant)
        return BuiltRow(row.number, row.line, _nest(values, answers))

    def _plausible_birthdate(self, rfc3339: str) -> bool:
        # ISO dates compare as text.
        return _OLDEST_BIRTHDATE <= rfc3339[:10] <= self._today

    def __repr__(self) -> str:
        return f"ContactBuilder(route={self.route!r}, mapping={self.mapping.source!r})"


def _merge_tags(first: object, second: object) -> list[object]:
    assert isinstance(first, list)
    assert isinstance(second, list)
    seen = {tag["name"] for tag in first}
    return first + [dict(tag) for tag in second if tag["name"] not in seen]


def _nest(
    values: dict[str, object], answers: dict[str, list[dict[str, object]]]
) -> dict[str, object]:
    contact: dict[str, object] = {}
    address: dict[str, object] = {}
    for field in CONTACT_FIELDS:  # the canonical key order
        if field not in values:
            continue
        if field.startswith("address."):
            if not address:
                contact["address"] = address
            address[field.removeprefix("address.")] = values[field]
        else:
            contact[field] = values[field]
    for key in _ADVANCED_ORDER:
        if key in answers:
            contact[key] = answers[key]
    return contact


def validate_rows(rows: Iterable[SourceRow], builder: ContactBuilder) -> Iterator[RowError]:
    """Every problem of every row, in row order (the ``--dry-run`` check); streams."""
    for row in rows:
        yield from builder.build(row).errors
