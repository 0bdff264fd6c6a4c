"""Incremental replicas: search latency and throughput idle and under steady commits, the first
search after a commit, refresh time per commit, and the API's memory per item.

Seeds an LSH index (64 bits) in a private embedded Redis: one real tiny round (so an encoder
and a class map exist), then synthetic segments committed through ``IndexStore.commit_round``
up to ``--items``. Then measures through a real API process (``python -m hashstream serve
--workers 0``) on a loopback port. Prints figures; asserts nothing about time.

    python bench/replica_refresh.py                    # 1M items
    python bench/replica_refresh.py --items 10000000   # 10M items
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis
from lsh_index import lsh_index_with_one_round

from hashstream.cli.embedded_redis import EmbeddedRedis
from hashstream.service.replicas import SearchService
from hashstream.store.index_store import IndexStore, RoundCommit

NAME, PREFIX, DIM, BITS = "bench", "bench", 32, 64


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def segment(rng: np.random.Generator, first_id: int, n: int) -> dict[str, np.ndarray]:
    return {"codes": rng.integers(0, 256, (n, BITS // 8), dtype=np.uint8),
            "ids": np.arange(first_id, first_id + n, dtype=np.int64),
            "label_indptr": np.arange(n + 1, dtype=np.int64),
            "label_indices": rng.integers(0, 3, n).astype(np.int32)}


class Seeder:
    """Commits synthetic segments with increasing ids (as the service assigns them)."""

    def __init__(self, store: IndexStore, next_id: int) -> None:
        self.store, self.next_id = store, next_id
        self.rng = np.random.default_rng(7)

    def commit(self, n: int) -> int:
        version = self.store.version(NAME)
        assert self.store.commit_round(NAME, version, RoundCommit(
            segment=segment(self.rng, self.next_id, n)))
        self.next_id += n
        return version + 1


def seed(store: IndexStore, items: int, per_segment: int) -> Seeder:
    seeder = Seeder(store, lsh_index_with_one_round(store, NAME, DIM, BITS))
    while seeder.next_id < items:
        seeder.commit(min(per_segment, items - seeder.next_id))
        log(f"seeded {seeder.next_id:,} / {items:,} items (version {store.version(NAME)})")
    return seeder


def rss_bytes(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) * 1024  # type: ignore[union-attr]


class Client:
    """One keep-alive HTTP connection; ``search`` returns (seconds, response body)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.rng = np.random.default_rng()

    def search(self, min_version: int | None = None) -> tuple[float, dict[str, Any]]:
        vec = ",".join(f"{v:.4f}" for v in self.rng.standard_normal(DIM))
        path = f"/indexes/{NAME}/search?k=10&vector={vec}"
        if min_version is not None:
            path += f"&min_version={min_version}"
        t = time.perf_counter()
        try:
            self.conn.request("GET", path)
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):  # keep-alive timed out
            self.conn.close()
            t = time.perf_counter()
            self.conn.request("GET", path)
            resp = self.conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t
        if resp.status != 200:
            raise RuntimeError(f"{resp.status}: {body[:300]!r}")
        return elapsed, json.loads(body)


def load_phase(port: int, threads: int, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    stop = time.monotonic() + seconds

    def run() -> None:
        client = Client(port)
        mine = []
        while time.monotonic() < stop:
            mine.append(client.search()[0])
        lat.extend(mine)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return {"qps": len(a) / wall, "p50": float(np.percentile(a, 50)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()), "n": len(a)}


class Committer(threading.Thread):
    """A 2,000-item commit every 0.5 s (a round's worth of new items)."""

    def __init__(self, seeder: Seeder, items: int, every: float) -> None:
        super().__init__(daemon=True)
        self.seeder, self.items, self.every = seeder, items, every
        self.halt = threading.Event()
        self.commits = 0

    def run(self) -> None:
        while not self.halt.is_set():
            t = time.monotonic()
            self.seeder.commit(self.items)
            self.commits += 1
            self.halt.wait(max(0.0, self.every - (time.monotonic() - t)))


def fmt(r: dict[str, float]) -> str:
    return (f"{r['qps']:.0f} QPS, p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
            f"max {r['max']:.1f} ms ({r['n']} searches)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--seed-segment", type=int, default=100_000, help="items per seed commit")
    ap.add_argument("--commit-items", type=int, default=2000)
    ap.add_argument("--commit-every", type=float, default=0.5)
    ap.add_argument("--seconds", type=float, default=8.0, help="per load phase")
    ap.add_argument("--after-commit", type=int, default=20, help="first-search samples")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hs-bench-replica-"))
    embedded = EmbeddedRedis(tmp / "redis").start()
    server: subprocess.Popen[bytes] | None = None
    try:
        client = redis.Redis.from_url(embedded.url)
        store = IndexStore(client, PREFIX)
        t = time.perf_counter()
        seeder = seed(store, args.items, args.seed_segment)
        log(f"seeded in {time.perf_counter() - t:.1f} s")

        # In-process: the replica's own arrays per item (HammingIndex + labels, capacity in).
        search = SearchService(store)
        t = time.perf_counter()
        search.replica(NAME)
        live = search.replicas[NAME]
        n = len(live.labels)
        index = live.indexes["pairs"]
        tables = index.tables_bytes()
        log(f"in-process first load of {n:,} items: {time.perf_counter() - t:.2f} s; arrays "
            f"{(live.memory_bytes() - tables) / n:.1f} B/item without MIH tables (index "
            f"{(index.memory_bytes() - tables) / n:.1f}, labels {live.labels.nbytes() / n:.1f})"
            f", MIH tables {tables / n:.1f} B/item")
        del search, live

        port = free_port()
        env = {**os.environ, "REDIS_URL": embedded.url, "HASHSTREAM_KEY_PREFIX": PREFIX}
        stderr = open(tmp / "serve.log", "wb")  # noqa: SIM115 - closed with the process
        server = subprocess.Popen(
            [sys.executable, "-m", "hashstream", "serve", "--workers", "0", "--port", str(port)],
            env=env, stderr=stderr, stdout=subprocess.DEVNULL)
        probe = Client(port)
        while True:
            try:
                probe.conn.request("GET", "/healthz")
                probe.conn.getresponse().read()
                break
            except OSError:
                probe = Client(port)
                time.sleep(0.2)
        rss0 = rss_bytes(server.pid)
        elapsed, body = probe.search()
        rss1 = rss_bytes(server.pid)
        log(f"API first search (synchronous first load of version {body['model_version']}): "
            f"{elapsed * 1000:.0f} ms; RSS {rss0 / 2**20:.0f} → {rss1 / 2**20:.0f} MiB, "
            f"{(rss1 - rss0) / n:.1f} B/item over the idle API")

        for threads in (1, 4):
            load_phase(port, threads, 1.0)  # warm-up
            log(f"idle, {threads} client(s): {fmt(load_phase(port, threads, args.seconds))}")

        firsts, catchups = [], []
        for _ in range(args.after_commit):
            v = seeder.commit(args.commit_items)
            e1, b1 = probe.search()
            e2, b2 = probe.search(min_version=v)
            firsts.append(e1 * 1000)
            catchups.append(e2 * 1000)
            assert b2["model_version"] == v
            time.sleep(0.25)
        log(f"first search after a commit: p50 {np.percentile(firsts, 50):.2f} ms, max "
            f"{max(firsts):.1f} ms; a search with min_version=the new version (read-your-"
            f"writes): p50 {np.percentile(catchups, 50):.1f} ms, max {max(catchups):.1f} ms")

        committer = Committer(seeder, args.commit_items, args.commit_every)
        committer.start()
        for threads in (1, 4):
            log(f"{args.commit_items:,}-item commit every {args.commit_every} s, {threads} "
                f"client(s): {fmt(load_phase(port, threads, args.seconds))}")
        committer.halt.set()
        committer.join()
        rss2 = rss_bytes(server.pid)
        total = seeder.next_id
        log(f"after the commits: {total:,} items; API RSS {rss2 / 2**20:.0f} MiB, "
            f"{(rss2 - rss0) / total:.1f} B/item over the idle API")
        server.terminate()
        server.wait(30)
        refresh = []
        for line in (tmp / "serve.log").read_text(errors="replace").splitlines():
            if '"replica_refresh"' in line:
                event = json.loads(line[line.index("{"):])
                refresh.append((event["to"] - event["from"], event["seconds"] * 1000))
        if refresh:
            ms = np.array([r[1] for r in refresh])
            per = np.array([r[1] / max(r[0], 1) for r in refresh])
            log(f"background refreshes: {len(ms)}, p50 {np.percentile(ms, 50):.1f} ms, max "
                f"{ms.max():.1f} ms (per commit p50 {np.percentile(per, 50):.1f} ms)")
    finally:
        if server is not None and server.poll() is None:
            server.kill()
        embedded.stop()


if __name__ == "__main__":
    main()
