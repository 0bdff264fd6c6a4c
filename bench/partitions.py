"""A partitioned index on a local 3-master Redis Cluster against the same index unpartitioned:
identical search results, and what the scatter-gather costs.

Seeds two LSH indexes (64 bits) with the same synthetic segments (same codes, same increasing
ids, as the service assigns them) through ``IndexStore.commit_round``: ``flat`` (one hash slot)
and ``split`` (``--partitions`` slots, each partition's parts on its own hash tag, so on
different masters). Then an in-process ``SearchService`` over ``redis+cluster://`` loads both
(first load timed), checks that ``--queries`` random queries get identical answers (ids,
distances, labels, order) at k = 10 and 100, and measures single-query latency of each.

    python bench/partitions.py --items 10000000 --partitions 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from lsh_index import lsh_index_with_one_round  # noqa: E402
from support.redis_cluster import start_redis_cluster  # noqa: E402

from hashstream.service import replicas  # noqa: E402
from hashstream.service.replicas import SearchService  # noqa: E402
from hashstream.store.connection import connect  # noqa: E402
from hashstream.store.index_store import IndexStore, RoundCommit  # noqa: E402

DIM, BITS = 32, 64


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def spread_name(store: IndexStore, partitions: int, masters: int) -> str:
    """A name whose partitions' hash tags land on as many masters as they can."""
    for i in range(10_000):
        name = f"split{i}"
        owners = {store.r.get_node_from_key(store.keys(name).partition_segment(q, 1, 0)).port
                  for q in range(partitions)}
        if len(owners) == min(partitions, masters):
            return name
    return "split"


def seed(store: IndexStore, split: str, items: int, per_segment: int, partitions: int) -> None:
    """Both indexes get the same first real round (an encoder and a class map), then the same
    synthetic segments."""
    for name, parts in (("flat", 1), (split, partitions)):
        next_id = lsh_index_with_one_round(store, name, DIM, BITS, seed=3, partitions=parts)
    rng = np.random.default_rng(7)
    while next_id < items:
        n = min(per_segment, items - next_id)
        seg = {"codes": rng.integers(0, 256, (n, BITS // 8), dtype=np.uint8),
               "ids": np.arange(next_id, next_id + n, dtype=np.int64),
               "label_indptr": np.arange(n + 1, dtype=np.int64),
               "label_indices": rng.integers(0, 3, n).astype(np.int64)}
        for name, parts in (("flat", 1), (split, partitions)):
            version = store.version(name)
            assert store.commit_round(name, version, RoundCommit(segment=seg), partitions=parts)
        next_id += n
        log(f"seeded {next_id:,} / {items:,} items into both indexes")


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--per-segment", type=int, default=200_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--latency-queries", type=int, default=500)
    args = p.parse_args()
    scatter_max = replicas._SCATTER_MAX
    with tempfile.TemporaryDirectory() as tmp:
        nodes = start_redis_cluster(Path(tmp))
        try:
            client = connect(nodes.cluster_url)
            store = IndexStore(client, "bp")
            split = spread_name(store, args.partitions, len(nodes.ports))
            t = time.perf_counter()
            seed(store, split, args.items, args.per_segment, args.partitions)
            log(f"seeded in {time.perf_counter() - t:.1f}s")
            owners = {store.r.get_node_from_key(
                store.keys(split).partition_segment(q, 2, 0)).port
                for q in range(args.partitions)}
            search = SearchService(store)
            loads = {}
            for name in ("flat", split):
                t = time.perf_counter()
                search.replica(name)
                loads[name] = time.perf_counter() - t
                log(f"{name}: first load {loads[name]:.1f}s")
            rng = np.random.default_rng(11)
            queries = rng.standard_normal((args.queries, DIM)).astype(np.float32)
            same = {}
            for k in (10, 100):
                a = search.search_vectors("flat", queries, k, DIM).rows()
                b = search.search_vectors(split, queries, k, DIM).rows()
                same[k] = a == b
            seq = f"{split} (partitions in turn)"
            lat: dict[str, list[float]] = {"flat": [], split: [], seq: []}
            for i in range(args.latency_queries):
                q = rng.standard_normal((1, DIM)).astype(np.float32)
                order = [("flat", "flat"), (split, split), (seq, split)]
                for label, name in order[i % 3:] + order[:i % 3]:
                    # the scatter runs partitions at once up to _SCATTER_MAX; 0 = in turn
                    replicas._SCATTER_MAX = 0 if label == seq else scatter_max
                    t = time.perf_counter()
                    search.search_vectors(name, q, 10, DIM)
                    lat[label].append(time.perf_counter() - t)
            replicas._SCATTER_MAX = scatter_max
            print(f"{args.items:,} items, {BITS} bits; `{split}` has {args.partitions} partitions "
                  f"on {len(owners)} masters; in-process SearchService over redis+cluster://")
            print(f"identical results on {args.queries} queries: k=10 {same[10]}, "
                  f"k=100 {same[100]}")
            print("| index | first load (s) | p50 (ms) | p99 (ms) | mean (ms) |")
            print("|---|---|---|---|---|")
            for name in lat:
                v = lat[name]
                load = loads.get(name, loads[split])
                print(f"| {name} | {load:.1f} | {1e3 * statistics.median(v):.2f} | "
                      f"{1e3 * pct(v, 0.99):.2f} | {1e3 * statistics.fmean(v):.2f} |")
            client.close()
        finally:
            nodes.stop()


if __name__ == "__main__":
    main()
