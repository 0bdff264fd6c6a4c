"""Which round committed the entry at each position of a replica, and which model version made
its code, kept per segment rather than per item.

A replica appends segments in version order and compaction keeps the order of what it keeps,
so the round of positions never decreases: one (first position, round, model version) triple per
segment answers every position with a binary search, at a few bytes per round instead of per
item. Immutable: appends and compactions make new objects, so a view keeps the rounds of its
moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]


def _empty(dtype: type) -> Array:
    return np.zeros(0, dtype=dtype)


@dataclass(frozen=True)
class SegmentRounds:
    """Segment ``i`` starts at position ``starts[i]``, was committed by round ``rounds[i]`` and
    coded by model version ``model_versions[i]`` (the round itself for methods without a
    separate model)."""

    starts: Array = field(default_factory=lambda: _empty(np.int64))
    rounds: Array = field(default_factory=lambda: _empty(np.int32))
    model_versions: Array = field(default_factory=lambda: _empty(np.int32))

    def appended(self, start: int, round_: int, model_version: int) -> SegmentRounds:
        """These rounds and a segment of ``round_`` whose entries start at ``start``."""
        return SegmentRounds(np.append(self.starts, np.int64(start)),
                             np.append(self.rounds, np.int32(round_)),
                             np.append(self.model_versions, np.int32(model_version)))

    def _segment_of(self, positions: Array) -> Array:
        at: Array = np.searchsorted(self.starts, np.asarray(positions, dtype=np.int64),
                                    side="right") - 1
        return at

    def round_at(self, positions: Array) -> Array:
        """The round that committed the entry at each position."""
        out: Array = self.rounds[self._segment_of(positions)]
        return out

    def model_version_at(self, positions: Array) -> Array:
        """The model version that made the code at each position."""
        out: Array = self.model_versions[self._segment_of(positions)]
        return out

    def compacted(self, kept: Array) -> SegmentRounds:
        """The rounds after a compaction that kept old positions ``kept`` (sorted), in order."""
        starts = np.searchsorted(np.asarray(kept, dtype=np.int64), self.starts, side="left")
        return SegmentRounds(starts.astype(np.int64), self.rounds, self.model_versions)
