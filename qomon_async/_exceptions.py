"""The exceptions of qomon_async. Every error a call can raise is a :class:`QomonError`;
no aiohttp or msgspec exception reaches a caller.

::

    QomonError
    ├── APIConnectionError        no response: the request failed in transit
    │   └── APITimeoutError       ...because a timeout expired
    ├── APIStatusError            a response with an error status (.status_code, .problem)
    │   ├── UnexpectedRedirectError   3xx: not followed, never a confirmation (.location)
    │   ├── BadRequestError           400
    │   ├── AuthenticationError       401: bad or missing API key (fatal to a bulk run)
    │   ├── PermissionDeniedError     403: the key may not do this (fatal to a bulk run)
    │   ├── NotFoundError             404
    │   ├── UnprocessableEntityError  422: validation failed (.problem.errors names the fields)
    │   ├── RateLimitError            429 (.retry_after, seconds)
    │   └── ServerError               5xx
    ├── RateLimitTimeout          the bucket could not pay within max_wait (nothing was sent)
    ├── AmbiguousMatchError       ensure_contact found several contacts (match_policy="error")
    ├── OutcomeUnknownError       a create was sent and its fate could not be established
    ├── ContactValidationError    a contact given to the client is malformed (nothing was sent)
    ├── DuplicateInputError       a bulk input item repeats an earlier one (not sent twice)
    └── ResponseDecodeError       a 2xx whose body is not what the call promises, or is
                                  larger than the client's max_response_bytes

The API key never appears in a message, a repr or an attribute of these exceptions.
"""

from __future__ import annotations

import datetime as dt

from ._models import Problem, ProblemError

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AmbiguousMatchError",
    "AuthenticationError",
    "BadRequestError",
    "ContactValidationError",
    "DuplicateInputError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "QomonError",
    "RateLimitError",
    "RateLimitTimeout",
    "ResponseDecodeError",
    "ServerError",
    "UnexpectedRedirectError",
    "UnprocessableEntityError",
]

_MAX_TEXT = 500


class QomonError(Exception):
    """Base of every error raised by qomon_async."""


class APIConnectionError(QomonError):
    """The request got no response: connection refused or reset, DNS failure, TLS error.

    ``request_sent`` tells whether the request may have reached the server (a connection was
    established and the request written): for a non-idempotent create, that is the difference
    between "safe to retry" and "outcome unknown".
    """

    def __init__(
        self, message: str, *, method: str = "", url: str = "", request_sent: bool = False
    ):
        super().__init__(message)
        self.method = method
        self.url = url
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """A timeout expired before the response was complete."""


class APIStatusError(QomonError):
    """Qomon answered with an error status.

    Attributes: ``status_code``; ``problem``, the parsed error body (``title``, ``detail``,
    ``errors[location, message, value]``), or ``None`` when the body was not JSON; ``text``, the
    raw body (truncated to 500 characters); ``method`` and ``url`` of the request.
    """

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        problem: Problem | None = None,
        text: str = "",
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.problem = problem
        self.text = text[:_MAX_TEXT]
        self.method = method
        self.url = url

    @property
    def errors(self) -> list[ProblemError]:
        """The field-level problems of the body (``errors[]``), if any."""
        if self.problem is None or not self.problem.errors:
            return []
        return list(self.problem.errors)


class UnexpectedRedirectError(APIStatusError):
    """3xx: something answered with a redirect, which Qomon's API never does.

    The redirect is not followed (the key stays on the host it was meant for) and is never taken
    as a confirmation. ``location`` is where it pointed (``""`` if nowhere). Usually a wrong
    ``base_url`` or a proxy in front of Qomon. Not retried; for a create, not reconciled: the
    request was answered by something other than Qomon's API, which stored nothing.
    """

    def __init__(self, message: str, *, location: str = "", **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.location = location


class BadRequestError(APIStatusError):
    """400: the request was malformed."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this (plan, space settings)."""


class NotFoundError(APIStatusError):
    """404: no such contact, form or route."""


class UnprocessableEntityError(APIStatusError):
    """422: the body failed validation; ``errors`` names the fields."""


class RateLimitError(APIStatusError):
    """429: the space's token bucket could not pay. ``retry_after`` is in seconds (or None)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx: Qomon failed. For a create, the contact may or may not exist (see create_contact).

    ``retry_after`` (seconds) is set when a 503 said when to come back.
    """

    retry_after: float | None = None


class RateLimitTimeout(QomonError):
    """The call would have waited longer than its ``max_wait`` for the rate limiter.

    Raised before anything is sent: the request never left, its tokens were given back, and the
    call may be made again later. ``predicted_wait`` is the wait the limiter foresaw (seconds,
    ``None`` when the limit ran out while waiting); ``max_wait`` is the limit that was exceeded.
    """

    def __init__(
        self, message: str, *, predicted_wait: float | None = None, max_wait: float | None = None
    ) -> None:
        super().__init__(message)
        self.predicted_wait = predicted_wait
        self.max_wait = max_wait


class AmbiguousMatchError(QomonError):
    """``ensure_contact(..., match_policy="error")`` found several contacts for one mail.

    ``ids`` are theirs, oldest first; nothing was created or changed. The message names the ids
    only, never the mail.
    """

    def __init__(self, message: str, *, ids: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.ids = ids


class OutcomeUnknownError(QomonError):
    """A create was sent and whether Qomon stored the contact could not be established.

    ``cause`` is the failure of the attempt (timeout, connection lost, 5xx); ``attempt_started_at``
    is when the ambiguous attempt began (UTC); ``reconciliation`` says what was tried to find out
    (e.g. "no mail to search by", "search failed: ..."). Look the contact up before re-sending.
    """

    def __init__(
        self,
        message: str,
        *,
        cause: BaseException | None = None,
        attempt_started_at: dt.datetime | None = None,
        reconciliation: str = "",
    ) -> None:
        super().__init__(message)
        self.cause = cause
        self.attempt_started_at = attempt_started_at
        self.reconciliation = reconciliation


class ContactValidationError(QomonError, ValueError):
    """A contact given to the client is malformed; nothing was sent.

    ``location`` names the field (``mail``, ``address.postalcode``...); ``value`` is the input.
    """

    def __init__(self, message: str, *, location: str = "", value: object = None) -> None:
        super().__init__(message)
        self.location = location
        self.value = value


class DuplicateInputError(QomonError):
    """A bulk input item has the same mail and names as an earlier item (``first_index``); it was
    not sent, so that nobody is created twice."""

    def __init__(self, message: str, *, first_index: int) -> None:
        super().__init__(message)
        self.first_index = first_index


class ResponseDecodeError(QomonError):
    """A 2xx response whose body could not be decoded, or lacks what the call promises (an id).

    Also raised when a 2xx answer is larger than the client's ``max_response_bytes``
    (decompressed), and for an id out of the signed 64-bit range. On a create it is ambiguous
    (Qomon answered success, so it may have stored the contact): the create is reconciled.
    ``text`` is the start of the body (the API key cut out).
    """

    def __init__(self, message: str, *, status_code: int = 0, text: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.text = text[:_MAX_TEXT]


class Aborted(Exception):
    """Internal, never raised to callers: a request was not sent because its bulk run was
    stopped (``reason``: the fatal error, or the run's closing)."""

    def __init__(self, reason: BaseException) -> None:
        super().__init__(str(reason))
        self.reason = reason


#: Status code → exception class, for :func:`qomon_async._protocol.status_error`.
STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}
