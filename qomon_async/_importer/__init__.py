"""The import job's building blocks (``qomon-async import FILE``, ``qomon-async demo``).

Private to the command line; no I/O beyond local files, no dependency on the client. The
pipeline, as the command line wires it::

    mapping = load_mapping("mapping.toml")                # or ImportMapping()
    forms = {t: [...fetched forms as dicts...] for t in mapping.form_types}
    builder = ContactBuilder(mapping, route="create", forms=FormCatalog(forms))
    check_encoding(path)                                  # fail before sending anything
    with open_input(path) as reader:
        problems = builder.check_columns(reader.columns or ())
        for row in reader:                                # streams
            built = builder.build(row)                    # contact dict, or row errors
            ...

plus :class:`Journal` (resume without duplicates), :class:`ReportWriter` (per-row report),
:class:`ProgressRenderer` (bar and summary), the exit codes, and the demo's data.
"""

from __future__ import annotations

from ._builder import BuiltRow, ContactBuilder, validate_rows
from ._convert import ConversionError, format_rfc3339, parse_date
from ._demo import (
    DEMO_BAD_ROWS,
    DEMO_COLUMNS,
    DEMO_MAPPING_TOML,
    demo_rows,
    write_demo_csv,
    write_demo_mapping,
)
from ._errors import (
    ImporterError,
    InputFileError,
    JournalError,
    JournalMismatchError,
    MappingError,
    ReportError,
    RowError,
    format_row_error,
)
from ._exit import EXIT_FATAL, EXIT_OK, EXIT_ROW_FAILURES, EXIT_USAGE, ExitCode, exit_code_for
from ._fields import CONTACT_FIELDS, FIELD_ALIASES, FORM_TYPES, Route
from ._forms import Form, FormAnswerer, FormCatalog, RefValue
from ._journal import (
    InputFingerprint,
    Journal,
    JournalRecord,
    ResumeAction,
    ResumeDecision,
    RowState,
    fingerprint_input,
)
from ._mapping import AdvancedColumn, ImportMapping, load_mapping, parse_mapping
from ._progress import (
    ProgressRenderer,
    ProgressSnapshot,
    RateMeter,
    format_duration,
    format_summary,
)
from ._reader import (
    InputFormat,
    RowReader,
    SourceRow,
    check_encoding,
    detect_format,
    open_input,
    sniff_delimiter,
)
from ._report import REPORT_COLUMNS, ReportRecord, ReportWriter, neutralise_cell

__all__ = [
    "CONTACT_FIELDS",
    "DEMO_BAD_ROWS",
    "DEMO_COLUMNS",
    "DEMO_MAPPING_TOML",
    "EXIT_FATAL",
    "EXIT_OK",
    "EXIT_ROW_FAILURES",
    "EXIT_USAGE",
    "FIELD_ALIASES",
    "FORM_TYPES",
    "REPORT_COLUMNS",
    "AdvancedColumn",
    "BuiltRow",
    "ContactBuilder",
    "ConversionError",
    "ExitCode",
    "Form",
    "FormAnswerer",
    "FormCatalog",
    "ImportMapping",
    "ImporterError",
    "InputFileError",
    "InputFingerprint",
    "InputFormat",
    "Journal",
    "JournalError",
    "JournalMismatchError",
    "JournalRecord",
    "MappingError",
    "ProgressRenderer",
    "ProgressSnapshot",
    "RateMeter",
    "RefValue",
    "ReportError",
    "ReportRecord",
    "ReportWriter",
    "ResumeAction",
    "ResumeDecision",
    "Route",
    "RowError",
    "RowReader",
    "RowState",
    "SourceRow",
    "check_encoding",
    "demo_rows",
    "detect_format",
    "exit_code_for",
    "fingerprint_input",
    "format_duration",
    "format_rfc3339",
    "format_row_error",
    "format_summary",
    "load_mapping",
    "neutralise_cell",
    "open_input",
    "parse_date",
    "parse_mapping",
    "sniff_delimiter",
    "validate_rows",
    "write_demo_csv",
    "write_demo_mapping",
]
