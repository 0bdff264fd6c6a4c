"""Settings of the SDOH-HC round: weights, memory sizes, iterations and ablation switches."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

from hashstream.solver.feature_map import FeatureMapKind

ExemplarPolicy = Literal["random", "class_balanced", "nearest_center", "condensed"]
ExemplarKeep = Literal["class_balanced", "random"]
OldWeight = Literal["balanced", "paper"]
OldSimilarity = Literal["normalized", "lemon"]
TermScaling = Literal["normalized", "paper"]
QueryEncoder = Literal["linear", "residual_net"]
AnchorGrowth = Literal["off", "novelty"]

BY_SCALING = math.nan
"""Default of the five term weights: the value ``WEIGHT_DEFAULTS`` gives the term scaling."""
WEIGHT_DEFAULTS: dict[str, dict[str, float]] = {
    # Eq. 7's own weights (SOLVER.md; the exemplar and old-data weights are 1)
    "paper": {"theta": 1.0, "eta": 1.0, "beta": 1.0, "alpha": 1.0, "gamma": 1.0},
    # chosen on validation splits carved from the training streams (bench/term_scaling.py;
    # delta, the self-distillation weight, in session 6: bench/RESULTS.md)
    "normalized": {"theta": 0.3, "eta": 1.0, "beta": 0.03, "alpha": 1.0, "gamma": 100.0,
                   "delta": 0.1},
}


@dataclass(frozen=True)
class SDOHSettings:
    """Hyper-parameters of SDOH-HC (paper Eq. 7; SOLVER.md names).

    ``theta`` weighs the Hadamard center term and ``delta`` the self-distillation term (θ
    where ``delta`` is None, as Eq. 7 ties them), ``eta`` the code-to-center term, ``beta`` the
    B–V coupling, ``lam`` the ridge of P. ``n1`` exemplars are kept each round and ``n2`` new
    ones are chosen by ``exemplar_policy``. ``exemplar_keep='class_balanced'`` keeps the n1
    round-robin over the memory's classes, so each class seen keeps its share; ``'random'``
    (the paper's, and what indexes made before the setting keep) halves a class's share with
    every round that does not bring it (n1 = n2), so in a class-incremental stream the memory
    soon holds the last few classes only. ``exemplar_policy='condensed'`` stores n2 synthetic
    exemplars instead (IEM distribution matching, ``condensation.py``), at most
    ``condensed_per_class`` per class when that is positive, learned in ``condensed_steps``
    steps. ``old_weight='balanced'`` scales the
    old-data term by n / N_old so it does not swamp the new chunk as the stream grows;
    ``'paper'`` keeps weight 1. ``alpha`` and ``gamma`` weigh the old-data and the exemplar
    terms (1 in the paper). ``term_scaling='normalized'`` scales every term so that a weight
    means the same pull per code entry at any n, r and c (``term_weights.py``); ``'paper'``
    sums the terms of Eq. 7 as written (and is what indexes made before the setting keep).
    A weight not given takes its default under the chosen scaling (``WEIGHT_DEFAULTS``).
    The ``use_*`` switches turn single terms off for ablations.
    ``query_encoder`` is how queries are encoded: ``'linear'`` is sgn(φ(q)P); ``'residual_net'``
    adds a network of ``query_hidden`` ReLU units trained ``query_steps`` steps a round on the
    residual of stored codes (``hashstream/solver/query_net.py``), which reproduces multi-label
    codes far better but forgets in class-incremental streams (Fashion-MNIST 0.77 against
    0.87 for ``'linear'``, bench/RESULTS.md "Anchor growth"), so ``'linear'`` is the default.
    ``anchor_growth='novelty'`` (RBF only) fits ``first_anchor_share`` × ``n_anchors`` anchors
    on the first chunk and adds anchors from a later chunk whose points lie beyond the novelty
    radius (the ``anchor_coverage`` quantile of the first chunk's nearest-anchor distances),
    until at most 1 − ``anchor_coverage`` of the chunk lies beyond it, up to ``n_anchors`` in
    all (``feature_map.py``); ``'off'`` fits all ``n_anchors`` on the first chunk and keeps
    them (what indexes made before the setting keep).
    """

    bits: int = 32
    theta: float = BY_SCALING
    eta: float = BY_SCALING
    beta: float = BY_SCALING
    lam: float = 1e-3
    alpha: float = BY_SCALING
    gamma: float = BY_SCALING
    delta: float | None = BY_SCALING  # self-distillation weight; None: θ (as before it existed)
    term_scaling: TermScaling = "normalized"
    n1: int = 1000
    n2: int = 1000
    iterations: int = 3
    sweeps: int = 1
    feature_map: FeatureMapKind = "rbf"
    n_anchors: int = 1000
    anchor_growth: AnchorGrowth = "novelty"
    first_anchor_share: float = 0.5
    anchor_coverage: float = 0.9
    exemplar_policy: ExemplarPolicy = "class_balanced"
    exemplar_keep: ExemplarKeep = "class_balanced"
    condensed_per_class: int = 0
    condensed_steps: int = 100
    old_weight: OldWeight = "balanced"
    old_similarity: OldSimilarity = "normalized"
    use_old_term: bool = True
    use_exemplar_term: bool = True
    use_distillation: bool = True
    use_hadamard_term: bool = True
    use_center_term: bool = True
    query_encoder: QueryEncoder = "linear"
    query_hidden: int = 1024
    query_steps: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.term_scaling not in WEIGHT_DEFAULTS:
            raise ValueError(f"unknown term_scaling {self.term_scaling!r}")
        for name, value in WEIGHT_DEFAULTS[self.term_scaling].items():
            given = getattr(self, name)
            if given is not None and math.isnan(given):  # not given: the scaling's default
                object.__setattr__(self, name, value)
        if self.delta is not None and math.isnan(self.delta):  # paper scaling: θ's weight
            object.__setattr__(self, "delta", None)
        if self.delta is not None and self.delta < 0:
            raise ValueError("delta must be non-negative")
        if self.bits < 1 or self.bits > 1024:
            raise ValueError("bits must be between 1 and 1024")
        for name in ("theta", "eta", "beta", "lam", "alpha", "gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative")
        if self.lam <= 0:
            raise ValueError("lam must be positive (it keeps the P solve well posed)")
        for name in ("n1", "n2", "n_anchors", "condensed_per_class", "condensed_steps",
                     "query_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative")
        if self.iterations < 1 or self.sweeps < 1:
            raise ValueError("iterations and sweeps must be at least 1")
        if not 0 < self.first_anchor_share <= 1:
            raise ValueError("first_anchor_share must be in (0, 1]")
        if not 0 < self.anchor_coverage < 1:
            raise ValueError("anchor_coverage must be in (0, 1)")
        if self.query_hidden < 1:
            raise ValueError("query_hidden must be at least 1")
        for name, kind in (("exemplar_policy", ExemplarPolicy), ("exemplar_keep", ExemplarKeep),
                           ("old_weight", OldWeight),
                           ("old_similarity", OldSimilarity), ("feature_map", FeatureMapKind),
                           ("term_scaling", TermScaling), ("query_encoder", QueryEncoder),
                           ("anchor_growth", AnchorGrowth)):
            if getattr(self, name) not in get_args(kind):  # the Literal is the one list
                raise ValueError(f"unknown {name} {getattr(self, name)!r}")

    @property
    def distill_weight(self) -> float:
        """The self-distillation term's weight: ``delta``, or θ where it is None (the paper's
        Eq. 7 and indexes made before the two were separate)."""
        return self.theta if self.delta is None else self.delta

    @property
    def grows_anchors(self) -> bool:
        """Whether φ's anchors grow with the stream (RBF with ``anchor_growth`` on)."""
        return self.feature_map == "rbf" and self.anchor_growth != "off"

    @property
    def first_anchors(self) -> int:
        """How many anchors the first chunk may give (all of ``n_anchors`` without growth)."""
        if not self.grows_anchors:
            return self.n_anchors
        return max(1, math.ceil(self.first_anchor_share * self.n_anchors))

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON view of the settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SDOHSettings:
        """Build from a dict, ignoring keys that are not settings."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
