"""Inner products of a real vector with packed ±1 codes, by one 256-entry table per code byte.

A packed code holds bit j of the ±1 code in byte j // 8, most significant bit first (as
``numpy.packbits``). ⟨z, code⟩ is then the sum over the code's bytes b of
table[b, byte b], where table[b, v] is the inner product of z's bits 8b … 8b + 7 with the ±1
bits of the byte value v: a code costs one lookup per byte, with no unpacked matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["byte_table", "table_scores"]

# the ±1 bits of every byte value, most significant first: 256 × 8
_BYTE_SIGNS = (((np.arange(256)[:, None] >> np.arange(7, -1, -1)) & 1) * 2 - 1).astype(
    np.float32)


def byte_table(z: NDArray[Any], code_bytes: int) -> NDArray[np.float32]:
    """``code_bytes`` × 256 float32: row b holds ⟨z[8b:8b + 8], ±1 bits of each byte value⟩ (z
    zero-padded to 8 · code_bytes values)."""
    padded = np.zeros(code_bytes * 8, dtype=np.float32)
    padded[:z.shape[0]] = z
    table: NDArray[np.float32] = np.ascontiguousarray(padded.reshape(code_bytes, 8)
                                                      @ _BYTE_SIGNS.T)
    return table


def table_scores(codes: NDArray[np.uint8], table: NDArray[np.float32]) -> NDArray[np.float32]:
    """⟨z, code⟩ of each packed code row (n × code_bytes) by :func:`byte_table`'s table."""
    out = np.zeros(codes.shape[0], dtype=np.float32)
    for b in range(codes.shape[1]):
        out += table[b, codes[:, b]]
    return out
