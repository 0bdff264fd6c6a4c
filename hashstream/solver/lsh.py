"""Random-projection LSH (sign of a Gaussian projection of centred features): the baseline
every learned hash must beat by a wide margin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RandomProjection:
    """codes = sgn((x − μ) W), W Gaussian d × r; μ is the first chunk's mean."""

    mean: np.ndarray[Any, Any]
    weights: np.ndarray[Any, Any]

    @classmethod
    def fit(cls, first_chunk: np.ndarray[Any, Any], bits: int, seed: int) -> RandomProjection:
        x = np.asarray(first_chunk, dtype=np.float64)
        rng = np.random.default_rng([seed, 104729])
        return cls(x.mean(axis=0), rng.standard_normal((x.shape[1], bits)))

    def encode(self, features: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        z = (np.asarray(features, dtype=np.float64) - self.mean) @ self.weights
        return np.where(z >= 0, 1, -1).astype(np.int8)
