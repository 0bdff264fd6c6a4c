"""Type stub of the compiled Hamming kernels (csrc/). Buffers are C-contiguous arrays."""

from typing import Any, TypeAlias

# C-contiguous numpy arrays / bytes (the buffer protocol); numpy does not type it for 3.11
Buffer: TypeAlias = Any

def flat_topk(
    db: Buffer, removed: Buffer, begin: int, end: int, lane: int, words: int, bits: int,
    queries: Buffer, nq: int, k: int, out_d: Buffer, out_pos: Buffer, threads: int, /,
) -> None: ...
def flat_range(
    db: Buffer, removed: Buffer, begin: int, end: int, lane: int, words: int, bits: int,
    queries: Buffer, nq: int, radius: int, threads: int, /,
) -> tuple[bytearray, bytearray, bytearray]: ...
def mih_build(
    db: Buffer, n0: int, lane: int, words: int, bits: int, sub_off: Buffer, sub_len: Buffer,
    m: int, out_offsets: Buffer, out_perm: Buffer, out_codes: Buffer, threads: int, /,
) -> None: ...
def mih_topk(
    offsets: Buffer, perm: Buffer, codes: Buffer, n0: int, lane: int, words: int, bits: int,
    sub_off: Buffer, sub_len: Buffer, m: int, removed: Buffer, queries: Buffer, nq: int, k: int,
    budget: int, out_d: Buffer, out_pos: Buffer, out_status: Buffer, threads: int, /,
) -> None: ...
def mih_range(
    offsets: Buffer, perm: Buffer, codes: Buffer, n0: int, lane: int, words: int, bits: int,
    sub_off: Buffer, sub_len: Buffer, m: int, removed: Buffer, queries: Buffer, nq: int,
    radius: int, budget: int, out_status: Buffer, threads: int, /,
) -> tuple[bytearray, bytearray, bytearray]: ...
def merge_topk(
    d1: Buffer, p1: Buffer, d2: Buffer, p2: Buffer, nq: int, k: int, pad: int, out_d: Buffer,
    out_pos: Buffer, /,
) -> None: ...
def isa() -> str: ...
def available_isas() -> list[str]: ...
def set_isa(name: str, /) -> None: ...
def set_tile_bytes(nbytes: int, /) -> int: ...
