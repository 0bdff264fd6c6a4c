"""The SDOH-HC model state carried from round to round, as plain arrays.

A state is everything a round needs from the past: the fixed centers C, the hash-center memory's
newest entry (the teacher Ỹ), the exemplar memory, the accumulators H1, H2, G, F (plus the label
statistics that make the old-data term's value exact), P, the feature map and, with the
``residual_net`` query encoder, the query network's weights. It converts to a
flat ``dict[str, numpy array]`` so the memory layer can persist it without pickle.

Nothing in a state grows with c² or n·c: the label Gram matrix Σ L̂ᵀL̂ is kept sparse (its
non-zeros are the class pairs that occur together on an item) and the exemplar labels are
:class:`ClassLists`. Both stay on the host whatever the backend.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from hashstream.solver.backend import Backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.feature_map import FeatureMapKind, FeatureMapParams
from hashstream.solver.query_net import QueryNet

# Dense arrays (possibly on the device).
_ARRAY_FIELDS = (
    "centers", "teacher", "h1", "h2", "g", "f", "label_sum", "projection",
    "exemplar_features", "exemplar_codes",
)
EXEMPLAR_LABEL_PREFIX = "exemplar_label_"
LABEL_GRAM_KEYS = ("label_gram_indptr", "label_gram_indices", "label_gram_data")


def empty_label_gram(n_classes: int) -> sp.csr_array:
    """The c × c zero matrix, sparse (float64)."""
    return sp.csr_array((n_classes, n_classes), dtype=np.float64)


def resize_label_gram(gram: sp.csr_array, n_classes: int) -> sp.csr_array:
    """``gram`` padded with zero rows and columns to ``n_classes`` × ``n_classes``."""
    c = gram.shape[0]
    if n_classes <= c:
        return gram
    indptr = np.concatenate([gram.indptr, np.full(n_classes - c, gram.indptr[-1])])
    return sp.csr_array((gram.data, gram.indices, indptr), shape=(n_classes, n_classes))


FEATURE_MAP_FIELDS = ("feature_map_kind", "feature_map_anchors", "feature_map_sigma",
                      "feature_map_mean")
# What an encoder never needs: the novelty radius of anchor growth (absent before growth: 0).
FEATURE_MAP_RADIUS = "feature_map_radius"


def feature_map_from_arrays(arrays: dict[str, np.ndarray[Any, Any]]) -> FeatureMapParams:
    """φ's parameters from state arrays (the ``FEATURE_MAP_FIELDS``, and the radius where
    the arrays hold it)."""
    kind = bytes(np.asarray(arrays["feature_map_kind"], dtype=np.uint8)).decode()
    if kind not in ("identity", "rbf"):
        raise ValueError(f"unknown feature map kind {kind!r} in stored state")
    fm_kind: FeatureMapKind = "identity" if kind == "identity" else "rbf"
    anchors, mean = arrays["feature_map_anchors"], arrays["feature_map_mean"]
    if mean.shape != anchors.shape[:1]:
        raise ValueError(f"stored feature map has {anchors.shape[0]} anchors but "
                         f"{mean.shape} kernel means")
    radius = float(arrays[FEATURE_MAP_RADIUS]) if FEATURE_MAP_RADIUS in arrays else 0.0
    return FeatureMapParams(fm_kind, anchors, float(arrays["feature_map_sigma"]), mean, radius)


@dataclass(frozen=True)
class SDOHState:
    """Model state after ``round`` rounds over ``n_seen`` items (arrays may live on a GPU)."""

    round: int
    n_seen: int
    dim: int
    centers: Any  # C, r × c int8, fixed Hadamard centers
    teacher: Any  # Ỹ, c × r int8: this round's Y becomes next round's teacher
    h1: Any  # c × r, Σ L̂ᵀV
    h2: Any  # r × r, Σ VᵀV
    g: Any  # m × m, Σ ΦᵀΦ
    f: Any  # m × r, Σ ΦᵀB
    label_gram: sp.csr_array  # c × c sparse float64 (host), Σ L̂ᵀL̂ (old-data term's value)
    label_sum: Any  # c, Σ L̂ᵀ1
    projection: Any  # P, m × r
    feature_map: FeatureMapParams
    exemplar_features: Any  # nq × d
    exemplar_labels: ClassLists  # nq items over c classes (host)
    exemplar_codes: Any  # nq × r int8
    query_net: QueryNet | None = None  # g of the residual_net query encoder (None: linear)

    @property
    def bits(self) -> int:
        return int(self.centers.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.centers.shape[1])

    def to_host(self, backend: Backend) -> SDOHState:
        """The same state with every array as a NumPy array."""
        arrays: dict[str, Any] = {k: backend.to_numpy(getattr(self, k)) for k in _ARRAY_FIELDS}
        net = None if self.query_net is None else self.query_net.to_host(backend)
        return replace(self, query_net=net, **arrays)

    def to_arrays(self, backend: Backend | None = None) -> dict[str, np.ndarray[Any, Any]]:
        """A flat dict of NumPy arrays (scalars as 0-d arrays) for persistence.

        The label Gram matrix is stored as CSR (``label_gram_indptr``, ``label_gram_indices``,
        ``label_gram_data``; its shape is c × c, c = ``centers.shape[1]``) and the exemplar
        labels as class lists (``exemplar_label_indptr``, ``exemplar_label_classes``,
        ``exemplar_label_n_classes``); the query network, when there is one, as the
        ``QUERY_NET_FIELDS``."""
        host = self.to_host(backend) if backend is not None else self
        out: dict[str, np.ndarray[Any, Any]] = {k: np.asarray(getattr(host, k))
                                                for k in _ARRAY_FIELDS}
        gram = self.label_gram
        out["label_gram_indptr"] = np.asarray(gram.indptr, dtype=np.int64)
        out["label_gram_indices"] = np.asarray(gram.indices, dtype=np.int32)
        out["label_gram_data"] = np.asarray(gram.data, dtype=np.float64)
        out.update(self.exemplar_labels.to_arrays(prefix=EXEMPLAR_LABEL_PREFIX))
        out["round"] = np.asarray(self.round, dtype=np.int64)
        out["n_seen"] = np.asarray(self.n_seen, dtype=np.int64)
        out["dim"] = np.asarray(self.dim, dtype=np.int64)
        fm = self.feature_map
        out["feature_map_kind"] = np.frombuffer(fm.kind.encode(), dtype=np.uint8).copy()
        out["feature_map_anchors"] = np.asarray(fm.anchors)
        out["feature_map_sigma"] = np.asarray(fm.sigma, dtype=np.float64)
        out["feature_map_mean"] = np.asarray(fm.mean)
        if fm.radius > 0:  # a state without growth stores exactly the fields it did before
            out[FEATURE_MAP_RADIUS] = np.asarray(fm.radius, dtype=np.float64)
        if host.query_net is not None:
            out.update(host.query_net.to_arrays())
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray[Any, Any]]) -> SDOHState:
        """Inverse of :meth:`to_arrays`; also reads states stored before labels became sparse
        (a dense c × c ``label_gram`` and a dense nq × c ``exemplar_labels``) and those
        without a query network."""
        fm = feature_map_from_arrays(arrays)
        c = int(np.asarray(arrays["centers"]).shape[1])
        if all(k in arrays for k in LABEL_GRAM_KEYS):
            gram = sp.csr_array((np.asarray(arrays["label_gram_data"], dtype=np.float64),
                                 np.asarray(arrays["label_gram_indices"], dtype=np.int32),
                                 np.asarray(arrays["label_gram_indptr"], dtype=np.int64)),
                                shape=(c, c))
        else:  # stored by the dense code: c × c
            gram = sp.csr_array(np.asarray(arrays["label_gram"], dtype=np.float64))
        if f"{EXEMPLAR_LABEL_PREFIX}indptr" in arrays:
            ex_labels = ClassLists.from_arrays(arrays, prefix=EXEMPLAR_LABEL_PREFIX)
        else:  # stored by the dense code: nq × c 0/1
            ex_labels = ClassLists.from_dense(np.asarray(arrays["exemplar_labels"]))
        return cls(
            round=int(arrays["round"]), n_seen=int(arrays["n_seen"]), dim=int(arrays["dim"]),
            feature_map=fm, label_gram=resize_label_gram(gram, c),
            exemplar_labels=ex_labels.widen(c), query_net=QueryNet.from_arrays(arrays),
            **{k: arrays[k] for k in _ARRAY_FIELDS},
        )
