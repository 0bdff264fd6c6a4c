"""Arrays to bytes and back: a small header (magic, dtype, shape) then raw little-endian data.

No pickle: a stored value can be read by any language, and bad bytes raise :class:`CodecError`
instead of executing anything.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

MAGIC = b"HSA1"
_ALLOWED_KINDS = frozenset("biuf")  # bool, signed, unsigned, float
_MAX_DIMS = 32


class CodecError(ValueError):
    """Bytes that are not an encoded array (or an array that cannot be encoded)."""


def encode_array(array: Any) -> bytes:
    """``MAGIC | u32 header length | JSON {dtype, shape} | little-endian data``."""
    a = np.asarray(array)
    if a.dtype.kind not in _ALLOWED_KINDS:
        raise CodecError(f"cannot encode dtype {a.dtype} (numbers and booleans only)")
    le = a.astype(a.dtype.newbyteorder("<"), copy=False)
    header = json.dumps({"dtype": le.dtype.str, "shape": list(a.shape)}).encode()
    # One join: the array's buffer is copied once, not once per concatenation.
    return b"".join((MAGIC, struct.pack("<I", len(header)), header,
                     np.ascontiguousarray(le).reshape(-1).view(np.uint8).data))


def encode_array_as(array: np.ndarray[Any, Any], dtype: Any) -> memoryview:
    """:func:`encode_array` of ``array`` converted to ``dtype``, written in one pass into one
    preallocated, never zero-filled buffer (the header, then the converted data: the only copy
    of the data). A memoryview goes to Redis as it is (redis-py does not copy it into the
    command)."""
    target = np.dtype(dtype).newbyteorder("<")
    if target.kind not in _ALLOWED_KINDS:
        raise CodecError(f"cannot encode dtype {target} (numbers and booleans only)")
    header = json.dumps({"dtype": target.str, "shape": list(array.shape)}).encode()
    header += b" " * (-(8 + len(header)) % 16)  # JSON allows the padding: aligned data
    offset = 8 + len(header)
    out = np.empty(offset + array.size * target.itemsize, dtype=np.uint8)
    out[:offset] = np.frombuffer(MAGIC + struct.pack("<I", len(header)) + header, np.uint8)
    data = out[offset:].view(target)
    np.copyto(data.reshape(array.shape), array, casting="unsafe")
    return out.data


def array_shape(data: bytes | memoryview) -> tuple[int, ...]:
    """The shape of an encoded array, read from its header alone (no data decoded)."""
    return _header(memoryview(data))[1]


def _header(buf: memoryview) -> tuple[np.dtype[Any], tuple[int, ...], int]:
    """dtype, shape and data offset of an encoded array, validated."""
    if len(buf) < 8 or bytes(buf[:4]) != MAGIC:
        raise CodecError("not an encoded array (bad magic)")
    (hlen,) = struct.unpack("<I", buf[4:8])
    if 8 + hlen > len(buf):
        raise CodecError("truncated array header")
    try:
        header = json.loads(bytes(buf[8:8 + hlen]))
        dtype = np.dtype(header["dtype"])
        raw_shape = header["shape"]
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise CodecError(f"bad array header: {exc}") from exc
    if (not isinstance(raw_shape, list) or len(raw_shape) > _MAX_DIMS
            or not all(type(s) is int and s >= 0 for s in raw_shape)):
        raise CodecError(f"bad array header: shape {raw_shape!r}")
    shape = tuple(raw_shape)
    if dtype.kind not in _ALLOWED_KINDS or dtype.hasobject:
        raise CodecError(f"bad array header: dtype {dtype}")
    return dtype, shape, 8 + hlen


def decode_array(data: bytes | bytearray | memoryview, copy: bool = True
                 ) -> np.ndarray[Any, Any]:
    """Inverse of :func:`encode_array`; the result owns its memory and is writeable, or with
    ``copy=False`` is a view of ``data`` (read-only for bytes) where the byte order allows."""
    buf = memoryview(data)
    dtype, shape, offset = _header(buf)
    count = math.prod(shape)
    body = buf[offset:]
    if len(body) != count * dtype.itemsize:
        raise CodecError(f"array body has {len(body)} bytes, expected {count * dtype.itemsize}")
    out = np.frombuffer(body, dtype=dtype, count=count).reshape(shape)
    return out.astype(dtype.newbyteorder("="), copy=copy)


def encode_arrays(arrays: dict[str, Any]) -> dict[str, bytes]:
    """Encode each array of a dict (for a Redis hash)."""
    return {name: encode_array(a) for name, a in arrays.items()}


def decode_arrays(fields: dict[bytes, bytes] | dict[str, bytes]) -> dict[str, np.ndarray[Any, Any]]:
    """Decode a Redis hash of encoded arrays."""
    return {(k.decode() if isinstance(k, bytes) else k): decode_array(v) for k, v in fields.items()}
