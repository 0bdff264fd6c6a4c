"""A round's timed parts add up to the round: the worker's laps (load, learn, score) around the
method's own steps, with "other" for what the method's call spent outside its steps."""

from __future__ import annotations

import time

from hashstream.service.round_timing import RoundClock, round_seconds


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_the_parts_add_up_to_the_total_and_other_is_the_untimed_rest() -> None:
    clock = RoundClock()
    _busy(0.002)
    clock.lap("load")
    _busy(0.006)
    learn = clock.lap("learn")
    _busy(0.001)
    clock.lap("score")
    steps = {"v": 0.002, "b": 0.001}  # the method timed 3 ms of its call
    s = round_seconds(clock, steps)
    parts = sum(v for k, v in s.items() if k not in ("learn", "total"))
    assert abs(parts - s["total"]) < 1e-9
    assert abs(s["other"] - (learn - 0.003)) < 1e-5
    assert abs(s["learn"] - (s["load"] + learn)) < 1e-5
    assert s["v"] == 0.002 and s["b"] == 0.001 and s["score"] >= 0.001


def test_a_method_step_named_like_a_worker_part_keeps_its_own_band() -> None:
    clock = RoundClock()
    clock.lap("load")
    clock.lap("learn")
    clock.lap("score")
    s = round_seconds(clock, {"load": 0.0, "score": 0.0})
    assert "method_load" in s and "method_score" in s
    assert s["other"] >= 0


def test_reading_the_chunks_is_a_part_of_its_own() -> None:
    clock = RoundClock()
    _busy(0.003)
    clock.lap("read")
    clock.lap("load")
    clock.lap("learn")
    clock.lap("score")
    s = round_seconds(clock, {})
    assert s["read"] >= 0.003 and s["other"] < 0.003
    assert abs(sum(v for k, v in s.items() if k not in ("learn", "total")) - s["total"]) < 1e-9
