"""mAP with the ingest queue holding float16 features vs float32, same seeds.

The service queues a chunk's features in the index's ``queue_dtype`` and the round widens them
back to float32: a float16 queue rounds every training item to float16 before the solver sees
it. Here the online-hashing protocol (``hashstream eval``'s ``run_eval``) runs twice per seed on
the same split: once on the features as given, once with every streamed item rounded through
float16 (the held-out queries stay float32, as search queries reach the service).

Run:  python bench/queue_dtype.py [--data …/fashion_mnist.npz] [--bits 32] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import numpy as np

from hashstream.eval.online_hashing import Dataset, EvalConfig, load_dataset, run_eval, split_stream
from hashstream.solver.sdoh_hc.settings import SDOHSettings

FASHION = Path(__file__).resolve().parents[2] / "shared/data/fashion_mnist/fashion_mnist.npz"


def queued_as_float16(data: Dataset, config: EvalConfig) -> Dataset:
    """``data`` with every item but the queries rounded through float16."""
    queries, _ = split_stream(data, config)
    features = data.features.astype(np.float16).astype(np.float32)
    features[queries] = data.features[queries]
    return dataclasses.replace(data, features=features)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(FASHION))
    ap.add_argument("--bits", type=int, nargs="+", default=[32])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--max-items", type=int, default=20_000, help="0: the whole stream")
    ap.add_argument("--order", default="random")
    args = ap.parse_args()
    data = load_dataset(args.data)
    x = data.features
    rounded = x.astype(np.float16).astype(np.float32)
    changed = rounded != x
    rel = np.abs(rounded - x)[changed] / np.abs(x)[changed] if changed.any() else np.zeros(1)
    print(f"{args.data}: {x.shape}, |x| ≤ {float(np.abs(x).max()):g}; float16 changes "
          f"{changed.mean():.2%} of the values, relative error ≤ {float(rel.max()):.2e}")
    print("| bits | order | seed | mAP float32 queue | mAP float16 queue | difference |")
    print("|---|---|---|---|---|---|")
    for bits in args.bits:
        diffs, full, half = [], [], []
        for seed in args.seeds:
            config = EvalConfig(settings=SDOHSettings(bits=bits, seed=seed), order=args.order,
                                max_items=args.max_items or None, eval_every=10**9)
            a = run_eval(data, config)["rounds"][-1]["map"]
            b = run_eval(queued_as_float16(data, config), config)["rounds"][-1]["map"]
            full.append(a)
            half.append(b)
            diffs.append(b - a)
            print(f"| {bits} | {args.order} | {seed} | {a:.4f} | {b:.4f} | {b - a:+.4f} |",
                  flush=True)
        print(f"| {bits} | {args.order} | mean ± std | {statistics.mean(full):.4f} ± "
              f"{statistics.stdev(full) if len(full) > 1 else 0:.4f} | "
              f"{statistics.mean(half):.4f} ± {statistics.stdev(half) if len(half) > 1 else 0:.4f}"
              f" | {statistics.mean(diffs):+.4f} |", flush=True)


if __name__ == "__main__":
    main()
