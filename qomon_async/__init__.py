"""qomon_async: the async Python client for the Qomon API.

::

    from qomon_async import QomonClient

    async with QomonClient() as client:          # key from $QOMON_API_KEY
        contact = await client.create_contact({"firstname": "Jeanne", "mail": "j@example.org"})
        async for result in client.create_contacts(rows, concurrency=8):
            print(result.index, result.status, result.contact, result.error)

The emulator for tests lives in :mod:`qomon_async.testing`.
"""

from ._bulk import BulkProgress, BulkRun, CreateResult, CreateStatus
from ._client import ClientStats, QomonClient
from ._config import DEFAULT_BASE_URL, US_BASE_URL, RateLimit, RetryPolicy, __version__
from ._exceptions import (
    AmbiguousMatchError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ContactValidationError,
    DuplicateInputError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    QomonError,
    RateLimitError,
    RateLimitTimeout,
    ResponseDecodeError,
    ServerError,
    UnexpectedRedirectError,
    UnprocessableEntityError,
)
from ._importer._rows import RowMapper, contact_from_row
from ._indoubt import InDoubtStore, MemoryInDoubtStore
from ._models import (
    Action,
    ActionSummary,
    Address,
    ConfirmedContact,
    Contact,
    Form,
    FormData,
    FormType,
    Note,
    Problem,
    ProblemError,
    RefValue,
    Tag,
)
from ._query import Condition, CustomOperator, Group, Operator, Query
from ._types import AddressDict, ContactDict, UpsertDict
from ._watch import ContactWatch, WatchCursor
from ._writes import (
    AddressWrite,
    ContactWrite,
    FormDataWrite,
    FormValue,
    NoteWrite,
    TagWrite,
    UpsertContact,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "US_BASE_URL",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "Action",
    "ActionSummary",
    "Address",
    "AddressDict",
    "AddressWrite",
    "AmbiguousMatchError",
    "AuthenticationError",
    "BadRequestError",
    "BulkProgress",
    "BulkRun",
    "ClientStats",
    "Condition",
    "ConfirmedContact",
    "Contact",
    "ContactDict",
    "ContactValidationError",
    "ContactWatch",
    "ContactWrite",
    "CreateResult",
    "CreateStatus",
    "CustomOperator",
    "DuplicateInputError",
    "Form",
    "FormData",
    "FormDataWrite",
    "FormType",
    "FormValue",
    "Group",
    "InDoubtStore",
    "MemoryInDoubtStore",
    "NotFoundError",
    "Note",
    "NoteWrite",
    "Operator",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "Problem",
    "ProblemError",
    "QomonClient",
    "QomonError",
    "Query",
    "RateLimit",
    "RateLimitError",
    "RateLimitTimeout",
    "RefValue",
    "ResponseDecodeError",
    "RetryPolicy",
    "RowMapper",
    "ServerError",
    "Tag",
    "TagWrite",
    "UnexpectedRedirectError",
    "UnprocessableEntityError",
    "UpsertContact",
    "UpsertDict",
    "WatchCursor",
    "__version__",
    "contact_from_row",
]
