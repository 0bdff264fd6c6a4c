"""Single items: read one stored item, and delete items (one or a batch) exactly once.

Both answer from this process's search replica. A delete is decided there (which ids are live)
and committed by one script that checks the index is still at the replica's delete epoch (and,
when some ids were unknown, at its version): if anything moved, the replica catches up and the
delete is decided again. So an id is reported deleted by one request only, an id reported
unknown was not stored at the committed version, and once the answer is sent every search on
every API process misses the item (searches check the delete epoch first).

Semantics beside ingest: a delete takes effect at its place in the ingest order. It removes the
item as committed and cancels upserts of its id accepted before it and still queued or being
learned (the worker drops them from the round's segment); a chunk accepted after the delete
stores the id again as a new item. Ids not committed yet are unknown: a delete does not cancel
an item whose first round is still to come. Deleted items stay in the model (rounds already
learned from them) and in the stored segments; the delete log records them for replicas.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashstream.service.errors import Conflict, InvalidInput, NotFound, Unavailable
from hashstream.service.index_replica import PartitionView, Replica
from hashstream.service.replicas import SearchService
from hashstream.solver.method import PAIRS
from hashstream.store.partitions import partition_of

MAX_DELETE_IDS = 100_000
_ATTEMPTS = 50  # decisions per delete before giving up (deletes or commits kept landing)
_INT64_END = 2**63


def _hex(codes: np.ndarray[Any, Any]) -> str:
    return bytes(codes.tobytes()).hex()


class ItemService:
    """Reads and deletes of single items, through the search replicas."""

    def __init__(self, search: SearchService) -> None:
        self.search = search
        self.store = search.store

    def _locate(self, rep: Replica, item: int, field: str) -> tuple[PartitionView, int] | None:
        """(partition view, position) of a live item, None when it is not stored; Conflict
        when its partition is not served here."""
        if not 0 <= item < _INT64_END:  # ids are int64 ≥ 0: no other number is stored
            return None
        part = rep.part_of(item)
        if part is None:
            raise Conflict(f"item {item} is in partition {rep.partition_of(item)}, which this "
                           f"replica does not serve (it serves {rep.partitions})", field)
        view = part.views.get(PAIRS)
        if view is None:
            return None
        pos = int(view.positions([item])[0])
        return (part, pos) if pos >= 0 else None

    def _live(self, rep: Replica, ids: list[int], field: str) -> list[int]:
        """Those of ``ids`` (sorted) live in ``rep``; Conflict when one is in a partition not
        served here."""
        storable = np.asarray([i for i in ids if 0 <= i < _INT64_END], dtype=np.int64)
        if rep.config.partitions > 1:
            wanted = set(np.unique(partition_of(storable, rep.config.partitions)).tolist())
            missing = sorted(wanted - set(rep.partitions))
            if missing:
                raise Conflict(f"some ids are in partitions {missing}, which this replica does "
                               f"not serve (it serves {rep.partitions})", field)
        live = []
        for part in rep.parts:
            view = part.views.get(PAIRS)
            mine = rep.ids_of(part, storable)
            if view is not None and mine.size:
                live.append(mine[view.positions(mine) >= 0])
        return sorted(np.concatenate(live).tolist()) if live else []

    def item(self, name: str, item: int, min_version: int | None = None) -> dict[str, Any]:
        """The stored item: labels, code (hex of its packed bits), the round that committed it
        and the model version that made its code (cross-modal: every target's code too)."""
        rep = self.search.replica(name, min_version)
        found = self._locate(rep, item, "item_id")
        if found is None:
            raise NotFound(f"no stored item with id {item} (items exist once their round has "
                           "committed, until they are deleted)", "item_id")
        part, pos = found
        at = np.asarray([pos])
        out: dict[str, Any] = {
            "index": name, "id": item, "labels": rep.labels_at(pos, part),
            "code": _hex(part.views[PAIRS].codes_at(at)[0]),
            "model_version": int(part.rounds.model_version_at(at)[0]),
            "round": int(part.rounds.round_at(at)[0]), "version": rep.version}
        if len(part.views) > 1:
            out["codes"] = {t: _hex(v.codes_at(v.positions([item]))[0])
                            for t, v in part.views.items()}
        return out

    def delete(self, name: str, ids: list[int], field: str = "ids") -> dict[str, Any]:
        """Delete the stored items among ``ids``: which were deleted (by this request) and
        which were unknown (not stored, or deleted already)."""
        if len(ids) > MAX_DELETE_IDS:
            raise InvalidInput(f"at most {MAX_DELETE_IDS} ids per delete", field)
        wanted = sorted(set(ids))
        min_version: int | None = None
        for _ in range(_ATTEMPTS):
            rep = self.search.replica(name, min_version)
            known = self._live(rep, wanted, field)
            unknown = sorted(set(wanted) - set(known))
            answer: dict[str, Any] = {"index": name, "deleted": known, "unknown": unknown}
            if not known:
                # nothing to write: the answer holds if the replica is the committed state
                version, epoch, raw = self.store.search_state(name)
                if raw is None:
                    raise NotFound(f"no index named {name!r}", "name")
                if version == rep.version and epoch == rep.epoch:
                    answer["version"] = version
                    return answer
                min_version = version
                continue
            outcome = self.store.deletes.delete(name, np.asarray(known, dtype=np.int64),
                                                rep.epoch, rep.version if unknown else None)
            if outcome.status == 1:
                answer["version"] = outcome.version
                return answer
            if outcome.status == -1:
                raise NotFound(f"no index named {name!r}", "name")
            min_version = outcome.version if unknown else None
        raise Unavailable(f"index {name!r}: deletes and commits kept landing while this delete "
                          "was decided; retry", field)
