"""Hash centers with distinct bit rows against the earlier first-columns rule, over seeds.

Runs `hashstream eval` (final-round mAP@all and precision within radius 2) for each data set,
code length, order and seed, once with this checkout and once with ``--before DIR`` (a checkout
of the earlier rule, e.g. ``git worktree add /tmp/before <rev>``), and prints mean ± std.

    python bench/center_rows.py --before /work/wt-before --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {  # name → (file, eval flags)
    # the whole training split: --max-items would cut a class-incremental stream after the
    # first classes while the queries cover all ten
    "fashion-mnist": ("fashion_mnist/fashion_mnist.npz",
                      ["--chunk", "2000", "--queries", "1000"]),
    "sklearn digits": ("sklearn_digits/sklearn_digits.npz",
                       ["--chunk", "150", "--queries", "300"]),
    "mirflickr (multi-label)": ("mirflickr_pml_7label/mirflickr_pml_7label.npz",
                                ["--chunk", "500", "--queries", "1000"]),
}


def run(root: Path, data: str, flags: list[str], bits: int, order: str, seed: int
        ) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {**os.environ, "PYTHONPATH": str(root)}
        subprocess.run([sys.executable, "-m", "hashstream", "eval", "--data", str(DATA / data),
                        *flags, "--bits", str(bits), "--order", order, "--seed", str(seed),
                        "--eval-every", "1000", "--quiet", "--json", out.name],
                       env=env, check=True, capture_output=True, cwd=root)
        last = json.loads(Path(out.name).read_text())["rounds"][-1]
    return {"map": float(last["map"]), "p_r2": float(last["precision_r2"])}


def fmt(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {sd:.4f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--orders", nargs="+", default=["random", "class-incremental"])
    p.add_argument("--sets", nargs="+", default=list(SETS))
    args = p.parse_args()
    after = Path(__file__).resolve().parents[1]
    print(f"seeds {args.seeds}; final-round mAP@all and P@r≤2, mean ± std")
    print("| data | order | bits | before: mAP | after: mAP | before: P@r2 | after: P@r2 |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sets:
        data, flags = SETS[name]
        for order in args.orders:
            for bits in args.bits:
                res = {tag: [run(root, data, flags, bits, order, s) for s in args.seeds]
                       for tag, root in (("before", args.before), ("after", after))}
                print(f"| {name} | {order} | {bits} | "
                      f"{fmt([r['map'] for r in res['before']])} | "
                      f"{fmt([r['map'] for r in res['after']])} | "
                      f"{fmt([r['p_r2'] for r in res['before']])} | "
                      f"{fmt([r['p_r2'] for r in res['after']])} |", flush=True)


if __name__ == "__main__":
    main()
