"""Backpressure on ingest: an index whose queued backlog passed a limit refuses new chunks with
429 and an honest ``Retry-After`` until its worker has drained the backlog below the limit.

Two limits (``HASHSTREAM_MAX_QUEUED_ITEMS``, ``HASHSTREAM_MAX_QUEUED_SECONDS``; 0 turns one
off): items waiting, and the seconds of work they are estimated at from the recent rounds'
items per second (the worker writes that rate after each commit). A chunk is refused while the
backlog is at or past a limit, and accepted below it whatever its size (so a chunk larger than
the limit is never refused for good): the queue holds at most a limit plus the chunks accepted
at the same moment. The wait asked for is the time the recent rate takes to drain the backlog
to below the limit, at least 1 s (1 s while no round has given a rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hashstream.service.errors import ServiceError

MIN_RETRY_S = 1


@dataclass(frozen=True)
class BacklogLimits:
    """Items waiting, and seconds of estimated work waiting, at which ingest refuses (0: no
    such limit)."""

    items: int = 0
    seconds: float = 0.0


class Backlogged(ServiceError):
    """429: the index's backlog passed a limit; retry after ``retry_after`` seconds."""

    status = 429
    title = "Too many requests"

    def __init__(self, message: str, limit: str, retry_after: int, backlog_items: int,
                 backlog_seconds: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.extra = {"limit": limit, "backlog_items": backlog_items,
                      "backlog_seconds": None if backlog_seconds is None
                      else round(backlog_seconds, 3)}


def refusal(name: str, queued: int, rate: float | None,
            limits: BacklogLimits) -> Backlogged | None:
    """The 429 for index ``name`` with ``queued`` items waiting and recent rounds learning
    ``rate`` items/s (None: unknown), or None when the chunk may be queued."""
    work = None if not rate else queued / rate
    refused: list[tuple[str, str, float]] = []  # (setting, what passed, seconds to drain)
    if limits.items and queued >= limits.items:
        excess = queued - limits.items + 1
        refused.append(("HASHSTREAM_MAX_QUEUED_ITEMS",
                        f"{queued:,} items wait (limit {limits.items:,})",
                        excess / rate if rate else MIN_RETRY_S))
    if limits.seconds and work is not None and work >= limits.seconds:
        refused.append(("HASHSTREAM_MAX_QUEUED_SECONDS",
                        f"{queued:,} items wait, ~{work:,.1f} s of work at the recent "
                        f"{rate:,.0f} items/s (limit {limits.seconds:g} s)",
                        work - limits.seconds + 1 / max(rate or 1.0, 1e-9)))
    if not refused:
        return None
    wait = max(MIN_RETRY_S, math.ceil(max(s for _, _, s in refused)))
    return Backlogged(f"index {name!r} is backlogged: " + "; ".join(w for _, w, _ in refused)
                      + f". Retry in ~{wait} s, once its worker has learned the backlog below "
                      "the limit", ", ".join(s for s, _, _ in refused), wait, queued, work)
