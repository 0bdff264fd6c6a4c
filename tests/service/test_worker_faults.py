"""The worker under store faults: every chunk is committed exactly once, none is lost.

In-process: the real ``RoundRunner`` (driven one ``step`` at a time) on a real Redis and on the
suite's real 3-master Redis Cluster (every test runs on both), through
``support.faulty_store.FaultyStore``, which fails round commits before or after their EXEC and
takes the index's lease away mid-round. Every test ends on the same check of the state
(:func:`assert_exactly_once`): each chunk sent is in exactly one round record or in the dead
letters, the code store holds each item sent exactly once, the last round's database size is
the number of items committed, nothing is queued and no attempts are left counted.

What the worker documents, and these tests hold it to: a round's attempts are counted per chunk
when it starts (so a failed commit uses one up), a chunk that failed runs alone in its next
round, and a chunk whose rounds failed ``max_attempts`` times moves to the dead letters with its
history.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from support.data import train_chunk
from support.faulty_store import FaultyStore

from hashstream.service.chunks import ParsedChunk
from hashstream.service.registry import IndexService
from hashstream.service.worker import RoundRunner
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.store.connection import connect
from hashstream.store.index_store import IndexStore, RoundCommit

FAST = SDOHSettings(bits=16, n_anchors=64, n1=50, n2=50, query_hidden=32, query_steps=10,
                    seed=0)
DIM = 8
NAME = "ix"


@dataclass
class Sent:
    chunk_id: str
    ids: np.ndarray


def _parsed(seed: int, n: int) -> ParsedChunk:
    return train_chunk(seed, n, DIM)


class Index:
    """One index on the test's key prefix, with the chunks sent to it."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store
        self.service = IndexService(store)
        self.service.create(NAME, DIM, FAST)
        self.sent: list[Sent] = []

    def send(self, seed: int, n: int = 120) -> str:
        out = self.service.ingest(NAME, _parsed(seed, n))
        lo, hi = out["id_range"]
        self.sent.append(Sent(out["chunk_id"], np.arange(lo, hi, dtype=np.int64)))
        return str(out["chunk_id"])

    def attempts(self) -> dict[str, int]:
        return self.store.attempts(NAME, [s.chunk_id for s in self.sent])

    def round_chunks(self) -> list[list[str]]:
        return [list(r["chunks"]) for r in self.store.rounds(NAME)]


@pytest.fixture(params=["redis", "cluster"])
def index(request: pytest.FixtureRequest, index_store: IndexStore) -> Iterator[Index]:
    """The index on the single Redis, and on the suite's 3-master Redis Cluster."""
    if request.param == "redis":
        yield Index(index_store)
        return
    nodes = request.getfixturevalue("redis_cluster")
    client = connect(nodes.cluster_url)
    try:
        yield Index(IndexStore(client, f"{index_store.prefix}-c"))
    finally:
        client.close()


def step(runner: RoundRunner) -> bool | None:
    """One pass, as ``run_forever`` makes it: an exception that escapes is survived (None)."""
    try:
        return runner.step(NAME)
    except Exception:  # noqa: BLE001 - run_forever logs it and carries on
        return None


def drain(store: IndexStore, *runners: RoundRunner, max_passes: int = 30) -> None:
    """Step the runners in turn until the queue is empty and a whole pass did nothing."""
    for _ in range(max_passes):
        did = [step(r) for r in runners]
        if store.queue_depth(NAME) == 0 and not any(did):
            return
    raise AssertionError(f"still {store.queue_depth(NAME)} chunks queued after "
                         f"{max_passes} passes")


def dead_lettered(store: IndexStore) -> dict[str, dict[bytes, bytes]]:
    return {f[b"dl:chunk_id"].decode(): f for _, f in store.dead_letters(NAME)}


def assert_exactly_once(index: Index, *logs: FaultyStore) -> None:
    """Every chunk sent is in exactly one round record or in the dead letters; the code store
    holds every committed item once; the database size is the items committed; nothing is
    queued or left counted; the wrappers saw exactly one written commit per round."""
    store = index.store
    records = store.rounds(NAME)
    committed = Counter(c for r in records for c in r["chunks"])
    assert all(n == 1 for n in committed.values()), committed
    dead = set(dead_lettered(store))
    sent = {s.chunk_id for s in index.sent}
    assert not (set(committed) & dead), (committed, dead)
    assert set(committed) | dead == sent, (committed, dead, sent)

    version = store.version(NAME)
    assert version == len(records) and [r["round"] for r in records] == list(range(1, version + 1))
    stored_ids = np.concatenate([store.load_segment(NAME, v)["ids"] for v in range(1, version + 1)]
                                or [np.zeros(0, np.int64)])
    expected = np.concatenate([s.ids for s in index.sent if s.chunk_id in committed]
                              or [np.zeros(0, np.int64)])
    assert len(stored_ids) == len(np.unique(stored_ids)), "an item is stored twice"
    np.testing.assert_array_equal(np.sort(stored_ids), np.sort(expected))
    if records:
        assert records[-1]["n_database"] == len(expected)
    assert store.queue_depth(NAME) == 0
    assert store.attempts(NAME, list(committed)) == dict.fromkeys(committed, 0)
    if logs:
        assert sum(len(log.commits_written) for log in logs) == len(records)
    assert all(log.armed == 0 for log in logs), "a fault was armed but never fired"


# --- a commit that fails before EXEC ------------------------------------------------------

def test_failure_before_exec_writes_nothing_and_the_redo_commits_once(index: Index) -> None:
    faulty = FaultyStore(index.store).fail_before_exec()
    a, b = index.send(1), index.send(2)
    runner = RoundRunner(faulty, max_attempts=3)
    step(runner)
    [call] = faulty.calls
    assert call.outcome == "not-sent" and sorted(call.ack_ids) == sorted([a, b])
    # nothing written: no version, no record, both chunks still queued, one attempt each
    assert index.store.version(NAME) == 0 and index.store.rounds(NAME) == []
    assert index.store.queue_depth(NAME) == 2
    assert index.attempts() == {a: 1, b: 1}
    assert dead_lettered(index.store) == {}
    drain(index.store, runner)
    assert index.round_chunks() == [[a], [b]]  # chunks that failed run alone
    assert_exactly_once(index, faulty)


# --- a commit that fails after EXEC -------------------------------------------------------

def test_failure_after_exec_is_committed_once_and_a_redo_is_refused(index: Index) -> None:
    faulty = FaultyStore(index.store).fail_after_exec()
    a, b = index.send(1), index.send(2)
    runner = RoundRunner(faulty, max_attempts=3)
    step(runner)
    [call] = faulty.calls
    assert call.outcome == "committed" and call.raised
    # written: the caller saw an error, the round is there and the chunks are acknowledged
    assert index.store.version(NAME) == 1 and index.round_chunks() == [[a, b]]
    assert index.store.queue_depth(NAME) == 0
    # the commit redone with the same arguments sees the version moved and writes nothing
    assert faulty.inner.commit_round(NAME, call.expected_version, RoundCommit(
        ack_ids=call.ack_ids, state={"x": np.zeros(1)}, segment={"ids": np.arange(3)},
        record={"round": 1, "chunks": call.ack_ids})) is False
    assert index.store.version(NAME) == 1 and index.round_chunks() == [[a, b]]
    # the runner goes on from the stored version, not from what it had in memory
    drain(index.store, runner)
    assert index.round_chunks() == [[a, b]]  # nothing redone
    c = index.send(3)
    drain(index.store, runner)
    assert index.round_chunks() == [[a, b], [c]]
    assert_exactly_once(index, faulty)
    assert dead_lettered(index.store) == {}


def test_every_commit_failing_after_exec_still_commits_each_chunk_once(index: Index) -> None:
    faulty = FaultyStore(index.store).fail_after_exec(3)
    runner = RoundRunner(faulty, max_attempts=2)
    for seed in (1, 2, 3):
        index.send(seed)
        drain(index.store, runner)
    assert [c.outcome for c in faulty.calls] == ["committed"] * 3
    assert index.round_chunks() == [[s.chunk_id] for s in index.sent]
    assert dead_lettered(index.store) == {}
    assert_exactly_once(index, faulty)


# --- the lease lost mid-round -------------------------------------------------------------

def _thief(index: Index) -> tuple[FaultyStore, RoundRunner]:
    store = FaultyStore(IndexStore(index.store.r, index.store.prefix))  # logs only
    return store, RoundRunner(store, worker_id="thief", max_attempts=3)


@pytest.mark.parametrize("at", ["round_start", "commit"])
def test_lease_lost_mid_round_another_runner_commits_and_the_first_cannot(
        index: Index, at: str) -> None:
    victim_store = FaultyStore(index.store)
    thief_store, thief = _thief(index)
    victim = RoundRunner(victim_store, worker_id="victim", max_attempts=3)
    victim_store.lose_lease(thief.step, at=at)
    a, b = index.send(1), index.send(2)
    step(victim)
    [theft] = victim_store.thefts
    assert theft.owner_before is not None and theft.owner_before.endswith(":victim")
    assert theft.thief_result is True  # the thief took a lease of its own and ran a round
    assert theft.owner_after is None  # … and gave it back
    # the thief committed (the chunks the victim had started count as failed once, so they
    # run alone); the victim's commit, if it tried one, was fenced off and wrote nothing
    thief_chunks = [cid for c in thief_store.commits_written for cid in c.ack_ids]
    assert thief_chunks and set(thief_chunks) <= {a, b}
    assert victim_store.commits_written == []
    assert [r["worker"] for r in index.store.rounds(NAME)] == ["thief"]
    victim_token = int(theft.owner_before.split(":")[0])
    assert index.store.rounds(NAME)[0]["lease_token"] > victim_token
    # both go on: every lease is per round, so either may take the next ones
    c = index.send(3)
    drain(index.store, victim, thief)
    assert sorted(cid for r in index.round_chunks() for cid in r) == sorted([a, b, c])
    tokens = [r["lease_token"] for r in index.store.rounds(NAME)]
    assert tokens == sorted(set(tokens))  # each commit under a newer lease
    assert_exactly_once(index, victim_store, thief_store)


@pytest.mark.parametrize("at", ["round_start", "commit"])
def test_a_lapsed_lease_nobody_took_is_taken_back_and_the_round_commits_once(
        index: Index, at: str) -> None:
    """A worker starved past its lease TTL (on a loaded machine) keeps its round when no
    other worker took the index meanwhile: no attempt is wasted, nothing is committed
    twice."""
    victim_store = FaultyStore(index.store)
    victim = RoundRunner(victim_store, worker_id="victim", max_attempts=1)
    victim_store.lose_lease(lambda name: None, at=at)  # it lapses; nobody takes it
    a = index.send(1)
    assert step(victim) is True
    assert len(victim_store.thefts) == 1
    assert index.round_chunks() == [[a]]  # committed by its first and only attempt
    assert dead_lettered(index.store) == {}
    assert_exactly_once(index, victim_store)


def test_lapsed_lease_race_the_zombie_commits_between_the_new_holders_reads_and_commit(
        index: Index) -> None:
    """The interleaving that committed a chunk twice before fencing: A's lease lapses
    mid-round; B takes the lease, reads the version and the chunks A had read; A commits now
    (refused: B holds the lease); B commits. Then A's own commit goes out too (refused)."""
    a_store = FaultyStore(index.store)
    b_store, b = _thief(index)
    a = RoundRunner(a_store, worker_id="A", max_attempts=3)
    zombie_results: list[bool] = []
    b_store.on_round_start(lambda _name: zombie_results.append(a_store.commit_now()))
    a_store.lose_lease(b.step, at="commit")
    chunk = index.send(1, n=400)
    assert step(a) is False  # A's round was not committed
    assert zombie_results == [False]  # A's commit inside B's round: fenced off
    assert [c.outcome for c in a_store.calls] == ["refused", "refused"]
    assert [c.outcome for c in b_store.calls] == ["committed"]
    [record] = index.store.rounds(NAME)
    assert record["chunks"] == [chunk] and record["worker"] == "thief"
    assert record["n_database"] == 400  # 400 items sent, 400 in the database (not 800)
    assert_exactly_once(index, a_store, b_store)


# --- failures, then recovery --------------------------------------------------------------

@pytest.mark.parametrize("failures", [1, 2])
def test_failing_n_times_under_max_attempts_then_recovering(index: Index, failures: int
                                                            ) -> None:
    faulty = FaultyStore(index.store).fail_before_exec(failures)
    a, b = index.send(1), index.send(2)
    runner = RoundRunner(faulty, max_attempts=3)
    seen = []
    for _ in range(failures):
        step(runner)
        seen.append(index.attempts())
    # round 1 had both chunks; after its failure the first chunk runs alone
    assert seen == [{a: 1, b: 1}, {a: 2, b: 1}][:failures]
    assert index.store.version(NAME) == 0
    drain(index.store, runner)
    assert index.round_chunks() == [[a], [b]]
    assert [c.outcome for c in faulty.calls] == ["not-sent"] * failures + ["committed"] * 2
    assert dead_lettered(index.store) == {}
    assert_exactly_once(index, faulty)


def test_failing_max_attempts_times_dead_letters_the_chunk_and_the_index_recovers(
        index: Index) -> None:
    faulty = FaultyStore(index.store).fail_before_exec(3)
    runner = RoundRunner(faulty, max_attempts=3)
    a = index.send(1)
    for expected in (1, 2, 3):
        step(runner)
        assert index.attempts() == {a: expected}  # counted at each round start
    assert dead_lettered(index.store) == {} and index.store.queue_depth(NAME) == 1
    step(runner)  # the fourth start would exceed max_attempts: dead-lettered instead
    [fields] = dead_lettered(index.store).values()
    assert int(fields[b"dl:attempts"]) == 3
    history = json.loads(fields[b"dl:history"])
    assert len(history) == 3
    assert all("InjectedFault" in h["error"] and h["worker"] == runner.id for h in history)
    assert index.store.queue_depth(NAME) == 0 and index.store.version(NAME) == 0

    # the store works again: a new chunk commits, and the requeued one commits once
    b = index.send(2)
    drain(index.store, runner)
    assert index.round_chunks() == [[b]]
    [(entry_id, _)] = index.store.dead_letters(NAME)
    again = index.store.requeue_dead_letter(NAME, entry_id)
    assert again is not None and again != a
    index.sent[0] = Sent(again, index.sent[0].ids)
    drain(index.store, runner)
    assert index.round_chunks() == [[b], [again]]
    assert index.store.dead_letters(NAME) == []
    assert_exactly_once(index, faulty)


def test_failure_after_exec_leaves_no_failure_history_behind(index: Index) -> None:
    faulty = FaultyStore(index.store).fail_after_exec()
    index.send(1)
    drain(index.store, RoundRunner(faulty))
    assert_exactly_once(index, faulty)
    assert index.store.r.hgetall(index.store.keys(NAME).attempt_errors) == {}
