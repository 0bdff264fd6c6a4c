"""One index as an API process holds it: long-lived HammingIndexes (one per target) and item
labels to which each committed segment is appended, and the :class:`Replica` searches read.

Refreshing from version v to v' costs O(items of v + 1 … v'): the new segments are appended
(an id stored again is an upsert: the index tombstones its old entry), MIH tables are built or
extended here when due, never inside a search, and a new :class:`Replica` of views is swapped in.
A search holds one Replica: its encoder and exactly that version's items, whatever the loader
appends meanwhile (see ``HammingIndex.view``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hashstream.hamming.index import HammingIndex, HammingView
from hashstream.service.item_labels import ItemLabels, ItemLabelsView
from hashstream.service.methods import load_state
from hashstream.service.registry import IndexConfig
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.method import Encoder, Method, target_field
from hashstream.store.index_store import IndexStore
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


@dataclass(frozen=True)
class Replica:
    """One index at ``version`` as searches see it: the method's encoder of that version and
    the partitions this process serves (one, partition 0, for an unpartitioned index).
    ``class_labels`` is shared and only grows; this version's classes are all in it."""

    version: int
    config: IndexConfig
    encoder: Encoder | None
    parts: list[PartitionView]
    class_labels: list[int | str]

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


@dataclass
class IndexReplica:
    """The growing structures of one index (created at ``uid``) and the Replica searches use.

    ``lock`` guards ``current`` and ``loading`` (``changed`` is signalled on every swap and
    when a load ends); ``load_lock`` lets one load at a time append. ``serve``: the partitions
    this process holds (None: all); ``tables``: "off" keeps to flat scans (no MIH memory)."""

    uid: float
    scan_backend: ScanBackend = "auto"
    serve: list[int] | None = None
    tables: Literal["auto", "off"] = "auto"  # multi-index-hashing tables, or flat scans only
    current: Replica | None = None
    loading: bool = False
    held: int = 0  # the version appended so far
    segments_loaded: int = 0  # segment parts read from the store, all loads together
    refresh_seconds: float = 0.0  # how long the latest advance took, from start to swap
    lock: threading.Lock = field(default_factory=threading.Lock)
    load_lock: threading.Lock = field(default_factory=threading.Lock)
    parts: dict[int, _Partition] = field(default_factory=dict)
    class_labels: list[int | str] = field(default_factory=list)
    encoder: Encoder | None = None
    encoder_key: tuple[str, int] | None = None
    fixed: dict[str, Array] = field(default_factory=dict)  # Method.fixed_fields, kept

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
                version: int) -> Replica:
        """Append the segments (held, version], refresh encoder and class labels, build what
        the indexes need off the search path, and swap in the Replica of ``version``."""
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
                self._append(self.parts[p], seg, method)
            self.held = v
        encoder = self._encoder(store, name, method, version)
        kind, new_labels = store.class_labels(name, start=len(self.class_labels))
        self.class_labels.extend(int(b) if kind == "int" else b.decode() for b in new_labels)
        views = []
        for p in wanted:
            part = self.parts[p]
            self._compact_if_due(part)
            for index in part.indexes.values():
                index.build_tables()
            views.append(PartitionView(p, {t: index.view() for t, index in part.indexes.items()},
                                       part.labels.view()))
        fresh = Replica(version, config, encoder, views, self.class_labels)
        with self.lock:
            self.current = fresh
            self.refresh_seconds = time.perf_counter() - started
            self.changed.notify_all()
        return fresh

    def _append(self, part: _Partition, seg: dict[str, Array], method: Method) -> None:
        ids = np.asarray(seg["ids"], dtype=np.int64)
        labels = ClassLists.of(seg["label_indptr"], seg["label_indices"])
        keep = _last_occurrences(ids)
        if keep is not None:  # an id twice in one segment: its last item is the one stored
            ids, labels = ids[keep], labels.take(keep)
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

    @staticmethod
    def _compact_if_due(part: _Partition) -> None:
        """Drop replaced and removed entries once they are a quarter of the indexes, from the
        indexes and the labels alike (positions stay aligned)."""
        first = next(iter(part.indexes.values()), None)
        if first is None or first.removed_count <= max(1024, len(part.labels) // 4):
            return
        kept = [index.compact() for index in part.indexes.values()]
        part.labels.compact(kept[0])

    def _encoder(self, store: IndexStore, name: str, method: Method, version: int
                 ) -> Encoder | None:
        """The encoder of ``version`` (the one held when it still applies)."""
        if version == 0:
            return None
        projection = store.load_projection(name, version)
        wanted = [f for f in method.encoder_fields if f not in self.fixed
                  and not (f == "projection" and projection is not None)]
        state, model = load_state(store, name, method, wanted)
        key = (("model", int(state["model_version"])) if "model_version" in state
               else ("version", version))
        self.fixed = {**self.fixed, **{f: state[f] for f in method.fixed_fields if f in state}}
        if self.encoder is None or self.encoder_key != key:
            arrays = {**state, **self.fixed}
            if projection is not None:
                arrays["projection"] = projection
            self.encoder, self.encoder_key = method.encoder(arrays, model), key
        return self.encoder
