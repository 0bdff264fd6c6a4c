"""The bounded .npz body reader: round trips, every rejection with its field, decompression
bombs rejected from the header with bounded memory, lying zip entries, and a fuzz that only
ever sees the service's three error classes."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

from hashstream.service.errors import InvalidInput, MalformedBody, PayloadTooLarge
from hashstream.service.npz_body import read_npz

MB = 1 << 20
MEMBERS = ("features", "labels", "ids", "text", "tokens")
ZEROS = bytes(MB)


def savez(compressed: bool = False, **arrays: Any) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def npy_header(shape: tuple[int, ...], descr: Any = "<f8") -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                            "shape": shape})
    return buf.getvalue()


def deflate_zeros(prefix: bytes, n_zeros: int) -> tuple[bytes, int]:
    """Raw deflate of ``prefix`` then ``n_zeros`` zero bytes, built without holding them: after
    a full flush the compressor starts afresh, so each MiB of zeros compresses to the same
    segment, computed once. Also returns the CRC-32 of the whole."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    segment = c.compress(ZEROS) + c.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(n_zeros, MB)
    tail = c.compress(bytes(rest)) + c.flush()
    crc = zlib.crc32(prefix)
    for _ in range(whole):
        crc = zlib.crc32(ZEROS, crc)
    crc = zlib.crc32(bytes(rest), crc)
    return head + segment * whole + tail, crc


def zip_one(name: str, data: bytes, *, crc: int, size: int, method: int = 8) -> bytes:
    """A one-entry zip written by hand, so the central directory can state any ``size``/CRC."""
    fname = name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data),
                        size, len(fname), 0) + fname
    central = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc,
                          len(data), size, len(fname), 0, 0, 0, 0, 0, 0) + fname
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central),
                      len(local) + len(data), 0)
    return local + data + central + end


def peak_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Peak traced allocation while ``fn`` runs (NumPy reports its buffers to tracemalloc),
    and what it returned or raised."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        try:
            result: Any = fn()
        except Exception as exc:  # noqa: BLE001 - returned to the caller to inspect
            result = exc
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


# --- round trips ---------------------------------------------------------------------------

def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "features": rng.standard_normal((7, 5)).astype(np.float32),
        "labels": (rng.random((7, 3)) < 0.5).astype(np.uint8),
        "ids": np.arange(7, dtype=np.int64),
        "text": np.asfortranarray(rng.standard_normal((4, 6))),
        "tokens": np.zeros((0, 9), dtype=np.int32),
        "b": rng.random(5) < 0.5,
        "c": (rng.standard_normal(3) + 1j).astype(np.complex64),
        "be": np.arange(6, dtype=">i4").reshape(2, 3),
        "s": np.array([b"ab", b"xyz"], dtype="S3"),
        "u": np.array(["héllo", "z"]),
        "dt": np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
        "scalar": np.array(3.5),
        "cube": np.arange(24, dtype=np.uint16).reshape(2, 3, 4),
        "empty": np.zeros(0, dtype=np.float64),
        "f3": np.asfortranarray(np.arange(24, dtype=np.int8).reshape(2, 3, 4)),
    }


@pytest.mark.parametrize("compressed", [False, True])
def test_round_trip_keeps_dtype_shape_and_order(compressed: bool) -> None:
    arrays = _arrays()
    out = read_npz(savez(compressed, **arrays), members=arrays, max_bytes=MB)
    assert out.keys() == arrays.keys()
    for name, want in arrays.items():
        got = out[name]
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        if want.ndim > 1 and want.flags.f_contiguous and not want.flags.c_contiguous:
            assert got.flags.f_contiguous, name
        # a compressed member is read into its own array; a stored one is a view of the body
        assert got.flags.writeable == compressed, name


def test_a_stored_member_is_a_view_of_the_body_and_its_crc_is_checked() -> None:
    x = np.arange(1000, dtype=np.float32).reshape(100, 10)
    body = savez(False, features=x)
    got = read_npz(body, members=MEMBERS, max_bytes=MB)["features"]
    np.testing.assert_array_equal(got, x)
    assert not got.flags.owndata and not got.flags.writeable
    at = body.find(x.tobytes()[:64])  # flip one data byte: the CRC-32 no longer matches
    bad = body[:at + 5] + bytes([body[at + 5] ^ 0xFF]) + body[at + 6:]
    with pytest.raises(MalformedBody) as caught:
        read_npz(bad, members=MEMBERS, max_bytes=MB)
    assert caught.value.field == "features" and "CRC" in caught.value.message


def test_members_may_be_absent_and_bare_names_count() -> None:
    assert read_npz(savez(), members=MEMBERS, max_bytes=MB) == {}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # a member stored without the .npy suffix
        z.writestr("ids", npy_header((2,), "<i8") + np.arange(2, dtype="<i8").tobytes())
    out = read_npz(buf.getvalue(), members=MEMBERS, max_bytes=MB)
    np.testing.assert_array_equal(out["ids"], [0, 1])


def test_budget_is_exact_and_shared_by_all_members() -> None:
    body = savez(features=np.zeros(100), labels=np.zeros(25))  # 800 + 200 bytes
    assert set(read_npz(body, members=MEMBERS, max_bytes=1000)) == {"features", "labels"}
    with pytest.raises(PayloadTooLarge) as err:
        read_npz(body, members=MEMBERS, max_bytes=999)
    assert err.value.field == "labels" and "999" in err.value.message


# --- rejections ----------------------------------------------------------------------------

def test_decompression_bomb_is_refused_from_its_header_with_bounded_memory() -> None:
    """The body ``np.savez_compressed(buf, features=np.zeros((500_000, 783)))`` writes (built
    segment by segment here, since compressing 3.1 GB takes ~20 s): ~3 MB that np.load would
    inflate to 3.1 GB. The reader refuses it from the header, allocating a few KiB."""
    header = npy_header((500_000, 783))
    data, crc = deflate_zeros(header, 500_000 * 783 * 8)
    body = zip_one("features.npy", data, crc=crc, size=len(header) + 500_000 * 783 * 8)
    info = zipfile.ZipFile(io.BytesIO(body)).infolist()[0]
    assert info.file_size > 3_000_000_000 and len(body) < 4 * MB

    peak, result = peak_bytes(lambda: read_npz(body, members=MEMBERS, max_bytes=64 * MB))
    assert isinstance(result, PayloadTooLarge), result
    assert result.field == "features" and str(64 * MB) in result.message
    print(f"bomb: body {len(body)} bytes, peak traced {peak} bytes")
    assert peak < 4 * len(body) + 2 * MB, peak


def test_too_many_members() -> None:
    body = savez(**{f"a{i}": np.zeros(1) for i in range(17)})
    with pytest.raises(PayloadTooLarge) as err:
        read_npz(body, members=[f"a{i}" for i in range(17)], max_bytes=MB)
    assert err.value.field == "body"
    assert len(read_npz(body, members=[f"a{i}" for i in range(17)], max_bytes=MB,
                        max_members=17)) == 17


def test_unknown_member_is_named() -> None:
    body = savez(features=np.zeros((2, 2)), extra=np.zeros(1))
    with pytest.raises(InvalidInput) as err:
        read_npz(body, members=MEMBERS, max_bytes=MB)
    assert err.value.field == "extra" and "unknown array" in err.value.message
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # an empty name cannot be the field: "body" is
        z.writestr(".npy", npy_header((1,)) + bytes(8))
    with pytest.raises(InvalidInput) as err:
        read_npz(buf.getvalue(), members=MEMBERS, max_bytes=MB)
    assert err.value.field == "body"


@pytest.mark.parametrize("array", [
    np.array([1, None], dtype=object),
    np.zeros(3, dtype=[("x", "<f4"), ("y", "<i4")]),
    np.zeros(2, dtype="V4"),
], ids=["object", "structured", "void"])
def test_unsafe_dtypes_are_refused(array: np.ndarray) -> None:
    with pytest.raises(InvalidInput) as err:
        read_npz(savez(features=array), members=MEMBERS, max_bytes=MB)
    assert err.value.field == "features"


def test_subarray_dtype_is_refused() -> None:
    buf = io.BytesIO()  # np.save expands a subarray dtype into the shape; a header need not
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("features.npy", npy_header((2,), ("<f8", (3,))) + bytes(48))
    with pytest.raises(InvalidInput) as err:
        read_npz(buf.getvalue(), members=MEMBERS, max_bytes=MB)
    assert err.value.field == "features"


@pytest.mark.parametrize("body", [b"", b"hello", b"PK\x03\x04" + bytes(40)], ids=repr)
def test_not_a_zip(body: bytes) -> None:
    with pytest.raises(MalformedBody) as err:
        read_npz(body, members=MEMBERS, max_bytes=MB)
    assert err.value.field == "body"


def test_truncated_body() -> None:
    body = savez(features=np.arange(1000.0))
    for cut in (len(body) // 2, len(body) - 1, 30):
        with pytest.raises(MalformedBody) as err:
            read_npz(body[:cut], members=MEMBERS, max_bytes=MB)
        assert err.value.field == "body"


@pytest.mark.parametrize("payload", [
    b"not an array at all",
    b"\x93NUMPY\x01\x00",  # magic, then nothing
    b"\x93NUMPY\x03\x00" + bytes(20),  # an unsupported format version
    b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    ",
    b"\x93NUMPY\x02\x00\xff\xff\xff\xff",  # claims a 4 GiB header
    npy_header((-3,)),
    npy_header((4,)) + bytes(31),  # 32 bytes declared, 31 stored
    npy_header((4,)) + bytes(33),  # one byte too many
], ids=["text", "magic-only", "v3", "bad-header", "huge-header", "negative", "short", "long"])
def test_member_that_is_not_a_valid_npy(payload: bytes) -> None:
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=method) as z:
            z.writestr("features.npy", payload)
        with pytest.raises(MalformedBody) as err:
            read_npz(buf.getvalue(), members=MEMBERS, max_bytes=MB)
        assert err.value.field == "features", err.value.message


def test_duplicate_member() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z, pytest.warns(UserWarning):
        for _ in range(2):
            z.writestr("ids.npy", npy_header((1,), "<i8") + bytes(8))
    with pytest.raises(MalformedBody) as err:
        read_npz(buf.getvalue(), members=MEMBERS, max_bytes=MB)
    assert err.value.field == "ids"


def test_corrupt_compressed_data_and_crc() -> None:
    body = bytearray(savez(True, features=np.arange(5000.0)))
    body[200] ^= 0xFF  # inside the deflate stream
    with pytest.raises(MalformedBody) as err:
        read_npz(bytes(body), members=MEMBERS, max_bytes=MB)
    assert err.value.field == "features"


# --- zip entries whose declared size lies ----------------------------------------------------

BIG = 200 * MB  # inflated size of the lying entries below


def test_declared_size_smaller_than_the_stream_is_honoured() -> None:
    """The central directory says header + 80 bytes; the deflate stream holds 200 MB more.
    zipfile stops at the declared size (CRC of those bytes), so the 10 zeros come back."""
    header = npy_header((10,))
    data, _ = deflate_zeros(header, BIG)
    body = zip_one("features.npy", data, crc=zlib.crc32(header + bytes(80)),
                   size=len(header) + 80)
    peak, result = peak_bytes(lambda: read_npz(body, members=MEMBERS, max_bytes=MB))
    np.testing.assert_array_equal(result["features"], np.zeros(10))
    assert peak < 4 * len(body) + 2 * MB, peak


def test_declared_size_smaller_than_the_header_claims() -> None:
    """The header declares 8 MB (within budget), the zip entry only 100 bytes of data."""
    header = npy_header((MB,))
    data, _ = deflate_zeros(header, 8 * MB)
    body = zip_one("features.npy", data, crc=zlib.crc32(header + bytes(100)),
                   size=len(header) + 100)
    with pytest.raises(MalformedBody) as err:
        read_npz(body, members=MEMBERS, max_bytes=16 * MB)
    assert err.value.field == "features" and "ends after 100" in err.value.message


def test_declared_size_huge_stream_huge_header_small_is_bounded() -> None:
    """Entry claims ~4 GiB and inflates to 200 MB, the header 80 bytes: at most 81 are read."""
    header = npy_header((10,))
    data, crc = deflate_zeros(header, BIG)
    body = zip_one("features.npy", data, crc=crc, size=2**32 - 1)
    peak, result = peak_bytes(lambda: read_npz(body, members=MEMBERS, max_bytes=MB))
    assert isinstance(result, MalformedBody) and result.field == "features", result
    assert "bytes after" in result.message
    assert peak < 4 * len(body) + 2 * MB, peak


# --- fuzz ----------------------------------------------------------------------------------

_VALID = [
    savez(features=np.arange(12.0).reshape(3, 4), labels=np.eye(3, dtype=np.uint8)),
    savez(True, features=np.arange(12.0, dtype=np.float32).reshape(3, 4),
          ids=np.arange(3)),
    savez(text=np.asfortranarray(np.ones((3, 2))), tokens=np.zeros((0, 2), dtype=np.int16)),
]
_ERRORS = (InvalidInput, MalformedBody, PayloadTooLarge)


def _check(body: bytes) -> None:
    try:
        out = read_npz(body, members=MEMBERS, max_bytes=64 * 1024, max_members=4)
    except _ERRORS as exc:
        assert exc.field, exc
        assert exc.message
        return
    assert set(out) <= set(MEMBERS)
    assert sum(a.nbytes for a in out.values()) <= 64 * 1024
    assert all(isinstance(a, np.ndarray) for a in out.values())


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=2000) | st.builds(lambda b: b"PK\x03\x04" + b, st.binary()))
def test_fuzz_random_bytes(body: bytes) -> None:
    _check(body)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    body = bytearray(draw(st.sampled_from(_VALID)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not body:
            break
        i = draw(st.integers(0, len(body) - 1))
        if op == "flip":
            body[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            body[i] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, ord("("), ord("'")]))
        elif op == "insert":
            body[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del body[i:i + draw(st.integers(1, 8))]
        else:
            del body[i:]
    return bytes(body)


@settings(max_examples=600, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_valid_bodies(body: bytes) -> None:
    _check(body)


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in open(f"/proc/{pid}/status").read().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def test_bomb_over_http_gets_413_and_the_api_stays_near_its_idle_size(start_server: Any,
                                                                       hs: Any) -> None:
    """The issue's case end to end: np.savez_compressed of zeros 500,000 × 783 (3.1 GB inflated)
    posted to a live API. It answers 413 naming the array, and its peak memory moves by less
    than 64 MB (np.load made it allocate 1.8 GB before answering)."""
    server = start_server("bomb", workers=0)
    name = hs.unique("bomb")
    server.create_index(name, 783)
    small = savez(True, features=np.ones((40, 783)), labels=np.eye(2, dtype=np.uint8)[[0, 1] * 20])
    r = server.http.post(f"/indexes/{name}/ingest", content=small,
                         headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text  # the .npz path is warm: its code and buffers loaded
    header = npy_header((500_000, 783))
    data, crc = deflate_zeros(header, 500_000 * 783 * 8)
    bomb = zip_one("features.npy", data, crc=crc, size=len(header) + 500_000 * 783 * 8)
    before = _peak_rss(server.pid)
    r = server.http.post(f"/indexes/{name}/ingest", content=bomb,
                         headers={"Content-Type": "application/octet-stream"})
    hs.assert_problem(r, 413, "features")
    grown = _peak_rss(server.pid) - before
    print(f"bomb over HTTP: body {len(bomb)} bytes, API peak grew {grown / MB:.1f} MiB")
    assert grown < 64 * MB, grown
