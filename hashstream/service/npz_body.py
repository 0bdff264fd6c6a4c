"""TEMPORARY shim until the bounded reader lands (not committed)."""
from __future__ import annotations
import io
from collections.abc import Collection
from typing import Any
import numpy as np
from hashstream.service.errors import InvalidInput, MalformedBody


def read_npz(body: bytes, *, members: Collection[str], max_bytes: int,
             max_members: int = 16) -> dict[str, np.ndarray[Any, Any]]:
    if not body.startswith(b"PK"):
        raise MalformedBody("body must be an .npz archive (a zip file)", "body")
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001
        raise MalformedBody(f"body is not a readable .npz archive: {exc!r}", "body") from exc
    for k in out:
        if k not in members:
            raise InvalidInput(f"unknown array {k!r}", k)
    return out
