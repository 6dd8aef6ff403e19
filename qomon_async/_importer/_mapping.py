"""The mapping file: how the input's columns become Qomon contact fields.

Without a mapping file, columns are named as Qomon's contact fields (``firstname``, ``mail``,
``address.city``, ``tags``, ...). A TOML mapping file adapts any export::

    # Columns to leave out, and whether any other unknown column is left out too.
    ignore = ["Notes internes", "Date de saisie"]
    ignore_unknown = false

    [columns]                       # input column = contact field (or false: ignore it)
    "E-mail" = "mail"
    "Prénom" = "firstname"
    "Code postal" = "address.postalcode"
    "Commentaire" = false

    [constants]                     # the same value for every row (a field path = a value)
    tags = "import-2026"            # tags are added to the row's own tags
    "address.country" = "France"    # other fields: used where the row leaves the field empty

    [values.gender]                 # replace cell texts before conversion, per field
    Homme = "M"
    Femme = "F"

    [advanced."Consentement email"] # an input column holding an advanced field (a form answer)
    form_type = "consent"           # consent, level_of_support, presence_status,
                                    # custom_fields, survey or tasks
    form = "Consentement email"     # the form's label (or: id = 123)
    values = { "oui" = "consent_email", "non" = "no_consent_email" }
    split = ";"                     # optional: several answers in one cell (checkbox forms)

In an advanced column, the cell's text (after ``values``) is the value or the label of one of
the form's options; for text, numeric and date forms it is the answer itself. A ``values``
entry mapped to ``""`` leaves the form unanswered for that cell text.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._convert import ConversionError, ValueMap, convert_field
from ._errors import MappingError
from ._fields import CONTACT_FIELDS, FORM_TYPES, canonical_field

__all__ = ["AdvancedColumn", "ImportMapping", "load_mapping", "parse_mapping"]

_TOP_KEYS = frozenset({"ignore", "ignore_unknown", "columns", "constants", "values", "advanced"})
_ADVANCED_KEYS = frozenset({"form_type", "form", "id", "values", "split"})


@dataclasses.dataclass(frozen=True)
class AdvancedColumn:
    """One input column mapped to a form (an advanced field).

    Attributes:
        column: The input column's name.
        form_type: One of :data:`~qomon_async._importer.FORM_TYPES`.
        form_label: The form's label, as shown in Qomon, or ``None`` when ``form_id`` is given.
        form_id: The form's id, or ``None`` when ``form_label`` is given.
        values: Replacements of cell texts, applied before matching the form's options.
        separator: Splits a cell into several answers (checkbox forms); ``None``: one answer.
    """

    column: str
    form_type: str
    form_label: str | None = None
    form_id: int | None = None
    values: ValueMap = dataclasses.field(default_factory=lambda: ValueMap({}))
    separator: str | None = None

    @property
    def form_name(self) -> str:
        """How the form is named in messages: its label, quoted, or ``id 123``."""
        return f'"{self.form_label}"' if self.form_label is not None else f"id {self.form_id}"


@dataclasses.dataclass(frozen=True)
class ImportMapping:
    """A parsed mapping file (see the module docstring for the TOML format).

    Build it with :func:`load_mapping` or :func:`parse_mapping`; ``ImportMapping()`` is the
    default mapping (columns named as contact fields).

    Attributes:
        columns: Input column -> canonical contact field path (``address.city``).
        ignored: Input columns left out.
        ignore_unknown: Leave out any column that is neither a field nor mapped, instead of
            reporting it.
        constants: Field path -> converted value, set on every row.
        values: Field path -> replacements of cell texts for that field.
        advanced: Input column -> its form.
        source: Where the mapping came from (a path), for messages.
    """

    columns: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ignored: frozenset[str] = frozenset()
    ignore_unknown: bool = False
    constants: Mapping[str, object] = dataclasses.field(default_factory=dict)
    values: Mapping[str, ValueMap] = dataclasses.field(default_factory=dict)
    advanced: Mapping[str, AdvancedColumn] = dataclasses.field(default_factory=dict)
    source: str = "<default mapping>"

    @property
    def form_types(self) -> tuple[str, ...]:
        """The form types the advanced columns use, in :data:`FORM_TYPES` order: fetch these
        with ``GET /v1/forms/type/{type}`` before building contacts."""
        used = {a.form_type for a in self.advanced.values()}
        return tuple(t for t in FORM_TYPES if t in used)


def load_mapping(path: str | Path) -> ImportMapping:
    """Read and check a TOML mapping file.

    Raises:
        MappingError: The file cannot be read, is not TOML, or names unknown fields, unknown
            form types or invalid constants (every problem is listed).
    """
    source = str(path)
    # Imported here, not at the top: on Python 3.10 the parser is tomli, from the `cli` extra,
    # and the rest of the command line (fake-server, imports without a mapping) works without it.
    if sys.version_info >= (3, 11):
        import tomllib  # noqa: PLC0415
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415
        except ImportError:
            raise MappingError(
                source, ["reading TOML on Python 3.10 needs tomli: pip install 'qomon-async[cli]'"]
            ) from None
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except OSError as exc:
        raise MappingError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(source, [f"not valid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise MappingError(source, ["not valid UTF-8 (TOML files are UTF-8)"]) from None
    return parse_mapping(data, source=source)


def parse_mapping(data: Mapping[str, Any], *, source: str = "<mapping>") -> ImportMapping:
    """Check a mapping given as already-parsed TOML data (a dict).

    Raises:
        MappingError: Every problem found, at once.
    """
    problems: list[str] = []
    for key in data:
        if key not in _TOP_KEYS:
            problems.append(f"unknown key {key!r} (known: {', '.join(sorted(_TOP_KEYS))})")

    ignored: set[str] = set(_string_list(data.get("ignore", []), "ignore", problems))
    ignore_unknown = data.get("ignore_unknown", False)
    if not isinstance(ignore_unknown, bool):
        problems.append("ignore_unknown must be true or false")
        ignore_unknown = False

    columns: dict[str, str] = {}
    for column, target in _table(data, "columns", problems).items():
        if target is False:
            ignored.add(column)
        elif not isinstance(target, str):
            problems.append(f'[columns] "{column}": expected a field name or false')
        elif (field := canonical_field(target)) is None:
            problems.append(f'[columns] "{column}": {target!r} is not a contact field')
        else:
            columns[column] = field

    values: dict[str, ValueMap] = {}
    for target, table in _table(data, "values", problems).items():
        field = canonical_field(target)
        if field is None:
            problems.append(f"[values.{target}]: {target!r} is not a contact field")
        elif isinstance(table, dict) and all(isinstance(v, str) for v in table.values()):
            values[field] = ValueMap(table)
        else:
            problems.append(f"[values.{target}]: expected a table of texts")

    constants: dict[str, object] = {}
    for target, raw in _table(data, "constants", problems).items():
        field = canonical_field(target)
        if field is None:
            problems.append(f"[constants] {target!r} is not a contact field")
            continue
        try:
            converted = convert_field(CONTACT_FIELDS[field], raw, values.get(field))
        except ConversionError as exc:
            problems.append(f"[constants] {target!r}: {exc}: {raw!r}")
            continue
        if converted is not None:
            constants[field] = converted

    advanced: dict[str, AdvancedColumn] = {}
    for column, spec in _table(data, "advanced", problems).items():
        parsed = _advanced_column(column, spec, problems)
        if parsed is not None:
            advanced[column] = parsed
        if column in columns or column in ignored:
            problems.append(f'column "{column}" is both in [advanced] and in [columns]/ignore')

    if problems:
        raise MappingError(source, problems)
    return ImportMapping(
        columns=columns,
        ignored=frozenset(ignored),
        ignore_unknown=ignore_unknown,
        constants=constants,
        values=values,
        advanced=advanced,
        source=source,
    )


def _table(data: Mapping[str, Any], key: str, problems: list[str]) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        problems.append(f"[{key}] must be a table")
        return {}
    return table


def _string_list(value: object, key: str, problems: list[str]) -> list[str]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    problems.append(f"{key} must be a list of column names")
    return []


def _advanced_column(column: str, spec: object, problems: list[str]) -> AdvancedColumn | None:
    where = f'[advanced."{column}"]'
    if not isinstance(spec, dict):
        problems.append(f"{where} must be a table")
        return None
    before = len(problems)
    for key in spec:
        if key not in _ADVANCED_KEYS:
            problems.append(f"{where}: unknown key {key!r}")
    form_type = spec.get("form_type")
    if form_type not in FORM_TYPES:
        problems.append(f"{where}: form_type must be one of {', '.join(FORM_TYPES)}")
    label, form_id = spec.get("form"), spec.get("id")
    if (label is None) == (form_id is None):
        problems.append(f"{where}: give the form's label (form = ...) or its id (id = ...)")
    if label is not None and not (isinstance(label, str) and label.strip()):
        problems.append(f"{where}: form must be a non-empty text")
    if form_id is not None and (isinstance(form_id, bool) or not isinstance(form_id, int)):
        problems.append(f"{where}: id must be a whole number")
    table = spec.get("values", {})
    if not (isinstance(table, dict) and all(isinstance(v, str) for v in table.values())):
        problems.append(f"{where}: values must be a table of texts")
        table = {}
    separator = spec.get("split")
    if separator is not None and not (isinstance(separator, str) and separator):
        problems.append(f"{where}: split must be a non-empty text")
    if len(problems) > before:
        return None
    return AdvancedColumn(
        column=column,
        form_type=str(form_type),
        form_label=label,
        form_id=form_id,
        values=ValueMap(table),
        separator=separator,
    )
