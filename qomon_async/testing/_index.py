"""A search index that lags behind the store, as Qomon's does.

Qomon answers ``/search`` and ``/kpi`` from a search index that is refreshed a moment after a
write: a contact just created, updated or deleted can be missing from (or stale in) search
results for a second or two, while ``GET /contacts/{id}`` already shows it. A client that looks
a contact up right after an ambiguous create must allow for that lag.

:class:`SearchIndex` keeps, per contact, the versions written and the Qomon time each becomes
searchable; :meth:`SearchIndex.view` gives the contacts as the index shows them at a time.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from ._store import StoredContact


class SearchIndex:
    """Versions of the contacts, each searchable ``lag`` Qomon seconds after it was written.

    With ``lag == 0`` the index holds nothing: searches read the store directly.
    """

    def __init__(self, lag: float = 0.0) -> None:
        if lag < 0:
            raise ValueError("search_lag must be >= 0")
        self.lag = float(lag)
        # contact id -> [(searchable from, snapshot or None for deleted)], oldest first.
        self._versions: dict[int, list[tuple[float, StoredContact | None]]] = {}

    def __repr__(self) -> str:
        return f"SearchIndex(lag={self.lag:g}, contacts={len(self._versions)})"

    def record(self, contact_id: int, contact: StoredContact | None, now: float) -> None:
        """Note a write at Qomon time ``now``: ``contact`` as stored, or None once deleted."""
        if self.lag == 0:
            return
        snapshot = copy.deepcopy(contact) if contact is not None else None
        self._versions.setdefault(contact_id, []).append((now + self.lag, snapshot))

    def seed(self, contact: StoredContact) -> None:
        """Make ``contact`` searchable at once (a contact that existed before the run)."""
        if self.lag == 0:
            return
        self._versions[contact.id] = [(float("-inf"), copy.deepcopy(contact))]

    def view(self, live: Mapping[int, StoredContact], now: float) -> Mapping[int, StoredContact]:
        """The contacts as ``/search`` sees them at Qomon time ``now``."""
        if self.lag == 0:
            return live
        shown: dict[int, StoredContact] = {}
        for contact_id in list(self._versions):
            versions = self._versions[contact_id]
            visible = [i for i, (since, _) in enumerate(versions) if since <= now]
            if not visible:
                continue
            latest = visible[-1]
            # Older versions can no longer be seen: forget them.
            del versions[:latest]
            snapshot = versions[0][1]
            if snapshot is None and len(versions) == 1:
                del self._versions[contact_id]
            elif snapshot is not None:
                shown[contact_id] = snapshot
        return dict(sorted(shown.items()))
