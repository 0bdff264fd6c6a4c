"""Peak memory of the API and the round worker for one 20,000-item chunk, by class count.

Before issue 11 labels travelled as dense n × (max id + 1) matrices and the solver built c × c
arrays, so one chunk with class id 20,000 grew the worker to 9.7 GB and killed it. This runs a
real `hashstream serve` (one worker, embedded Redis) per case, posts one .npz chunk with single
labels over C classes (class ids spread up to 10^12), waits for its round and reads each
process's peak resident memory (VmHWM) from /proc.

Run:  python bench/label_memory.py [--items 20000] [--dim 128] [--classes 10 5000]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from http_service import Server  # noqa: E402


def peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_case(items: int, dim: int, classes: int, bits: int, seed: int = 0) -> dict[str, float]:
    server = Server(workers=1, extra_env={"HASHSTREAM_MAX_CHUNK_ITEMS": str(items)})
    try:
        http = httpx.Client(base_url=server.url, timeout=600)
        r = http.post("/indexes", json={"name": "mem", "dim": dim, "bits": bits,
                                        "max_classes": max(classes, 10)})
        assert r.status_code == 201, r.text
        rng = np.random.default_rng(seed)
        # class ids far apart (the worst case before: the id, not the count, sized the arrays)
        ids = np.sort(rng.choice(10**12, size=classes, replace=False))
        cls = ids[rng.integers(0, classes, items)]
        x = rng.standard_normal((items, dim)).astype(np.float32)
        buf = io.BytesIO()
        np.savez(buf, features=x, label_indptr=np.arange(items + 1), label_classes=cls)
        api_pid = server.proc.pid
        worker = next(p for p in psutil.Process(api_pid).children(recursive=True)
                      if "worker" in " ".join(p.cmdline()))
        t = time.perf_counter()
        r = http.post("/indexes/mem/ingest", content=buf.getvalue(),
                      headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        while True:
            info = http.get("/indexes/mem").json()
            if info["model_version"] >= 1 or info["dead_letters"]:
                break
            if time.perf_counter() - t > 600:
                raise RuntimeError("round did not commit in 10 minutes")
            time.sleep(0.2)
        seconds = time.perf_counter() - t
        assert info["model_version"] == 1, info
        return {"classes": classes, "n_classes_learned": info["n_classes"],
                "api_peak_mib": peak_mib(api_pid), "worker_peak_mib": peak_mib(worker.pid),
                "seconds_to_commit": seconds, "body_mib": len(buf.getvalue()) / 2**20}
    finally:
        server.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--classes", type=int, nargs="+", default=[10, 5000])
    args = p.parse_args()
    print(f"{args.items} items, d={args.dim}, {args.bits} bits, one .npz chunk, single labels")
    print(f"{'classes':>8} {'learned':>8} {'body MiB':>9} {'API peak MiB':>13} "
          f"{'worker peak MiB':>16} {'s to commit':>12}")
    rows = []
    for c in args.classes:
        row = run_case(args.items, args.dim, c, args.bits)
        rows.append(row)
        print(f"{c:>8} {row['n_classes_learned']:>8} {row['body_mib']:>9.1f} "
              f"{row['api_peak_mib']:>13.0f} {row['worker_peak_mib']:>16.0f} "
              f"{row['seconds_to_commit']:>12.1f}", flush=True)
    ref = rows[0]
    for row in rows[1:]:
        print(f"{row['classes']} vs {ref['classes']} classes: API ×"
              f"{row['api_peak_mib'] / ref['api_peak_mib']:.2f}, worker ×"
              f"{row['worker_peak_mib'] / ref['worker_peak_mib']:.2f}")


if __name__ == "__main__":
    main()
