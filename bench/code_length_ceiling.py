"""How much a longer code can add on single-label data: the query encoder's ceiling.

With hash centers the learned database codes sit on (or within a few bits of) their class's
center, so a query's AP is decided by how its code sgn(φ(q)P) ranks the classes' centers. This
prints, per order and code length (final round, validation split, mean over seeds):

- ``map`` / ``tie``: mAP@all and the tie-aware mAP of the protocol;
- ``q_acc``: how often the query's code is nearest to its own class's center;
- ``db_dist``: mean Hamming distance of a learned database code to its class's center;
- ``rank_bits``: the AP if the database were exactly the centers, ranked by the query code's
  inner product with each center (ties broken at random, class by class);
- ``rank_real``: the same with the real-valued φ(q)P before the sign: the ceiling a longer
  code can approach but not pass while the encoder stays as it is;
- ``proj_ties``: mAP@all with the items at one distance ordered by ⟨φ(q)P, code⟩ (what a
  search with ``ties=projection`` returns);
- ``asym``: mAP@all with the database ranked by ⟨φ(q)P, code⟩ alone (the asymmetric distance;
  no search option does this yet).

Issue 14 asks mAP to rise with the code length on every single-label table; this shows how
much room there is above 32 bits (bench/RESULTS.md, session 9).

Run:  OPENBLAS_NUM_THREADS=1 python bench/code_length_ceiling.py [--set fashion|digits]
      [--bits 16 32 64] [--seeds 0 1 2] [--settings '{"eta": 0.3}']
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from term_scaling import DATA, SUITE, subsample

from hashstream.eval.online_hashing import EvalConfig, chunks, load_dataset, split_stream
from hashstream.solver.backend import get_backend
from hashstream.solver.linear_baseline import sign_codes
from hashstream.solver.metrics import _average_precision, evaluate, relevance
from hashstream.solver.sdoh_hc.round import learn_chunk, project
from hashstream.solver.sdoh_hc.settings import SDOHSettings

QUERIES = {"digits": 300, "fashion": 1000}
FIGURES = ("map", "tie", "q_acc", "db_dist", "rank_bits", "rank_real", "proj_ties", "asym")


def class_rank_ap(scores: np.ndarray, query_class: np.ndarray, sizes: np.ndarray) -> float:
    """Mean AP when each query ranks whole classes by ``scores`` (queries × classes): its own
    class's items come right after every class scored higher."""
    aps = []
    for i, t in enumerate(query_class):
        before = sizes[scores[i] > scores[i, t]].sum()
        k = np.arange(1, sizes[t] + 1)
        aps.append(float(np.mean(k / (before + k))))
    return float(np.mean(aps))


def one_run(job: tuple[str, int, int, str, dict[str, Any]]) -> dict[str, Any]:
    name, bits, seed, order, overrides = job
    data = load_dataset(DATA / SUITE[name][0])
    if name == "fashion":
        data = subsample(data, 20_000, 0)
    chunk = SUITE[name][1]
    backend = get_backend("numpy")
    settings = SDOHSettings(**{"bits": bits, "seed": seed, **overrides})
    config = EvalConfig(settings=settings, chunk=chunk, queries=QUERIES[name],
                        order=order, split="validation", backend="numpy")  # type: ignore[arg-type]
    queries, stream = split_stream(data, config)
    state, codes, items = None, [], []
    for idx in chunks(stream, chunk, bits + 1):
        result = learn_chunk(state, data.features[idx], data.labels.take(idx), settings, backend)
        state = result.state
        codes.append(result.codes)
        items.append(idx)
    assert state is not None
    z = project(state, data.features[queries], backend)
    q_codes = sign_codes(z)
    db_codes = np.concatenate(codes)
    q_labels, db_labels = data.labels.take(queries), data.labels.take(np.concatenate(items))
    scores = evaluate(q_codes, q_labels, db_codes, db_labels, query_projection=z)
    centers = np.asarray(state.centers, dtype=np.int32)  # r × c
    q_class = q_labels.first_class(missing=-1)
    db_class = db_labels.first_class(missing=-1)
    q_scores = q_codes.astype(np.int32) @ centers
    db_scores = db_codes.astype(np.int32) @ centers
    sizes = np.bincount(db_class, minlength=centers.shape[1])
    real = z @ centers
    jitter = np.random.default_rng(seed).random(q_scores.shape) * 1e-3  # random tie order
    return {"order": order, "bits": bits, "map": scores.map, "tie": scores.map_tie_aware,
            "q_acc": float(np.mean(q_scores.argmax(1) == q_class)),
            "db_dist": float(np.mean((bits - db_scores[np.arange(len(db_class)), db_class])
                                     / 2)),
            "rank_bits": class_rank_ap(q_scores + jitter, q_class, sizes),
            "rank_real": class_rank_ap(real, q_class, sizes),
            "proj_ties": scores.map_projection_ties,
            "asym": asymmetric_map(z, db_codes, relevance(q_labels, db_labels))}


def asymmetric_map(z: np.ndarray, db_codes: np.ndarray, rel: np.ndarray) -> float:
    """mAP@all with every query's database ranked by ⟨z, code⟩ (insertion after it)."""
    signs, aps = db_codes.astype(np.float32).T, []
    for lo in range(0, len(z), 100):  # blocks of queries: memory stays 100 × n
        order = np.argsort(-(z[lo:lo + 100].astype(np.float32) @ signs), axis=1, kind="stable")
        aps.append(_average_precision(np.take_along_axis(rel[lo:lo + 100], order, axis=1),
                                      None))
    return float(np.concatenate(aps).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", choices=sorted(QUERIES), default="fashion")
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--orders", nargs="+", default=["class-incremental", "random"])
    ap.add_argument("--settings", default="{}", help="solver settings over the defaults (JSON)")
    args = ap.parse_args()
    overrides = json.loads(args.settings)
    jobs = [(args.set, b, s, o, overrides) for o in args.orders for b in args.bits
            for s in args.seeds]
    runs: dict[tuple[str, int], list[list[float]]] = defaultdict(list)
    with ProcessPoolExecutor(2) as pool:
        for r in pool.map(one_run, jobs):
            runs[(r["order"], r["bits"])].append([r[k] for k in FIGURES])
            print(f"  done: {r['order']} {r['bits']} bits", flush=True)
    print(f"\n{args.set}, validation split, seeds {args.seeds}, "
          f"settings {overrides or 'defaults'}\n")
    print("| order | bits | " + " | ".join(FIGURES) + " |")
    print("|---|---|" + "---|" * len(FIGURES))
    for (order, bits), values in runs.items():
        mean = np.mean(values, axis=0)
        print(f"| {order} | {bits} | " + " | ".join(
            f"{v:.2f}" if k == "db_dist" else f"{v:.4f}" for k, v in zip(FIGURES, mean,
                                                                           strict=True)) + " |")


if __name__ == "__main__":
    main()
