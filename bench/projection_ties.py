"""The cost of ``ties=projection``: single-query search latency in-process, plain top-k
(ties by insertion) beside the top-k with a distance's items ordered by the query's projection
(:func:`hashstream.hamming.projection_ties.search_projection_ties`), on codes shaped like
SDOH-HC's: every item near its class's hash center.

Codes: ``classes`` centers (the first columns of a Sylvester Hadamard matrix, rows permuted,
as the solver's centers are ±1 and pairwise r/2 apart); each item is its center with each bit
flipped with probability ``flip`` (SDOH-HC's learned codes sit 0–3 bits off at 64 bits). A
query's projection is its class scores times the centers plus noise: z = s Cᵀ + ε, its code
sgn(z). The cost of the option is scoring every item at the k-th distance, so it grows with
the size of the tie at the cut (printed as "scored").

Run:  OPENBLAS_NUM_THREADS=1 python bench/projection_ties.py [--items 100000 1000000]
      [--bits 32 64] [--k 10 100] [--queries 200] [--margins 2 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.linalg import hadamard

from hashstream.hamming.index import HammingIndex, native_isa
from hashstream.hamming.projection_ties import search_projection_ties


def codes_and_queries(n: int, bits: int, classes: int, flip: float, queries: int,
                      margin: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(packed database codes, packed query codes, query projections)."""
    rng = np.random.default_rng(seed)
    size = 1 << (bits - 1).bit_length()
    centers = hadamard(size)[:bits, 1:classes + 1][rng.permutation(bits)]  # r × c
    y = rng.integers(0, classes, n)
    db = centers[:, y].T.copy()
    db[rng.random(db.shape) < flip] *= -1
    scores = rng.standard_normal((queries, classes))
    scores[np.arange(queries), rng.integers(0, classes, queries)] += margin  # a likely class
    z = scores @ centers.T + 0.5 * rng.standard_normal((queries, bits))
    return np.packbits(db > 0, axis=1), np.packbits(z >= 0, axis=1), z.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--bits", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--k", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--flip", type=float, default=1 / 64)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--margins", type=float, nargs="+", default=[2.0, 8.0],
                    help="the query's top class score over N(0, 1) others: a large margin puts "
                    "its code on the class's center (the whole class ties at the cut)")
    args = ap.parse_args()
    print(f"kernel {native_isa() or 'numpy'}; {args.classes} classes, bit flips "
          f"{args.flip:.4f}; {args.queries} single queries per cell; medians and p99 in ms")
    print("| items | bits | margin | k | plain p50 | plain p99 | projection p50 | projection p99 "
          "| ratio p50 | items scored (median) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, bits, margin in ((n, b, m) for n in args.items for b in args.bits
                            for m in args.margins):
        db, qc, z = codes_and_queries(n, bits, args.classes, args.flip, args.queries, margin)
        index = HammingIndex(bits)
        index.add(db, np.arange(n))
        view = index.view()
        for k in args.k:
            plain, ties, scored = [], [], []
            for i in range(args.queries):
                q = qc[i:i + 1]
                t0 = time.perf_counter()
                d, _ = view.search(q, k)
                t1 = time.perf_counter()
                search_projection_ties(view, q, z[i:i + 1], k)
                t2 = time.perf_counter()
                plain.append((t1 - t0) * 1e3)
                ties.append((t2 - t1) * 1e3)
                scored.append(int(view.range_positions(q, int(d[0, -1]))[0][-1]))
            p50, t50 = statistics.median(plain), statistics.median(ties)
            p99, t99 = float(np.percentile(plain, 99)), float(np.percentile(ties, 99))
            print(f"| {n:,} | {bits} | {margin:g} | {k} | {p50:.2f} | {p99:.2f} | {t50:.2f} | "
                  f"{t99:.2f} | {t50 / p50:.1f} | {int(statistics.median(scored)):,} |",
                  flush=True)


if __name__ == "__main__":
    main()
