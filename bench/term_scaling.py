"""Choose SDOH-HC's term weights on validation splits, then score the choice on the test queries.

Every figure used for choosing comes from `hashstream eval --split validation`: queries carved
out of the training stream, the evaluation queries (and every test item) never seen. The
search is coordinate-wise over a log grid: start from ``--start``, try each value of each
weight in turn, keep a value when it raises the mean validation mAP over the suite (data sets ×
orders), and sweep again while anything changed (at most ``--sweeps``). Then the chosen
settings, the ``paper`` scaling as shipped before, and the start are scored on the test
queries over ``--seeds``.

    python bench/term_scaling.py --bits 32 --seeds 0 1 2
    python bench/term_scaling.py --only-test --set theta=1 --set beta=0.1 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from hashstream.eval.online_hashing import Dataset, EvalConfig, load_dataset, run_eval
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.settings import SDOHSettings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# name → (file, chunk, queries, subsample of the training items for the search or None)
SUITE: dict[str, tuple[str, int, int, int | None]] = {
    "digits": ("sklearn_digits/sklearn_digits.npz", 150, 300, None),
    "mirflickr": ("mirflickr_pml_7label/mirflickr_pml_7label.npz", 500, 500, None),
    "fashion": ("fashion_mnist/fashion_mnist.npz", 2000, 1000, 20000),
}
GRID: dict[str, list[float]] = {
    "theta": [0.3, 1.0, 3.0, 10.0],
    "alpha": [0.1, 1.0, 10.0],
    "gamma": [1.0, 10.0, 100.0],
    "beta": [0.003, 0.03, 0.3],
    "eta": [0.3, 1.0, 3.0],
}
# Where a first coordinate pass (bench/RESULTS.md) left the search: θ = 1 beat θ ≤ 0.1 by
# 0.01 and α ≤ 1 beat α ≥ 10 in class-incremental order.
START = {"term_scaling": "normalized", "alpha": 1.0, "gamma": 100.0, "beta": 0.03,
         "theta": 1.0}


def subsample(data: Dataset, size: int | None, seed: int) -> Dataset:
    """A seeded subset of the training items (every test item kept, so the test draw is
    the full file's)."""
    if size is None:
        return data
    n = data.features.shape[0]
    test = data.test_idx if data.test_idx is not None else np.zeros(0, dtype=np.int64)
    train = np.setdiff1d(np.arange(n), test)
    keep = np.sort(np.concatenate([test, np.random.default_rng(seed).choice(
        train, size=min(size, len(train)), replace=False)]))
    position = np.full(n, -1)
    position[keep] = np.arange(len(keep))
    labels: ClassLists = data.labels.take(keep)
    return Dataset(data.features[keep], labels,
                   position[data.test_idx] if data.test_idx is not None else None)


def score(data: Dataset, chunk: int, queries: int, settings: SDOHSettings, order: str,
          split: str) -> float:
    config = EvalConfig(settings=settings, chunk=chunk, queries=queries, order=order,  # type: ignore[arg-type]
                        split=split, eval_every=10_000)  # type: ignore[arg-type]
    return float(run_eval(data, config)["rounds"][-1]["map"])


def suite_scores(sets: dict[str, Dataset], overrides: dict[str, Any], bits: int,
                 seeds: list[int], orders: list[str], split: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, data in sets.items():
        _, chunk, queries, _ = SUITE[name]
        for order in orders:
            vals = [score(data, chunk, queries, SDOHSettings(bits=bits, seed=s, **overrides),
                          order, split) for s in seeds]
            out[f"{name}/{order}"] = statistics.fmean(vals)
    return out


def fmt(overrides: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "(defaults)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bits", type=int, default=32, help="code length of the search")
    p.add_argument("--test-bits", type=int, nargs="+", default=None,
                   help="code lengths of the test-query table (default: --bits)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds for the final test-query table")
    p.add_argument("--search-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--sets", nargs="+", default=list(SUITE))
    p.add_argument("--orders", nargs="+", default=["random", "class-incremental"])
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="start value of a weight (repeatable)")
    p.add_argument("--params", nargs="+", default=["theta", "alpha", "gamma", "beta"])
    p.add_argument("--sweeps", type=int, default=2)
    p.add_argument("--only-test", action="store_true",
                   help="skip the search: score --set against the paper scaling on the test "
                   "queries")
    p.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = p.parse_args()
    start: dict[str, Any] = dict(START)
    for item in args.set:
        key, value = item.split("=", 1)
        start[key] = value if key == "term_scaling" else float(value)
    full = {name: load_dataset(DATA / SUITE[name][0]) for name in args.sets}
    search_sets = {name: subsample(d, SUITE[name][3], 0) for name, d in full.items()}
    log: dict[str, Any] = {"bits": args.bits, "search": [], "test": {}}
    best = dict(start)
    if not args.only_test:
        cache: dict[str, float] = {}

        def objective(overrides: dict[str, Any]) -> float:
            key = json.dumps(overrides, sort_keys=True)
            if key not in cache:
                t0 = time.perf_counter()
                per = suite_scores(search_sets, overrides, args.bits, args.search_seeds,
                                   args.orders, "validation")
                cache[key] = statistics.fmean(per.values())
                log["search"].append({"settings": overrides, "validation": per,
                                      "mean": cache[key]})
                cells = " ".join(f"{k} {v:.4f}" for k, v in per.items())
                print(f"  {fmt(overrides):58s} mean {cache[key]:.4f} | {cells} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            return cache[key]

        best_value = objective(best)
        for sweep in range(args.sweeps):
            changed = False
            for name in args.params:
                print(f"sweep {sweep + 1}: {name}", flush=True)
                for value in GRID[name]:
                    trial = {**best, name: value}
                    if objective(trial) > best_value + 1e-4:
                        best, best_value, changed = trial, objective(trial), True
                print(f"  → {fmt(best)} (validation mean {best_value:.4f})", flush=True)
            if not changed:
                break
        log["chosen"] = best
    print(f"\ntest queries, final-round mAP@all, mean ± std over seeds {args.seeds}")
    rows = {"paper scaling (as shipped before)": {"term_scaling": "paper"},
            "normalized, chosen": best}
    if not args.only_test and start != best:
        rows["normalized, start"] = start
    print("| data / order | bits | " + " | ".join(rows) + " |")
    print("|---|---|" + "---|" * len(rows), flush=True)
    table: dict[str, dict[str, list[float]]] = {}
    for name, data in full.items():
        _, chunk, queries, _ = SUITE[name]
        for order in args.orders:
            for bits in args.test_bits or [args.bits]:
                cell = f"{name}/{order}/{bits}"
                for label, overrides in rows.items():
                    table.setdefault(cell, {})[label] = [
                        score(data, chunk, queries, SDOHSettings(bits=bits, seed=s, **overrides),
                              order, "test") for s in args.seeds]
                print(f"| {name} / {order} | {bits} | " + " | ".join(
                    f"{statistics.fmean(v):.4f} ± {statistics.stdev(v) if len(v) > 1 else 0:.4f}"
                    for v in table[cell].values()) + " |", flush=True)
    log["test"] = table
    if args.json:
        args.json.write_text(json.dumps(log, indent=1))


if __name__ == "__main__":
    main()
