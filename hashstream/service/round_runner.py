"""The worker: turns queued chunks into committed SDOH-HC rounds, one index at a time.

For each index it holds a Redis lock (with expiry, renewed every pass), reads the stream's
pending entries first (those a killed worker left unacknowledged) and then new ones, merges
training chunks into one round up to ``max_round_items``, runs the round, scores the held-out
queries, and commits everything with the acknowledgement in one MULTI/EXEC. A kill -9 at any
point loses nothing: before EXEC the chunks are still pending and the round is redone; after it
they are committed and acknowledged together.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashstream.memory.codec import CodecError
from hashstream.memory.index_store import IndexStore
from hashstream.service.chunks import Chunk, decode_fields_safely
from hashstream.service.cross_modal_runner import (
    DeepCache,
    load_cache,
    pad_token_rows,
    run_round,
)
from hashstream.service.indexes import IndexConfig
from hashstream.service.labels import csr_to_dense, labels_to_csr, pad_labels, widen
from hashstream.solver.backend import Backend, get_backend
from hashstream.solver.metrics import evaluate, pack_codes
from hashstream.solver.sdoh_hc import InputError, encode, learn_chunk
from hashstream.solver.state import SDOHState

log = logging.getLogger("hashstream.worker")
CONSUMER = "runner"  # one consumer name: the lock makes it one process at a time


def log_event(event: str, **fields: Any) -> None:
    """One JSON line per event; every line about a round carries index, chunk ids and round."""
    log.info(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, default=str))


@dataclass
class _IndexCache:
    """What the worker keeps between rounds of one index (valid for ``version`` only)."""

    version: int = -1
    state: SDOHState | None = None
    db_codes: list[np.ndarray[Any, Any]] = field(default_factory=list)
    db_indptr: list[np.ndarray[Any, Any]] = field(default_factory=list)
    db_indices: list[np.ndarray[Any, Any]] = field(default_factory=list)
    queries: dict[str, dict[str, np.ndarray[Any, Any]]] = field(default_factory=dict)


class RoundRunner:
    """Runs rounds for every index in the store."""

    def __init__(self, store: IndexStore, *, lock_ttl_ms: int = 30_000,
                 max_round_items: int = 20_000, eval_queries: int = 1000, poll_ms: int = 200,
                 backend: Backend | None = None, worker_id: str | None = None) -> None:
        self.store = store
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lock_ttl_ms = lock_ttl_ms
        self.max_round_items = max_round_items
        self.eval_queries = eval_queries
        self.poll_ms = poll_ms
        self.backend = backend or get_backend("numpy")
        self.cache: dict[str, _IndexCache] = {}
        self.deep_cache: dict[str, DeepCache] = {}

    def run_forever(self, stop: threading.Event) -> None:
        log_event("worker_start", worker=self.id, backend=self.backend.name)
        try:
            while not stop.is_set():
                self.store.heartbeat(self.id, ttl_s=max(5, self.lock_ttl_ms // 1000))
                did_work = False
                for name in self.store.list_indexes():
                    try:
                        did_work |= self.step(name)
                    except Exception as exc:  # noqa: BLE001 - keep serving other indexes
                        log_event("round_error", index=name, error=repr(exc))
                        self.cache.pop(name, None)
                if not did_work:
                    stop.wait(self.poll_ms / 1000)
        finally:
            for name in list(self.cache):
                self.store.release_lock(name, self.id)
            log_event("worker_stop", worker=self.id)

    # --- one pass over one index ----------------------------------------------------------
    def step(self, name: str) -> bool:
        """Run at most one round (or store query chunks) for ``name``; True if work was done."""
        if not self.store.acquire_lock(name, self.id, self.lock_ttl_ms):
            return False
        raw_config = self.store.config(name)
        if raw_config is None:
            return False
        config = IndexConfig.from_json(raw_config)
        entries = self.store.read_chunks(name, CONSUMER, 1000, new=False)
        entries += self.store.read_chunks(name, CONSUMER, 1000, new=True)
        if not entries:
            return False
        train: list[tuple[str, Chunk]] = []
        queries: dict[str, Chunk] = {}
        bad: list[str] = []
        rows = 0
        for eid, fields in entries:
            try:
                chunk = decode_fields_safely(fields)
            except CodecError as exc:
                log_event("chunk_corrupt", index=name, chunk=eid, error=str(exc))
                bad.append(eid)
                continue
            if chunk.role == "query":
                queries[eid] = chunk
            elif not train or rows + chunk.n <= self.max_round_items:
                train.append((eid, chunk))
                rows += chunk.n
        min_rows = config.settings.bits + 1
        if rows < min_rows:
            train, rows = [], 0  # wait for more items: a round needs more rows than bits
        if not train and not queries and not bad:
            return False
        return self._round(name, config, train, queries, bad)


    def _load_cache(self, name: str, version: int) -> _IndexCache:
        cache = self.cache.get(name)
        if cache is not None and cache.version == version:
            return cache
        cache = _IndexCache(version=version)
        if version > 0:
            cache.state = SDOHState.from_arrays(self.store.load_state(name))
            for v in range(1, version + 1):
                seg = self.store.load_segment(name, v)
                cache.db_codes.append(seg["codes"])
                cache.db_indptr.append(seg["label_indptr"])
                cache.db_indices.append(seg["label_indices"])
        cache.queries = self.store.load_queries(name)
        self.cache[name] = cache
        return cache

    def _round(self, name: str, config: IndexConfig, train: list[tuple[str, Chunk]],
               queries: dict[str, Chunk], bad: list[str]) -> bool:
        version = self.store.version(name)
        if config.cross_modal is not None and train:
            return self._deep_round(name, config, version, train, queries, bad)
        cache = self._load_cache(name, version) if config.cross_modal is None else _IndexCache()
        chunk_ids = [eid for eid, _ in train]
        query_arrays = {eid: {"features": q.features, "labels": q.labels,
                              **({"text": q.text} if q.text is not None else {})}
                        for eid, q in queries.items()}
        if not train:  # only held-out queries (or corrupt entries) to store
            ok = self.store.commit_round(name, version, state=None, projection=None,
                                         centers=None, segment=None, record=None,
                                         ack_ids=list(queries) + bad, query_chunks=query_arrays)
            if ok:
                cache.queries.update(query_arrays)
                log_event("queries_stored", index=name, chunks=list(queries))
            return ok
        started = time.perf_counter()
        features = np.concatenate([c.features for _, c in train])
        labels = pad_labels([c.labels for _, c in train])
        ids = np.concatenate([c.ids for _, c in train if c.ids is not None])
        new_version = version + 1
        log_event("round_start", index=name, round=new_version, chunks=chunk_ids,
                  items=int(len(ids)))
        try:
            result = learn_chunk(cache.state, features, labels, config.settings, self.backend)
        except InputError as exc:  # cannot happen for validated chunks; never loop on it
            log_event("round_rejected", index=name, round=new_version, chunks=chunk_ids,
                      error=str(exc))
            self.store.commit_round(name, version, state=None, projection=None, centers=None,
                                    segment=None, record=None, ack_ids=chunk_ids,
                                    query_chunks={})
            return True
        state = result.state.to_host(self.backend)
        codes = pack_codes(result.codes)
        indptr, indices = labels_to_csr(labels)
        segment = {"codes": codes, "ids": ids, "label_indptr": indptr,
                   "label_indices": indices, "version": np.asarray(new_version)}
        learn_seconds = time.perf_counter() - started
        record = self._record(name, new_version, chunk_ids, state, result, cache, codes,
                              indptr, indices, query_arrays)
        record["seconds"] = {**{k: round(v, 6) for k, v in result.seconds.items()},
                             "learn": round(learn_seconds, 6)}
        t = time.perf_counter()
        ok = self.store.commit_round(
            name, version, state=state.to_arrays(), projection=state.projection,
            centers=state.teacher, segment=segment, record=record,
            ack_ids=chunk_ids + list(queries) + bad, query_chunks=query_arrays)
        commit_s = time.perf_counter() - t
        if not ok:
            log_event("round_lost_race", index=name, round=new_version, chunks=chunk_ids)
            self.cache.pop(name, None)
            return False
        self.store.record_commit_seconds(name, new_version, commit_s)
        cache.version, cache.state = new_version, state
        cache.db_codes.append(codes)
        cache.db_indptr.append(indptr)
        cache.db_indices.append(indices)
        cache.queries.update(query_arrays)
        log_event("round_commit", index=name, round=new_version, chunks=chunk_ids,
                  items=int(len(ids)), map=record.get("map"), learn_s=round(learn_seconds, 4),
                  commit_s=round(commit_s, 4))
        return True

    def _deep_round(self, name: str, config: IndexConfig, version: int,
                    train: list[tuple[str, Chunk]], queries: dict[str, Chunk],
                    bad: list[str]) -> bool:
        """A round of a cross-modal (ECMH) index."""
        assert config.cross_modal is not None
        cache = self.deep_cache.get(name)
        if cache is None or cache.version != version:
            cache = load_cache(self.store, name, version)
        stored = self.store.load_queries(name)
        query_arrays = {eid: {"features": q.features, "labels": q.labels,
                              "text": q.text if q.text is not None else np.zeros((q.n, 0))}
                        for eid, q in queries.items()}
        chunk_ids = [eid for eid, _ in train]
        text_blocks = [c.text for _, c in train if c.text is not None]
        if config.cross_modal.text_kind == "tokens":
            text = pad_token_rows(text_blocks)
        else:
            text = np.concatenate(text_blocks)
        ids = np.concatenate([c.ids for _, c in train if c.ids is not None])
        log_event("round_start", index=name, round=version + 1, chunks=chunk_ids,
                  items=int(len(ids)), kind="cross-modal")
        result = run_round(cache, config.cross_modal, config.settings.bits, config.dim,
                           np.concatenate([c.features for _, c in train]), text,
                           pad_labels([c.labels for _, c in train]), ids,
                           {**stored, **query_arrays})
        result.record["chunks"] = chunk_ids
        t = time.perf_counter()
        ok = self.store.commit_round(
            name, version, state=result.state, projection=None, centers=None,
            segment=result.segment, record=result.record, ack_ids=chunk_ids + list(queries) + bad,
            query_chunks=query_arrays, deep_model=result.deep_model)
        if not ok:
            log_event("round_lost_race", index=name, round=version + 1, chunks=chunk_ids)
            self.deep_cache.pop(name, None)
            return False
        self.store.record_commit_seconds(name, version + 1, time.perf_counter() - t)
        self.deep_cache[name] = result.cache
        log_event("round_commit", index=name, round=version + 1, chunks=chunk_ids,
                  items=int(len(ids)), map=result.record.get("map"),
                  action=result.record["action"], model_version=result.record["model_version"])
        return True

    def _record(self, name: str, version: int, chunk_ids: list[str], state: SDOHState,
                result: Any, cache: _IndexCache, codes: np.ndarray[Any, Any],
                indptr: np.ndarray[Any, Any], indices: np.ndarray[Any, Any],
                new_queries: dict[str, dict[str, np.ndarray[Any, Any]]]) -> dict[str, Any]:
        """The round record: metrics on held-out queries, loss terms, sizes, memory health."""
        c = state.n_classes
        b = result.codes
        ex_labels = np.asarray(state.exemplar_labels)
        # Sizes come from what the state already sums; the whole database is gathered only
        # below, when there are held-out queries to rank against it.
        record: dict[str, Any] = {
            "round": version, "model_version": version, "chunks": chunk_ids,
            "n_items": int(b.shape[0]), "n_database": state.n_seen,
            "n_classes": int((np.asarray(state.label_sum) > 0).sum()), "ts": time.time(),
            "loss": {k: float(v) for k, v in result.loss.items()},
            "bit_balance": ((b > 0).mean(axis=0)).round(4).tolist(),
            "exemplar_histogram": ex_labels.sum(axis=0).astype(int).tolist(),
            "map": None, "precision_r2": None, "n_queries": 0,
        }
        all_queries = {**cache.queries, **new_queries}
        if all_queries:
            db_codes = np.concatenate([*cache.db_codes, codes])
            db_labels = np.concatenate(
                [csr_to_dense(p, i, c) for p, i in zip([*cache.db_indptr, indptr],
                                                       [*cache.db_indices, indices],
                                                       strict=True)])
            qf = np.concatenate([q["features"] for q in all_queries.values()])
            ql = pad_labels([q["labels"] for q in all_queries.values()])
            if len(qf) > self.eval_queries:  # a fixed, seeded sample keeps the curve comparable
                pick = np.sort(np.random.default_rng(0).choice(len(qf), self.eval_queries,
                                                               replace=False))
                qf, ql = qf[pick], ql[pick]
            width = max(ql.shape[1], db_labels.shape[1])
            ql, dl = widen(ql, width), widen(db_labels, width)
            qcodes = encode(state, qf, self.backend)
            scores = evaluate(pack_codes(qcodes), ql, db_codes, dl, bits=state.bits)
            record.update(map=scores.map, precision_r2=scores.precision_r2,
                          n_queries=int(len(qf)), pr_curve=scores.as_dict()["pr_curve"])
        return record
