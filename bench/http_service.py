"""HTTP benchmarks of a real `hashstream serve`: ingest throughput and search latency.

Ingest runs against a server with no round worker (`--workers 0`), so the figure is the
service's acceptance rate (parse, validate, queue durably in Redis), round excluded. Search runs
after rounds have committed, with concurrent clients. Set-up (indexes, loading, waiting for the
rounds) goes through `hashstream.client`; the timed loops send prepared requests over plain
httpx sessions, so the figures stay the service's and comparable with earlier runs.

Run:  python bench/http_service.py ingest [--dims 784 4096]
      python bench/http_service.py search --items 1000000 --dim 64 --clients 1 4
      python bench/http_service.py search-floor --items 1000000 --clients 1 4 --api-processes 1 2
          [--before-code DIR]   (issue 16: the search fast path, API processes, .npz batches)
      python bench/http_service.py learn --clients 4 --seconds 12   (sustained ingest with
          a worker: learned items/s beside the solver's in-process rate, same round size)
      python bench/http_service.py ingest-disk [--before-code DIR]   (npz ingest beside the
          disk's sequential write rate, measured in the same run in Redis's data dir)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from hashstream.cli.embedded_redis import EmbeddedRedis, free_port
from hashstream.client import Client
from hashstream.service.round_timing import WORKER_PARTS
from hashstream.service.settings import KEEP_FREED_MB


class Server:
    """`hashstream serve` on a free port against an embedded Redis in a temp dir."""

    def __init__(self, workers: int, extra_env: dict[str, str] | None = None,
                 fsync: str = "everysec", keep_freed_mb: int = KEEP_FREED_MB) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.redis = EmbeddedRedis(Path(self.tmp.name) / "redis", fsync=fsync,
                                   keep_freed_mb=keep_freed_mb).start()
        self.port = free_port()
        env = {**os.environ, "REDIS_URL": self.redis.url, "HASHSTREAM_KEY_PREFIX":
               f"bench{uuid.uuid4().hex[:6]}", "HASHSTREAM_KEEP_FREED_MB": str(keep_freed_mb),
               **(extra_env or {})}
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


# --- issue 16: search at the floor (fast path, API processes, .npz batches) ----------------

class ServeOn:
    """`hashstream serve` on an existing Redis (``redis_url``, key ``prefix``) running the code
    of the checkout at ``code`` (None: this one): several servers, one data set."""

    def __init__(self, redis_url: str, prefix: str, workers: int, api_processes: int = 1,
                 code: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.api_processes = api_processes
        env = {**os.environ, "REDIS_URL": redis_url, "HASHSTREAM_KEY_PREFIX": prefix,
               **(extra_env or {}), **code_env(str(Path(code).resolve()) if code else None)}
        args = [sys.executable, "-m", "hashstream", "serve", "--port", str(self.port),
                "--workers", str(workers), "--log-level", "warning"]
        if api_processes > 1:
            args += ["--api-processes", str(api_processes)]
        # in this process's session, as the clients: a server in a session of its own gets
        # its own scheduler autogroup (Linux), which here made every single-query latency
        # ~1 ms longer, whatever the code (a plain `uvicorn` too)
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def api_pids(self) -> list[int]:
        """The processes that answer HTTP: the API children, or the serve itself."""
        import psutil

        kids = [p.pid for p in psutil.Process(self.proc.pid).children()
                if "--process-id" in p.cmdline()]
        return kids or [self.proc.pid]

    def rss(self) -> list[int]:
        import psutil

        return [psutil.Process(p).memory_info().rss for p in self.api_pids()]

    def close(self) -> None:
        """SIGTERM (the serve stops its children), SIGKILL past a minute (they die with it)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


class RawClient:
    """One keep-alive HTTP/1.1 connection (stdlib http.client: a lighter client than httpx,
    so more of the latency measured is the server's)."""

    def __init__(self, port: int) -> None:
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, str | None, bytes]:
        """(status, the answering API process, body); once more on a new connection when the
        server had closed this one (uvicorn closes a keep-alive connection idle for 5 s)."""
        import http.client

        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                return r.status, r.getheader("x-hashstream-process"), r.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def spread_clients(server: ServeOn, n: int) -> list[RawClient]:
    """``n`` connections spread evenly over the server's API processes (as a load balancer
    would): a connection the kernel gave to a process that has its share is closed, again."""
    share = -(-n // server.api_processes)
    held: dict[str | None, int] = {}
    out: list[RawClient] = []
    for _ in range(500):
        if len(out) == n:
            return out
        c = RawClient(server.port)
        status, proc, _ = c.request("GET", "/healthz")
        assert status == 200
        if held.get(proc, 0) < share:
            held[proc] = held.get(proc, 0) + 1
            out.append(c)
        else:
            c.close()
    raise RuntimeError(f"could not spread {n} connections over {server.api_processes} "
                       f"processes: {held}")


def warm(server: ServeOn, path: str) -> None:
    """Load every API process's replica (the first search of each loads it)."""
    seen: set[str | None] = set()
    for _ in range(500):
        c = RawClient(server.port)
        status, proc, body = c.request("GET", path)
        c.close()
        assert status == 200, body[:300]
        seen.add(proc)
        if len(seen) >= server.api_processes:
            return
    raise RuntimeError(f"only {len(seen)} API processes answered")


def percentiles(lat: list[float], elapsed: float) -> tuple[int, float, float, float]:
    """(requests, requests/s, p50 ms, p99 ms)."""
    flat = sorted(lat)
    p99 = flat[min(len(flat) - 1, int(0.99 * len(flat)))]
    return len(flat), len(flat) / elapsed, statistics.median(flat) * 1e3, p99 * 1e3


def interleaved(targets: list[tuple[ServeOn, Any]], clients: int, seconds: float,
                slice_s: float) -> list[tuple[list[float], float]]:
    """Latencies and elapsed seconds per target: ``clients`` connections to each target's
    server (spread over its API processes), ``send(conn, i)`` making request i; every target
    in turn for ``slice_s`` seconds (the order rotating) until each had ``seconds``, so the
    machine's noise falls on all of them alike."""
    conns = [spread_clients(server, clients) for server, _ in targets]
    out: list[tuple[list[float], float]] = [([], 0.0) for _ in targets]
    for turn in range(max(1, round(seconds / slice_s))):
        for j in [(turn + k) % len(targets) for k in range(len(targets))]:
            mine, send = conns[j], targets[j][1]
            t = time.perf_counter()
            lat = hammer(clients, slice_s, lambda c, i, mine=mine, send=send: send(mine[c], i))
            lats, elapsed = out[j]
            out[j] = (lats + [x for xs in lat for x in xs], elapsed + time.perf_counter() - t)
    for held in conns:
        for conn in held:
            conn.close()
    return out


def in_process_reference(redis_url: str, prefix: str, vectors: list[str], repeats: int
                         ) -> dict[str, Any]:
    """The service's own call in this process (no HTTP): the search alone, and the search
    plus the JSON answer's encoding; the replica's bytes per item."""
    from hashstream.api.search_answer import json_answer
    from hashstream.service.replicas import SearchService
    from hashstream.store.connection import connect
    from hashstream.store.index_store import IndexStore

    search = SearchService(IndexStore(connect(redis_url), prefix))
    search.search_vector_text("s", vectors[0], 10)  # the first load
    alone, encoded = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        hits = search.search_vector_text("s", vectors[i % len(vectors)], 10)
        t1 = time.perf_counter()
        json_answer("s", hits)
        t2 = time.perf_counter()
        alone.append(t1 - t0)
        encoded.append(t2 - t0)
    out = {name: (statistics.median(x) * 1e3, sorted(x)[int(0.99 * len(x))] * 1e3)
           for name, x in (("search", alone), ("search + JSON", encoded))}
    out["replica bytes"] = search.replicas["s"].memory_bytes()
    return out


def load_floor_index(redis_url: str, prefix: str, items: int, dim: int, bits: int,
                     centers: np.ndarray, rng: np.random.Generator) -> None:
    """Index "s" with ``items`` items learned by the service, unless the Redis holds it."""
    from hashstream.store.connection import connect
    from hashstream.store.index_store import IndexStore

    held = IndexStore(connect(redis_url), prefix).item_count("s")
    if held is not None and held >= items:
        print(f"reusing {held:,} items already learned", flush=True)
        return
    loader = ServeOn(redis_url, prefix, workers=1, extra_env={
        "HASHSTREAM_MAX_ROUND_ITEMS": "100000", "HASHSTREAM_EVAL_QUERIES": "0"})
    try:
        t = time.perf_counter()
        with Client(loader.url, timeout=600) as hs:
            hs.create_index("s", dim, bits=bits, n_anchors=300)
            for start in range(0, items, 100_000):
                n = min(100_000, items - start)
                y = rng.integers(0, 20, n)
                x = centers[y] + rng.standard_normal((n, dim))
                hs.ingest("s", x.astype(np.float32), label_matrix=np.eye(20)[y])
            info = hs.wait_idle("s", timeout=24 * 3600, poll=1.0)
        assert info["n_items"] >= items, info
        print(f"loaded {items:,} items (d={dim}, {bits} bits) in "
              f"{time.perf_counter() - t:.0f}s incl. rounds", flush=True)
    finally:
        loader.close()


def bench_search_floor(args: argparse.Namespace) -> None:
    """Search over HTTP at 1M items: the fast path (and the code at --before-code, on the same
    Redis, in the same run), 1 and 2 API processes, 1 and 4 clients, the in-process call as
    the reference, and the .npz batch form against JSON."""
    rng = np.random.default_rng(1)
    dim, bits, items = args.dim, args.bits, args.items
    centers = rng.standard_normal((20, dim)) * 2
    tmp = tempfile.TemporaryDirectory()
    redis = EmbeddedRedis(Path(args.redis_dir or tmp.name) / "redis").start()
    prefix = "floor"
    servers: list[tuple[str, ServeOn]] = []
    try:
        load_floor_index(redis.url, prefix, items, dim, bits, centers, rng)
        queries = centers[rng.integers(0, 20, 256)] + rng.standard_normal((256, dim))
        vectors = [",".join(f"{v:.4f}" for v in q) for q in queries]
        paths = [f"/indexes/s/search?vector={v}&k=10" for v in vectors]
        if args.before_code:
            servers.append(("before", ServeOn(redis.url, prefix, 0, 1, args.before_code)))
        for n in args.api_processes:
            servers.append(("after", ServeOn(redis.url, prefix, 0, n)))
        idle = {id(s): s.rss() for _, s in servers}
        for _, server in servers:
            warm(server, paths[0])
        print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; every server "
              f"{args.seconds:g} s per row, in turns of {args.slice:g} s", flush=True)

        def get(conn: RawClient, i: int) -> None:
            status, _, body = conn.request("GET", paths[i % len(paths)])
            assert status == 200, body[:300]

        print("\n| code | API processes | clients | requests | QPS | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|---|")
        for clients in args.clients:
            got = interleaved([(server, get) for _, server in servers], clients, args.seconds,
                              args.slice)
            for (label, server), (lat, elapsed) in zip(servers, got, strict=True):
                n, qps, p50, p99 = percentiles(lat, elapsed)
                print(f"| {label} | {server.api_processes} | {clients} | {n} | {qps:,.0f} "
                      f"| {p50:.2f} | {p99:.2f} |", flush=True)
        # one vector as a POST JSON body: what the Python client sends for a vector search
        bodies = [json_bytes({"features": [[round(float(v), 4) for v in q]], "k": 10})
                  for q in queries]

        def post(conn: RawClient, i: int) -> None:
            status, _, body = conn.request("POST", "/indexes/s/search", bodies[i % len(bodies)],
                                           {"Content-Type": "application/json"})
            assert status == 200, body[:300]

        print("\none vector as a POST JSON body (the Python client's search):")
        print("\n| code | API processes | clients | requests | QPS | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|---|")
        singles = [(label, server) for label, server in servers if server.api_processes == 1]
        got = interleaved([(server, post) for _, server in singles], 1, args.seconds,
                          args.slice)
        for (label, _), (lat, elapsed) in zip(singles, got, strict=True):
            n, qps, p50, p99 = percentiles(lat, elapsed)
            print(f"| {label} | 1 | 1 | {n} | {qps:,.0f} | {p50:.2f} | {p99:.2f} |", flush=True)
        ref = in_process_reference(redis.url, prefix, vectors, 2000)
        print("\nin-process reference (this process, no HTTP; 2,000 calls): "
              + "; ".join(f"{k} p50 {v[0]:.3f} ms, p99 {v[1]:.3f} ms"
                          for k, v in ref.items() if k != "replica bytes"), flush=True)
        batch = args.batch
        rows = (centers[rng.integers(0, 20, batch)]
                + rng.standard_normal((batch, dim))).astype(np.float32)
        json_body = json_bytes({"features": rows.round(4).tolist(), "k": 10})
        buf = io.BytesIO()
        np.savez(buf, features=rows, k=np.int64(10))
        forms: list[tuple[str, str, ServeOn, Any]] = []
        for label, server in servers:
            if server.api_processes > 1:
                continue
            forms.append((label, "JSON", server, batch_sender(
                json_body, {"Content-Type": "application/json"})))
            if label == "after":
                forms.append((label, "npz", server, batch_sender(buf.getvalue(), {
                    "Content-Type": "application/x-npz", "Accept": "application/x-npz"})))
        print("\n| code | form | queries a request | requests | queries/s | ms a request |")
        print("|---|---|---|---|---|---|")
        got = interleaved([(server, send) for _, _, server, send in forms], 1, args.seconds,
                          max(args.slice, 2.0))
        for (label, form, _, _), (lat, elapsed) in zip(forms, got, strict=True):
            print(f"| {label} | {form} | {batch} | {len(lat)} | "
                  f"{len(lat) * batch / elapsed:,.0f} | {statistics.median(lat) * 1e3:.1f} |",
                  flush=True)
        print("\n| code | API processes | RSS idle MB (each) | RSS loaded MB (each) | "
              "bytes/item per process |")
        print("|---|---|---|---|---|")
        for label, server in servers:
            before, after = idle[id(server)], server.rss()
            per = [(a - b) / items for a, b in zip(after, before, strict=True)]
            print(f"| {label} | {server.api_processes} | "
                  f"{', '.join(f'{b / 1e6:.0f}' for b in before)} | "
                  f"{', '.join(f'{a / 1e6:.0f}' for a in after)} | "
                  f"{', '.join(f'{p:.0f}' for p in per)} |")
        print(f"replica arrays (HammingIndex + labels, capacity included): "
              f"{ref['replica bytes'] / items:.1f} bytes/item")
        print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        for _, server in servers:
            server.close()
        redis.stop()
        tmp.cleanup()


def batch_sender(body: bytes, headers: dict[str, str]) -> Any:
    """A ``send(conn, i)`` posting this batch search."""
    def send(conn: RawClient, i: int) -> None:
        status, _, answer = conn.request("POST", "/indexes/s/search", body, headers)
        assert status == 200, answer[:300]

    return send


def json_bytes(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


def add_search_floor_parser(sub: Any) -> None:
    f = sub.add_parser("search-floor", help="issue 16: fast path, API processes, .npz batches")
    f.add_argument("--items", type=int, default=1_000_000)
    f.add_argument("--dim", type=int, default=64)
    f.add_argument("--bits", type=int, default=64)
    f.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    f.add_argument("--api-processes", type=int, nargs="+", default=[1, 2])
    f.add_argument("--seconds", type=float, default=10, help="seconds of each server per row")
    f.add_argument("--slice", type=float, default=0.5, help="the servers take turns of this")
    f.add_argument("--redis-dir", default=None, help="keep the embedded Redis here (a later "
                   "run reuses the learned items)")
    f.add_argument("--batch", type=int, default=1000, help="queries of a batch request")
    f.add_argument("--before-code", default=None, help="a checkout of the code before (its "
                   "root, e.g. `git archive` of main): served too, on the same Redis")


def disk_write_rate(directory: Path, total: int, block: int = 40 << 20) -> float:
    """Bytes/s of a dd-style sequential write of ``total`` bytes in ``block``-byte writes to
    a new file in ``directory``, fsync'd before the clock stops (``dd conv=fsync``)."""
    data = np.random.default_rng(0).integers(0, 256, block, dtype=np.uint8).tobytes()
    path = directory / "ddtest.bin"
    t = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = 0
        while written < total:
            written += os.write(fd, data[:min(block, total - written)])
        os.fsync(fd)
    finally:
        os.close(fd)
    took = time.perf_counter() - t
    path.unlink()
    return written / took


_PARTS_SNIPPET = """
import io, json, sys, time
import numpy as np
from hashstream.service.chunks import Chunk, parse_npz_chunk, validate_chunk
from hashstream.solver.class_lists import ClassLists
dim = int(sys.argv[1]); n = 40_000_000 // (4 * dim)
rng = np.random.default_rng(0)
buf = io.BytesIO()
np.savez(buf, features=rng.standard_normal((n, dim)).astype(np.float32),
         labels=np.eye(10, dtype=np.uint8)[rng.integers(0, 10, n)])
body = buf.getvalue()
best = {}
for _ in range(5):
    t = time.perf_counter(); parsed = parse_npz_chunk(body); t1 = time.perf_counter()
    validate_chunk(parsed, dim); t2 = time.perf_counter()
    chunk = Chunk(parsed.features, ClassLists.of(parsed.labels.indptr, parsed.labels.values),
                  np.arange(n), "train")
    fields = chunk.to_fields(); t3 = time.perf_counter()
    for k, v in (("parse", t1 - t), ("validate", t2 - t1), ("entry", t3 - t2)):
        best[k] = min(best.get(k, 1e9), v)
print(json.dumps(best))
"""


def code_env(code: str | None) -> dict[str, str]:
    """Environment of a server running ``code``'s hashstream (None: this checkout's): its
    directory on PYTHONPATH, and PYTHONSAFEPATH so that ``-m`` does not put the working
    directory (this checkout) before it."""
    return {"PYTHONPATH": code, "PYTHONSAFEPATH": "1"} if code else {}


def check_code(server: Server, code: str) -> None:
    """Refuse to measure a server that runs other code than asked: only this session's
    ingest documents the Idempotency-Key of a 503 (session 7; 429 before it)."""
    spec = httpx.get(server.url + "/openapi.json").json()
    answers = spec["paths"]["/indexes/{name}/ingest"]["post"]["responses"]
    names_key = "Idempotency-Key" in answers.get("503", {}).get("headers", {})
    assert names_key == (code == "after"), f"the {code} server runs the other code"


def request_parts(dim: int, code: str | None) -> dict[str, float]:
    """Seconds (best of 5) the service's own steps take on one ~40 MB npz body, in a fresh
    interpreter running ``code``'s hashstream (None: this checkout): parse (.npz to arrays),
    validate, and the stream entry's encoding."""
    env = {**os.environ, **code_env(code)}
    out = subprocess.run([sys.executable, "-c", _PARTS_SNIPPET, str(dim)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _sync_files(directory: Path) -> None:
    """fsync every file under ``directory`` (the Redis append-only files)."""
    for path in directory.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _aof_bytes(server: Server) -> int:
    import redis

    info = redis.Redis.from_url(server.redis.url).info("persistence")
    return int(info.get("aof_current_size", 0))


def bench_ingest_disk(dim: int, clients: int, seconds: float, before: str | None) -> None:
    """Bulk npz ingest (~40 MB bodies, no worker, no backlog limit) per code version,
    queue_dtype, Idempotency-Key and appendfsync: items/s, body MB/s, queued MB/s (items/s ×
    queued bytes/item) and the MB/s the append-only file grew, the clock stopped once the
    Redis files are fsync'd, beside a dd-style fsync'd write of as many bytes in the same data
    dir right after (the disk's sequential rate, measured in the same run)."""
    print("in-process, one ~40 MB npz body (ms, best of 5; the XADD is in the table below):")
    for code, path in ([("before", before)] if before else []) + [("after", None)]:
        parts = request_parts(dim, path)
        print(f"  {code}: " + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in parts.items()),
              flush=True)
    n = 40_000_000 // (4 * dim)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    body = npz_body(x, np.eye(10)[rng.integers(0, 10, n)])
    # keyed: every request under its own Idempotency-Key (what the Python client sends);
    # fsync: the embedded Redis's appendfsync (HASHSTREAM_REDIS_FSYNC); keep: freed memory
    # the API and redis-server keep for reuse (HASHSTREAM_KEEP_FREED_MB; 0: glibc's defaults)
    keep = KEEP_FREED_MB
    variants = [("after", None, "float32", False, "everysec", 0),
                ("after", None, "float32", False, "everysec", keep),
                ("after", None, "float32", True, "everysec", 0),
                ("after", None, "float32", True, "everysec", keep),
                ("after", None, "float32", True, "no", keep),
                ("after", None, "float16", False, "everysec", keep)]
    if before:
        variants[:0] = [("before", before, "float32", False, "everysec", 0),
                        ("before", before, "float32", True, "everysec", 0)]
    print("| code | queue_dtype | Idempotency-Key | appendfsync | keep freed MB | d | "
          "items/request | requests | items/s | body MB/s | queued MB/s | AOF MB/s | "
          "disk MB/s (dd, fsync) | queued / disk |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for code, path, dtype, keyed, fsync, keep in variants:
        env = {"HASHSTREAM_MAX_QUEUED_ITEMS": "0", **code_env(path)}
        server = Server(workers=0, extra_env=env, fsync=fsync, keep_freed_mb=keep)
        try:
            check_code(server, code)
            with Client(server.url) as hs:
                hs.create_index("b", dim, bits=32, **({} if code == "before"
                                                      else {"queue_dtype": dtype}))
            sessions = [httpx.Client(timeout=300) for _ in range(clients)]

            def post(c: int, i: int, sessions: list = sessions, url: str = server.url,
                     keyed: bool = keyed) -> None:
                headers = {"content-type": "application/octet-stream"}
                if keyed:
                    headers["Idempotency-Key"] = uuid.uuid4().hex
                r = sessions[c].post(url + "/indexes/b/ingest", content=body, headers=headers)
                assert r.status_code == 202, r.text

            aof0 = _aof_bytes(server)
            t = time.perf_counter()
            lat = hammer(clients, seconds, post)
            # until what was acknowledged is on the disk (the last second under everysec,
            # everything still in the page cache under appendfsync no): as dd's fsync
            _sync_files(Path(server.tmp.name) / "redis")
            elapsed = time.perf_counter() - t
            aof = _aof_bytes(server) - aof0
            for session in sessions:
                session.close()
            disk = disk_write_rate(Path(server.tmp.name) / "redis", max(aof, 400 << 20))
        finally:
            server.close()
        reqs = sum(len(v) for v in lat)
        items = reqs * n / elapsed
        queued = items * dim * np.dtype(dtype).itemsize
        print(f"| {code} | {dtype} | {'yes' if keyed else 'no'} | {fsync} | {keep} | {dim} | "
              f"{n:,} | "
              f"{reqs} | "
              f"{items:,.0f} | "
              f"{reqs * len(body) / elapsed / 1e6:,.0f} | {queued / 1e6:,.0f} | "
              f"{aof / elapsed / 1e6:,.0f} | {disk / 1e6:,.0f} | {queued / disk:.2f} |",
              flush=True)


def _post_until(session: httpx.Client, url: str, body: bytes, stop: float,
                counts: dict[str, int], lock: threading.Lock) -> None:
    """Post ``body`` until ``stop``; a 429 waits its Retry-After (counted), a 202 counts."""
    while time.time() < stop:
        r = session.post(url, content=body, headers={"content-type": "application/octet-stream"})
        with lock:
            counts[str(r.status_code)] = counts.get(str(r.status_code), 0) + 1
        if r.status_code == 429:
            time.sleep(min(float(r.headers.get("Retry-After", "1")), max(0.0, stop - time.time())))
        else:
            assert r.status_code == 202, r.text


def solver_rate(dim: int, bits: int, n: int, rounds: int = 4, seed: int = 0) -> float:
    """Items/s of the index's method called in-process on rounds of ``n`` items (the first
    round, which fits the feature map, is left out): the floor a service round is held to."""
    from hashstream.service.methods import IndexMethods
    from hashstream.service.registry import IndexConfig
    from hashstream.solver.class_lists import ClassLists
    from hashstream.solver.sdoh_hc.settings import SDOHSettings

    config = IndexConfig("solver", dim, SDOHSettings(bits=bits))
    method = IndexMethods().method(config)
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((10, dim)).astype(np.float32) * 2
    state, took = None, []
    for i in range(rounds + 1):
        y = rng.integers(0, 10, n)
        x = (centers[y] + rng.standard_normal((n, dim), dtype=np.float32))
        t = time.perf_counter()
        result = method.learn(state, x, ClassLists.from_dense(np.eye(10, dtype=np.uint8)[y]))
        if i:
            took.append(time.perf_counter() - t)
        state = result.state
    return n / statistics.median(took)


def _learn_run(code: str, dim: int, bits: int, chunk: int, clients: int, seconds: float,
               env: dict[str, str], bodies: list[bytes], query_body: bytes | None
               ) -> tuple[dict[str, int], float, float, list[dict]]:
    """One served index under sustained ingest: (answers by status, seconds posting, the
    wall-clock time the posting stopped, round records once the queue is empty)."""
    server = Server(workers=1, extra_env=env)
    try:
        check_code(server, code)
        with Client(server.url, timeout=600) as hs:
            hs.create_index("l", dim, bits=bits)
            if query_body is not None:
                r = hs.http.post("/indexes/l/ingest", content=query_body,
                                 params={"role": "query"},
                                 headers={"content-type": "application/octet-stream"})
                assert r.status_code == 202, r.text
            counts: dict[str, int] = {}
            lock = threading.Lock()
            sessions = [httpx.Client(timeout=600) for _ in range(clients)]
            t0 = time.time()
            threads = [threading.Thread(target=_post_until, args=(
                sessions[c], server.url + "/indexes/l/ingest", bodies[c % len(bodies)],
                t0 + seconds, counts, lock)) for c in range(clients)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            ingest_end = time.time()
            hs.wait_idle("l", timeout=3600, poll=0.5)
            for session in sessions:
                session.close()
            return counts, ingest_end - t0, ingest_end, hs.rounds("l")
    finally:
        server.close()


def bench_learn(dim: int, bits: int, chunk: int, clients: int, seconds: float,
                env: dict[str, str], queries: int, before: str | None) -> None:
    """Sustained ingest into a served index with one worker, per code version: items
    acknowledged per second, items learned per second (first round start to last commit),
    where a round's time goes, beside the solver's own rate at the mean round size (the same
    method called in-process on rounds of that size, measured first, in the same run)."""
    rng = np.random.default_rng(2)
    centers = rng.standard_normal((10, dim)).astype(np.float32) * 2
    bodies = []
    for _ in range(4):
        y = rng.integers(0, 10, chunk)
        bodies.append(npz_body(centers[y] + rng.standard_normal((chunk, dim)), np.eye(10)[y]))
    query_body = None
    if queries:
        y = rng.integers(0, 10, queries)
        query_body = npz_body(centers[y] + rng.standard_normal((queries, dim)), np.eye(10)[y])
    round_items = int(env.get("HASHSTREAM_MAX_ROUND_ITEMS", 20_000)) // chunk * chunk or chunk
    floor = solver_rate(dim, bits, round_items)
    print(f"solver in-process, rounds of {round_items:,} items (d={dim}, {bits} bits): "
          f"{floor:,.0f} items/s")
    print("| code | acknowledged items/s | answers | learned items | rounds | mean round | "
          "rounds scored | learned items/s (wall) | service round items/s | ratio to solver "
          "(wall) | ratio (round) | solver inside the same rounds items/s | round / solver "
          "inside |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    variants = [("after", None)] + ([("before", before)] if before else [])
    for code, path in variants:
        run_env = {**({"HASHSTREAM_EVAL_QUERIES": "0"} if not queries else {}), **env,
                   **code_env(path)}
        counts, ingest_s, ingest_end, records = _learn_run(code, dim, bits, chunk, clients,
                                                           seconds, run_env, bodies,
                                                           query_body)
        # each round's (start, end): its record's time stamp is the end of its learning
        spans = [(r["ts"] - r["seconds"]["total"], r["ts"] + r["seconds"].get("commit", 0.0))
                 for r in records]
        first, last = min(a for a, _ in spans), max(b for _, b in spans)
        learned = sum(r["n_items"] for r in records)
        steps: dict[str, float] = {}
        for r in records[1:]:  # round 1 fits the feature map
            for k, v in r["seconds"].items():
                steps[k] = steps.get(k, 0.0) + v / (len(records) - 1)
        service = sum(r["n_items"] for r in records[1:]) / sum(b - a for a, b in spans[1:])
        wall = learned / (last - first)
        scored = sum(1 for r in records if r.get("map") is not None)
        # the method's own steps in the same rounds: the solver's rate under the same load
        inside = sum(r["n_items"] for r in records[1:]) / sum(
            sum(v for k, v in r["seconds"].items() if k not in WORKER_PARTS)
            for r in records[1:])
        print(f"| {code} | {counts.get('202', 0) * chunk / ingest_s:,.0f} | {counts} | "
              f"{learned:,} | {len(records)} | {learned / len(records):,.0f} | {scored} | "
              f"{wall:,.0f} | {service:,.0f} | {wall / floor:.2f} | {service / floor:.2f} | "
              f"{inside:,.0f} | {service / inside:.2f} |", flush=True)
        print(f"  {code}: mean seconds per round (rounds 2…): " + ", ".join(
            f"{k} {v:.3f}" for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:12]),
            flush=True)
        # the wall clock beyond the rounds: round 1 (it fits the feature map) and the time
        # between one round's commit and the next round's start
        order = sorted(spans)
        gaps = [b[0] - a[1] for a, b in zip(order, order[1:], strict=False)]
        print(f"  {code}: wall {last - first:.1f} s = round 1 {order[0][1] - order[0][0]:.2f} s + "
              f"rounds 2… {sum(b - a for a, b in order[1:]):.1f} s + between rounds "
              f"{sum(gaps):.2f} s (mean {np.mean(gaps) if gaps else 0:.3f}, max "
              f"{max(gaps, default=0):.3f})", flush=True)
        # rounds that ran with the machine to themselves (the posting over): the service's
        # own rate without the ingest's CPU beside it, against the in-process solver
        alone = [(r["n_items"], b - a) for r, (a, b) in zip(records[1:], spans[1:], strict=True)
                 if a >= ingest_end]
        if alone:
            rate = sum(n for n, _ in alone) / sum(t for _, t in alone)
            print(f"  {code}: the {len(alone)} rounds after the posting stopped: "
                  f"{rate:,.0f} items/s = {rate / floor:.2f} of the solver in-process",
                  flush=True)


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
    add_search_floor_parser(sub)
    lp = sub.add_parser("learn")
    lp.add_argument("--dim", type=int, default=784)
    lp.add_argument("--bits", type=int, default=64)
    lp.add_argument("--chunk", type=int, default=10_000)
    lp.add_argument("--clients", type=int, default=4)
    lp.add_argument("--seconds", type=float, default=12)
    lp.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE",
                    help="server settings, e.g. HASHSTREAM_MAX_QUEUED_ITEMS=100000")
    lp.add_argument("--queries", type=int, default=0,
                    help="a held-out query chunk of this many items first (rounds score it)")
    lp.add_argument("--before-code", default=None, metavar="DIR")
    di = sub.add_parser("ingest-disk")
    di.add_argument("--dim", type=int, default=784)
    di.add_argument("--clients", type=int, default=2)
    di.add_argument("--seconds", type=float, default=8)
    di.add_argument("--before-code", default=None, metavar="DIR",
                    help="a checkout's directory holding hashstream/ of the code before (run "
                    "as its server, same machine, same run)")
    args = ap.parse_args()
    if args.what == "ingest-disk":
        bench_ingest_disk(args.dim, args.clients, args.seconds, args.before_code)
    elif args.what == "learn":
        bench_learn(args.dim, args.bits, args.chunk, args.clients, args.seconds,
                    dict(kv.split("=", 1) for kv in args.env), args.queries, args.before_code)
    elif args.what == "ingest":
        bench_ingest(args.dims, args.clients, args.seconds)
    elif args.what == "search-floor":
        bench_search_floor(args)
    else:
        bench_search(args.items, args.dim, args.clients, args.seconds, args.bits, args.scan)


if __name__ == "__main__":
    main()
