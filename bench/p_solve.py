"""The P step at large m: a fresh Cholesky factor every round against the alternatives
(issue 16 item 2), on the accumulators of a real stream (identity map, d = 4,096, m = 4,097).

Per round t ≥ 2, all timed in this process on the same G_t + λI and F_t:

- ``cholesky``: what the round does (NumPy's dpotrf + the blocked triangular solves);
- ``pcg stale``: conjugate gradients preconditioned by the previous round's factor, warm-started
  from the previous round's P, to a relative residual of ``--tol`` (what keeping the factor
  across rounds and refactorising only when CG stalls would cost on the rounds it does not
  refactorise);
- ``float32 + pcg``: a float32 factor of the current matrix (half the bytes, on paper twice the
  rate) as the preconditioner of float64 CG, to the same tolerance.

    OPENBLAS_NUM_THREADS=1 python bench/p_solve.py [--d 4096] [--rounds 6] [--tol 1e-10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hashstream.solver.backend import _triangular_solve_pair, get_backend
from hashstream.solver.sdoh_hc.round import learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from round_speed import stream  # noqa: E402


def pcg(a: Any, f: Any, x: Any, low: Any, tol: float, cap: int) -> tuple[Any, int]:
    """Column-wise preconditioned CG on a x = f from x, M = low lowᵀ; (x, iterations)."""
    def precondition(v: Any) -> Any:
        return _triangular_solve_pair(low, v.astype(low.dtype)).astype(np.float64)

    scale = np.linalg.norm(f, axis=0)
    res = f - a @ x
    z = precondition(res)
    p, rz, its = z.copy(), (res * z).sum(axis=0), 0
    while (np.linalg.norm(res, axis=0) / scale).max() > tol and its < cap:
        ap = a @ p
        alpha = rz / (p * ap).sum(axis=0)
        x = x + alpha * p
        res = res - alpha * ap
        z = precondition(res)
        rz_next = (res * z).sum(axis=0)
        p = z + (rz_next / rz) * p
        rz, its = rz_next, its + 1
    return x, its


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--cap", type=int, default=60)
    args = ap.parse_args()
    backend = get_backend("numpy")
    s = SDOHSettings(bits=32, feature_map="identity", query_encoder="linear")
    state, history = None, []
    for x, y in stream(args.d, args.rounds, args.n):
        state = learn_chunk(state, x, y, s, backend).state
        history.append((state.g, state.f, state.projection))
    m = history[0][0].shape[0]
    print(f"identity map, d = {args.d}, m = {m}, n = {args.n} a round; relative residual "
          f"{args.tol}; CG capped at {args.cap} iterations")
    print("| round | cholesky s | pcg stale: iterations / s | float32 factor s | "
          "float32 + pcg: iterations / s | max ‖P − P_chol‖/‖P_chol‖ |")
    print("|---|---|---|---|---|---|")
    for t in range(1, len(history)):
        g_old, _, p_old = history[t - 1]
        g, f, _ = history[t]
        reg = g + s.lam * np.eye(m)
        started = time.perf_counter()
        p_chol = backend.cho_solve(reg, f)
        chol_s = time.perf_counter() - started
        low_old = np.linalg.cholesky(g_old + s.lam * np.eye(m))  # kept from the last round
        started = time.perf_counter()
        p_stale, its_stale = pcg(reg, f, p_old.copy(), low_old, args.tol, args.cap)
        stale_s = time.perf_counter() - started
        started = time.perf_counter()
        low32 = np.linalg.cholesky(reg.astype(np.float32))
        f32_s = time.perf_counter() - started
        started = time.perf_counter()
        p_mixed, its_mixed = pcg(reg, f, p_old.copy(), low32, args.tol, args.cap)
        mixed_s = time.perf_counter() - started + f32_s
        err = max(np.linalg.norm(p - p_chol) / np.linalg.norm(p_chol)
                  for p in (p_stale, p_mixed))
        print(f"| {t + 1} | {chol_s:.3f} | {its_stale} / {stale_s:.3f} | {f32_s:.3f} | "
              f"{its_mixed} / {mixed_s:.3f} | {err:.1e} |", flush=True)


if __name__ == "__main__":
    main()
