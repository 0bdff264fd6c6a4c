"""Random-projection LSH (sign of a Gaussian projection of centred features): the baseline
every learned hash must beat by a wide margin, and the smallest registered method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hashstream.solver.class_lists import ClassLists
from hashstream.solver.linear_baseline import sign_codes
from hashstream.solver.method import PAIRS, Arrays, LearnResult, register
from hashstream.solver.metrics import pack_codes


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

    def project(self, features: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """(x − μ) W: the real-valued projection whose sign is the code."""
        centred = np.asarray(features, dtype=np.float64) - self.mean
        z: np.ndarray[Any, Any] = centred @ self.weights
        return z

    def encode(self, features: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return sign_codes(self.project(features))


class LSHEncoder:
    """The encoder of the "lsh" method: packed sgn((q − μ)W)."""

    modalities: tuple[str, ...] = ("image",)

    def __init__(self, lsh: RandomProjection) -> None:
        self.lsh = lsh
        self.bits = int(lsh.weights.shape[1])

    def encode(self, queries: np.ndarray[Any, Any], modality: str = "image"
               ) -> np.ndarray[Any, Any]:
        return pack_codes(self.project(queries, modality) >= 0)

    def project(self, queries: np.ndarray[Any, Any], modality: str = "image"
                ) -> np.ndarray[Any, Any]:
        if modality != "image":
            raise ValueError(f"lsh encodes feature vectors only, not {modality!r}")
        return self.lsh.project(queries)


class LSHMethod:
    """LSH as a method ("lsh"): the first chunk fixes μ and W (the state); every round, and
    every query, is encoded by sgn((x − μ)W). Labels are not used."""

    name: str = "lsh"
    targets: tuple[str, ...] = (PAIRS,)
    modalities: tuple[str, ...] = ("image",)
    encoder_fields: tuple[str, ...] = ("mean", "weights")
    fixed_fields: tuple[str, ...] = ("mean", "weights")
    grown_fields: tuple[str, ...] = ()

    def __init__(self, bits: int, seed: int, dim: int) -> None:
        self.bits, self.seed, self.dim = bits, seed, dim

    def learn(self, state: RandomProjection | None, features: np.ndarray[Any, Any],
              labels: ClassLists, text: np.ndarray[Any, Any] | None = None,
              ids: np.ndarray[Any, Any] | None = None) -> LearnResult:
        lsh = state or RandomProjection.fit(features, self.bits, self.seed)
        encoder = LSHEncoder(lsh)
        return LearnResult(codes={PAIRS: encoder.encode(features)}, state=lsh,
                           state_arrays={"mean": lsh.mean, "weights": lsh.weights},
                           encoder=encoder)

    def state_from_arrays(self, state: Arrays, model: Arrays | None = None) -> RandomProjection:
        return RandomProjection(state["mean"], state["weights"])

    def encoder(self, state: Arrays, model: Arrays | None = None) -> LSHEncoder:
        return LSHEncoder(self.state_from_arrays(state))

    def round_bytes(self, n: int, label_pairs: int, n_classes: int) -> int:
        return 8 * n * (2 * self.dim + 2 * self.bits) + 8 * self.dim * self.bits


register("lsh", lambda spec: LSHMethod(int(spec.settings.get("bits", 32)),
                                       int(spec.settings.get("seed", 0)), spec.dim))
