"""Fixtures of the service integration tests: a real Redis and real `hashstream` processes.

Redis: the server at ``REDIS_URL`` when set, else an embedded redis-server started once per
session. Every key the tests write lies under a session-unique prefix (``HASHSTREAM_KEY_PREFIX``)
and is removed at the end, so a shared Redis is safe. The HTTP layer is exercised through
``python -m hashstream serve`` subprocesses on free ports; each runs in its own process group,
which is killed at teardown.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from hashstream.cli.embedded_redis import EmbeddedRedis
from hashstream.store.index_store import IndexStore

PROBLEM = "application/problem+json"
# Small, fast solver settings for test indexes (a round on a few hundred rows takes ~0.2 s).
FAST = {"bits": 16, "n_anchors": 128, "n1": 100, "n2": 100, "seed": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05,
               what: str = "a condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def unique(stem: str = "t") -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


# --- synthetic data ------------------------------------------------------------------------

class Clusters:
    """Gaussian class clusters in ``dim`` dimensions, well apart (one class per item)."""

    def __init__(self, seed: int, dim: int = 32, n_classes: int = 5, spread: float = 4.0,
                 noise: float = 1.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.dim, self.n_classes, self.noise = dim, n_classes, noise
        self.means = self.rng.standard_normal((n_classes, dim)) * spread

    def sample(self, n: int, classes: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``n`` rows: float32 features and their class ids."""
        if classes is None:
            cls = self.rng.integers(0, self.n_classes, n)
        else:
            cls = np.resize(np.asarray(classes), n)
        x = self.means[cls] + self.noise * self.rng.standard_normal((n, self.dim))
        return x.astype(np.float32), cls.astype(np.int64)

    def vector(self, cls: int) -> np.ndarray:
        return self.sample(1, [cls])[0][0]


def one_hot(cls: np.ndarray, width: int) -> np.ndarray:
    return np.eye(width, dtype=np.uint8)[cls]


def npz_bytes(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def json_chunk(features: np.ndarray, cls: np.ndarray, ids: Any = None,
               role: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"features": features.tolist(),
                            "labels": [[int(c)] for c in cls]}
    if ids is not None:
        body["ids"] = [int(i) for i in ids]
    if role is not None:
        body["role"] = role
    return body


# --- processes -----------------------------------------------------------------------------

class LogReader:
    """Drains a child's merged stdout/stderr on a thread; lines can be awaited."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        stream.close()

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines (the worker's round events)."""
        out = []
        with self._cond:
            lines = list(self.lines)
        for line in lines:
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 60.0,
                 start: int = 0) -> str:
        """The first line from index ``start`` on that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.lines):
                    if predicate(self.lines[i]):
                        return self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for a log line; log:\n"
                                         + "\n".join(self.lines[-40:]))
                self._cond.wait(min(left, 0.5))

    def wait_event(self, event: str, timeout: float = 60.0, start: int = 0,
                   where: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        def match(line: str) -> bool:
            if not line.startswith("{"):
                return False
            try:
                e = json.loads(line)
            except ValueError:
                return False
            return bool(e.get("event") == event and where(e))

        return dict(json.loads(self.wait_for(match, timeout, start)))


class Proc:
    """A child process in its own session (process group), output captured."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.pid = self.popen.pid
        self.log = LogReader(self.popen.stdout)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL this process only (not its group): what a crash looks like."""
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        """Terminate the whole process group, then kill whatever is left."""
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            if sig == signal.SIGTERM:  # leader gone; make sure the group is gone too
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            break
        if self.popen.poll() is None:
            self.popen.wait(timeout=10)


class Server(Proc):
    """`python -m hashstream serve` on a free port, with an httpx client."""

    def __init__(self, env: dict[str, str], cwd: Path, workers: int = 1,
                 data_dir: Path | None = None, api_key: str | None = None) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "hashstream", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", str(workers), "--log-level", "info"]
        if data_dir is not None:
            args += ["--data-dir", str(data_dir)]
        super().__init__(args, env, cwd)
        self.url = f"http://127.0.0.1:{self.port}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, timeout=60.0, headers=headers)

    def wait_up(self, ready: bool = True, timeout: float = 90.0) -> Server:
        def probe(path: str) -> bool:
            if not self.alive():
                raise AssertionError(f"server exited with {self.popen.returncode}:\n"
                                     + self.log.text()[-4000:])
            try:
                return self.http.get(path, timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(lambda: probe("/healthz"), timeout, 0.1, "/healthz")
        if ready:
            wait_until(lambda: probe("/readyz"), timeout, 0.1, "/readyz")
        return self

    def stop(self) -> None:
        self.http.close()
        super().stop()

    # --- API shortcuts ---------------------------------------------------------------------
    def create_index(self, name: str, dim: int, **settings: Any) -> dict[str, Any]:
        r = self.http.post("/indexes", json={"name": name, "dim": dim, **{**FAST, **settings}})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def ingest(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"/indexes/{name}/ingest", json=body)
        assert r.status_code == 202, r.text
        return dict(r.json())

    def ingest_npz(self, name: str, role: str | None = None, **arrays: Any) -> dict[str, Any]:
        params = {"role": role} if role else None
        r = self.http.post(f"/indexes/{name}/ingest", content=npz_bytes(**arrays),
                           params=params, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        return dict(r.json())

    def info(self, name: str) -> dict[str, Any]:
        r = self.http.get(f"/indexes/{name}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def rounds(self, name: str) -> list[dict[str, Any]]:
        r = self.http.get(f"/indexes/{name}/rounds")
        assert r.status_code == 200, r.text
        return list(r.json()["rounds"])

    def wait_idle(self, name: str, min_version: int = 1, timeout: float = 90.0
                  ) -> dict[str, Any]:
        """Poll until the queue is empty and at least ``min_version`` rounds committed."""
        def done() -> dict[str, Any] | None:
            if not self.alive():
                raise AssertionError("server died:\n" + self.log.text()[-4000:])
            info = self.info(name)
            ok = info["queue_depth"] == 0 and info["model_version"] >= min_version
            return info if ok else None

        wait_until(done, timeout, 0.1, f"{name}: empty queue and version ≥ {min_version}")
        # GET /indexes/{name} reads version, last record and queue depth one after another, so
        # the answer that saw the queue empty may predate the last commit; now nothing moves.
        return self.info(name)


def service_env(redis_url: str | None, prefix: str, **settings: Any) -> dict[str, str]:
    """The environment of a service process: ours minus any HASHSTREAM_*/REDIS_URL, plus these."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HASHSTREAM_") and k != "REDIS_URL"}
    if redis_url:
        env["REDIS_URL"] = redis_url
    env["HASHSTREAM_KEY_PREFIX"] = prefix
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["HASHSTREAM_POLL_MS"] = "50"
    env.update({f"HASHSTREAM_{k.upper()}": str(v) for k, v in settings.items()})
    return env


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    try:
        yield embedded.url
    finally:
        embedded.stop()


@pytest.fixture(scope="session")
def session_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test session uses; every key under it is removed at the end."""
    prefix = f"hstest-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def start_server(redis_url: str, session_prefix: str,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Factory of `hashstream serve` processes; all are stopped at the end of the session.

    ``start_server(tag, workers=1, embedded=False, data_dir=None, api_key=None, **settings)``:
    key prefix ``<session prefix>-<tag>``; ``embedded=True`` leaves REDIS_URL unset so the
    serve starts its own Redis in ``data_dir``.
    """
    started: list[Proc] = []
    cwd = tmp_path_factory.mktemp("serve-cwd")

    def start(tag: str, workers: int = 1, embedded: bool = False, data_dir: Path | None = None,
              api_key: str | None = None, wait: bool = True, **settings: Any) -> Server:
        env = service_env(None if embedded else redis_url, f"{session_prefix}-{tag}",
                          **settings)
        server = Server(env, cwd, workers=workers, data_dir=data_dir, api_key=api_key)
        started.append(server)
        if wait:
            server.wait_up(ready=workers > 0)
        return server

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture(scope="session")
def start_worker(redis_url: str, session_prefix: str,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Proc]]:
    """Factory of `hashstream worker` processes (stderr captured); stopped at session end."""
    started: list[Proc] = []
    cwd = tmp_path_factory.mktemp("worker-cwd")

    def start(tag: str, **settings: Any) -> Proc:
        env = service_env(redis_url, f"{session_prefix}-{tag}", **settings)
        proc = Proc([sys.executable, "-m", "hashstream", "worker", "--log-level", "info"],
                    env, cwd)
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        proc.stop()


@pytest.fixture(scope="session")
def api(start_server: Callable[..., Server]) -> Server:
    """The shared server: one worker, default limits, no auth."""
    return start_server("api", workers=1)


@pytest.fixture
def store_for(redis_client: redis.Redis, session_prefix: str) -> Callable[[str], IndexStore]:
    """An IndexStore on the keys a server started with ``tag`` uses."""
    return lambda tag: IndexStore(redis_client, f"{session_prefix}-{tag}")


@pytest.fixture
def index_name() -> str:
    return unique("idx")


def assert_problem(response: httpx.Response, status: int | tuple[int, ...],
                   field: str | None = None) -> dict[str, Any]:
    """A problem+json error with this status (or one of these), a message, and ``field``."""
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0] == PROBLEM, response.headers
    body = dict(response.json())
    assert body["status"] == response.status_code
    assert isinstance(body["detail"], str) and body["detail"].strip(), body
    assert isinstance(body["title"], str) and body["title"], body
    if field is not None:
        assert body.get("field") == field, body
    return body


@pytest.fixture(scope="session")
def hs() -> types.SimpleNamespace:
    """The helpers of this conftest, for the test modules (which cannot import a conftest)."""
    return types.SimpleNamespace(
        PROBLEM=PROBLEM, FAST=FAST, Clusters=Clusters, one_hot=one_hot, npz_bytes=npz_bytes,
        json_chunk=json_chunk, wait_until=wait_until, unique=unique, free_port=free_port,
        assert_problem=assert_problem, Proc=Proc, Server=Server, service_env=service_env)
