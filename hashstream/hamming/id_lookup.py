"""Id → position lookups of :class:`~hashstream.hamming.index.HammingIndex`.

An :class:`IdLookup` is immutable: every add makes a new one (sharing what did not change), so a
search snapshot can keep the lookup of its moment. While ids arrive in increasing order (the
service assigns them so) the ids by position are themselves sorted and the lookup holds no
array at all; the first id out of order switches to sorted (id, position) arrays, a large main
part and a small tail merged into it now and then (no full re-sort per add)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["IdLookup"]

TAIL_MERGE_MIN = 4096


def _empty() -> NDArray[np.int64]:
    return np.zeros(0, dtype=np.int64)


def _increasing(ids: NDArray[np.int64]) -> bool:
    return bool(ids.size < 2 or (ids[1:] > ids[:-1]).all())


@dataclass(frozen=True)
class IdLookup:
    """``ordered``: ids by position strictly increase (search them directly), ``max_id`` the
    largest id added. Otherwise ``main``/``tail``: (id, position) pairs sorted by id then
    position, over every entry that may be live."""

    ordered: bool = True
    max_id: int = -1
    main_ids: NDArray[np.int64] = field(default_factory=_empty)
    main_pos: NDArray[np.int64] = field(default_factory=_empty)
    tail_ids: NDArray[np.int64] = field(default_factory=_empty)
    tail_pos: NDArray[np.int64] = field(default_factory=_empty)

    @classmethod
    def build(cls, ids_by_pos: NDArray[np.int64], live: NDArray[np.bool_] | None = None
              ) -> IdLookup:
        """The lookup of entries [0, n) (``live`` masks entries a lookup may return; an
        ordered lookup reads the removal mask instead)."""
        top = int(ids_by_pos.max()) if ids_by_pos.size else -1
        if _increasing(ids_by_pos):
            return cls(True, top)
        pos = np.arange(ids_by_pos.size, dtype=np.int64)
        if live is not None:
            pos = pos[live]
        order = np.argsort(ids_by_pos[pos], kind="stable")
        return cls(False, top, ids_by_pos[pos][order], pos[order])

    def nbytes(self) -> int:
        return int(self.main_ids.nbytes + self.main_pos.nbytes + self.tail_ids.nbytes
                   + self.tail_pos.nbytes)

    def appended(self, ids_by_pos: NDArray[np.int64], p0: int, new_ids: NDArray[np.int64]
                 ) -> IdLookup:
        """The lookup after ``new_ids`` were stored at positions p0, p0 + 1, … (``ids_by_pos``
        holds every entry up to p0 + len(new_ids))."""
        top = max(self.max_id, int(new_ids.max()))
        if self.ordered and int(new_ids[0]) > self.max_id and _increasing(new_ids):
            return IdLookup(True, top)
        base = self
        if self.ordered:  # switching: every old entry (ids sorted already) is the main part
            base = IdLookup(False, self.max_id, ids_by_pos[:p0].copy(),
                            np.arange(p0, dtype=np.int64))
        order = np.argsort(new_ids, kind="stable")
        tail_ids, tail_pos = _merge_sorted(base.tail_ids, base.tail_pos, new_ids[order],
                                           order.astype(np.int64) + p0)
        main_ids, main_pos = base.main_ids, base.main_pos
        if tail_ids.size > max(TAIL_MERGE_MIN, main_ids.size // 8):
            main_ids, main_pos = _merge_sorted(main_ids, main_pos, tail_ids, tail_pos)
            tail_ids, tail_pos = _empty(), _empty()
        return IdLookup(False, top, main_ids, main_pos, tail_ids, tail_pos)

    def latest(self, ids: NDArray[np.int64], ids_by_pos: NDArray[np.int64], n: int
               ) -> NDArray[np.int64]:
        """Position of each id's latest entry among [0, n), -1 where it has none (removal is
        the caller's to check)."""
        res = np.full(ids.shape, -1, dtype=np.int64)
        if ids.size == 0 or n == 0:
            return res
        parts = (((ids_by_pos[:n], None),) if self.ordered else
                 ((self.main_ids, self.main_pos), (self.tail_ids, self.tail_pos)))
        for sid, spos in parts:
            if sid.size == 0:
                continue
            j = np.searchsorted(sid, ids, side="right") - 1  # last (latest) entry of the id
            jc = np.maximum(j, 0)
            hit = (j >= 0) & (sid[jc] == ids)
            at = jc if spos is None else spos[jc]
            res = np.maximum(res, np.where(hit, at, -1))
        return res


def _merge_sorted(a_ids: NDArray[np.int64], a_pos: NDArray[np.int64], b_ids: NDArray[np.int64],
                  b_pos: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Merge two (id, position)-sorted lookups; b's positions all come after a's."""
    if a_ids.size == 0:
        return b_ids.copy(), b_pos.copy()
    at = np.searchsorted(a_ids, b_ids, side="right") + np.arange(b_ids.size)
    from_a = np.ones(a_ids.size + b_ids.size, dtype=bool)
    from_a[at] = False
    ids = np.empty(from_a.size, dtype=np.int64)
    pos = np.empty(from_a.size, dtype=np.int64)
    ids[at], pos[at] = b_ids, b_pos
    ids[from_a], pos[from_a] = a_ids, a_pos
    return ids, pos
