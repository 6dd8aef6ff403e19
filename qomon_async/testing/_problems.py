"""Errors as Qomon's newer server writes them: RFC 7807 problem+json with ``errors[]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class FieldError:
    """One entry of ``errors[]``: where, what, and the offending value."""

    location: str
    message: str
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"location": self.location, "message": self.message, "value": self.value}


@dataclass
class Problem(Exception):
    """An error answer; raised by the request handling, rendered by the app."""

    status: int
    detail: str
    errors: list[FieldError] = field(default_factory=list)

    def body(self, instance: str) -> dict[str, Any]:
        """The problem+json document for this error at path ``instance``."""
        document: dict[str, Any] = {
            "type": "about:blank",
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.errors:
            document["errors"] = [error.to_json() for error in self.errors]
        return document


def unprocessable(errors: list[FieldError]) -> Problem:
    """A 422 carrying field errors."""
    return Problem(422, "validation failed", errors)
