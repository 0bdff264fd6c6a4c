"""The worker: turns queued chunks into committed rounds of each index's method, one index at
a time. Every method takes the same path: merge the round's chunks, ``Method.learn``, score the
held-out queries with the new state's encoder, commit a :class:`RoundCommit`.

Workers form a pool: each round of an index runs under that index's **lease** (a Redis key
with a short TTL and a fencing token), taken for the round and given back after it, so every
live worker takes rounds of every index and a worker that joins gets work at its next pass. A
background keeper renews the lease (and the worker's heartbeat) while the round runs. Under
the lease the worker reads the index's version, then claims every chunk another consumer left
pending (a worker that lost its lease or died), reads new ones as its own consumer, merges
training chunks into one round up to ``max_round_items`` (and the round memory budget), runs
the round, scores the held-out queries, and commits everything with the acknowledgement in one
script that checks the version and the lease first: a worker whose lease lapsed can never
commit, so no chunk is committed twice. A kill -9 at any point loses nothing: before the commit,
the chunks are still pending and the next lease holder redoes the round (within the lease TTL, at
once under ``serve``'s supervisor); after it they are committed and acknowledged together.

Item deletes (:mod:`hashstream.service.items`) land between rounds: before its commit a round
drops the rows of ids deleted after their chunk was accepted (a delete cancels the upserts
queued before it) and counts the live items; the commit is refused if a delete landed since
(the delete epoch is checked like the version), and the round filters again.

Poison never stops an index: every round start is counted per chunk before the round runs, so
a round that raises and a worker that dies mid-round both use up an attempt. A chunk that
failed once runs alone next time; one that reaches ``max_attempts`` (or cannot be decoded, or
can never fit the memory budget) moves to the index's dead-letter stream with its history.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashstream.service.chunks import Chunk
from hashstream.service.live_items import LiveItems
from hashstream.service.methods import IndexMethods, decode_state
from hashstream.service.registry import IndexConfig
from hashstream.service.replicas import hamming_kernel
from hashstream.service.round_timing import RoundClock, round_seconds
from hashstream.solver.backend import Backend, get_backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.method import PAIRS, Encoder, LearnResult, Method, stack_rows, target_field
from hashstream.solver.metrics import evaluate
from hashstream.store.codec import CodecError
from hashstream.store.index_store import DeletesLanded, IndexStore, Lease, RoundCommit
from hashstream.store.item_deletes import stream_position
from hashstream.store.partitions import partition_of

log = logging.getLogger("hashstream.worker")
READ_PAGE = 64  # most stream entries per read while a round gathers its chunks
RATE_ROUNDS = 5  # rounds the learn rate (items/s) is averaged over
# Most of its rounds' time a worker spends scoring held-out queries while chunks wait.
SCORE_BUDGET = 0.2


def log_event(event: str, **fields: Any) -> None:
    """One JSON line per event; every line about a round carries index, chunk ids and round."""
    log.info(json.dumps({"ts": round(time.time(), 3), "event": event, **fields}, default=str))


@dataclass
class _IndexCache:
    """What the worker keeps between rounds of one index (valid for ``version`` of the index
    created at ``created`` only: a deleted and re-created index is another): the method's
    state, the database's "pairs" codes and labels (to score held-out queries), the held-out
    query chunks, and the live ids (with the deletes applied so far)."""

    version: int = -1
    created: float = -1.0
    state: Any = None
    db_codes: list[np.ndarray[Any, Any]] = field(default_factory=list)
    db_labels: list[ClassLists] = field(default_factory=list)
    queries: dict[str, dict[str, np.ndarray[Any, Any]]] = field(default_factory=dict)
    # which class numbers the database holds: kept up to date per round, so a round's record
    # does not gather the whole database's labels to count them
    classes_seen: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, bool))
    live: LiveItems = field(default_factory=LiveItems)

    def add_labels(self, labels: ClassLists) -> None:
        self.db_labels.append(labels)
        self.classes_seen = self._marked(labels)

    def n_classes_with(self, labels: ClassLists) -> int:
        """Distinct classes in the database once ``labels`` are added (nothing is changed)."""
        return int(self._marked(labels).sum())

    def _marked(self, labels: ClassLists) -> np.ndarray[Any, Any]:
        seen = np.zeros(max(len(self.classes_seen), labels.n_classes), dtype=bool)
        seen[:len(self.classes_seen)] = self.classes_seen
        seen[labels.classes] = True
        return seen


def query_labels(arrays: dict[str, np.ndarray[Any, Any]]) -> ClassLists:
    """The class lists of a stored held-out query chunk (dense 0/1 rows if stored before labels
    became class lists)."""
    if "label_classes" not in arrays:
        return ClassLists.from_dense(arrays["labels"])
    return ClassLists.of(arrays["label_indptr"], arrays["label_classes"])


def _query_arrays(chunk: Chunk) -> dict[str, np.ndarray[Any, Any]]:
    out = {"features": chunk.features, "label_indptr": chunk.labels.indptr,
           "label_classes": chunk.labels.classes}
    if chunk.text is not None:
        out["text"] = chunk.text
    return out


class LeaseKeeper:
    """A daemon thread that keeps a worker's heartbeat and its current round's lease alive
    (every third of the lease TTL), whatever the round's main thread is doing."""

    def __init__(self, store: IndexStore, worker_id: str, ttl_ms: int,
                 info: dict[str, Any]) -> None:
        self.store, self.worker_id, self.ttl_ms, self.info = store, worker_id, ttl_ms, info
        self.interval = max(0.05, min(1.0, ttl_ms / 3000))
        self._lease: Lease | None = None
        self._lost: set[int] = set()
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def start(self) -> LeaseKeeper:
        self.beat()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def hold(self, lease: Lease | None) -> None:
        """Renew ``lease`` from now on (None: nothing to renew)."""
        with self._mutex:
            self._lease = lease

    def beat(self) -> None:
        # the heartbeat outlives a few missed beats, never a dead worker by long
        self.store.heartbeat(self.worker_id, ttl_s=max(3.0, 3 * self.interval),
                             info=self.info)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
                with self._mutex:
                    lease = self._lease
                if lease is not None and not self.store.renew_lease(lease):
                    with self._mutex:
                        still_held = self._lease is lease  # not given back meanwhile
                    if still_held and lease.token not in self._lost:
                        self._lost.add(lease.token)
                        log_event("lease_lost", index=lease.name, lease_token=lease.token,
                                  worker=self.worker_id)
            except Exception as exc:  # noqa: BLE001 - Redis away: try again next beat
                log_event("keeper_error", worker=self.worker_id, error=repr(exc))


class RoundRunner:
    """Runs rounds for every index in the store, one lease at a time."""

    def __init__(self, store: IndexStore, *, lease_ttl_ms: int = 3_000,
                 max_round_items: int = 20_000, eval_queries: int = 1000, poll_ms: int = 200,
                 backend: Backend | None = None, max_attempts: int = 3,
                 max_round_bytes: int = 4 << 30, worker_id: str | None = None,
                 max_delete_retries: int = 20, score_budget: float = SCORE_BUDGET) -> None:
        self.store = store
        self.max_delete_retries = max_delete_retries  # commits refused by deletes, per round
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_ttl_ms = lease_ttl_ms
        self.max_round_items = max_round_items
        self.eval_queries = eval_queries
        self.poll_ms = poll_ms
        self.backend = backend or get_backend("numpy")
        self.max_attempts = max_attempts
        self.max_round_bytes = max_round_bytes
        self.cache: dict[str, _IndexCache] = {}
        self.methods = IndexMethods(self.backend)
        # What this worker runs: logged at start and carried by every heartbeat (/readyz).
        self.info = {"backend": self.backend.name, "hamming_kernel": hamming_kernel(),
                     "started": round(time.time(), 3)}
        self.keeper: LeaseKeeper | None = None
        self.rounds_committed = 0
        self.recent_rounds: dict[str, deque[tuple[int, float]]] = {}  # (items, s) per index
        self.score_budget = score_budget
        self.scoring: dict[str, tuple[float, float]] = {}  # (scoring s, round s) per index

    def run_forever(self, stop: threading.Event) -> None:
        log_event("worker_start", worker=self.id, lease_ttl_ms=self.lease_ttl_ms, **self.info)
        self.keeper = LeaseKeeper(self.store, self.id, self.lease_ttl_ms, self.info).start()
        turn = random.randrange(1 << 16)  # workers start their passes at different indexes
        try:
            while not stop.is_set():
                did_work = False
                names = self.store.list_indexes()
                turn += 1
                for name in names[turn % max(1, len(names)):] + names[:turn % max(1, len(names))]:
                    if stop.is_set():
                        break
                    try:
                        did_work |= self.step(name)
                    except Exception as exc:  # noqa: BLE001 - keep serving other indexes
                        log_event("round_error", index=name, error=repr(exc), worker=self.id)
                        self.cache.pop(name, None)
                if not did_work:
                    stop.wait(self.poll_ms / 1000)
        finally:
            self.keeper.stop()
            self.store.drop_heartbeat(self.id)
            log_event("worker_stop", worker=self.id, rounds=self.rounds_committed)

    # --- one pass over one index ----------------------------------------------------------
    def step(self, name: str) -> bool:
        """Run at most one round (or store query chunks) for ``name`` under its lease; True if
        work was done. False at once when nothing is queued or another worker holds the
        lease."""
        if self.store.idle_queue_depth(name) == 0:
            return False
        lease = self.store.take_lease(name, self.id, self.lease_ttl_ms)
        if lease is None:
            return False
        if self.keeper is not None:
            self.keeper.hold(lease)
        try:
            return self._step_leased(name, lease)
        finally:
            if self.keeper is not None:
                self.keeper.hold(None)
            self.store.release_lease(lease)

    def _step_leased(self, name: str, lease: Lease) -> bool:
        # The version before the chunks (a commit by anyone after this read fails ours), read
        # with the config in one round trip.
        version, raw_config = self.store.version_and_config(name)
        if raw_config is None:
            return False
        config, method = self.methods.get(name, raw_config)
        # Chunks read by a worker that lost its lease (or died) are ours now.
        if self.store.claim_stale(name, self.id, idle_ms=0, lease=lease) < 0:
            return False  # the lease lapsed already
        clock = RoundClock()
        dead, queries, train = self._gather(name, config, lease)
        rows = sum(c.n for _, c in train)
        if rows <= config.bits:
            train = []  # wait for more items: a round needs more rows than bits
        if not train and not queries:
            return dead > 0
        clock.lap("read")
        return self._round(name, config, method, version, lease, train, queries, clock)

    def _pages(self, name: str, size: Callable[[], int]
               ) -> Iterator[list[tuple[str, dict[bytes, bytes]]]]:
        """This consumer's pending entries, then new ones, ``size()`` entries a read: a round
        reads what it learns (and at most a page more), never the whole backlog."""
        after: str | None = "0"
        while after is not None:
            page, after = self.store.read_pending_page(name, self.id, size(), after)
            if page:
                yield page
        while page := self.store.read_chunks(name, self.id, size(), new=True):
            yield page

    def _gather(self, name: str, config: IndexConfig, lease: Lease
                ) -> tuple[int, dict[str, Chunk], list[tuple[str, Chunk]]]:
        """Dead-letter what cannot be learned and pick the round's chunks, page by page:
        (dead-lettered, held-out query chunks, training chunks in stream order). Training
        chunks merge up to ``max_round_items`` and the memory budget; a chunk that failed
        before runs alone. Reading stops once the round is full."""
        dead = 0
        queries: dict[str, Chunk] = {}
        train: list[tuple[str, Chunk]] = []
        rows, full = 0, False
        used: dict[str, int] = {}  # rounds started with each chunk read so far
        seen = [0, 0]  # entries and items read so far

        def page_size() -> int:
            """As many entries as the round still has room for at the mean size read so far
            (one to start with): large chunks are read one by one, small ones in pages."""
            if not seen[0]:
                return 1
            mean = max(1.0, seen[1] / seen[0])
            return max(1, min(READ_PAGE, math.ceil((self.max_round_items - rows) / mean)))

        for page in self._pages(name, page_size):
            decoded: list[tuple[str, dict[bytes, bytes], Chunk]] = []
            for eid, fields in page:
                try:  # views of the reply: merging the round copies them once
                    chunk = Chunk.from_fields(fields, copy=False)
                except CodecError as exc:
                    dead += self._dead_letter(lease, eid, fields, f"corrupt stream entry: {exc}")
                    continue
                if chunk.features.shape[1] != config.dim:
                    dead += self._dead_letter(lease, eid, fields, "features have dimension "
                                              f"{chunk.features.shape[1]}, the index {config.dim}")
                    continue
                decoded.append((eid, fields, chunk))
                seen[0], seen[1] = seen[0] + 1, seen[1] + chunk.n
            used.update(self.store.attempts(name, [eid for eid, _, c in decoded
                                                   if c.role == "train"]))
            for eid, fields, chunk in decoded:
                if chunk.role == "query":
                    queries[eid] = chunk
                    continue
                if full:
                    continue
                if used[eid] >= self.max_attempts:  # its rounds failed, or killed their worker
                    dead += self._dead_letter(lease, eid, fields, f"{used[eid]} rounds with "
                                              "this chunk failed or did not finish")
                    continue
                if train and (used[eid] or used[train[0][0]]) and rows > config.bits:
                    full = True  # a chunk that failed before runs alone: its fault stays its own
                    continue
                if train and rows + chunk.n > self.max_round_items:
                    full = True
                    continue
                need = self._round_bytes(config, [c for _, c in train] + [chunk])
                if need > self.max_round_bytes:
                    if not train:
                        dead += self._dead_letter(
                            lease, eid, fields, f"a round with this chunk needs ~"
                            f"{need / 2**30:.1f} GiB, over HASHSTREAM_MAX_ROUND_BYTES "
                            f"({self.max_round_bytes / 2**30:.1f} GiB)")
                    else:
                        full = True
                    continue
                train.append((eid, chunk))
                rows += chunk.n
                full = rows >= self.max_round_items
            if full:
                break
        return dead, queries, train

    def _round_bytes(self, config: IndexConfig, chunks: list[Chunk]) -> int:
        """The method's estimate of a round's peak memory over ``chunks``."""
        return self.methods.method(config).round_bytes(
            sum(c.n for c in chunks), sum(c.labels.nnz for c in chunks),
            max([config.max_classes, *(c.labels.n_classes for c in chunks)]))

    def _dead_letter(self, lease: Lease, eid: str, fields: dict[bytes, bytes],
                     reason: str) -> int:
        moved = self.store.dead_letter(lease.name, eid, fields, reason, lease=lease)
        if moved is not None:
            log_event("chunk_dead_lettered", index=lease.name, chunk=eid, dead_letter=moved,
                      reason=reason, worker=self.id)
        return 1

    def _load_cache(self, name: str, method: Method, version: int,
                    created: float) -> _IndexCache:
        """The index's cache at ``version``: kept when current, caught up with the segments
        committed since (another worker of the pool ran those rounds: O(their items), not the
        whole database), built from scratch otherwise; with the deletes logged so far."""
        cache = self.cache.get(name)
        fresh = cache is None or cache.created != created or cache.version > version
        if cache is None or fresh:
            cache = _IndexCache(version=0, created=created)
        if fresh or cache.version != version:
            cache.state = decode_state(self.store, name, method) if version > 0 else None
            deletes = self.store.deletes.read(name, cache.live.epoch)  # in version order
            oldest = self._oldest_queued(name)
            for v in range(cache.version + 1, version + 1):
                while deletes and deletes[0].version < v:  # the deletes before round v
                    cache.live.apply(deletes.pop(0), oldest)
                seg = self.store.load_segment(name, v)
                cache.db_codes.append(seg["codes"])
                cache.add_labels(ClassLists.of(seg["label_indptr"], seg["label_indices"]))
                cache.live.add(seg["ids"])
            for entry in deletes:
                cache.live.apply(entry, oldest)
            cache.queries = self.store.load_queries(name)
        cache.version = version
        self.cache[name] = cache
        self._catch_up_deletes(name, cache)
        return cache

    def _oldest_queued(self, name: str) -> tuple[int, int] | None:
        oldest = self.store.oldest_queued(name)
        return None if oldest is None else stream_position(oldest)

    def _catch_up_deletes(self, name: str, cache: _IndexCache) -> None:
        """Apply the deletes logged since the cache's (all at its version: the lease holder is
        the only one who commits), and forget those no queued chunk predates."""
        oldest = self._oldest_queued(name)
        for entry in self.store.deletes.read(name, cache.live.epoch):
            cache.live.apply(entry, oldest)
        cache.live.forget_before(oldest)

    def _round(self, name: str, config: IndexConfig, method: Method, version: int, lease: Lease,
               train: list[tuple[str, Chunk]], queries: dict[str, Chunk],
               clock: RoundClock) -> bool:
        query_arrays = {eid: _query_arrays(q) for eid, q in queries.items()}
        query_items = sum(q.n for q in queries.values())
        if not train:  # only held-out queries to store
            ok = self.store.commit_round(name, version, RoundCommit(
                ack_ids=list(queries), query_chunks=query_arrays, ack_items=query_items),
                lease=lease)
            if ok:
                if name in self.cache:
                    self.cache[name].queries.update(query_arrays)
                log_event("queries_stored", index=name, chunks=list(queries))
            return ok
        chunk_ids = [eid for eid, _ in train]
        if self.store.start_attempt(name, chunk_ids, lease=lease) is None:
            return False  # the lease lapsed before the round began
        try:
            return self._learn_round(name, config, method, version, lease, train,
                                     query_arrays, query_items, clock)
        except Exception as exc:  # noqa: BLE001 - counted against the chunks, then retried
            self.store.record_failure(name, chunk_ids, {
                "ts": round(time.time(), 3), "worker": self.id, "round": version + 1,
                "chunks": chunk_ids, "error": repr(exc)[:2000]})
            log_event("round_failed", index=name, round=version + 1, chunks=chunk_ids,
                      error=repr(exc))
            self.cache.pop(name, None)
            return True

    def _learn_round(self, name: str, config: IndexConfig, method: Method, version: int,
                     lease: Lease, train: list[tuple[str, Chunk]],
                     query_arrays: dict[str, dict[str, np.ndarray[Any, Any]]],
                     query_items: int, clock: RoundClock) -> bool:
        """One round of any method: learn, score, commit (``clock`` started before the
        round's chunks were read; ``query_items``: the held-out items acknowledged with it)."""
        cache = self._load_cache(name, method, version, config.created)
        chunk_ids = [eid for eid, _ in train]
        acked = sum(c.n for _, c in train) + query_items
        # one copy, into the solver's input dtype (queued float16 features widen here)
        features = np.concatenate([c.features for _, c in train], dtype=np.float32)
        labels = ClassLists.concat([c.labels for _, c in train])
        ids = np.concatenate([c.ids for _, c in train if c.ids is not None])
        text_blocks = [c.text for _, c in train if c.text is not None]
        text = stack_rows(text_blocks) if text_blocks else None
        new_version = version + 1
        log_event("round_start", index=name, round=new_version, chunks=chunk_ids,
                  items=int(len(ids)), kind=config.kind, method=config.method, worker=self.id,
                  lease_token=lease.token)
        clock.lap("load")
        result = method.learn(cache.state, features, labels, text=text, ids=ids)
        clock.lap("learn")
        accepted_at = [stream_position(eid) for eid, c in train for _ in range(c.n)]
        model_version = (int(result.state_arrays["model_version"])
                         if "model_version" in result.state_arrays else None)
        model = (None if model_version is None or result.model is None
                 else (model_version, result.model))
        record: dict[str, Any] = {}
        ok, t = False, time.perf_counter()
        for _ in range(self.max_delete_retries):
            # the rows deletes cancelled (their chunk was accepted before the delete), and the
            # live items once the rest is stored: against the deletes logged so far, which
            # the commit checks are still all
            keep = ~cache.live.cancelled(ids, accepted_at)
            segment: dict[str, np.ndarray[Any, Any]] = {
                target_field(t): result.codes[t][keep] for t in method.targets}
            kept_labels = labels.take(np.flatnonzero(keep))
            segment.update(ids=ids[keep], label_indptr=kept_labels.indptr,
                           label_indices=kept_labels.classes, version=np.asarray(new_version))
            if model_version is not None:
                segment["model_version"] = np.full(int(keep.sum()), model_version,
                                                   dtype=np.int32)
            n_live = cache.live.count_with(ids[keep])
            if not record:
                clock.lap("other")
                score = self._may_score(name, len(chunk_ids) + len(query_arrays), clock)
                record = self._record(new_version, chunk_ids, method, result, cache,
                                      segment[target_field(PAIRS)], kept_labels, n_live,
                                      query_arrays, score)
                record["lease_token"] = lease.token
                self._spent(name, clock.lap("score"), clock.since_start())
                record["seconds"] = round_seconds(clock, result.seconds)
            record.update(n_items=int(keep.sum()), n_database=n_live,
                          cancelled=int((~keep).sum()),
                          partition_items=np.bincount(
                              partition_of(ids[keep], config.partitions),
                              minlength=config.partitions).tolist())
            t = time.perf_counter()
            try:
                ok = self.store.commit_round(name, version, RoundCommit(
                    ack_ids=chunk_ids + list(query_arrays), query_chunks=query_arrays,
                    state=result.state_arrays, segment=segment, record=record, model=model,
                    projection=result.projection, centers=result.centers,
                    delete_epoch=cache.live.epoch, items=n_live, ack_items=acked), lease=lease,
                    partitions=config.partitions)
                break
            except DeletesLanded:
                self._catch_up_deletes(name, cache)
        commit_s = time.perf_counter() - t
        if not ok:
            log_event("round_lost_race", index=name, round=new_version, chunks=chunk_ids,
                      worker=self.id, lease_token=lease.token)
            self.cache.pop(name, None)
            return False
        self.rounds_committed += 1
        self.store.record_commit_seconds(name, new_version, commit_s, self._learn_rate(
            name, len(ids), clock.since_start() + commit_s))
        cache.version, cache.state = new_version, result.state
        cache.db_codes.append(segment[target_field(PAIRS)])
        cache.add_labels(kept_labels)
        cache.live.add(segment["ids"])
        cache.queries.update(query_arrays)
        extra = {"action": record["action"]} if "action" in record else {}
        log_event("round_commit", index=name, round=new_version, chunks=chunk_ids,
                  items=int(len(ids)), cancelled=record["cancelled"], map=record.get("map"),
                  learn_s=record["seconds"]["learn"], commit_s=round(commit_s, 4),
                  model_version=record["model_version"], **extra, worker=self.id,
                  lease_token=lease.token)
        return True

    def _may_score(self, name: str, consumed: int, clock: RoundClock) -> bool:
        """Whether this round scores the held-out queries: always when no chunk waits beyond
        the round's (the latest model of a burst is always scored), else only while this
        worker's scoring of the index has taken at most ``score_budget`` of its rounds' time
        (the score runs against the whole database: its cost grows with it, the round's
        does not)."""
        if self.store.queue_depth(name) <= consumed:
            return True
        spent, total = self.scoring.get(name, (0.0, 0.0))
        return spent <= self.score_budget * (total + clock.since_start())

    def _spent(self, name: str, scoring: float, round_s: float) -> None:
        spent, total = self.scoring.get(name, (0.0, 0.0))
        self.scoring[name] = (spent + scoring, total + round_s)

    def _learn_rate(self, name: str, items: int, seconds: float) -> float:
        """Items per second of this worker's latest rounds of ``name`` (up to
        ``RATE_ROUNDS``, this one included): the rate the index's backlog drains at, which
        ingest's backpressure divides the backlog by."""
        recent = self.recent_rounds.setdefault(name, deque(maxlen=RATE_ROUNDS))
        recent.append((items, seconds))
        return sum(n for n, _ in recent) / max(1e-6, sum(s for _, s in recent))

    def _record(self, version: int, chunk_ids: list[str], method: Method, result: LearnResult,
                cache: _IndexCache, codes: np.ndarray[Any, Any], labels: ClassLists,
                n_database: int, new_queries: dict[str, dict[str, np.ndarray[Any, Any]]],
                score: bool = True) -> dict[str, Any]:
        """The round record: metrics on held-out queries, loss terms, sizes (``n_database``:
        live items once committed), bit balance, and the method's own fields
        (``LearnResult.record``). ``codes``/``labels``: the round's stored items."""
        n_classes = cache.n_classes_with(labels)
        bits = np.unpackbits(codes, axis=1)[:, :method.bits]
        record: dict[str, Any] = {
            "round": version, "model_version": version, "chunks": chunk_ids,
            "n_items": int(codes.shape[0]), "n_database": n_database,
            "n_classes": n_classes, "ts": time.time(),
            "loss": {k: float(v) for k, v in result.loss.items()},
            "bit_balance": bits.mean(axis=0).round(4).tolist() if len(bits) else [],
            "map": None, "map_tie_aware": None, "precision_r2": None, "n_queries": 0,
            "worker": self.id,
            **result.record,
        }
        all_queries = {**cache.queries, **new_queries}
        if all_queries and not score:
            record["score_skipped"] = True  # over the scoring budget while chunks wait
        elif all_queries:  # only now is the whole database gathered
            record.update(self._scores(method, result.encoder,
                                       np.concatenate([*cache.db_codes, codes]),
                                       ClassLists.concat([*cache.db_labels, labels]),
                                       list(all_queries.values())))
        return record

    def _scores(self, method: Method, encoder: Encoder, db_codes: np.ndarray[Any, Any],
                db_labels: ClassLists, queries: list[dict[str, np.ndarray[Any, Any]]]
                ) -> dict[str, Any]:
        """mAP of the held-out queries against the database's "pairs" codes, per query
        modality the encoder takes (a fixed, seeded sample of at most ``eval_queries``): one
        modality gives ``map``; image and text give ``map_i2t``, ``map_t2i`` and their mean.
        ``map_tie_aware`` is the same mean of the tie-aware mAP (random order within ties)."""
        n = sum(len(q["features"]) for q in queries)
        pick = (np.sort(np.random.default_rng(0).choice(n, self.eval_queries, replace=False))
                if n > self.eval_queries else None)
        ql = ClassLists.concat([query_labels(q) for q in queries])
        if pick is not None:
            ql = ql.take(pick)
        width = max(ql.n_classes, db_labels.n_classes)
        ql, db_labels = ql.widen(width), db_labels.widen(width)
        scores = {}
        for modality in encoder.modalities:
            key = "features" if modality == "image" else modality
            if not all(key in q for q in queries):
                continue
            rows = stack_rows([q[key] for q in queries])
            if pick is not None:
                rows = rows[pick]
            scores[modality] = evaluate(encoder.encode(rows, modality), ql, db_codes,
                                        db_labels, bits=method.bits)
        out: dict[str, Any] = {"n_queries": int(ql.n)}
        if not scores:
            return out
        if len(encoder.modalities) > 1:
            for modality, tag in (("image", "map_i2t"), ("text", "map_t2i")):
                out[tag] = scores[modality].map if modality in scores else None
        first = next(iter(scores.values()))
        out.update(map=float(np.mean([s.map for s in scores.values()])),
                   map_tie_aware=float(np.mean([s.map_tie_aware for s in scores.values()])),
                   precision_r2=float(np.mean([s.precision_r2 for s in scores.values()])),
                   pr_curve=first.as_dict()["pr_curve"])
        return out
