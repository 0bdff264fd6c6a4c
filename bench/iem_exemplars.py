"""IEM condensed exemplars (issue 7) against random and class-balanced exemplars, same budget.

Fashion-MNIST, class-incremental order, 32 bits, chunks of 2,000, 1,000 queries from test_idx,
hashstream defaults otherwise (RBF map, m = 1,000). Budgets: n1 = n2 = 1000 (nq = 2,000 stored
vectors) and a quarter of it, n1 = n2 = 250; ``condensed`` stores exactly n2 synthetic vectors
per round, so every row of a budget keeps the same number of vectors. mAP@all is scored every
``--every`` rounds and after the last one. Runs go ``--jobs`` at a time; set OMP_NUM_THREADS=1
so each uses one BLAS thread. The JSON of each run goes to bench/out/iem_<policy>_<n2>.json.

Run:  OMP_NUM_THREADS=1 python bench/iem_exemplars.py --out bench/out/iem_exemplars.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from hashstream.eval.online_hashing import EvalConfig, load_dataset, run_eval
from hashstream.solver.sdoh_hc.settings import SDOHSettings

DATA = Path(__file__).resolve().parents[2] / "shared/data/fashion_mnist/fashion_mnist.npz"
# (row label, policy, condensed_steps or None for the default): "condensed, 0 steps" stores
# the starting point of the condensation (a class-balanced random sample, one-hot labels and
# the class's Y row as code), which separates the effect of the matching from that of the codes.
ROWS = (("condensed", "condensed", None), ("condensed, 0 steps", "condensed", 0),
        ("class_balanced", "class_balanced", None), ("random", "random", None))


def one_run(policy: str, budget: int, every: int, steps: int,
            max_items: int | None, seed: int) -> dict[str, Any]:
    settings = SDOHSettings.from_dict({"bits": 32, "n1": budget, "n2": budget, "seed": seed,
                                       "exemplar_policy": policy, "condensed_steps": steps})
    config = EvalConfig(settings=settings, chunk=2000, queries=1000, order="class-incremental",
                        eval_every=every, max_items=max_items)
    started = time.perf_counter()
    result = run_eval(load_dataset(DATA), config)
    result["wall_seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--budgets", type=int, nargs="+", default=[1000, 250])
    ap.add_argument("--steps", type=int, default=100, help="condensed_steps")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--max-items", type=int, default=None, help="shorten the stream (smoke)")
    ap.add_argument("--seed", type=int, default=0, help="seed of queries, stream and solver")
    ap.add_argument("--only", nargs="+", default=None, help="row labels to run (default all)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse bench/out/iem_*.json of an earlier run with the same settings")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out_dir = Path("bench/out")
    out_dir.mkdir(parents=True, exist_ok=True)
    def path(label: str, budget: int) -> Path:
        tag = f"_seed{args.seed}" if args.seed else ""
        return out_dir / f"iem_{label.replace(', ', '_').replace(' ', '')}_{budget}{tag}.json"

    rows = [row for row in ROWS if args.only is None or row[0] in args.only]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    jobs = []
    for budget in args.budgets:
        for label, policy, steps in rows:
            if args.reuse and path(label, budget).exists():
                results[(label, budget)] = json.loads(path(label, budget).read_text())
            else:
                jobs.append((label, policy, args.steps if steps is None else steps, budget))
    # the slow condensed runs first, so the fast ones fill the other worker
    jobs.sort(key=lambda j: (j[2] == 0 or j[1] != "condensed", -j[3]))
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {job: pool.submit(one_run, job[1], job[3], args.every, job[2],
                                    args.max_items, args.seed) for job in jobs}
        for (label, _, _, budget), fut in futures.items():
            res = fut.result()
            results[(label, budget)] = res
            path(label, budget).write_text(json.dumps(res))
            print(f"{label} n1=n2={budget}: final mAP {res['rounds'][-1]['map']:.4f} "
                  f"({res['wall_seconds']:.0f}s)", flush=True)
    rounds = next(iter(results.values()))["rounds"]
    cols = [r["round"] for r in rounds if "map" in r]
    lines = [f"Command: `OMP_NUM_THREADS=1 python bench/iem_exemplars.py "
             f"{' '.join(sys.argv[1:])}`", "",
             "| exemplars | n1 = n2 | nq | " + " | ".join(f"r{c}" for c in cols)
             + " | mAP first classes (last) | memory s/round |",
             "|---|---|---|" + "---|" * (len(cols) + 2)]
    for budget in args.budgets:
        for label, _, _ in rows:
            rr = results[(label, budget)]["rounds"]
            by_round = {r["round"]: r for r in rr}
            mem_s = sum(r.get("step_seconds", {}).get("memory", 0.0) for r in rr) / len(rr)
            lines.append(f"| {label} | {budget} | {2 * budget} | "
                         + " | ".join(f"{by_round[c]['map']:.4f}" for c in cols)
                         + f" | {by_round[cols[-1]]['map_first_classes']:.4f}"
                         f" | {mem_s:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
