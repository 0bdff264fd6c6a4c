"""The worker: turns queued chunks into committed SDOH-HC rounds, one index at a time.

For each index it holds a Redis lock (with expiry, renewed every pass), reads the stream's
pending entries first (those a killed worker left unacknowledged) and then new ones, merges
training chunks into one round up to ``max_round_items`` (and the round memory budget), runs
the round, scores the held-out queries, and commits everything with the acknowledgement in one
MULTI/EXEC. A kill -9 at any point loses nothing: before EXEC the chunks are still pending and
the round is redone; after it they are committed and acknowledged together.

Poison never stops an index: every round start is counted per chunk before the round runs, so
a round that raises and a worker that dies mid-round both use up an attempt. A chunk that
failed once runs alone next time; one that reaches ``max_attempts`` (or cannot be decoded, or
can never fit the memory budget) moves to the index's dead-letter stream with its history.
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

from hashstream.service.chunks import Chunk
from hashstream.service.cross_modal_runner import (
    DeepCache,
    load_cache,
    pad_token_rows,
    run_round,
)
from hashstream.service.registry import IndexConfig
from hashstream.service.replicas import hamming_kernel
from hashstream.service.round_budget import estimate_round_bytes
from hashstream.solver.backend import Backend, get_backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.metrics import evaluate, pack_codes
from hashstream.solver.sdoh_hc.round import encode, learn_chunk
from hashstream.solver.sdoh_hc.state import SDOHState
from hashstream.store.codec import CodecError
from hashstream.store.index_store import IndexStore

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
    db_labels: list[ClassLists] = field(default_factory=list)
    queries: dict[str, dict[str, np.ndarray[Any, Any]]] = field(default_factory=dict)


def query_labels(arrays: dict[str, np.ndarray[Any, Any]]) -> ClassLists:
    """The class lists of a stored held-out query chunk (dense 0/1 rows if stored before labels
    became class lists)."""
    if "label_classes" not in arrays:
        return ClassLists.from_dense(arrays["labels"])
    classes = arrays["label_classes"]
    return ClassLists(arrays["label_indptr"], classes,
                      int(classes.max()) + 1 if classes.size else 0)


def _query_arrays(chunk: Chunk) -> dict[str, np.ndarray[Any, Any]]:
    out = {"features": chunk.features, "label_indptr": chunk.labels.indptr,
           "label_classes": chunk.labels.classes}
    if chunk.text is not None:
        out["text"] = chunk.text
    return out


class RoundRunner:
    """Runs rounds for every index in the store."""

    def __init__(self, store: IndexStore, *, lock_ttl_ms: int = 30_000,
                 max_round_items: int = 20_000, eval_queries: int = 1000, poll_ms: int = 200,
                 backend: Backend | None = None, max_attempts: int = 3,
                 max_round_bytes: int = 4 << 30, worker_id: str | None = None) -> None:
        self.store = store
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lock_ttl_ms = lock_ttl_ms
        self.max_round_items = max_round_items
        self.eval_queries = eval_queries
        self.poll_ms = poll_ms
        self.backend = backend or get_backend("numpy")
        self.max_attempts = max_attempts
        self.max_round_bytes = max_round_bytes
        self.cache: dict[str, _IndexCache] = {}
        self.deep_cache: dict[str, DeepCache] = {}
        # What this worker runs: logged at start and carried by every heartbeat (/readyz).
        self.info = {"backend": self.backend.name, "hamming_kernel": hamming_kernel()}

    def run_forever(self, stop: threading.Event) -> None:
        log_event("worker_start", worker=self.id, **self.info)
        try:
            while not stop.is_set():
                self.store.heartbeat(self.id, ttl_s=max(5, self.lock_ttl_ms // 1000),
                                     info=self.info)
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
        dead = 0
        decoded: list[tuple[str, dict[bytes, bytes], Chunk]] = []
        for eid, fields in entries:
            try:
                chunk = Chunk.from_fields(fields)
            except CodecError as exc:
                dead += self._dead_letter(name, eid, fields, f"corrupt stream entry: {exc}")
                continue
            if chunk.features.shape[1] != config.dim:
                dead += self._dead_letter(name, eid, fields, f"features have dimension "
                                          f"{chunk.features.shape[1]}, the index {config.dim}")
                continue
            decoded.append((eid, fields, chunk))
        used = self.store.attempts(name, [eid for eid, _, c in decoded if c.role == "train"])
        queries: dict[str, Chunk] = {}
        train: list[tuple[str, Chunk]] = []
        rows = 0
        for eid, fields, chunk in decoded:
            if chunk.role == "query":
                queries[eid] = chunk
                continue
            if used[eid] >= self.max_attempts:  # its rounds failed, or killed their worker
                dead += self._dead_letter(name, eid, fields, f"{used[eid]} rounds with this "
                                          "chunk failed or did not finish")
                continue
            if train and (used[eid] or used[train[0][0]]) and rows > config.settings.bits:
                continue  # a chunk that failed before runs alone, so its fault stays its own
            if train and rows + chunk.n > self.max_round_items:
                continue
            need = self._round_bytes(config, [c for _, c in train] + [chunk])
            if need > self.max_round_bytes:
                if not train:
                    dead += self._dead_letter(
                        name, eid, fields, f"a round with this chunk needs ~{need / 2**30:.1f} "
                        f"GiB, over HASHSTREAM_MAX_ROUND_BYTES ({self.max_round_bytes / 2**30:.1f}"
                        " GiB)")
                continue
            train.append((eid, chunk))
            rows += chunk.n
        if rows <= config.settings.bits:
            train = []  # wait for more items: a round needs more rows than bits
        if not train and not queries:
            return dead > 0
        return self._round(name, config, train, queries)

    def _round_bytes(self, config: IndexConfig, chunks: list[Chunk]) -> int:
        s = config.settings
        n = sum(c.n for c in chunks)
        m = s.n_anchors if s.feature_map == "rbf" else config.dim
        return estimate_round_bytes(
            n=n, dim=config.dim, features_mapped=m, bits=s.bits,
            labels=sum(c.labels.nnz for c in chunks),
            classes=max([config.max_classes, *(c.labels.n_classes for c in chunks)]),
            exemplars=s.n1 + s.n2)

    def _dead_letter(self, name: str, eid: str, fields: dict[bytes, bytes], reason: str) -> int:
        moved = self.store.dead_letter(name, eid, fields, reason)
        if moved is not None:
            log_event("chunk_dead_lettered", index=name, chunk=eid, dead_letter=moved,
                      reason=reason)
        return 1

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
                cache.db_labels.append(ClassLists(seg["label_indptr"], seg["label_indices"],
                                                  cache.state.n_classes))
        cache.queries = self.store.load_queries(name)
        self.cache[name] = cache
        return cache

    def _round(self, name: str, config: IndexConfig, train: list[tuple[str, Chunk]],
               queries: dict[str, Chunk]) -> bool:
        version = self.store.version(name)
        query_arrays = {eid: _query_arrays(q) for eid, q in queries.items()}
        if not train:  # only held-out queries to store
            ok = self.store.commit_round(name, version, state=None, projection=None,
                                         centers=None, segment=None, record=None,
                                         ack_ids=list(queries), query_chunks=query_arrays)
            if ok:
                if name in self.cache:
                    self.cache[name].queries.update(query_arrays)
                log_event("queries_stored", index=name, chunks=list(queries))
            return ok
        chunk_ids = [eid for eid, _ in train]
        self.store.start_attempt(name, chunk_ids)
        started = time.perf_counter()
        try:
            if config.cross_modal is not None:
                return self._deep_round(name, config, version, train, query_arrays)
            return self._sdoh_round(name, config, version, train, query_arrays, started)
        except Exception as exc:  # noqa: BLE001 - counted against the chunks, then retried
            self.store.record_failure(name, chunk_ids, {
                "ts": round(time.time(), 3), "worker": self.id, "round": version + 1,
                "chunks": chunk_ids, "error": repr(exc)[:2000]})
            log_event("round_failed", index=name, round=version + 1, chunks=chunk_ids,
                      error=repr(exc))
            self.cache.pop(name, None)
            self.deep_cache.pop(name, None)
            return True

    def _sdoh_round(self, name: str, config: IndexConfig, version: int,
                    train: list[tuple[str, Chunk]],
                    query_arrays: dict[str, dict[str, np.ndarray[Any, Any]]],
                    started: float) -> bool:
        cache = self._load_cache(name, version)
        chunk_ids = [eid for eid, _ in train]
        features = np.concatenate([c.features for _, c in train])
        labels = ClassLists.concat([c.labels for _, c in train])
        ids = np.concatenate([c.ids for _, c in train if c.ids is not None])
        new_version = version + 1
        log_event("round_start", index=name, round=new_version, chunks=chunk_ids,
                  items=int(len(ids)), worker=self.id)
        result = learn_chunk(cache.state, features, labels, config.settings, self.backend)
        state = result.state.to_host(self.backend)
        codes = pack_codes(result.codes)
        segment = {"codes": codes, "ids": ids, "label_indptr": labels.indptr,
                   "label_indices": labels.classes, "version": np.asarray(new_version)}
        learn_seconds = time.perf_counter() - started
        record = self._record(new_version, chunk_ids, state, result, cache, codes, labels,
                              query_arrays)
        record["seconds"] = {**{k: round(v, 6) for k, v in result.seconds.items()},
                             "learn": round(learn_seconds, 6)}
        t = time.perf_counter()
        ok = self.store.commit_round(
            name, version, state=state.to_arrays(), projection=state.projection,
            centers=state.teacher, segment=segment, record=record,
            ack_ids=chunk_ids + list(query_arrays), query_chunks=query_arrays)
        commit_s = time.perf_counter() - t
        if not ok:
            log_event("round_lost_race", index=name, round=new_version, chunks=chunk_ids)
            self.cache.pop(name, None)
            return False
        self.store.record_commit_seconds(name, new_version, commit_s)
        cache.version, cache.state = new_version, state
        cache.db_codes.append(codes)
        cache.db_labels.append(labels)
        cache.queries.update(query_arrays)
        log_event("round_commit", index=name, round=new_version, chunks=chunk_ids,
                  items=int(len(ids)), map=record.get("map"), learn_s=round(learn_seconds, 4),
                  commit_s=round(commit_s, 4), worker=self.id)
        return True

    def _deep_round(self, name: str, config: IndexConfig, version: int,
                    train: list[tuple[str, Chunk]],
                    query_arrays: dict[str, dict[str, np.ndarray[Any, Any]]]) -> bool:
        """A round of a cross-modal (ECMH) index."""
        assert config.cross_modal is not None
        cache = self.deep_cache.get(name)
        if cache is None or cache.version != version:
            cache = load_cache(self.store, name, version)
        stored = {**self.store.load_queries(name), **query_arrays}
        queries = [(q["features"], q.get("text", np.zeros((len(q["features"]), 0))),
                    query_labels(q)) for q in stored.values()]
        chunk_ids = [eid for eid, _ in train]
        text_blocks = [c.text for _, c in train if c.text is not None]
        if config.cross_modal.text_kind == "tokens":
            text = pad_token_rows(text_blocks)
        else:
            text = np.concatenate(text_blocks)
        ids = np.concatenate([c.ids for _, c in train if c.ids is not None])
        log_event("round_start", index=name, round=version + 1, chunks=chunk_ids,
                  items=int(len(ids)), kind="cross-modal", worker=self.id)
        result = run_round(cache, config.cross_modal, config.settings.bits, config.dim,
                           np.concatenate([c.features for _, c in train]), text,
                           ClassLists.concat([c.labels for _, c in train]), ids, queries)
        result.record["chunks"] = chunk_ids
        t = time.perf_counter()
        ok = self.store.commit_round(
            name, version, state=result.state, projection=None, centers=None,
            segment=result.segment, record=result.record,
            ack_ids=chunk_ids + list(query_arrays), query_chunks=query_arrays,
            deep_model=result.deep_model)
        if not ok:
            log_event("round_lost_race", index=name, round=version + 1, chunks=chunk_ids)
            self.deep_cache.pop(name, None)
            return False
        self.store.record_commit_seconds(name, version + 1, time.perf_counter() - t)
        self.deep_cache[name] = result.cache
        log_event("round_commit", index=name, round=version + 1, chunks=chunk_ids,
                  items=int(len(ids)), map=result.record.get("map"),
                  action=result.record["action"], model_version=result.record["model_version"],
                  worker=self.id)
        return True

    def _record(self, version: int, chunk_ids: list[str], state: SDOHState, result: Any,
                cache: _IndexCache, codes: np.ndarray[Any, Any], labels: ClassLists,
                new_queries: dict[str, dict[str, np.ndarray[Any, Any]]]) -> dict[str, Any]:
        """The round record: metrics on held-out queries, loss terms, sizes, memory health."""
        c = state.n_classes
        b = result.codes
        ex_classes = state.exemplar_labels.classes
        # Sizes come from what the state already sums; the whole database is gathered only
        # below, when there are held-out queries to rank against it.
        record: dict[str, Any] = {
            "round": version, "model_version": version, "chunks": chunk_ids,
            "n_items": int(b.shape[0]), "n_database": state.n_seen,
            "n_classes": int((np.asarray(state.label_sum) > 0).sum()), "ts": time.time(),
            "loss": {k: float(v) for k, v in result.loss.items()},
            "bit_balance": ((b > 0).mean(axis=0)).round(4).tolist(),
            "exemplar_histogram": np.bincount(ex_classes, minlength=c).astype(int).tolist(),
            "map": None, "precision_r2": None, "n_queries": 0, "worker": self.id,
        }
        all_queries = {**cache.queries, **new_queries}
        if all_queries:
            db_codes = np.concatenate([*cache.db_codes, codes])
            db_labels = ClassLists.concat([*cache.db_labels, labels])
            qf = np.concatenate([q["features"] for q in all_queries.values()])
            ql = ClassLists.concat([query_labels(q) for q in all_queries.values()])
            if len(qf) > self.eval_queries:  # a fixed, seeded sample keeps the curve comparable
                pick = np.sort(np.random.default_rng(0).choice(len(qf), self.eval_queries,
                                                               replace=False))
                qf, ql = qf[pick], ql.take(pick)
            width = max(ql.n_classes, db_labels.n_classes)
            qcodes = encode(state, qf, self.backend)
            scores = evaluate(pack_codes(qcodes), ql.widen(width), db_codes,
                              db_labels.widen(width), bits=state.bits)
            record.update(map=scores.map, precision_r2=scores.precision_r2,
                          n_queries=int(len(qf)), pr_curve=scores.as_dict()["pr_curve"])
        return record
