"""The service's answers as the client returns them: the JSON as sent, typed (TypedDicts), so a
field the service adds later is kept and nothing is converted twice; an ingest's chunk id is a
``str`` that also carries the answer's counts (:class:`ChunkId`)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

Label = int | str
RoundRecord = dict[str, Any]  # metrics, losses, timings and each method's own fields


class ChunkId(str):
    """The id of an accepted chunk (a ``str``), with what the service said of it: ``items``,
    and ``id_range`` ([first, stop) of the ids it assigned; None when the chunk brought ids or
    is a query chunk)."""

    items: int
    id_range: tuple[int, int] | None

    @classmethod
    def of(cls, answer: dict[str, Any]) -> ChunkId:
        chunk = cls(answer["chunk_id"])
        chunk.items = int(answer["items"])
        first_stop = answer.get("id_range")
        chunk.id_range = None if first_stop is None else (int(first_stop[0]),
                                                          int(first_stop[1]))
        return chunk


class IndexInfo(TypedDict):
    name: str
    kind: str
    method: str
    dim: int
    bits: int
    settings: dict[str, Any]
    model_version: int
    max_classes: int
    partitions: int
    queue_dtype: str
    queue_depth: int
    dead_letters: int
    n_items: int
    n_classes: int


class Hit(TypedDict):
    id: int
    distance: int
    labels: list[Label]
    model_version: int  # the model version that made the stored code


class SearchResult(TypedDict):
    """``results[i]``: the hits of query i, nearest first."""

    index: str
    model_version: int
    results: list[list[Hit]]
    partitions: NotRequired[list[int] | None]  # None: an unpartitioned index


class LabelFilter(TypedDict, total=False):
    """Hits must carry at least one of ``labels_any`` and every one of ``labels_all``."""

    labels_any: list[Label]
    labels_all: list[Label]


class Item(TypedDict):
    index: str
    id: int
    labels: list[Label]
    code: str  # hex of the packed bits
    codes: dict[str, str] | None  # cross-modal: every target's code
    model_version: int  # the model version that made the code
    round: int  # the round that committed it
    version: int  # the index version the answer was read from


class DeletedItems(TypedDict):
    index: str
    deleted: list[int]
    unknown: list[int]
    version: int  # the index version the delete applied to


class DeadLetter(TypedDict):
    id: str
    chunk_id: str
    role: str | None
    items: int | None
    reason: str
    attempts: int
    history: list[Any]
    dead_at: float
