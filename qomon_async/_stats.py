"""The client's counters, shared by the client, the create protocol and the pool."""

from __future__ import annotations

import dataclasses

__all__ = ["ClientStats"]


@dataclasses.dataclass
class ClientStats:
    """Counters of a client, for dashboards and tests. Times are in seconds."""

    requests: int = 0
    """Requests sent (every attempt counts)."""
    responses: int = 0
    """Answers received, whatever their status."""
    rate_limited: int = 0
    """429 answers."""
    retries: int = 0
    """Attempts made again after a retryable failure."""
    retry_wait: float = 0.0
    """Time spent sleeping between retries."""
    limiter_wait: float = 0.0
    """Time spent waiting for the rate limiter."""
    reconciliations: int = 0
    """Ambiguous creates looked up by search."""
    reconciled: int = 0
    """...of which the contact was found (it had been created)."""
