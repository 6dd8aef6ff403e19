"""The request headers of a client, built once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

__all__ = ["AuthHeaders"]


class AuthHeaders(Mapping[str, str]):
    """The request headers of a client, built once; the key stays out of reprs."""

    __slots__ = ("_items",)

    def __init__(self, key: str, user_agent: str) -> None:
        self._items = {
            "Authorization": f"Bearer {key}",
            "User-Agent": user_agent,
            "Accept": "application/json",
        }

    def __getitem__(self, name: str) -> str:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return "<request headers, Authorization redacted>"

    __str__ = __repr__
