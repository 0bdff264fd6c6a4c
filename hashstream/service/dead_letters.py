"""Dead letters: chunks whose rounds kept failing, listed, requeued or deleted by an operator.

The worker moves a chunk here (see :mod:`hashstream.service.worker`); nothing is dropped
silently, and requeueing puts the same chunk back on the ingest stream with fresh attempts.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hashstream.service.errors import InvalidInput, NotFound
from hashstream.store.codec import CodecError, array_shape
from hashstream.store.index_store import IndexStore

_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def _check_id(entry_id: str) -> None:
    if not _ENTRY_ID.match(entry_id):
        raise InvalidInput("a dead-letter id looks like 1700000000000-0", "id")


def describe_entry(entry_id: str, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """What an operator needs to judge a dead letter (the arrays themselves stay in Redis)."""
    def text(key: bytes, default: str = "") -> str:
        return fields.get(key, default.encode()).decode(errors="replace")

    try:
        items: int | None = int(array_shape(fields[b"features"])[0])
    except (KeyError, CodecError, IndexError):
        items = None
    try:
        history = json.loads(text(b"dl:history", "[]"))
    except ValueError:
        history = []
    return {"id": entry_id, "chunk_id": text(b"dl:chunk_id"), "role": text(b"role") or None,
            "items": items, "reason": text(b"dl:reason"),
            "attempts": int(text(b"dl:attempts", "0") or 0), "history": history,
            "dead_at": float(text(b"dl:ts", "0") or 0)}


class DeadLetters:
    """The dead-letter stream of each index, through the store."""

    def __init__(self, store: IndexStore) -> None:
        self.store = store

    def list(self, name: str, after: str | None = None, limit: int = 100) -> dict[str, Any]:
        if after is not None:
            _check_id(after)
        entries = self.store.dead_letters(name, count=limit, after=after or "-")
        return {"index": name, "total": self.store.dead_letter_count(name),
                "dead_letters": [describe_entry(eid, f) for eid, f in entries]}

    def requeue(self, name: str, entry_id: str) -> dict[str, Any]:
        _check_id(entry_id)
        chunk_id = self.store.requeue_dead_letter(name, entry_id)
        if chunk_id is None:
            raise NotFound(f"no dead letter {entry_id} in index {name!r}", "id")
        return {"index": name, "id": entry_id, "chunk_id": chunk_id}

    def delete(self, name: str, entry_id: str) -> None:
        _check_id(entry_id)
        if not self.store.delete_dead_letter(name, entry_id):
            raise NotFound(f"no dead letter {entry_id} in index {name!r}", "id")
