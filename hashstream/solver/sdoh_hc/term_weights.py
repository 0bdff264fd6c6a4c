"""The multiplier each term of Eq. 7 gets in one round, from the settings and the round's sizes.

Eq. 7 as written sums its terms, and the sums grow at different rates: the code-to-center term
with r²·n·c, the Hadamard term with r·c, the distillation term with r²·c², the old-data term
with r²·n·n_old. So θ, η and β mean different things at every n, r and c (with n = 2,000 and
θ = 1 the Hadamard term pulls ~6,000 times less than the center term and ablating it changes
nothing). ``term_scaling='normalized'`` gives each term a multiplier such that, where the codes
agree with it, its pull on one entry of the variable it shapes is its weight times the same
scale, whatever n, r, c, n_old and the exemplar count:

- on B: the center term pulls η·r (its Q is η r L̂Y), the old-data term α·r, quantization β·r;
- on V: the exemplar term γ·r, quantization β·r;
- on Y: the center term pulls η·r·n/c (Y's row sums n/c codes), the Hadamard term θ·r·n/c and
  the distillation term δ·r·n/c (δ = ``delta``, θ where it is None).

Every pull then grows with the chunk the same way, so duplicating every item of a chunk leaves
the codes unchanged (a test checks this). ``'paper'`` keeps the raw sums of Eq. 7 (with the
``old_weight`` policy), the behaviour of indexes created before this setting existed.
"""

from __future__ import annotations

from dataclasses import dataclass

from hashstream.solver.sdoh_hc.settings import SDOHSettings


@dataclass(frozen=True)
class TermWeights:
    """Multipliers on the raw terms of Eq. 7 (0 for a term switched off or with no data)."""

    old: float
    exemplar: float
    quantization: float
    hadamard: float
    distillation: float
    center: float


def term_weights(settings: SDOHSettings, *, n: int, r: int, c: int, n_old: int,
                 n_exemplars: int) -> TermWeights:
    """The multipliers for a round on ``n`` new items with ``r`` bits and ``c`` classes, after
    ``n_old`` items and with ``n_exemplars`` exemplars in memory."""
    s = settings
    use_old = s.use_old_term and n_old > 0
    use_ex = s.use_exemplar_term and n_exemplars > 0
    if s.term_scaling == "paper":
        w_old = n / n_old if use_old and s.old_weight == "balanced" else 1.0
        return TermWeights(
            old=s.alpha * w_old if use_old else 0.0,
            exemplar=s.gamma if use_ex else 0.0,
            quantization=s.beta,
            hadamard=s.theta if s.use_hadamard_term else 0.0,
            distillation=s.distill_weight if s.use_distillation else 0.0,
            center=s.eta if s.use_center_term else 0.0,
        )
    # H1's rows sum n_old/c codes and E's entries nq/c exemplar codes; Y's rows n/c new codes.
    per_class_new = n / max(c, 1)
    return TermWeights(
        old=s.alpha * c / n_old if use_old else 0.0,
        exemplar=s.gamma * c / n_exemplars if use_ex else 0.0,
        quantization=s.beta * r,
        hadamard=s.theta * r * per_class_new if s.use_hadamard_term else 0.0,
        # its Q on Y is r·KỸ, whose entries are 2 where Y agrees with the teacher
        distillation=s.distill_weight * per_class_new / 2 if s.use_distillation else 0.0,
        center=s.eta if s.use_center_term else 0.0,
    )
