"""The read-only endpoints of :class:`~qomon_async.QomonClient`: search, count, forms, actions.

A mixin: each method sends through the client's ``_request`` (one call with the retry policy)
and decodes the answer; nothing here writes to Qomon.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Protocol

from . import _bodies, _protocol
from ._config import MAX_PER_PAGE, RetryPolicy
from ._create import Request
from ._exceptions import NotFoundError
from ._models import ActionSummary, Contact, Form, FormType
from ._query import Query

logger = logging.getLogger("qomon_async")


class _Host(Protocol):
    """What :class:`ReadEndpoints` needs of the client it is mixed into."""

    @property
    def _request(self) -> Request: ...


class ReadEndpoints:
    """``QomonClient``'s read-only endpoints (contacts searched and counted, forms, actions)."""

    async def search_contacts(
        self: _Host,
        query: Query | None = None,
        *,
        per_page: int = MAX_PER_PAGE,
        sort_attr: str | None = None,
        sort_asc: bool | None = None,
        include_interactions: bool = False,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_wait: float | None = None,
    ) -> AsyncIterator[Contact]:
        """Every contact matching ``query`` (all contacts by default), page after page.

        Pages are offsets into a live result set: a contact edited during the sweep may move,
        so contacts are de-duplicated by id (and one may be missed; sort by ``lastchange``
        ascending for incremental syncs). Stops on the first short page. 1 token per page.
        ``max_wait`` bounds the waiting of each page's request. To follow changes as they
        happen, see :meth:`watch_contacts`.
        """
        query = query or Query.everything()
        seen: set[int] = set()
        page = 0
        while True:
            body = _bodies.search_body(
                query,
                page=page,
                per_page=per_page,
                sort_attr=sort_attr,
                sort_asc=sort_asc,
                include_interactions=include_interactions,
            )
            response = await self._request(
                "POST",
                "/search",
                body=body,
                idempotent=True,
                retry=retry,
                timeout=timeout,
                max_wait=max_wait,
            )
            contacts = _protocol.decode_contacts_page(response.status, response.body)
            for contact in contacts:
                if contact.id is not None:
                    if contact.id in seen:
                        continue
                    seen.add(contact.id)
                yield contact
            if len(contacts) < per_page:
                return
            page += 1

    async def count_contacts(
        self: _Host,
        query: Query | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_wait: float | None = None,
    ) -> int:
        """How many contacts match ``query`` (``POST /kpi``), all by default."""
        body = _bodies.search_body(query or Query.everything(), page=0, per_page=None)
        response = await self._request(
            "POST",
            "/kpi",
            body=body,
            idempotent=True,
            retry=retry,
            timeout=timeout,
            max_wait=max_wait,
        )
        return _protocol.decode_total(response.status, response.body)

    # ----------------------------------------------------------------------------------------
    # Forms and actions
    # ----------------------------------------------------------------------------------------

    async def list_forms(
        self: _Host,
        form_type: FormType | str,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_wait: float | None = None,
    ) -> list[Form]:
        """The forms of one type (``GET /v1/forms/type/{type}``; the deprecated
        ``/forms/{type}`` if the canonical route answers 404)."""
        try:
            response = await self._request(
                "GET",
                f"/v1/forms/type/{form_type}",
                idempotent=True,
                retry=retry,
                timeout=timeout,
                max_wait=max_wait,
            )
        except NotFoundError:
            logger.info(
                "GET /v1/forms/type/%s answered 404: trying /forms/%s", form_type, form_type
            )
            response = await self._request(
                "GET",
                f"/forms/{form_type}",
                idempotent=True,
                retry=retry,
                timeout=timeout,
                max_wait=max_wait,
            )
        return _protocol.decode_forms(response.status, response.body)

    async def get_form(
        self: _Host,
        form_id: int,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_wait: float | None = None,
    ) -> Form:
        """One form by id (``GET /forms/{id}``), with its refvalues."""
        response = await self._request(
            "GET",
            f"/forms/{int(form_id)}",
            idempotent=True,
            retry=retry,
            timeout=timeout,
            max_wait=max_wait,
        )
        return _protocol.decode_form(response.status, response.body)

    async def list_actions(
        self: _Host,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_wait: float | None = None,
    ) -> list[ActionSummary]:
        """The actions (campaigns) of the space, with their counters (``GET /actions``)."""
        response = await self._request(
            "GET", "/actions", idempotent=True, retry=retry, timeout=timeout, max_wait=max_wait
        )
        return _protocol.decode_actions(response.status, response.body)
