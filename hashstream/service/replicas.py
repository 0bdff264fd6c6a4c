"""Search: each API process keeps a replica of every index it serves (the model that encodes
queries and the database codes) and refreshes it from Redis when a new version commits.

A search never waits for a load: one that finds the committed version ahead of its replica
starts a background load (one in flight per index, :mod:`~hashstream.service.index_replica`
appends only the new segments) and answers from the version it holds. Only an index's first
load is synchronous. ``min_version`` (read-your-writes) waits, at most
``HASHSTREAM_REPLICA_WAIT_MS``, for the replica to reach that version: past the bound the
search fails with 503 (:class:`ReplicaBehind`, with Retry-After), and a ``min_version`` beyond
the committed version is a 409 at once (nothing the replica can wait for).

A replica moves from version v to v' only after loading P of v' and the segments up to v'; both
are immutable once committed, so a search sees one consistent version, never half a round.

Item deletes are never left to the background: every search reads the delete epoch in the same
MGET as the version, and a replica behind it applies the missing deletes (one LRANGE of the
delete log) before it answers, so a deleted item is gone from every API process as soon as the
delete was answered. Filters (labels) restrict the scan to the items they admit (a removal
mask: exact, like the plain scan); ``max_distance`` keeps the hits within that Hamming radius.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from hashstream.hamming.index import HammingView, native_isa
from hashstream.hamming.projection_ties import search_projection_ties
from hashstream.service.cross_modal import pad_tokens
from hashstream.service.errors import Conflict, InvalidInput, NotFound, ReplicaBehind
from hashstream.service.index_replica import IndexReplica, Replica
from hashstream.service.methods import IndexMethods
from hashstream.service.registry import IndexConfig
from hashstream.service.search_hits import SearchHits, concat_ranges
from hashstream.service.search_options import SearchOptions
from hashstream.solver.method import PAIRS
from hashstream.solver.metrics import pack_codes
from hashstream.store.index_store import IndexStore

__all__ = ["IndexReplica", "Replica", "SearchHits", "SearchService", "hamming_kernel"]

log = logging.getLogger("hashstream.replicas")
_SCATTER_MAX = 1 << 20  # queries × (k+1) × partitions scattered at once (the rest in turn)
SearchState = tuple[int, int, dict[str, Any] | None]  # version, delete epoch, stored config


def hamming_kernel() -> str:
    """The Hamming scan this process runs: the compiled kernel's instruction set (avx512, avx2,
    popcnt, scalar), or "numpy" when the C extension was not built."""
    return native_isa() or "numpy"


class SearchService:
    """Replicas of the indexes, refreshed in the background; searches are exact Hamming scans.

    Each index has its own locks (:class:`IndexReplica`); ``_replicas_lock`` only guards the
    dict of them."""

    def __init__(self, store: IndexStore, max_k: int = 10_000,
                 scan_backend: Literal["auto", "native", "numpy"] = "auto",
                 replica_wait_ms: int = 5000, serve_partitions: list[int] | None = None,
                 search_tables: Literal["auto", "off"] = "auto") -> None:
        self.store = store
        self.max_k = max_k
        self.scan_backend: Literal["auto", "native", "numpy"] = scan_backend
        self.replica_wait_ms = replica_wait_ms
        self.serve_partitions = serve_partitions
        # partitions of one search scanned at once (GIL released in the kernels)
        self._scatter = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1),
                                           thread_name_prefix="scatter")
        self.search_tables: Literal["auto", "off"] = search_tables
        self.replicas: dict[str, IndexReplica] = {}
        self._replicas_lock = threading.Lock()
        self.methods = IndexMethods()

    def replica(self, name: str, min_version: int | None = None,
                state: SearchState | None = None) -> Replica:
        """The replica of ``name`` this search uses: the version held (a background load is
        started when the committed one is ahead), at least ``min_version`` when given, with
        every item delete committed so far applied. ``state``: the index's version, delete
        epoch and config as the search read them (one MGET, :meth:`IndexStore.search_state`);
        read here when not given."""
        version, epoch, raw = state if state is not None else self.store.search_state(name)
        if raw is None:
            with self._replicas_lock:
                self.replicas.pop(name, None)
            raise NotFound(f"no index named {name!r}", "name")
        if min_version is not None and min_version > version:
            raise Conflict(f"min_version {min_version} is ahead of the index's committed "
                           f"version {version}; use a version a response or round reported",
                           "min_version")
        live = self._index_replica(name, float(raw.get("created", 0.0)), version)
        rep = live.current
        if rep is None or (rep.version == 0 and version > 0):
            rep = self._load_now(live, name, raw, version, epoch)
        elif rep.version < version:
            with live.lock:
                self._refresh_locked(live, name)
        if min_version is not None and rep.version < min_version:
            rep = self._wait_for(live, name, min_version)
        if rep.epoch < epoch:
            rep = self._catch_up_deletes(live, name, epoch)
        return rep

    def _catch_up_deletes(self, live: IndexReplica, name: str, epoch: int) -> Replica:
        """The current Replica with the deletes up to ``epoch`` applied, now (one read of the
        delete log); the loader applies them to the indexes (and compacts) in the background."""
        with live.lock:
            rep = live.current
            assert rep is not None
            start = rep.epoch
        if start >= epoch:
            return rep
        entries = self.store.deletes.read(name, start, epoch)
        if len(entries) != epoch - start:
            raise NotFound(f"no index named {name!r}", "name")
        with live.lock:
            for entry in entries:
                live.fetched.setdefault(entry.epoch, entry)
            rep = live.current
            assert rep is not None
            if rep.epoch < epoch:
                rep = live.current = rep.with_deletes(
                    [live.fetched[e] for e in range(rep.epoch + 1, epoch + 1)], epoch)
                live.changed.notify_all()
            self._refresh_locked(live, name)
        return rep

    def _index_replica(self, name: str, uid: float, version: int) -> IndexReplica:
        """This process's IndexReplica of ``name``; a new one when the index was deleted and
        re-created (another creation stamp) or its version went back."""
        with self._replicas_lock:
            live = self.replicas.get(name)
            if live is None or live.uid != uid or live.held > version:
                live = self.replicas[name] = IndexReplica(
                    uid, self.scan_backend, self.serve_partitions, self.search_tables)
            return live

    def _load_now(self, live: IndexReplica, name: str, raw: dict[str, Any],
                  version: int, epoch: int) -> Replica:
        """A synchronous load: the first one, or the first round of an index held empty
        (there is nothing to answer from); concurrent searches wait for the one load."""
        with live.load_lock:
            if live.current is not None and live.current.version >= version:
                return live.current
            config, method = self.methods.get(name, raw)
            return live.advance(self.store, name, config, method, version, epoch)

    def _refresh_locked(self, live: IndexReplica, name: str) -> None:
        """Start a background load unless one is in flight (the caller holds ``live.lock``);
        one in flight is told to look again before it stops, so no request falls between its
        last look and its end."""
        live.wanted = True
        if live.loading:
            return
        live.loading = True
        threading.Thread(target=self._refresh, args=(live, name), daemon=True,
                         name=f"replica-refresh-{name}").start()

    def _refresh(self, live: IndexReplica, name: str) -> None:
        """Background load: up to the committed version, again while commits keep coming or
        searches ask for more; stops after a failure (a later search starts another load)."""
        while True:
            with live.lock:
                live.wanted = False
            try:
                advanced = self._advance_once(live, name)
            except Exception as exc:
                log.error(json.dumps({"event": "replica_refresh_failed", "index": name,
                                      "error": repr(exc)}))
                advanced = None
            if advanced:
                continue
            with live.lock:
                if advanced is None or not live.wanted:
                    live.loading = False
                    live.changed.notify_all()
                    return

    def _advance_once(self, live: IndexReplica, name: str) -> bool:
        """One step of the background load: whether there was something to load, apply or
        compact (and it was done)."""
        version, epoch, raw = self.store.search_state(name)
        if raw is None or float(raw.get("created", 0.0)) != live.uid:
            return False
        with live.load_lock:
            started = time.perf_counter()
            held, deletes_held = live.held, live.deletes_held
            if version <= held and epoch <= deletes_held and not live.compaction_due():
                return False
            config, method = self.methods.get(name, raw)
            live.advance(self.store, name, config, method, max(version, held), epoch)
            log.info(json.dumps({
                "event": "replica_refresh", "index": name, "from": held,
                "to": version, "deletes_from": deletes_held, "deletes_to": epoch,
                "seconds": round(time.perf_counter() - started, 4)}))
        return True

    def _wait_for(self, live: IndexReplica, name: str, min_version: int) -> Replica:
        """Wait (bounded) until the replica reaches ``min_version``; ReplicaBehind past it."""
        deadline = time.monotonic() + self.replica_wait_ms / 1000
        with live.lock:
            while True:
                rep = live.current
                if rep is not None and rep.version >= min_version:
                    return rep
                self._refresh_locked(live, name)
                left = deadline - time.monotonic()
                if left <= 0:
                    held = rep.version if rep is not None else 0
                    raise ReplicaBehind(
                        f"this replica of {name!r} is at version {held}, behind min_version "
                        f"{min_version} after {self.replica_wait_ms} ms "
                        "(HASHSTREAM_REPLICA_WAIT_MS); retry", "min_version")
                live.changed.wait(left)

    def replica_status(self) -> dict[str, tuple[int, float]]:
        """Per index this process holds: (version it serves, seconds its latest refresh
        took)."""
        with self._replicas_lock:
            live = list(self.replicas.items())
        out = {}
        for name, replica in live:
            with replica.lock:
                if replica.current is not None:
                    out[name] = (replica.current.version, replica.refresh_seconds)
        return out

    # --- queries --------------------------------------------------------------------------
    def _ready(self, name: str, min_version: int | None,
               state: SearchState | None = None) -> Replica:
        rep = self.replica(name, min_version, state)
        if rep.version == 0 or rep.encoder is None:
            raise Conflict(f"index {name!r} has no committed round yet; ingest training chunks "
                           "and wait for the first round", "name")
        return rep

    def _check_k(self, k: int) -> None:
        if k < 1 or k > self.max_k:
            raise InvalidInput(f"k must be between 1 and {self.max_k}", "k")

    def _state_and_config(self, name: str) -> tuple[SearchState, IndexConfig]:
        """The index's search state (one MGET) and its config decoded from it."""
        state = self.store.search_state(name)
        if state[2] is None:
            raise NotFound(f"no index named {name!r}", "name")
        return state, self.methods.config(name, state[2])

    def search_vector_text(self, name: str, vector: str, k: int, modality: str = "image",
                           target: str = "pairs", min_version: int | None = None,
                           options: SearchOptions | None = None) -> SearchHits:
        """A search by one vector given as ``v1,v2,…`` (GET); its width is checked against the
        index's dimension of that modality."""
        state, config = self._state_and_config(name)
        try:
            values = [float(v) for v in vector.split(",")]
        except ValueError as exc:
            raise InvalidInput("vector must be comma-separated numbers", "vector") from exc
        dim = config.dim if modality == "image" else (
            config.cross_modal.text_dim if config.cross_modal is not None else config.dim)
        return self.search_vectors(name, np.asarray([values], dtype=np.float32), k, dim,
                                   modality, target, min_version, options, state)

    def search_rows(self, name: str, field_name: str, rows: Any, k: int,
                    target: str = "pairs", min_version: int | None = None,
                    options: SearchOptions | None = None) -> SearchHits:
        """A batch search (POST): ``field_name`` says what the rows are — ``features`` or
        ``image`` vectors, dense ``text`` vectors, or word-id ``tokens`` (padded here; an
        array arrives padded with −1). ``rows``: lists (a JSON body) or a 2-d array (.npz)."""
        modality = "text" if field_name in ("text", "tokens") else "image"
        state, config = self._state_and_config(name)
        if field_name == "tokens":
            queries, dim = (rows if isinstance(rows, np.ndarray) else pad_tokens(rows)), None
        else:
            try:
                queries = np.asarray(rows, dtype=np.float32)
            except (ValueError, TypeError) as exc:
                raise InvalidInput(f"{field_name} must be equal-length vectors",
                                   field_name) from exc
            dim = config.dim if modality == "image" else (
                config.cross_modal.text_dim if config.cross_modal is not None else None)
        return self.search_vectors(name, queries, k, dim, modality, target, min_version,
                                   options, state)

    def search_vectors(self, name: str, features: np.ndarray[Any, Any], k: int,
                       dim: int | None, modality: str = "image", target: str = "pairs",
                       min_version: int | None = None, options: SearchOptions | None = None,
                       state: SearchState | None = None) -> SearchHits:
        """The hits of each query vector. ``dim`` None skips the width check (token
        queries). For cross-modal indexes ``modality`` picks the query encoder and ``target``
        the database codes: the pairs' unified codes, or their image or text side.
        ``options``: a label filter and a Hamming radius; ``state``: as read by the caller."""
        self._check_k(k)
        field_name = "features" if modality == "image" else modality
        if features.ndim != 2 or features.shape[0] == 0:
            raise InvalidInput("query must be a non-empty list of vectors", field_name)
        if dim is not None and features.shape[1] != dim:
            raise InvalidInput(f"vectors have dimension {features.shape[1]}, the index expects "
                               f"{dim}", field_name)
        if not np.isfinite(features).all():
            raise InvalidInput("query vectors contain NaN or Inf", field_name)
        rep = self._ready(name, min_version, state)
        assert rep.encoder is not None
        targets = ("pairs",) if len(rep.encoder.modalities) == 1 else ("pairs", "image",
                                                                        "text")
        if modality not in rep.encoder.modalities or target not in targets:
            if len(rep.encoder.modalities) == 1:
                raise InvalidInput("text queries and targets are for cross-modal indexes",
                                   "target")
            raise InvalidInput("target must be 'pairs', 'image' or 'text'", "target")
        # the query codes are the signs of the encoder's projection (sgn(φ(q)P) for SDOH-HC,
        # sgn(INet(q)) or sgn(TNet(q)) for ECMH, …), which also orders ties when asked
        projection = rep.encoder.project(features, modality)
        by_projection = options is not None and options.ties == "projection"
        return self._top_k(rep, pack_codes(projection >= 0), k, exclude=None, target=target,
                           options=options, projection=projection if by_projection else None)

    def search_item(self, name: str, item: int, k: int, min_version: int | None = None,
                    options: SearchOptions | None = None) -> SearchHits:
        """The hits of the stored item (one query), itself excluded."""
        self._check_k(k)
        if options is not None and options.ties == "projection":
            raise InvalidInput("ties='projection' needs query vectors: a stored item's query "
                               "is its code, which has no projection", "ties")
        rep = self._ready(name, min_version)
        storable = 0 <= item < 2**63  # ids are int64: any other number is no stored item
        part = rep.part_of(item) if storable else None
        if part is None and storable and rep.config.partitions > 1:
            raise NotFound(f"item {item} is in partition {rep.partition_of(item)}, which "
                           f"this replica does not serve (it serves {rep.partitions})", "item")
        view = part.views.get(PAIRS) if part is not None else None
        pos = view.positions([item]) if view is not None else np.full(1, -1)
        if view is None or pos[0] < 0:
            raise NotFound(f"no stored item with id {item} (items are searchable once their "
                           "round has committed)", "item")
        return self._top_k(rep, view.codes_at(pos), k, exclude=item, options=options)

    def _top_k(self, rep: Replica, queries: np.ndarray[Any, Any], k: int,
               exclude: int | None, target: str = "pairs",
               options: SearchOptions | None = None,
               projection: np.ndarray[Any, Any] | None = None) -> SearchHits:
        """Exact top-k through the replica's views of the target, over every partition it
        serves (ties by insertion order within one partition; across partitions the scatter's
        lists are merged by (distance, id)); ``exclude`` is an id left out (search by stored
        item). A label filter scans only the items it admits; ``max_distance`` cuts the
        ranked hits at that radius. Each hit names the model version that made its code.
        With the queries' ``projection`` the items at one distance are ordered by their
        code's inner product with it first (:mod:`hashstream.hamming.projection_ties`)."""
        extra = 1 if exclude is not None else 0
        found: list[tuple[Any, Any]] = []
        dist: Any = None
        ids: Any = None
        owner: Any = None
        flt = (options.class_filter(rep.label_kind, rep.class_numbers)
               if options is not None else None)
        parts = [(part, part.views[target] if flt is None else part.views[target].restricted(
                  part.labels.admits(flt.any_of, flt.all_of, len(rep.class_labels))))
                 for part in rep.parts if target in part.views]
        parts = [(part, view) for part, view in parts if len(view)]
        # small answers (a few queries): the partitions are scanned at once (the kernels
        # release the GIL); large batches one after the other, so memory stays q × 2(k+1)
        ready: list[Any] = [None] * len(parts)

        def top(view: HammingView) -> tuple[Any, Any, Any]:
            kk = min(k + extra, len(view))
            if projection is None:
                d, i = view.search(queries, kk)
                return d, i, np.zeros(i.shape, dtype=np.float32)
            return search_projection_ties(view, queries, projection, kk)

        if len(parts) > 1 and queries.shape[0] * (k + extra) * len(parts) <= _SCATTER_MAX:
            ready = list(self._scatter.map(lambda pv: top(pv[1]), parts))
        score: Any = None
        for (part, view), done in zip(parts, ready, strict=True):
            d, i, s = done if done is not None else top(view)
            o = np.full(i.shape, len(found), dtype=np.int64)
            found.append((part, view))
            if dist is None:
                dist, ids, owner, score = d, i, o, s
                continue
            # gather partition by partition (memory stays q × 2(k+1)): the exact top-k of
            # the union is within the partitions' top-ks; ties by score (0 without a
            # projection), then id
            dist, ids, owner, score = (np.concatenate(pair, axis=1) for pair in
                                       ((dist, d), (ids, i), (owner, o), (score, s)))
            key_d = np.where(ids < 0, np.iinfo(np.int32).max, dist)
            order = np.lexsort((ids, -score, key_d), axis=1)[:, :k + extra]
            dist, ids, owner, score = (np.take_along_axis(a, order, axis=1)
                                       for a in (dist, ids, owner, score))
        served = rep.partitions if rep.config.partitions > 1 else None
        if dist is None or ids is None or owner is None:
            return SearchHits.empty(rep.version, queries.shape[0], rep.class_labels, served)
        # the hits kept, in rank order: live entries, not the excluded item, the first k,
        # within the radius (the ranks are sorted by distance, so the radius is a cut)
        keep = ids >= 0
        if exclude is not None:
            keep &= ids != exclude
        keep &= np.cumsum(keep, axis=1) <= k
        if options is not None and options.max_distance is not None:
            keep &= dist <= options.max_distance
        offsets = np.zeros(queries.shape[0] + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=offsets[1:])
        hit_ids, hit_dist, hit_owner = ids[keep], dist[keep], owner[keep]
        made_by = np.zeros(hit_ids.shape, dtype=np.int64)
        n_labels = np.zeros(hit_ids.shape, dtype=np.int64)
        classes_of: list[tuple[Any, Any]] = []
        for i, (part, view) in enumerate(found):
            mine = hit_owner == i if len(found) > 1 else slice(None)
            positions = view.positions(hit_ids[mine])
            made_by[mine] = part.rounds.model_version_at(positions)
            n_labels[mine], classes = part.labels.rows_at(positions)
            classes_of.append((mine, classes))
        label_offsets = np.zeros(hit_ids.shape[0] + 1, dtype=np.int64)
        np.cumsum(n_labels, out=label_offsets[1:])
        if len(found) == 1:
            label_classes = classes_of[0][1]
        else:
            label_classes = np.zeros(int(label_offsets[-1]), dtype=np.int64)
            for mine, classes in classes_of:
                label_classes[concat_ranges(label_offsets[:-1][mine], n_labels[mine])] = classes
        return SearchHits(rep.version, offsets, hit_ids, hit_dist.astype(np.int32, copy=False),
                          made_by, label_offsets, label_classes, rep.class_labels, served)
