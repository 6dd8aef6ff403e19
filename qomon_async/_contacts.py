"""The single-contact endpoints of :class:`~qomon_async.QomonClient`: create (awaited to its
confirmed id), get, replace, update (read, merge, write), delete and upsert.

A mixin: each method checks its contact, sends through the client's ``_request`` (one call with
the retry policy) or, for a create, through its create protocol (:mod:`qomon_async._create`),
and decodes the answer.
"""

from __future__ import annotations

from typing import Protocol

from . import _bodies, _protocol
from ._bodies import ContactInput, UpsertInput
from ._budget import CALL_BUDGET, Budget
from ._config import RetryPolicy
from ._create import CreateProtocol, Request
from ._http import RawResponse
from ._models import ConfirmedContact
from ._types import ContactDict


class _Host(Protocol):
    """What :class:`ContactEndpoints` needs of the client it is mixed into."""

    @property
    def _request(self) -> Request: ...

    @property
    def _creates(self) -> CreateProtocol: ...

    def _strict(self, strict: bool | None) -> bool: ...

    def _budget(self, max_wait: float | None) -> Budget | None: ...


class ContactEndpoints:
    """``QomonClient``'s single-contact endpoints."""

    async def create_contact(
        self: _Host,
        contact: ContactInput,
        *,
        reconcile: bool = True,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        strict: bool | None = None,
        max_wait: float | None = None,
    ) -> ConfirmedContact:
        """Create one contact (``POST /contacts``, 5 tokens) and return it with its new id.

        Returns only once Qomon has confirmed the contact with its id. The create is sent again
        only when it surely did not land (no connection, 429, 503). After an ambiguous failure
        (timeout or connection lost after sending, 500/502/504, an answer without an id) the
        client looks the contact up by ``mail`` among contacts created since the attempt began:
        found, it is returned; surely absent, the create is sent again.

        Args:
            timeout: seconds for each HTTP request (default: the client's).
            max_wait: seconds the whole call may spend waiting before a request is sent (the
                rate limiter's queue and refill, a 429 pause, pauses between retries); default:
                the client's ``max_wait``; ``math.inf``: no limit.

        Cancelling the call while it waits for the rate limiter sends nothing and gives its
        tokens back.

        Raises:
            RateLimitTimeout: the wait would have exceeded ``max_wait``; nothing was sent.
            OutcomeUnknownError: the create may have been stored and the lookup could not tell
                (no ``mail`` to search by, or the search failed); or ``reconcile=False``.
            ContactValidationError: the contact is malformed, or has a key this library does
                not know (see ``strict``); nothing was sent.
            APIStatusError: Qomon refused it (``UnprocessableEntityError`` names the fields).
        """
        data = _bodies.contact_to_dict(contact, strict=self._strict(strict))
        token = CALL_BUDGET.set(self._budget(max_wait))
        try:
            outcome = await self._creates.create(
                data, reconcile=reconcile, retry=retry, timeout=timeout
            )
        finally:
            CALL_BUDGET.reset(token)
        return outcome.contact

    async def get_contact(
        self: _Host,
        contact_id: int,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_wait: float | None = None,
    ) -> ConfirmedContact:
        """Read one contact (``GET /contacts/{id}``). Raises ``NotFoundError`` if missing."""
        response = await _read(
            self._request, contact_id, retry=retry, timeout=timeout, max_wait=max_wait
        )
        return _protocol.decode_contact(response.status, response.body)

    async def replace_contact(
        self: _Host,
        contact_id: int,
        contact: ContactInput,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        strict: bool | None = None,
        max_wait: float | None = None,
    ) -> ConfirmedContact:
        """Write a contact whole (``PATCH /contacts/{id}``, 5 tokens).

        .. warning:: Qomon's PATCH is a **full replace**: every field left out is cleared,
           advanced-field answers included. To change a few fields, use
           :meth:`update_contact`, which reads, merges and writes back.
        """
        data = _bodies.contact_to_dict(contact, strict=self._strict(strict))
        response = await _patch(
            self._request,
            contact_id,
            _bodies.contact_body(data),
            retry=retry,
            timeout=timeout,
            max_wait=max_wait,
        )
        return _protocol.decode_contact(response.status, response.body)

    async def update_contact(
        self: _Host,
        contact_id: int,
        changes: ContactDict,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        strict: bool | None = None,
        max_wait: float | None = None,
    ) -> ConfirmedContact:
        """Change some fields of a contact and keep the others (read, merge, PATCH, re-read).

        ``changes`` uses Qomon's field names; ``address`` is merged key by key, lists are
        replaced whole. Read-only keys are stripped before writing. Costs 1 + 5 + 1 tokens.
        Not atomic: a write by someone else between the read and the PATCH is overwritten.
        ``max_wait`` bounds the waiting of the three requests together.
        """
        budget = self._budget(max_wait)
        response = await _read(
            self._request, contact_id, retry=retry, timeout=timeout, max_wait=budget
        )
        current = _protocol.decode_contact_dict(response.status, response.body)
        merged = _bodies.merge_for_update(
            current, _bodies.contact_to_dict(changes, strict=self._strict(strict))
        )
        await _patch(
            self._request,
            contact_id,
            _bodies.contact_body(merged),
            retry=retry,
            timeout=timeout,
            max_wait=budget,
        )
        # Qomon's PATCH answer may be a reduced contact: the confirmed state is a fresh read.
        response = await _read(
            self._request, contact_id, retry=retry, timeout=timeout, max_wait=budget
        )
        return _protocol.decode_contact(response.status, response.body)

    async def delete_contact(
        self: _Host,
        contact_id: int,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_wait: float | None = None,
    ) -> None:
        """Delete a contact (``DELETE /contacts/{id}``). Raises ``NotFoundError`` if missing."""
        await self._request(
            "DELETE",
            f"/contacts/{int(contact_id)}",
            idempotent=True,
            retry=retry,
            timeout=timeout,
            max_wait=max_wait,
        )

    async def upsert_contact(
        self: _Host,
        contact: UpsertInput,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        strict: bool | None = None,
        max_wait: float | None = None,
    ) -> None:
        """Queue a create-or-update (``POST /contacts/upsert``, 1 token; Qomon answers 202).

        Qomon applies it about 2 s later, matching by ``id``, then ``mail`` and names, then
        names, birthdate and address. It returns no id, and drops silently a record
        naming an unknown form or value: read back to be sure (see ``upsert_contacts``).
        """
        data = _bodies.upsert_to_dict(contact, strict=self._strict(strict))
        await self._request(
            "POST",
            "/contacts/upsert",
            body=_bodies.upsert_body(data),
            idempotent=False,
            retry=retry,
            timeout=timeout,
            max_wait=max_wait,
        )


async def _read(
    request: Request,
    contact_id: int,
    *,
    retry: RetryPolicy | None,
    timeout: float | None,
    max_wait: float | Budget | None,
) -> RawResponse:
    """``GET /contacts/{id}`` (idempotent: retried as the policy says)."""
    return await request(
        "GET",
        f"/contacts/{int(contact_id)}",
        idempotent=True,
        retry=retry,
        timeout=timeout,
        max_wait=max_wait,
    )


async def _patch(
    request: Request,
    contact_id: int,
    body: bytes,
    *,
    retry: RetryPolicy | None,
    timeout: float | None,
    max_wait: float | Budget | None,
) -> RawResponse:
    """``PATCH /contacts/{id}`` with ``body`` (a full replace; not idempotent)."""
    return await request(
        "PATCH",
        f"/contacts/{int(contact_id)}",
        body=body,
        idempotent=False,
        retry=retry,
        timeout=timeout,
        max_wait=max_wait,
    )
