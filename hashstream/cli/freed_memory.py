"""Large buffers reused instead of faulted in afresh: glibc malloc's settings for the processes
that carry ingest bodies (redis-server, the API, the workers).

glibc serves an allocation over its mmap threshold (at most 32 MB) with a fresh ``mmap`` and
unmaps it on ``free``, so every 40 MB body costs each process on its way ~10,000 page faults
and the zeroing of every page: a quarter of the API's and redis-server's CPU per byte, and up
to half the CPU of a bare XADD (bench/RESULTS.md, session 9, "Freed memory kept for reuse").
Without ``mmap`` for large buffers, and with the heap returning memory to the kernel only once
more than ``megabytes`` of it lies free at its top, the next body reuses the same pages. The
cost: a process's resident size stays up to ``megabytes`` above what it uses after a burst.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Mapping

# mallopt(3) parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_MAX_MEGABYTES = 2047  # the trim threshold is a C int of bytes


def runs_on_glibc() -> bool:
    """Whether this process's C library is glibc (the only one these settings are for)."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory(megabytes: int) -> bool:
    """Apply the settings to this process; False (nothing changed) where the C library is not
    glibc or ``megabytes`` is 0."""
    if megabytes <= 0 or not runs_on_glibc():
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    trim = min(megabytes, _MAX_MEGABYTES) << 20
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))


def child_environment(megabytes: int,
                      base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with ``GLIBC_TUNABLES`` set so that a
    child program (redis-server) starts with the same settings; tunables already set there
    are kept, and win."""
    env = dict(os.environ if base is None else base)
    if megabytes <= 0 or not runs_on_glibc():
        return env
    ours = {"glibc.malloc.mmap_max": "0",
            "glibc.malloc.trim_threshold": str(min(megabytes, _MAX_MEGABYTES) << 20)}
    theirs = dict(item.split("=", 1) for item in env.get("GLIBC_TUNABLES", "").split(":")
                  if "=" in item)
    env["GLIBC_TUNABLES"] = ":".join(f"{k}={v}" for k, v in {**ours, **theirs}.items())
    return env
