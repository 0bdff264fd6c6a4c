"""Freed memory kept for reuse (``HASHSTREAM_KEEP_FREED_MB``): large buffers reuse pages in this
process, and the embedded redis-server starts with the same glibc settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from hashstream.cli.embedded_redis import EmbeddedRedis
from hashstream.cli.freed_memory import child_environment, runs_on_glibc

glibc_only = pytest.mark.skipif(not runs_on_glibc(), reason="the settings are glibc malloc's")


def _huge_pages_always() -> bool:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return path.exists() and "[always]" in path.read_text()


# With transparent huge pages always on, a fresh 40 MB mapping faults in 2 MB at a time: the
# page-fault counts below would no longer tell reuse from fresh memory.
counts_small_pages = pytest.mark.skipif(_huge_pages_always(),
                                        reason="transparent huge pages are always on")

# Fill five 40 MB buffers one after the other (malloc, then every page written); print the
# page faults that took. (Not NumPy: it asks for transparent huge pages, 2 MB a fault.)
_FAULTS = """
import resource, sys
from hashstream.cli.freed_memory import keep_freed_memory
applied = keep_freed_memory(int(sys.argv[1]))
buffer = b"x" * 40_000_000  # the first one faults its pages in either way
del buffer
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    buffer = b"x" * 40_000_000
    del buffer
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(megabytes: int) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _FAULTS, str(megabytes)], check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0], int(out[1])


@glibc_only
@counts_small_pages
def test_large_buffers_reuse_their_pages() -> None:
    applied, kept = _faults(256)
    default_applied, default = _faults(0)
    assert (applied, default_applied) == ("True", "False")
    # glibc's default maps and unmaps each 40 MB buffer: ~9,800 faults apiece
    assert default > 5 * 5_000, default
    assert kept < default / 10, (kept, default)


def test_child_environment_keeps_what_the_user_set() -> None:
    base = {"PATH": "/bin", "GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1:glibc.x.y=2"}
    env = child_environment(256, base)
    assert env["PATH"] == "/bin"
    if runs_on_glibc():
        assert env["GLIBC_TUNABLES"].split(":") == [
            "glibc.malloc.mmap_max=0", "glibc.malloc.trim_threshold=1", "glibc.x.y=2"]
    assert child_environment(0, base) == base
    assert "GLIBC_TUNABLES" not in child_environment(0, {"PATH": "/bin"})


def _minor_faults(stat: Path) -> int:
    """minflt of a process from its /proc/<pid>/stat (the 10th field; the name may hold
    spaces, so count after its closing parenthesis)."""
    return int(stat.read_text().rsplit(")", 1)[1].split()[7])


def _redis_faults(tmp_path: Path, megabytes: int) -> int:
    """Page faults of an embedded redis-server over five 40 MB XADDs (after a first one)."""
    server = EmbeddedRedis(tmp_path / f"redis-{megabytes}", keep_freed_mb=megabytes).start()
    try:
        assert server.process is not None
        stat = Path(f"/proc/{server.process.pid}/stat")
        client = redis.Redis.from_url(server.url)
        # no rewrite of the append-only file: its fork's copy-on-write faults are not these
        client.config_set("auto-aof-rewrite-percentage", 0)
        payload = b"x" * 40_000_000
        client.xadd("s", {"f": payload})
        client.delete("s")
        before = _minor_faults(stat)
        for _ in range(5):
            client.xadd("s", {"f": payload})
            client.delete("s")
        client.close()
        return _minor_faults(stat) - before
    finally:
        server.stop()


@glibc_only
@counts_small_pages
def test_the_embedded_redis_server_reuses_its_pages(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The query buffer, the stream entry and the append-only file's buffer of each XADD are
    fresh mappings under glibc's defaults (~10,000 faults apiece), reused pages when kept."""
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    kept, default = _redis_faults(tmp_path, 256), _redis_faults(tmp_path, 0)
    assert default > 5 * 9_000, default
    assert kept < default / 4, (kept, default)
