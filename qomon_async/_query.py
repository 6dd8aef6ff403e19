"""The search query tree of ``POST /search`` and ``POST /kpi``, built for the caller.

Qomon wants exactly two levels: a root ``$all``/``$at_least_one`` whose
items are groups, each group an ``$all``/``$at_least_one`` of ``$condition`` objects. A condition
directly under the root gets a 422. These types make the wrong shape unrepresentable::

    query = Query.all(Group.all(Condition("mail", "eql:strictdata", "j@example.org")))
    query = Query.where(Condition("address.city", "eql", "Lyon"))   # the same, shorter
    Query.everything()                                              # {"$all": []}: every contact
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any, Literal, NewType

__all__ = ["Condition", "CustomOperator", "Group", "Operator", "Query"]

Operator = Literal[
    "eql",
    "not_eql",
    "eql:strictdata",
    "not_eql:strictdata",
    "contains",
    "not_contains",
    "start_with",
    "not_start_with",
    "any_of",
    "none_of",
    "all_of",
    "ext",
    "not_ext",
    "range",
    "lte",
    "gte",
    "period",
    "today",
]
"""The operators Qomon's search documents. A misspelled one (``"equals"``) is a type error.

``eql`` is a case-insensitive token or prefix match; ``eql:strictdata`` is exact (use it for
``mail``); ``ext``/``not_ext`` test presence; ``range`` takes ``from_``/``to``; ``any_of``,
``none_of``, ``all_of`` are for lists (``tags.name``); ``period`` and ``today`` for dates."""

CustomOperator = NewType("CustomOperator", str)
"""The escape hatch for an operator Qomon adds after this release: ``Condition("attr",
CustomOperator("near"), ...)`` is sent as given. (Attributes are plain strings: any is allowed.)"""

_KEYS = {"all": "$all", "any": "$at_least_one"}


def _iso(value: dt.datetime | str) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


@dataclasses.dataclass(frozen=True)
class Condition:
    """One ``$condition``: ``attr`` (e.g. ``mail``, ``address.city``, ``CreatedAt``, ``form``),
    ``ope`` (an :data:`Operator`: ``eql``, ``eql:strictdata``, ``not_eql``, ``ext``,
    ``contains``, ``start_with``, ``gte``, ``lte``, ``range``, ``any_of``, ...; an operator this
    release does not list is written ``CustomOperator("...")``), and the operands it needs. Dates
    may be datetimes or Qomon date-math strings such as ``now-1d/d``. Any ``attr`` is allowed:
    Qomon adds attributes faster than a client can list them."""

    attr: str
    ope: Operator | CustomOperator
    value: str | dt.datetime | None = None
    from_: dt.datetime | str | None = None
    to: dt.datetime | str | None = None
    form_id: int | None = None
    form_ref_ids: Sequence[int] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The ``{"$condition": {...}}`` object."""
        body: dict[str, Any] = {"attr": self.attr, "ope": self.ope}
        if self.value is not None:
            body["value"] = _iso(self.value)
        if self.from_ is not None:
            body["from"] = _iso(self.from_)
        if self.to is not None:
            body["to"] = _iso(self.to)
        if self.form_id is not None:
            body["form_id"] = self.form_id
            body["form_ref_ids"] = list(self.form_ref_ids or [])
        return {"$condition": body}


@dataclasses.dataclass(frozen=True)
class Group:
    """The second level: conditions joined by AND (``Group.all``) or OR (``Group.any``)."""

    kind: Literal["all", "any"]
    conditions: tuple[Condition, ...]

    @classmethod
    def all(cls, *conditions: Condition) -> Group:
        """Every condition must hold."""
        return cls("all", conditions)

    @classmethod
    def any(cls, *conditions: Condition) -> Group:
        """At least one condition must hold."""
        return cls("any", conditions)

    def to_wire(self) -> dict[str, Any]:
        return {_KEYS[self.kind]: [c.to_wire() for c in self.conditions]}


@dataclasses.dataclass(frozen=True)
class Query:
    """The root: groups joined by AND (``Query.all``) or OR (``Query.any``)."""

    kind: Literal["all", "any"]
    groups: tuple[Group, ...]

    @classmethod
    def all(cls, *groups: Group) -> Query:
        """Every group must hold."""
        return cls("all", groups)

    @classmethod
    def any(cls, *groups: Group) -> Query:
        """At least one group must hold."""
        return cls("any", groups)

    @classmethod
    def where(cls, *conditions: Condition) -> Query:
        """Contacts matching every condition (one AND group under an AND root)."""
        return cls("all", (Group.all(*conditions),))

    @classmethod
    def everything(cls) -> Query:
        """Every contact of the space (an empty root, Qomon's "list all" idiom)."""
        return cls("all", ())

    def to_wire(self) -> dict[str, Any]:
        """The JSON object of ``advanced_search.query``."""
        return {_KEYS[self.kind]: [g.to_wire() for g in self.groups]}
