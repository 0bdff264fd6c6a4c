"""Seconds per SDOH-HC round beside the FLOP floor of SOLVER.md's cost line.

The floor is the cost line's multiply-adds (×2 flops) over this machine's GEMM rate, measured in
the same run and dtype with one large matrix product:

    Φ: n·d·m (rbf) · ΦᵀΦ: n·m² · Sqnᵀ B̃q: n·nq·r · V-step: n·r² · DCC: sweeps·n·r² · P: m³/3

Run:  python bench/round_speed.py [--backend numpy|cupy] [--dtype float64|float32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from hashstream.solver.backend import get_backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.round import learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings

FASHION = Path(__file__).resolve().parents[2] / "shared/data/fashion_mnist/fashion_mnist.npz"


def gemm_rate(backend, size: int = 2048, repeats: int = 5) -> float:
    """Flops per second of a size³ matrix product in the backend's dtype."""
    xp = backend.xp
    a = xp.asarray(np.random.default_rng(0).standard_normal((size, size)), dtype=backend.dtype)
    a @ a
    backend.synchronize()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ a
        backend.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def floor_flops(n: int, d: int, m: int, nq: int, r: int, s: SDOHSettings) -> float:
    mult_adds = (n * d * m if s.feature_map == "rbf" else 0) + n * m * m + n * nq * r \
        + s.iterations * (n * r * r + s.sweeps * n * r * r * 2) + m**3 / 3
    return 2 * mult_adds


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    backend = get_backend(args.backend, args.dtype)
    rate = gemm_rate(backend)
    print(f"backend {backend.name} {backend.dtype}; GEMM rate {rate / 1e9:.1f} GFLOP/s")
    cases = [
        ("identity d=784", 784, SDOHSettings(bits=32, feature_map="identity")),
        ("identity d=784 nq=200", 784, SDOHSettings(bits=32, feature_map="identity", n1=100,
                                                    n2=100)),
        ("identity d=4096", 4096, SDOHSettings(bits=32, feature_map="identity")),
        ("rbf 1000 anchors d=784 (default)", 784, SDOHSettings(bits=32)),
        # the default above trains the residual query net every round (issue 14 item 3)
        ("rbf d=784, linear query encoder", 784, SDOHSettings(bits=32, query_encoder="linear")),
    ]
    print("| case | median s/round | floor s | ratio | slowest step |")
    print("|---|---|---|---|---|")
    for name, d, s in cases:
        state, times, steps = None, [], {}
        for x, y in stream(d, args.rounds, args.n):
            t = time.perf_counter()
            res = learn_chunk(state, x, y, s, backend)
            backend.synchronize()
            times.append(time.perf_counter() - t)
            state = res.state
            for k, v in res.seconds.items():
                steps.setdefault(k, []).append(v)
        m = d + 1 if s.feature_map == "identity" else s.n_anchors + 1
        med = statistics.median(times[2:])
        floor = floor_flops(args.n, d, m, s.n1 + s.n2, s.bits, s) / rate
        slow = max(steps, key=lambda k: statistics.median(steps[k][2:]))
        print(f"| {name} | {med:.4f} | {floor:.4f} | {med / floor:.2f} | {slow} "
              f"{statistics.median(steps[slow][2:]):.4f} |")
        print("    steps: " + ", ".join(f"{k} {statistics.median(v[2:]):.4f}"
                                        for k, v in steps.items()))


if __name__ == "__main__":
    main()
