"""A real ``IndexStore`` whose replica load of one version waits until the test releases it."""

from __future__ import annotations

import threading
from typing import Any

from hashstream.store.index_store import IndexStore


class GatedStore(IndexStore):
    """A real IndexStore whose ``load_segment_parts`` of one version (what a replica reads)
    waits for ``release`` (after setting ``reached``): a refresh stops there, the earlier
    segments already appended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate_version: int | None = None
        self.reached = threading.Event()
        self.release = threading.Event()

    def load_segment_parts(self, name: str, round_: int, partitions: list[int] | None = None,
                           manifest: Any = None) -> dict[int, Any]:
        if round_ == self.gate_version:
            self.reached.set()
            assert self.release.wait(60), "the test never released the gate"
        return super().load_segment_parts(name, round_, partitions, manifest)
