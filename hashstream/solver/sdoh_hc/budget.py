"""How much memory a round needs, estimated before it starts, so a worker never takes on a
round that would exhaust its machine (the check against ``HASHSTREAM_MAX_ROUND_BYTES``)."""

from __future__ import annotations

_F64 = 8
# Live copies of the n × r iterates in one V/B/Y iteration (B, V, Z, E, L̂H1, Q, QR factors).
_NR_COPIES = 12
# Live copies of the n × m mapped features (Φ and its temporaries: distances, kernel values).
_NM_COPIES = 3


def estimate_round_bytes(*, n: int, dim: int, features_mapped: int, bits: int, labels: int,
                         classes: int, exemplars: int, query_hidden: int = 0,
                         anchor_growth: bool = False) -> int:
    """Peak bytes of one SDOH-HC round over ``n`` items (``dim`` features mapped to
    ``features_mapped``), ``labels`` (item, class) pairs, ``classes`` classes and
    ``exemplars`` exemplars: linear in each, never quadratic in the classes.
    ``query_hidden``: the query network's width (0: the linear encoder, no network).
    ``anchor_growth``: a round may grow φ's anchors, which builds G anew beside the old one
    and regresses the new columns on the old ones over the exemplars (their Gram matrix)."""
    m = features_mapped
    per_item = _F64 * (2 * dim + _NM_COPIES * m + _NR_COPIES * bits)
    model = _F64 * (2 * m * m + 2 * m * bits + 4 * classes * bits + bits * bits)
    label_pairs = labels * (_F64 + 4 + 8) * 3  # L̂ in CSR, its transpose, products' indices
    # exemplar similarity: at worst (many distinct label sets) Sqn in blocks of 4,096 exemplars
    memory = exemplars * (_F64 * dim + bits + 16) + min(exemplars, 4096) * n * _F64
    # query network: its rows (chunk and memory) as float32 inputs, mapped features and
    # residuals; weights with their two Adam moments
    rows = n + exemplars
    query_net = 0 if query_hidden <= 0 else (
        rows * (4 * dim + _F64 * (features_mapped + 2 * bits))
        + 3 * 4 * (dim * query_hidden + query_hidden * bits) + 4 * 128 * query_hidden * 3)
    growth = _F64 * (3 * m * m + exemplars * m) if anchor_growth else 0
    return n * per_item + model + label_pairs + memory + query_net + growth
