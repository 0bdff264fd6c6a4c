"""Fixtures of the service integration tests: real `hashstream` processes on a real Redis.

The Redis fixtures (``redis_url``, ``redis_client``, ``session_prefix``, ``key_prefix``) come
from ``tests/conftest.py``; the helpers from ``tests/support``. The HTTP layer is exercised
through ``python -m hashstream serve`` subprocesses on free ports; each runs in its own process
group, which is killed at teardown.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from support.data import Clusters, json_chunk, npz_bytes, one_hot
from support.net import free_port, unique, wait_until
from support.processes import FAST, PROBLEM, Proc, Server, assert_problem, service_env

from hashstream.store.index_store import IndexStore

# --- fixtures ------------------------------------------------------------------------------

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


@pytest.fixture(scope="session")
def hs() -> types.SimpleNamespace:
    """The support helpers in one namespace, as the service tests have long used them (new
    tests import from ``support`` directly)."""
    return types.SimpleNamespace(
        PROBLEM=PROBLEM, FAST=FAST, Clusters=Clusters, one_hot=one_hot, npz_bytes=npz_bytes,
        json_chunk=json_chunk, wait_until=wait_until, unique=unique, free_port=free_port,
        assert_problem=assert_problem, Proc=Proc, Server=Server, service_env=service_env)
