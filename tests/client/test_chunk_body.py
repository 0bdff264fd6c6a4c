"""The client's ingest bodies, read back by the service's own parsers: a chunk sent as .npz and
the same chunk sent as JSON arrive as the same parsed chunk, in every label form."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from hashstream.client import calls
from hashstream.client.chunk_body import NPZ, chunk_body
from hashstream.service.chunks import ParsedChunk, parse_json_chunk, parse_npz_chunk

RNG = np.random.default_rng(0)
X = RNG.standard_normal((6, 3)).astype(np.float32)


def _parsed(features: Any, labels: Any = None, **kw: Any) -> dict[str, ParsedChunk]:
    """The chunk through both encodings, parsed as the service parses them."""
    out = {}
    for encoding in ("npz", "json"):
        body = chunk_body(features, labels, encoding=encoding, **kw)
        role = kw.get("role") or "train"
        if encoding == "npz":
            assert body.json is None and body.content is not None
            assert body.content_type == NPZ
            out[encoding] = parse_npz_chunk(body.content, role)
        else:
            assert body.content is None and body.json is not None
            out[encoding] = parse_json_chunk(json.dumps(body.json).encode(), role)
    return out


def _same(a: ParsedChunk, b: ParsedChunk) -> None:
    np.testing.assert_array_equal(a.features, b.features)
    assert a.labels.kind == b.labels.kind
    np.testing.assert_array_equal(a.labels.indptr, b.labels.indptr)
    np.testing.assert_array_equal(a.labels.values, b.labels.values)
    assert (a.ids is None) == (b.ids is None) and a.role == b.role
    if a.ids is not None and b.ids is not None:
        np.testing.assert_array_equal(a.ids, b.ids)
    assert (a.text is None) == (b.text is None)
    if a.text is not None and b.text is not None:
        np.testing.assert_array_equal(a.text, b.text)


@pytest.mark.parametrize("labels, indptr, values", [
    (np.array([3, 1, 4, 1, 5, 9]), [0, 1, 2, 3, 4, 5, 6], [3, 1, 4, 1, 5, 9]),
    ([3, 1, 4, 1, 5, 9], [0, 1, 2, 3, 4, 5, 6], [3, 1, 4, 1, 5, 9]),
    ([[1, 2], [], [7], [np.int64(8)], [1, 9, 3], [0]], [0, 2, 2, 3, 4, 7, 8],
     [1, 2, 7, 8, 1, 9, 3, 0]),
    (["cat", "dog", "cat", "owl", "cat", "dog"], [0, 1, 2, 3, 4, 5, 6],
     ["cat", "dog", "cat", "owl", "cat", "dog"]),
    (np.array(["a", "b", "a", "b", "a", "b"]), [0, 1, 2, 3, 4, 5, 6], list("ababab")),
    ([["cat", "outdoor"], ["dog"], [], ["owl"], ["cat"], ["dog", "indoor"]],
     [0, 2, 3, 3, 4, 5, 7], ["cat", "outdoor", "dog", "owl", "cat", "dog", "indoor"]),
])
def test_class_lists_arrive_as_sent(labels: Any, indptr: list[int], values: list[Any]) -> None:
    got = _parsed(X, labels)
    _same(got["npz"], got["json"])
    np.testing.assert_array_equal(got["npz"].labels.indptr, indptr)
    assert got["npz"].labels.values.tolist() == values


def test_label_matrix_ids_role_and_lists_of_features() -> None:
    matrix = np.eye(4, dtype=np.uint8)[[0, 1, 2, 3, 0, 1]]
    got = _parsed(X.tolist(), label_matrix=matrix, ids=range(10, 16))
    _same(got["npz"], got["json"])
    assert got["json"].labels.values.tolist() == [0, 1, 2, 3, 0, 1]
    assert got["json"].ids is not None and got["json"].ids.tolist() == list(range(10, 16))
    queries = _parsed(X, [0] * 6, role="query")
    assert queries["npz"].role == queries["json"].role == "query"


def test_cross_modal_text_and_ragged_tokens() -> None:
    text = RNG.standard_normal((6, 5)).astype(np.float32)
    _same(*_parsed(X, [1] * 6, text=text).values())
    tokens = [[1, 2, 3], [4], [5, 6], [7], [8, 9, 10, 11], [0]]
    got = _parsed(X, [1] * 6, tokens=tokens)
    _same(got["npz"], got["json"])
    assert got["npz"].text is not None and got["npz"].text[1].tolist() == [4, -1, -1, -1]


def test_auto_encoding_and_role_of_npz() -> None:
    npz = calls.ingest("idx", X, [0] * 6, label_matrix=None, ids=None, role="query", text=None,
                       tokens=None, encoding="auto", idempotency_key="mine")
    assert npz.content is not None and npz.params == {"role": "query"}
    assert npz.headers == {"Content-Type": NPZ, "Idempotency-Key": "mine"}
    assert npz.path == "/indexes/idx/ingest"
    listed = calls.ingest("a b", X.tolist(), [0] * 6, label_matrix=None, ids=None, role=None,
                          text=None, tokens=None, encoding="auto", idempotency_key=None)
    assert listed.json is not None and listed.content is None and listed.params is None
    assert listed.path == "/indexes/a%20b/ingest"
    assert listed.headers is not None and len(listed.headers["Idempotency-Key"]) == 32  # UUID


def test_refusals_before_sending() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        chunk_body(X, [0] * 6, label_matrix=np.eye(6))
    with pytest.raises(ValueError, match="exactly one"):
        chunk_body(X)
    with pytest.raises(ValueError, match="all integers or all strings"):
        chunk_body(X, [1, "a", 2, 3, 4, 5], encoding="npz")  # NumPy would make all strings


def test_search_calls() -> None:
    by_item = calls.search("i", None, 7, k=3, filter={"labels_any": [np.int64(3), 5],
                                                      "labels_all": ["x"]},
                           max_distance=2, min_version=4, modality="image", target=None)
    assert by_item.method == "GET" and by_item.params == {
        "item": 7, "k": 3, "labels_any": "3,5", "labels_all": "x", "max_distance": 2,
        "min_version": 4}
    one = calls.search("i", np.zeros(3, np.float32), None, k=2, filter={"labels_any": [1]},
                       max_distance=None, min_version=None, modality="text", target="image")
    assert one.method == "POST" and one.json == {
        "text": [[0.0, 0.0, 0.0]], "k": 2, "filter": {"labels_any": [1]}, "target": "image"}
    batch = calls.search("i", [[1, 2], [3, 4]], None, k=1, filter=None, max_distance=None,
                         min_version=None, modality="image", target=None)
    assert batch.json == {"features": [[1, 2], [3, 4]], "k": 1}
    with pytest.raises(ValueError, match="exactly one"):
        calls.search("i", [[1.0]], 3, k=1, filter=None, max_distance=None, min_version=None,
                     modality="image", target=None)
