"""The offline protocol of the online-hashing literature, as `hashstream eval` runs it.

Held-out queries are drawn (seeded) from ``test_idx`` when the file has one, else from all
items, and never enter the stream. The stream is every other item (everything outside
``test_idx`` when it exists), in random or class-incremental order, cut into chunks. After
each round the queries, encoded by the current model, are ranked against the database so far.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hashstream.solver.backend import BackendName, get_backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.linear_baseline import sign_codes
from hashstream.solver.lsh import RandomProjection
from hashstream.solver.metrics import evaluate
from hashstream.solver.sdoh_hc.round import encode, learn_chunk, project
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState

Order = Literal["random", "class-incremental"]
Split = Literal["test", "validation"]
Method = Literal["sdoh-hc", "lsh"]
# "both": the learned codes rank as ``map``; the re-encoded database's score is added as
# ``map_reencoded`` (one stream learned once, both figures)
DatabaseCodes = Literal["learned", "reencoded", "both"]


class DatasetError(ValueError):
    """The data file cannot be evaluated; the message names the array at fault."""


@dataclass(frozen=True)
class Dataset:
    """An offline data set; labels are class lists (the file's n × c matrix, converted once
    at load, is not kept)."""

    features: np.ndarray[Any, Any]
    labels: ClassLists
    test_idx: np.ndarray[Any, Any] | None


def load_dataset(path: str | Path) -> Dataset:
    """Read ``features`` (n × d float), ``labels`` (n × c 0/1) and optional ``test_idx``;
    the labels become :class:`ClassLists` here, once."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k in ("features", "labels", "test_idx")}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path} as .npz: {exc}") from exc
    for key in ("features", "labels"):
        if key not in arrays:
            raise DatasetError(f"{path} has no array named {key!r}")
    x, y = arrays["features"], arrays["labels"]
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise DatasetError(f"features {x.shape} and labels {y.shape} must be n × d and n × c")
    if not np.isfinite(x).all():
        raise DatasetError("features contains NaN or Inf")
    if not np.isin(y, (0, 1)).all():
        raise DatasetError("labels must be 0/1")
    test = arrays.get("test_idx")
    if test is not None and (test.ndim != 1 or (test.size and (test.min() < 0
                                                                or test.max() >= x.shape[0]))):
        raise DatasetError("test_idx must be a 1-D array of row indices")
    return Dataset(x.astype(np.float32, copy=False), ClassLists.from_dense(y), test)


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run; ``settings`` carries every SDOH-HC setting and ablation."""

    settings: SDOHSettings = field(default_factory=SDOHSettings)
    chunk: int = 2000
    queries: int = 1000
    order: Order = "random"
    split: Split = "test"
    method: Method = "sdoh-hc"
    database: DatabaseCodes = "learned"
    map_at: tuple[int, ...] = ()
    max_items: int | None = None
    eval_every: int = 1
    backend: BackendName = "auto"

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("chunk", "queries", "order", "split", "method",
                                             "database",
                                             "max_items", "eval_every", "backend")}
        out["map_at"] = list(self.map_at)
        out.update(self.settings.as_dict())
        return out


def split_stream(data: Dataset, config: EvalConfig) -> tuple[np.ndarray[Any, Any],
                                                              np.ndarray[Any, Any]]:
    """(query indices, stream indices in arrival order), both seeded.

    ``split='validation'`` carves the queries out of the training stream instead (seeded
    apart from the test draw): the evaluation queries, and every item the test draw could
    pick, stay out of both, so settings chosen on it never saw them."""
    rng = np.random.default_rng([config.settings.seed, 31337])
    n = data.features.shape[0]
    pool = data.test_idx if data.test_idx is not None else np.arange(n)
    excluded = np.zeros(n, dtype=bool)
    if config.split == "validation":
        test_queries = (data.test_idx if data.test_idx is not None
                        else rng.choice(pool, size=min(config.queries, len(pool)),
                                        replace=False))
        excluded[test_queries] = True
        pool = np.flatnonzero(~excluded)
        rng = np.random.default_rng([config.settings.seed, 27182])
    elif config.split != "test":
        raise DatasetError(f"split must be 'test' or 'validation', not {config.split!r}")
    if config.queries > len(pool):
        raise DatasetError(f"--queries {config.queries} exceeds the {len(pool)} candidates")
    queries = np.sort(rng.choice(pool, size=config.queries, replace=False))
    excluded[queries] = True
    if data.test_idx is not None:
        excluded[data.test_idx] = True
    stream = rng.permutation(np.flatnonzero(~excluded))
    if config.order == "class-incremental":
        first = data.labels.take(stream).first_class(missing=data.labels.n_classes)
        stream = stream[np.argsort(first, kind="stable")]
    elif config.order != "random":
        raise DatasetError(f"order must be 'random' or 'class-incremental', not {config.order!r}")
    if config.max_items is not None:
        stream = stream[: config.max_items]
    return queries, stream


def chunks(stream: np.ndarray[Any, Any], size: int,
           min_last: int = 1) -> Iterator[np.ndarray[Any, Any]]:
    """Cut the stream into chunks of ``size``; a last piece shorter than ``min_last`` joins the
    chunk before it (a round needs more rows than bits)."""
    starts = list(range(0, len(stream), size))
    if len(starts) > 1 and len(stream) - starts[-1] < min_last:
        starts.pop()
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else len(stream)
        yield stream[start:stop]


def run_eval(data: Dataset, config: EvalConfig,
             on_round: Callable[[dict[str, Any], int], None] | None = None) -> dict[str, Any]:
    """Stream the data through the method; score the queries after every round.

    ``on_round(record, total_rounds)`` is called after each round (for progress output).
    """
    if config.chunk < 1:
        raise DatasetError("--chunk must be positive")
    settings = config.settings
    backend = get_backend(config.backend)
    queries, stream = split_stream(data, config)
    q_feat, q_lab = data.features[queries], data.labels.take(queries)
    min_rows = settings.bits + 1 if config.method == "sdoh-hc" else 1
    total = len(list(chunks(stream, config.chunk, min_rows)))
    db_codes: list[np.ndarray[Any, Any]] = []
    db_idx: list[np.ndarray[Any, Any]] = []
    state: SDOHState | None = None
    lsh: RandomProjection | None = None
    rounds: list[dict[str, Any]] = []
    c = data.labels.n_classes
    first_classes = np.zeros(c, dtype=bool)
    seen = np.zeros(c, dtype=bool)  # classes in the database so far
    for i, idx in enumerate(chunks(stream, config.chunk, min_rows), start=1):
        x, y = data.features[idx], data.labels.take(idx)
        if i == 1:
            first_classes[y.classes] = True
        seen[y.classes] = True
        started = time.perf_counter()
        record: dict[str, Any] = {"round": i}
        if config.method == "lsh":
            lsh = lsh or RandomProjection.fit(x, settings.bits, settings.seed)
            codes = lsh.encode(x)
            record["loss"] = {}
        else:
            result = learn_chunk(state, x, y, settings, backend)
            state, codes = result.state, result.codes
            record["loss"] = {k: float(v) for k, v in result.loss.items()}
            record["step_seconds"] = {k: round(v, 6) for k, v in result.seconds.items()}
        record["seconds"] = time.perf_counter() - started
        db_codes.append(codes)
        db_idx.append(idx)
        record["n_database"] = int(sum(len(j) for j in db_idx))
        record["n_classes"] = int(seen.sum())
        if i % config.eval_every == 0 or i == total:
            if config.method == "lsh":
                assert lsh is not None
                qz = lsh.project(q_feat)
                all_codes = np.concatenate(db_codes)
            else:
                assert state is not None
                qz = project(state, q_feat, backend)
                if config.database == "reencoded":
                    all_codes = encode(state, data.features[np.concatenate(db_idx)], backend)
                else:
                    all_codes = np.concatenate(db_codes)
            qc = sign_codes(qz)  # the codes the encoders pack: sgn(0) = +1
            db_lab = data.labels.take(np.concatenate(db_idx))
            scores = evaluate(qc, q_lab, all_codes, db_lab, ks=config.map_at,
                              query_projection=qz)
            if config.database == "both" and config.method != "lsh":
                assert state is not None
                again = evaluate(qc, q_lab, encode(state, data.features[np.concatenate(db_idx)],
                                                   backend), db_lab)
                record["map_reencoded"] = again.map
                record["map_reencoded_tie_aware"] = again.map_tie_aware
            record["map"] = scores.map
            record["map_tie_aware"] = scores.map_tie_aware  # expected mAP, random tie order
            # ties ordered by ⟨φ(q)P, code⟩: what the real-valued query adds within a distance
            record["map_projection_ties"] = scores.map_projection_ties
            # Class-incremental: queries of classes not yet streamed cannot score; map_seen
            # averages over the others, map_first_classes over round 1's classes (forgetting).
            q_seen = q_lab.has_any(seen)
            q_first = q_lab.has_any(first_classes)
            ap = scores.average_precision
            record["map_seen"] = float(ap[q_seen].mean()) if q_seen.any() else 0.0
            record["map_first_classes"] = float(ap[q_first].mean()) if q_first.any() else 0.0
            # Forgetting, isolated: round 1's classes' queries against round 1's classes' items
            # only. The items keep their round-1 codes; only the query encoder has moved on.
            db_first = db_lab.has_any(first_classes)
            if q_first.any() and db_first.any():
                record["map_first_classes_own_db"] = evaluate(
                    qc[q_first], q_lab.take(np.flatnonzero(q_first)), all_codes[db_first],
                    db_lab.take(np.flatnonzero(db_first))).map
            record["map_at_k"] = {str(k): v for k, v in scores.map_at_k.items()}
            record["precision_r2"] = scores.precision_r2
            if i == total:
                record["pr_curve"] = scores.as_dict()["pr_curve"]
        rounds.append(record)
        if on_round is not None:
            on_round(record, total)
    return {"rounds": rounds, "settings": config.as_dict(), "backend": backend.name,
            "n_queries": int(len(queries)), "n_stream": int(len(stream))}


def write_json(result: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=1))
