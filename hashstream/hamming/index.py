"""Exact Hamming search over packed binary codes: the in-process index every API replica holds.

Codes are packed like ``numpy.packbits`` of the ±1 codes mapped to 1/0 (big-endian bit order
within a byte): ``bits / 8`` bytes per code, ``bits`` a multiple of 8 from 8 to 1,024.

Results
    ``search`` returns the exact k nearest items by Hamming distance, ties broken by insertion
    order (the earlier add wins). Rows are sorted by (distance, insertion order). When fewer
    than k items are stored, a row is padded with id ``-1`` and distance ``bits + 1`` (beyond
    any real distance, so rows stay sorted). ``range_search`` returns a FAISS-style triple
    ``(lims, distances, ids)``: query i's results are ``[lims[i], lims[i + 1])``, sorted by
    (distance, insertion order); :func:`split_ranges` turns it into per-query pairs.

Ids
    Non-negative int64. Adding an id that is already stored replaces it: the old entry is
    removed and the new code counts as inserted now. ``remove`` marks entries in a removal mask;
    :meth:`HammingIndex.compact` (run automatically once a quarter of the entries are removed)
    drops them, keeping insertion order.

Compute
    ``backend="native"`` uses the compiled kernels of ``csrc/`` (AVX-512 VPOPCNTQ, AVX2 or
    scalar, picked at import for this CPU; a tiled flat scan that keeps only items under each
    query's running k-th distance, and multi-index hashing for large databases);
    ``backend="numpy"`` is a pure NumPy fallback (``np.bitwise_count`` on the code words,
    :mod:`~hashstream.hamming.numpy_scan`) with identical results, used automatically when the
    extension cannot be imported.

Search paths (``mode``)
    ``"flat"`` scans every code. ``"mih"`` is multi-index hashing (Norouzi et al.): substring
    hash tables probed at increasing radius, candidates verified exactly, stopping once the
    k-th distance is proved -- exact, same results as the flat scan. ``"auto"`` uses MIH when
    the database has at least :data:`MIH_MIN_ITEMS` codes of at most :data:`MIH_MAX_BITS` bits;
    a query whose MIH work passes its budget (about what the flat scan of that query costs)
    falls back to the flat scan, and ``auto`` stops trying MIH while most queries fall back
    (retrying now and then). Tables cover the codes present when they were built; later adds
    are scanned flat until they exceed a quarter of the tables, when the tables are rebuilt (at
    the next search; with ``build_tables_on_search=False`` only when the owner calls
    :meth:`HammingIndex.build_tables`, e.g. off the search path after appending).

Views
    :meth:`HammingIndex.view` is a read-only snapshot of the index at that moment: later adds,
    upserts and removals do not change what it finds (adds write past its size, a removal
    copies the removal mask first, compaction and table builds make new arrays).

Persistence: :meth:`HammingIndex.to_arrays` / :meth:`HammingIndex.from_arrays` (plain NumPy
arrays, no pickle). Thread safety: one writer at a time (writes take a lock); searches release
the GIL and may overlap each other and the writer.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

try:
    from hashstream.hamming import _hamming as _native
except ImportError:  # pragma: no cover - the extension is built by `pip install -e .`
    _native = None  # type: ignore[assignment]

from hashstream.hamming import mih as _mih_tables
from hashstream.hamming.id_lookup import IdLookup
from hashstream.hamming.mih import MIHTables
from hashstream.hamming.numpy_scan import Layout, numpy_range, numpy_topk
from hashstream.hamming.ranges import concat_ranges, split_ranges

__all__ = [
    "MIH_MAX_BITS",
    "MIH_MIN_ITEMS",
    "HammingIndex",
    "HammingView",
    "native_available",
    "native_isa",
    "split_ranges",
]

Backend = Literal["auto", "native", "numpy"]
Mode = Literal["auto", "flat", "mih"]

MIH_MIN_ITEMS = 1 << 20
"""``mode="auto"`` builds multi-index hashing tables from this many codes on."""
MIH_MAX_BITS = 128
"""... and for codes of at most this many bits (longer codes need too many tables)."""
MIH_BUDGET = 1.0 / 16
"""MIH work allowed per query (a probe counts 16, a code word 1), as a fraction of the stored
code words: a probe is a cache miss, so one unit costs about what the batched flat scan spends
on 10 code words; MIH gives up at ~60% of the flat scan's cost."""
_MIN_BUDGET = 1 << 12

_POS_PAD = -1
_MAX_BITS = 1024
_MIN_PARALLEL_WORK = 1 << 22  # code words x queries below which one thread is used
_QUERY_CHUNK = 4096  # queries per call of the flat kernel


def native_available() -> bool:
    """Whether the compiled kernels were imported."""
    return _native is not None


def native_isa() -> str | None:
    """Instruction set the compiled kernels use (``avx512``, ``avx2``, ``popcnt``, ``scalar``)."""
    return None if _native is None else _native.isa()


def _default_threads() -> int:
    env = os.environ.get("HASHSTREAM_THREADS")
    if env:
        return max(1, int(env))
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 16))


@dataclass(frozen=True)
class _Snapshot:
    """What a search reads, taken under the writer's lock: positions [0, n) of these arrays
    never change afterwards."""

    store: NDArray[np.uint8]
    removed: NDArray[np.uint8]
    ids: NDArray[np.int64]
    n: int
    n_removed: int
    lookup: IdLookup
    mih: MIHTables | None


class HammingIndex:
    """Exact k-NN and range search by Hamming distance over packed codes (module docstring).

    ``build_tables_on_search=False``: searches use the MIH tables they find and never build
    them (the owner calls :meth:`build_tables`); ``auto_compact=False``: removed entries stay
    until the owner calls :meth:`compact` (positions then stay stable between compactions)."""

    def __init__(self, bits: int, *, backend: Backend = "auto", mode: Mode = "auto",
                 threads: int | None = None, mih_substring_bits: int | None = None,
                 build_tables_on_search: bool = True, auto_compact: bool = True) -> None:
        if not isinstance(bits, int | np.integer) or bits % 8 or not 8 <= bits <= _MAX_BITS:
            raise ValueError(f"bits must be a multiple of 8 in [8, {_MAX_BITS}], got {bits}")
        if backend not in ("auto", "native", "numpy"):
            raise ValueError(f"unknown backend {backend!r}")
        if mode not in ("auto", "flat", "mih"):
            raise ValueError(f"unknown mode {mode!r}")
        if backend == "native" and _native is None:
            raise RuntimeError("the compiled Hamming kernels are not built (pip install -e .)")
        self.bits = int(bits)
        self.code_bytes = self.bits // 8
        self.native = backend != "numpy" and _native is not None
        if mode == "mih" and not self.native:
            raise ValueError("mode='mih' needs the compiled kernels")
        self.mode: Mode = mode
        self.threads = max(1, threads) if threads is not None else _default_threads()
        self.mih_substring_bits = mih_substring_bits
        self.build_tables_on_search = build_tables_on_search
        self.auto_compact = auto_compact
        self._lane = 4 if self.bits <= 32 else 8
        self._words = -(-self.code_bytes // self._lane)
        self._per_block = 64 // self._lane
        self._wdtype = np.dtype(np.uint32 if self._lane == 4 else np.uint64)
        self._layout = Layout(self.bits, self._words, self._per_block, self._wdtype)
        self._lock = threading.RLock()
        self._n = 0
        self._n_removed = 0
        self._store = np.zeros((0, self._words * 64), dtype=np.uint8)
        self._ids = np.zeros(0, dtype=np.int64)
        self._removed = np.zeros(0, dtype=np.uint8)
        self._lookup = IdLookup()
        self._mih: MIHTables | None = None
        self._mih_skip = 0  # auto mode: searches left before MIH is tried again
        self._mih_fallbacks = 0  # queries MIH handed to the flat scan (statistics)

    # ------------------------------------------------------------------ size and lookups

    def __len__(self) -> int:
        return self._n - self._n_removed

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, int | np.integer):
            return False
        return bool(self.contains(np.array([item], dtype=np.int64))[0])

    def __repr__(self) -> str:
        return (f"HammingIndex(bits={self.bits}, items={len(self)}, "
                f"backend={'native' if self.native else 'numpy'}, mode={self.mode!r})")

    def contains(self, ids: ArrayLike) -> NDArray[np.bool_]:
        """Whether each id is stored (and not removed)."""
        ids_a = self._as_ids(ids)
        with self._lock:
            return self._positions(ids_a) >= 0

    def ids(self) -> NDArray[np.int64]:
        """Stored ids in insertion order."""
        with self._lock:
            live = np.flatnonzero(self._removed[:self._n] == 0)
            out: NDArray[np.int64] = self._ids[live]
        return out

    def get_codes(self, ids: ArrayLike) -> NDArray[np.uint8]:
        """Packed codes (len(ids) × bits/8) of stored ids, e.g. to search by a stored item;
        KeyError if any id is missing."""
        ids_a = self._as_ids(ids)
        with self._lock:
            pos = self._positions(ids_a)
            if (pos < 0).any():
                missing = ids_a[pos < 0]
                raise KeyError(f"{missing.size} ids not in the index, e.g. "
                               f"{missing[:5].tolist()}")
            return self._codes_at(pos)

    def memory_bytes(self) -> int:
        """Bytes held by the index's arrays (allocated capacity included)."""
        total = (self._store.nbytes + self._ids.nbytes + self._removed.nbytes
                 + self._lookup.nbytes())
        return int(total + (self._mih.nbytes() if self._mih is not None else 0))

    def tables_bytes(self) -> int:
        """Bytes of the MIH tables alone (part of :meth:`memory_bytes`)."""
        return self._mih.nbytes() if self._mih is not None else 0

    # ------------------------------------------------------------------ updates

    def add(self, codes: ArrayLike, ids: ArrayLike) -> None:
        """Append codes (n × bits/8 uint8) with their ids; an id already stored is replaced."""
        codes_a = self._as_codes(codes, "codes")
        ids_a = self._as_ids(ids)
        if ids_a.shape[0] != codes_a.shape[0]:
            raise ValueError(f"{codes_a.shape[0]} codes but {ids_a.shape[0]} ids")
        if ids_a.size and ids_a.min() < 0:
            raise ValueError("ids must be non-negative (-1 marks padding in results)")
        order = np.argsort(ids_a, kind="stable")
        new_ids = ids_a[order]
        if (new_ids[1:] == new_ids[:-1]).any():
            raise ValueError("duplicate ids in one add")
        b = codes_a.shape[0]
        if b == 0:
            return
        with self._lock:
            self._mark_removed(self._positions(ids_a))
            p0 = self._n
            self._reserve(p0 + b)
            self._write_codes(p0, self._to_words(codes_a))
            self._ids[p0:p0 + b] = ids_a
            self._removed[p0:p0 + b] = 0
            self._lookup = self._lookup.appended(self._ids, p0, ids_a)
            self._n = p0 + b
            self._maybe_compact()

    def remove(self, ids: ArrayLike) -> int:
        """Remove the given ids (absent ones are ignored); returns how many were removed."""
        ids_a = np.sort(self._as_ids(ids))
        ids_a = ids_a[np.concatenate([[True], ids_a[1:] != ids_a[:-1]])] if ids_a.size else ids_a
        with self._lock:
            removed = self._mark_removed(self._positions(ids_a))
            self._maybe_compact()
        return removed

    def _mark_removed(self, pos: NDArray[np.int64]) -> int:
        """Mark the live entries at ``pos`` (-1: none) removed in a copy of the removal mask, so
        that views and searches in flight keep the mask of their moment."""
        pos = pos[pos >= 0]
        if pos.size:
            removed = self._removed.copy()
            removed[pos] = 1
            self._removed = removed
            self._n_removed += int(pos.size)
        return int(pos.size)

    @property
    def removed_count(self) -> int:
        """Removed entries still held (until :meth:`compact`)."""
        return self._n_removed

    def compact(self) -> NDArray[np.int64]:
        """Drop removed entries from storage (insertion order kept); rebuilds the lookups.
        Returns the old positions of the entries kept, in their new order (entry i now was at
        position ``kept[i]`` before)."""
        with self._lock:
            n = self._n
            live = np.flatnonzero(self._removed[:n] == 0)
            words = self._words_at(live)
            ids = self._ids[live].copy()
            self._n = 0
            self._n_removed = 0
            self._store = np.zeros((0, self._words * 64), dtype=np.uint8)
            self._ids = np.zeros(0, dtype=np.int64)
            self._removed = np.zeros(0, dtype=np.uint8)
            self._reserve(live.size)
            self._write_codes(0, words)
            self._ids[:live.size] = ids
            self._n = int(live.size)
            self._lookup = IdLookup.build(ids)
            self._mih = None
            out: NDArray[np.int64] = live.astype(np.int64)
            return out

    def _maybe_compact(self) -> None:
        if self.auto_compact and self._n_removed > max(1024, self._n // 4):
            self.compact()

    # ------------------------------------------------------------------ persistence

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """Plain arrays: ``bits`` (0-d int64), ``codes`` (n × bits/8 uint8), ``ids`` (n int64),
        ``removed`` (n bool), positions in insertion order, removed entries included."""
        with self._lock:
            pos = np.arange(self._n, dtype=np.int64)
            return {
                "bits": np.array(self.bits, dtype=np.int64),
                "codes": self._codes_at(pos),
                "ids": self._ids[:self._n].copy(),
                "removed": self._removed[:self._n].astype(bool),
            }

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any], **kwargs: Any) -> HammingIndex:
        """Rebuild an index from :meth:`to_arrays` output; ``kwargs`` go to the constructor."""
        bits = int(np.asarray(arrays["bits"]))
        index = cls(bits, **kwargs)
        codes = index._as_codes(arrays["codes"], "codes")
        ids = index._as_ids(arrays["ids"])
        removed = np.asarray(arrays.get("removed", np.zeros(ids.size, dtype=bool)), dtype=bool)
        if removed.shape != ids.shape or codes.shape[0] != ids.size:
            raise ValueError("codes, ids and removed must have one row per entry")
        if ids.size and ids.min() < 0:
            raise ValueError("ids must be non-negative")
        live_sorted = np.sort(ids[~removed])
        if (live_sorted[1:] == live_sorted[:-1]).any():
            raise ValueError("an id is live in more than one entry")
        n = ids.size
        index._reserve(n)
        index._write_codes(0, index._to_words(codes))
        index._ids[:n] = ids
        index._removed[:n] = removed
        index._n = n
        index._n_removed = int(removed.sum())
        index._lookup = IdLookup.build(ids, ~removed)
        return index

    # ------------------------------------------------------------------ search

    def search(self, queries: ArrayLike, k: int) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """Exact k nearest: (distances int32 q × k, ids int64 q × k), see the module docstring."""
        return self._search_in(self._snapshot(self.build_tables_on_search), queries, k)

    def view(self) -> HammingView:
        """A read-only snapshot of the index as it is now (module docstring, Views)."""
        return HammingView(self, self._snapshot(False))

    def tables_due(self) -> bool:
        """Whether :meth:`build_tables` would build (mode, size and staleness allow tables)."""
        with self._lock:
            return self._tables_wanted(self._n) and _mih_tables.stale(self._mih, self._n)

    def build_tables(self) -> bool:
        """Build (or rebuild) the MIH tables over every code stored now, when due; the build
        runs outside the writer's lock. Returns whether tables were built."""
        with self._lock:
            if not (self._tables_wanted(self._n) and _mih_tables.stale(self._mih, self._n)):
                return False
            store, n = self._store, self._n
        mih = _mih_tables.build_tables(_native, store, n, self._lane, self._words, self.bits,
                                       self.mih_substring_bits, self.threads)
        with self._lock:
            if self._store is not store or (self._mih is not None and self._mih.n0 >= n):
                return False  # compacted meanwhile (positions moved), or newer tables exist
            self._mih = mih
        return True

    def _snapshot(self, build_tables: bool) -> _Snapshot:
        with self._lock:
            mih = self._mih_for_search() if build_tables else self._mih
            return _Snapshot(self._store, self._removed, self._ids, self._n, self._n_removed,
                             self._lookup, mih)

    def _search_in(self, snap: _Snapshot, queries: ArrayLike, k: int
                   ) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        if k < 0:
            raise ValueError("k must be >= 0")
        qw = self._query_words(queries)
        nq = qw.shape[0]
        out_d = np.full((nq, k), self.bits + 1, dtype=np.int32)
        out_i = np.full((nq, k), _POS_PAD, dtype=np.int64)
        kk = min(k, snap.n - snap.n_removed)
        if kk == 0 or nq == 0:
            return out_d, out_i
        mih = self._usable_tables(snap)
        if self.native:
            d, pos = self._native_topk(qw, kk, snap, mih)
        else:
            d, pos = numpy_topk(self._layout, snap.store, snap.removed, snap.n, snap.n_removed,
                                qw, kk)
        out_d[:, :kk] = d
        out_i[:, :kk] = np.where(pos >= 0, snap.ids[np.maximum(pos, 0)], _POS_PAD)
        return out_d, out_i

    def _usable_tables(self, snap: _Snapshot) -> MIHTables | None:
        """The snapshot's tables unless this search should scan flat (auto mode's skip)."""
        if snap.mih is None or not self._tables_wanted(snap.n):
            return None
        if self.mode == "auto" and self._mih_skip > 0:
            self._mih_skip -= 1
            return None
        return snap.mih

    def range_search(self, queries: ArrayLike, radius: int
                     ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64]]:
        """All items within Hamming distance ``radius``: (lims, distances, ids), see module."""
        snap = self._snapshot(self.build_tables_on_search)
        lims, d, pos = self._range_in(snap, queries, radius)
        return lims, d, snap.ids[pos]

    def _range_in(self, snap: _Snapshot, queries: ArrayLike, radius: int
                  ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64]]:
        """:meth:`range_search` in ``snap``, with positions instead of ids."""
        qw = self._query_words(queries)
        nq = qw.shape[0]
        if radius < 0 or snap.n == 0 or nq == 0:
            return (np.zeros(nq + 1, dtype=np.int64), np.zeros(0, dtype=np.int32),
                    np.zeros(0, dtype=np.int64))
        radius = min(int(radius), self.bits)
        mih = self._usable_tables(snap)
        if self.native:
            return self._native_range(qw, radius, snap, mih)
        return numpy_range(self._layout, snap.store, snap.removed, snap.n, snap.n_removed, qw,
                           radius)

    # ------------------------------------------------------------------ native paths

    def _threads_for(self, words: int, nq: int) -> int:
        return self.threads if words * max(nq, 1) >= _MIN_PARALLEL_WORK else 1

    def _removed_buf(self, removed: NDArray[np.uint8], n_removed: int) -> NDArray[np.uint8]:
        return removed if n_removed else removed[:0]

    def _native_flat_topk(self, qw: NDArray[Any], k: int, snap: _Snapshot, begin: int,
                          end: int) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        assert _native is not None
        store, removed, n_removed = snap.store, snap.removed, snap.n_removed
        nq = qw.shape[0]
        d = np.empty((nq, k), dtype=np.int32)
        pos = np.empty((nq, k), dtype=np.int64)
        rm = self._removed_buf(removed, n_removed)
        for q0 in range(0, nq, _QUERY_CHUNK):  # bounds the per-query buffers of one call
            q1 = min(nq, q0 + _QUERY_CHUNK)
            threads = self._threads_for((end - begin) * self._words, q1 - q0)
            _native.flat_topk(store, rm, begin, end, self._lane, self._words, self.bits,
                              qw[q0:q1], q1 - q0, k, d[q0:q1], pos[q0:q1], threads)
        return d, pos

    def _native_topk(self, qw: NDArray[Any], k: int, snap: _Snapshot, mih: MIHTables | None
                     ) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        assert _native is not None
        removed, n, n_removed = snap.removed, snap.n, snap.n_removed
        if mih is None:
            return self._native_flat_topk(qw, k, snap, 0, n)
        nq = qw.shape[0]
        d = np.empty((nq, k), dtype=np.int32)
        pos = np.empty((nq, k), dtype=np.int64)
        status = np.zeros(nq, dtype=np.uint8)
        _native.mih_topk(mih.offsets, mih.perm, mih.codes, mih.n0, self._lane, self._words,
                         self.bits, mih.sub_off, mih.sub_len, mih.m,
                         self._removed_buf(removed, n_removed), qw, nq, k, self._budget(mih, nq),
                         d, pos, status, min(self.threads, nq))
        if mih.n0 < n:
            td, tp = self._native_flat_topk(qw, k, snap, mih.n0, n)
            md = np.empty_like(d)
            mp = np.empty_like(pos)
            _native.merge_topk(d, pos, td, tp, nq, k, self.bits + 1, md, mp)
            d, pos = md, mp
        self._note_fallbacks(status)
        redo = np.flatnonzero(status)
        if redo.size:
            rd, rp = self._native_flat_topk(np.ascontiguousarray(qw[redo]), k, snap, 0, n)
            d[redo] = rd
            pos[redo] = rp
        return d, pos

    def _native_range(self, qw: NDArray[Any], radius: int, snap: _Snapshot,
                      mih: MIHTables | None
                      ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64]]:
        assert _native is not None
        store, removed, n, n_removed = snap.store, snap.removed, snap.n, snap.n_removed
        rm = self._removed_buf(removed, n_removed)
        nq = qw.shape[0]

        def flat(q: NDArray[Any], begin: int, end: int
                 ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64]]:
            assert _native is not None
            threads = self._threads_for((end - begin) * self._words, q.shape[0])
            lb, db, ib = _native.flat_range(store, rm, begin, end, self._lane, self._words,
                                            self.bits, q, q.shape[0], radius, threads)
            return (np.frombuffer(lb, dtype=np.int64), np.frombuffer(db, dtype=np.int32),
                    np.frombuffer(ib, dtype=np.int64))

        if mih is None:
            return flat(qw, 0, n)
        status = np.zeros(nq, dtype=np.uint8)
        lb, db, ib = _native.mih_range(mih.offsets, mih.perm, mih.codes, mih.n0, self._lane,
                                       self._words, self.bits, mih.sub_off, mih.sub_len, mih.m,
                                       rm, qw, nq, radius, self._budget(mih, nq), status,
                                       min(self.threads, nq))
        parts = [(np.frombuffer(lb, dtype=np.int64), np.frombuffer(db, dtype=np.int32),
                  np.frombuffer(ib, dtype=np.int64), np.arange(nq))]
        if mih.n0 < n:
            parts.append((*flat(qw, mih.n0, n), np.arange(nq)))
        self._note_fallbacks(status)
        redo = np.flatnonzero(status)
        if redo.size:
            parts.append((*flat(np.ascontiguousarray(qw[redo]), 0, n), redo))
        return concat_ranges(parts, nq)

    def _budget(self, mih: MIHTables, nq: int) -> int:
        """MIH work per query before it falls back (:func:`mih.query_budget`)."""
        if self.mode == "mih":
            return _mih_tables.UNLIMITED
        return _mih_tables.query_budget(mih, self._words, nq, MIH_BUDGET, _MIN_BUDGET)

    def _note_fallbacks(self, status: NDArray[np.uint8]) -> None:
        self._mih_fallbacks += int(status.sum())
        if self.mode == "auto" and _mih_tables.mostly_fell_back(status):
            self._mih_skip = 16  # most queries fell back: scan flat for a while

    def _tables_wanted(self, n: int) -> bool:
        """Whether the mode and size call for MIH tables over n codes."""
        if not self.native or self.mode == "flat" or n == 0:
            return False
        return self.mode == "mih" or (self.bits <= MIH_MAX_BITS and n >= MIH_MIN_ITEMS)

    def _mih_for_search(self) -> MIHTables | None:
        """Tables to search with (built or rebuilt here when due), or None for the flat scan."""
        n = self._n
        if not self._tables_wanted(n):
            return None
        if self.mode == "auto" and self._mih_skip > 0:
            return self._mih  # this search scans flat (_usable_tables); no build now
        mih = self._mih
        if mih is None or _mih_tables.stale(mih, n):
            mih = _mih_tables.build_tables(_native, self._store, n, self._lane, self._words,
                                           self.bits, self.mih_substring_bits, self.threads)
            self._mih = mih
        return mih

    # ------------------------------------------------------------------ storage helpers

    def _as_codes(self, codes: ArrayLike, what: str) -> NDArray[np.uint8]:
        a = np.asarray(codes)
        if a.dtype != np.uint8:
            raise TypeError(f"{what} must be packed uint8 (numpy.packbits), got {a.dtype}")
        if a.ndim != 2 or a.shape[1] != self.code_bytes:
            raise ValueError(f"{what} must be (n, {self.code_bytes}) for {self.bits}-bit codes, "
                             f"got shape {a.shape}")
        return a

    def _as_ids(self, ids: ArrayLike) -> NDArray[np.int64]:
        a = np.asarray(ids)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.size == 0:
            return np.zeros(0, dtype=np.int64)
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise TypeError(f"ids must be a 1-D integer array, got {a.dtype} {a.shape}")
        return a.astype(np.int64, copy=False)

    def _query_words(self, queries: ArrayLike) -> NDArray[Any]:
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        return self._to_words(self._as_codes(q, "queries"))

    def _to_words(self, codes: NDArray[np.uint8]) -> NDArray[Any]:
        """(n, W) code words (native byte order), zero padded: what the kernels read."""
        n = codes.shape[0]
        buf = np.zeros((n, self._words * self._lane), dtype=np.uint8)
        buf[:, :self.code_bytes] = codes
        return buf.view(self._wdtype)

    def _reserve(self, n: int) -> None:
        cap_blocks = self._store.shape[0]
        need = -(-n // self._per_block)
        if need <= cap_blocks:
            return
        new_blocks = max(need, cap_blocks + cap_blocks // 2, 16)
        store = np.zeros((new_blocks, self._words * 64), dtype=np.uint8)
        store[:cap_blocks] = self._store
        cap = new_blocks * self._per_block
        ids = np.zeros(cap, dtype=np.int64)
        ids[:self._n] = self._ids[:self._n]
        removed = np.zeros(cap, dtype=np.uint8)
        removed[:self._n] = self._removed[:self._n]
        self._store, self._ids, self._removed = store, ids, removed

    def _blocked(self) -> NDArray[Any]:
        return self._store.view(self._wdtype).reshape(-1, self._words, self._per_block)

    def _write_codes(self, p0: int, words: NDArray[Any]) -> None:
        """Store (b, W) code words at positions p0 .. p0 + b - 1 (blocked layout)."""
        view, B = self._blocked(), self._per_block
        b = words.shape[0]
        head = min(b, (-p0) % B)
        full = (b - head) // B
        mid0, mid1 = head, head + full * B
        for lo, hi in ((0, head), (mid1, b)):
            if hi > lo:
                p = np.arange(p0 + lo, p0 + hi)
                view[p // B, :, p % B] = words[lo:hi]
        if full:
            blk = (p0 + head) // B
            view[blk:blk + full] = words[mid0:mid1].reshape(full, B, -1).transpose(0, 2, 1)

    def _words_at(self, pos: NDArray[np.int64], store: NDArray[np.uint8] | None = None
                  ) -> NDArray[Any]:
        B = self._per_block
        blocked = (self._store if store is None else store).view(self._wdtype).reshape(
            -1, self._words, B)
        return np.ascontiguousarray(blocked[pos // B, :, pos % B])

    def _codes_at(self, pos: NDArray[np.int64]) -> NDArray[np.uint8]:
        return self._codes_in(self._store, pos)

    def _codes_in(self, store: NDArray[np.uint8], pos: NDArray[np.int64]) -> NDArray[np.uint8]:
        words = self._words_at(pos, store).reshape(pos.size, self._words)
        return np.ascontiguousarray(words.view(np.uint8)[:, :self.code_bytes])

    def _positions(self, ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Position of each id's live entry, -1 where it is absent or removed."""
        return _live_positions(self._lookup, self._ids, self._removed, self._n, ids)


def _live_positions(lookup: IdLookup, ids_by_pos: NDArray[np.int64], removed: NDArray[np.uint8],
                    n: int, ids: NDArray[np.int64]) -> NDArray[np.int64]:
    res = lookup.latest(ids, ids_by_pos, n)
    found = res >= 0
    res[found] = np.where(removed[res[found]] == 0, res[found], -1)
    return res


class HammingView:
    """A read-only snapshot of a :class:`HammingIndex` (:meth:`HammingIndex.view`): searches and
    lookups see exactly the entries of that moment, whatever the index does afterwards."""

    def __init__(self, index: HammingIndex, snap: _Snapshot) -> None:
        self._index = index
        self._snap = snap
        self.bits = index.bits
        self.code_bytes = index.code_bytes

    def __len__(self) -> int:
        return self._snap.n - self._snap.n_removed

    @property
    def size(self) -> int:
        """Entries held, removed ones included: positions are 0 … size − 1."""
        return self._snap.n

    def search(self, queries: ArrayLike, k: int) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """Exact k nearest, as :meth:`HammingIndex.search`."""
        return self._index._search_in(self._snap, queries, k)

    def range_positions(self, queries: ArrayLike, radius: int
                        ) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.int64]]:
        """All live entries within Hamming distance ``radius``, as
        :meth:`HammingIndex.range_search` but with positions (insertion order) for ids."""
        return self._index._range_in(self._snap, queries, radius)

    def positions(self, ids: ArrayLike) -> NDArray[np.int64]:
        """Position of each id's live entry, -1 where it is absent or removed."""
        s = self._snap
        return _live_positions(s.lookup, s.ids, s.removed, s.n, self._index._as_ids(ids))

    def codes_at(self, positions: NDArray[np.int64]) -> NDArray[np.uint8]:
        """Packed codes at positions (all below :attr:`size`)."""
        return self._index._codes_in(self._snap.store, positions)

    def ids_at(self, positions: NDArray[np.int64]) -> NDArray[np.int64]:
        """Ids of the entries at positions (all below :attr:`size`)."""
        out: NDArray[np.int64] = self._snap.ids[positions]
        return out

    def live_mask(self) -> NDArray[np.bool_]:
        """Whether each position 0 … size − 1 holds a live (not removed) entry."""
        out: NDArray[np.bool_] = self._snap.removed[:self._snap.n] == 0
        return out

    def without(self, positions: NDArray[np.int64]) -> HammingView:
        """This view with the entries at ``positions`` removed too (a new view; this one and
        the index are unchanged): deletes applied to a snapshot without touching its index."""
        s = self._snap
        removed = s.removed[:s.n].copy()
        pos = np.unique(np.asarray(positions, dtype=np.int64))
        newly = int(np.count_nonzero(removed[pos] == 0)) if pos.size else 0
        removed[pos] = 1
        return HammingView(self._index, _Snapshot(s.store, removed, s.ids, s.n,
                                                  s.n_removed + newly, s.lookup, s.mih))

    def restricted(self, keep: NDArray[np.bool_]) -> HammingView:
        """This view with only the positions where ``keep`` (length :attr:`size`) is true
        left live, e.g. the items a filter admits (a new view; lookups of the others find
        nothing)."""
        s = self._snap
        removed = (s.removed[:s.n] != 0) | ~np.asarray(keep, dtype=bool)
        return HammingView(self._index, _Snapshot(
            s.store, removed.astype(np.uint8), s.ids, s.n, int(np.count_nonzero(removed)),
            s.lookup, s.mih))
