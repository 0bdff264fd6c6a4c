"""IndexStore against a real Redis: registry, ingest stream, atomic round commit, worker lock.

Redis and key prefixes: the shared fixtures of ``tests/support/redis_fixtures.py`` (each test
has its own prefix, removed when it ends).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from hashstream.cli.embedded_redis import EmbeddedRedis
from hashstream.store.codec import decode_array, encode_array
from hashstream.store.index_store import GROUP, IndexStore, Lease, RoundCommit
from hashstream.store.keys import workers_info_key


@pytest.fixture
def store(index_store: IndexStore) -> IndexStore:
    return index_store


@pytest.fixture
def name(store: IndexStore) -> str:
    n = f"ix-{uuid.uuid4().hex[:8]}"
    assert store.create_index(n, {"name": n, "dim": 4})
    return n


def _keys_of(client: redis.Redis, store: IndexStore, name: str) -> dict[bytes, bytes]:
    """Every key of the index, with its serialised value (for nothing-changed checks)."""
    pattern = f"{store.prefix}:{{{name}}}:*".replace("{", "\\{").replace("}", "\\}")
    out = {}
    for key in client.scan_iter(match=pattern, count=1000):
        if key.endswith((b":lease", b":lease_token")):
            continue
        kind = client.type(key)
        if kind == b"stream":
            value = repr((client.xrange(key), client.xpending(key, GROUP)["pending"])).encode()
        else:
            value = client.dump(key) or b""
        out[key] = value
    return out


def _commit(store: IndexStore, name: str, expected: int, **parts: Any) -> bool:
    """``commit_round`` of a :class:`RoundCommit` made of ``parts``."""
    return store.commit_round(name, expected, RoundCommit(**parts))


def _round(version: int, seed: int = 0, n: int = 5) -> dict[str, Any]:
    """Arguments of commit_round for a round producing ``version``."""
    rng = np.random.default_rng(seed)
    return {
        "state": {"accumulator": rng.standard_normal((4, 4)), "round": np.asarray(version)},
        "projection": rng.standard_normal((4, 16)),
        "centers": np.sign(rng.standard_normal((3, 16))),
        "segment": {"codes": rng.integers(0, 256, (n, 2), dtype=np.uint8),
                    "ids": np.arange(n, dtype=np.int64) + 100 * version,
                    "version": np.asarray(version)},
        "record": {"round": version, "model_version": version, "n_database": n * version,
                   "seed": seed},
    }


def _enqueue(store: IndexStore, name: str, value: int) -> str:
    return store.enqueue(name, {"role": b"train", "features": encode_array(np.full((2, 4), value)),
                                "labels": encode_array(np.ones((2, 1), np.uint8)),
                                "ids": encode_array(np.arange(2))})


# --- registry ------------------------------------------------------------------------------

def test_create_list_config_delete(store: IndexStore, redis_client: redis.Redis,
                                   key_prefix: str) -> None:
    a, b = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    assert store.create_index(b, {"name": b, "dim": 3})
    assert store.create_index(a, {"name": a, "dim": 7, "nested": {"x": [1, 2]}})
    assert not store.create_index(a, {"name": a, "dim": 99})  # exists: refused, unchanged
    # the same config again is the create re-sent after a lost reply (RedisCluster's client
    # does that): answered created, nothing written twice
    assert store.create_index(a, {"name": a, "dim": 7, "nested": {"x": [1, 2]}})
    assert store.version(a) == 0 and store.queue_depth(a) == 0
    assert store.config(a) == {"name": a, "dim": 7, "nested": {"x": [1, 2]}}
    assert store.config("never-created") is None
    names = store.list_indexes()
    assert a in names and b in names and names == sorted(names)
    assert store.version(a) == 0 and store.queue_depth(a) == 0 and store.rounds(a) == []
    other = IndexStore(redis_client, key_prefix + "-other")
    assert other.list_indexes() == []  # prefixes keep apart

    assert store.delete_index(a)
    assert a not in store.list_indexes() and b in store.list_indexes()
    assert store.config(a) is None
    assert not store.delete_index(a)
    assert store.create_index(a, {"name": a, "dim": 2})  # the name is free again
    assert store.config(a) == {"name": a, "dim": 2}
    assert store.version(a) == 0 and store.queue_depth(a) == 0


def test_delete_removes_every_key(store: IndexStore, redis_client: redis.Redis,
                                  name: str) -> None:
    _enqueue(store, name, 1)
    eid = store.read_chunks(name, "runner", 10, new=True)[0][0]
    assert _commit(store, name, 0, **_round(1), ack_ids=[eid], query_chunks={
        "q-1": {"features": np.ones((2, 4)), "labels": np.ones((2, 1))}})
    assert _commit(store, name, 1, **_round(2), ack_ids=[], query_chunks={})
    _enqueue(store, name, 2)
    store.next_ids(name, 10)
    assert store.take_lease(name, "w", 60_000) is not None
    assert _keys_of(redis_client, store, name)
    assert store.delete_index(name)
    pattern = f"{store.prefix}:{{{name}}}:*".replace("{", "\\{").replace("}", "\\}")
    assert list(redis_client.scan_iter(match=pattern)) == []


# --- ingest stream -------------------------------------------------------------------------

def test_read_chunks_new_versus_pending(store: IndexStore, name: str) -> None:
    e1, e2, e3 = (_enqueue(store, name, v) for v in (1, 2, 3))
    assert store.queue_depth(name) == 3
    assert store.read_chunks(name, "runner", 10, new=False) == []  # nothing read yet
    first = store.read_chunks(name, "runner", 2, new=True)
    assert [eid for eid, _ in first] == [e1, e2]
    assert decode_array(first[1][1][b"features"])[0, 0] == 2 and first[0][1][b"role"] == b"train"
    # Read but unacknowledged: pending for this consumer, not new any more.
    assert [eid for eid, _ in store.read_chunks(name, "runner", 10, new=False)] == [e1, e2]
    assert [eid for eid, _ in store.read_chunks(name, "runner", 10, new=True)] == [e3]
    assert store.read_chunks(name, "runner", 10, new=True) == []
    assert store.read_chunks(name, "runner", 10, new=True, block_ms=50) == []
    assert [eid for eid, _ in store.read_chunks(name, "runner", 10, new=False)] == [e1, e2, e3]
    assert store.read_chunks(name, "someone-else", 10, new=False) == []  # per consumer
    assert store.queue_depth(name) == 3  # reading acknowledges nothing


def test_ack_in_commit_removes_entries(store: IndexStore, redis_client: redis.Redis,
                                       name: str) -> None:
    e1, e2 = _enqueue(store, name, 1), _enqueue(store, name, 2)
    store.read_chunks(name, "runner", 10, new=True)
    assert _commit(store, name, 0, **_round(1), ack_ids=[e1], query_chunks={})
    assert store.queue_depth(name) == 1
    assert [eid for eid, _ in store.read_chunks(name, "runner", 10, new=False)] == [e2]
    assert redis_client.xpending(store.keys(name).stream, GROUP)["pending"] == 1
    assert _commit(store, name, 1, state=None, projection=None, centers=None,
                              segment=None, record=None, ack_ids=[e2], query_chunks={})
    assert store.queue_depth(name) == 0 and store.version(name) == 1
    assert redis_client.xpending(store.keys(name).stream, GROUP)["pending"] == 0
    assert store.read_chunks(name, "runner", 10, new=False) == []


def test_pending_entry_deleted_from_stream_is_skipped(store: IndexStore,
                                                      redis_client: redis.Redis,
                                                      name: str) -> None:
    e1, e2 = _enqueue(store, name, 1), _enqueue(store, name, 2)
    store.read_chunks(name, "runner", 10, new=True)
    redis_client.xdel(store.keys(name).stream, e1)  # pending, but its fields are gone
    assert [eid for eid, _ in store.read_chunks(name, "runner", 10, new=False)] == [e2]


def test_claim_stale_takes_over_a_dead_consumers_entries(store: IndexStore, name: str) -> None:
    e1 = _enqueue(store, name, 1)
    store.read_chunks(name, "dead", 10, new=True)
    assert store.read_chunks(name, "runner", 10, new=False) == []
    assert store.claim_stale(name, "runner", idle_ms=0) == 1
    assert [eid for eid, _ in store.read_chunks(name, "runner", 10, new=False)] == [e1]
    # the dead consumer, left with nothing pending, is dropped from the group
    consumers = [c["name"] for c in store.r.xinfo_consumers(store.keys(name).stream, GROUP)]
    assert consumers == [b"runner"]
    assert store.claim_stale(name, "runner", idle_ms=0) == 1  # its own, still pending


def test_claim_stale_pages_through_many_entries(store: IndexStore, name: str) -> None:
    eids = [_enqueue(store, name, i) for i in range(2500)]
    store.read_chunks(name, "dead", 3000, new=True)
    assert store.claim_stale(name, "runner", idle_ms=0) == 2500
    got = store.read_chunks(name, "runner", 3000, new=False)
    assert [eid for eid, _ in got] == eids


def test_next_ids_never_overlap(store: IndexStore, name: str) -> None:
    assert store.next_ids(name, 5) == 0
    assert store.next_ids(name, 3) == 5
    starts: list[int] = []

    def reserve() -> None:
        for _ in range(20):
            starts.append(store.next_ids(name, 7))

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ranges = sorted(starts)
    assert ranges == list(range(8, 8 + 7 * 80, 7))


# --- the round's commit --------------------------------------------------------------------

def test_commit_round_writes_everything(store: IndexStore, redis_client: redis.Redis,
                                        name: str) -> None:
    eid = _enqueue(store, name, 1)
    store.read_chunks(name, "runner", 10, new=True)
    r = _round(1, seed=3)
    queries = {"0-1": {"features": np.ones((2, 4), np.float32), "labels": np.eye(2)}}
    assert _commit(store, name, 0, **r, ack_ids=[eid], query_chunks=queries)
    assert store.version(name) == 1
    state = store.load_state(name)
    assert set(state) == set(r["state"])
    np.testing.assert_array_equal(state["accumulator"], r["state"]["accumulator"])
    assert set(store.load_state(name, ["round"])) == {"round"}
    np.testing.assert_array_equal(store.load_projection(name, 1), r["projection"])
    assert store.load_projection(name, 2) is None
    centers = store.load_center_memory(name)
    assert set(centers) == {1}
    np.testing.assert_array_equal(centers[1], r["centers"])
    seg = store.load_segment(name, 1)
    for key in r["segment"]:
        np.testing.assert_array_equal(seg[key], r["segment"][key])
    assert store.load_segment(name, 2) == {}
    assert store.rounds(name)[-1]["seed"] == 3 and len(store.rounds(name)) == 1
    loaded = store.load_queries(name)
    assert set(loaded) == {"0-1"}
    np.testing.assert_array_equal(loaded["0-1"]["labels"], np.eye(2))
    assert store.queue_depth(name) == 0

    # The next round keeps P and the segment of version 1 (immutable), replaces the state.
    r2 = _round(2, seed=4)
    assert _commit(store, name, 1, **r2, ack_ids=[], query_chunks={})
    np.testing.assert_array_equal(store.load_projection(name, 1), r["projection"])
    np.testing.assert_array_equal(store.load_projection(name, 2), r2["projection"])
    np.testing.assert_array_equal(store.load_state(name)["accumulator"],
                                  r2["state"]["accumulator"])
    assert set(store.load_center_memory(name)) == {1, 2}
    assert [rec["round"] for rec in store.rounds(name)] == [1, 2]
    assert [rec["round"] for rec in store.rounds(name, -1, -1)] == [2]


@pytest.mark.parametrize("expected", [0, 2, 7], ids=["behind", "ahead", "far-ahead"])
def test_commit_with_stale_version_writes_nothing(store: IndexStore, redis_client: redis.Redis,
                                                  name: str, expected: int) -> None:
    assert _commit(store, name, 0, **_round(1), ack_ids=[], query_chunks={})
    eid = _enqueue(store, name, 5)
    store.read_chunks(name, "runner", 10, new=True)
    before = _keys_of(redis_client, store, name)
    assert not _commit(store, name, expected, **_round(expected + 1, seed=9),
                                  ack_ids=[eid], query_chunks={"x": {"f": np.ones(2)}})
    assert not _commit(store, name, expected, state=None, projection=None, centers=None,
                                  segment=None, record=None, ack_ids=[eid],
                                  query_chunks={"x": {"f": np.ones(2)}})
    assert _keys_of(redis_client, store, name) == before
    assert store.version(name) == 1 and store.queue_depth(name) == 1


class _BumpWhileEncoding:
    """An array whose conversion (which commit_round does between WATCH and EXEC) first lets a
    second IndexStore commit the same version: the WATCH race, made deterministic."""

    def __init__(self, value: np.ndarray, race: Any) -> None:
        self.value, self.race, self.fired = value, race, False

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        if not self.fired:
            self.fired = True
            self.race()
        return self.value if dtype is None else self.value.astype(dtype)


def test_watch_race_loses_and_writes_nothing(store: IndexStore, redis_url: str,
                                             redis_client: redis.Redis, name: str) -> None:
    assert _commit(store, name, 0, **_round(1), ack_ids=[], query_chunks={})
    x, y = _enqueue(store, name, 1), _enqueue(store, name, 2)
    store.read_chunks(name, "runner", 10, new=True)
    other_client = redis.Redis.from_url(redis_url)
    other = IndexStore(other_client, store.prefix)
    winner = _round(2, seed=21)
    won: list[bool] = []

    def race() -> None:
        won.append(_commit(other, name, 1, **winner, ack_ids=[y], query_chunks={}))

    loser = _round(2, seed=22)
    loser["state"]["accumulator"] = _BumpWhileEncoding(loser["state"]["accumulator"], race)
    try:
        ok = _commit(store, name, 1, **loser, ack_ids=[x],
                                query_chunks={"lost": {"f": np.ones(3)}})
    finally:
        other_client.close()
    assert won == [True] and ok is False
    assert store.version(name) == 2
    assert [rec.get("seed") for rec in store.rounds(name)] == [0, 21]  # only the winner's
    np.testing.assert_array_equal(store.load_projection(name, 2), winner["projection"])
    np.testing.assert_array_equal(store.load_segment(name, 2)["ids"], winner["segment"]["ids"])
    np.testing.assert_array_equal(store.load_state(name)["accumulator"],
                                  winner["state"]["accumulator"])
    assert store.load_queries(name) == {}
    # The loser's chunk is still queued and pending; the winner's was acknowledged.
    assert [eid for eid, _ in store.read_chunks(name, "runner", 10, new=False)] == [x]
    assert store.queue_depth(name) == 1


def test_concurrent_commits_of_one_version_one_wins(store: IndexStore, redis_url: str,
                                                    name: str) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def attempt(seed: int) -> None:
        c = redis.Redis.from_url(redis_url)
        try:
            s = IndexStore(c, store.prefix)
            barrier.wait()
            results.append(_commit(s, name, 0, **_round(1, seed=seed), ack_ids=[],
                                          query_chunks={}))
        finally:
            c.close()

    threads = [threading.Thread(target=attempt, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]
    assert store.version(name) == 1 and len(store.rounds(name)) == 1


# --- leases and liveness -------------------------------------------------------------------

def test_lease_taken_by_one_renewed_and_released_by_its_holder_only(
        store: IndexStore, redis_client: redis.Redis, name: str) -> None:
    key = store.keys(name).lease
    a = store.take_lease(name, "A", 10_000)
    assert a is not None and store.take_lease(name, "B", 10_000) is None
    assert redis_client.get(key) == f"{a.token}:A".encode()
    assert store.lease_holder(name) == (a.token, "A")
    redis_client.pexpire(key, 1_000)
    assert store.renew_lease(a) and redis_client.pttl(key) > 5_000
    stranger = Lease(name, "B", a.token, 10_000)  # same token, another worker: not the holder
    assert not store.renew_lease(stranger)
    store.release_lease(stranger)
    assert redis_client.get(key) == f"{a.token}:A".encode()
    store.release_lease(a)
    assert redis_client.get(key) is None and not store.renew_lease(a)
    b = store.take_lease(name, "B", 10_000)
    assert b is not None and b.token > a.token  # fencing tokens only grow
    assert store.take_lease(name, "A", 10_000) is None


def test_lease_expires_and_the_next_holder_gets_a_larger_token(store: IndexStore,
                                                               name: str) -> None:
    a = store.take_lease(name, "A", 150)
    assert a is not None and store.take_lease(name, "B", 150) is None
    deadline = time.monotonic() + 10
    while (b := store.take_lease(name, "B", 10_000)) is None:
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.02)
    assert b.token == a.token + 1 and not store.renew_lease(a)


def test_commit_is_fenced_by_the_lease(store: IndexStore, name: str) -> None:
    """A commit with a lease goes through only while that lease is the index's current one."""
    a = store.take_lease(name, "A", 10_000)
    assert a is not None
    store.release_lease(a)  # as if it lapsed
    assert not store.commit_round(name, 0, RoundCommit(**_round(1)), lease=a)
    b = store.take_lease(name, "B", 10_000)
    assert b is not None
    assert not store.commit_round(name, 0, RoundCommit(**_round(1)), lease=a)  # B holds it
    assert store.version(name) == 0
    assert store.commit_round(name, 0, RoundCommit(**_round(1)), lease=b)
    assert store.version(name) == 1 and store.rounds(name)[0]["round"] == 1


def test_release_leases_of_a_dead_worker_only(store: IndexStore, name: str) -> None:
    other = f"{name}-2"
    store.create_index(other, {"dim": 4})
    assert store.take_lease(name, "dead", 60_000) is not None
    assert store.take_lease(other, "alive", 60_000) is not None
    assert store.release_leases_of("dead") == [name]
    assert store.release_leases_of("dead") == []
    assert store.lease_holder(name) is None and store.lease_holder(other) is not None
    store.delete_index(other)


def test_heartbeat_counts_live_workers(store: IndexStore, redis_client: redis.Redis,
                                       key_prefix: str) -> None:
    own = IndexStore(redis_client, f"{key_prefix}-hb-{uuid.uuid4().hex[:6]}")
    assert own.workers_alive() == 0
    own.heartbeat("w1", ttl_s=30)
    own.heartbeat("w2", ttl_s=1)
    own.heartbeat("w1", ttl_s=30, info={"hamming_kernel": "avx2"})
    assert own.workers_alive() == 2
    assert own.workers()["w1"] == {"hamming_kernel": "avx2"} and own.workers()["w2"] == {}
    deadline = time.monotonic() + 10
    while own.workers_alive() != 1:
        assert time.monotonic() < deadline, "the heartbeat never expired"
        time.sleep(0.05)
    own.heartbeat("w1", ttl_s=30)  # a beat drops the expired worker's info too
    assert redis_client.hkeys(workers_info_key(own.prefix)) == [b"w1"]
    assert own.drop_heartbeat("w1") and not own.drop_heartbeat("w1")
    assert own.workers() == {}


@pytest.mark.parametrize("fsync", ["everysec", "no"])
def test_embedded_redis_persists_across_restart(tmp_path: Path, fsync: str) -> None:
    """The embedded server keeps an acknowledged commit in its append-only file, under
    either appendfsync (a killed server's writes are in the kernel's page cache)."""
    server = EmbeddedRedis(tmp_path, fsync=fsync).start()
    c = redis.Redis.from_url(server.url)
    assert c.config_get("appendfsync") == {"appendfsync": fsync}
    s = IndexStore(c, "persist")
    assert s.create_index("p", {"dim": 4})
    assert _commit(s, "p", 0, **_round(1), ack_ids=[], query_chunks={})
    c.close()
    server.process.kill()  # type: ignore[union-attr]
    server.process.wait()  # type: ignore[union-attr]
    server.process = None
    again = EmbeddedRedis(tmp_path).start()
    try:
        c2 = redis.Redis.from_url(again.url)
        s2 = IndexStore(c2, "persist")
        assert s2.version("p") == 1 and s2.list_indexes() == ["p"]
        np.testing.assert_array_equal(s2.load_segment("p", 1)["ids"], _round(1)["segment"]["ids"])
        c2.close()
    finally:
        again.stop()


def test_a_zombie_claims_nothing_and_no_entry_is_lost_to_a_dropped_consumer(
        store: IndexStore, name: str) -> None:
    """The holder's claim drops consumers with nothing pending in the same step as it reads
    them, so an entry a zombie reads afterwards is pending under it, and claimed next time."""
    zombie = store.take_lease(name, "A", 10_000)
    assert zombie is not None
    store.release_lease(zombie)  # lapsed
    holder = store.take_lease(name, "B", 10_000)
    assert holder is not None
    e1 = _enqueue(store, name, 1)
    store.read_chunks(name, "A", 10, new=True)  # the zombie read e1
    assert store.claim_stale(name, "A", 0, lease=zombie) == -1  # fenced: nothing moves
    assert store.claim_stale(name, "B", 0, lease=holder) == 1
    stream = store.keys(name).stream
    assert [c["name"] for c in store.r.xinfo_consumers(stream, GROUP)] == [b"B"]
    e2 = _enqueue(store, name, 2)
    assert [eid for eid, _ in store.read_chunks(name, "A", 10, new=True)] == [e2]  # zombie
    assert store.claim_stale(name, "B", 0, lease=holder) == 2
    assert [eid for eid, _ in store.read_chunks(name, "B", 10, new=False)] == [e1, e2]


def test_a_commit_of_thousands_of_chunks_and_fields_goes_through_whole(store: IndexStore,
                                                                       name: str) -> None:
    eids = [_enqueue(store, name, i) for i in range(2500)]
    store.read_chunks(name, "w", 3000, new=True)
    queries = {f"q{i}": {"features": np.ones((1, 2)), "labels": np.ones((1, 1))}
               for i in range(700)}
    assert _commit(store, name, 0, **_round(1), ack_ids=eids, query_chunks=queries)
    assert store.queue_depth(name) == 0 and store.version(name) == 1
    assert len(store.load_queries(name)) == 700
    assert not _commit(store, name, 0, **_round(1), ack_ids=eids, query_chunks={})  # a retry
    assert len(store.rounds(name)) == 1


def test_a_zombie_round_start_uses_up_no_attempt(store: IndexStore, name: str) -> None:
    eid = _enqueue(store, name, 1)
    zombie = store.take_lease(name, "A", 10_000)
    assert zombie is not None
    assert store.start_attempt(name, [eid], lease=zombie) == {eid: 1}
    store.release_lease(zombie)  # lapsed
    holder = store.take_lease(name, "B", 10_000)
    assert store.start_attempt(name, [eid], lease=zombie) is None
    assert store.attempts(name, [eid]) == {eid: 1}
    assert store.start_attempt(name, [eid], lease=holder) == {eid: 2}


class ResendStartAttempt(redis.Redis):
    """A real Redis client that runs the round-start script twice and answers the second
    reply: what a client's retry does when the first reply is lost to a timeout after Redis
    ran the command (RedisCluster's client re-sends it; so would a standalone client given a
    retry policy)."""

    sha = ""

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        if sha == self.sha:
            super().evalsha(sha, numkeys, *keys_and_args)  # its reply is "lost"
        return super().evalsha(sha, numkeys, *keys_and_args)


def test_a_round_start_resent_after_a_lost_reply_counts_once(
        store: IndexStore, name: str, redis_client: redis.Redis) -> None:
    """Each call counts one attempt per chunk however often Redis runs it; the marker fields
    of the calls leave with the chunk (commit or dead letter)."""
    client = ResendStartAttempt(connection_pool=redis_client.connection_pool)
    resending = IndexStore(client, store.prefix)
    client.sha = resending._start_attempt.sha
    resending._start_attempt(keys=["x", "y"], args=["", "n"])  # loads the script: sha set
    e1, e2 = _enqueue(store, name, 1), _enqueue(store, name, 2)
    assert resending.start_attempt(name, [e1, e2]) == {e1: 1, e2: 1}
    assert resending.start_attempt(name, [e1]) == {e1: 2}  # a new call counts
    assert store.attempts(name, [e1, e2]) == {e1: 2, e2: 1}
    attempts = store.keys(name).attempts
    assert set(redis_client.hkeys(attempts)) == {
        x.encode() for e in (e1, e2) for x in (e, f"{e}:call")}
    store.read_chunks(name, "w", 10, new=True)
    assert _commit(store, name, 0, **_round(1), ack_ids=[e1])
    assert set(redis_client.hkeys(attempts)) == {e2.encode(), f"{e2}:call".encode()}
    fields = dict(redis_client.xrange(store.keys(name).stream, e2, e2)[0][1])
    assert store.dead_letter(name, e2, fields, "test") is not None
    assert redis_client.hkeys(attempts) == []


def test_a_lapsed_lease_is_taken_back_only_while_no_other_was_taken(
        store: IndexStore, name: str, redis_client: Any) -> None:
    """A worker starved past its TTL keeps its round when nobody took the index meanwhile
    (no one else can have claimed or committed), never after another lease or a release."""
    key = store.keys(name).lease
    a = store.take_lease(name, "A", 10_000)
    assert a is not None
    redis_client.delete(key)  # as if it lapsed
    assert store.renew_lease(a) and redis_client.get(key) == a.value.encode()
    assert store.commit_round(name, 0, RoundCommit(**_round(1)), lease=a)
    redis_client.delete(key)
    b = store.take_lease(name, "B", 10_000)  # B takes the lapsed lease: A's is gone for good
    assert b is not None and not store.renew_lease(a)
    assert not store.commit_round(name, 1, RoundCommit(**_round(2)), lease=a)
    store.release_lease(b)
    c = store.take_lease(name, "C", 10_000)
    assert c is not None
    redis_client.delete(key)
    store.release_lease(c)  # released after it lapsed: still never taken back
    assert not store.renew_lease(c) and redis_client.get(key) is None
    d = store.take_lease(name, "D", 10_000)
    assert d is not None and d.token > c.token
    assert store.release_leases_of("D") == [name]  # D known dead: dropped, not revivable
    assert not store.renew_lease(d) and redis_client.get(key) is None
