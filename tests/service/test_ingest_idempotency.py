"""Idempotent ingest on a real Redis and real servers: a retry under the same Idempotency-Key
answers the first answer and queues nothing (also when the index is backlogged, when the same
key races itself, when the answer was lost on the way to the Python client); a key reused for
another chunk or malformed is a 422 naming the header; keys expire and are pruned in bounded
steps; deleting the index deletes them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from support.data import npz_bytes
from support.net import unique
from support.processes import Server, assert_problem

from hashstream.client import Client
from hashstream.service.chunks import ClientLabels, ParsedChunk
from hashstream.service.errors import InvalidInput
from hashstream.service.registry import IndexService
from hashstream.store.index_store import IndexStore

NAME = "once"
DIM = 8
DAY = 86_400.0


def chunk(seed: int, n: int = 20, ids: bool = False) -> ParsedChunk:
    rng = np.random.default_rng(seed)
    labels = ClientLabels(np.arange(n + 1), rng.integers(0, 3, n).astype(np.int64), "int")
    return ParsedChunk(rng.standard_normal((n, DIM)).astype(np.float32), labels,
                       np.arange(n, dtype=np.int64) + 1000 * seed if ids else None, "train")


@pytest.fixture
def service(index_store: IndexStore) -> IndexService:
    service = IndexService(index_store)
    service.create_from_request(NAME, DIM, {"bits": 16}, None, method="lsh")
    return service


def queued(store: IndexStore) -> tuple[int, int]:
    """Stream entries and the queued-item count."""
    k = store.keys(NAME)
    return int(store.r.xlen(k.stream)), int(store.r.get(k.queued_items) or 0)


def test_a_retry_under_the_same_key_answers_the_first_answer_and_queues_nothing(
        service: IndexService, index_store: IndexStore) -> None:
    first, again = service.ingest_once(NAME, chunk(1), "k-1", DAY)
    assert not again and first["id_range"] == [0, 20]
    retry, again = service.ingest_once(NAME, chunk(1), "k-1", DAY)
    assert again and retry == first  # the same chunk id and the same assigned ids
    assert queued(index_store) == (1, 20)
    other, again = service.ingest_once(NAME, chunk(2), "k-2", DAY)
    assert not again and other["chunk_id"] != first["chunk_id"]
    assert queued(index_store) == (2, 40)


def test_a_key_reused_for_another_chunk_is_refused_naming_the_header(
        service: IndexService, index_store: IndexStore) -> None:
    service.ingest_once(NAME, chunk(1, ids=True), "k", DAY)
    for other in (chunk(2, ids=True), chunk(1, n=19, ids=True), chunk(1, ids=False)):
        with pytest.raises(InvalidInput) as err:
            service.ingest_once(NAME, other, "k", DAY)
        assert err.value.field == "Idempotency-Key"
    assert queued(index_store) == (1, 20)


def test_the_same_key_racing_itself_queues_the_chunk_once(
        service: IndexService, index_store: IndexStore) -> None:
    answers: list[dict[str, Any]] = []
    start = threading.Barrier(4)

    def send() -> None:
        start.wait(30)
        answers.append(service.ingest_once(NAME, chunk(3, ids=True), "race", DAY)[0])

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == 4 and all(a == answers[0] for a in answers)
    assert queued(index_store) == (1, 20)


def test_keys_expire_and_are_pruned_in_bounded_steps(
        service: IndexService, index_store: IndexStore) -> None:
    k = index_store.keys(NAME)
    fields = {"x": b"1"}
    for i in range(150):
        assert index_store.enqueue_once(NAME, fields, 1, f"old-{i}", "{}", 10.0, now=1000.0)[0]
    assert index_store.ingest_record(NAME, "old-0", now=1009.0) is not None
    assert index_store.ingest_record(NAME, "old-0", now=1010.5) is None  # expired
    queued_again, _ = index_store.enqueue_once(NAME, fields, 1, "old-0", "{}", 10.0,
                                               now=1011.0)
    assert queued_again  # an expired key no longer protects: the chunk is queued anew
    # that call pruned 100 expired keys (then recorded old-0 afresh); the next call the rest
    assert index_store.r.hlen(k.ingest_keys) == 150 - 100 + 1
    index_store.enqueue_once(NAME, fields, 1, "new", "{}", 10.0, now=1012.0)
    assert index_store.r.hlen(k.ingest_keys) == index_store.r.zcard(k.ingest_key_expiry) == 2


def test_deleting_the_index_deletes_its_keys(service: IndexService,
                                             index_store: IndexStore) -> None:
    service.ingest_once(NAME, chunk(1), "k", DAY)
    k = index_store.keys(NAME)
    service.delete(NAME)
    assert not index_store.r.exists(k.ingest_keys, k.ingest_key_expiry)


# --- over HTTP ----------------------------------------------------------------------------
def _post(server: Server, name: str, body: bytes, key: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/octet-stream"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return server.http.post(f"/indexes/{name}/ingest", content=body, headers=headers)


def _body(seed: int, n: int = 30) -> bytes:
    rng = np.random.default_rng(seed)
    return npz_bytes(features=rng.standard_normal((n, DIM)).astype(np.float32),
                     labels=np.eye(3, dtype=np.uint8)[rng.integers(0, 3, n)])


def test_over_http_a_retry_is_answered_the_first_answer_even_past_the_backlog_limit(
        start_server: Callable[..., Server]) -> None:
    server = start_server("idem", workers=0, max_queued_items=30)
    name = unique("idem")
    server.create_index(name, DIM)
    first = _post(server, name, _body(1), "chunk-1")
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    # the index is now at its limit: a new chunk is refused, the retry of the first answered
    assert _post(server, name, _body(2), "chunk-2").status_code == 429
    retry = _post(server, name, _body(1), "chunk-1")
    assert retry.status_code == 202, retry.text
    assert retry.json() == first.json() and retry.headers["Idempotent-Replayed"] == "true"
    assert server.info(name)["queue_depth"] == 1
    for key, body in (("chunk-1", _body(3)), ("has space", _body(1)), ("x" * 256, _body(1)),
                      ("", _body(1))):
        assert_problem(_post(server, name, body, key), 422, "Idempotency-Key")
    assert server.info(name)["queue_depth"] == 1


class LoseFirstAnswer(httpx.BaseTransport):
    """A real HTTP transport whose first ingest answer is lost after the server sent it (the
    request did reach the server): what a dropped connection or a client timeout looks
    like."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()
        self.lost = 0
        self.keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.real.handle_request(request)
        if request.url.path.endswith("/ingest"):
            self.keys.append(request.headers["Idempotency-Key"])
            if not self.lost:
                response.read()
                self.lost += 1
                raise httpx.ReadError("connection reset after the server answered")
        return response

    def close(self) -> None:
        self.real.close()


def test_the_client_resends_after_a_lost_answer_and_the_chunk_is_queued_once(
        start_server: Callable[..., Server]) -> None:
    server = start_server("idem-client", workers=0)
    name = unique("idemc")
    server.create_index(name, DIM)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((40, DIM)).astype(np.float32), rng.integers(0, 3, 40)
    lossy = LoseFirstAnswer()
    with httpx.Client(base_url=server.url, transport=lossy, timeout=60) as http:
        client = Client(server.url, http=http)
        with pytest.raises(httpx.ReadError):  # no retrying asked for: the loss is raised
            client.ingest(name, x, y)
        assert server.info(name)["queue_depth"] == 1  # yet the server had queued it
        chunk_id = client.ingest(name, x, y, retry_for=30)  # a new chunk, sent once
        assert lossy.keys[0] != lossy.keys[1]
        lossy.lost = 0
        again = client.ingest(name, x, y, retry_for=30, idempotency_key="mine")
        assert lossy.keys[2:] == ["mine", "mine"]  # lost once, resent under the same key
    assert server.info(name)["queue_depth"] == 3  # the three chunks, none twice
    assert str(chunk_id) != str(again)
