"""The SDOH-HC round refuses bad input (InputError): non-finite values, shape and dimension
mismatches, empty chunks; chunks smaller than the code length still learn."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from support.sdoh_round import CL

from hashstream.solver.backend import Backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.sdoh_hc.round import InputError, learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState

# --------------------------------------------------------------------------- bad input


def _first_round(np_backend: Backend) -> tuple[SDOHState, SDOHSettings]:
    rng = np.random.default_rng(17)
    cfg = SDOHSettings(bits=8, n1=10, n2=10)
    res = learn_chunk(None, rng.standard_normal((40, 6)), CL(np.eye(3)[rng.integers(0, 3, 40)]),
                      cfg, np_backend)
    return res.state, cfg


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("round_", [1, 2])
def test_non_finite_features_raise(np_backend: Backend, bad: float, round_: int) -> None:
    state, cfg = _first_round(np_backend)
    x = np.random.default_rng(0).standard_normal((30, 6))
    x[4, 2] = bad
    with pytest.raises(InputError, match="features"):
        learn_chunk(state if round_ == 2 else None, x, CL(np.eye(3)[np.arange(30) % 3]), cfg,
                    np_backend)


def test_rows_mismatch_raises(np_backend: Backend) -> None:
    x = np.zeros((30, 6)) + 1.0
    with pytest.raises(InputError, match="labels"):
        learn_chunk(None, x, CL(np.eye(3)[np.arange(29) % 3]), SDOHSettings(bits=8), np_backend)


def test_empty_chunk_raises(np_backend: Backend) -> None:
    state, cfg = _first_round(np_backend)
    for st_ in (None, state):
        with pytest.raises(InputError, match="features.*empty"):
            learn_chunk(st_, np.zeros((0, 6)), CL(np.zeros((0, 3))), cfg, np_backend)


def test_wrong_dimension_on_round_two_raises(np_backend: Backend) -> None:
    state, cfg = _first_round(np_backend)
    with pytest.raises(InputError, match="features.*dimension"):
        learn_chunk(state, np.ones((30, 7)), CL(np.eye(3)[np.arange(30) % 3]), cfg, np_backend)


def test_wrong_ndim_raises(np_backend: Backend) -> None:
    cfg = SDOHSettings(bits=8)
    with pytest.raises(InputError, match="features"):
        learn_chunk(None, np.ones(30), CL(np.eye(3)[np.arange(30) % 3]), cfg, np_backend)
    with pytest.raises(InputError, match="labels"):
        learn_chunk(None, np.ones((30, 4)), np.ones(30), cfg, np_backend)  # type: ignore[arg-type]


def test_bits_mismatch_raises(np_backend: Backend) -> None:
    state, cfg = _first_round(np_backend)
    with pytest.raises(InputError, match="bits"):
        learn_chunk(state, np.ones((30, 6)), CL(np.eye(3)[np.arange(30) % 3]),
                    replace(cfg, bits=16), np_backend)


@pytest.mark.parametrize("round_", [1, 2])
def test_non_finite_labels_raise(np_backend: Backend, round_: int) -> None:
    """A NaN label must be refused: accepted, it turns H1, H2 and the label sums into NaN and
    every later round of the model is lost (LIBRARY BUG: check_chunk never checks labels).
    Labels are class lists now, which hold class numbers only: a dense matrix, NaN or not, is
    refused, and class lists cannot be built with a class outside 0 … c − 1."""
    with pytest.raises(ValueError, match="class numbers"):
        ClassLists(np.array([0, 1]), np.array([3]), 3)
    state, cfg = _first_round(np_backend)
    lab = np.eye(3)[np.arange(30) % 3]
    lab[5, 1] = np.nan
    x = np.random.default_rng(1).standard_normal((30, 6))
    with pytest.raises(InputError, match="labels"):
        learn_chunk(state if round_ == 2 else None, x, lab, cfg,  # type: ignore[arg-type]
                    np_backend)


@pytest.mark.parametrize("n", [1, 5, 15])
def test_chunk_smaller_than_code_length(np_backend: Backend, n: int) -> None:
    """A chunk of n ≤ r rows cannot satisfy VᵀV = nI, Vᵀ1 = 0. It must either be learned (±1
    codes, finite loss) or be refused with an InputError naming the chunk, never crash inside
    the V-step (LIBRARY BUG: orthogonal_balanced raises a raw matmul ValueError)."""
    cfg = SDOHSettings(bits=16, n1=10, n2=10)
    rng = np.random.default_rng(18)
    lab = np.eye(3)[rng.integers(0, 3, n)]
    x = rng.standard_normal((n, 6))
    first = learn_chunk(None, rng.standard_normal((60, 6)), CL(np.eye(3)[rng.integers(0, 3, 60)]),
                        cfg, np_backend)
    for st_ in (None, first.state):
        try:
            res = learn_chunk(st_, x, CL(lab), cfg, np_backend)
        except InputError:
            continue
        except ValueError as exc:
            pytest.fail(f"chunk of {n} rows at 16 bits crashed: {type(exc).__name__}: {exc}")
        assert res.codes.shape == (n, 16)
        assert set(np.unique(res.codes)) <= {-1, 1}
        assert np.isfinite(res.loss["total"])
