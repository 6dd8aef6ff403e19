"""The public surface is pinned: a name added or removed here is a decision, not an accident."""

from __future__ import annotations

from importlib.metadata import version

import qomon_async
import qomon_async.testing

PUBLIC = {
    "APIConnectionError", "APIStatusError", "APITimeoutError", "Action", "ActionSummary",
    "Address", "AddressDict", "AddressWrite", "AmbiguousMatchError", "AuthenticationError", "BadRequestError", "BulkProgress", "BulkRun", "ClientStats", "Condition", "ConfirmedContact", "Contact", "ContactDict", "ContactValidationError", "ContactWatch", "ContactWrite", "CreateResult", "CreateStatus", "CustomOperator", "DEFAULT_BASE_URL", "DuplicateInputError", "Form", "FormData", "FormDataWrite", "FormType", "FormValue", "Group", "InDoubtStore", "MemoryInDoubtStore", "NotFoundError", "Note", "NoteWrite", "Operator", "OutcomeUnknownError", "PermissionDeniedError", "Problem", "ProblemError", "QomonClient", "QomonError", "Query", "RateLimit", "RateLimitError", "RateLimitTimeout", "RefValue", "ResponseDecodeError", "RetryPolicy", "RowMapper", "ServerError", "Tag", "TagWrite", "US_BASE_URL", "UnexpectedRedirectError", "UnprocessableEntityError", "UpsertContact", "UpsertDict", "WatchCursor", "__version__", "contact_from_row",
}  # fmt: skip


def test_all_is_the_public_surface() -> None:
    assert set(qomon_async.__all__) == PUBLIC
    assert len(qomon_async.__all__) == len(set(qomon_async.__all__))
    for name in qomon_async.__all__:
        assert hasattr(qomon_async, name), name
    public_attrs = {n for n in dir(qomon_async) if n[0] not in "_@"} - {"testing", "redis"}
    assert public_attrs <= PUBLIC | {"annotations"}


def test_every_error_is_a_qomon_error() -> None:
    for name in qomon_async.__all__:
        obj = getattr(qomon_async, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, qomon_async.QomonError), name


def test_testing_exports() -> None:
    for name in qomon_async.testing.__all__:
        assert hasattr(qomon_async.testing, name)
    assert "FakeQomon" in qomon_async.testing.__all__


def test_redis_exports() -> None:
    import qomon_async.redis  # noqa: PLC0415 - the optional extra

    assert qomon_async.redis.__all__ == ["RedisBucket", "RedisBucketError", "RedisInDoubtStore"]
    assert issubclass(qomon_async.redis.RedisBucketError, qomon_async.QomonError)


def test_version_comes_from_the_metadata() -> None:
    assert qomon_async.__version__ == version("qomon-async")
