"""``POST /search`` and ``/kpi``: the two-level query tree, the operators, sorting, paging."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

from .._query import Operator
from ._dates import parse_date_value, parse_iso
from ._problems import FieldError, unprocessable
from ._seed import FREE_FORM_TYPES
from ._store import ContactStore, StoredContact
from ._validate import require_object

Predicate = Callable[[StoredContact], bool]

LOGIC_KEYS = ("$all", "$at_least_one")
# The operators Qomon's search documents: one list, the client's ``Operator`` type (a module of
# plain dataclasses and typing, nothing of the client's HTTP side).
OPERATORS = frozenset(get_args(Operator))
SORT_ATTRS = (
    "surname",
    "firstname",
    "birthdate",
    "gender",
    "lastchange",
    "mail",
    "married_name",
    "city",
)
MAX_PER_PAGE = 1000

_DATE_ATTRS = {"birthdate", "birthday", "lastchange", "CreatedAt", "UpdatedAt"}
# Attributes compared as whole values (codes, ids, flags), not as text.
_EXACT_ATTRS = {
    "gender": "gender",
    "age_cat": "age_category",
    "user_id": "user_id",
    "user_contact_id": "user_contact_id",
    "nationbuilderid": "nationbuilderid",
    "black_list": "black_list",
}
_TEXT_FIELDS = {
    "firstname",
    "surname",
    "married_name",
    "birthdept",
    "birthcity",
    "birthcountry",
    "nationality",
    "mail",
    "phone",
    "mobile",
    "external_id",
}


@dataclass(frozen=True)
class SearchQuery:
    """A validated ``advanced_search``."""

    predicate: Predicate
    page: int
    per_page: int | None
    sort_attr: str | None
    sort_asc: bool
    include_interactions: bool


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _values(contact: StoredContact, attr: str) -> tuple[str, list[Any]]:
    """The kind (``text``, ``exact``, ``date``) and the values of ``attr`` on ``contact``."""
    if attr in _DATE_ATTRS:
        stamps = {
            "lastchange": contact.lastchange,
            "CreatedAt": contact.created_at,
            "UpdatedAt": contact.updated_at,
        }
        if attr in stamps:
            return "date", [stamps[attr]]
        birthdate = parse_iso(contact.fields.get("birthdate") or "")
        return "date", [birthdate] if birthdate else []
    if attr in _EXACT_ATTRS:
        value = contact.fields.get(_EXACT_ATTRS[attr])
        if attr == "black_list" and value is None:
            value = False
        return "exact", [] if value is None else [_text(value)]
    if attr in ("tags.name", "tags"):
        return "exact", list(contact.tags)
    if attr in ("action_ids", "actions_ids"):
        return "exact", [str(item) for item in contact.actions_ids or []]
    if attr.startswith("address."):
        part = (contact.address or {}).get(attr[len("address.") :])
        kind = "exact" if attr == "address.pollingstation" else "text"
        return kind, [] if not part else [part]
    if attr in _TEXT_FIELDS:
        value = contact.fields.get(attr)
        return "text", [] if not value else [value]
    # Any attribute is accepted (Qomon's list is open); one the emulator does not keep is empty.
    return "text", []


def _loose_match(field: str, wanted: str) -> bool:
    # Observed on Qomon: `eql` is a case-insensitive token or prefix match: "Test" matches
    # "Testville" and "Jean" matches "Marie Jeanne".
    wanted = wanted.strip().casefold()
    if not wanted:
        return not field
    return re.search(r"(?:^|\W)" + re.escape(wanted), field.casefold()) is not None


def _choices(value: Any) -> set[str]:
    items = value if isinstance(value, list) else str(value or "").split(",")
    return {str(item).strip().casefold() for item in items if str(item).strip()}


class _Compiler:
    def __init__(self, store: ContactStore, now: datetime) -> None:
        self.store = store
        self.now = now

    def date(self, value: Any, location: str) -> datetime:
        parsed = parse_date_value(value, self.now) if isinstance(value, str) else None
        if parsed is None:
            raise unprocessable(
                [FieldError(location, "expected a date-time or date-math (now-1d/d)", value)]
            )
        return parsed

    def tree(self, query: Any, location: str) -> Predicate:
        key, items = self._logic(query, location)
        nodes = []
        for index, node in enumerate(items):
            where = f"{location}.{key}[{index}]"
            if isinstance(node, dict) and "$condition" in node:
                # Observed on Qomon: a condition directly under the root is a 422.
                raise unprocessable(
                    [
                        FieldError(
                            where,
                            "the query needs exactly two levels: wrap conditions in "
                            '{"$all": [...]} or {"$at_least_one": [...]}',
                            node,
                        )
                    ]
                )
            nodes.append(self.node(node, where))
        return self._combine(key, nodes)

    def _logic(self, value: Any, location: str) -> tuple[str, list[Any]]:
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in LOGIC_KEYS:
            raise unprocessable(
                [
                    FieldError(
                        location, 'expected {"$all": [...]} or {"$at_least_one": [...]}', value
                    )
                ]
            )
        key = next(iter(value))
        items = value[key]
        if not isinstance(items, list):
            raise unprocessable([FieldError(f"{location}.{key}", "expected array", items)])
        return key, items

    @staticmethod
    def _combine(key: str, parts: list[Predicate]) -> Predicate:
        if not parts:
            # An empty list matches every contact (`{"$all": []}` is Qomon's "list all" idiom).
            return lambda contact: True
        if key == "$all":
            return lambda contact: all(part(contact) for part in parts)
        return lambda contact: any(part(contact) for part in parts)

    def node(self, node: Any, location: str) -> Predicate:
        key, items = self._logic(node, location)
        conditions = []
        for index, item in enumerate(items):
            where = f"{location}.{key}[{index}]"
            if not isinstance(item, dict) or set(item) != {"$condition"}:
                raise unprocessable([FieldError(where, 'expected {"$condition": {...}}', item)])
            conditions.append(self.condition(item["$condition"], f"{where}.$condition"))
        return self._combine(key, conditions)

    def condition(self, cond: Any, location: str) -> Predicate:
        if not isinstance(cond, dict):
            raise unprocessable([FieldError(location, "expected object", cond)])
        attr, ope = cond.get("attr"), cond.get("ope")
        errors = []
        if not isinstance(attr, str):
            errors.append(FieldError(f"{location}.attr", "required string", attr))
        if not isinstance(ope, str) or ope not in OPERATORS:
            errors.append(FieldError(f"{location}.ope", "unknown operator", ope))
        if errors:
            raise unprocessable(errors)
        assert isinstance(attr, str) and isinstance(ope, str)
        if attr in ("form", "custom_fields"):
            return self.form_condition(cond, attr, ope, location)
        return self.attr_condition(cond, attr, ope, location)

    def _needs_value(self, cond: dict[str, Any], ope: str, location: str) -> Any:
        value = cond.get("value")
        if value is None or (isinstance(value, str) and not value.strip()):
            raise unprocessable([FieldError(f"{location}.value", f"{ope} needs a value", value)])
        return value

    def _range(
        self, cond: dict[str, Any], location: str
    ) -> tuple[datetime | None, datetime | None]:
        low = cond.get("from")
        high = cond.get("to")
        if low is None and high is None:
            raise unprocessable([FieldError(f"{location}.from", "range needs from and/or to")])
        return (
            self.date(low, f"{location}.from") if low is not None else None,
            self.date(high, f"{location}.to") if high is not None else None,
        )

    def _date_test(
        self, cond: dict[str, Any], ope: str, location: str
    ) -> Callable[[datetime], bool]:
        if ope == "range":
            low, high = self._range(cond, location)
            return lambda v: (low is None or v >= low) and (high is None or v <= high)
        raw = self._needs_value(cond, ope, location)
        wanted = self.date(raw, f"{location}.value")
        if ope == "gte":
            return lambda v: v >= wanted
        if ope == "lte":
            return lambda v: v <= wanted
        # eql on a date: the same day for a date-only or day-rounded value, else the second.
        if isinstance(raw, str) and (len(raw.strip()) == 10 or raw.strip().endswith("/d")):
            return lambda v: v.date() == wanted.date()
        return lambda v: v.replace(microsecond=0) == wanted.replace(microsecond=0)

    def attr_condition(self, cond: dict[str, Any], attr: str, ope: str, location: str) -> Predicate:
        if ope == "ext":
            return lambda c: bool(_values(c, attr)[1])
        if ope == "not_ext":
            return lambda c: not _values(c, attr)[1]
        if ope == "period":
            raise unprocessable(
                [FieldError(f"{location}.ope", "period is not emulated by FakeQomon", ope)]
            )
        if ope == "today":
            # `birthday today`: born on this month and day.
            today = self.now.date()

            def born_today(c: StoredContact) -> bool:
                dates = _values(c, "birthdate")[1]
                return any((d.month, d.day) == (today.month, today.day) for d in dates)

            return born_today
        negate = ope.startswith("not_")
        base = ope[4:] if negate else ope
        if attr in _DATE_ATTRS and base in ("eql", "gte", "lte", "range"):
            test = self._date_test(cond, base, location)
            positive: Predicate = lambda c: any(test(v) for v in _values(c, attr)[1])  # noqa: E731
        elif base in ("any_of", "all_of", "none_of"):
            wanted = _choices(self._needs_value(cond, ope, location))
            if base == "all_of":
                positive = lambda c: wanted <= {v.casefold() for v in _values(c, attr)[1]}  # noqa: E731
            else:
                positive = lambda c: bool(wanted & {v.casefold() for v in _values(c, attr)[1]})  # noqa: E731
                negate = base == "none_of"
        elif base in ("gte", "lte", "range"):
            positive = self._number_test(cond, base, attr, location)
        else:
            positive = self._text_test(self._needs_value(cond, ope, location), base, attr)
        if negate:
            return lambda c: not positive(c)
        return positive

    @staticmethod
    def _text_test(value: Any, base: str, attr: str) -> Predicate:
        wanted = _text(value)
        if base == "eql:strictdata":
            return lambda c: wanted in _values(c, attr)[1]
        if base == "eql":

            def eql(c: StoredContact) -> bool:
                kind, values = _values(c, attr)
                if kind == "exact":
                    return any(v.casefold() == wanted.strip().casefold() for v in values)
                return any(_loose_match(v, wanted) for v in values)

            return eql
        folded = wanted.casefold()
        if base == "start_with":
            return lambda c: any(v.casefold().startswith(folded) for v in _values(c, attr)[1])
        if base == "contains":
            return lambda c: any(folded in v.casefold() for v in _values(c, attr)[1])
        raise AssertionError(base)  # pragma: no cover - OPERATORS is exhaustive

    def _number_test(self, cond: dict[str, Any], base: str, attr: str, location: str) -> Predicate:
        def number(raw: Any, where: str) -> float:
            try:
                return float(raw)
            except (TypeError, ValueError):
                raise unprocessable(
                    [FieldError(where, f"{base} needs a date or number", raw)]
                ) from None

        if base == "range":
            low = number(cond.get("from"), f"{location}.from")
            high = number(cond.get("to"), f"{location}.to")
        else:
            limit = number(cond.get("value"), f"{location}.value")
            low, high = (limit, float("inf")) if base == "gte" else (float("-inf"), limit)

        def test(c: StoredContact) -> bool:
            for v in _values(c, attr)[1]:
                try:
                    if low <= float(v) <= high:
                        return True
                except ValueError:
                    continue
            return False

        return test

    def form_condition(self, cond: dict[str, Any], attr: str, ope: str, location: str) -> Predicate:
        form_id, ref_ids = cond.get("form_id"), cond.get("form_ref_ids")
        errors = []
        if not isinstance(form_id, int) or isinstance(form_id, bool):
            errors.append(FieldError(f"{location}.form_id", "required integer", form_id))
        if not isinstance(ref_ids, list) or not all(isinstance(i, int) for i in ref_ids):
            errors.append(FieldError(f"{location}.form_ref_ids", "required integer array", ref_ids))
        if errors:
            raise unprocessable(errors)
        assert isinstance(form_id, int) and isinstance(ref_ids, list)
        form = self.store.forms_by_id.get(form_id)
        free = form is not None and form["type"] in FREE_FORM_TYPES

        def answers(c: StoredContact) -> list[dict[str, Any]]:
            # Observed on Qomon: custom answers may sit in either list; scan both.
            return [a for a in c.formdatas + c.customfields if a["form_id"] == form_id]

        if ope == "ext":  # observed: `ext` ignores form_ref_ids: "has any answer"
            return lambda c: bool(answers(c))
        if ope == "not_ext":
            return lambda c: not answers(c)
        negate = ope.startswith("not_")
        base = ope[4:] if negate else ope
        if base in ("gte", "lte", "range"):
            test = self._date_test(cond, base, location)

            def positive(c: StoredContact) -> bool:
                dates = [parse_iso(a["data"]) for a in answers(c)]
                return any(d is not None and test(d) for d in dates)

        elif base == "eql" and not free and cond.get("value") is None:
            wanted_refs = set(ref_ids)

            def positive(c: StoredContact) -> bool:
                return any(a["form_ref_id"] in wanted_refs for a in answers(c))

        else:
            value = _text(self._needs_value(cond, ope, location))
            folded = value.casefold()
            tests: dict[str, Callable[[str], bool]] = {
                "eql": lambda d: d.casefold() == folded,
                "contains": lambda d: folded in d.casefold(),
                "start_with": lambda d: d.casefold().startswith(folded),
            }
            if base not in tests:
                raise unprocessable(
                    [FieldError(f"{location}.ope", f"{ope} does not apply to forms", ope)]
                )
            check = tests[base]

            def positive(c: StoredContact) -> bool:
                return any(check(str(a["data"])) for a in answers(c))

        if negate:
            return lambda c: not positive(c)
        return positive


def parse_search(
    body: Any, store: ContactStore, now: datetime, *, per_page_required: bool = True
) -> SearchQuery:
    """Validate a ``/search`` (or ``/kpi``) body into a :class:`SearchQuery`; 422 if invalid."""
    data = require_object(body, "body", "data")
    search = require_object(data, "body.data", "advanced_search")
    where = "body.data.advanced_search"
    errors = []
    per_page = search.get("per_page")
    if per_page is None:
        if per_page_required:
            errors.append(FieldError(f"{where}.per_page", "required property is missing"))
    elif not isinstance(per_page, int) or isinstance(per_page, bool):
        errors.append(FieldError(f"{where}.per_page", "expected integer", per_page))
    elif not 1 <= per_page <= MAX_PER_PAGE:
        errors.append(
            FieldError(f"{where}.per_page", f"expected 1 <= per_page <= {MAX_PER_PAGE}", per_page)
        )
    page = search.get("page", 0)
    if not isinstance(page, int) or isinstance(page, bool) or page < 0:
        errors.append(FieldError(f"{where}.page", "expected integer >= 0", page))
    sort_attr = search.get("sort_attr")
    if sort_attr is not None and sort_attr not in SORT_ATTRS:
        errors.append(
            FieldError(f"{where}.sort_attr", f"expected one of {', '.join(SORT_ATTRS)}", sort_attr)
        )
    sort_asc = search.get("sort_asc", False)
    if not isinstance(sort_asc, bool):
        errors.append(FieldError(f"{where}.sort_asc", "expected boolean", sort_asc))
    # Qomon's schema puts include_interactions beside advanced_search, its examples
    # inside it; both are read.
    interactions = search.get("include_interactions", data.get("include_interactions", False))
    if "query" not in search:
        errors.append(FieldError(f"{where}.query", "required property is missing"))
    if errors:
        raise unprocessable(errors)
    predicate = _Compiler(store, now).tree(search["query"], f"{where}.query")
    return SearchQuery(predicate, page, per_page, sort_attr, sort_asc, bool(interactions))


def _sort_key(contact: StoredContact, attr: str) -> Any:
    if attr == "lastchange":
        return contact.lastchange
    if attr == "birthdate":
        return parse_iso(contact.fields.get("birthdate") or "")
    source = (contact.address or {}) if attr == "city" else contact.fields
    value = source.get(attr)
    return value.casefold() if isinstance(value, str) and value else None


def run_search(contacts: Mapping[int, StoredContact], query: SearchQuery) -> list[StoredContact]:
    """Every matching contact, in the requested order (ids ascending when no sort is asked).

    ``contacts`` is what the search index shows (the store itself when it does not lag).
    """
    found = sorted((c for c in contacts.values() if query.predicate(c)), key=lambda c: c.id)
    if query.sort_attr is None:
        return found
    attr = query.sort_attr
    keyed = [(c, _sort_key(c, attr)) for c in found]
    present = [pair for pair in keyed if pair[1] is not None]
    present.sort(key=lambda pair: pair[1], reverse=not query.sort_asc)
    # Contacts without the sort attribute come last, in id order, whatever the direction.
    return [c for c, _ in present] + [c for c, key in keyed if key is None]


def page_of(contacts: list[StoredContact], query: SearchQuery) -> list[StoredContact]:
    """One page: ``per_page`` contacts from offset ``page * per_page`` (no total, as on Qomon)."""
    per_page = query.per_page or MAX_PER_PAGE
    start = query.page * per_page
    return contacts[start : start + per_page]
