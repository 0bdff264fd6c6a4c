"""Crash recovery with real processes: kill -9 of a worker mid-round, and of a whole
`hashstream serve` running its embedded Redis.

The API runs with ``--workers 0`` and the test starts `hashstream worker` processes itself, so it
can read their JSON event lines (``round_start``, ``round_commit``) and kill one at the right
moment. The lease TTL is short so a restarted worker takes a dead one's round over quickly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from support.net import port_open

DIM, CLASSES = 64, 8
# Heavy enough that a round lasts well past its round_start line (many iterations, 1,024
# anchors): the kills below must land inside a round; the version checks verify they did.
SETTINGS = {"n_anchors": 1024, "n1": 200, "n2": 200, "iterations": 20, "sweeps": 3}
LEASE_TTL_MS = 1500


def _stream_pending(redis_client: Any, store: Any, name: str) -> int:
    return int(redis_client.xpending(store.keys(name).stream, "workers")["pending"])


def test_worker_killed_mid_round_commits_every_chunk_once(start_server: Any, start_worker: Any,
                                                          store_for: Any, redis_client: Any,
                                                          hs: Any) -> None:
    server = start_server("rec", workers=0, lease_ttl_ms=LEASE_TTL_MS)
    store = store_for("rec")
    name = hs.unique("rec")
    server.create_index(name, DIM, **SETTINGS)
    data = hs.Clusters(seed=11, dim=DIM, n_classes=CLASSES)
    accepted: list[dict[str, Any]] = []
    workers: list[Any] = []

    def ingest(n: int) -> str:
        f, c = data.sample(n)
        out = server.ingest_npz(name, features=f, labels=hs.one_hot(c, CLASSES))
        accepted.append(out)
        return str(out["chunk_id"])

    def worker() -> Any:
        w = start_worker("rec", lease_ttl_ms=LEASE_TTL_MS)
        workers.append(w)
        return w

    def kill_mid_round(w: Any, chunks: list[str], start: int = 0) -> dict[str, Any]:
        """Wait for the round over ``chunks`` to start, then SIGKILL the worker."""
        event = w.log.wait_event("round_start", 90, start,
                                 lambda e: e.get("index") == name
                                 and set(chunks) <= set(e.get("chunks", [])))
        w.kill9()
        return event

    # Cycle 1: the first attempt at chunk A dies mid-round.
    a = ingest(6000)
    event = kill_mid_round(worker(), [a])
    assert event["round"] == 1 and event["chunks"] == [a]
    assert store.version(name) == 0, "the round committed before the kill; make it longer"
    assert store.queue_depth(name) == 1 and store.rounds(name) == []
    assert _stream_pending(redis_client, store, name) == 1  # read, never acknowledged

    # Cycle 2: B arrives while no worker runs; the redo of A dies too. A chunk whose round did
    # not finish is redone alone (were it poison, B would not share its fate).
    b = ingest(3000)
    event = kill_mid_round(worker(), [a])
    assert event["round"] == 1 and event["chunks"] == [a]  # A is redone, as round 1
    assert store.version(name) == 0 and store.queue_depth(name) == 2
    assert store.attempts(name, [a, b]) == {a: 2, b: 0}

    # Cycle 3: rounds 1 (A) and 2 (B) commit; the round of the next chunk C dies mid-round.
    w3 = worker()
    commit = w3.log.wait_event("round_commit", 90, 0,
                               lambda e: e.get("index") == name and e.get("round") == 2)
    assert commit["chunks"] == [b]
    assert store.attempts(name, [a, b]) == {a: 0, b: 0}  # committed: attempts forgotten
    mark = len(w3.log.lines)
    c = ingest(6000)
    event = kill_mid_round(w3, [c], mark)
    assert event["round"] == 3 and event["chunks"] == [c]
    assert store.version(name) == 2 and store.queue_depth(name) == 1

    # A fresh worker finishes the work.
    w4 = worker()
    info = server.wait_idle(name, 3)
    w4.log.wait_event("round_commit", 90, 0, lambda e: e.get("index") == name)

    total = sum(x["items"] for x in accepted)
    assert total == 15_000
    records = server.rounds(name)
    assert [r["round"] for r in records] == [1, 2, 3] and info["model_version"] == 3
    committed = [cid for r in records for cid in r["chunks"]]
    assert sorted(committed) == sorted([a, b, c])  # every chunk exactly once
    assert records[-1]["n_database"] == info["n_items"] == total
    assert _stream_pending(redis_client, store, name) == 0

    # The code store holds each item once: codes count = items ingested, ids unique.
    segments = [store.load_segment(name, v) for v in range(1, store.version(name) + 1)]
    ids = np.concatenate([s["ids"] for s in segments])
    assert len(ids) == sum(len(s["codes"]) for s in segments) == total
    assert len(np.unique(ids)) == total
    expected = np.concatenate([np.arange(*x["id_range"]) for x in accepted])
    assert np.array_equal(np.sort(ids), np.sort(expected))
    assert store.load_segment(name, 4) == {}  # no stray round

    # Exactly one commit per round across every worker that ever ran.
    commits = [e for w in workers for e in w.log.events()
               if e.get("event") == "round_commit" and e.get("index") == name]
    assert sorted(e["round"] for e in commits) == [1, 2, 3]

    r = server.http.get(f"/indexes/{name}/search",
                        params={"item": int(ids[0]), "k": 5, "min_version": 3})
    assert r.status_code == 200 and len(r.json()["results"][0]) == 5


def test_two_workers_one_index_each_round_once(start_server: Any, start_worker: Any,
                                                hs: Any) -> None:
    """Two live workers on one index: leases let both run rounds, one at a time; nothing is
    doubled."""
    server = start_server("two", workers=0)
    name = hs.unique("two")
    server.create_index(name, 16)
    workers = [start_worker("two"), start_worker("two")]
    data = hs.Clusters(seed=14, dim=16, n_classes=3)
    accepted = []
    for i in range(6):
        f, c = data.sample(300)
        accepted.append(server.ingest(name, hs.json_chunk(f, c)))
        if i % 2:
            server.wait_idle(name, 1)
    info = server.wait_idle(name, 1)
    records = server.rounds(name)
    assert [r["round"] for r in records] == list(range(1, info["model_version"] + 1))
    committed = [cid for r in records for cid in r["chunks"]]
    assert sorted(committed) == sorted(x["chunk_id"] for x in accepted)
    assert info["n_items"] == 1800
    starts = [e["round"] for w in workers for e in w.log.events()
              if e.get("event") == "round_start" and e.get("index") == name]
    commits = [e["round"] for w in workers for e in w.log.events()
               if e.get("event") == "round_commit" and e.get("index") == name]
    assert sorted(starts) == sorted(commits) == [r["round"] for r in records]  # no round twice
    assert all(w.alive() for w in workers)


# --- kill -9 of the whole serve with its embedded Redis ------------------------------------

def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, just not reaped


def _children(pid: int) -> set[int]:
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(d.name))
    return out


def _redis_server_pids(port: int) -> set[int]:
    """Processes listening on ``port`` (psutil), or redis-servers with it on their command line."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return {c.pid for c in psutil.net_connections("tcp")
                    if c.pid and c.laddr and c.laddr.port == port
                    and c.status == psutil.CONN_LISTEN}
        except psutil.AccessDenied:
            pass
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"redis-server") and str(port).encode() in argv:
                out.add(int(d.name))
    return out


def test_serve_kill9_with_embedded_redis_keeps_every_round(start_server: Any, hs: Any,
                                                           tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_server("emb", workers=1, embedded=True, data_dir=data_dir,
                         lease_ttl_ms=LEASE_TTL_MS)
    line = first.log.wait_for(lambda text: "embedded Redis at" in text, 30)
    port = int(re.search(r"redis://127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
    redis_pids = _redis_server_pids(port)
    assert len(redis_pids) == 1 and redis_pids <= _children(first.pid)
    children = _children(first.pid)
    assert len(children) >= 2  # the embedded redis-server and the round worker

    name = hs.unique("emb")
    first.create_index(name, 32)
    data = hs.Clusters(seed=12, dim=32, n_classes=4)
    accepted = []
    qf, qc = data.sample(60)
    first.ingest(name, hs.json_chunk(qf, qc, role="query"))
    for version in (1, 2):
        f, c = data.sample(150)
        accepted.append(first.ingest(name, hs.json_chunk(f, c)))
        first.wait_idle(name, version)
    before = first.rounds(name)
    assert len(before) == 2 and all(r["map"] is not None for r in before)
    # Accepted (202) just before the crash: it must not be lost either.
    f, c = data.sample(150)
    accepted.append(first.ingest(name, hs.json_chunk(f, c)))

    first.kill9()  # the serve process alone, as a crash would
    hs.wait_until(lambda: not any(_alive(p) for p in children), 30, 0.05,
                  "the embedded Redis and the worker to die with their parent")
    assert not any(_alive(p) for p in _redis_server_pids(port))
    assert not port_open(port)

    second = start_server("emb", workers=1, embedded=True, data_dir=data_dir,
                          lease_ttl_ms=LEASE_TTL_MS)
    info = second.wait_idle(name, 2)
    after = second.rounds(name)
    keep = ("round", "chunks", "n_database", "n_classes", "map", "loss")
    assert [{k: r[k] for k in keep} for r in after[:2]] == [{k: r[k] for k in keep}
                                                           for r in before]
    committed = [cid for r in after for cid in r["chunks"]]
    assert sorted(committed) == sorted(x["chunk_id"] for x in accepted)
    total = sum(x["items"] for x in accepted)
    assert info["n_items"] == after[-1]["n_database"] == total == 450
    all_ids = {i for x in accepted for i in range(*x["id_range"])}
    r = second.http.post(f"/indexes/{name}/search",
                         json={"features": [data.vector(0).tolist()], "k": 1000,
                               "min_version": info["model_version"]})
    assert r.status_code == 200
    assert {h["id"] for h in r.json()["results"][0]} == all_ids
    r = second.http.get(f"/indexes/{name}/search",
                        params={"item": min(all_ids), "k": 5, "min_version": info["model_version"]})
    assert r.status_code == 200 and len(r.json()["results"][0]) == 5
