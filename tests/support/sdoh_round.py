"""Helpers of the SDOH-HC round tests (tests/solver/test_round_*.py)."""

from __future__ import annotations

from typing import Any

from hashstream.solver.backend import Backend, get_backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.round import RoundResult, learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState

RTOL = 1e-9
CL = ClassLists.from_dense
STEP_ORDER = ["V", "B", "Y"]
NUMPY = get_backend("numpy")


def run_stream(chunks: list[tuple[Any, Any]], cfg: SDOHSettings, backend: Backend,
               trace: bool = True) -> list[RoundResult]:
    state: SDOHState | None = None
    out = []
    for x, lab in chunks:
        res = learn_chunk(state, x, CL(lab), cfg, backend, trace=trace)
        state = res.state
        out.append(res)
    return out


def assert_non_increasing(trace: list[tuple[str, float]]) -> None:
    values = [j for _, j in trace]
    for k in range(1, len(values)):
        prev, cur = values[k - 1], values[k]
        assert cur <= prev + RTOL * max(abs(prev), 1.0), (
            f"objective rose at step {k} ({trace[k][0]}): {prev!r} -> {cur!r}")


def state_arrays_equal(a: SDOHState, b: SDOHState) -> bool:
    aa, bb = a.to_arrays(), b.to_arrays()
    if aa.keys() != bb.keys():
        return False
    return all(aa[k].dtype == bb[k].dtype and aa[k].shape == bb[k].shape
               and aa[k].tobytes() == bb[k].tobytes() for k in aa)
