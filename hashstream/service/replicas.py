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
from hashstream.service.cross_modal import pad_tokens
from hashstream.service.errors import Conflict, InvalidInput, NotFound
from hashstream.service.methods import IndexMethods, load_state
from hashstream.service.registry import IndexConfig
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.method import PAIRS, Encoder, Method, target_field
from hashstream.store.index_store import IndexStore


def hamming_kernel() -> str:
    """The Hamming scan this process runs: the compiled kernel's instruction set (avx512, avx2,
    popcnt, scalar), or "numpy" when the C extension was not built."""
    return native_isa() or "numpy"


def _empty_codes() -> np.ndarray[Any, Any]:
    return np.zeros((0, 0), np.uint8)


@dataclass
class Replica:
    """One index as this process sees it at ``version``: the method's encoder of that version,
    the database codes per target ("pairs", and "image"/"text" for a cross-modal method) with a
    HammingIndex each, the ids and the labels."""

    version: int = 0
    uid: float = 0.0  # the index's creation stamp: a deleted and re-created index is another
    config: IndexConfig | None = None
    encoder: Encoder | None = None
    # what the encoder was built from: ("model", model version) or ("version", version)
    encoder_key: tuple[str, int] | None = None
    # encoder fields that never change once written (Method.fixed_fields), kept
    fixed: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    codes: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    ids: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(0, np.int64))
    labels: ClassLists = field(default_factory=ClassLists.empty)
    row_of_id: dict[int, int] = field(default_factory=dict)
    # client label of each internal class number (int or str, as the client sent them)
    class_labels: list[int | str] = field(default_factory=list)
    # HammingIndex per target, built on refresh
    indexes: dict[str, HammingIndex] = field(default_factory=dict)

    def labels_of(self, row: int) -> list[int | str]:
        """The item's labels as the client sent them."""
        return [self.class_labels[c] for c in self.labels.row(row).tolist()]


class SearchService:
    """Replicas of the indexes, refreshed on demand; searches are exact flat Hamming scans."""

    def __init__(self, store: IndexStore, max_k: int = 10_000,
                 scan_backend: Literal["auto", "native", "numpy"] = "auto") -> None:
        self.store = store
        self.max_k = max_k
        self.scan_backend: Literal["auto", "native", "numpy"] = scan_backend
        self.replicas: dict[str, Replica] = {}
        self._lock = threading.Lock()
        self.methods = IndexMethods()

    def replica(self, name: str) -> Replica:
        """The replica of ``name`` at the latest committed version."""
        version, raw = self.store.version_and_config(name)
        if raw is None:
            self.replicas.pop(name, None)
            raise NotFound(f"no index named {name!r}", "name")
        uid = float(raw.get("created", 0.0))
        current = self.replicas.get(name)
        if current is not None and current.version == version and current.uid == uid:
            return current
        with self._lock:
            current = self.replicas.get(name)
            if current is not None and (current.uid != uid or current.version > version):
                current = None  # deleted and re-created: nothing carries over
            if current is not None and current.version == version:
                return current
            config, method = self.methods.get(name, raw)
            fresh = self._load(name, config, method, current, version, uid)
            self.replicas[name] = fresh
            return fresh

    def _encoder(self, name: str, method: Method, rep: Replica, version: int
                 ) -> tuple[Encoder | None, tuple[str, int] | None, dict[str, Any]]:
        """The encoder of ``version`` (the replica's own when it still applies)."""
        if version == 0:
            return None, None, {}
        projection = self.store.load_projection(name, version)
        wanted = [f for f in method.encoder_fields if f not in rep.fixed
                  and not (f == "projection" and projection is not None)]
        state, model = load_state(self.store, name, method, wanted)
        key = (("model", int(state["model_version"])) if "model_version" in state
               else ("version", version))
        fixed = {**rep.fixed, **{f: state[f] for f in method.fixed_fields if f in state}}
        if rep.encoder is not None and rep.encoder_key == key:
            return rep.encoder, key, fixed
        arrays = {**state, **fixed}
        if projection is not None:
            arrays["projection"] = projection
        return method.encoder(arrays, model), key, fixed

    def _load(self, name: str, config: IndexConfig, method: Method, base: Replica | None,
              version: int, uid: float) -> Replica:
        rep = Replica(uid=uid) if base is None else base
        blocks: dict[str, list[np.ndarray[Any, Any]]] = {
            t: [rep.codes.get(t, _empty_codes())] for t in method.targets}
        ids, labels = [rep.ids], [rep.labels]
        for v in range(rep.version + 1, version + 1):
            seg = self.store.load_segment(name, v)
            for t in method.targets:
                if target_field(t) in seg:
                    blocks[t].append(seg[target_field(t)])
            ids.append(seg["ids"])
            labels.append(ClassLists.of(seg["label_indptr"], seg["label_indices"]))
        encoder, key, fixed = self._encoder(name, method, rep, version)
        # The class map only grows (classes are registered before their chunk is queued), so
        # the labels after the ones already held cover every class of these segments.
        kind, new_labels = self.store.class_labels(name, start=len(rep.class_labels))
        class_labels = rep.class_labels + [int(b) if kind == "int" else b.decode()
                                           for b in new_labels]

        def stack(parts: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
            nonempty = [c for c in parts if c.size]
            return np.concatenate(nonempty) if nonempty else parts[0]

        all_ids = np.concatenate(ids)
        row_of_id = dict(rep.row_of_id)
        start = len(rep.ids)
        row_of_id.update({int(i): start + j for j, i in enumerate(all_ids[start:])})
        fresh = Replica(
            version=version, uid=uid, config=config, encoder=encoder, encoder_key=key,
            fixed=fixed, codes={t: stack(b) for t, b in blocks.items()}, ids=all_ids,
            labels=ClassLists.concat(labels), row_of_id=row_of_id, class_labels=class_labels)
        # A new index per version: searches still running on the previous replica keep
        # scanning exactly the previous version's codes.
        # An id stored twice is an upsert: its latest item replaces the earlier one (as the
        # id → row map does), so only each id's last occurrence is indexed.
        _, last_from_end = np.unique(all_ids[::-1], return_index=True)
        live = np.sort(len(all_ids) - 1 - last_from_end)
        for target, codes_of in fresh.codes.items():
            if codes_of.size:
                index = HammingIndex(codes_of.shape[1] * 8, backend=self.scan_backend)
                index.add(codes_of[live], all_ids[live])
                fresh.indexes[target] = index
        return fresh

    # --- queries --------------------------------------------------------------------------
    def _ready(self, name: str) -> Replica:
        rep = self.replica(name)
        if rep.version == 0 or rep.encoder is None:
            raise Conflict(f"index {name!r} has no committed round yet; ingest training chunks "
                           "and wait for the first round", "name")
        return rep

    def encode(self, rep: Replica, features: np.ndarray[Any, Any],
               modality: str = "image") -> np.ndarray[Any, Any]:
        """Packed codes of query vectors under the replica's version (its method's encoder:
        sgn(φ(q)P) for SDOH-HC, sgn(INet(q)) or sgn(TNet(q)) for ECMH, …)."""
        assert rep.encoder is not None
        return rep.encoder.encode(features, modality)

    def _check_k(self, k: int) -> None:
        if k < 1 or k > self.max_k:
            raise InvalidInput(f"k must be between 1 and {self.max_k}", "k")

    def _config(self, name: str) -> IndexConfig:
        raw = self.store.config(name)
        if raw is None:
            raise NotFound(f"no index named {name!r}", "name")
        return self.methods.get(name, raw)[0]

    def search_vector_text(self, name: str, vector: str, k: int, modality: str = "image",
                           target: str = "pairs") -> tuple[int, list[list[dict[str, Any]]]]:
        """A search by one vector given as ``v1,v2,…`` (GET); its width is checked against the
        index's dimension of that modality."""
        config = self._config(name)
        try:
            values = [float(v) for v in vector.split(",")]
        except ValueError as exc:
            raise InvalidInput("vector must be comma-separated numbers", "vector") from exc
        dim = config.dim if modality == "image" else (
            config.cross_modal.text_dim if config.cross_modal is not None else config.dim)
        return self.search_vectors(name, np.asarray([values], dtype=np.float32), k, dim,
                                   modality, target)

    def search_rows(self, name: str, field_name: str, rows: list[list[Any]], k: int,
                    target: str = "pairs") -> tuple[int, list[list[dict[str, Any]]]]:
        """A batch search (POST): ``field_name`` says what the rows are — ``features`` or
        ``image`` vectors, dense ``text`` vectors, or word-id ``tokens`` (padded here)."""
        modality = "text" if field_name in ("text", "tokens") else "image"
        config = self._config(name)
        if field_name == "tokens":
            queries, dim = pad_tokens(rows), None
        else:
            try:
                queries = np.asarray(rows, dtype=np.float32)
            except ValueError as exc:
                raise InvalidInput(f"{field_name} must be equal-length vectors",
                                   field_name) from exc
            dim = config.dim if modality == "image" else (
                config.cross_modal.text_dim if config.cross_modal is not None else None)
        return self.search_vectors(name, queries, k, dim, modality, target)

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
        assert rep.encoder is not None
        if modality not in rep.encoder.modalities or target not in rep.indexes:
            if len(rep.encoder.modalities) == 1:
                raise InvalidInput("text queries and targets are for cross-modal indexes",
                                   "target")
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
        return rep.version, self._top_k(rep, rep.codes[PAIRS][row:row + 1], k,
                                        exclude=row)[0]

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
