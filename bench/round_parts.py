"""The round's parts that issue 16 changed, each timed against another tree's same function in
one process, alternating, best of ``--repeats`` (robust to a shared machine's load, which the
whole-round figures of ``round_speed.py`` are not).

Parts: the V-step (``orthogonal_balanced``; 2,000 × 32, full rank and rank 10), the exemplar
similarity (``_exemplar_similarity`` on a Fashion-MNIST state, single label, d = 784, and a
MIRFlickr state, 7 tags, d = 100), the RBF feature step under anchor growth (``grow_anchors``
on the default settings' Fashion-MNIST stream: round 3, which grows anchors and imputes G's
and F's new rows, and round 5, which does not) and the query net's training
(``train_query_net``, 30 steps, d = 784 and 4,096, 1,024 hidden units) beside its GEMM floor at
the float32 rate measured here. The reference tree's modules are loaded from its files; their
imports resolve to this tree's unchanged modules (backend, class lists), except the feature
map's functions, which the reference round gets from the reference tree's feature_map.py.

    OPENBLAS_NUM_THREADS=1 python bench/round_parts.py --reference /path/to/main/tree
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from hashstream.eval.online_hashing import load_dataset
from hashstream.solver import query_net
from hashstream.solver.backend import get_backend
from hashstream.solver.sdoh_hc import round as sdoh_round
from hashstream.solver.sdoh_hc.settings import SDOHSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from round_speed import gemm_rate, stream  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load(tree: str, relative: str, alias: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(alias, Path(tree) / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return module


def state_after(x: Any, y: Any, chunk: int, rounds: int, backend: Any) -> Any:
    s = SDOHSettings(bits=32, query_encoder="linear",
                     feature_map="identity" if x.shape[1] > 500 else "rbf")
    state = None
    for i in range(rounds):
        rows = np.arange(i * chunk, (i + 1) * chunk)
        state = sdoh_round.learn_chunk(state, x[rows], y.take(rows), s, backend).state
    return state


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", required=True)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    backend = get_backend("numpy")
    old_round = load(args.reference, "hashstream/solver/sdoh_hc/round.py", "reference_round")
    old_net = load(args.reference, "hashstream/solver/query_net.py", "reference_query_net")
    old_map = load(args.reference, "hashstream/solver/feature_map.py", "reference_feature_map")
    for name in ("apply_feature_map", "map_and_grow", "fit_feature_map", "l2_normalize_rows"):
        setattr(old_round, name, getattr(old_map, name))
    rng = np.random.default_rng(0)
    parts: list[tuple[str, Callable[[ModuleType, ModuleType], Any], float]] = []
    z_full = rng.standard_normal((2000, 32)) * 3 + np.sign(rng.standard_normal((2000, 32)))
    z_rank = np.repeat(rng.standard_normal((10, 32)), 200, axis=0)
    for name, z in (("V-step, full rank", z_full), ("V-step, rank 10", z_rank)):
        parts.append((name, lambda r, n, z=z: r.orthogonal_balanced(
            z, np.random.default_rng(1), backend), 0.0))
    fashion = [(x, y) for x, y in stream(784, 4, 2000)]
    fx = np.concatenate([x for x, _ in fashion])
    fy = type(fashion[0][1]).concat([y for _, y in fashion])
    state = state_after(fx, fy, 2000, 3, backend)
    x_new, y_new = fx[6000:8000].astype(np.float64), fy.take(np.arange(6000, 8000))
    parts.append(("exemplar similarity, Fashion-MNIST", lambda r, n: r._exemplar_similarity(
        state, x_new, y_new.widen(state.n_classes), backend, 32), 0.0))
    rbf = SDOHSettings(bits=32)  # the defaults: RBF, anchor growth
    rbf_states, rbf_chunks = [None], []
    for x, y in stream(784, 5, 2000):
        rbf_chunks.append(x.astype(np.float64))
        rbf_states.append(sdoh_round.learn_chunk(rbf_states[-1], x, y, rbf, backend).state)
    for rnd in (3, 5):
        grows = (rbf_states[rnd].feature_map.anchors.shape[0]
                 > rbf_states[rnd - 1].feature_map.anchors.shape[0])
        parts.append((f"features, RBF round {rnd} ({'grows' if grows else 'no growth'})",
                      lambda r, n, rnd=rnd: r.grow_anchors(rbf_states[rnd - 1],
                                                           rbf_chunks[rnd - 1], rbf, backend,
                                                           rnd), 0.0))
    mir = load_dataset(DATA / "mirflickr_pml_7label" / "mirflickr_pml_7label.npz")
    order = np.random.default_rng(0).permutation(mir.features.shape[0])[:3500]
    mx, my = mir.features[order], mir.labels.take(order)
    mstate = state_after(mx, my, 500, 6, backend)
    mx_new, my_new = mx[3000:3500].astype(np.float64), my.take(np.arange(3000, 3500))
    parts.append(("exemplar similarity, MIRFlickr", lambda r, n: r._exemplar_similarity(
        mstate, mx_new, my_new.widen(mstate.n_classes), backend, 32), 0.0))
    rate32 = gemm_rate(backend, np.float32)
    for d in (784, 4096):
        xq = rng.standard_normal((4000, d))
        residual = rng.choice([-1.0, 1.0], (4000, 32)) * 0.7
        net = query_net.init_query_net(xq, 32, 1024, 0)
        steps = 30
        floor = 2 * steps * (2 * 128 * d * 1024 + 3 * 128 * 1024 * 32) / rate32
        parts.append((f"query net, d={d}, {steps} steps", lambda r, n, xq=xq, res=residual,
                      net=net, steps=steps: n.train_query_net(
                          net, xq, res, steps, np.random.default_rng(1), backend), floor))
    print(f"best of {args.repeats}, alternating; float32 GEMM {rate32 / 1e9:.0f} GFLOP/s")
    print("| part | before ms | after ms | after / before | GEMM floor ms |")
    print("|---|---|---|---|---|")
    for name, fn, floor in parts:
        times: dict[str, float] = {"before": float("inf"), "after": float("inf")}
        for _ in range(args.repeats):
            for label, modules in (("before", (old_round, old_net)),
                                   ("after", (sdoh_round, query_net))):
                started = time.perf_counter()
                fn(*modules)
                times[label] = min(times[label], time.perf_counter() - started)
        floor_ms = f"{floor * 1e3:.1f}" if floor else ""
        print(f"| {name} | {times['before'] * 1e3:.2f} | {times['after'] * 1e3:.2f} | "
              f"{times['after'] / times['before']:.2f} | {floor_ms} |", flush=True)


if __name__ == "__main__":
    main()
