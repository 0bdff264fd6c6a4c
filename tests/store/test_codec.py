"""The array codec: exact round trips, and bad bytes rejected with CodecError (never pickle)."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hashstream.store.codec import (
    MAGIC,
    CodecError,
    decode_array,
    decode_arrays,
    encode_array,
    encode_arrays,
)

DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
          np.uint64, np.float16, np.float32, np.float64]
SHAPES = [(), (0,), (1,), (7,), (3, 4), (0, 5), (5, 0), (2, 3, 4), (1, 1, 1, 1)]


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert b.dtype == a.dtype.newbyteorder("=") or b.dtype == a.dtype
    assert b.dtype.kind == a.dtype.kind and b.dtype.itemsize == a.dtype.itemsize
    assert b.shape == a.shape
    assert b.dtype.isnative
    np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_round_trip(dtype: Any, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "b":
        a = rng.integers(0, 2, shape).astype(dtype)
    elif np.dtype(dtype).kind == "f":
        a = rng.standard_normal(shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    out = decode_array(encode_array(a))
    _same(a, out)
    assert out.flags.writeable
    out[...] = 0  # writeable, and not a view of the input
    if a.size:
        assert not np.shares_memory(out, a)


def test_extremes_and_special_floats() -> None:
    for dtype in (np.int64, np.uint64, np.int8, np.uint8):
        info = np.iinfo(dtype)
        a = np.array([info.min, info.max, 0], dtype=dtype)
        _same(a, decode_array(encode_array(a)))
    f = np.array([np.nan, np.inf, -np.inf, -0.0, 5e-324, np.finfo(np.float64).max])
    out = decode_array(encode_array(f))
    assert np.array_equal(out, f, equal_nan=True)
    assert np.signbit(out[3])


@pytest.mark.parametrize("dtype", [">i2", ">i4", ">i8", ">u4", ">f4", ">f8", "<f8", "=i4"])
def test_big_endian_input(dtype: str) -> None:
    a = np.arange(-5, 7).reshape(3, 4).astype(dtype)
    blob = encode_array(a)
    header = json.loads(blob[8:8 + struct.unpack("<I", blob[4:8])[0]])
    assert header["dtype"].startswith(("<", "|"))  # stored little-endian
    out = decode_array(blob)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, a)
    # The same values in either byte order encode to the same bytes.
    assert blob == encode_array(a.astype(np.dtype(dtype).newbyteorder("<")))


def test_non_contiguous_input() -> None:
    base = np.arange(60, dtype=np.int32).reshape(6, 10)
    for view in (base[::2], base[:, ::3], base.T, base[::-1, 1:9:2], base[:, 4]):
        assert not view.flags.c_contiguous or view.ndim == 1
        out = decode_array(encode_array(view))
        np.testing.assert_array_equal(out, view)
        assert out.shape == view.shape


def test_encode_plain_python_values() -> None:
    np.testing.assert_array_equal(decode_array(encode_array([[1, 2], [3, 4]])),
                                  [[1, 2], [3, 4]])
    assert decode_array(encode_array(3.5)).shape == ()
    assert decode_array(encode_array(True)).dtype == np.bool_


def test_decode_accepts_memoryview_and_bytearray() -> None:
    blob = encode_array(np.arange(10, dtype=np.uint16))
    for data in (memoryview(blob), bytearray(blob)):
        np.testing.assert_array_equal(decode_array(data), np.arange(10))  # type: ignore[arg-type]


def test_encode_arrays_round_trip() -> None:
    arrays = {"codes": np.ones((3, 2), np.uint8), "ids": np.arange(3), "v": np.asarray(7)}
    enc = encode_arrays(arrays)
    assert set(enc) == set(arrays) and all(isinstance(v, bytes) for v in enc.values())
    out = decode_arrays({k.encode(): v for k, v in enc.items()})  # Redis hands back bytes keys
    assert set(out) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(out[k], arrays[k])
    assert set(decode_arrays(enc)) == set(arrays)


@pytest.mark.parametrize("value", [np.array([object(), 1], dtype=object), np.array(["ab", "c"]),
                                   np.array([b"x"]), np.array([1 + 2j]),
                                   np.array(["2020-01-01"], dtype="datetime64[D]"),
                                   np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])],
                         ids=["object", "unicode", "bytes", "complex", "datetime", "structured"])
def test_encode_rejects_non_numeric(value: np.ndarray) -> None:
    with pytest.raises(CodecError):
        encode_array(value)


def _blob(header: Any, body: bytes = b"", raw_header: bytes | None = None) -> bytes:
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(h)) + h + body


GOOD = encode_array(np.arange(6, dtype=np.int32).reshape(2, 3))

BAD_BLOBS = {
    "empty": b"",
    "short": b"HSA",
    "bad-magic": b"XXXX" + GOOD[4:],
    "pickle": b"\x80\x04\x95" + b"\x00" * 40,
    "npy": b"\x93NUMPY\x01\x00" + b"\x00" * 40,
    "magic-only": MAGIC,
    "truncated-length": MAGIC + b"\x10\x00",
    "truncated-header": GOOD[:12],
    "header-length-huge": MAGIC + struct.pack("<I", 2**32 - 1) + b"{}",
    "header-not-json": _blob(None, raw_header=b"{not json"),
    "header-not-utf8": _blob(None, raw_header=b"\xff\xfe\xfd"),
    "header-list": _blob([1, 2]),
    "header-no-dtype": _blob({"shape": [1]}, b"\x00" * 4),
    "header-no-shape": _blob({"dtype": "<i4"}, b"\x00" * 4),
    "dtype-unknown": _blob({"dtype": "not-a-dtype", "shape": [1]}, b"\x00" * 4),
    "dtype-object": _blob({"dtype": "|O", "shape": [1]}, b"\x00" * 8),
    "dtype-unicode": _blob({"dtype": "<U2", "shape": [1]}, b"\x00" * 8),
    "dtype-complex": _blob({"dtype": "<c8", "shape": [1]}, b"\x00" * 8),
    "dtype-void": _blob({"dtype": "|V4", "shape": [1]}, b"\x00" * 4),
    "dtype-subarray": _blob({"dtype": [["a", "<i4"]], "shape": [1]}, b"\x00" * 4),
    "dtype-number": _blob({"dtype": 5, "shape": [1]}, b"\x00" * 4),
    "shape-negative": _blob({"dtype": "<i4", "shape": [-1]}, b""),
    "shape-not-list": _blob({"dtype": "<i4", "shape": 3}, b"\x00" * 12),
    "shape-strings": _blob({"dtype": "<i4", "shape": ["a"]}, b"\x00" * 4),
    "body-short": GOOD[:-1],
    "body-long": GOOD + b"\x00",
    "body-missing": _blob({"dtype": "<i8", "shape": [4]}),
    "body-for-0d": _blob({"dtype": "<i8", "shape": []}, b"\x00" * 7),
}


@pytest.mark.parametrize("blob", list(BAD_BLOBS.values()), ids=list(BAD_BLOBS))
def test_decode_rejects_bad_bytes(blob: bytes) -> None:
    with pytest.raises(CodecError):
        decode_array(blob)


BAD_SHAPES = {  # shape entries, and a body of the length the decoder would compute
    "2^32x2^32": ("[4294967296, 4294967296]", b""),  # the int64 product wraps to 0
    "2^62x4": ("[4611686018427387904, 4]", b""),
    "infinity": ("[Infinity]", b""),
    "1e300": ("[1e300]", b""),
    "beyond-int64": ("[99999999999999999999999]", b""),
    "65-dims": ("[" + ",".join(["1"] * 65) + "]", b"\x00"),
    "fractional": ("[1.7]", b"\x00"),  # silently read as 1
}


@pytest.mark.parametrize("shape,body", list(BAD_SHAPES.values()), ids=list(BAD_SHAPES))
def test_decode_rejects_bad_shape_entries(shape: str, body: bytes) -> None:
    header = ('{"dtype": "<u1", "shape": ' + shape + "}").encode()
    with pytest.raises(CodecError):
        decode_array(MAGIC + struct.pack("<I", len(header)) + header + body)


def test_bad_bytes_are_value_errors() -> None:
    """CodecError is a ValueError, so callers that catch ValueError keep working."""
    assert issubclass(CodecError, ValueError)


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(dtype=st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(endianness="?"),
                                  hnp.unsigned_integer_dtypes(endianness="?"),
                                  hnp.floating_dtypes(endianness="?")),
                  shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
def test_round_trip_property(a: np.ndarray) -> None:
    out = decode_array(encode_array(a))
    assert out.shape == a.shape and out.dtype.kind == a.dtype.kind
    assert out.dtype.itemsize == a.dtype.itemsize and out.dtype.isnative
    assert np.array_equal(out, a, equal_nan=a.dtype.kind == "f")
    if a.ndim >= 2:  # a transposed (non-contiguous) view encodes the same values
        np.testing.assert_array_equal(decode_array(encode_array(a.T)), a.T)


def _refused_or_stable(data: bytes) -> np.ndarray | None:
    """decode_array's contract on any bytes: CodecError (None here), or a native, writeable
    numeric array whose own encoding decodes back to the very same bytes."""
    try:
        out = decode_array(data)
    except CodecError:
        return None
    assert isinstance(out, np.ndarray)
    assert out.dtype.kind in "biuf" and out.dtype.isnative and out.flags.writeable
    again = decode_array(encode_array(out))
    assert again.dtype == out.dtype and again.shape == out.shape
    assert again.tobytes() == out.tobytes()
    return out


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=200).map(lambda b: MAGIC + b)))
def test_random_bytes_raise_codec_error_or_round_trip(data: bytes) -> None:
    if not data.startswith(MAGIC):
        with pytest.raises(CodecError, match="magic"):
            decode_array(data)
    else:
        _refused_or_stable(data)


GOOD_DTYPES = ["|b1", "|i1", "|u1", "<i2", ">i2", "<i4", ">i4", "<u8", "<f2", ">f4", "<f8"]
BAD_DTYPES = ["<c8", "|O", "<U3", "|V4", "|S2", "<M8[D]", "nonsense"]


@settings(max_examples=300, deadline=None)
@given(dtype=st.sampled_from(GOOD_DTYPES + BAD_DTYPES),
       shape=st.lists(st.integers(-1, 4), max_size=4),
       extra=st.sampled_from([0, 0, 0, -1, 1, 3]), data=st.data())
def test_framed_headers_decode_exactly_or_raise_codec_error(dtype: str, shape: list[int],
                                                            extra: int,
                                                            data: st.DataObject) -> None:
    """Well-framed blobs with fuzzed headers and bodies: a numeric dtype, a non-negative shape
    and a body of the right size decode to exactly those bytes' values (and encode back to the
    same blob when little-endian); anything else raises CodecError."""
    header = json.dumps({"dtype": dtype, "shape": shape}).encode()
    framed = dtype in GOOD_DTYPES and all(s >= 0 for s in shape)
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize if framed else 8
    body = data.draw(st.binary(min_size=max(size + extra, 0), max_size=max(size + extra, 0)))
    good = framed and len(body) == size
    blob = MAGIC + struct.pack("<I", len(header)) + header + body
    if not good:
        with pytest.raises(CodecError):
            decode_array(blob)
        return
    out = decode_array(blob)
    expected = np.frombuffer(body, dtype=np.dtype(dtype)).reshape(shape)
    assert out.shape == tuple(shape) and out.dtype == expected.dtype.newbyteorder("=")
    assert out.tobytes() == expected.astype(out.dtype).tobytes()
    if not dtype.startswith(">"):
        assert encode_array(out) == blob
    assert _refused_or_stable(blob) is not None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_encoding_raises_codec_error_or_decodes(data: st.DataObject) -> None:
    blob = bytearray(encode_array(np.arange(12, dtype=np.int16).reshape(3, 4)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    _refused_or_stable(bytes(blob[:cut]))


def test_encode_array_as_converts_in_one_buffer_and_decodes_like_encode_array() -> None:
    from hashstream.store.codec import encode_array_as

    x = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    for dtype in ("float32", "float16", "float64"):
        encoded = encode_array_as(x, dtype)
        assert isinstance(encoded, memoryview)
        got = decode_array(encoded)
        assert got.dtype == np.dtype(dtype) and got.shape == x.shape
        np.testing.assert_array_equal(got, x.astype(dtype))
    same = encode_array_as(x, "float32")
    assert decode_array(bytes(same)).tobytes() == decode_array(encode_array(x)).tobytes()
    empty = decode_array(encode_array_as(np.zeros((0, 3), np.float32), "float16"))
    assert empty.shape == (0, 3) and empty.dtype == np.float16
