"""Hamming search speed: HammingIndex's flat scan beside FAISS IndexBinaryFlat, multi-index
hashing beside the flat scan, and memory per item.

Run:  python bench/hamming.py --out bench/out/hamming.md
      python bench/hamming.py --sizes 1000000 --bits 64 --quick      (a smoke run)

Every ratio is measured in one run, ours and FAISS interleaved repetition by repetition on the
same codes and queries; figures are medians (batch 1: a different query each repetition). FAISS
gets its better OpenMP thread count (1 or all cores, picked per size and code length on the
100-query batch): on a machine shared with other jobs, FAISS's spinning OpenMP threads lose
badly to oversubscription. Ours uses all cores (``HASHSTREAM_THREADS`` to change).

Codes: random (uniform bits; the worst case for MIH) and clustered (100 centers, each bit flipped
with probability 1/16, queries drawn the same way: what learned hash codes look like).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hashstream.hamming import index as hi
from hashstream.hamming.index import HammingIndex

Array = np.ndarray[Any, Any]


def make_codes(kind: str, n: int, bits: int, rng: np.random.Generator) -> Array:
    nb = bits // 8
    if kind == "random":
        return rng.integers(0, 256, (n, nb), dtype=np.uint8)
    centers = rng.integers(0, 256, (100, nb), dtype=np.uint8)
    out = np.empty((n, nb), dtype=np.uint8)
    for s in range(0, n, 1 << 20):
        e = min(n, s + (1 << 20))
        flips = rng.integers(0, 256, (4, e - s, nb), dtype=np.uint8)
        out[s:e] = centers[rng.integers(0, 100, e - s)] ^ (flips[0] & flips[1] & flips[2]
                                                           & flips[3])
    return out


def median_ms(fns: list[Callable[[int], Any]], reps: int) -> list[float]:
    """Interleaved repetitions; median milliseconds of each fn. Each call gets its own slot
    number (rep × len(fns) + i), so batch-1 runs draw a query no other fn just warmed the
    cache with."""
    times: list[list[float]] = [[] for _ in fns]
    for rep in range(reps):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn(rep * len(fns) + i)
            times[i].append((time.perf_counter() - t) * 1e3)
    return [statistics.median(t) for t in times]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def faiss_rows(n: int, bits: int, rng: np.random.Generator, reps1: int, reps100: int
               ) -> list[str]:
    import faiss

    ncores = faiss.omp_get_max_threads()
    codes = make_codes("random", n, bits, rng)
    queries = make_codes("random", max(3 * reps1, 100), bits, rng)
    q100 = queries[:100]
    ours = HammingIndex(bits, mode="flat")
    ours.add(codes, np.arange(n))
    ref = faiss.IndexBinaryFlat(bits)
    ref.add(codes)
    pick = {}
    for th in sorted({1, ncores}):
        faiss.omp_set_num_threads(th)
        ref.search(q100, 100)
        pick[th] = median_ms([lambda _r: ref.search(q100, 100)], 2)[0]
    best_th = min(pick, key=lambda t: pick[t])
    faiss.omp_set_num_threads(best_th)
    rows = []
    for batch in (1, 100):
        for k in (10, 100):
            def qs(slot: int, batch: int = batch) -> Array:
                return queries[slot % len(queries)][None] if batch == 1 else q100

            ours.search(qs(0), k)
            ref.search(qs(0), k)
            t_ours, t_faiss = median_ms([lambda r, k=k: ours.search(qs(r), k),
                                         lambda r, k=k: ref.search(qs(r), k)],
                                        reps1 if batch == 1 else reps100)
            same = np.array_equal(ours.search(qs(0), k)[0], ref.search(qs(0), k)[0])
            rows.append(f"| {n:,} | {bits} | {batch} | {k} | {t_ours:.2f} | {t_faiss:.2f} | "
                        f"{best_th} | {t_ours / t_faiss:.3f} | {'yes' if same else 'NO'} |")
            print(rows[-1], flush=True)
    faiss.omp_set_num_threads(ncores)
    return rows


def bench_faiss(sizes: list[int], bit_list: list[int], reps1: int, reps100: int,
                out: list[str]) -> None:
    out += ["### Flat scan: ours vs FAISS `IndexBinaryFlat` (random codes)", "",
            "| codes | bits | batch | k | ours ms | FAISS ms | FAISS threads | ratio | "
            "same distances |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    rng = np.random.default_rng(0)
    for n in sizes:
        for bits in bit_list:
            out += faiss_rows(n, bits, rng, reps1, reps100)
            gc.collect()
    out.append("")


def mih_rows(n: int, bits: int, kind: str, rng: np.random.Generator, reps1: int, reps100: int,
             mem: list[str]) -> list[str]:
    codes = make_codes(kind, n, bits, rng)
    qrng = np.random.default_rng(2)
    if kind == "random":
        queries = make_codes("random", max(3 * reps1, 100), bits, qrng)
    else:  # stored codes with more bits flipped: near the same centers
        sample = codes[qrng.integers(0, n, max(3 * reps1, 100))]
        flips = qrng.integers(0, 256, (4, *sample.shape), dtype=np.uint8)
        queries = sample ^ (flips[0] & flips[1] & flips[2] & flips[3])
    q100 = queries[:100]
    flat = HammingIndex(bits, mode="flat")
    flat.add(codes, np.arange(n))
    mih = HammingIndex(bits, mode="mih")
    mih.add(codes, np.arange(n))
    t = time.perf_counter()
    mih.search(queries[:1], 1)  # builds the tables
    build_s = time.perf_counter() - t
    auto = HammingIndex(bits, mode="auto")
    auto.add(codes, np.arange(n))
    auto.search(queries[:1], 1)
    assert mih._mih is not None
    mem.append(f"| {n:,} | {bits} | {kind} | {flat.memory_bytes() / n:.1f} | "
               f"{mih.memory_bytes() / n:.1f} | {mih._mih.m} × "
               f"{max(mih._mih.sub_len.tolist())} bits | {build_s:.1f} | {bits // 8} |")
    rows = []
    for batch in (1, 100):
        for k in (10, 100):
            def qs(slot: int, batch: int = batch) -> Array:
                return queries[slot % len(queries)][None] if batch == 1 else q100

            fell: list[float] = []

            def run_auto(r: int, k: int = k, fell: list[float] = fell) -> None:
                tried = auto._mih_skip == 0  # else this search skips MIH (most fell back)
                before = auto._mih_fallbacks
                auto.search(qs(r), k)
                if tried:
                    fell.append((auto._mih_fallbacks - before) / qs(r).shape[0])

            # flat apart: a flat scan streams the whole store through the caches, and MIH
            # right after it runs cold; measured together, MIH and auto share the conditions
            reps = reps1 if batch == 1 else reps100
            (t_flat,) = median_ms([lambda r, k=k: flat.search(qs(r), k)], reps)
            t_mih, t_auto = median_ms([lambda r, k=k: mih.search(qs(r), k), run_auto], reps)
            a, b = flat.search(qs(0), k), mih.search(qs(0), k)
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
            rows.append(f"| {kind} | {bits} | {batch} | {k} | {t_flat:.2f} | {t_mih:.2f} | "
                        f"{t_flat / t_mih:.1f}× | {t_auto:.2f} | {t_flat / t_auto:.1f}× | "
                        f"{f'{statistics.mean(fell):.0%}' if fell else 'not tried'} |")
            print(rows[-1], flush=True)
    return rows


def bench_mih(n: int, bit_list: list[int], kinds: list[str], reps1: int, reps100: int,
              out: list[str], mem: list[str]) -> None:
    out += [f"### Multi-index hashing vs the flat scan ({n:,} codes)", "",
            "MIH = `mode=\"mih\"` (always MIH); auto = `mode=\"auto\"`, the default: MIH with "
            "a per-query work budget, a query over it falls back to the flat scan, and after a "
            "search where most did, the next 16 searches scan flat (\"fell back\" = share of "
            "the queries MIH tried).", "",
            "| codes | bits | batch | k | flat ms | MIH ms | MIH speed-up | auto ms | "
            "auto speed-up | fell back |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rng = np.random.default_rng(1)
    for bits in bit_list:
        for kind in kinds:
            out += mih_rows(n, bits, kind, rng, reps1, reps100, mem)
            gc.collect()
    out.append("")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--bits", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--mih-size", type=int, default=10_000_000)
    ap.add_argument("--kinds", nargs="+", default=["random", "clustered"])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    ap.add_argument("--no-faiss", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    reps1, reps100 = (5, 2) if args.quick else (21, 5)
    started = time.perf_counter()
    out = ["## Hamming search (issue 4)", "",
           f"Command: `python bench/hamming.py {' '.join(sys.argv[1:])}`".rstrip() + "", "",
           f"Machine: {cpu_name()}, {os.cpu_count()} cores; kernels: `{hi.native_isa()}`, "
           f"{HammingIndex(64).threads} threads; load average at start "
           f"{os.getloadavg()[0]:.1f}.", ""]
    mem = ["### Memory per item (bytes)", "",
           "| codes | bits | data | ours, flat | ours, flat + MIH tables | MIH tables | "
           "MIH build s | FAISS flat |", "|---:|---:|---|---:|---:|---|---:|---:|"]
    if not args.no_faiss:
        bench_faiss(args.sizes, args.bits, reps1, reps100, out)
    if args.mih_size:
        bench_mih(args.mih_size, args.bits, args.kinds, reps1, reps100, out, mem)
        out += mem + [""]
    out.append(f"Total run {time.perf_counter() - started:.0f} s; load average at end "
               f"{os.getloadavg()[0]:.1f}.")
    text = "\n".join(out) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
