"""SDOH-HC as a :class:`~hashstream.solver.method.Method` ("sdoh-hc").

A round is :func:`~hashstream.solver.sdoh_hc.round.learn_chunk`; the state is
:class:`~hashstream.solver.sdoh_hc.state.SDOHState` and its arrays; the encoder is sgn(φ(q)P)
(:func:`~hashstream.solver.sdoh_hc.round.project_with`), built from φ's parameters and P, plus
the query network g inside the sign when the state holds one (``query_encoder='residual_net'``).
With anchor growth φ's anchors and kernel means change from round to round (append-only), so
only its kind and σ are fixed fields; an encoder takes the first P-rows − 1 anchors of the
state it is given, which are exactly the anchors of P's round when the state is that round's
or a later one.

The codes a round stores are the chunk's learned B, not sgn(φ(X)P) of the same features: B is
the discrete solution of the round's objective and P is fitted to it afterwards by ridge
regression, so the two agree on most bits but not all (by design: the paper stores B).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashstream.solver.backend import Backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.feature_map import FeatureMapParams
from hashstream.solver.method import PAIRS, Arrays, LearnResult, MethodSpec, register
from hashstream.solver.metrics import pack_codes
from hashstream.solver.query_net import QUERY_NET_FIELDS, QueryNet
from hashstream.solver.sdoh_hc.budget import estimate_round_bytes
from hashstream.solver.sdoh_hc.round import learn_chunk, project_with
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import (
    FEATURE_MAP_FIELDS,
    SDOHState,
    feature_map_from_arrays,
)


class SDOHEncoder:
    """sgn(φ(q)P [+ g(q)]) as packed codes."""

    modalities: tuple[str, ...] = ("image",)

    def __init__(self, feature_map: FeatureMapParams, projection: np.ndarray[Any, Any],
                 backend: Backend, query_net: QueryNet | None = None) -> None:
        self.feature_map = feature_map_for(feature_map, projection)
        self.projection = projection
        self.backend = backend
        self.query_net = query_net
        self.bits = int(np.asarray(projection).shape[1])

    def encode(self, queries: np.ndarray[Any, Any], modality: str = "image"
               ) -> np.ndarray[Any, Any]:
        return pack_codes(self.project(queries, modality) >= 0)

    def project(self, queries: np.ndarray[Any, Any], modality: str = "image"
                ) -> np.ndarray[Any, Any]:
        """φ(q)P [+ g(q)] on the host, in the backend's dtype."""
        if modality != "image":
            raise ValueError(f"sdoh-hc encodes feature vectors only, not {modality!r}")
        return project_with(self.feature_map, self.projection, queries, self.backend,
                            self.query_net)


def feature_map_for(feature_map: FeatureMapParams, projection: np.ndarray[Any, Any]
                    ) -> FeatureMapParams:
    """φ of P's round: its first P-rows − 1 anchors (growth only appends, so a later state's
    anchors start with them). Fewer anchors than that means the state is older than P."""
    rows = int(np.asarray(projection).shape[0])
    if feature_map.kind != "rbf":
        return feature_map
    if rows - 1 > feature_map.anchors.shape[0]:
        raise ValueError(f"P has {rows} rows but the feature map only "
                         f"{feature_map.anchors.shape[0]} anchors + bias: it is older than P")
    return feature_map.first(rows - 1)


class SDOHMethod:
    """SDOH-HC with fixed settings on one backend."""

    name: str = "sdoh-hc"
    targets: tuple[str, ...] = (PAIRS,)
    modalities: tuple[str, ...] = ("image",)
    fixed_fields: tuple[str, ...] = FEATURE_MAP_FIELDS
    grown_fields: tuple[str, ...] = ()

    def __init__(self, settings: SDOHSettings, dim: int, backend: Backend) -> None:
        self.settings = settings
        self.dim = dim
        self.backend = backend
        self.bits = settings.bits
        if settings.grows_anchors:  # anchors and their means grow with the rounds
            self.fixed_fields = ("feature_map_kind", "feature_map_sigma")
            self.grown_fields = ("feature_map_anchors", "feature_map_mean")
        net = QUERY_NET_FIELDS if settings.query_encoder == "residual_net" else ()
        self.encoder_fields: tuple[str, ...] = (*FEATURE_MAP_FIELDS, "projection", *net)

    def learn(self, state: SDOHState | None, features: np.ndarray[Any, Any],
              labels: ClassLists, text: np.ndarray[Any, Any] | None = None,
              ids: np.ndarray[Any, Any] | None = None) -> LearnResult:
        result = learn_chunk(state, features, labels, self.settings, self.backend)
        new = result.state.to_host(self.backend)
        ex_classes = new.exemplar_labels.classes
        return LearnResult(
            codes={PAIRS: pack_codes(result.codes)}, state=new, state_arrays=new.to_arrays(),
            encoder=SDOHEncoder(new.feature_map, new.projection, self.backend, new.query_net),
            projection=new.projection, centers=new.teacher,
            loss={k: float(v) for k, v in result.loss.items()}, seconds=dict(result.seconds),
            record={"model_version": new.round, "exemplar_histogram": np.bincount(
                ex_classes, minlength=new.n_classes).astype(int).tolist()})

    def state_from_arrays(self, state: Arrays, model: Arrays | None = None) -> SDOHState:
        return SDOHState.from_arrays(state)

    def encoder(self, state: Arrays, model: Arrays | None = None) -> SDOHEncoder:
        return SDOHEncoder(feature_map_from_arrays(state), state["projection"], self.backend,
                           QueryNet.from_arrays(state))

    def round_bytes(self, n: int, label_pairs: int, n_classes: int) -> int:
        s = self.settings
        return estimate_round_bytes(
            n=n, dim=self.dim, features_mapped=s.n_anchors if s.feature_map == "rbf" else self.dim,
            bits=s.bits, labels=label_pairs, classes=n_classes, exemplars=s.n1 + s.n2,
            query_hidden=s.query_hidden if s.query_encoder == "residual_net" else 0,
            anchor_growth=s.grows_anchors)


def _factory(spec: MethodSpec) -> SDOHMethod:
    return SDOHMethod(SDOHSettings.from_dict(dict(spec.settings)), spec.dim, spec.backend)


register("sdoh-hc", _factory)
