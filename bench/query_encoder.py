"""The linear query encoder sgn(φP) against the residual network sgn(φP + g), learned and
re-encoded database side by side (issue 14 item 3).

One stream per data set, code length and seed, with ``query_encoder='residual_net'``: the
encoder never feeds back into the learned codes, so the linear encoder of the same run (φ and
the final P, g left out) is exactly what ``--query-encoder linear`` would give, and the two
columns are paired. After the last round the queries are encoded by each encoder and ranked
against the learned database (each round's B) and against the database re-encoded by that
same encoder; mAP@all, mean ± std over seeds. ``--validation N`` holds the last N items of the
training stream out as queries (the evaluation queries are not touched): the split the
network's settings were chosen on (``--hidden``/``--steps`` take several values for a grid).

    OPENBLAS_NUM_THREADS=1 python bench/query_encoder.py --seeds 0 1 2
    OPENBLAS_NUM_THREADS=1 python bench/query_encoder.py --validation 500 --sets mirflickr
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hashstream.eval.online_hashing import EvalConfig, chunks, load_dataset, split_stream
from hashstream.solver.backend import get_backend
from hashstream.solver.metrics import evaluate
from hashstream.solver.sdoh_hc.round import encode_with, learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {  # name → (file, chunk, queries, validation items when --validation is 0)
    "mirflickr": ("mirflickr_pml_7label/mirflickr_pml_7label.npz", 500, 1000),
    "digits": ("sklearn_digits/sklearn_digits.npz", 150, 300),
    "fashion": ("fashion_mnist/fashion_mnist.npz", 2000, 1000),
}
COLUMNS = ("learned/linear", "learned/residual", "reencoded/linear", "reencoded/residual")


def run(name: str, settings: SDOHSettings, validation: int) -> dict[str, float]:
    """Final-round mAP of each (database, encoder) pair, and seconds per round."""
    file, chunk, queries = SETS[name]
    data = load_dataset(DATA / file)
    backend = get_backend("numpy")
    q_idx, stream = split_stream(data, EvalConfig(settings=settings, chunk=chunk,
                                                  queries=queries))
    if validation:
        q_idx, stream = stream[-validation:], stream[:-validation]
    state: SDOHState | None = None
    db_idx: list[np.ndarray[Any, Any]] = []
    db_codes: list[np.ndarray[Any, Any]] = []
    seconds = {"round": 0.0, "query_net": 0.0}
    for idx in chunks(stream, chunk, settings.bits + 1):
        started = time.perf_counter()
        result = learn_chunk(state, data.features[idx], data.labels.take(idx), settings, backend)
        seconds["round"] += time.perf_counter() - started
        seconds["query_net"] += result.seconds.get("query_net", 0.0)
        state = result.state
        db_idx.append(idx)
        db_codes.append(result.codes)
    assert state is not None
    items = np.concatenate(db_idx)
    learned = np.concatenate(db_codes)
    q_lab, db_lab = data.labels.take(q_idx), data.labels.take(items)
    out: dict[str, float] = {}
    for label, net in (("linear", None), ("residual", state.query_net)):
        def code(rows: np.ndarray[Any, Any], net: Any = net) -> np.ndarray[Any, Any]:
            return encode_with(state.feature_map, state.projection, data.features[rows],
                               backend, net)
        qc = code(q_idx)
        reencoded = code(items)
        out[f"learned/{label}"] = evaluate(qc, q_lab, learned, db_lab).map
        out[f"reencoded/{label}"] = evaluate(qc, q_lab, reencoded, db_lab).map
        out[f"bit agreement/{label}"] = float((reencoded == learned).mean())
    rounds = len(db_idx)
    out["s/round"] = seconds["round"] / rounds
    out["s/round query_net"] = seconds["query_net"] / rounds
    return out


def fmt(values: list[float], digits: int = 4) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sets", nargs="+", choices=list(SETS), default=["mirflickr", "digits"])
    p.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--hidden", type=int, nargs="+", default=[SDOHSettings.query_hidden])
    p.add_argument("--steps", type=int, nargs="+", default=[SDOHSettings.query_steps])
    p.add_argument("--validation", type=int, default=0,
                   help="hold the last N training items out as queries (0: evaluation queries)")
    args = p.parse_args()
    queries = (f"validation split of {args.validation}" if args.validation
               else "evaluation queries")
    print(f"queries: {queries}; mAP@all of the final round, mean ± std over seeds "
          f"{args.seeds}\n")
    print("| data | bits | hidden | steps | learned DB: linear | learned DB: residual "
          "| re-encoded DB: linear | re-encoded DB: residual | gap: linear | gap: residual "
          "| bits reproduced: linear / residual | s/round (of it g) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.sets:
        for bits in args.bits:
            for hidden in args.hidden:
                for steps in args.steps:
                    runs = [run(name, replace(SDOHSettings(), bits=bits, seed=seed,
                                              query_hidden=hidden, query_steps=steps),
                                args.validation) for seed in args.seeds]
                    col = {k: [r[k] for r in runs] for k in runs[0]}
                    gap = {e: [a - b for a, b in zip(col[f"learned/{e}"],
                                                     col[f"reencoded/{e}"], strict=True)]
                           for e in ("linear", "residual")}
                    print(f"| {name} | {bits} | {hidden} | {steps} | "
                          + " | ".join(fmt(col[c]) for c in COLUMNS)
                          + f" | {fmt(gap['linear'])} | {fmt(gap['residual'])} | "
                          f"{statistics.fmean(col['bit agreement/linear']):.3f} / "
                          f"{statistics.fmean(col['bit agreement/residual']):.3f} | "
                          f"{statistics.fmean(col['s/round']):.2f} "
                          f"({statistics.fmean(col['s/round query_net']):.2f}) |", flush=True)


if __name__ == "__main__":
    main()
