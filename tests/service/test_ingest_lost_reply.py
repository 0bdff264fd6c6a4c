"""A lost Redis reply to the queueing of a chunk, through the real app, service and store on a
real Redis: an ingest sent without an Idempotency-Key goes under a key the service makes, the
store retries the lost reply under it, and the chunk is queued exactly once; when every try
loses its reply, the 503 names the key and a resend under it is answered exactly once.

The one thing not real is :class:`LoseQueueingReply`, a real ``redis.Redis`` client that loses
the reply of the command that queues a chunk (the enqueue script, or an XADD in a MULTI, as
the code before this change sent it) on purpose: after running it for real (a socket timeout
once Redis did it) or without sending it (a connection dropped first)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from redis.client import Pipeline
from support.data import npz_bytes
from support.net import unique

from hashstream.api.app import create_app
from hashstream.service.settings import Settings
from hashstream.store.index_store import IndexStore

NAME = "lost"
DIM = 8
N = 30
AFTER, BEFORE = "after", "before"  # the reply lost once the command ran / before it was sent


class LoseQueueingReply(redis.Redis):
    """A real Redis client; ``faults`` are used up one per command that queues a chunk on
    ``stream``: ``after`` runs it for real and then raises ``redis.TimeoutError`` (the reply
    never came), ``before`` raises ``redis.ConnectionError`` without sending it. ``runs``
    counts the queueing commands Redis ran (an EVALSHA refused as NOSCRIPT, which redis-py
    follows with SCRIPT LOAD and a resend, is neither a run nor a use of a fault)."""

    stream = ""
    faults: list[str]
    runs = 0

    def _lose(self, send: Any) -> Any:
        fault = self.faults.pop(0) if self.faults else None
        if fault == BEFORE:
            raise redis.ConnectionError("injected: connection dropped before sending")
        try:
            reply = send()
        except redis.exceptions.NoScriptError:  # not a run: redis-py loads it and resends
            if fault is not None:
                self.faults.insert(0, fault)
            raise
        self.runs += 1
        if fault == AFTER:
            raise redis.TimeoutError("injected: Timeout reading from socket (it ran)")
        return reply

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        if numkeys == 4 and keys_and_args[0] == self.stream:  # the enqueue script
            return self._lose(lambda: super(LoseQueueingReply, self).evalsha(
                sha, numkeys, *keys_and_args))
        return super().evalsha(sha, numkeys, *keys_and_args)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        return _LossyPipeline(self, transaction, shard_hint)


class _LossyPipeline(Pipeline):
    """A real pipeline whose execute() of an XADD on the owner's stream goes through its
    faults."""

    def __init__(self, owner: LoseQueueingReply, transaction: bool, shard_hint: Any) -> None:
        super().__init__(owner.connection_pool, owner.response_callbacks, transaction,
                         shard_hint)
        self.owner = owner

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        if any(args[:2] == ("XADD", self.owner.stream) for args, _ in self.command_stack):
            return list(self.owner._lose(lambda: super(_LossyPipeline, self).execute(
                raise_on_error)))
        return list(super().execute(raise_on_error))


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis
        ) -> Iterator[tuple[TestClient, LoseQueueingReply, IndexStore]]:
    """The real app on a real Redis whose index store talks through the lossy client."""
    prefix = unique("lost")
    settings = Settings(redis_url=redis_url, key_prefix=prefix)
    lossy = LoseQueueingReply.from_url(redis_url)
    lossy.faults = []
    with TestClient(create_app(settings)) as client:
        client.app.state.indexes.store = IndexStore(lossy, prefix)  # type: ignore[attr-defined]
        r = client.post("/indexes", json={"name": NAME, "dim": DIM, "method": "lsh",
                                          "bits": 16})
        assert r.status_code == 201, r.text
        view = IndexStore(redis_client, prefix)
        lossy.stream = view.keys(NAME).stream
        yield client, lossy, view
    lossy.close()


def _body(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return npz_bytes(features=rng.standard_normal((N, DIM)).astype(np.float32),
                     labels=np.eye(3, dtype=np.uint8)[rng.integers(0, 3, N)])


def _post(client: TestClient, body: bytes, key: str | None = None) -> Any:
    headers = {"Content-Type": "application/octet-stream"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(f"/indexes/{NAME}/ingest", content=body, headers=headers)


def _queue(view: IndexStore) -> tuple[list[str], int]:
    """The stream's entry ids and the queued-item count."""
    k = view.keys(NAME)
    entries = view.r.xrange(k.stream)
    return [e[0].decode() for e in entries], int(view.r.get(k.queued_items) or 0)


def test_a_reply_lost_after_the_chunk_was_queued_is_retried_and_queues_it_once(
        app: tuple[TestClient, LoseQueueingReply, IndexStore]) -> None:
    client, lossy, view = app
    lossy.faults = [AFTER]
    r = _post(client, _body(1))
    assert r.status_code == 202, r.text
    entries, items = _queue(view)
    assert len(entries) == 1 and items == N
    assert r.json()["chunk_id"] == entries[0]
    # the answer a keyless ingest always had: a first success, nothing replayed, no key
    assert set(r.json()) == {"chunk_id", "index", "items", "role", "id_range"}
    assert r.json()["id_range"] == [0, N]
    assert "Idempotent-Replayed" not in r.headers and "Idempotency-Key" not in r.headers
    assert lossy.runs == 2  # the lost run and the retry that found its record


def test_a_reply_lost_under_a_client_key_is_a_first_success_too(
        app: tuple[TestClient, LoseQueueingReply, IndexStore]) -> None:
    client, lossy, view = app
    lossy.faults = [AFTER]
    r = _post(client, _body(2), key="client-key-2")
    assert r.status_code == 202, r.text
    assert "Idempotent-Replayed" not in r.headers  # its own run queued it, not an earlier request
    entries, items = _queue(view)
    assert entries == [r.json()["chunk_id"]] and items == N
    again = _post(client, _body(2), key="client-key-2")
    assert again.json() == r.json() and again.headers["Idempotent-Replayed"] == "true"
    assert _queue(view) == (entries, N)


def test_every_reply_lost_is_a_503_naming_the_key_and_a_resend_under_it_queues_once(
        app: tuple[TestClient, LoseQueueingReply, IndexStore]) -> None:
    client, lossy, view = app
    lossy.faults = [AFTER, AFTER, AFTER]
    r = _post(client, _body(3))
    assert r.status_code == 503, r.text
    key = r.headers["Idempotency-Key"]
    assert key.startswith("server-") and r.headers["Retry-After"] == "5"
    problem = r.json()
    assert problem["idempotency_key"] == key and key in problem["detail"]
    assert lossy.faults == [] and lossy.runs == 3
    entries, items = _queue(view)
    assert len(entries) == 1 and items == N  # queued by the first run, not by the other two
    retry = _post(client, _body(3), key=key)
    assert retry.status_code == 202, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["chunk_id"] == entries[0] and retry.json()["id_range"] == [0, N]
    assert _queue(view) == (entries, N)


def test_a_reply_lost_before_the_command_ran_is_queued_once_by_the_retry(
        app: tuple[TestClient, LoseQueueingReply, IndexStore]) -> None:
    client, lossy, view = app
    lossy.faults = [BEFORE]
    r = _post(client, _body(4))
    assert r.status_code == 202, r.text
    assert lossy.runs == 1  # only the retry reached Redis
    entries, items = _queue(view)
    assert entries == [r.json()["chunk_id"]] and items == N
    assert "Idempotent-Replayed" not in r.headers


def test_every_try_lost_before_running_then_the_resend_queues_it(
        app: tuple[TestClient, LoseQueueingReply, IndexStore]) -> None:
    client, lossy, view = app
    lossy.faults = [BEFORE, BEFORE, BEFORE]
    r = _post(client, _body(5))
    assert r.status_code == 503 and lossy.runs == 0
    assert _queue(view) == ([], 0)
    retry = _post(client, _body(5), key=r.headers["Idempotency-Key"])
    assert retry.status_code == 202 and "Idempotent-Replayed" not in retry.headers
    assert _queue(view) == ([retry.json()["chunk_id"]], N)


def test_a_keyless_ingest_is_remembered_a_short_time_under_a_server_key(
        app: tuple[TestClient, LoseQueueingReply, IndexStore]) -> None:
    client, _, view = app
    r = _post(client, _body(6))
    assert r.status_code == 202 and "Idempotent-Replayed" not in r.headers
    k = view.keys(NAME)
    [(key, expires)] = view.r.zrange(k.ingest_key_expiry, 0, -1, withscores=True)
    assert key.decode().startswith("server-")
    assert 890 < expires - time.time() <= 900  # HASHSTREAM_SERVER_KEY_LIFETIME_S
    assert view.ingest_record(NAME, key.decode(), now=expires - 1) is not None
    assert view.ingest_record(NAME, key.decode(), now=expires + 1) is None
