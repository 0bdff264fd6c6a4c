"""What a search may ask for besides its queries: a label filter, a Hamming radius and the
order within a distance.

Filter values are the client's labels, of the index's label type (ints or strings, fixed by its
first chunk); a GET sends them as comma-separated text, typed here. ``labels_any`` admits items
with at least one of the labels, ``labels_all`` items with all of them (both: both hold). A label
the index never saw admits nothing: ``labels_any`` of only unknown labels and ``labels_all`` with
one unknown label match no item. ``max_distance`` keeps the hits within that Hamming distance of
the query (still at most k of them: the top k, cut at the radius). ``ties`` orders the items at
one distance: ``insertion`` (the earlier item first) or ``projection`` (by their code's inner
product with the query's real-valued projection, the vector whose signs are its code; then
insertion), for query vectors only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from hashstream.service.errors import InvalidInput

Array = np.ndarray[Any, Any]
FILTER_FIELDS = ("labels_any", "labels_all")
MAX_FILTER_LABELS = 1000
Ties = Literal["insertion", "projection"]
TIES: tuple[str, ...] = get_args(Ties)


@dataclass(frozen=True)
class ClassFilter:
    """A label filter as internal class numbers (None: that condition is not asked)."""

    any_of: Array | None
    all_of: Array | None


@dataclass(frozen=True)
class SearchOptions:
    """A search's filter, radius and tie order as the client gave them; ``text``: the labels
    arrived as text (a GET query) and take the index's label type here."""

    labels_any: tuple[Any, ...] | None = None
    labels_all: tuple[Any, ...] | None = None
    max_distance: int | None = None
    text: bool = False
    ties: Ties = "insertion"

    def __post_init__(self) -> None:
        if self.ties not in TIES:
            raise InvalidInput(f"ties must be one of {', '.join(TIES)}, not {self.ties!r}",
                               "ties")
        if self.max_distance is not None and (isinstance(self.max_distance, bool)
                                              or self.max_distance < 0):
            raise InvalidInput("max_distance must be a non-negative number of bits",
                               "max_distance")
        for field in FILTER_FIELDS:
            values = getattr(self, field)
            if values is None:
                continue
            if not values:
                raise InvalidInput(f"{field} needs at least one label", field)
            if len(values) > MAX_FILTER_LABELS:
                raise InvalidInput(f"{field} takes at most {MAX_FILTER_LABELS} labels", field)

    @classmethod
    def from_query(cls, labels_any: str | None = None, labels_all: str | None = None,
                   max_distance: int | None = None, ties: Ties = "insertion"
                   ) -> SearchOptions:
        """From a GET's ``labels_any=3,5`` / ``labels_all=3,7`` / ``max_distance`` /
        ``ties``."""
        def split(value: str | None, field: str) -> tuple[str, ...] | None:
            if value is None:
                return None
            parts = tuple(p.strip() for p in value.split(","))
            if any(not p for p in parts):
                raise InvalidInput(f"{field} must be comma-separated labels, e.g. 3,5", field)
            return parts

        return cls(split(labels_any, "labels_any"), split(labels_all, "labels_all"),
                   max_distance, text=True, ties=ties)

    @property
    def filtered(self) -> bool:
        return self.labels_any is not None or self.labels_all is not None

    def class_filter(self, label_kind: str | None,
                     class_numbers: dict[int | str, int]) -> ClassFilter | None:
        """The filter as class numbers of an index whose labels are ``label_kind`` values;
        None when no label filter was asked."""
        if not self.filtered:
            return None
        if label_kind is None:  # the index has no labels yet: nothing can match
            return ClassFilter(np.zeros(0, dtype=np.int64), None)
        any_of = all_of = None
        if self.labels_any is not None:
            known = [class_numbers[v] for v in self._typed("labels_any", label_kind)
                     if v in class_numbers]
            any_of = np.asarray(sorted(set(known)), dtype=np.int64)
        if self.labels_all is not None:
            wanted = set(self._typed("labels_all", label_kind))
            numbers = sorted({class_numbers[v] for v in wanted if v in class_numbers})
            # a label the index never saw: no item has it, so none has them all
            all_of = (np.asarray(numbers, dtype=np.int64) if len(numbers) == len(wanted)
                      else np.asarray([-1], dtype=np.int64))
        return ClassFilter(any_of, all_of)

    def _typed(self, field: str, label_kind: str) -> list[int | str]:
        values = getattr(self, field)
        out: list[int | str] = []
        for value in values:
            if label_kind == "int":
                if self.text:
                    try:
                        value = int(value)
                    except ValueError as exc:
                        raise InvalidInput(f"{field}: this index's labels are integers, not "
                                           f"{value!r}", field) from exc
                elif isinstance(value, bool) or not isinstance(value, int):
                    raise InvalidInput(f"{field}: this index's labels are integers, not "
                                       f"{value!r}", field)
            elif not isinstance(value, str):
                raise InvalidInput(f"{field}: this index's labels are strings, not {value!r}",
                                   field)
            out.append(value)
        return out

    def within_radius(self, hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The hits (sorted by distance) within ``max_distance``."""
        if self.max_distance is None:
            return hits
        return [h for h in hits if h["distance"] <= self.max_distance]
