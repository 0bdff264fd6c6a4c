"""HammingIndex: exact agreement with a brute-force reference on every compute path (each
instruction set of the compiled kernels and the NumPy fallback), multi-index hashing equal to
the flat scan, updates, persistence. No timing asserts (bench/hamming.py measures speed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashstream.hamming import index as hi
from hashstream.hamming.index import HammingIndex, split_ranges

try:
    from hashstream.hamming import _hamming as native
except ImportError:  # pragma: no cover - CI builds it (test_extension_is_built)
    native = None  # type: ignore[assignment]

Array = np.ndarray[Any, Any]
BITS = [8, 16, 24, 32, 40, 64, 72, 128, 136, 256, 512, 1024]
ISAS = native.available_isas() if native is not None else []
ENGINES = ISAS + ["numpy"]


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run under one instruction set of the compiled kernels (restored after) or NumPy."""
    name: str = request.param
    if name == "numpy" or native is None:
        yield name
        return
    before = native.isa()
    native.set_isa(name)
    try:
        yield name
    finally:
        native.set_isa(before)


def make_index(bits: int, engine: str, **kw: Any) -> HammingIndex:
    return HammingIndex(bits, backend="numpy" if engine == "numpy" else "native", **kw)


class Reference:
    """Brute force: unpacked bits, ranking by (distance, insertion order) over live entries."""

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.codes = np.zeros((0, bits // 8), dtype=np.uint8)
        self.ids = np.zeros(0, dtype=np.int64)
        self.live = np.zeros(0, dtype=bool)

    def add(self, codes: Array, ids: Array) -> None:
        self.live[np.isin(self.ids, ids)] = False  # replaced
        self.codes = np.concatenate([self.codes, codes])
        self.ids = np.concatenate([self.ids, ids])
        self.live = np.concatenate([self.live, np.ones(len(ids), dtype=bool)])

    def remove(self, ids: Array) -> None:
        self.live[np.isin(self.ids, ids)] = False

    def distances(self, queries: Array) -> Array:
        qb = np.unpackbits(queries, axis=1).astype(bool)
        db = np.unpackbits(self.codes, axis=1).astype(bool)
        d: Array = (qb[:, None, :] != db[None, :, :]).sum(axis=2)
        return d

    def search(self, queries: Array, k: int) -> tuple[Array, Array]:
        d = self.distances(queries)
        live = np.flatnonzero(self.live)
        out_d = np.full((len(queries), k), self.bits + 1, dtype=np.int32)
        out_i = np.full((len(queries), k), -1, dtype=np.int64)
        for q in range(len(queries)):
            order = live[np.lexsort((live, d[q, live]))][:k]
            out_d[q, :order.size] = d[q, order]
            out_i[q, :order.size] = self.ids[order]
        return out_d, out_i

    def range_search(self, queries: Array, radius: int) -> list[tuple[Array, Array]]:
        d = self.distances(queries)
        live = np.flatnonzero(self.live)
        out = []
        for q in range(len(queries)):
            hit = live[d[q, live] <= radius]
            order = hit[np.lexsort((hit, d[q, hit]))]
            out.append((d[q, order], self.ids[order]))
        return out


def random_codes(rng: np.random.Generator, n: int, bits: int, pool: int | None = None) -> Array:
    """Random packed codes; with ``pool``, drawn from that many distinct codes (ties)."""
    if pool is None:
        return rng.integers(0, 256, (n, bits // 8), dtype=np.uint8)
    base = rng.integers(0, 256, (pool, bits // 8), dtype=np.uint8)
    return base[rng.integers(0, pool, n)]


def clustered_codes(rng: np.random.Generator, n: int, bits: int, centers: int = 8,
                    flip: float = 0.04) -> Array:
    """Codes near a few centers with a few flipped bits (what learned hash codes look like)."""
    c = rng.integers(0, 256, (centers, bits // 8), dtype=np.uint8)
    flips = np.packbits(rng.random((n, bits)) < flip, axis=1)
    return c[rng.integers(0, centers, n)] ^ flips


def assert_same(a: tuple[Array, ...], b: tuple[Array, ...]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def assert_range_equal(got: tuple[Array, Array, Array], ref: list[tuple[Array, Array]]) -> None:
    lims, d, ids = got
    assert lims.dtype == np.int64 and d.dtype == np.int32 and ids.dtype == np.int64
    assert len(lims) == len(ref) + 1
    for (gd, gi), (rd, ri) in zip(split_ranges(lims, d, ids), ref, strict=True):
        np.testing.assert_array_equal(gd, rd)
        np.testing.assert_array_equal(gi, ri)


# ----------------------------------------------------------------------------- flat search


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("bits", BITS)
def test_search_matches_brute_force(engine: str, bits: int) -> None:
    rng = np.random.default_rng(bits)
    index, ref = make_index(bits, engine, mode="flat"), Reference(bits)
    next_id = 0
    for n, pool in ((1, None), (37, 3), (300, None), (130, 5)):  # incremental adds, ties
        codes = random_codes(rng, n, bits, pool)
        ids = np.arange(next_id, next_id + n) * 7 + 3
        next_id += n
        index.add(codes, ids)
        ref.add(codes, ids)
    gone = ref.ids[rng.choice(ref.ids.size, 40, replace=False)]
    assert index.remove(gone) == 40
    ref.remove(gone)
    queries = np.concatenate([random_codes(rng, 6, bits), ref.codes[:3]])
    for k in (1, 4, 50, len(index), len(index) + 5):
        assert_same(index.search(queries, k), ref.search(queries, k))
    for radius in (0, bits // 4, bits // 2, bits):
        assert_range_equal(index.range_search(queries, radius), ref.range_search(queries, radius))


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_many_accepts_and_threads(engine: str) -> None:
    """Items inserted in decreasing distance (every one beats the running k-th: the candidate
    buffers compact many times), enough work for several threads and database tiles."""
    rng = np.random.default_rng(5)
    bits, n = 1024, 1500
    query = random_codes(rng, 1, bits)
    qbits = np.unpackbits(query, axis=1)[0]
    codes = np.empty((n, bits // 8), dtype=np.uint8)
    for i in range(n):  # item i differs from the query in n - i - 1 ... (capped) bits
        flip = np.zeros(bits, dtype=np.uint8)
        flip[rng.choice(bits, min(bits, (n - i) // 2), replace=False)] = 1
        codes[i] = np.packbits(qbits ^ flip)
    index, ref = make_index(bits, engine, mode="flat", threads=3), Reference(bits)
    index.add(codes, np.arange(n))
    ref.add(codes, np.arange(n))
    queries = np.concatenate([query, random_codes(rng, 9, bits)])
    for k in (1, 3, 40):
        assert_same(index.search(queries, k), ref.search(queries, k))

    big = random_codes(rng, 20011, 64, pool=4000)
    idx64, ref64 = make_index(64, engine, mode="flat", threads=2), Reference(64)
    idx64.add(big, np.arange(big.shape[0]))
    ref64.add(big, np.arange(big.shape[0]))
    q64 = random_codes(rng, 13, 64)
    assert_same(idx64.search(q64, 25), ref64.search(q64, 25))
    assert_range_equal(idx64.range_search(q64, 20), ref64.range_search(q64, 20))


@pytest.mark.parametrize("engine", [*ISAS[-1:], "numpy"], indirect=True)
def test_query_batches_split_across_kernel_calls(engine: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hi, "_QUERY_CHUNK", 7)
    rng = np.random.default_rng(6)
    codes, queries = random_codes(rng, 900, 96, pool=200), random_codes(rng, 30, 96)
    index, ref = make_index(96, engine, mode="flat"), Reference(96)
    index.add(codes, np.arange(900))
    ref.add(codes, np.arange(900))
    assert_same(index.search(queries, 12), ref.search(queries, 12))


@settings(max_examples=30, deadline=None)
@given(bits=st.sampled_from([8, 16, 32, 56, 64, 72, 128, 192]), n=st.integers(0, 120),
       pool=st.integers(1, 40), k=st.integers(0, 140), nq=st.integers(0, 6),
       seed=st.integers(0, 2**32 - 1))
def test_hypothesis_native_numpy_reference_agree(bits: int, n: int, pool: int, k: int, nq: int,
                                                 seed: int) -> None:
    rng = np.random.default_rng(seed)
    codes = random_codes(rng, n, bits, pool)
    ids = rng.permutation(10 * n + 1)[:n]
    queries = np.concatenate([random_codes(rng, nq, bits), codes[:1]])
    ref = Reference(bits)
    ref.add(codes, ids)
    expect = ref.search(queries, k)
    engines = ["numpy"] + (["native"] if hi.native_available() else [])
    for backend in engines:
        for mode in ("flat", "mih") if backend == "native" else ("flat",):
            index = HammingIndex(bits, backend=backend, mode=mode)  # type: ignore[arg-type]
            index.add(codes, ids)
            assert_same(index.search(queries, k), expect)
            radius = bits // 3
            assert_range_equal(index.range_search(queries, radius),
                               ref.range_search(queries, radius))


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_empty_index_and_padding(engine: str) -> None:
    index = make_index(64, engine)
    q = np.zeros((3, 8), dtype=np.uint8)
    assert len(index) == 0
    d, i = index.search(q, 4)
    assert d.shape == i.shape == (3, 4) and d.dtype == np.int32 and i.dtype == np.int64
    assert (d == 65).all() and (i == -1).all()
    lims, rd, ri = index.range_search(q, 64)
    assert lims.tolist() == [0, 0, 0, 0] and rd.size == ri.size == 0
    assert index.search(q, 0)[0].shape == (3, 0)
    index.add(np.full((2, 8), 255, dtype=np.uint8), [10, 11])
    d, i = index.search(q[0], 4)  # one query as a 1-D code
    assert d.tolist() == [[64, 64, 65, 65]] and i.tolist() == [[10, 11, -1, -1]]
    index.remove([10, 11])
    d, i = index.search(q, 2)
    assert (i == -1).all() and (d == 65).all() and len(index) == 0


# ----------------------------------------------------------------------------- multi-index hashing


MIH_ISAS = [isa for isa in ISAS if isa in ("avx512", "scalar")]


@pytest.mark.skipif(not hi.native_available(), reason="compiled kernels not built")
@pytest.mark.parametrize("engine", MIH_ISAS, indirect=True)
@pytest.mark.parametrize("bits", [8, 16, 32, 64, 72, 128, 256])
@pytest.mark.parametrize("data", ["random", "clustered"])
def test_mih_equals_flat(engine: str, bits: int, data: str) -> None:
    rng = np.random.default_rng(bits + len(data))

    def make(n: int) -> Array:
        return random_codes(rng, n, bits) if data == "random" else clustered_codes(rng, n, bits)

    flat, mih = make_index(bits, engine, mode="flat"), make_index(bits, engine, mode="mih")
    codes, tail, replace = make(3003), make(500), make(20)
    queries = np.concatenate([make(12), codes[:4]])
    for index in (flat, mih):
        index.add(codes, np.arange(3003))
        index.search(queries[:1], 1)  # builds the tables over 3003 codes
        index.add(tail, np.arange(3003, 3503))  # a tail the tables do not cover
        index.add(replace, np.arange(100, 120))  # replaces ids inside the tables
        index.remove(np.arange(0, 3503, 9))
    assert mih._mih is not None and mih._mih.n0 == 3003 and len(mih) == len(flat)
    for k in (1, 10, 100, 4000):
        assert_same(mih.search(queries, k), flat.search(queries, k))
    for radius in (0, 1, bits // 8, bits // 4, bits // 2):
        assert_same(mih.range_search(queries, radius), flat.range_search(queries, radius))


@pytest.mark.skipif(not hi.native_available(), reason="compiled kernels not built")
@pytest.mark.parametrize("sub_bits", [11, 16, 23])
def test_mih_substring_lengths(sub_bits: int) -> None:
    """Substrings of up to 11, 16 and 22 bits: tables sorted in one, two and three radix passes
    (one pass per 11 bits); buckets from a few codes to most of a cluster."""
    rng = np.random.default_rng(sub_bits)
    codes = np.concatenate([random_codes(rng, 1500, 64), clustered_codes(rng, 1500, 64)])
    ids = rng.permutation(10_000)[:3000]
    queries = np.concatenate([random_codes(rng, 5, 64), codes[::500]])
    flat = HammingIndex(64, mode="flat")
    mih = HammingIndex(64, mode="mih", mih_substring_bits=sub_bits)
    for index in (flat, mih):
        index.add(codes, ids)
    for k in (1, 7, 300):
        assert_same(mih.search(queries, k), flat.search(queries, k))
    assert_same(mih.range_search(queries, 14), flat.range_search(queries, 14))
    assert mih._mih is not None
    assert abs(max(mih._mih.sub_len) - sub_bits) <= 1


@pytest.mark.skipif(not hi.native_available(), reason="compiled kernels not built")
def test_auto_mode_budget_fallback_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """In auto mode a query whose MIH work passes its budget is answered by the flat scan."""
    rng = np.random.default_rng(11)
    codes = random_codes(rng, 4000, 64)
    queries = random_codes(rng, 20, 64)
    flat = HammingIndex(64, mode="flat")
    flat.add(codes, np.arange(4000))
    expect_knn, expect_range = flat.search(queries, 30), flat.range_search(queries, 26)
    monkeypatch.setattr(hi, "MIH_MIN_ITEMS", 1000)
    for budget, min_budget in ((1e-6, 0), (1.0, 1 << 12), (100.0, 0)):
        monkeypatch.setattr(hi, "MIH_BUDGET", budget)
        monkeypatch.setattr(hi, "_MIN_BUDGET", min_budget)
        auto = HammingIndex(64, mode="auto")
        auto.add(codes, np.arange(4000))
        assert_same(auto.search(queries, 30), expect_knn)
        assert auto._mih is not None
        assert_same(auto.range_search(queries, 26), expect_range)
    auto._mih_skip = 0
    monkeypatch.setattr(hi, "MIH_MAX_BITS", 32)
    assert auto._mih_for_search() is None  # codes longer than MIH_MAX_BITS: flat


# ----------------------------------------------------------------------------- fallback


@pytest.mark.skipif(os.environ.get("HASHSTREAM_ALLOW_NO_EXT") == "1",
                    reason="HASHSTREAM_ALLOW_NO_EXT=1: the NumPy fallback is accepted")
def test_extension_is_built() -> None:
    """`pip install -e .` compiles hashstream/hamming/_hamming.c (gcc on CI)."""
    assert hi.native_available(), "the compiled Hamming kernels did not build or import"
    assert hi.native_isa() in ("avx512", "avx2", "popcnt", "scalar")


def test_numpy_fallback_used_without_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    codes, queries = random_codes(rng, 500, 128, pool=50), random_codes(rng, 5, 128)
    expect = None
    if hi.native_available():
        native = HammingIndex(128)
        native.add(codes, np.arange(500))
        expect = native.search(queries, 20)
    monkeypatch.setattr(hi, "_native", None)
    index = HammingIndex(128)
    assert not index.native and not hi.native_available() and hi.native_isa() is None
    index.add(codes, np.arange(500))
    ref = Reference(128)
    ref.add(codes, np.arange(500))
    assert_same(index.search(queries, 20), ref.search(queries, 20))
    if expect is not None:
        assert_same(index.search(queries, 20), expect)
    with pytest.raises(RuntimeError):
        HammingIndex(128, backend="native")


# ----------------------------------------------------------------------------- API


@pytest.mark.parametrize("engine", ["numpy", *ISAS[-1:]], indirect=True)
def test_get_codes_contains_and_upsert(engine: str) -> None:
    rng = np.random.default_rng(8)
    index = make_index(72, engine)
    codes = random_codes(rng, 100, 72)
    index.add(codes, np.arange(100, 200))
    np.testing.assert_array_equal(index.get_codes([150, 100, 199]), codes[[50, 0, 99]])
    assert index.contains([100, 5, 199]).tolist() == [True, False, True]
    assert 150 in index and 5 not in index and "x" not in index
    with pytest.raises(KeyError):
        index.get_codes([150, 5])
    # search by a stored item: it is its own nearest neighbour
    d, i = index.search(index.get_codes([123]), 1)
    assert d.tolist() == [[0]] and i.tolist() == [[123]]
    # re-adding an id replaces its code and moves it to the end of the insertion order
    index.add(codes[:1], [150])
    assert len(index) == 100
    np.testing.assert_array_equal(index.get_codes([150]), codes[:1])
    d, i = index.search(codes[:1], 2)
    assert d.tolist() == [[0, 0]] and i.tolist() == [[100, 150]]
    assert index.ids().tolist() == [*range(100, 150), *range(151, 200), 150]
    assert index.remove([150, 150, 5]) == 1 and 150 not in index and len(index) == 99
    assert index.memory_bytes() > 0 and "HammingIndex(bits=72" in repr(index)


@pytest.mark.parametrize("engine", ["numpy", *ISAS[-1:]], indirect=True)
def test_views_keep_their_moment(engine: str) -> None:
    """A view sees the entries of its moment after later adds, upserts, removals and a
    compaction; lookups switch from the ordered path to sorted arrays on the first id out of
    order and agree with a reference throughout."""
    rng = np.random.default_rng(11)
    index = make_index(64, engine, auto_compact=False)
    ref = Reference(64)
    codes = random_codes(rng, 300, 64)
    index.add(codes, np.arange(300))
    ref.add(codes, np.arange(300))
    assert index.memory_bytes() == index._store.nbytes + index._ids.nbytes + index._removed.nbytes
    before = index.view()
    queries = random_codes(rng, 4, 64)
    expected = before.search(queries, 50)
    again = random_codes(rng, 20, 64)
    index.add(again, np.arange(100, 120))  # upserts: ids out of order from now on
    ref.add(again, np.arange(100, 120))
    index.remove(np.arange(0, 10))
    ref.remove(np.arange(0, 10))
    index.add(random_codes(rng, 5, 64), np.arange(1000, 1005))
    for got, want in zip(before.search(queries, 50), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert len(before) == 300 and before.positions([0, 105, 1000]).tolist() == [0, 105, -1]
    np.testing.assert_array_equal(before.codes_at(before.positions([105])), codes[105:106])
    ref.add(index.get_codes(np.arange(1000, 1005)), np.arange(1000, 1005))
    kept = index.compact()
    assert kept.size == len(index) == 300 - 10 + 5
    for got, want in zip(index.view().search(queries, 40), ref.search(queries, 40), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(index.get_codes([105]), again[5:6])


def test_tables_built_by_the_owner_only() -> None:
    """``build_tables_on_search=False``: searches never build MIH tables; ``build_tables``
    does, and later adds are scanned flat past the tables (same results as the flat scan)."""
    if native is None:
        pytest.skip("MIH needs the compiled kernels")
    rng = np.random.default_rng(12)
    owner = HammingIndex(64, backend="native", mode="mih", build_tables_on_search=False)
    flat = HammingIndex(64, backend="native", mode="flat")
    codes = random_codes(rng, 3000, 64)
    for index in (owner, flat):
        index.add(codes, np.arange(3000))
    queries = random_codes(rng, 5, 64)
    owner.search(queries, 10)
    assert owner.tables_bytes() == 0 and owner.tables_due()
    assert owner.build_tables() and owner.tables_bytes() > 0 and not owner.tables_due()
    extra = random_codes(rng, 100, 64)
    for index in (owner, flat):
        index.add(extra, np.arange(5000, 5100))
    assert owner._mih is not None and owner._mih.n0 == 3000
    for got, want in zip(owner.search(queries, 10), flat.search(queries, 10), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("engine", ["numpy", *ISAS[-1:]], indirect=True)
def test_compact_keeps_order_and_results(engine: str) -> None:
    rng = np.random.default_rng(9)
    index = make_index(32, engine, mode="flat")
    codes = random_codes(rng, 2000, 32, pool=30)
    index.add(codes, np.arange(2000))
    index.remove(np.arange(0, 2000, 3))
    queries = random_codes(rng, 8, 32)
    knn, ranges, ids = index.search(queries, 50), index.range_search(queries, 12), index.ids()
    index.compact()
    assert index._n == len(index) == 2000 - 667
    assert_same(index.search(queries, 50), knn)
    assert_same(index.range_search(queries, 12), ranges)
    np.testing.assert_array_equal(index.ids(), ids)
    # removing more than a quarter (and over 1,024 entries) compacts on its own
    index.remove(index.ids()[:1100])
    assert index._n_removed == 0 and index._n == len(index) == 2000 - 667 - 1100


@pytest.mark.parametrize("engine", ["numpy", *ISAS[-1:]], indirect=True)
def test_to_arrays_from_arrays_round_trip(engine: str) -> None:
    rng = np.random.default_rng(10)
    index = make_index(128, engine)
    index.add(random_codes(rng, 300, 128, pool=40), np.arange(300))
    index.remove(np.arange(0, 300, 4))
    index.add(random_codes(rng, 10, 128), np.arange(1, 300, 30))  # replacements
    arrays = index.to_arrays()
    assert set(arrays) == {"bits", "codes", "ids", "removed"}
    assert all(isinstance(a, np.ndarray) and a.dtype.kind in "biu" for a in arrays.values())
    assert arrays["codes"].shape == (310, 16) and arrays["removed"].sum() == 75 + 10
    copy = HammingIndex.from_arrays({k: v.copy() for k, v in arrays.items()},
                                    backend="numpy" if engine == "numpy" else "native")
    assert_same(tuple(copy.to_arrays().values()), tuple(arrays.values()))
    queries = random_codes(rng, 6, 128)
    assert_same(copy.search(queries, 40), index.search(queries, 40))
    assert_same(copy.range_search(queries, 60), index.range_search(queries, 60))
    np.testing.assert_array_equal(copy.get_codes([31, 2]), index.get_codes([31, 2]))
    copy.add(random_codes(rng, 1, 128), [31])  # still behaves as an index
    assert len(copy) == len(index)
    bad = dict(arrays)
    bad["removed"] = np.zeros(310, dtype=bool)  # id 1, 31, ... live twice
    with pytest.raises(ValueError):
        HammingIndex.from_arrays(bad)


def test_faiss_agrees_on_distances() -> None:
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(12)
    for bits in (32, 64, 128):
        codes, queries = random_codes(rng, 3000, bits), random_codes(rng, 10, bits)
        ref = faiss.IndexBinaryFlat(bits)
        ref.add(codes)
        fd, _ = ref.search(queries, 30)
        index = HammingIndex(bits)
        index.add(codes, np.arange(3000))
        np.testing.assert_array_equal(index.search(queries, 30)[0], fd)


def test_validation() -> None:
    for bits in (0, 4, 12, 1032, -8):
        with pytest.raises(ValueError):
            HammingIndex(bits)
    with pytest.raises(ValueError):
        HammingIndex(64, mode="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        HammingIndex(64, backend="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        HammingIndex(64, backend="numpy", mode="mih")
    index = HammingIndex(64)
    with pytest.raises(TypeError):
        index.add(np.zeros((2, 8), dtype=np.int64), [1, 2])
    with pytest.raises(ValueError):
        index.add(np.zeros((2, 4), dtype=np.uint8), [1, 2])
    with pytest.raises(ValueError):
        index.add(np.zeros((2, 8), dtype=np.uint8), [1])
    with pytest.raises(ValueError):
        index.add(np.zeros((2, 8), dtype=np.uint8), [1, 1])
    with pytest.raises(ValueError):
        index.add(np.zeros((1, 8), dtype=np.uint8), [-1])
    with pytest.raises(TypeError):
        index.add(np.zeros((1, 8), dtype=np.uint8), [1.5])
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 8), dtype=np.uint8), -1)
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 7), dtype=np.uint8), 1)
    index.add(np.zeros((0, 8), dtype=np.uint8), [])
    assert len(index) == 0
