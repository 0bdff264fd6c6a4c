"""The SDOH-HC model state carried from round to round, as plain arrays.

A state is everything a round needs from the past: the fixed centers C, the hash-center memory's
newest entry (the teacher Ỹ), the exemplar memory, the accumulators H1, H2, G, F (plus the label
statistics that make the old-data term's value exact), P and the feature map. It converts to a
flat ``dict[str, numpy array]`` so the memory layer can persist it without pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hashstream.solver.backend import Backend
from hashstream.solver.feature_map import FeatureMapKind, FeatureMapParams

_ARRAY_FIELDS = (
    "centers", "teacher", "h1", "h2", "g", "f", "label_gram", "label_sum", "projection",
    "exemplar_features", "exemplar_labels", "exemplar_codes",
)


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
    label_gram: Any  # c × c, Σ L̂ᵀL̂ (only for the old-data term's exact value)
    label_sum: Any  # c, Σ L̂ᵀ1
    projection: Any  # P, m × r
    feature_map: FeatureMapParams
    exemplar_features: Any  # nq × d
    exemplar_labels: Any  # nq × c uint8
    exemplar_codes: Any  # nq × r int8

    @property
    def bits(self) -> int:
        return int(self.centers.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.centers.shape[1])

    def to_host(self, backend: Backend) -> SDOHState:
        """The same state with every array as a NumPy array."""
        arrays: dict[str, Any] = {k: backend.to_numpy(getattr(self, k)) for k in _ARRAY_FIELDS}
        return replace(self, **arrays)

    def to_arrays(self, backend: Backend | None = None) -> dict[str, np.ndarray[Any, Any]]:
        """A flat dict of NumPy arrays (scalars as 0-d arrays) for persistence."""
        host = self.to_host(backend) if backend is not None else self
        out: dict[str, np.ndarray[Any, Any]] = {k: np.asarray(getattr(host, k))
                                                for k in _ARRAY_FIELDS}
        out["round"] = np.asarray(self.round, dtype=np.int64)
        out["n_seen"] = np.asarray(self.n_seen, dtype=np.int64)
        out["dim"] = np.asarray(self.dim, dtype=np.int64)
        fm = self.feature_map
        out["feature_map_kind"] = np.frombuffer(fm.kind.encode(), dtype=np.uint8).copy()
        out["feature_map_anchors"] = np.asarray(fm.anchors)
        out["feature_map_sigma"] = np.asarray(fm.sigma, dtype=np.float64)
        out["feature_map_mean"] = np.asarray(fm.mean)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray[Any, Any]]) -> SDOHState:
        """Inverse of :meth:`to_arrays`."""
        kind = bytes(np.asarray(arrays["feature_map_kind"], dtype=np.uint8)).decode()
        if kind not in ("identity", "rbf"):
            raise ValueError(f"unknown feature map kind {kind!r} in stored state")
        fm_kind: FeatureMapKind = "identity" if kind == "identity" else "rbf"
        fm = FeatureMapParams(fm_kind, arrays["feature_map_anchors"],
                              float(arrays["feature_map_sigma"]), arrays["feature_map_mean"])
        return cls(
            round=int(arrays["round"]), n_seen=int(arrays["n_seen"]), dim=int(arrays["dim"]),
            feature_map=fm, **{k: arrays[k] for k in _ARRAY_FIELDS},
        )
