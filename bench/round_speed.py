"""Seconds per SDOH-HC round beside the FLOP floor of what the round must compute.

A floor is a count of multiply-adds (×2 flops) over this machine's GEMM rate, measured in the
same run with one large matrix product: the solver's terms at the backend dtype's rate, the
query net's at the float32 rate (it trains in float32). Each round gets its own floor (its own
m, nq, shared pairs and anchor growth) and the case's ratio is the median over rounds 3 on of
round seconds / that round's floor. Three floors are printed:

**issue** — the terms as issue 16 defined them (the session-5 column, kept for continuity):

    Φ: n·d·m (rbf) · ΦᵀΦ: n·m² · Sqn: pairs·d · Sqnᵀ B̃q: n·nq·r · V-step: n·r² ·
    DCC: sweeps·n·r² · P: m³/3
    query net (residual_net): steps·(2·b·d·h + 3·b·h·r)   [float32: per step the forward
        (b·d·h + b·h·r) and backward (b·h·r for the hidden gradient, b·d·h + b·h·r for the
        weights) GEMMs of a batch of b = 128 rows, h hidden units]
        + φ of the exemplar rows the round did not map (n1·d·m, rbf) + their and the
        chunk's φP ((n + n1)·m·r) for the residual targets

**strict** — the issue's terms less the work the round need not do: ΦᵀΦ is symmetric, so
n·m(m+1)/2 (the round forms it with syrk), and E = Sqnᵀ B̃q needs products only at the pairs
sharing a label, pairs·r (the −1 entries contribute −(ΣB̃q − Σ shared B̃q), O(nq·r) a group),
not the dense n·nq·r; Φ's bias column needs no product, n·d·(m − 1) for the RBF map.

**required** — strict plus what the round must also compute and the issue's list leaves out:
F's ΦᵀB (n·m·r), the warm start sgn(ΦP) (n·m·r, rounds after the first), P's two triangular
solves (2·m²·r), and in a round that grows k anchors (RBF, ``anchor_growth='novelty'``) the
imputation of G's and F's new rows over the nq exemplars (``sdoh_hc/round.py::
_impute_new_columns``): their φ under the grown map (nq·d·(m−1)), the Gram of the old
columns (nq·m₀(m₀+1)/2, m₀ = m − k), its Cholesky factor (m₀³/3) and the k-column products
(nq·m₀·k twice, m₀²·k twice). The exp of n·m kernel values is not counted (no multiply-add).

``pairs`` is the number of (exemplar, new item) pairs that share a label, counted from the
labels of each round: Sqn's inner products are needed there only (the rest of Sqn is −1).

``--reference DIR`` runs every case also with the solver of another source tree (e.g. an
export of ``main``), in its own process, alternating with this tree's, so before and after
are measured in the same run. Each process measures the GEMM rates next to its rounds, so a
shared machine's load moves the floor with the rounds; ``--repeats K`` alternates K runs per
case and tree and shows the least disturbed (lowest issue ratio), with every run's ratio
beside it.

Run:  OPENBLAS_NUM_THREADS=1 python bench/round_speed.py [--backend numpy|cupy]
      [--dtype float64|float32] [--rounds 8] [--repeats 2] [--reference /path/to/main/tree]
      [--fashion PATH]
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


FLOORS = ("issue", "strict", "required")


def floor_seconds(n: int, d: int, m: int, nq: int, pairs: float, s: SDOHSettings,
                  rate: float, rate32: float, kind: str = "issue", grown: int = 0,
                  first: bool = False) -> dict[str, float]:
    """One round's floor terms in seconds (see the module docstring): ``m`` columns of Φ
    (bias included) after the round's growth of ``grown`` anchors; ``first``: round 1 (no
    warm start)."""
    r, rbf = s.bits, s.feature_map == "rbf"
    strict = kind != "issue"
    solver = {
        "phi": n * d * (m - 1) if rbf and strict else (n * d * m if rbf else 0),
        "gram": n * m * (m + 1) / 2 if strict else n * m * m,
        "sqn": pairs * d,
        "exemplar": pairs * r if strict else n * nq * r,
        "v": s.iterations * n * r * r,
        "dcc": s.iterations * s.sweeps * n * r * r * 2,
        "p": m**3 / 3,
    }
    if kind == "required":
        m0 = m - grown
        solver["f"] = n * m * r
        solver["warm_start"] = 0 if first else n * m * r
        solver["solve"] = 2 * m * m * r
        solver["impute"] = 0 if not grown else (
            nq * d * (m - 1) + nq * m0 * (m0 + 1) / 2 + m0**3 / 3 + 2 * nq * m0 * grown
            + 2 * m0 * m0 * grown)
    out = {k: 2 * v / rate for k, v in solver.items()}
    if s.query_encoder == "residual_net":
        kept = min(s.n1, nq)
        rows = n + kept + s.n2
        b, h = min(128, rows), s.query_hidden
        out["query_net"] = 2 * s.query_steps * (2 * b * d * h + 3 * b * h * r) / rate32
        out["query_targets"] = 2 * ((kept * d * m if rbf else 0) + (n + kept) * m * r) / rate
    return out


def round_floors(res: dict[str, Any], n: int, s: SDOHSettings, kind: str
                 ) -> list[dict[str, float]]:
    """Each round's floor terms from what ``run_case`` recorded."""
    return [floor_seconds(n, res["d"], m, nq, pairs, s, res["rate"], res["rate32"], kind,
                          m - m_before if i else 0, i == 0)
            for i, (m, m_before, nq, pairs) in enumerate(zip(res["m_after"], res["m_before"],
                                                              res["nq"], res["pairs"],
                                                              strict=True))]


def stream(d: int, rounds: int, n: int, seed: int = 0, fashion: Path = FASHION):
    """Fashion-MNIST chunks for d = 784 (when the file is there), else Gaussian class clusters;
    labels as class lists (the file's dense matrix is converted once). ``fashion`` may be a
    subset written with the same keys (e.g. uint8 pixels, for a device machine)."""
    if d == 784 and fashion.exists():
        z = np.load(fashion)
        x, y = z["features"].astype(np.float32), ClassLists.from_dense(z["labels"])
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
             n: int, fashion: Path = FASHION) -> dict[str, Any]:
    """Per-round seconds, step seconds and floor inputs of one case (this process's tree)."""
    from hashstream.solver.sdoh_hc.round import learn_chunk

    backend = get_backend(backend_name, dtype)  # type: ignore[arg-type]
    rates = [gemm_rate(backend, backend.dtype), gemm_rate(backend, np.float32)]
    d, kwargs = CASES[name]
    s = SDOHSettings(**kwargs)
    state, times, steps, pairs, nqs, m_before, m_after = None, [], {}, [], [], [], []
    for x, y in stream(d, rounds, n, fashion=fashion):
        exemplars = state.exemplar_labels if state is not None else ClassLists.empty(1)
        pairs.append(shared_pairs(y, exemplars))
        nqs.append(exemplars.n)
        m_before.append(0 if state is None else int(state.projection.shape[0]))
        t = time.perf_counter()
        res = learn_chunk(state, x, y, s, backend)
        backend.synchronize()
        times.append(time.perf_counter() - t)
        state = res.state
        m_after.append(int(state.projection.shape[0]))
        for k, v in res.seconds.items():
            steps.setdefault(k, []).append(v)
    # the machine's rate next to the rounds (best of before and after: a shared machine's
    # load moves both the rounds and the rate)
    rates = [max(rates[0], gemm_rate(backend, backend.dtype)),
             max(rates[1], gemm_rate(backend, np.float32))]
    return {"times": times, "steps": steps, "pairs": pairs, "nq": nqs, "d": d,
            "m_before": m_before, "m_after": m_after, "rate": rates[0], "rate32": rates[1],
            "load": os.getloadavg()[0]}


def run_in_tree(tree: str, name: str, args: argparse.Namespace) -> dict[str, Any]:
    """``run_case`` in a fresh process that imports hashstream from ``tree``."""
    path = [str(Path(tree).resolve()), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    cmd = [sys.executable, str(HERE), "--child", name, "--backend", args.backend,
           "--rounds", str(args.rounds), "--n", str(args.n), "--fashion", str(args.fashion)]
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
    ap.add_argument("--fashion", type=Path, default=FASHION,
                    help="the Fashion-MNIST .npz for the d = 784 cases (Gaussian when absent)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.backend, args.dtype, args.rounds, args.n,
                                  args.fashion)))
        return
    backend = get_backend(args.backend, args.dtype)
    print(f"backend {backend.name} {backend.dtype}; rounds 3–{args.rounds} of each run; "
          f"floor from the GEMM rates measured in the same process as the rounds; load "
          f"average {os.getloadavg()[0]:.1f} at the start")
    here = str(HERE.parents[1])
    trees = [("before", args.reference), ("after", here)] if args.reference else [("", here)]
    print("| case | tree | median s/round | issue floor s | ratio | strict floor s | ratio | "
          "required floor s | ratio | issue ratios of all runs | GFLOP/s f64 / f32 | "
          "slowest step |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.cases:
        s = SDOHSettings(**CASES[name][1])
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.repeats):
            for label, tree in trees:
                res = run_in_tree(tree, name, args)
                times = res["times"][2:]
                run: dict[str, Any] = {"res": res, "median": statistics.median(times)}
                for kind in FLOORS:
                    floors = round_floors(res, args.n, s, kind)[2:]
                    totals = [sum(f.values()) for f in floors]
                    run[kind] = (statistics.median(t / f for t, f in zip(times, totals,
                                                                          strict=True)),
                                 statistics.median(totals), floors)
                runs.setdefault(label, []).append(run)
        for label, _ in trees:
            run = min(runs[label], key=lambda r: r["issue"][0])
            res = run["res"]
            steps = {k: v[2:] for k, v in res["steps"].items()}
            slow = max(steps, key=lambda k: statistics.median(steps[k]))
            every = " ".join(f"{r['issue'][0]:.2f}" for r in runs[label])
            cells = " | ".join(f"{run[k][1]:.4f} | {run[k][0]:.2f}" for k in FLOORS)
            print(f"| {name} | {label} | {run['median']:.4f} | {cells} | {every} | "
                  f"{res['rate'] / 1e9:.0f} / {res['rate32'] / 1e9:.0f} "
                  f"| {slow} {statistics.median(steps[slow]):.4f} |", flush=True)
            print("    steps: " + ", ".join(f"{k} {statistics.median(v):.4f}"
                                            for k, v in steps.items()))
            print("    round s: " + " ".join(f"{t:.4f}" for t in res["times"][2:])
                  + "; anchors grown: " + " ".join(
                      str(a - b) if b else "-" for a, b in zip(res["m_after"][2:],
                                                               res["m_before"][2:],
                                                               strict=True)))
            # rounds that grow φ's anchors pay the imputation (a bounded start-up cost: growth
            # stops at n_anchors); the others are what a long stream runs
            grows = [a > b > 0 for a, b in zip(res["m_after"][2:], res["m_before"][2:],
                                               strict=True)]
            ratios = [t / sum(f.values()) for t, f in zip(res["times"][2:], run["issue"][2],
                                                          strict=True)]
            for kind, pick in (("growing anchors", True), ("growing none", False)):
                mine = [x for x, g in zip(ratios, grows, strict=True) if g == pick]
                if mine and any(grows):
                    print(f"    issue-floor ratio of the rounds {kind}: median "
                          f"{statistics.median(mine):.2f} over {len(mine)}")
            required = run["required"][2]
            print("    required floor (mean over those rounds): " + ", ".join(
                f"{k} {statistics.mean(f[k] for f in required):.4f}" for k in required[0]
                if any(f[k] for f in required)))

if __name__ == "__main__":
    main()
