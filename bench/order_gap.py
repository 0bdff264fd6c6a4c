"""Class-incremental against random order, and code length against code length, with the
queries' own sampling noise: per-query AP (mAP@all and tie-aware) of the final round for each
(bits, seed, order) of one data set, then a paired bootstrap over the queries (a seed's query
set is the same in both orders: ``split_stream`` draws it from the seed alone).

Issue 14 item 4 asks class-incremental order to be as good as random; the whole Fashion-MNIST
split (each class over three rounds) is the table where it is not. This says how much of a
gap (or of a flat 32 → 64 bits step) the 1,000 evaluation queries can resolve.

Run:  OPENBLAS_NUM_THREADS=1 python bench/order_gap.py [--data …/fashion_mnist.npz]
      [--bits 16 32 64] [--seeds 0 1 2] [--max-items N] [--resamples 4000]
      [--split test|validation] [--set exemplar_keep=random …]

``--split validation`` scores held-out training items instead of the evaluation queries (what
a setting may be chosen on); ``--set name=value`` overrides a solver setting (JSON values).
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import hashstream.eval.online_hashing as online
from hashstream.solver.sdoh_hc.settings import SDOHSettings

FASHION = Path(__file__).resolve().parents[2] / "shared/data/fashion_mnist/fashion_mnist.npz"
ORDERS = ("class-incremental", "random")


Job = tuple[str, int, int, str, int | None, str, dict[str, Any]]


def final_aps(job: Job) -> dict[str, Any]:
    """Per-query AP arrays of the final round's scoring (the first ``evaluate`` of it: the
    later ones score subsets)."""
    data_path, bits, seed, order, max_items, split, overrides = job
    first: dict[str, Any] = {}
    evaluate = online.evaluate

    def keep_first(*args: Any, **kwargs: Any) -> Any:
        scores = evaluate(*args, **kwargs)
        first.setdefault("ap", scores.average_precision)
        first.setdefault("tie", scores.average_precision_tie_aware)
        return scores

    online.evaluate = keep_first  # this worker process only
    settings = SDOHSettings(**{"bits": bits, "seed": seed, **overrides})
    config = online.EvalConfig(settings=settings, chunk=2000, queries=1000,
                               order=order, max_items=max_items,  # type: ignore[arg-type]
                               split=split, eval_every=10**9,  # type: ignore[arg-type]
                               backend="numpy")
    online.run_eval(online.load_dataset(data_path), config)
    return {"job": (bits, seed, order), **first}


def paired(diffs: list[np.ndarray], rng: np.random.Generator, resamples: int
           ) -> tuple[float, float, float]:
    """Mean over seeds of each seed's mean difference, and its 95 % interval when each seed's
    queries are resampled with replacement."""
    boots = [np.mean([d[rng.integers(0, len(d), len(d))].mean() for d in diffs])
             for _ in range(resamples)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(np.mean([d.mean() for d in diffs])), float(lo), float(hi)


def _value(text: str) -> Any:
    """A ``--set`` value: JSON where it parses (numbers, true, null), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(FASHION))
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--max-items", type=int, default=None)
    ap.add_argument("--resamples", type=int, default=4000)
    ap.add_argument("--split", choices=("test", "validation"), default="test")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE")
    args = ap.parse_args()
    overrides = {k: _value(v) for k, _, v in (item.partition("=") for item in args.set)}
    print(f"split {args.split}; settings overridden: {overrides or 'none'}", flush=True)
    jobs: list[Job] = [(args.data, b, s, o, args.max_items, args.split, overrides)
                       for s in args.seeds for b in args.bits for o in ORDERS]
    got: dict[tuple[int, int, str], dict[str, Any]] = {}
    with ProcessPoolExecutor(2) as pool:
        for res in pool.map(final_aps, jobs):
            got[res["job"]] = res
            b, s, o = res["job"]
            print(f"done: {b} bits, seed {s}, {o}: mAP@all {res['ap'].mean():.4f}, tie-aware "
                  f"{res['tie'].mean():.4f}", flush=True)
    rng = np.random.default_rng(0)
    print("\n| comparison | metric | difference (mean of seeds) | per seed | 95 % query "
          "bootstrap |")
    print("|---|---|---|---|---|")
    rows = [(f"class-incremental − random, {b} bits",
             lambda s, k, b=b: got[(b, s, ORDERS[0])][k] - got[(b, s, ORDERS[1])][k])
            for b in args.bits]
    rows += [(f"class-incremental, {a} → {b} bits",
              lambda s, k, a=a, b=b: got[(b, s, ORDERS[0])][k] - got[(a, s, ORDERS[0])][k])
             for a, b in zip(args.bits, args.bits[1:], strict=False)]
    for label, diff in rows:
        for key, metric in (("ap", "mAP@all"), ("tie", "tie-aware")):
            diffs = [diff(s, key) for s in args.seeds]
            mean, lo, hi = paired(diffs, rng, args.resamples)
            print(f"| {label} | {metric} | {mean:+.4f} | "
                  f"{' '.join(f'{d.mean():+.4f}' for d in diffs)} | [{lo:+.4f}, {hi:+.4f}] |")


if __name__ == "__main__":
    main()
