"""Cross-modal indexes at the service's edge: parsing and validating the text side of pairs.

The rounds themselves are the "ecmh" method (:mod:`hashstream.solver.ecmh.method`); its
per-index settings, :class:`CrossModalSettings`, live beside it in the solver.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hashstream.service.errors import InvalidInput
from hashstream.solver.ecmh.settings import CrossModalSettings

__all__ = ["MAX_TOKEN_ID", "CrossModalSettings", "dense_text", "pad_tokens", "validate_text"]

MAX_TOKEN_ID = 10_000_000  # the largest word id a query or chunk may carry


def pad_tokens(rows: Any, field: str = "tokens") -> np.ndarray[Any, Any]:
    """``[[word ids…], …]`` → n × T int64, padded with −1 (ECMH's pad id)."""
    if not isinstance(rows, list) or not rows:
        raise InvalidInput(f"{field} must be a non-empty list of lists of word ids", field)
    width = 1
    for i, row in enumerate(rows):
        if not isinstance(row, list) or any(isinstance(t, bool) or not isinstance(t, int)
                                            or t < 0 or t > MAX_TOKEN_ID for t in row):
            raise InvalidInput(f"{field}[{i}] must be a list of word ids 0..{MAX_TOKEN_ID:,}",
                               field)
        width = max(width, len(row))
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def dense_text(value: Any) -> np.ndarray[Any, Any]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("text must be a non-empty list of vectors", "text")
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"text must be equal-length numeric vectors ({exc})", "text") from exc
    if arr.ndim != 2:
        raise InvalidInput("text must be equal-length numeric vectors", "text")
    return arr


def validate_text(text: np.ndarray[Any, Any] | None, n: int,
                  settings: CrossModalSettings) -> None:
    """The text side of a pair chunk against the index's settings."""
    field = "tokens" if settings.text_kind == "tokens" else "text"
    if text is None:
        raise InvalidInput(f"{field} is required for a cross-modal index", field)
    if text.shape[0] != n:
        raise InvalidInput(f"{field} has {text.shape[0]} rows but image has {n}", field)
    if settings.text_kind == "dense":
        if text.dtype.kind != "f" or text.shape[1] != settings.text_dim:
            raise InvalidInput(f"text must be n × {settings.text_dim} numbers "
                               f"(got {text.shape[1]} columns)", "text")
        if not np.isfinite(text).all():
            raise InvalidInput("text contains NaN or Inf", "text")
    elif text.dtype.kind not in "iu":
        raise InvalidInput("tokens must be integer word ids", "tokens")
