"""Bounded reading of ``.npz`` request bodies.

``np.load`` trusts each member's ``.npy`` header and allocates what it declares, so a small
compressed body can make the service allocate gigabytes. :func:`read_npz` reads each header
first, charges the declared size against a byte budget shared by all members, and only then
reads exactly that many bytes into a preallocated array (no second copy). A member stored
uncompressed (``np.savez``) is not copied at all: its array is a read-only view of the body,
checked against the member's CRC-32. Every failure is a :mod:`hashstream.service.errors` class
naming the member at fault, or ``"body"``.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from collections.abc import Collection
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from hashstream.service.errors import (
    InvalidInput,
    MalformedBody,
    PayloadTooLarge,
    ServiceError,
)

try:  # ISA-L's CRC-32: 1.4 ms for a 40 MB member against zlib's 16 ms (bench/RESULTS.md)
    from isal.isal_zlib import crc32
except ImportError:  # a platform without isal's wheels
    from zlib import crc32

__all__ = ["read_npz"]

# Magic string (8 bytes), header length (2 or 4 bytes) and numpy's own header limit.
_MAX_HEADER = 8 + 4 + 10_000
# Data is read in slices of this size: ZipExtFile.readinto copies through a temporary bytes.
_SLICE = 1 << 20
# Plain element types only: no objects (pickles), void/structured or subarray dtypes.
_KINDS = "biufcmMSU"
_MAX_DIMS = 32
_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0,
                   (2, 0): npy_format.read_array_header_2_0}


class _CappedReader:
    """A read-only view of a stream that refuses to read past ``cap`` bytes in all: bounds the
    header, whose declared length (up to 4 GiB in format 2.0) is otherwise read blindly."""

    def __init__(self, stream: IO[bytes], cap: int, name: str) -> None:
        self._stream, self._left, self._name = stream, cap, name

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            raise MalformedBody(f"the .npy header of array {self._name!r} is longer than "
                                f"{_MAX_HEADER} bytes", self._name)
        data = self._stream.read(n)
        self._left -= len(data)
        return data


def read_npz(body: bytes, *, members: Collection[str], max_bytes: int,
             max_members: int = 16) -> dict[str, np.ndarray[Any, Any]]:
    """The arrays of an ``.npz`` body, each with the dtype, shape and memory order it was
    stored with (callers convert). Only names in ``members`` are accepted; their data may hold
    at most ``max_bytes`` bytes in all, which is checked from the headers before any is read.
    Arrays of uncompressed members are read-only views of ``body``.

    Raises :class:`MalformedBody` (400) for a body that is not a readable archive of ``.npy``
    members, :class:`InvalidInput` (422) for an unknown member or a dtype that is not plain
    numbers, bytes or text, :class:`PayloadTooLarge` (413) for too many members or bytes.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except Exception as exc:  # noqa: BLE001 - zipfile raises many types for a bad archive
        raise MalformedBody(f"body is not a readable .npz archive (a zip file): {exc}",
                            "body") from exc
    with archive:
        entries = archive.infolist()
        if len(entries) > max_members:
            raise PayloadTooLarge(f"the .npz holds {len(entries)} members; at most "
                                  f"{max_members} are accepted", "body")
        named: dict[str, zipfile.ZipInfo] = {}
        for info in entries:
            name = info.filename.removesuffix(".npy")
            if name not in members:
                raise InvalidInput(f"unknown array {name!r} in the .npz; expected "
                                   f"{', '.join(sorted(members))}", name or "body")
            if name in named:
                raise MalformedBody(f"the .npz holds array {name!r} twice", name)
            named[name] = info
        out: dict[str, np.ndarray[Any, Any]] = {}
        left = max_bytes
        view = memoryview(body)
        for name, info in named.items():
            stored = _stored_view(view, info, name)
            out[name] = (_read_member(archive, info, name, left, max_bytes) if stored is None
                         else _view_member(stored, info, name, left, max_bytes))
            left -= out[name].nbytes
    return out


def _check_budget(name: str, shape: tuple[int, ...], dtype: np.dtype[Any], left: int,
                  max_bytes: int) -> int:
    """The bytes a member's header declares; 413 naming it past what the body has left."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > left:
        raise PayloadTooLarge(
            f"array {name!r} declares {nbytes} bytes ({shape} × {dtype}); the arrays "
            f"of a body may hold {max_bytes} bytes in all ({left} left)", name)
    return nbytes


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, left: int,
                 max_bytes: int) -> np.ndarray[Any, Any]:
    """One member: header, budget check, then exactly the declared bytes and nothing more."""
    try:
        with archive.open(info) as stream:
            shape, fortran_order, dtype = _read_header(stream, name)
            _check_budget(name, shape, dtype, left, max_bytes)
            array = np.empty(shape[::-1] if fortran_order else shape, dtype=dtype)
            _fill(stream, array, name)
            if stream.read(1):
                raise MalformedBody(f"array {name!r} has bytes after its declared {shape} "
                                    f"× {dtype}", name)
    except ServiceError:
        raise
    except Exception as exc:  # noqa: BLE001 - zlib/zipfile/numpy raise many types
        raise MalformedBody(f"array {name!r} is not a readable .npy member: {exc}",
                            name) from exc
    return array.T if fortran_order else array


_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, …, name length, extra length
# Flag bits a member read as a view may have: a data descriptor (3) and UTF-8 names (11);
# any other (encryption, patched data, …) goes through zipfile, which refuses it.
_PLAIN_FLAGS = 0x0008 | 0x0800


def _stored_view(body: memoryview, info: zipfile.ZipInfo, name: str) -> memoryview | None:
    """The bytes of an uncompressed, unencrypted member inside ``body`` (None for any other:
    those are read through ``zipfile``)."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & ~_PLAIN_FLAGS \
            or info.compress_size != info.file_size:
        return None
    start = info.header_offset
    if start < 0 or start + _LOCAL_HEADER.size > len(body):
        raise MalformedBody(f"array {name!r} lies outside the body", name)
    signature, name_len, extra_len = _LOCAL_HEADER.unpack_from(body, start)
    if signature != b"PK\x03\x04":
        raise MalformedBody(f"array {name!r} has no zip local header", name)
    data = start + _LOCAL_HEADER.size + name_len + extra_len
    if data + info.file_size > len(body):
        raise MalformedBody(f"array {name!r} ends after the body", name)
    member = body[data:data + info.file_size]
    if crc32(member) != info.CRC:
        raise MalformedBody(f"array {name!r} fails its CRC-32 check", name)
    return member


def _view_member(member: memoryview, info: zipfile.ZipInfo, name: str, left: int,
                 max_bytes: int) -> np.ndarray[Any, Any]:
    """An uncompressed member's array as a view of its bytes: the header, the budget check,
    and exactly the declared bytes, as :func:`_read_member` checks them."""
    stream = io.BytesIO(bytes(member[:_MAX_HEADER]))
    shape, fortran_order, dtype = _read_header(stream, name)
    nbytes = _check_budget(name, shape, dtype, left, max_bytes)
    offset = stream.tell()
    if len(member) - offset != nbytes:
        raise MalformedBody(f"array {name!r} holds {len(member) - offset} data bytes; its "
                            f"header declares {shape} × {dtype}", name)
    try:
        array = np.frombuffer(member, dtype=dtype, count=math.prod(shape), offset=offset)
    except ValueError as exc:
        raise MalformedBody(f"array {name!r} is not a readable .npy member: {exc}",
                            name) from exc
    array = array.reshape(shape[::-1] if fortran_order else shape)
    return array.T if fortran_order else array


def _read_header(stream: IO[bytes], name: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """Shape, memory order and dtype from the ``.npy`` header, refusing unsafe dtypes."""
    capped: Any = _CappedReader(stream, _MAX_HEADER, name)
    try:
        version = npy_format.read_magic(capped)
        reader = _HEADER_READERS.get(version)
        if reader is None:
            raise MalformedBody(f"array {name!r} has .npy format version {version}; "
                                "1.0 and 2.0 are read", name)
        shape, fortran_order, dtype = reader(capped)
    except ServiceError:
        raise
    except Exception as exc:  # noqa: BLE001 - the header is a Python literal: many failures
        raise MalformedBody(f"array {name!r} has no valid .npy header: {exc}", name) from exc
    if dtype.hasobject or dtype.kind not in _KINDS or dtype.itemsize == 0:
        raise InvalidInput(f"array {name!r} has dtype {dtype}; only plain numbers, bytes and "
                           "text are accepted", name)
    if len(shape) > _MAX_DIMS or any(d < 0 for d in shape):
        raise MalformedBody(f"array {name!r} has an invalid shape {shape}", name)
    return tuple(int(d) for d in shape), bool(fortran_order), dtype


def _fill(stream: IO[bytes], array: np.ndarray[Any, Any], name: str) -> None:
    """Read exactly ``array.nbytes`` bytes into ``array`` (C-contiguous, just allocated)."""
    view = memoryview(array.reshape(-1).view(np.uint8))  # type: ignore[arg-type]
    pos, total = 0, len(view)
    while pos < total:
        got = stream.readinto(view[pos:pos + _SLICE])  # type: ignore[attr-defined]
        if not got:
            raise MalformedBody(f"array {name!r} ends after {pos} of its {total} bytes", name)
        pos += got
