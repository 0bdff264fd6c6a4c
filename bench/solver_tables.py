"""mAP-per-round tables: SDOH-HC (hashstream defaults), the authors' settings, each ablation
and random-projection LSH, on Fashion-MNIST and the multi-label MIRFlickr subset.

Run:  python bench/solver_tables.py --dataset fashion --bits 16 32 64 --out bench/out/tables.md
      python bench/solver_tables.py --dataset mirflickr --bits 16 32 64 --chunk 500

Every row is measured in the same run on the same stream and queries (same seed). The JSON of
each run goes beside the markdown (bench/out/<dataset>_<order>_<bits>_<row>.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from hashstream.eval.online_hashing import EvalConfig, load_dataset, run_eval
from hashstream.solver.sdoh_hc.settings import SDOHSettings

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
DATASETS = {
    "fashion": SHARED / "fashion_mnist/fashion_mnist.npz",
    "mirflickr": SHARED / "mirflickr_pml_7label/mirflickr_pml_7label.npz",
}
AUTHORS = {"feature_map": "rbf", "n_anchors": 1000, "theta": 0.1, "eta": 100.0, "beta": 1.0,
           "lam": 1.0, "n1": 100, "n2": 100, "old_weight": "paper",
           "exemplar_policy": "nearest_center", "iterations": 10, "sweeps": 3}
MIRFLICKR_AUTHORS = {**AUTHORS, "theta": 10.0, "eta": 1.0}


def rows(dataset: str) -> dict[str, tuple[str, dict[str, object]]]:
    authors = MIRFLICKR_AUTHORS if dataset == "mirflickr" else AUTHORS
    return {
        "SDOH-HC (hashstream defaults)": ("sdoh-hc", {}),
        "SDOH-HC (authors' settings)": ("sdoh-hc", authors),
        "− exemplar term": ("sdoh-hc", {"use_exemplar_term": False}),
        "− self-distillation": ("sdoh-hc", {"use_distillation": False}),
        "− Hadamard term": ("sdoh-hc", {"use_hadamard_term": False}),
        "− old-data term": ("sdoh-hc", {"use_old_term": False}),
        "LSH (random projection)": ("lsh", {}),
    }


def own(rounds: list[dict]) -> str:
    """Round-1 classes' queries against round-1 classes' items: first → last (forgetting)."""
    vals = [r["map_first_classes_own_db"] for r in rounds if "map_first_classes_own_db" in r]
    return f"{vals[0]:.4f} → {vals[-1]:.4f}" if vals else "–"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="fashion")
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--orders", nargs="+", default=["random", "class-incremental"])
    ap.add_argument("--chunk", type=int, default=2000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--every", type=int, default=5, help="table column every N rounds")
    ap.add_argument("--eval-every", type=int, default=1,
                    help="score the queries every N rounds (and after the last)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--from-json", action="store_true",
                    help="render the tables from bench/out/*.json of an earlier run")
    args = ap.parse_args()
    data = load_dataset(DATASETS[args.dataset])
    out_dir = Path("bench/out")
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"Command: `python bench/solver_tables.py {' '.join(sys.argv[1:])}`", ""]
    for order in args.orders:
        for bits in args.bits:
            results = {}
            for name, (method, overrides) in rows(args.dataset).items():
                slug = name.split(" (")[0].replace("− ", "no-").replace(" ", "-").lower()
                if "authors" in name:
                    slug = "sdoh-authors"
                path = out_dir / f"{args.dataset}_{order}_{bits}_{slug}.json"
                if args.from_json:
                    if path.exists():
                        results[name] = json.loads(path.read_text())
                    continue
                settings = replace(SDOHSettings(bits=bits), **overrides)
                config = EvalConfig(settings=settings, chunk=args.chunk, queries=args.queries,
                                    order=order, method=method, map_at=(1000,),
                                    eval_every=args.eval_every)
                t = time.perf_counter()
                res = run_eval(data, config)
                results[name] = res
                path.write_text(json.dumps(res))
                print(f"{order} {bits} {name}: final mAP {res['rounds'][-1]['map']:.4f} "
                      f"({time.perf_counter() - t:.0f}s)", flush=True)
            if not results:
                continue
            first = next(iter(results.values()))["rounds"]
            n_rounds = len(first)
            scored = {r["round"] for r in first if "map" in r}
            cols = sorted(c for c in {*range(args.every, n_rounds + 1, args.every), 1, n_rounds}
                          if c in scored)
            lines.append(f"### {args.dataset}, {order} order, {bits} bits "
                         f"(mAP@all after round …; last columns: after the last round)")
            lines.append("")
            lines.append("| method | " + " | ".join(str(c) for c in cols)
                         + " | mAP@1000 | P@r2 | mAP seen classes | mAP first classes "
                           "| first classes vs own items | s/round |")
            lines.append("|---|" + "---|" * (len(cols) + 6))
            for name, res in results.items():
                rr = res["rounds"]
                last = rr[-1]
                mean_s = sum(r["seconds"] for r in rr) / len(rr)
                lines.append(
                    f"| {name} | " + " | ".join(f"{rr[c - 1]['map']:.4f}" for c in cols)
                    + f" | {last['map_at_k']['1000']:.4f} | {last['precision_r2']:.4f}"
                    f" | {last['map_seen']:.4f} | {last['map_first_classes']:.4f}"
                    f" | {own(rr)} | {mean_s:.3f} |")
            lines.append("")
            if args.out:
                Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
