"""Anchor growth (issue 14 item 4): choose its schedule on validation splits, then score it on
the test queries against the first chunk's anchors alone.

``--search`` runs a grid over ``first_anchor_share`` × ``anchor_coverage`` (plus growth off) on
`hashstream eval --split validation` queries (carved from the training stream; the evaluation
queries never seen), suite and chunks as bench/term_scaling.py (digits, MIRFlickr, a 20,000-item
Fashion-MNIST subset), both orders; the score is the mean final-round mAP over the cells.
Without ``--search`` it scores ``--set`` (the chosen schedule) and growth off on the test
queries over ``--seeds`` and ``--bits``, reporting mean ± std, the class-incremental gap
(random − class-incremental) and the anchors held at the end.

    OPENBLAS_NUM_THREADS=1 python bench/anchor_growth.py --search --seeds 0
    OPENBLAS_NUM_THREADS=1 python bench/anchor_growth.py --bits 16 32 64 --seeds 0 1 2 \\
        --set first_anchor_share=0.25 --set anchor_coverage=0.9
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from term_scaling import DATA, SUITE, subsample  # noqa: E402

from hashstream.eval import online_hashing  # noqa: E402
from hashstream.eval.online_hashing import Dataset, EvalConfig, load_dataset, run_eval  # noqa: E402
from hashstream.solver.sdoh_hc.settings import SDOHSettings  # noqa: E402

SHARES = [0.25, 0.5, 1.0]
COVERAGES = [0.8, 0.9, 0.95]
ORDERS = ["random", "class-incremental"]


class AnchorCount:
    """Wraps the eval's ``learn_chunk`` to note the anchors of the latest state (the eval
    keeps its state to itself)."""

    def __init__(self) -> None:
        self.inner = online_hashing.learn_chunk
        self.anchors = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.inner(*args, **kwargs)
        self.anchors = int(result.state.feature_map.anchors.shape[0])
        return result


COUNTER = AnchorCount()
online_hashing.learn_chunk = COUNTER  # type: ignore[assignment]


def run(data: Dataset, name: str, overrides: dict[str, Any], bits: int, seed: int, order: str,
        split: str) -> tuple[float, int]:
    _, chunk, queries, _ = SUITE[name]
    config = EvalConfig(settings=SDOHSettings(bits=bits, seed=seed, **overrides), chunk=chunk,
                        queries=queries, order=order, split=split,  # type: ignore[arg-type]
                        eval_every=10_000)
    return float(run_eval(data, config)["rounds"][-1]["map"]), COUNTER.anchors


def parse(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, value = item.split("=", 1)
        try:
            out[key] = float(value) if "." in value else int(value)
        except ValueError:
            out[key] = value
    return out


def fmt(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def search(sets: dict[str, Dataset], base: dict[str, Any], bits: int, seeds: list[int],
           log: dict[str, Any]) -> None:
    grid: list[dict[str, Any]] = [{"anchor_growth": "off"}] + [
        {"first_anchor_share": s, "anchor_coverage": c}
        for s, c in itertools.product(SHARES, COVERAGES)]
    print("| schedule | mean | " + " | ".join(f"{n} random / class-incr. (gap)" for n in sets)
          + " |")
    print("|---|---|" + "---|" * len(sets), flush=True)
    for point in grid:
        overrides = {**base, **point}
        cells: dict[str, float] = {}
        t0 = time.perf_counter()
        text = []
        for name, data in sets.items():
            got = {o: statistics.fmean(run(data, name, overrides, bits, s, o, "validation")[0]
                                       for s in seeds) for o in ORDERS}
            cells.update({f"{name}/{o}": v for o, v in got.items()})
            text.append(f"{got['random']:.4f} / {got['class-incremental']:.4f} "
                        f"({got['random'] - got['class-incremental']:+.4f})")
        mean = statistics.fmean(cells.values())
        log["search"].append({"settings": point, "validation": cells, "mean": mean})
        label = " ".join(f"{k}={v}" for k, v in point.items())
        print(f"| {label} | {mean:.4f} | " + " | ".join(text)
              + f" |  <!-- {time.perf_counter() - t0:.0f} s -->", flush=True)


def test(sets: dict[str, Dataset], base: dict[str, Any], chosen: dict[str, Any],
         bits_list: list[int], seeds: list[int], log: dict[str, Any]) -> None:
    rows = {"growth off": {**base, "anchor_growth": "off"}, "growth": {**base, **chosen}}
    print("| data | bits | schedule | random | class-incremental | gap | anchors (random / "
          "class-incr.) |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for name, data in sets.items():
        for bits in bits_list:
            for label, overrides in rows.items():
                got: dict[str, list[float]] = {}
                held: dict[str, list[int]] = {}
                for order in ORDERS:
                    runs = [run(data, name, overrides, bits, s, order, "test") for s in seeds]
                    got[order] = [m for m, _ in runs]
                    held[order] = [a for _, a in runs]
                gaps = [a - b for a, b in zip(got["random"], got["class-incremental"],
                                              strict=True)]
                log["test"].append({"data": name, "bits": bits, "schedule": label,
                                    "map": got, "anchors": held})
                print(f"| {name} | {bits} | {label} | {fmt(got['random'])} | "
                      f"{fmt(got['class-incremental'])} | {fmt(gaps)} | "
                      f"{statistics.fmean(held['random']):.0f} / "
                      f"{statistics.fmean(held['class-incremental']):.0f} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--search", action="store_true", help="the grid on validation splits")
    p.add_argument("--bits", type=int, nargs="+", default=[32])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sets", nargs="+", default=list(SUITE))
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="the growth schedule scored on the test queries (repeatable)")
    p.add_argument("--base", action="append", default=[], metavar="NAME=VALUE",
                   help="another setting for every row (e.g. query_encoder=linear)")
    p.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = p.parse_args()
    # Fashion-MNIST: the 20,000-item training subset of bench/term_scaling.py (test items kept)
    sets = {name: subsample(load_dataset(DATA / SUITE[name][0]), SUITE[name][3], 0)
            for name in args.sets}
    base = parse(args.base)
    log: dict[str, Any] = {"search": [], "test": [], "base": base}
    if args.search:
        search(sets, base, args.bits[0], args.seeds, log)
    else:
        test(sets, base, parse(args.set), args.bits, args.seeds, log)
    if args.json:
        args.json.write_text(json.dumps(log, indent=1))


if __name__ == "__main__":
    main()
