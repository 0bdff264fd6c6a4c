"""Retrieval quality at the current defaults over seeds: every ablation and the old-data weight
in isolation, 16/32/64 bits, random and class-incremental order, sklearn digits, the MIRFlickr
subset and Fashion-MNIST; the learned database and the database re-encoded by the final
encoder, from one stream each (``hashstream eval --database both``); random-projection LSH as
the floor.

    python bench/quality_tables.py --seeds 0 1 2 --out bench/out/quality_tables.md
    python bench/quality_tables.py --sets fashion --fashion-items 0 --variants defaults

Test queries (never used to choose a setting): 300 for digits (chunks of 150), 1,000 for
MIRFlickr (chunks of 500) and Fashion-MNIST (chunks of 2,000; ``--fashion-items N`` streams a
seeded N-item subset of the training split, 0 the whole split). Each cell is the final-round
mAP@all, mean ± std over the seeds, with a second table of the tie-aware mAP of the learned
database and a third of its mAP with the items at one distance ordered by their code's inner
product with the query's projection φ(q)P (``map_projection_ties``); progress goes to stderr,
the tables to stdout and ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from term_scaling import DATA, SUITE, subsample

from hashstream.eval.online_hashing import EvalConfig, load_dataset, run_eval
from hashstream.solver.sdoh_hc.settings import SDOHSettings

QUERIES = {"digits": 300, "mirflickr": 1000, "fashion": 1000}
# short name → (row label, method, settings over the defaults)
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "defaults": ("defaults", "sdoh-hc", {}),
    "exemplar": ("− exemplar term", "sdoh-hc", {"use_exemplar_term": False}),
    "distillation": ("− self-distillation", "sdoh-hc", {"use_distillation": False}),
    "hadamard": ("− Hadamard term", "sdoh-hc", {"use_hadamard_term": False}),
    "center": ("− center term", "sdoh-hc", {"use_center_term": False}),
    "old": ("− old-data term", "sdoh-hc", {"use_old_term": False}),
    # under term_scaling='normalized' (the default) the old-data term's weight is α alone:
    # old_weight (n/N_old vs 1) only acts under 'paper' scaling
    "alpha-0.1": ("old-data weight α = 0.1 (default 1)", "sdoh-hc", {"alpha": 0.1}),
    "alpha-10": ("old-data weight α = 10", "sdoh-hc", {"alpha": 10.0}),
    "old-weight": ("old-data weight 1 (paper) instead of n/N_old", "sdoh-hc",
                   {"old_weight": "paper"}),
    "residual": ("residual query net (opt-in encoder)", "sdoh-hc",
                 {"query_encoder": "residual_net"}),
    "lsh": ("LSH (random projection)", "lsh", {}),
}


def one_run(data: Any, name: str, variant: str, bits: int, order: str, seed: int
            ) -> tuple[float, float | None, float | None, float | None]:
    _, method, overrides = VARIANTS[variant]
    config = EvalConfig(settings=SDOHSettings(bits=bits, seed=seed, **overrides),
                        chunk=SUITE[name][1], queries=QUERIES[name], order=order,  # type: ignore[arg-type]
                        split="test", method=method, database="both",  # type: ignore[arg-type]
                        eval_every=10_000)
    last = run_eval(data, config)["rounds"][-1]
    return (float(last["map"]), last.get("map_reencoded"), last.get("map_tie_aware"),
            last.get("map_projection_ties"))


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {spread:.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sets", nargs="+", default=["digits", "mirflickr", "fashion"])
    p.add_argument("--orders", nargs="+", default=["random", "class-incremental"])
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if v != "residual"],
                   choices=list(VARIANTS))
    p.add_argument("--fashion-items", type=int, default=20_000,
                   help="seeded subset of Fashion-MNIST's training items (0: all 60,000)")
    p.add_argument("--out", type=Path, default=None, help="the tables (markdown) and a .json")
    args = p.parse_args()
    variants = args.variants
    lines: list[str] = []
    figures: dict[str, Any] = {}

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    started = time.perf_counter()
    for name in args.sets:
        data = load_dataset(DATA / SUITE[name][0])
        if name == "fashion" and args.fashion_items:
            data = subsample(data, args.fashion_items, 0)
        size = "" if name != "fashion" else (
            f", {args.fashion_items:,} training items" if args.fashion_items else ", all items")
        for order in args.orders:
            emit(f"\n### {name}{size}, {order} order (final mAP@all, seeds {args.seeds})\n")
            emit("| variant | " + " | ".join(f"{b} bits learned | {b} bits re-encoded"
                                             for b in args.bits) + " |")
            emit("|---|" + "---|---|" * len(args.bits))
            tie_rows, projection_rows = [], []
            for variant in variants:
                row, tie_row, projection_row = [], [], []
                for bits in args.bits:
                    learned, again, tied, by_projection = [], [], [], []
                    for seed in args.seeds:
                        m, r, t, pt = one_run(data, name, variant, bits, order, seed)
                        learned.append(m)
                        if r is not None:
                            again.append(float(r))
                        if t is not None:
                            tied.append(float(t))
                        if pt is not None:
                            by_projection.append(float(pt))
                        print(f"  {name} {order} {VARIANTS[variant][0]} {bits} seed {seed}: "
                              f"{m:.4f} "
                              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr,
                              flush=True)
                    figures[f"{name}/{order}/{variant}/{bits}"] = {
                        "learned": learned, "reencoded": again, "tie_aware": tied,
                        "projection_ties": by_projection}
                    row += [cell(learned), cell(again)]
                    tie_row.append(cell(tied))
                    projection_row.append(cell(by_projection))
                emit(f"| {VARIANTS[variant][0]} | " + " | ".join(row) + " |")
                tie_rows.append(f"| {VARIANTS[variant][0]} | " + " | ".join(tie_row) + " |")
                projection_rows.append(f"| {VARIANTS[variant][0]} | "
                                       + " | ".join(projection_row) + " |")
            # mAP@all orders the items at one distance by insertion (in class-incremental
            # order: class by class); the tie-aware figure is the expectation over their orders
            for title, rows in (
                    ("Tie-aware mAP (expected AP over random order within equal distances)",
                     tie_rows),
                    ("mAP@all with the items at one distance ordered by ⟨φ(q)P, code⟩ "
                     "(insertion after it)", projection_rows)):
                emit(f"\n{title}, learned database, {name}{size}, {order} order:\n")
                emit("| variant | " + " | ".join(f"{b} bits" for b in args.bits) + " |")
                emit("|---|" + "---|" * len(args.bits))
                for line in rows:
                    emit(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
