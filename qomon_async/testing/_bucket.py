"""Qomon's per-space token bucket (100 tokens, 10 per second), as a pure object over a clock."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketAnswer:
    """What the bucket decided for one request; all durations in Qomon seconds."""

    allowed: bool
    cost: int
    remaining: float
    until_full: float
    retry_after: float | None


class TokenBucket:
    """A token bucket: ``capacity`` tokens, refilled continuously at ``rate`` tokens per second.

    Time is passed in (Qomon seconds), so the bucket itself never reads a clock: the caller
    decides what "now" is. A request that cannot be paid is rejected and costs nothing
    (Qomon's 429 comes with ``Retry-After``, and nothing is taken).
    """

    def __init__(self, capacity: float, rate: float, now: float = 0.0) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("capacity and rate must be > 0")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._tokens = self.capacity
        self._updated = now

    def __repr__(self) -> str:
        return (
            f"TokenBucket(capacity={self.capacity:g}, rate={self.rate:g}, "
            f"tokens={self._tokens:.2f})"
        )

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now

    def level(self, now: float) -> float:
        """Tokens available at ``now``."""
        self._refill(now)
        return self._tokens

    def until_full(self, now: float) -> float:
        """Qomon seconds until the bucket is full again."""
        self._refill(now)
        return (self.capacity - self._tokens) / self.rate

    def take(self, cost: int, now: float) -> BucketAnswer:
        """Charge ``cost`` tokens if the bucket can pay them, else reject without charging."""
        self._refill(now)
        if self._tokens + 1e-9 >= cost:
            self._tokens = max(0.0, self._tokens - cost)
            return BucketAnswer(True, cost, self._tokens, self.until_full(now), None)
        # Qomon's Retry-After is in whole seconds, enough to afford this very request.
        wait = math.ceil((cost - self._tokens) / self.rate - 1e-9)
        return BucketAnswer(False, cost, self._tokens, self.until_full(now), float(max(1, wait)))

    def spend(self, tokens: float, now: float) -> None:
        """Remove ``tokens`` as another consumer of the same space would (never below zero)."""
        self._refill(now)
        self._tokens = max(0.0, self._tokens - tokens)

    def fill(self, now: float) -> None:
        """Refill the bucket completely."""
        self._tokens = self.capacity
        self._updated = now
