"""Seconds per SDOH-HC round beside the FLOP floor of what the round must compute.

The floor is the multiply-adds below (×2 flops) over this machine's GEMM rate, measured in the
same run with one large matrix product: the solver's terms at the backend dtype's rate, the
query net's at the float32 rate (it trains in float32):

    Φ: n·d·m (rbf) · ΦᵀΦ: n·m² · Sqn: pairs·d · Sqnᵀ B̃q: n·nq·r · V-step: n·r² ·
    DCC: sweeps·n·r² · P: m³/3
    query net (residual_net): steps·(2·b·d·h + 3·b·h·r)   [float32: per step the forward
        (b·d·h + b·h·r) and backward (b·h·r for the hidden gradient, b·d·h + b·h·r for the
        weights) GEMMs of a batch of b = 128 rows, h hidden units]
        + φ of the exemplar rows the round did not map (n1·d·m, rbf) + their and the
        chunk's φP ((n + n1)·m·r) for the residual targets

``pairs`` is the number of (exemplar, new item) pairs that share a label, counted from the
labels of each round: Sqn's inner products are needed there only (the rest of Sqn is −1).
ΦᵀΦ is symmetric, so n·m²/2 would do; the line keeps n·m² as the issue defined it.

``--reference DIR`` runs every case also with the solver of another source tree (e.g. an
export of ``main``), in its own process, alternating with this tree's, so before and after
are measured in the same run. Each process measures the GEMM rates next to its rounds, so a
shared machine's load moves the floor with the rounds; ``--repeats K`` alternates K runs per
case and tree and shows the least disturbed (lowest ratio), with every run's ratio beside it.

Run:  OPENBLAS_NUM_THREADS=1 python bench/round_speed.py [--backend numpy|cupy]
      [--dtype float64|float32] [--rounds 8] [--repeats 2] [--reference /path/to/main/tree]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hashstream.solver.backend import get_backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.settings import SDOHSettings

FASHION = Path(__file__).resolve().parents[2] / "shared/data/fashion_mnist/fashion_mnist.npz"
HERE = Path(__file__).resolve()
CASES: dict[str, tuple[int, dict[str, Any]]] = {
    "identity d=784": (784, {"bits": 32, "feature_map": "identity"}),
    "identity d=784 nq=200": (784, {"bits": 32, "feature_map": "identity", "n1": 100,
                                    "n2": 100}),
    "identity d=4096": (4096, {"bits": 32, "feature_map": "identity"}),
    # the default trains the residual query net every round (issue 14 item 3)
    "rbf 1000 anchors d=784 (default)": (784, {"bits": 32}),
    "rbf d=784, linear query encoder": (784, {"bits": 32, "query_encoder": "linear"}),
}


def gemm_rate(backend: Any, dtype: Any, size: int = 2048, repeats: int = 5) -> float:
    """Flops per second of a size³ matrix product in ``dtype``."""
    xp = backend.xp
    a = xp.asarray(np.random.default_rng(0).standard_normal((size, size)), dtype=dtype)
    a @ a
    backend.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        backend.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def floor_seconds(n: int, d: int, m: int, nq: int, pairs: float, s: SDOHSettings,
                  rate: float, rate32: float) -> dict[str, float]:
    """The floor's terms in seconds (see the module docstring)."""
    r, rbf = s.bits, s.feature_map == "rbf"
    solver = {
        "phi": n * d * m if rbf else 0,
        "gram": n * m * m,
        "sqn": pairs * d,
        "exemplar": n * nq * r,
        "v": s.iterations * n * r * r,
        "dcc": s.iterations * s.sweeps * n * r * r * 2,
        "p": m**3 / 3,
    }
    out = {k: 2 * v / rate for k, v in solver.items()}
    if s.query_encoder == "residual_net":
        kept = min(s.n1, nq)
        rows = n + kept + s.n2
        b, h = min(128, rows), s.query_hidden
        out["query_net"] = 2 * s.query_steps * (2 * b * d * h + 3 * b * h * r) / rate32
        out["query_targets"] = 2 * ((kept * d * m if rbf else 0) + (n + kept) * m * r) / rate
    return out


def stream(d: int, rounds: int, n: int, seed: int = 0):
    """Fashion-MNIST chunks for d = 784 (when the file is there), else Gaussian class clusters;
    labels as class lists (the file's dense matrix is converted once)."""
    if d == 784 and FASHION.exists():
        z = np.load(FASHION)
        x, y = z["features"], ClassLists.from_dense(z["labels"])
        order = np.random.default_rng(seed).permutation(len(x))[: rounds * n]
        for i in range(rounds):
            idx = order[i * n:(i + 1) * n]
            yield x[idx], y.take(idx)
        return
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((10, d))
    for _ in range(rounds):
        cls = rng.integers(0, 10, n)
        yield centers[cls] + rng.standard_normal((n, d)), ClassLists(np.arange(n + 1), cls, 10)


def shared_pairs(labels: ClassLists, exemplars: ClassLists) -> int:
    """(exemplar, new item) pairs with a label in common."""
    c = max(labels.n_classes, exemplars.n_classes)
    return int(labels.widen(c).shares_any(exemplars.widen(c)).sum())


def run_case(name: str, backend_name: str, dtype: str | None, rounds: int,
             n: int) -> dict[str, Any]:
    """Per-round seconds, step seconds and floor inputs of one case (this process's tree)."""
    from hashstream.solver.sdoh_hc.round import learn_chunk

    backend = get_backend(backend_name, dtype)  # type: ignore[arg-type]
    rates = [gemm_rate(backend, backend.dtype), gemm_rate(backend, np.float32)]
    d, kwargs = CASES[name]
    s = SDOHSettings(**kwargs)
    state, times, steps, pairs, nqs = None, [], {}, [], []
    for x, y in stream(d, rounds, n):
        exemplars = state.exemplar_labels if state is not None else ClassLists.empty(1)
        pairs.append(shared_pairs(y, exemplars))
        nqs.append(exemplars.n)
        t = time.perf_counter()
        res = learn_chunk(state, x, y, s, backend)
        backend.synchronize()
        times.append(time.perf_counter() - t)
        state = res.state
        for k, v in res.seconds.items():
            steps.setdefault(k, []).append(v)
    # the machine's rate next to the rounds (best of before and after: a shared machine's
    # load moves both the rounds and the rate)
    rates = [max(rates[0], gemm_rate(backend, backend.dtype)),
             max(rates[1], gemm_rate(backend, np.float32))]
    return {"times": times, "steps": steps, "pairs": pairs, "nq": nqs, "d": d,
            "m": int(state.projection.shape[0]), "rate": rates[0], "rate32": rates[1],
            "load": os.getloadavg()[0]}


def run_in_tree(tree: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """``run_case`` in a fresh process that imports hashstream from ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(Path(tree).resolve()))
    cmd = [sys.executable, str(HERE), "--child", name, "--backend", args.backend,
           "--rounds", str(args.rounds), "--n", str(args.n)]
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--reference", default=None,
                    help="another source tree to time beside this one (same run)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs per case and tree, alternating; the least disturbed is shown")
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.backend, args.dtype, args.rounds, args.n)))
        return
    backend = get_backend(args.backend, args.dtype)
    print(f"backend {backend.name} {backend.dtype}; rounds 3–{args.rounds} of each run; "
          f"floor from the GEMM rates measured in the same process as the rounds; load "
          f"average {os.getloadavg()[0]:.1f} at the start")
    here = str(HERE.parents[1])
    trees = [("before", args.reference), ("after", here)] if args.reference else [("", here)]
    print("| case | tree | median s/round | floor s | ratio | ratios of all runs | GFLOP/s "
          "f64 / f32 | slowest step |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.cases:
        d, kwargs = CASES[name]
        s = SDOHSettings(**kwargs)
        runs: dict[str, list[tuple[float, float, dict[str, Any], dict[str, float]]]] = {}
        for _ in range(args.repeats):
            for label, tree in trees:
                res = run_in_tree(tree, name, args)
                times = res["times"][2:]
                floor_terms = floor_seconds(args.n, d, res["m"],
                                            int(statistics.median(res["nq"][2:])),
                                            statistics.mean(res["pairs"][2:]), s, res["rate"],
                                            res["rate32"])
                med = statistics.median(times)
                runs.setdefault(label, []).append(
                    (med / sum(floor_terms.values()), med, res, floor_terms))
        for label, _ in trees:
            ratio, med, res, floor_terms = min(runs[label], key=lambda t: t[0])
            steps = {k: v[2:] for k, v in res["steps"].items()}
            slow = max(steps, key=lambda k: statistics.median(steps[k]))
            every = " ".join(f"{t[0]:.2f}" for t in runs[label])
            print(f"| {name} | {label} | {med:.4f} | {sum(floor_terms.values()):.4f} | "
                  f"{ratio:.2f} | {every} | {res['rate'] / 1e9:.0f} / {res['rate32'] / 1e9:.0f} "
                  f"| {slow} {statistics.median(steps[slow]):.4f} |", flush=True)
            print("    steps: " + ", ".join(f"{k} {statistics.median(v):.4f}"
                                            for k, v in steps.items()))
            print("    floor: " + ", ".join(f"{k} {v:.4f}" for k, v in floor_terms.items()
                                            if v))


if __name__ == "__main__":
    main()
