"""The index registry and ingest: create/list/describe/delete indexes, queue validated chunks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hashstream.service.chunks import Chunk, ClientLabels, ParsedChunk, validate_chunk
from hashstream.service.cross_modal import CrossModalSettings, validate_text
from hashstream.service.errors import Conflict, InvalidInput, NotFound
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.feature_map import FeatureMapKind
from hashstream.solver.sdoh_hc.settings import (
    ExemplarPolicy,
    OldSimilarity,
    OldWeight,
    SDOHSettings,
)
from hashstream.store.index_store import ClassMapError, IndexStore
from hashstream.store.keys import INDEX_NAME

# The setting vocabularies the HTTP schemas accept (the solver defines them).
__all__ = ["ExemplarPolicy", "FeatureMapKind", "IndexConfig", "IndexService", "OldSimilarity",
           "OldWeight"]

IndexKind = Literal["sdoh-hc", "cross-modal"]
DEFAULT_MAX_CLASSES = 5_000
MAX_CLASSES_LIMIT = 100_000


@dataclass(frozen=True)
class IndexConfig:
    """Immutable settings of an index: its kind, feature (image) dimension and settings.

    ``settings.bits`` is the code length of either kind; ``cross_modal`` holds the deep path's
    settings for ``kind='cross-modal'``; ``max_classes`` bounds the classes the index learns
    (the solver's state grows with classes × bits).
    """

    name: str
    dim: int
    settings: SDOHSettings
    kind: IndexKind = "sdoh-hc"
    cross_modal: CrossModalSettings | None = None
    max_classes: int = DEFAULT_MAX_CLASSES

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "dim": self.dim, "settings": self.settings.as_dict(),
               "kind": self.kind, "max_classes": self.max_classes, "created": time.time()}
        if self.cross_modal is not None:
            out["cross_modal"] = self.cross_modal.as_dict()
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexConfig:
        cm = data.get("cross_modal")
        kind: IndexKind = "cross-modal" if data.get("kind") == "cross-modal" else "sdoh-hc"
        return cls(data["name"], int(data["dim"]), SDOHSettings.from_dict(data["settings"]),
                   kind, None if cm is None else CrossModalSettings.from_dict(cm),
                   int(data.get("max_classes", DEFAULT_MAX_CLASSES)))


def check_name(name: str) -> None:
    if not INDEX_NAME.match(name):
        raise InvalidInput("name must be 1–64 characters of letters, digits, '_', '-', '.'",
                           "name")


class IndexService:
    """Registry and ingest over an :class:`IndexStore`."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store

    def create(self, name: str, dim: int, settings: SDOHSettings,
               cross_modal: CrossModalSettings | None = None,
               max_classes: int = DEFAULT_MAX_CLASSES) -> IndexConfig:
        check_name(name)
        if dim < 1 or dim > 1_000_000:
            raise InvalidInput("dim must be between 1 and 1,000,000", "dim")
        if not 1 <= max_classes <= MAX_CLASSES_LIMIT:
            raise InvalidInput(f"max_classes must be between 1 and {MAX_CLASSES_LIMIT:,}",
                               "max_classes")
        if cross_modal is not None and cross_modal.text_kind == "dense" \
                and not 1 <= cross_modal.text_dim <= 1_000_000:
            raise InvalidInput("a cross-modal index with dense text needs text_dim ≥ 1",
                               "text_dim")
        config = IndexConfig(name, dim, settings,
                             "sdoh-hc" if cross_modal is None else "cross-modal", cross_modal,
                             max_classes)
        if not self.store.create_index(name, config.to_json()):
            raise Conflict(f"index {name!r} already exists", "name")
        return config

    def create_from_request(self, name: str, dim: int, solver: dict[str, Any],
                            cross_modal: dict[str, Any] | None,
                            max_classes: int = DEFAULT_MAX_CLASSES) -> IndexConfig:
        """``create`` from the settings of a request (422 naming ``settings`` when invalid)."""
        try:
            settings = SDOHSettings.from_dict(solver)
            cross = (None if cross_modal is None
                     else CrossModalSettings.from_dict(cross_modal))
        except (ValueError, TypeError) as exc:
            raise InvalidInput(str(exc), "settings") from exc
        return self.create(name, dim, settings, cross, max_classes)

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
        """Per index: version, queue depth, dead letters and the latest round record."""
        rows = []
        for name in self.store.list_indexes():
            version, depth, last = self.store.status(name)  # one consistent round trip
            rows.append({"name": name, "version": version, "queue_depth": depth,
                         "dead_letters": self.store.dead_letter_count(name), "last": last})
        return rows

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
        return IndexConfig.from_json(raw)

    def names(self) -> list[str]:
        return self.store.list_indexes()

    def describe(self, name: str) -> dict[str, Any]:
        config = self.config(name)
        version, depth, last = self.store.status(name)
        settings = (config.settings.as_dict() if config.cross_modal is None
                    else {"bits": config.settings.bits, **config.cross_modal.as_dict()})
        return {
            "name": name, "kind": config.kind, "dim": config.dim, "bits": config.settings.bits,
            "settings": settings, "model_version": version, "max_classes": config.max_classes,
            "queue_depth": depth, "dead_letters": self.store.dead_letter_count(name),
            "n_items": last["n_database"] if last else 0,
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
            return IndexConfig.from_json(raw)
        try:
            return self.create(name, dim, SDOHSettings())
        except Conflict:  # created concurrently by another request
            return self.config(name)

    def ingest(self, name: str, parsed: ParsedChunk) -> dict[str, Any]:
        """Validate against the index, map the labels to class numbers, assign ids to a
        training chunk that brings none, and queue the chunk (202)."""
        config = self.config(name)
        validate_chunk(parsed, config.dim)
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
        chunk_id = self.store.enqueue(name, chunk.to_fields())
        out: dict[str, Any] = {"chunk_id": chunk_id, "index": name, "items": chunk.n,
                               "role": chunk.role}
        if assigned:
            assert ids is not None
            out["id_range"] = [int(ids[0]), int(ids[-1]) + 1]
        return out

    def _seed_legacy_class_map(self, name: str) -> None:
        """An index made before labels were mapped has rounds but no class map: its class
        numbers were the client's integer ids, so the map starts as the identity over them."""
        if self.store.label_kind(name) is not None or self.store.version(name) == 0:
            return
        state = self.store.load_state(name, ["centers", "known_classes"])
        known = (int(state["centers"].shape[1]) if "centers" in state
                 else len(state.get("known_classes", ())))
        self.store.map_classes(name, [str(c) for c in range(known)], "int",
                               max(known, MAX_CLASSES_LIMIT))

    def map_labels(self, name: str, config: IndexConfig, labels: ClientLabels) -> ClassLists:
        """The client's labels as internal class numbers (new classes registered at once, all
        or nothing)."""
        texts, inverse = labels.distinct()
        self._seed_legacy_class_map(name)
        try:
            numbers = self.store.map_classes(name, texts, labels.kind, config.max_classes)
        except ClassMapError as exc:
            raise InvalidInput(str(exc), "labels") from exc
        classes = np.asarray(numbers, dtype=np.int64)[inverse]
        return ClassLists(labels.indptr, classes,
                          int(classes.max()) + 1 if classes.size else 0)
