"""Where a round's wall time goes, as consecutive laps that add up to the round.

The worker laps ``read`` (the round's chunks read from the stream and decoded), ``load`` (its
cache and the merged chunks), the method's ``learn`` call and
``score`` (held-out queries, the round record); the method reports its own steps inside
``learn``, and the part of ``learn`` that none of them timed is ``other`` (round 1 of SDOH-HC:
fitting the feature map). The round's commit is timed after the record is written and stored
beside it (``commit``), so a round took ``total + commit`` seconds.
"""

from __future__ import annotations

import time

# The worker's own parts and sums (a method step of the same name is kept as method_<name>).
WORKER_PARTS = ("read", "load", "other", "score", "learn", "total", "commit")


class RoundClock:
    """Consecutive laps from the moment it is made: each lap runs from the previous one."""

    def __init__(self) -> None:
        self.started = self._last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> float:
        """Seconds since the previous lap (or the start), recorded under ``name``."""
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self._last
        self._last = now
        return self.laps[name]

    def since_start(self) -> float:
        return self._last - self.started


def round_seconds(clock: RoundClock, method_steps: dict[str, float]) -> dict[str, float]:
    """The record's ``seconds``: the method's steps, ``read``, ``load``, ``other`` (the method's
    call less its steps), ``score``, and the sums ``learn`` (load and the method: what records
    held before the other laps existed) and ``total`` (everything before the commit). The parts
    other than ``learn`` and ``total`` add up to ``total``."""
    laps = clock.laps
    steps = {(f"method_{k}" if k in WORKER_PARTS else k): round(v, 6)
             for k, v in method_steps.items()}
    read = round(laps.get("read", 0.0), 6)
    load, score = round(laps.get("load", 0.0), 6), round(laps.get("score", 0.0), 6)
    total = round(clock.since_start(), 6)
    # = the method's call less its steps (the laps are consecutive), taken from the rounded
    # parts so that they add up to the rounded total
    other = max(0.0, round(total - read - load - score - sum(steps.values()), 6))
    return {**steps, "read": read, "load": load, "other": other, "score": score,
            "learn": round(laps.get("load", 0.0) + laps.get("learn", 0.0), 6), "total": total}
