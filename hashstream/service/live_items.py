"""What a worker knows of an index's items between rounds: the ids that are live, and the recent
deletes that a chunk still queued may predate.

A delete cancels the upserts of its ids accepted before it (:mod:`hashstream.service.items`):
a round drops the rows of a deleted id that come from a chunk at or before the delete's place
in the ingest stream. Only deletes that some queued chunk may predate are kept for that (every
chunk accepted later has a larger stream id), so the worker holds no more than the deletes of
the last queue's length of time, plus 8 bytes per live id for the exact count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashstream.store.item_deletes import DeleteEntry, StreamPosition

Array = np.ndarray[Any, Any]


@dataclass
class LiveItems:
    """``ids``: the live ids, sorted; ``epoch``: the deletes applied; ``recent``: id → the
    stream position of its latest delete that a queued chunk may predate."""

    ids: Array = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    epoch: int = 0
    recent: dict[int, StreamPosition] = field(default_factory=dict)

    def _present(self, ids: Array) -> tuple[Array, Array]:
        """(insertion points of sorted unique ``ids``, whether each is live)."""
        at = np.searchsorted(self.ids, ids)
        if not self.ids.size:
            return at, np.zeros(ids.size, dtype=bool)
        return at, self.ids[np.minimum(at, self.ids.size - 1)] == ids

    def add(self, ids: Array) -> None:
        """Ids a committed segment stored (upserts of live ids change nothing): O(live)."""
        new = np.unique(np.asarray(ids, dtype=np.int64))
        at, present = self._present(new)
        self.ids = np.insert(self.ids, at[~present], new[~present])

    def count_with(self, ids: Array) -> int:
        """Live ids once ``ids`` are stored too."""
        new = np.unique(np.asarray(ids, dtype=np.int64))
        return int(self.ids.size + new.size - np.count_nonzero(self._present(new)[1]))

    def apply(self, entry: DeleteEntry, oldest_queued: StreamPosition | None) -> None:
        """A logged delete: its ids are live no more; remembered while a queued chunk (none
        older than ``oldest_queued``) may predate it."""
        at, present = self._present(np.unique(entry.ids))
        self.ids = np.delete(self.ids, at[present])
        self.epoch = max(self.epoch, entry.epoch)
        if oldest_queued is not None and entry.queued_up_to >= oldest_queued:
            for item in entry.ids.tolist():
                self.recent[item] = max(self.recent.get(item, entry.queued_up_to),
                                        entry.queued_up_to)

    def forget_before(self, oldest_queued: StreamPosition | None) -> None:
        """Drop the deletes no queued chunk predates (the oldest queued is later)."""
        self.recent = ({} if oldest_queued is None else
                       {i: at for i, at in self.recent.items() if at >= oldest_queued})

    def cancelled(self, ids: Array, accepted_at: list[StreamPosition]) -> Array:
        """Which rows to drop: an id deleted after the row's chunk was accepted (row i's chunk
        at stream position ``accepted_at[i]``)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(ids.size, dtype=bool)
        if not self.recent:
            return out
        deleted = np.fromiter(self.recent, dtype=np.int64, count=len(self.recent))
        for row in np.flatnonzero(np.isin(ids, deleted)).tolist():
            out[row] = accepted_at[row] <= self.recent[int(ids[row])]
        return out
