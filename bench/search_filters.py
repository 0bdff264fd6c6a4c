"""Search options in-process: latency of one query (k = 10) without a filter, with a label
filter of several selectivities, with a Hamming radius, and after item deletes (the first
search after a delete batch, which applies it to the replica, and the next ones). A filter's
first search computes the positions it admits; the view keeps them for the next ones.

Seeds an LSH index (64 bits) in a private embedded Redis: one real tiny round, then synthetic
segments committed through ``IndexStore.commit_round`` up to ``--items``, each item with one to
three of ``--classes`` classes. Searches run through ``SearchService`` in this process (no
HTTP). Prints figures; asserts nothing about time.

    python bench/search_filters.py                    # 1M items
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis
from lsh_index import lsh_index_with_one_round

from hashstream.cli.embedded_redis import EmbeddedRedis
from hashstream.service.items import ItemService
from hashstream.service.replicas import SearchService
from hashstream.service.search_options import SearchOptions
from hashstream.store.index_store import IndexStore, RoundCommit

NAME, DIM, BITS = "bench", 32, 64


def segment(rng: np.random.Generator, first: int, n: int, classes: int
            ) -> dict[str, np.ndarray[Any, Any]]:
    counts = rng.integers(1, 4, n)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    # distinct classes per item: a random start and consecutive classes
    starts = np.repeat(rng.integers(0, classes, n), counts)
    within = np.arange(int(indptr[-1])) - np.repeat(indptr[:-1], counts)
    return {"codes": rng.integers(0, 256, (n, BITS // 8), dtype=np.uint8),
            "ids": np.arange(first, first + n, dtype=np.int64), "label_indptr": indptr,
            "label_indices": ((starts + within) % classes).astype(np.int32)}


def timed(fn: Any, repeats: int) -> tuple[float, float, float]:
    """Milliseconds of ``fn()``: the first call, then the median and p95 of ``repeats`` more."""
    t = time.perf_counter()
    fn()
    first = (time.perf_counter() - t) * 1000
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return first, statistics.median(out), out[int(0.95 * (len(out) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp)).start()
        try:
            run(redis.Redis.from_url(server.url), args)
        finally:
            server.stop()


def run(client: redis.Redis, args: argparse.Namespace) -> None:
    store = IndexStore(client, "bench")
    next_id = lsh_index_with_one_round(store, NAME, DIM, BITS, seed=args.seed)
    # the map of classes 0..classes-1: register them as the first round's int labels did
    store.map_classes(NAME, [str(c) for c in range(args.classes)], "int", args.classes + 10)
    rng = np.random.default_rng(args.seed)
    while next_id < args.items:
        n = min(250_000, args.items - next_id)
        version = store.version(NAME)
        assert store.commit_round(NAME, version, RoundCommit(
            segment=segment(rng, next_id, n, args.classes)))
        next_id += n
    search = SearchService(store)
    rep = search.replica(NAME)
    print(f"{next_id:,} items, {args.classes} classes (1–3 per item), {BITS}-bit codes, "
          f"version {rep.version}, k = 10, one query, {args.repeats} repeats, seed {args.seed}")
    query = rng.standard_normal((1, DIM)).astype(np.float32)

    def row(label: str, options: SearchOptions | None) -> None:
        admitted = ""
        if options is not None and options.filtered:
            flt = options.class_filter(rep.label_kind, rep.class_numbers)
            assert flt is not None  # the share, on a copy: the search's view starts cold
            share = np.mean(rep.parts[0].labels._admits(flt.any_of, flt.all_of,
                                                        len(rep.class_labels)))
            admitted = f"{share:6.1%}"
        first, med, p95 = timed(lambda: search.search_vectors(NAME, query, 10, DIM,
                                                              options=options), args.repeats)
        print(f"| {label:<34} | {admitted:>8} | {first:7.2f} | {med:7.2f} | {p95:7.2f} |")

    print("| search | admitted | first ms | then median ms | p95 ms |\n|---|---|---|---|---|")
    row("no filter", None)
    row("labels_any = 1 class", SearchOptions(labels_any=(7,)))
    row("labels_any = 10 classes", SearchOptions(labels_any=tuple(range(10))))
    row("labels_any = 50 classes", SearchOptions(labels_any=tuple(range(50))))
    row("labels_all = 2 classes", SearchOptions(labels_all=(7, 8)))
    row("max_distance = 20", SearchOptions(max_distance=20))
    items = ItemService(search)
    t = time.perf_counter()
    doomed = rng.choice(next_id, 10_000, replace=False).tolist()
    deleted = items.delete(NAME, doomed)["deleted"]
    print(f"delete of {len(deleted):,} ids (one request): "
          f"{(time.perf_counter() - t) * 1000:.1f} ms")
    other = SearchService(store)  # another API process, loaded before the delete... now
    other.replica(NAME)
    t = time.perf_counter()
    items.delete(NAME, rng.choice(next_id, 1000, replace=False).tolist())
    took = time.perf_counter() - t
    t = time.perf_counter()
    other.search_vectors(NAME, query, 10, DIM)
    print(f"delete of 1,000 ids: {took * 1000:.1f} ms; the next search on another replica "
          f"(applies it first): {(time.perf_counter() - t) * 1000:.1f} ms")
    row("no filter, after 11,000 deletes", None)


if __name__ == "__main__":
    main()
