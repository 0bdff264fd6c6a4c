"""A batch search as the service takes it, from a JSON body or an ``.npz`` body.

The ``.npz`` form carries the JSON body's fields as arrays: exactly one query array
(``features`` or ``image``: q × d numbers; cross-modal ``text``: q × d numbers, ``tokens``: q × T
word ids padded with −1) and, optionally, ``k``, ``min_version``, ``max_distance`` (integers),
``target`` and ``ties`` (text) and ``labels_any`` / ``labels_all`` (1-d arrays of the index's
label type).
Each member is read through :func:`~hashstream.service.npz_body.read_npz` (headers checked
against a byte budget before any data is read); every rejection names the member at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashstream.service.cross_modal import MAX_TOKEN_ID
from hashstream.service.errors import InvalidInput
from hashstream.service.npz_body import read_npz
from hashstream.service.search_options import TIES, SearchOptions

Array = np.ndarray[Any, Any]
QUERY_FIELDS = ("features", "image", "text", "tokens")
TARGETS = ("pairs", "image", "text")
NPZ_MEMBERS = (*QUERY_FIELDS, "k", "target", "min_version", "max_distance", "labels_any",
               "labels_all", "ties")


@dataclass(frozen=True)
class BatchSearch:
    """Query rows (``field_name`` says what they are: features, image, text or tokens; lists
    from JSON or a 2-d array from .npz), k, target, min_version and the search options."""

    field_name: str
    rows: Any
    k: int = 10
    target: str = "pairs"
    min_version: int | None = None
    options: SearchOptions = field(default_factory=SearchOptions)

    @property
    def n_queries(self) -> int:
        return len(self.rows)


def one_query_field(given: dict[str, Any]) -> tuple[str, Any]:
    """The one query field of a body (``given``: the fields present)."""
    if len(given) != 1:
        raise InvalidInput("give exactly one of features (or image), text, tokens", "features")
    return next(iter(given.items()))


def _integer(arrays: dict[str, Array], name: str) -> int | None:
    value = arrays.get(name)
    if value is None:
        return None
    if value.dtype.kind not in "iu" or value.size != 1 or value.ndim > 1:
        raise InvalidInput(f"{name} must be one integer (a 0-d or 1-element integer array), "
                           f"not {value.dtype} of shape {value.shape}", name)
    return int(value.reshape(-1)[0])


def _labels(arrays: dict[str, Array], name: str) -> tuple[Any, ...] | None:
    value = arrays.get(name)
    if value is None:
        return None
    if value.ndim != 1 or value.dtype.kind not in "iuU":
        raise InvalidInput(f"{name} must be a 1-d array of integer or text labels, not "
                           f"{value.dtype} of shape {value.shape}", name)
    return tuple(value.tolist())


def _text(arrays: dict[str, Array], name: str, allowed: tuple[str, ...]) -> str | None:
    value = arrays.get(name)
    if value is None:
        return None
    if value.dtype.kind != "U" or value.size != 1 or str(value.reshape(-1)[0]) not in allowed:
        raise InvalidInput(f"{name} must be one text value: {', '.join(allowed)}", name)
    return str(value.reshape(-1)[0])


def _queries(name: str, value: Array) -> Array:
    if value.ndim != 2 or value.shape[0] == 0 or value.shape[1] == 0:
        raise InvalidInput(f"{name} must be a non-empty q × d array, not shape {value.shape}",
                           name)
    if name == "tokens":
        if value.dtype.kind not in "iu":
            raise InvalidInput(f"tokens must be integer word ids, not {value.dtype}", name)
        if value.size and (int(value.min()) < -1 or int(value.max()) > MAX_TOKEN_ID):
            raise InvalidInput(f"tokens must be word ids 0..{MAX_TOKEN_ID:,} (−1 pads)", name)
        return value.astype(np.int64, copy=False)
    if value.dtype.kind not in "iuf":
        raise InvalidInput(f"{name} must be numbers, not {value.dtype}", name)
    return value


def read_npz_search(body: bytes, max_bytes: int) -> BatchSearch:
    """The batch search of an ``.npz`` body (see the module docstring); 400 for a body that is
    no .npz, 413 past ``max_bytes`` of arrays, 422 naming the member otherwise."""
    arrays = read_npz(body, members=NPZ_MEMBERS, max_bytes=max_bytes)
    name, rows = one_query_field({f: arrays[f] for f in QUERY_FIELDS if f in arrays})
    target = _text(arrays, "target", TARGETS)
    ties = _text(arrays, "ties", TIES)
    k = _integer(arrays, "k")
    min_version = _integer(arrays, "min_version")
    if min_version is not None and min_version < 0:
        raise InvalidInput("min_version must be ≥ 0", "min_version")
    options = SearchOptions(_labels(arrays, "labels_any"), _labels(arrays, "labels_all"),
                            _integer(arrays, "max_distance"),
                            ties="insertion" if ties is None else ties)  # type: ignore[arg-type]
    return BatchSearch(name, _queries(name, rows), 10 if k is None else k,
                       "pairs" if target is None else target, min_version, options)
