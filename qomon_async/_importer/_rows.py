"""Flat rows to contacts from Python: the very rules of ``qomon-async import``.

An ETL job that has rows as dicts (a CSV's ``csv.DictReader``, a database cursor, a dataframe's
records) gets the contact the command line would send for the same row::

    contact = qomon_async.contact_from_row(
        {"firstname": "Jeanne", "mail": "jeanne@example.org", "address.city": "Lyon",
         "tags": "bénévole;phoning"}
    )
    # {"firstname": "Jeanne", "mail": "jeanne@example.org", "address": {"city": "Lyon"},
    #  "tags": [{"name": "bénévole"}, {"name": "phoning"}]}

With a TOML mapping file (renamed columns, constants, value maps, advanced fields by form
label), build a :class:`RowMapper` once; form labels are resolved through the API::

    async with QomonClient() as client:
        mapper = await RowMapper.load("mapping.toml", client=client)
        async for result in client.create_contacts(mapper(row) for row in rows):
            ...
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from .._exceptions import ContactValidationError
from .._types import ContactDict, UpsertDict
from ._builder import ContactBuilder
from ._fields import Route
from ._forms import FormCatalog
from ._mapping import ImportMapping, load_mapping
from ._reader import SourceRow, _flatten

if TYPE_CHECKING:
    from .._client import QomonClient

__all__ = ["RowMapper", "contact_from_row"]


class RowMapper:
    """Builds contact dicts from flat rows, by the rules of ``qomon-async import``.

    Columns are contact fields (``firstname``, ``mail``, ``address.city``, ...) unless the
    mapping renames, ignores or fixes them; ``tags`` is split on ``;``; empty cells are left
    out; dates take ``YYYY-MM-DD``, ``DD/MM/YYYY`` or RFC 3339; nested dicts (``{"address":
    {"city": ...}}``) are read as their dotted paths.

    Args:
        mapping: The mapping (see :func:`RowMapper.load` for a file), or ``None``.
        route: ``"create"`` (the contact of ``create_contact(s)``) or ``"upsert"`` (the data of
            ``upsert_contact(s)``: advanced fields in the upsert's shape, ``id`` allowed).
        forms: The space's forms by type (``{"consent": await client.list_forms("consent")}``),
            needed when the mapping has advanced columns; :func:`RowMapper.load` fetches them.

    Raises:
        MappingError: An advanced column names a form that does not exist or is ambiguous.
        ValueError: The mapping has advanced columns and ``forms`` is ``None``.
    """

    def __init__(
        self,
        mapping: ImportMapping | None = None,
        *,
        route: Route = "create",
        forms: Mapping[str, Iterable[object] | None] | FormCatalog | None = None,
        today: dt.date | None = None,
    ) -> None:
        catalog = forms if isinstance(forms, FormCatalog) or forms is None else FormCatalog(forms)
        self._builder = ContactBuilder(mapping, route=route, forms=catalog, today=today)
        self.route: Route = route

    @classmethod
    async def load(
        cls,
        mapping: str | Path | None = None,
        *,
        client: QomonClient | None = None,
        route: Route = "create",
    ) -> RowMapper:
        """A mapper from a TOML mapping file; the forms its advanced columns name are read
        through ``client`` (``GET /v1/forms/type/{type}``, once per type).

        Raises:
            MappingError: The file is not a valid mapping, or names an unknown form.
            ValueError: The mapping has advanced columns and no ``client`` was given.
            QomonError: Reading the forms failed.
        """
        parsed = load_mapping(mapping) if mapping is not None else ImportMapping()
        forms: dict[str, Iterable[object] | None] | None = None
        if parsed.form_types:
            if client is None:
                raise ValueError(
                    "the mapping has advanced columns: pass client= to read the space's forms"
                )
            forms = {t: await client.list_forms(t) for t in parsed.form_types}
        return cls(parsed, route=route, forms=forms)

    def __call__(self, row: Mapping[str, object], *, number: int = 1) -> ContactDict:
        """The contact of one row (``row`` numbers the row in error messages).

        Raises:
            ContactValidationError: The row has problems (every one listed in the message;
                ``location`` is the first problem's column).
        """
        values = _flatten(dict(row)) if any(isinstance(v, dict) for v in row.values()) else row
        built = self._builder.build(SourceRow(number, number, dict(values)))
        if built.contact is None:
            first = built.errors[0] if built.errors else None
            raise ContactValidationError(
                f"row {number}: {built.error_message}",
                location=(first.column or "") if first else "",
                value=first.value if first else None,
            )
        return cast(ContactDict, built.contact)

    def upsert(self, row: Mapping[str, object], *, number: int = 1) -> UpsertDict:
        """:meth:`__call__` typed for ``upsert_contact(s)`` (build the mapper with
        ``route="upsert"``)."""
        return cast(UpsertDict, self(row, number=number))

    def __repr__(self) -> str:
        return f"RowMapper(route={self.route!r}, mapping={self._builder.mapping.source!r})"


def contact_from_row(
    row: Mapping[str, object], mapping: RowMapper | str | Path | None = None
) -> ContactDict:
    """The contact ``qomon-async import`` would send for ``row`` (see :class:`RowMapper`).

    Args:
        row: Column -> cell (text, or JSON values).
        mapping: A :class:`RowMapper`, a TOML mapping file's path (read at each call: build a
            :class:`RowMapper` once for many rows), or ``None`` (columns named as fields).

    Raises:
        ContactValidationError: The row has problems, each named by column.
        ValueError: The mapping has advanced columns (use ``await RowMapper.load(path,
            client=client)``, which reads the forms).
    """
    if not isinstance(mapping, RowMapper):
        parsed = load_mapping(mapping) if mapping is not None else ImportMapping()
        if parsed.form_types:
            raise ValueError(
                "the mapping has advanced columns: use `await RowMapper.load(path,"
                " client=client)`, which reads the space's forms"
            )
        mapping = RowMapper(parsed)
    return mapping(row)
