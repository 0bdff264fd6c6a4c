"""HTTP benchmarks of a real `hashstream serve`: ingest throughput and search latency.

Ingest runs against a server with no round worker (`--workers 0`), so the figure is the
service's acceptance rate (parse, validate, queue durably in Redis), round excluded. Search runs
after rounds have committed, with concurrent clients. Set-up (indexes, loading, waiting for the
rounds) goes through `hashstream.client`; the timed loops send prepared requests over plain
httpx sessions, so the figures stay the service's and comparable with earlier runs.

Run:  python bench/http_service.py ingest [--dims 784 4096]
      python bench/http_service.py search --items 1000000 --dim 64 --clients 1 4
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from hashstream.cli.embedded_redis import EmbeddedRedis, free_port
from hashstream.client import Client


class Server:
    """`hashstream serve` on a free port against an embedded Redis in a temp dir."""

    def __init__(self, workers: int, extra_env: dict[str, str] | None = None) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.redis = EmbeddedRedis(Path(self.tmp.name) / "redis").start()
        self.port = free_port()
        env = {**os.environ, "REDIS_URL": self.redis.url, "HASHSTREAM_KEY_PREFIX":
               f"bench{uuid.uuid4().hex[:6]}", **(extra_env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hashstream", "serve", "--port", str(self.port),
             "--workers", str(workers), "--log-level", "warning"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.redis.stop()
        self.tmp.cleanup()


def hammer(clients: int, seconds: float, one_request) -> list[list[float]]:
    """Run ``one_request(client, i)`` from ``clients`` threads for ``seconds``; latencies."""
    lat: list[list[float]] = [[] for _ in range(clients)]
    stop = time.time() + seconds

    def loop(c: int) -> None:
        i = c
        while time.time() < stop:
            t0 = time.perf_counter()
            one_request(c, i)
            lat[c].append(time.perf_counter() - t0)
            i += clients

    threads = [threading.Thread(target=loop, args=(c,)) for c in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return lat


def npz_body(x: np.ndarray, labels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, features=x.astype(np.float32), labels=labels.astype(np.uint8))
    return buf.getvalue()


def bench_ingest(dims: list[int], clients: int, seconds: float) -> None:
    print("| body | d | items/request | clients | requests | items/s | MB/s |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for d in dims:
        server = Server(workers=0)
        try:
            with Client(server.url) as hs:
                hs.create_index("b", d, bits=32)
            for kind, n in (("npz", 40_000_000 // (4 * d)), ("json", 1000)):
                x = rng.standard_normal((n, d)).astype(np.float32)
                y = rng.integers(0, 10, n)
                if kind == "npz":
                    body = npz_body(x, np.eye(10)[y])
                    headers = {"content-type": "application/octet-stream"}
                else:
                    import json

                    body = json.dumps({"features": x.round(4).tolist(),
                                       "labels": [[int(v)] for v in y]}).encode()
                    headers = {"content-type": "application/json"}
                sessions = [httpx.Client(timeout=120) for _ in range(clients)]

                def post(c: int, i: int, body: bytes = body, headers: dict = headers,
                         sessions: list = sessions, url: str = server.url) -> None:
                    r = sessions[c].post(url + "/indexes/b/ingest", content=body,
                                         headers=headers)
                    assert r.status_code == 202, r.text

                t = time.perf_counter()
                lat = hammer(clients, seconds, post)
                elapsed = time.perf_counter() - t
                for session in sessions:
                    session.close()
                reqs = sum(len(x) for x in lat)
                print(f"| {kind} | {d} | {n} | {clients} | {reqs} | {reqs * n / elapsed:,.0f} "
                      f"| {reqs * len(body) / elapsed / 1e6:,.0f} |", flush=True)
        finally:
            server.close()


def bench_search(items: int, dim: int, clients_list: list[int], seconds: float,
                 bits: int, scan: str = "auto") -> None:
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((20, dim)) * 2
    server = Server(workers=1, extra_env={"HASHSTREAM_MAX_ROUND_ITEMS": "100000",
                                          "HASHSTREAM_EVAL_QUERIES": "0",
                                          "HASHSTREAM_SEARCH_BACKEND": scan})
    try:
        with Client(server.url, timeout=600) as hs:
            hs.create_index("s", dim, bits=bits, n_anchors=300)
            chunk = 100_000
            t = time.perf_counter()
            for start in range(0, items, chunk):
                n = min(chunk, items - start)
                y = rng.integers(0, 20, n)
                x = centers[y] + rng.standard_normal((n, dim))
                hs.ingest("s", x.astype(np.float32), label_matrix=np.eye(20)[y])  # as .npz
            info = hs.wait_idle("s", timeout=24 * 3600, poll=1.0)
            assert info["n_items"] >= items, info
            print(f"loaded {items:,} items (d={dim}, {bits} bits) in "
                  f"{time.perf_counter() - t:.0f}s incl. rounds", flush=True)
            queries = (centers[rng.integers(0, 20, 256)] + rng.standard_normal((256, dim)))
            vectors = [",".join(f"{v:.4f}" for v in q) for q in queries]
            hs.search("s", queries[0], k=10)  # load the replica
        print("| clients | requests | QPS | p50 ms | p99 ms |")
        print("|---|---|---|---|---|")
        for clients in clients_list:
            sessions = [httpx.Client(base_url=server.url, timeout=60) for _ in range(clients)]

            def get(c: int, i: int, sessions: list = sessions) -> None:
                r = sessions[c].get("/indexes/s/search", params={"vector": vectors[i % 256],
                                                                 "k": 10})
                assert r.status_code == 200, r.text

            t = time.perf_counter()
            lat = hammer(clients, seconds, get)
            elapsed = time.perf_counter() - t
            for session in sessions:
                session.close()
            flat = sorted(x for xs in lat for x in xs)
            p99 = flat[min(len(flat) - 1, int(0.99 * len(flat)))]
            print(f"| {clients} | {len(flat)} | {len(flat) / elapsed:,.0f} | "
                  f"{statistics.median(flat) * 1e3:.2f} | {p99 * 1e3:.2f} |", flush=True)
    finally:
        server.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    i = sub.add_parser("ingest")
    i.add_argument("--dims", type=int, nargs="+", default=[784, 4096])
    i.add_argument("--clients", type=int, default=2)
    i.add_argument("--seconds", type=float, default=8)
    s = sub.add_parser("search")
    s.add_argument("--items", type=int, default=1_000_000)
    s.add_argument("--dim", type=int, default=64)
    s.add_argument("--bits", type=int, default=64)
    s.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    s.add_argument("--seconds", type=float, default=8)
    s.add_argument("--scan", choices=("auto", "numpy"), default="auto",
                   help="numpy: the plain NumPy Hamming scan (the 'before' figure)")
    args = ap.parse_args()
    if args.what == "ingest":
        bench_ingest(args.dims, args.clients, args.seconds)
    else:
        bench_search(args.items, args.dim, args.clients, args.seconds, args.bits, args.scan)


if __name__ == "__main__":
    main()
