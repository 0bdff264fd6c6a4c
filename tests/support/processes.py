"""Real `hashstream` processes for the integration tests.

``Proc`` runs a child in its own session (process group) with its merged output drained on a
thread (``LogReader``); ``Server`` is ``python -m hashstream serve`` on a free port with an httpx
client and API shortcuts; ``service_env`` builds a child's environment. ``assert_problem``
checks a problem+json error answer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from hashstream.client import Client
from support.data import npz_bytes
from support.net import free_port, wait_until

PROBLEM = "application/problem+json"
# Small, fast solver settings for test indexes (a round on a few hundred rows takes ~0.2 s);
# a small query network where a test opts into the residual_net encoder.
FAST = {"bits": 16, "n_anchors": 128, "n1": 100, "n2": 100, "query_hidden": 64,
        "query_steps": 20, "seed": 0}


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
    """`python -m hashstream serve` on a free port, with an httpx client (``http``) and the
    Python client (``client``)."""

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
        self.client = Client(self.url, api_key, timeout=60.0)

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
        self.client.close()
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
