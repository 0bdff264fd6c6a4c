"""Search: each API process keeps a replica of every index it serves (the model that encodes
queries and the database codes) and refreshes it from Redis when a new version commits.

A replica moves from version v to v' only after loading P of v' and the segments up to v'; both
are immutable once committed, so a search sees one consistent version, never half a round.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from hashstream.hamming.index import HammingIndex, native_isa
from hashstream.service.errors import Conflict, InvalidInput, NotFound
from hashstream.solver.backend import get_backend
from hashstream.solver.feature_map import FeatureMapParams, apply_feature_map
from hashstream.solver.metrics import pack_codes
from hashstream.store.index_store import IndexStore

_FEATURE_MAP_FIELDS = ["feature_map_kind", "feature_map_anchors", "feature_map_sigma",
                       "feature_map_mean", "dim"]


def hamming_kernel() -> str:
    """The Hamming scan this process runs: the compiled kernel's instruction set (avx512, avx2,
    popcnt, scalar), or "numpy" when the C extension was not built."""
    return native_isa() or "numpy"


@dataclass
class Replica:
    """One index as this process sees it: ``version``, φ, P and the code store."""

    version: int = 0
    uid: float = 0.0  # the index's creation stamp: a deleted and re-created index is another
    feature_map: FeatureMapParams | None = None
    projection: np.ndarray[Any, Any] | None = None
    codes: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    ids: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, np.int64))
    label_indptr: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(1, np.int64))
    label_indices: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, np.int32))
    row_of_id: dict[int, int] = field(default_factory=dict)
    # client label of each internal class number (int or str, as the client sent them)
    class_labels: list[int | str] = field(default_factory=list)
    # cross-modal indexes: the latest ECMH model and the single-modality codes of the pairs
    deep_model: Any = None
    deep_model_version: int = 0
    # HammingIndex per target ("pairs", and "image"/"text" for cross-modal), built on refresh
    indexes: dict[str, HammingIndex] = field(default_factory=dict)
    image_codes: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    text_codes: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros((0, 0), np.uint8))

    def labels_of(self, row: int) -> list[int | str]:
        """The item's labels as the client sent them."""
        classes = self.label_indices[self.label_indptr[row]:self.label_indptr[row + 1]]
        return [self.class_labels[c] for c in classes.tolist()]


class SearchService:
    """Replicas of the indexes, refreshed on demand; searches are exact flat Hamming scans."""

    def __init__(self, store: IndexStore, max_k: int = 10_000,
                 scan_backend: Literal["auto", "native", "numpy"] = "auto") -> None:
        self.store = store
        self.max_k = max_k
        self.scan_backend: Literal["auto", "native", "numpy"] = scan_backend
        self.replicas: dict[str, Replica] = {}
        self._lock = threading.Lock()
        self._backend = get_backend("numpy")

    def replica(self, name: str) -> Replica:
        """The replica of ``name`` at the latest committed version."""
        version, config = self.store.version_and_config(name)
        if config is None:
            self.replicas.pop(name, None)
            raise NotFound(f"no index named {name!r}", "name")
        uid = float(config.get("created", 0.0))
        current = self.replicas.get(name)
        if current is not None and current.version == version and current.uid == uid:
            return current
        with self._lock:
            current = self.replicas.get(name)
            if current is not None and (current.uid != uid or current.version > version):
                current = None  # deleted and re-created: nothing carries over
            if current is not None and current.version == version:
                return current
            fresh = self._load(name, current, version, uid, config.get("kind") == "cross-modal")
            self.replicas[name] = fresh
            return fresh

    def _load(self, name: str, base: Replica | None, version: int, uid: float,
              deep: bool) -> Replica:
        rep = Replica(uid=uid) if base is None else base
        codes, ids, indptrs, indices = [rep.codes], [rep.ids], [rep.label_indptr], \
            [rep.label_indices]
        image_codes, text_codes = [rep.image_codes], [rep.text_codes]
        offset = int(rep.label_indptr[-1])
        for v in range(rep.version + 1, version + 1):
            seg = self.store.load_segment(name, v)
            codes.append(seg["codes"])
            if "image_codes" in seg:
                image_codes.append(seg["image_codes"])
                text_codes.append(seg["text_codes"])
            ids.append(seg["ids"])
            indptrs.append(seg["label_indptr"][1:] + offset)
            offset += int(seg["label_indptr"][-1])
            indices.append(seg["label_indices"])
        fm = rep.feature_map
        deep_model, mv = rep.deep_model, rep.deep_model_version
        if deep and version > 0:
            from hashstream.solver.ecmh.state_io import from_arrays

            mv = int(self.store.load_state(name, ["model_version"])["model_version"])
            if deep_model is None or rep.deep_model_version != mv:
                deep_model = from_arrays(self.store.load_deep_model(name, mv))
        elif fm is None and version > 0:
            f = self.store.load_state(name, _FEATURE_MAP_FIELDS)
            kind = bytes(f["feature_map_kind"].astype(np.uint8)).decode()
            fm = FeatureMapParams("rbf" if kind == "rbf" else "identity",
                                  f["feature_map_anchors"], float(f["feature_map_sigma"]),
                                  f["feature_map_mean"])
        projection = (self.store.load_projection(name, version)
                      if version > 0 and not deep else None)
        # The class map only grows (classes are registered before their chunk is queued), so
        # the labels after the ones already held cover every class of these segments.
        kind, new_labels = self.store.class_labels(name, start=len(rep.class_labels))
        class_labels = rep.class_labels + [int(b) if kind == "int" else b.decode()
                                           for b in new_labels]

        def stack(blocks: list[np.ndarray[Any, Any]], empty: np.ndarray[Any, Any]
                  ) -> np.ndarray[Any, Any]:
            nonempty = [c for c in blocks if c.size]
            return np.concatenate(nonempty) if nonempty else empty

        all_codes = stack(codes, rep.codes)
        all_ids = np.concatenate(ids)
        row_of_id = dict(rep.row_of_id)
        start = len(rep.ids)
        row_of_id.update({int(i): start + j for j, i in enumerate(all_ids[start:])})
        fresh = Replica(
            version=version, uid=uid, feature_map=fm, projection=projection, codes=all_codes,
            ids=all_ids, label_indptr=np.concatenate(indptrs),
            label_indices=np.concatenate(indices), row_of_id=row_of_id,
            class_labels=class_labels, deep_model=deep_model,
            deep_model_version=mv, image_codes=stack(image_codes, rep.image_codes),
            text_codes=stack(text_codes, rep.text_codes))
        # A new index per version: searches still running on the previous replica keep
        # scanning exactly the previous version's codes.
        # An id stored twice is an upsert: its latest item replaces the earlier one (as the
        # id → row map does), so only each id's last occurrence is indexed.
        _, last_from_end = np.unique(all_ids[::-1], return_index=True)
        live = np.sort(len(all_ids) - 1 - last_from_end)
        targets = {"pairs": fresh.codes, "image": fresh.image_codes, "text": fresh.text_codes}
        for target, codes_of in targets.items():
            if codes_of.size:
                index = HammingIndex(codes_of.shape[1] * 8, backend=self.scan_backend)
                index.add(codes_of[live], all_ids[live])
                fresh.indexes[target] = index
        return fresh

    # --- queries --------------------------------------------------------------------------
    def _ready(self, name: str) -> Replica:
        rep = self.replica(name)
        if rep.version == 0 or ((rep.projection is None or rep.feature_map is None)
                                and rep.deep_model is None):
            raise Conflict(f"index {name!r} has no committed round yet; ingest training chunks "
                           "and wait for the first round", "name")
        return rep

    def encode(self, rep: Replica, features: np.ndarray[Any, Any],
               modality: str = "image") -> np.ndarray[Any, Any]:
        """Packed codes of query vectors: sgn(φ(q)P), or for a cross-modal index
        sgn(INet(q)) (``modality='image'``) or sgn(TNet(q)) (``'text'``)."""
        if rep.deep_model is not None:
            from hashstream.solver.ecmh.networks import (
                image_representations,
                image_tensor,
                text_representations,
                text_tensor,
            )

            m = rep.deep_model
            if modality == "text":
                rep_t = text_representations(m, text_tensor(m.config, features, m.device))
            else:
                rep_t = image_representations(m, image_tensor(features, m.device))
            return pack_codes(rep_t.cpu().numpy() >= 0)
        assert rep.feature_map is not None and rep.projection is not None
        phi = apply_feature_map(rep.feature_map, features, self._backend)
        return pack_codes(phi @ rep.projection >= 0)

    def _check_k(self, k: int) -> None:
        if k < 1 or k > self.max_k:
            raise InvalidInput(f"k must be between 1 and {self.max_k}", "k")

    def search_vectors(self, name: str, features: np.ndarray[Any, Any], k: int,
                       dim: int | None, modality: str = "image", target: str = "pairs"
                       ) -> tuple[int, list[list[dict[str, Any]]]]:
        """(model version searched, hits per query). ``dim`` None skips the width check
        (token queries). For cross-modal indexes ``modality`` picks the query encoder and
        ``target`` the database codes: the pairs' unified codes, or their image or text side."""
        self._check_k(k)
        field_name = "features" if modality == "image" else modality
        if features.ndim != 2 or features.shape[0] == 0:
            raise InvalidInput("query must be a non-empty list of vectors", field_name)
        if dim is not None and features.shape[1] != dim:
            raise InvalidInput(f"vectors have dimension {features.shape[1]}, the index expects "
                               f"{dim}", field_name)
        if not np.isfinite(features).all():
            raise InvalidInput("query vectors contain NaN or Inf", field_name)
        rep = self._ready(name)
        if rep.deep_model is None and (modality != "image" or target != "pairs"):
            raise InvalidInput("text queries and targets are for cross-modal indexes", "target")
        if target not in rep.indexes:
            raise InvalidInput("target must be 'pairs', 'image' or 'text'", "target")
        return rep.version, self._top_k(rep, self.encode(rep, features, modality), k,
                                        exclude=None, target=target)

    def search_item(self, name: str, item: int, k: int) -> tuple[int, list[dict[str, Any]]]:
        """(model version searched, hits of the stored item, itself excluded)."""
        self._check_k(k)
        rep = self._ready(name)
        row = rep.row_of_id.get(item)
        if row is None:
            raise NotFound(f"no stored item with id {item} (items are searchable once their "
                           "round has committed)", "item")
        return rep.version, self._top_k(rep, rep.codes[row:row + 1], k, exclude=row)[0]

    def _top_k(self, rep: Replica, queries: np.ndarray[Any, Any], k: int,
               exclude: int | None, target: str = "pairs") -> list[list[dict[str, Any]]]:
        """Exact top-k through the replica's HammingIndex (ties by insertion order);
        ``exclude`` is a row whose own item is left out (search by stored item)."""
        index = rep.indexes[target]
        skip = int(rep.ids[exclude]) if exclude is not None else None
        kk = min(k + (1 if skip is not None else 0), len(index))
        dist, ids = index.search(queries, kk)
        out: list[list[dict[str, Any]]] = []
        for drow, irow in zip(dist, ids, strict=True):
            hits = [{"id": int(i), "distance": int(d),
                     "labels": rep.labels_of(rep.row_of_id[int(i)])}
                    for d, i in zip(drow, irow, strict=True) if i >= 0 and i != skip]
            out.append(hits[:k])
        return out
