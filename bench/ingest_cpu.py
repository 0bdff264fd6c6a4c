"""Where an npz ingest's CPU goes: one client posting ~40 MB bodies to `hashstream serve
--workers 0` on an embedded Redis, the CPU seconds of the client, the API process and
redis-server per request (psutil), with the append-only file's automatic rewrite on (Redis's
default, as the service runs it) and off, and optionally `perf record` of one of the
processes (its hottest symbols printed); then redis-server's CPU for a bare 40 MB XADD and
for the same from a script (what Redis alone costs a byte).

Issue 16 asks for ingest at ≥ 0.8 × the disk's sequential write rate; this shows how much CPU
each byte costs on its way client → API → Redis → append-only file, which on a small machine
bounds the rate before the disk does.

Run:  OPENBLAS_NUM_THREADS=1 python bench/ingest_cpu.py [--requests 8] [--repeats 2]
      [--perf api|redis] [--keep-freed-mb 0 256] [--rewrite on|off|both]

``--keep-freed-mb`` runs the API and redis-server with each value of HASHSTREAM_KEEP_FREED_MB
in turn (0: glibc malloc's defaults; see hashstream/cli/freed_memory.py).
"""

from __future__ import annotations

import argparse
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import psutil
import redis
from http_service import Server, npz_body

from hashstream.client import Client
from hashstream.service.settings import KEEP_FREED_MB


def cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def run(rewrite: bool, requests: int, repeats: int, perf: str | None, keep: int) -> None:
    server = Server(workers=0, extra_env={"HASHSTREAM_MAX_QUEUED_ITEMS": "0"},
                    keep_freed_mb=keep)
    try:
        dim = 784
        n = 40_000_000 // (4 * dim)
        rng = np.random.default_rng(0)
        body = npz_body(rng.standard_normal((n, dim)).astype(np.float32),
                        np.eye(10)[rng.integers(0, 10, n)])
        with Client(server.url) as hs:
            hs.create_index("b", dim, bits=32)
        if not rewrite:
            redis.Redis.from_url(server.redis.url).config_set("auto-aof-rewrite-percentage", 0)
        assert server.redis.process is not None
        procs = {"client": psutil.Process(), "api": psutil.Process(server.proc.pid),
                 "redis": psutil.Process(server.redis.process.pid)}
        recorder = None
        if perf:
            out = Path(server.tmp.name) / "perf.data"
            recorder = subprocess.Popen(["perf", "record", "-o", str(out), "-p",
                                         str(procs[perf].pid)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            time.sleep(1)
        session = httpx.Client(timeout=300)
        for _ in range(repeats):
            before = {k: cpu(p) for k, p in procs.items()}
            t = time.perf_counter()
            for _ in range(requests):
                r = session.post(server.url + "/indexes/b/ingest", content=body, headers={
                    "content-type": "application/octet-stream",
                    "Idempotency-Key": uuid.uuid4().hex})
                assert r.status_code == 202, r.text
            took = time.perf_counter() - t
            used = {k: (cpu(p) - before[k]) / requests * 1e3 for k, p in procs.items()}
            print(f"| {keep} | {'on' if rewrite else 'off'} | {len(body) / 1e6:.1f} | "
                  f"{took / requests * 1e3:.0f} | {requests * len(body) / took / 1e6:.0f} | "
                  + " | ".join(f"{used[k]:.0f}" for k in ("client", "api", "redis")) + " |",
                  flush=True)
        rewrites = (server.redis.data_dir / "redis.log").read_text().count("rewriting started")
        print(f"(AOF rewrites started in this run: {rewrites})")
        if recorder is not None:
            recorder.send_signal(2)
            recorder.wait()
            report = subprocess.run(["perf", "report", "-i", str(out), "--no-children",
                                     "--sort", "dso,symbol", "-g", "none", "--stdio"],
                                    capture_output=True, text=True).stdout
            lines = [ln for ln in report.splitlines() if ln.strip() and not ln.startswith("#")]
            print(f"perf, {perf} process, hottest symbols:\n" + "\n".join(lines[:15]))
    finally:
        server.close()


def bare_xadd(keep: int, calls: int = 6) -> None:
    """redis-server's CPU for a bare 40 MB XADD and for the same XADD from a script (as the
    keyed enqueue runs it), on an embedded Redis with the append-only file, no rewrite: what
    Redis alone costs a byte, whatever the API does."""
    from tempfile import TemporaryDirectory

    from hashstream.cli.embedded_redis import EmbeddedRedis

    with TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis", keep_freed_mb=keep).start()
        try:
            client = redis.Redis.from_url(server.url)
            client.config_set("auto-aof-rewrite-percentage", 0)
            assert server.process is not None
            proc = psutil.Process(server.process.pid)
            payload = np.random.default_rng(0).bytes(40_000_000)
            script = client.register_script(
                "return redis.call('XADD', KEYS[1], '*', 'f', ARGV[1])")
            ways = {"XADD": lambda: client.xadd("s1", {"f": payload}),
                    "XADD from a script": lambda: script(keys=["s2"], args=[payload])}
            for way, call in ways.items():
                before, t = cpu(proc), time.perf_counter()
                for _ in range(calls):
                    call()
                wall = (time.perf_counter() - t) / calls
                print(f"| {keep} | {way} | 40.0 | {wall * 1e3:.0f} | "
                      f"{(cpu(proc) - before) / calls * 1e3:.0f} |", flush=True)
        finally:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--perf", choices=("api", "redis"), default=None)
    ap.add_argument("--keep-freed-mb", type=int, nargs="+", default=[0, KEEP_FREED_MB],
                    help="HASHSTREAM_KEEP_FREED_MB of the API and redis-server, each in turn")
    ap.add_argument("--rewrite", choices=("on", "off", "both"), default="both")
    args = ap.parse_args()
    print("| keep freed MB | AOF auto-rewrite | body MB | ms/request | MB/s | CPU ms/request: "
          "client | API | redis-server |")
    print("|---|---|---|---|---|---|---|---|")
    rewrites = {"on": (True,), "off": (False,), "both": (True, False)}[args.rewrite]
    for rewrite in rewrites:
        for keep in args.keep_freed_mb:
            run(rewrite, args.requests, args.repeats, args.perf if not rewrite else None, keep)
    print("\n| keep freed MB | Redis alone | MB | wall ms/call | redis-server CPU ms/call |")
    print("|---|---|---|---|---|")
    for _ in range(args.repeats):
        for keep in args.keep_freed_mb:
            bare_xadd(keep)


if __name__ == "__main__":
    main()
