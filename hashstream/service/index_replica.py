"""One index as an API process holds it: long-lived HammingIndexes (one per target) and item
labels to which each committed segment is appended, and the :class:`Replica` searches read.

Refreshing from version v to v' costs O(items of v + 1 … v'): the new segments are appended
(an id stored again is an upsert: the index tombstones its old entry), MIH tables are built or
extended here when due, never inside a search, and a new :class:`Replica` of views is swapped in.
A search holds one Replica: its encoder and exactly that version's items, whatever the loader
appends meanwhile (see ``HammingIndex.view``).

Item deletes (:mod:`hashstream.store.item_deletes`) reach a replica two ways. A search that finds
the delete epoch ahead applies the missing deletes to the Replica it holds at once
(:meth:`Replica.with_deletes`: new views whose removal masks hide the items; the indexes are
not touched). The loader applies them to the growing indexes on its next pass, compacts the
removed entries away once they are a quarter of a partition (in the background: never in a
search) and swaps in views that hold them no more. A delete at version v removes an id's entry
only if round v or an earlier one committed it: an entry of a later round is a new upsert."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hashstream.hamming.index import HammingIndex, HammingView
from hashstream.service.item_labels import ItemLabels, ItemLabelsView
from hashstream.service.methods import load_state
from hashstream.service.registry import IndexConfig
from hashstream.service.segment_rounds import SegmentRounds
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.method import Encoder, Method, target_field
from hashstream.store.index_store import IndexStore
from hashstream.store.item_deletes import DeleteEntry
from hashstream.store.partitions import partition_of

Array = np.ndarray[Any, Any]
ScanBackend = Literal["auto", "native", "numpy"]


@dataclass(frozen=True)
class PartitionView:
    """One partition of the code store at one version: a view per target ("pairs", and
    "image"/"text" for a cross-modal method) and the labels by position."""

    partition: int
    views: dict[str, HammingView]
    labels: ItemLabelsView
    rounds: SegmentRounds = field(default_factory=SegmentRounds)


@dataclass(frozen=True)
class Replica:
    """One index at ``version`` as searches see it: the method's encoder of that version and
    the partitions this process serves (one, partition 0, for an unpartitioned index).
    ``class_labels`` (internal class number → client label) and ``class_numbers`` (its
    inverse) are shared and only grow; this version's classes are all in them. ``epoch``: the
    item deletes applied."""

    version: int
    config: IndexConfig
    encoder: Encoder | None
    parts: list[PartitionView]
    class_labels: list[int | str]
    class_numbers: dict[int | str, int] = field(default_factory=dict)
    epoch: int = 0
    label_kind: str | None = None

    @property
    def partitions(self) -> list[int]:
        return [p.partition for p in self.parts]

    @property
    def views(self) -> dict[str, HammingView]:
        """The views of the first partition served (all of an unpartitioned index's items)."""
        return self.parts[0].views if self.parts else {}

    def partition_of(self, item: int) -> int:
        """The partition that holds ``item`` (store.partitions decides)."""
        return int(partition_of(np.asarray([item]), self.config.partitions)[0])

    def part_of(self, item: int) -> PartitionView | None:
        """The served partition that would hold ``item`` (None: another replica's)."""
        wanted = self.partition_of(item)
        return next((p for p in self.parts if p.partition == wanted), None)

    def labels_at(self, position: int, part: PartitionView | None = None) -> list[int | str]:
        """The labels of the item at ``position`` of ``part`` (default: the first partition
        served), as the client sent them."""
        labels = (part or self.parts[0]).labels
        return [self.class_labels[c] for c in labels.row(position).tolist()]

    def ids_of(self, part: PartitionView, ids: Array) -> Array:
        """Those of ``ids`` that ``part`` would hold."""
        if self.config.partitions == 1:
            return ids
        out: Array = ids[partition_of(ids, self.config.partitions) == part.partition]
        return out

    def with_deletes(self, entries: list[DeleteEntry], epoch: int) -> Replica:
        """This replica with ``entries`` applied (new views; this one is unchanged), at delete
        epoch ``epoch``."""
        parts = []
        for part in self.parts:
            views = dict(part.views)
            for target, view in part.views.items():
                doomed = [doomed_positions(view, part.rounds, self.ids_of(part, e.ids),
                                           e.version) for e in entries]
                if any(d.size for d in doomed):
                    views[target] = view.without(np.concatenate(doomed))
            parts.append(dataclasses.replace(part, views=views))
        return dataclasses.replace(self, parts=parts, epoch=epoch)


def doomed_positions(view: HammingView, rounds: SegmentRounds, ids: Array,
                     version: int) -> Array:
    """The positions of ``view`` a delete of ``ids`` at ``version`` removes: the ids' live
    entries that round ``version`` or an earlier one committed."""
    pos = view.positions(ids) if ids.size else np.zeros(0, dtype=np.int64)
    pos = pos[pos >= 0]
    if not pos.size:
        return pos
    out: Array = pos[rounds.round_at(pos) <= version]
    return out


def _last_occurrences(ids: Array) -> Array | None:
    """Rows to keep so each id appears once (its last occurrence wins); None when all do."""
    if ids.size < 2 or np.unique(ids).size == ids.size:
        return None
    _, last_from_end = np.unique(ids[::-1], return_index=True)
    kept: Array = np.sort(ids.size - 1 - last_from_end)
    return kept


@dataclass
class _Partition:
    """The growing structures of one partition: a HammingIndex per target, labels by
    position."""

    indexes: dict[str, HammingIndex] = field(default_factory=dict)
    labels: ItemLabels = field(default_factory=ItemLabels)
    rounds: SegmentRounds = field(default_factory=SegmentRounds)


@dataclass
class IndexReplica:
    """The growing structures of one index (created at ``uid``) and the Replica searches use.

    ``lock`` guards ``current``, ``loading``, ``wanted`` and ``fetched`` (``changed`` is
    signalled on every swap and when a load ends); ``load_lock`` lets one load at a time append
    and apply deletes to the indexes. ``serve``: the partitions this process holds (None: all);
    ``tables``: "off" keeps to flat scans (no MIH memory). ``deletes_held``: the delete epoch
    the indexes have applied; ``fetched``: deletes searches applied to their Replica that the
    indexes may not have yet; ``unsettled``: applied deletes of versions not loaded yet (they
    also remove entries of the segments still to come)."""

    uid: float
    scan_backend: ScanBackend = "auto"
    serve: list[int] | None = None
    tables: Literal["auto", "off"] = "auto"  # multi-index-hashing tables, or flat scans only
    current: Replica | None = None
    loading: bool = False
    wanted: bool = False  # a load was asked for while one ran: the loader looks again
    held: int = 0  # the version appended so far
    segments_loaded: int = 0  # segment parts read from the store, all loads together
    refresh_seconds: float = 0.0  # how long the latest advance took, from start to swap
    lock: threading.Lock = field(default_factory=threading.Lock)
    load_lock: threading.Lock = field(default_factory=threading.Lock)
    parts: dict[int, _Partition] = field(default_factory=dict)
    class_labels: list[int | str] = field(default_factory=list)
    class_numbers: dict[int | str, int] = field(default_factory=dict)
    label_kind: str | None = None
    deletes_held: int = 0
    fetched: dict[int, DeleteEntry] = field(default_factory=dict)
    unsettled: list[DeleteEntry] = field(default_factory=list)
    encoder: Encoder | None = None
    encoder_key: tuple[str, int] | None = None
    fixed: dict[str, Array] = field(default_factory=dict)  # Method.fixed_fields, kept
    # Method.grown_fields as last loaded, with their stored sizes then
    grown: dict[str, tuple[Array, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    @property
    def indexes(self) -> dict[str, HammingIndex]:
        """The HammingIndexes of the first partition held (all of an unpartitioned index)."""
        first = next(iter(self.parts.values()), None)
        return first.indexes if first is not None else {}

    @property
    def labels(self) -> ItemLabels:
        first = next(iter(self.parts.values()), None)
        return first.labels if first is not None else ItemLabels()

    def memory_bytes(self) -> int:
        """Bytes of the per-item arrays (indexes, lookups, labels; capacity included)."""
        return sum(sum(i.memory_bytes() for i in part.indexes.values()) + part.labels.nbytes()
                   for part in self.parts.values())

    # --- loading (the caller holds load_lock) ---------------------------------------------
    def advance(self, store: IndexStore, name: str, config: IndexConfig, method: Method,
                version: int, epoch: int = 0) -> Replica:
        """Append the segments (held, version], apply the deletes up to ``epoch``, refresh
        encoder and class labels, compact and build what the indexes need off the search path,
        and swap in the Replica of ``version``."""
        started = time.perf_counter()
        served = (None if self.serve is None or config.partitions == 1
                  else [p for p in self.serve if p < config.partitions])
        wanted = list(range(config.partitions)) if served is None else served
        for p in wanted:
            self.parts.setdefault(p, _Partition())
        for v in range(self.held + 1, version + 1):
            by_part = store.load_segment_parts(name, v, served)
            for p, seg in by_part.items():
                if "ids" not in seg:
                    raise LookupError(f"segment {v} of {name!r} is gone (index deleted?)")
                self.segments_loaded += 1
                self._append(self.parts[p], seg, method, v)
            self.held = v
        fresh = store.deletes.read(name, self.deletes_held, epoch)
        if len(fresh) != max(0, epoch - self.deletes_held):
            raise LookupError(f"the delete log of {name!r} is gone (index deleted?)")
        self._apply_deletes(config, self.unsettled + fresh)
        self.unsettled = [e for e in self.unsettled + fresh if e.version > self.held]
        self.deletes_held = max(self.deletes_held, epoch)
        encoder = self._encoder(store, name, method, version)
        kind, new_labels = store.class_labels(name, start=len(self.class_labels))
        self.label_kind = kind
        for b in new_labels:
            label: int | str = int(b) if kind == "int" else b.decode()
            self.class_numbers[label] = len(self.class_labels)
            self.class_labels.append(label)
        for p in wanted:
            part = self.parts[p]
            self._compact_if_due(part)
            for index in part.indexes.values():
                index.build_tables()
        with self.lock:
            # deletes a search applied meanwhile, past what this load read: applied here too
            # (before the views are taken), so the swap never brings an item back
            held = self.current.epoch if self.current is not None else 0
            late = [self.fetched[e] for e in range(self.deletes_held + 1, held + 1)]
            self._apply_deletes(config, late)
            self.unsettled += [e for e in late if e.version > self.held]
            self.deletes_held = max(self.deletes_held, held)
            self.fetched = {e: d for e, d in self.fetched.items() if e > self.deletes_held}
            views = [PartitionView(p, {t: index.view()
                                       for t, index in self.parts[p].indexes.items()},
                                   self.parts[p].labels.view(), self.parts[p].rounds)
                     for p in wanted]
            fresh_replica = Replica(version, config, encoder, views, self.class_labels,
                                    self.class_numbers, self.deletes_held, self.label_kind)
            self.current = fresh_replica
            self.refresh_seconds = time.perf_counter() - started
            self.changed.notify_all()
        return fresh_replica

    def _apply_deletes(self, config: IndexConfig, entries: list[DeleteEntry]) -> None:
        """Remove the entries' items from the growing indexes (each target alike)."""
        for entry in entries:
            for p, part in self.parts.items():
                ids = (entry.ids if config.partitions == 1
                       else entry.ids[partition_of(entry.ids, config.partitions) == p])
                for index in part.indexes.values():
                    view = index.view()
                    doomed = doomed_positions(view, part.rounds, ids, entry.version)
                    if doomed.size:
                        index.remove(view.ids_at(doomed))

    def _append(self, part: _Partition, seg: dict[str, Array], method: Method,
                version: int) -> None:
        ids = np.asarray(seg["ids"], dtype=np.int64)
        labels = ClassLists.of(seg["label_indptr"], seg["label_indices"])
        keep = _last_occurrences(ids)
        if keep is not None:  # an id twice in one segment: its last item is the one stored
            ids, labels = ids[keep], labels.take(keep)
        model_versions = seg.get("model_version")
        model_version = (int(model_versions[0]) if model_versions is not None
                         and model_versions.size else version)
        part.rounds = part.rounds.appended(len(part.labels), version, model_version)
        for target in method.targets:
            codes = seg.get(target_field(target))
            if codes is None or not ids.size:
                continue
            codes = codes if keep is None else codes[keep]
            index = part.indexes.get(target)
            if index is None:
                index = part.indexes[target] = HammingIndex(
                    codes.shape[1] * 8, backend=self.scan_backend,
                    mode="flat" if self.tables == "off" else "auto",
                    build_tables_on_search=False, auto_compact=False)
            index.add(codes, ids)
        part.labels.append(labels)

    def compaction_due(self) -> bool:
        """Whether a partition holds enough removed entries to compact (the caller holds
        load_lock): deletes a search applied during a load reach the indexes after that load's
        compaction pass, so the loader checks again after it."""
        return any(self._due(part) for part in self.parts.values())

    @staticmethod
    def _due(part: _Partition) -> bool:
        first = next(iter(part.indexes.values()), None)
        return first is not None and first.removed_count > max(1024, len(part.labels) // 4)

    @classmethod
    def _compact_if_due(cls, part: _Partition) -> None:
        """Drop replaced and removed entries once they are a quarter of the indexes, from the
        indexes, the labels and the rounds alike (positions stay aligned)."""
        if not cls._due(part):
            return
        kept = [index.compact() for index in part.indexes.values()]
        part.labels.compact(kept[0])
        part.rounds = part.rounds.compacted(kept[0])

    def _encoder(self, store: IndexStore, name: str, method: Method, version: int
                 ) -> Encoder | None:
        """The encoder of ``version`` (the one held when it still applies)."""
        if version == 0:
            return None
        projection = store.load_projection(name, version)
        wanted = [f for f in method.encoder_fields if f not in self.fixed
                  and not (f == "projection" and projection is not None)]
        sizes = (store.state_field_sizes(name, list(method.grown_fields))
                 if method.grown_fields else {})
        # a grown field stored at the size held is the one held (rows are only appended)
        kept = {f: a for f, (a, size) in self.grown.items() if sizes.get(f) == size}
        state, model = load_state(store, name, method, [f for f in wanted if f not in kept])
        self.grown = {**{f: (state[f], sizes[f]) for f in method.grown_fields if f in state},
                      **{f: self.grown[f] for f in kept}}
        key = (("model", int(state["model_version"])) if "model_version" in state
               else ("version", version))
        self.fixed = {**self.fixed, **{f: state[f] for f in method.fixed_fields if f in state}}
        if self.encoder is None or self.encoder_key != key:
            arrays = {**kept, **state, **self.fixed}
            if projection is not None:
                arrays["projection"] = projection
            self.encoder, self.encoder_key = method.encoder(arrays, model), key
        return self.encoder
