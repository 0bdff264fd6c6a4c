"""`serve` supervises its worker children: a killed worker is replaced at once, its leases and
heartbeat are cleared so the interrupted round is redone without waiting out the lease TTL, and
the restart is counted (/metrics). The backoff policy is tested as the pure class it is."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psutil

from hashstream.cli.supervisor import Backoff

DIM, CLASSES = 64, 8
# A round on 6,000 rows that lasts well past its round_start line (~1 s here; the version check
# before the kill proves it was still running) but is short to redo: the 20 s bound from kill
# to commit covers the replacement's start and the whole redone round, on a loaded machine too.
SETTINGS = {"n_anchors": 512, "n1": 200, "n2": 200, "iterations": 8, "sweeps": 3}


# --- the backoff policy --------------------------------------------------------------------

def test_backoff_quick_deaths_double_up_to_the_cap_and_a_long_life_resets() -> None:
    b = Backoff()
    assert [b.next_delay(0.5) for _ in range(8)] == [0, 1, 2, 4, 8, 16, 30, 30]
    assert b.next_delay(59.9) == 30  # not quite a healthy life
    assert b.next_delay(60.0) == 0  # lived a minute: start over
    assert [b.next_delay(1.0) for _ in range(3)] == [1, 2, 4]
    assert b.next_delay(3600) == 0


def test_backoff_custom_base_and_cap() -> None:
    b = Backoff(base_s=0.5, cap_s=3.0, reset_after_s=10.0)
    assert [b.next_delay(0.0) for _ in range(6)] == [0, 0.5, 1, 2, 3, 3]
    assert b.next_delay(10.0) == 0


# --- the store's side: a dead worker's leases, heartbeat and the restart counter -----------

def test_release_leases_of_a_dead_owner_only(store_for: Any, redis_client: Any,
                                             hs: Any) -> None:
    store = store_for("leases")
    names = [hs.unique("lk") for _ in range(3)]
    for name in names:
        store.create_index(name, {"name": name})
    assert store.take_lease(names[0], "dead", 30_000) is not None
    alive = store.take_lease(names[1], "alive", 30_000)
    assert store.take_lease(names[2], "dead", 30_000) is not None
    assert sorted(store.release_leases_of("dead")) == sorted([names[0], names[2]])
    assert store.release_leases_of("dead") == []
    assert store.lease_holder(names[1]) == (alive.token, "alive")  # not its lease: kept
    assert store.take_lease(names[0], "next", 30_000) is not None  # free at once, no TTL wait

    store.heartbeat("dead", ttl_s=30)
    store.heartbeat("alive", ttl_s=30)
    assert store.workers_alive() == 2
    assert store.drop_heartbeat("dead") and not store.drop_heartbeat("dead")
    assert store.workers_alive() == 1

    assert store.restarts() == 0
    assert [store.count_restart(), store.count_restart()] == [1, 2] and store.restarts() == 2


# --- kill -9 of serve's worker child mid-round ---------------------------------------------

def _workers_of(server: Any) -> dict[int, str]:
    """pid → --worker-id of the serve's live worker children."""
    out = {}
    for child in psutil.Process(server.pid).children():
        try:
            argv = child.cmdline()
            if child.status() == psutil.STATUS_ZOMBIE or "worker" not in argv:
                continue
        except psutil.NoSuchProcess:
            continue
        out[child.pid] = argv[argv.index("--worker-id") + 1]
    return out


def _restarts_metric(server: Any) -> float:
    text = server.http.get("/metrics").text
    lines = [ln for ln in text.splitlines() if ln.startswith("hashstream_worker_restarts_total ")]
    assert len(lines) == 1, text
    return float(lines[0].split()[1])


def test_killed_worker_is_replaced_and_its_round_redone_within_20s(
        start_server: Any, store_for: Any, redis_client: Any, hs: Any) -> None:
    # a long lease TTL: the round is redone because the supervisor released the lease
    server = start_server("sup", workers=1, lease_ttl_ms=30_000)
    store = store_for("sup")
    assert _restarts_metric(server) == 0
    name = hs.unique("sup")
    server.create_index(name, DIM, **SETTINGS)
    data = hs.Clusters(seed=21, dim=DIM, n_classes=CLASSES)
    f, c = data.sample(6000)
    accepted = server.ingest_npz(name, features=f, labels=hs.one_hot(c, CLASSES))
    chunk = accepted["chunk_id"]

    (old_pid, old_id), = hs.wait_until(lambda: _workers_of(server), 30,
                                       what="the worker child").items()
    server.log.wait_event("round_start", 90, 0, lambda e: e.get("index") == name
                          and e.get("chunks") == [chunk])
    assert store.version(name) == 0
    assert store.lease_holder(name)[1] == old_id
    mark = len(server.log.lines)
    killed_at = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)

    # /readyz tells the truth at once: no worker until the replacement heartbeats.
    seen_no_worker = False

    def readiness_back() -> bool:
        nonlocal seen_no_worker
        body = server.http.get("/readyz").json()
        seen_no_worker |= body["status"] == "no worker"
        return seen_no_worker and body["status"] == "ready"

    hs.wait_until(readiness_back, 60, 0.01, "/readyz: no worker, then ready again")

    new = hs.wait_until(lambda: {p: w for p, w in _workers_of(server).items() if p != old_pid},
                        10, 0.05, "a replacement worker")
    new_seen_s = time.monotonic() - killed_at
    (new_pid, new_id), = new.items()
    assert new_pid != old_pid and new_id != old_id

    restart = server.log.wait_event("worker_restart", 30, mark)
    assert restart["worker"] == old_id and restart["exit_code"] == -signal.SIGKILL
    assert restart["restarts"] == 1 and restart["backoff_s"] == 0
    assert restart["leases_released"] == [name]  # released by the supervisor, not the TTL
    assert old_id not in store.workers()

    commit = server.log.wait_event("round_commit", 60, mark,
                                   lambda e: e.get("index") == name and chunk in e["chunks"])
    committed_s = time.monotonic() - killed_at
    print(f"\nkill → replacement seen {new_seen_s:.2f}s, → round committed {committed_s:.2f}s")
    assert committed_s <= 20, f"in-flight chunk committed {committed_s:.1f}s after the kill"
    assert commit["round"] == 1

    info = server.wait_idle(name, 1)
    records = server.rounds(name)
    assert [cid for r in records for cid in r["chunks"]].count(chunk) == 1
    assert info["model_version"] == 1 and info["n_items"] == accepted["items"] == 6000
    assert records[-1]["n_database"] == 6000
    events = [e for e in server.log.events() if e.get("index") == name]
    starts = [e for e in events if e["event"] == "round_start" and chunk in e["chunks"]]
    commits = [e for e in events if e["event"] == "round_commit" and chunk in e["chunks"]]
    assert len(starts) == 2 and len(commits) == 1  # killed mid-round, redone once
    assert _restarts_metric(server) == 1
    body = server.http.get("/readyz").json()
    assert body["status"] == "ready" and body["workers"] == 1
    assert _workers_of(server) == {new_pid: new_id}


# --- the supervisor in-process, with stand-in children and store ---------------------------

class _FakeStore:
    def __init__(self) -> None:
        self.dropped: list[str] = []
        self.released: list[str] = []
        self.count = 0

    def drop_heartbeat(self, worker_id: str) -> bool:
        self.dropped.append(worker_id)
        return True

    def release_leases_of(self, owner: str) -> list[str]:
        self.released.append(owner)
        return []

    def count_restart(self) -> int:
        self.count += 1
        return self.count


def test_supervisor_restarts_dying_children_with_backoff_and_stops_the_rest(
        caplog: Any, hs: Any) -> None:
    import json
    import subprocess

    from hashstream.cli.supervisor import WorkerSupervisor

    spawned: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(worker_id: str) -> subprocess.Popen[bytes]:
        # slots start in order: the second child (slot 1) lives until stopped; slot 0's
        # children all exit at once
        lives = len(spawned) == 1
        child = subprocess.Popen(["sh", "-c", "exec sleep 60" if lives else "exit 3"])
        spawned.append((worker_id, child))
        return child

    store = _FakeStore()
    sup = WorkerSupervisor(store, spawn, 2, poll_s=0.01,  # type: ignore[arg-type]
                           backoff=lambda: Backoff(base_s=0.05, cap_s=0.2))
    caplog.set_level("INFO", logger="hashstream.supervisor")
    sup.start()
    hs.wait_until(lambda: store.count >= 5, 30, 0.01, "five restarts")
    sup.stop()
    restarts = [json.loads(r.getMessage()) for r in caplog.records
                if "worker_restart" in r.getMessage()]
    assert [r["backoff_s"] for r in restarts[:5]] == [0, 0.05, 0.1, 0.2, 0.2]
    assert all(r["exit_code"] == 3 for r in restarts)
    assert [r["restarts"] for r in restarts] == list(range(1, len(restarts) + 1))
    assert store.dropped == store.released == [r["worker"] for r in restarts]
    ids = [w for w, _ in spawned]
    assert len(set(ids)) == len(ids)  # every child got a new id
    long_lived = spawned[1][1]
    assert long_lived.returncode == -signal.SIGTERM  # terminated by stop(), not restarted
    assert all(child.poll() is not None for _, child in spawned)


def test_worker_health_check_sees_this_hosts_heartbeat(store_for: Any, redis_url: str,
                                                       session_prefix: str) -> None:
    """`hashstream worker-health` (the compose file's worker health check): 1 without a live
    heartbeat of a worker of this host, 0 with one."""
    import socket
    import subprocess
    import sys

    from support.processes import service_env

    store = store_for("health")
    env = service_env(redis_url, f"{session_prefix}-health")

    def check() -> int:
        return subprocess.run([sys.executable, "-m", "hashstream", "worker-health"], env=env,
                              capture_output=True, timeout=60).returncode

    store.heartbeat("another-host-1-abc", ttl_s=30)
    assert check() == 1
    store.heartbeat(f"{socket.gethostname()}-1234-abc", ttl_s=30)
    assert check() == 0
    store.drop_heartbeat(f"{socket.gethostname()}-1234-abc")
    assert check() == 1
