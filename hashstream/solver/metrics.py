"""Retrieval metrics of the online-hashing literature: mAP@all, mAP@k, precision within
Hamming radius 2 and the precision–recall curve over Hamming radii, plus the tie-aware mAP.

Relevance: a database item is relevant to a query when they share at least one label.
Ranking: by Hamming distance, ties broken by insertion order (stable), as SOLVER.md asks.
Hamming distances tie massively (codes collapse onto class centers), so that tie-break can
decide mAP@all; the tie-aware mAP (McSherry & Najork, ECIR 2008) is the exact expected AP when
items at equal distance come in uniformly random order, independent of insertion order. Given
the queries' real-valued projections (the vectors whose signs are their codes), mAP@all is also
scored with the items at one distance ordered by their code's inner product with the query's
projection (asymmetric distance within a tie; insertion order after it): what a search can
rank at no extra cost in bits.
Distances come from packed codes (XOR + popcount over 64-bit words), queries in blocks, so
1,000 queries against 70,000 codes take a second or two and no loop runs over the database.
Labels are :class:`ClassLists`; relevance of a block of queries is a sparse product with the
database's class-major lists, so memory is O(block × N), never N × c.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hashstream.solver.class_lists import ClassLists

Array = np.ndarray[Any, Any]

_QUERY_BLOCK = 64


def pack_codes(codes: Array) -> Array:
    """±1 (or 0/1) codes, n × r, to packed uint8 rows: bit 1 for +1, big-endian in a byte."""
    return np.packbits(np.asarray(codes) > 0, axis=1)


def _as_words(packed: Array) -> Array:
    """Packed uint8 rows padded to a multiple of 8 bytes and viewed as uint64 words."""
    n, nbytes = packed.shape
    pad = (-nbytes) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros((n, pad), dtype=np.uint8)], axis=1)
    return np.ascontiguousarray(packed).view(np.uint64)


def hamming_distances(query_packed: Array, db_packed: Array) -> Array:
    """All pairwise Hamming distances (q × n, uint16) between packed code rows."""
    qw, dw = _as_words(query_packed), _as_words(db_packed)
    out = np.zeros((qw.shape[0], dw.shape[0]), dtype=np.uint16)
    for w in range(qw.shape[1]):
        out += np.bitwise_count(qw[:, w, None] ^ dw[None, :, w]).astype(np.uint16)
    return out


def as_class_lists(labels: ClassLists | Array) -> ClassLists:
    """``labels`` as class lists; an n × c 0/1 matrix (callers not yet on class lists) is
    converted once."""
    if isinstance(labels, ClassLists):
        return labels
    return ClassLists.from_dense(np.asarray(labels))


def relevance(query_labels: ClassLists | Array, db_labels: ClassLists | Array) -> Array:
    """q × n booleans: True where a query and a database item share at least one label."""
    return as_class_lists(query_labels).shares_any(as_class_lists(db_labels))


@dataclass(frozen=True)
class RetrievalScores:
    """Scores of one evaluation. ``pr_precision[i]``/``pr_recall[i]`` are at radius i."""

    map: float
    average_precision: Array  # AP of each query, for subgroup means (seen classes, forgetting)
    map_tie_aware: float  # expected mAP@all over uniformly random orders within distance ties
    average_precision_tie_aware: Array  # its per-query values
    map_at_k: dict[int, float]
    precision_r2: float
    pr_precision: Array
    pr_recall: Array
    # mAP@all with the items at one distance ordered by ⟨query projection, code⟩ (None: no
    # projections given)
    map_projection_ties: float | None = None
    average_precision_projection_ties: Array | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "map": self.map,
            "map_tie_aware": self.map_tie_aware,
            **({} if self.map_projection_ties is None
               else {"map_projection_ties": self.map_projection_ties}),
            "map_at_k": {str(k): v for k, v in self.map_at_k.items()},
            "precision_r2": self.precision_r2,
            "pr_curve": {"radius": list(range(len(self.pr_precision))),
                         "precision": self.pr_precision.tolist(),
                         "recall": self.pr_recall.tolist()},
        }


def _average_precision(rel_sorted: Array, limit: int | None) -> Array:
    """AP per row of a ranked relevance matrix (q × n bool); ``limit`` cuts at top k.

    AP = mean over relevant positions i of (relevant in top i) / i; 0 when nothing relevant is
    retrieved. For AP@k the mean runs over the relevant items within the top k.
    """
    rel = rel_sorted[:, :limit] if limit is not None else rel_sorted
    hits = np.cumsum(rel, axis=1, dtype=np.int64)
    ranks = np.arange(1, rel.shape[1] + 1)
    prec_sum = np.where(rel, hits / ranks, 0.0).sum(axis=1)
    n_rel = hits[:, -1] if rel.shape[1] else np.zeros(rel.shape[0])
    return np.where(n_rel > 0, prec_sum / np.maximum(n_rel, 1), 0.0)


def _harmonic_table(n: int) -> Array:
    """H[i] = 1 + 1/2 + … + 1/i for i = 0 … n (H[0] = 0)."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])


def _tie_aware_average_precision(found_at: Array, hits_at: Array, harmonic: Array) -> Array:
    """Expected AP@all per query (rows) when items at equal distance are ranked in uniformly
    random order; ``found_at``/``hits_at`` (q × (r+1)) count items / relevant items per distance.

    A tie group at ranks a+1 … a+t holding ρ relevant items, with R_b relevant ranked above it:
    rank a+s is relevant with probability ρ/t, and given that, the other ρ-1 relevant items sit
    among the s-1 ranks before it (s-1)(ρ-1)/(t-1) times in expectation; precision at a fixed
    rank is linear in the hits above it, so the group adds exactly
    (ρ/t) Σ_{s=1..t} [R_b + 1 + (s-1)(ρ-1)/(t-1)] / (a+s)
    = (ρ/t) [(R_b + 1) ΔH + (ρ-1)/(t-1) (t - (a+1) ΔH)],  ΔH = H(a+t) - H(a),
    to the expected Σ precision@rank over relevant items; divided by their number as mAP@all.
    O(q × (r+1)) from the counts, and it depends on nothing but them (not insertion order).
    """
    t, rho = found_at.astype(np.float64), hits_at.astype(np.float64)
    counts = found_at.astype(np.int64)
    start = np.cumsum(counts, axis=1) - counts  # a: items ranked above the group
    d_h = harmonic[start + counts] - harmonic[start]
    before = np.cumsum(rho, axis=1) - rho  # R_b
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(t > 0, rho / t, 0.0)
        slope = np.where(t > 1, share * (rho - 1) / (t - 1), 0.0)
    total = (share * (before + 1) * d_h + slope * (t - (start + 1) * d_h)).sum(axis=1)
    n_rel = rho.sum(axis=1)
    return np.where(n_rel > 0, total / np.maximum(n_rel, 1), 0.0)


def evaluate(query_codes: Array, query_labels: ClassLists | Array, db_codes: Array,
             db_labels: ClassLists | Array, ks: tuple[int, ...] = (),
             bits: int | None = None,
             query_projection: Array | None = None) -> RetrievalScores:
    """Score queries against a database. Codes are ±1 (n × r) or packed uint8 with ``bits``.

    Labels are class lists (a dense 0/1 matrix is still accepted and converted once).
    ``query_projection`` (q × r, real; the query codes are its signs) adds
    ``map_projection_ties``: the items at one distance ranked by their code's inner product
    with it, insertion order after that."""
    q_lists, db_lists = as_class_lists(query_labels), as_class_lists(db_labels)
    db_by_class = db_lists.by_class()
    if np.asarray(query_codes).dtype == np.uint8 and bits is not None:
        qp, dp, r = np.asarray(query_codes), np.asarray(db_codes), bits
    else:
        qp, dp, r = pack_codes(query_codes), pack_codes(db_codes), np.asarray(query_codes).shape[1]
    nq = qp.shape[0]
    z = db_signs = ap_proj = None
    if query_projection is not None:
        z = np.asarray(query_projection, dtype=np.float32)
        if z.shape != (nq, r):
            raise ValueError(f"query_projection must be {nq} × {r}, not {z.shape}")
        # ±1 database codes (float32) for the inner products: n × r, once
        db_signs = np.unpackbits(dp, axis=1, count=r).astype(np.float32) * 2 - 1
        ap_proj = np.zeros(nq)
    ap_all = np.zeros(nq)
    ap_tie = np.zeros(nq)
    harmonic = _harmonic_table(dp.shape[0])
    ap_k = {k: np.zeros(nq) for k in ks}
    hits_at = np.zeros((nq, r + 1))  # relevant items at distance exactly i
    found_at = np.zeros((nq, r + 1))  # items at distance exactly i
    n_relevant = np.zeros(nq)
    for start in range(0, nq, _QUERY_BLOCK):
        sl = slice(start, min(start + _QUERY_BLOCK, nq))
        dist = hamming_distances(qp[sl], dp)
        rel = q_lists.take(np.arange(sl.start, sl.stop)).shares_any(db_lists, db_by_class)
        order = np.argsort(dist, axis=1, kind="stable")
        rel_sorted = np.take_along_axis(rel, order, axis=1)
        ap_all[sl] = _average_precision(rel_sorted, None)
        if z is not None and db_signs is not None and ap_proj is not None:
            # lexsort: the last key is the primary one; stable, so insertion order after both
            by_projection = np.lexsort((-(z[sl] @ db_signs.T), dist), axis=1)
            ap_proj[sl] = _average_precision(np.take_along_axis(rel, by_projection, axis=1),
                                             None)
        for k in ks:
            ap_k[k][sl] = _average_precision(rel_sorted, k)
        n_relevant[sl] = rel.sum(axis=1)
        bins = (dist + (np.arange(dist.shape[0]) * (r + 1))[:, None]).ravel()
        size = dist.shape[0] * (r + 1)
        found_at[sl] = np.bincount(bins, minlength=size).reshape(-1, r + 1)
        hits_at[sl] = np.bincount(bins[rel.ravel()], minlength=size).reshape(-1, r + 1)
        ap_tie[sl] = _tie_aware_average_precision(found_at[sl], hits_at[sl], harmonic)
    found_cum = np.cumsum(found_at, axis=1)
    hits_cum = np.cumsum(hits_at, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(found_cum > 0, hits_cum / found_cum, 0.0)
        recall = np.where(n_relevant[:, None] > 0, hits_cum / n_relevant[:, None], 0.0)
    return RetrievalScores(
        map=float(ap_all.mean()) if nq else 0.0,
        average_precision=ap_all,
        map_tie_aware=float(ap_tie.mean()) if nq else 0.0,
        average_precision_tie_aware=ap_tie,
        map_at_k={k: float(v.mean()) if nq else 0.0 for k, v in ap_k.items()},
        precision_r2=float(precision[:, min(2, r)].mean()) if nq else 0.0,
        pr_precision=precision.mean(axis=0) if nq else np.zeros(r + 1),
        pr_recall=recall.mean(axis=0) if nq else np.zeros(r + 1),
        map_projection_ties=(None if ap_proj is None else float(ap_proj.mean()) if nq
                             else 0.0),
        average_precision_projection_ties=ap_proj,
    )
