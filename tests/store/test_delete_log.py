"""The delete log against a real Redis: one fenced script per delete (epoch, version, stream
position, live-item count), and the round commit fenced on the delete epoch."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import redis

from hashstream.store.codec import encode_array
from hashstream.store.index_store import DeletesLanded, IndexStore, RoundCommit
from hashstream.store.item_deletes import stream_position


@pytest.fixture
def name(index_store: IndexStore) -> str:
    n = f"del-{uuid.uuid4().hex[:8]}"
    assert index_store.create_index(n, {"name": n, "dim": 4})
    return n


def _segment(ids: list[int]) -> dict[str, np.ndarray]:
    return {"codes": np.zeros((len(ids), 2), dtype=np.uint8),
            "ids": np.asarray(ids, dtype=np.int64),
            "label_indptr": np.arange(len(ids) + 1), "label_indices": np.zeros(len(ids))}


def test_a_delete_is_logged_once_at_its_epoch_version_and_stream_place(
        index_store: IndexStore, name: str) -> None:
    store = index_store
    assert store.commit_round(name, 0, RoundCommit(segment=_segment([1, 2, 3]), items=3))
    chunk = store.enqueue(name, {"role": b"train", "features": encode_array(np.ones((1, 4)))})
    done = store.deletes.delete(name, np.asarray([2, 3]), epoch=0, version=None)
    assert (done.status, done.epoch, done.version) == (1, 1, 1)
    assert store.search_state(name)[:2] == (1, 1) and store.item_count(name) == 1
    [entry] = store.deletes.read(name, 0)
    assert entry.epoch == 1 and entry.version == 1 and entry.ids.tolist() == [2, 3]
    assert entry.queued_up_to == stream_position(chunk)  # the stream's last id then

    # the same delete again (re-sent after a lost reply, as RedisCluster's client does) is
    # answered done and logs nothing twice
    again = store.deletes.delete(name, np.asarray([2, 3]), epoch=0, version=None)
    assert (again.status, again.epoch) == (1, 1)
    assert store.item_count(name) == 1 and len(store.deletes.read(name, 0)) == 1
    # a second delete decided at the old epoch is refused (it must decide again), as is one
    # that expects another version; nothing is logged or counted
    assert store.deletes.delete(name, np.asarray([2]), epoch=0, version=None).status == 0
    assert store.deletes.delete(name, np.asarray([3, 2]), epoch=0, version=None).status == 0
    moved = store.deletes.delete(name, np.asarray([1]), epoch=1, version=0)
    assert (moved.status, moved.epoch, moved.version) == (0, 1, 1)
    assert store.item_count(name) == 1 and len(store.deletes.read(name, 0)) == 1
    assert store.deletes.delete(name, np.asarray([1]), epoch=1, version=1).status == 1
    assert [e.epoch for e in store.deletes.read(name, 1)] == [2]
    assert store.deletes.read(name, 0, 1)[0].ids.tolist() == [2, 3]
    assert store.deletes.read(name, 2, 2) == []
    assert store.item_count(name) == 0


def test_a_delete_of_a_missing_index_writes_nothing(index_store: IndexStore,
                                                    redis_client: redis.Redis) -> None:
    assert index_store.deletes.delete("never", np.asarray([1]), 0, None).status == -1
    assert not redis_client.exists(index_store.keys("never").delete_log)


def test_a_commit_filtered_before_a_delete_is_refused_whole(index_store: IndexStore,
                                                            name: str) -> None:
    store = index_store
    assert store.commit_round(name, 0, RoundCommit(segment=_segment([1, 2]), items=2,
                                                   delete_epoch=0))
    assert store.deletes.delete(name, np.asarray([1]), 0, None).status == 1
    with pytest.raises(DeletesLanded):
        store.commit_round(name, 1, RoundCommit(segment=_segment([3]), items=2,
                                                delete_epoch=0, record={"round": 2}))
    assert store.version(name) == 1 and store.rounds(name) == [] and store.item_count(name) == 1
    assert store.commit_round(name, 1, RoundCommit(segment=_segment([3]), items=2,
                                                   delete_epoch=1))
    assert store.version(name) == 2 and store.item_count(name) == 2


def test_deleting_the_index_removes_its_delete_log(index_store: IndexStore, name: str,
                                                   redis_client: redis.Redis) -> None:
    store = index_store
    assert store.commit_round(name, 0, RoundCommit(segment=_segment([1]), items=1))
    assert store.deletes.delete(name, np.asarray([1]), 0, None).status == 1
    k = store.keys(name)
    assert redis_client.exists(k.delete_log, k.delete_epoch, k.items) == 3
    assert store.delete_index(name)
    assert redis_client.exists(k.delete_log, k.delete_epoch, k.items) == 0


def test_a_delete_re_sent_after_a_chunk_was_queued_is_refused_to_decide_again(
        index_store: IndexStore, name: str) -> None:
    # re-sent before anything was queued: its own entry, answered done; after a chunk was
    # queued, the same ids would have a later place in the ingest order (cancelling that
    # chunk's upserts), so it is not taken for the first one
    store = index_store
    assert store.commit_round(name, 0, RoundCommit(segment=_segment([1, 2, 3]), items=3))
    assert store.deletes.delete(name, np.asarray([1]), epoch=0, version=None).status == 1
    assert store.deletes.delete(name, np.asarray([1]), epoch=0, version=None).status == 1
    store.enqueue(name, {"role": b"train", "features": encode_array(np.ones((1, 4)))})
    assert store.deletes.delete(name, np.asarray([1]), epoch=0, version=None).status == 0
    assert len(store.deletes.read(name, 0)) == 1 and store.item_count(name) == 2
