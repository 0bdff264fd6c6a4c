"""The index registry and ingest: create/list/describe/delete indexes, queue validated chunks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hashstream.service.backlog import BacklogLimits, refusal
from hashstream.service.chunks import Chunk, ClientLabels, ParsedChunk, validate_chunk
from hashstream.service.cross_modal import CrossModalSettings, validate_text
from hashstream.service.errors import Conflict, InvalidInput, NotFound
from hashstream.service.ingest_keys import (
    SERVER_KEY_LIFETIME_S,
    OutcomeUnknown,
    fingerprint,
    record,
    replayed,
    server_key,
)
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.feature_map import FeatureMapKind
from hashstream.solver.sdoh_hc.settings import (
    AnchorGrowth,
    ExemplarKeep,
    ExemplarPolicy,
    OldSimilarity,
    OldWeight,
    QueryEncoder,
    SDOHSettings,
    TermScaling,
)
from hashstream.store.index_store import (
    ClassMapError,
    IndexSnapshot,
    IndexStore,
    ReplyLost,
)
from hashstream.store.keys import INDEX_NAME

# The setting vocabularies the HTTP schemas accept (the solver defines them).
__all__ = ["AnchorGrowth", "ExemplarKeep", "ExemplarPolicy", "FeatureMapKind", "IndexConfig",
           "IndexService", "OldSimilarity", "OldWeight", "QueryEncoder", "TermScaling"]

IndexKind = Literal["sdoh-hc", "cross-modal", "lsh"]
QueueDtype = Literal["float32", "float16"]
QUEUE_DTYPES = ("float32", "float16")
FLOAT16_MAX = 65504.0  # the largest finite float16
MethodName = Literal["sdoh-hc", "ecmh", "lsh"]
DEFAULT_MAX_CLASSES = 5_000
MAX_CLASSES_LIMIT = 100_000
MAX_PARTITIONS = 64
# Settings a stored config may lack, with the value it was built with: a setting added later
# gets its new default only in indexes created after it.
LEGACY_SETTINGS: dict[str, Any] = {"query_encoder": "linear", "term_scaling": "paper",
                                   "anchor_growth": "off", "delta": None,
                                   "exemplar_keep": "random"}


@dataclass(frozen=True)
class IndexConfig:
    """Immutable settings of an index: its method, feature (image) dimension and settings.

    ``method`` is the registered hashing method ("sdoh-hc", "ecmh", "lsh"); ``kind`` is what
    the API shows ("cross-modal" for ECMH, else the method's name). ``settings.bits`` is the
    code length of every method (SDOH-HC reads all of ``settings``, LSH its bits and seed);
    ``cross_modal`` holds ECMH's settings; ``max_classes`` bounds the classes the index learns
    (the solver's state grows with classes × bits). ``created`` tells a deleted and re-created
    index apart. ``partitions``: how many hash slots the code store is split over.
    """

    name: str
    dim: int
    settings: SDOHSettings
    kind: IndexKind = "sdoh-hc"
    cross_modal: CrossModalSettings | None = None
    max_classes: int = DEFAULT_MAX_CLASSES
    method: MethodName = "sdoh-hc"
    created: float = 0.0
    partitions: int = 1
    queue_dtype: QueueDtype = "float32"

    @property
    def bits(self) -> int:
        return self.settings.bits

    def method_settings(self) -> dict[str, Any]:
        """The settings the method's factory takes (JSON, with ``bits``)."""
        if self.method == "ecmh":
            cm = self.cross_modal or CrossModalSettings()
            return {"bits": self.bits, **cm.as_dict()}
        if self.method == "lsh":
            return {"bits": self.bits, "seed": self.settings.seed}
        return self.settings.as_dict()

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "dim": self.dim, "settings": self.settings.as_dict(),
               "kind": self.kind, "method": self.method, "max_classes": self.max_classes,
               "created": self.created or time.time(), "partitions": self.partitions,
               "queue_dtype": self.queue_dtype}
        if self.cross_modal is not None:
            out["cross_modal"] = self.cross_modal.as_dict()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexConfig:
        """Decode a stored config; configs written before ``method`` existed name it by their
        kind ("cross-modal" → "ecmh", else "sdoh-hc"), and those written before
        ``query_encoder`` existed keep the encoder they were built with (``linear``)."""
        cm = data.get("cross_modal")
        stored = data.get("method")
        method: MethodName = (stored if stored in ("sdoh-hc", "ecmh", "lsh")
                              else "ecmh" if data.get("kind") == "cross-modal" else "sdoh-hc")
        kind: IndexKind = "cross-modal" if method == "ecmh" else method
        # Configs written before a setting existed keep its old meaning (LEGACY_SETTINGS).
        settings = SDOHSettings.from_dict({**LEGACY_SETTINGS, **data["settings"]})
        return cls(data["name"], int(data["dim"]), settings,
                   kind, None if cm is None else CrossModalSettings.from_dict(cm),
                   int(data.get("max_classes", DEFAULT_MAX_CLASSES)), method,
                   float(data.get("created", 0.0)), int(data.get("partitions", 1)),
                   _queue_dtype(data.get("queue_dtype")))


def _queue_dtype(value: Any) -> QueueDtype:
    """A stored or checked ``queue_dtype`` as its literal (float32 when absent: older
    configs)."""
    return "float16" if value == "float16" else "float32"


class ConfigCache:
    """Decoded configs keyed by index name and creation stamp: a config is immutable, so it
    is decoded once per index (a deleted and re-created index has another stamp)."""

    def __init__(self) -> None:
        self._configs: dict[str, IndexConfig] = {}

    def decode(self, name: str, raw: dict[str, Any]) -> IndexConfig:
        created = float(raw.get("created", 0.0))
        cached = self._configs.get(name)
        if cached is None or cached.created != created:
            cached = self._configs[name] = IndexConfig.from_json(raw)
        return cached


def check_name(name: str) -> None:
    if not INDEX_NAME.match(name):
        raise InvalidInput("name must be 1–64 characters of letters, digits, '_', '-', '.'",
                           "name")


class IndexService:
    """Registry and ingest over an :class:`IndexStore`."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self._configs = ConfigCache()

    def create(self, name: str, dim: int, settings: SDOHSettings,
               cross_modal: CrossModalSettings | None = None,
               max_classes: int = DEFAULT_MAX_CLASSES, method: str | None = None,
               partitions: int = 1, queue_dtype: str = "float32") -> IndexConfig:
        """Create an index; ``method`` defaults to "ecmh" with ``cross_modal`` settings and to
        "sdoh-hc" without."""
        check_name(name)
        if queue_dtype not in QUEUE_DTYPES:
            raise InvalidInput(f"queue_dtype must be 'float32' or 'float16', not {queue_dtype!r}",
                               "queue_dtype")
        if dim < 1 or dim > 1_000_000:
            raise InvalidInput("dim must be between 1 and 1,000,000", "dim")
        if not 1 <= max_classes <= MAX_CLASSES_LIMIT:
            raise InvalidInput(f"max_classes must be between 1 and {MAX_CLASSES_LIMIT:,}",
                               "max_classes")
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidInput(f"partitions must be between 1 and {MAX_PARTITIONS}",
                               "partitions")
        chosen = method or ("ecmh" if cross_modal is not None else "sdoh-hc")
        if chosen not in ("sdoh-hc", "ecmh", "lsh"):
            raise InvalidInput(f"method must be 'sdoh-hc', 'ecmh' or 'lsh', not {chosen!r}",
                               "method")
        if chosen == "ecmh" and cross_modal is None:
            cross_modal = CrossModalSettings()
        if chosen != "ecmh" and cross_modal is not None:
            raise InvalidInput(f"method {chosen!r} does not take cross-modal settings "
                               "(kind 'cross-modal' is method 'ecmh')", "method")
        if cross_modal is not None and cross_modal.text_kind == "dense" \
                and not 1 <= cross_modal.text_dim <= 1_000_000:
            raise InvalidInput("a cross-modal index with dense text needs text_dim ≥ 1",
                               "text_dim")
        mname: MethodName = "ecmh" if chosen == "ecmh" else "lsh" if chosen == "lsh" \
            else "sdoh-hc"
        config = IndexConfig(name, dim, settings,
                             "cross-modal" if mname == "ecmh" else mname, cross_modal,
                             max_classes, mname, time.time(), partitions,
                             _queue_dtype(queue_dtype))
        if not self.store.create_index(name, config.to_json()):
            raise Conflict(f"index {name!r} already exists", "name")
        return config

    def create_from_request(self, name: str, dim: int, solver: dict[str, Any],
                            cross_modal: dict[str, Any] | None,
                            max_classes: int = DEFAULT_MAX_CLASSES,
                            method: str | None = None, kind: str = "sdoh-hc",
                            partitions: int = 1, queue_dtype: str = "float32") -> IndexConfig:
        """``create`` from the settings of a request (422 naming ``settings`` when invalid, or
        the setting that the method does not take: nothing is ignored silently)."""
        chosen = method or ("ecmh" if kind == "cross-modal" else "sdoh-hc")
        if kind == "cross-modal" and chosen != "ecmh":
            raise InvalidInput(f"kind 'cross-modal' is method 'ecmh', not {chosen!r}", "method")
        cross_given = sorted(k for k, v in (cross_modal or {}).items()
                             if k != "seed" and not (k == "text_kind" and v == "dense"))
        if chosen != "ecmh" and cross_given:
            raise InvalidInput(f"{cross_given[0]} is a setting of cross-modal (ecmh) indexes, "
                               f"not of method {chosen}", cross_given[0])
        sdoh_only = sorted(k for k in solver if k not in ("bits", "seed"))
        if chosen != "sdoh-hc" and sdoh_only:
            raise InvalidInput(f"{sdoh_only[0]} is a setting of method sdoh-hc, not of "
                               f"{chosen}", sdoh_only[0])
        if chosen != "ecmh":
            cross_modal = None
        try:
            settings = SDOHSettings.from_dict(solver)
            cross = (None if cross_modal is None
                     else CrossModalSettings.from_dict(cross_modal))
        except (ValueError, TypeError) as exc:
            raise InvalidInput(str(exc), "settings") from exc
        return self.create(name, dim, settings, cross, max_classes, method, partitions,
                           queue_dtype)

    def rounds(self, name: str, since: int = 0) -> dict[str, Any]:
        """Round records after round ``since``, with the queue depth."""
        self.config(name)
        return {"index": name, "queue_depth": self.store.queue_depth(name),
                "rounds": self.store.rounds(name, since, -1)}

    def recent_centers(self, name: str) -> dict[int, np.ndarray[Any, Any]]:
        """Y of the latest round and the one before it (hash-center memory), by round."""
        self.config(name)
        version = self.store.version(name)
        return self.store.load_centers(name, [v for v in (version - 1, version) if v >= 1])

    def overview(self) -> list[dict[str, Any]]:
        """Per index, at one moment each (one round trip): version, queue depth and lag (s the
        oldest waiting chunk has waited), items waiting, the recent rounds' items/s, ingests
        refused for backlog, dead letters, live items, the worker holding its
        round lease, its method, bits and partitions, the latest
        round record, and when it was last active (epoch s: created, a round committed or a
        chunk queued, the latest), most recently active first."""
        rows: list[dict[str, Any]] = []
        for name in self.store.list_indexes():
            snap = self.store.snapshot(name)
            if snap.config is None:
                continue  # deleted meanwhile
            config = self._configs.decode(name, snap.config)
            last = snap.last
            active = [config.created, last.get("ts", 0.0) if last else 0.0,
                      (snap.newest_waiting_ms or 0) / 1000]
            rows.append({"name": name, "version": snap.version, "queue_depth": snap.queue_depth,
                         "queue_lag_s": round(snap.queue_lag_seconds, 3),
                         "dead_letters": snap.dead_letters, "lease_holder": snap.lease_holder,
                         "method": config.method, "bits": config.bits,
                         "partitions": config.partitions, "last_active": round(max(active), 3),
                         "n_items": _live_items(snap), "last": last,
                         "queued_items": snap.queued_items, "learn_rate": snap.learn_rate,
                         "refusals": snap.refusals})
        rows.sort(key=lambda row: (-row["last_active"], row["name"]))
        return rows

    def workers(self) -> dict[str, dict[str, Any]]:
        """Live workers: id → what its last heartbeat said (backend, kernel, start time)."""
        return self.store.workers()

    def worker_restarts(self) -> int:
        return self.store.restarts()

    def readiness(self) -> dict[str, Any]:
        """Redis reachable, and the live workers with the Hamming kernel each runs; raises
        whatever the Redis client raises when it is not reachable."""
        self.store.r.ping()
        workers = self.store.workers()
        return {"workers": len(workers),
                "worker_kernels": {w: info.get("hamming_kernel", "unknown")
                                   for w, info in sorted(workers.items())}}

    def config(self, name: str) -> IndexConfig:
        raw = self.store.config(name)
        if raw is None:
            raise NotFound(f"no index named {name!r}", "name")
        return self._configs.decode(name, raw)

    def names(self) -> list[str]:
        return self.store.list_indexes()

    def describe(self, name: str) -> dict[str, Any]:
        config = self.config(name)
        snap = self.store.snapshot(name)
        version, depth, last = snap.version, snap.queue_depth, snap.last
        settings = (config.method_settings() if config.method != "sdoh-hc"
                    else config.settings.as_dict())
        return {
            "name": name, "kind": config.kind, "method": config.method, "dim": config.dim,
            "bits": config.settings.bits,
            "settings": settings, "model_version": version, "max_classes": config.max_classes,
            "partitions": config.partitions, "queue_dtype": config.queue_dtype,
            "queue_depth": depth, "dead_letters": snap.dead_letters,
            "n_items": _live_items(snap),
            "n_classes": last["n_classes"] if last else 0,
        }

    def delete(self, name: str) -> None:
        check_name(name)
        if not self.store.delete_index(name):
            raise NotFound(f"no index named {name!r}", "name")

    def ensure(self, name: str, dim: int) -> IndexConfig:
        """The index, created with default settings and this dimension if it does not exist
        (the short routes' default index)."""
        raw = self.store.config(name)
        if raw is not None:
            return self._configs.decode(name, raw)
        try:
            return self.create(name, dim, SDOHSettings())
        except Conflict:  # created concurrently by another request
            return self.config(name)

    def ingest(self, name: str, parsed: ParsedChunk,
               lifetime_s: float = SERVER_KEY_LIFETIME_S) -> dict[str, Any]:
        """Validate against the index, map the labels to class numbers, assign ids to a
        training chunk that brings none, and queue the chunk (202): :meth:`ingest_once`
        under a key made here (:func:`server_key`, remembered ``lifetime_s``), so a lost
        Redis reply is retried without queueing the chunk twice."""
        return self.ingest_once(name, parsed, server_key(), lifetime_s)[0]

    def ingest_once(self, name: str, parsed: ParsedChunk, key: str, lifetime_s: float,
                    seen: str | None = None) -> tuple[dict[str, Any], bool]:
        """:meth:`ingest` under an Idempotency-Key: (the answer, whether it is the answer of
        an earlier request with this key and chunk, nothing queued now). ``seen``: the key's
        record as the caller looked it up first (:meth:`ingest_record`, which spares a retry
        the backlog check, the label mapping and ids). A lost Redis reply is retried under
        the key by the store; when every try lost it, :class:`OutcomeUnknown` (503) names the
        key to resend under."""
        chunk_print = fingerprint(parsed)
        if seen is not None:
            return replayed(seen, chunk_print), True
        config, chunk, out = self._prepared(name, parsed)
        try:
            queued, value = self.store.enqueue_once(
                name, chunk.to_fields(config.queue_dtype), chunk.n, key,
                record(out, chunk_print), lifetime_s)
        except ReplyLost as exc:
            raise OutcomeUnknown(key, exc.attempts) from exc
        if not queued:  # the same key raced this request and won
            return replayed(value, chunk_print), True
        return {"chunk_id": value, **out}, False

    def ingest_record(self, name: str, key: str) -> str | None:
        """The stored record of an ingest under ``key`` (None: not seen or expired)."""
        return self.store.ingest_record(name, key)

    def _prepared(self, name: str, parsed: ParsedChunk
                  ) -> tuple[IndexConfig, Chunk, dict[str, Any]]:
        config = self.config(name)
        validate_chunk(parsed, config.dim)
        if config.queue_dtype == "float16" and parsed.n:
            fits(parsed.features)
        if config.cross_modal is not None:
            validate_text(parsed.text, parsed.n, config.cross_modal)
        elif parsed.text is not None:
            raise InvalidInput("text/tokens are only accepted by cross-modal indexes", "text")
        labels = self.map_labels(name, config, parsed.labels)
        ids = parsed.ids
        assigned = ids is None and parsed.role == "train"
        if assigned:
            first = self.store.next_ids(name, parsed.n)
            ids = np.arange(first, first + parsed.n, dtype=np.int64)
        chunk = Chunk(parsed.features, labels, ids, parsed.role, parsed.text)
        out: dict[str, Any] = {"index": name, "items": chunk.n, "role": chunk.role}
        if assigned:
            assert ids is not None
            out["id_range"] = [int(ids[0]), int(ids[-1]) + 1]
        return config, chunk, out

    def check_backlog(self, name: str, limits: BacklogLimits) -> None:
        """Raise :class:`Backlogged` (429, counted) while the index's backlog is at or past a
        limit; one MGET otherwise."""
        queued, rate = self.store.backlog(name)
        refused = refusal(name, queued, rate, limits)
        if refused is not None:
            self.store.count_refusal(name)
            raise refused

    def _seed_legacy_class_map(self, name: str) -> None:
        """An index made before labels were mapped has rounds but no class map: its class
        numbers were the client's integer ids, so the map starts as the identity over them
        (the store asks for this on the index's first ingest after the upgrade)."""
        state = self.store.load_state(name, ["centers", "known_classes"])
        known = (int(state["centers"].shape[1]) if "centers" in state
                 else len(state.get("known_classes", ())))
        self.store.map_classes(name, [str(c) for c in range(known)], "int",
                               max(known, MAX_CLASSES_LIMIT), seed=True)

    def map_labels(self, name: str, config: IndexConfig, labels: ClientLabels) -> ClassLists:
        """The client's labels as internal class numbers (new classes registered at once, all
        or nothing)."""
        texts, inverse = labels.distinct()
        try:
            try:
                numbers = self.store.map_classes(name, texts, labels.kind, config.max_classes)
            except ClassMapError as exc:
                if exc.reason != "unseeded":
                    raise
                self._seed_legacy_class_map(name)
                numbers = self.store.map_classes(name, texts, labels.kind, config.max_classes)
        except ClassMapError as exc:
            raise InvalidInput(str(exc), "labels") from exc
        return ClassLists.of(labels.indptr, np.asarray(numbers, dtype=np.int64)[inverse])


def fits(features: np.ndarray[Any, Any]) -> None:
    """Refuse features a float16 queue would turn into ±inf (never queued silently)."""
    top = max(float(features.max()), -float(features.min()))
    if top > FLOAT16_MAX:
        raise InvalidInput(f"features holds {top:g}; this index queues features as float16 "
                           f"(queue_dtype), which holds at most ±{FLOAT16_MAX:g}: scale the "
                           "features or use an index with queue_dtype float32", "features")


def _live_items(snap: IndexSnapshot) -> int:
    """Live items, deletes included (an index whose rounds predate the count: the latest
    round's database size)."""
    if snap.items is not None:
        return snap.items
    return int(snap.last["n_database"]) if snap.last else 0
