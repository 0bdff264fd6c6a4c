"""The ``residual_net`` query encoder sgn(φP + g): it reproduces multi-label codes better than
sgn(φP), leaves the learned codes alone, starts as the linear encoder, survives the store's
codec, and states or configs written before it read as the linear encoder."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from support.sdoh_round import CL, run_stream

from hashstream.service.registry import IndexConfig
from hashstream.solver.backend import Backend
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.metrics import evaluate
from hashstream.solver.query_net import (
    QUERY_NET_FIELDS,
    QueryNet,
    init_query_net,
    query_net_output,
    train_query_net,
)
from hashstream.solver.sdoh_hc.method import SDOHMethod
from hashstream.solver.sdoh_hc.query_encoder import class_balanced_weights
from hashstream.solver.sdoh_hc.round import encode, encode_with, learn_chunk
from hashstream.solver.sdoh_hc.settings import SDOHSettings
from hashstream.solver.sdoh_hc.state import SDOHState
from hashstream.store.codec import decode_arrays, encode_arrays

# Few anchors: the linear encoder is short of capacity, as on real multi-label tags.
MULTI = SDOHSettings(bits=32, n1=200, n2=200, n_anchors=40, query_hidden=128, query_steps=200,
                     query_encoder="residual_net")
SMALL = SDOHSettings(bits=16, n1=30, n2=30, n_anchors=30, query_hidden=32, query_steps=40,
                      query_encoder="residual_net")


def _multilabel(make_stream: Any, seed: int) -> Any:
    return make_stream(seed, n_classes=8, dim=16, n_chunks=4, chunk=200, n_queries=150,
                       multilabel=True, class_incremental=False, grow_labels=False, noise=0.7)


@pytest.mark.parametrize("seed", [0, 1])
def test_residual_net_narrows_the_reencoding_gap_on_multilabel_data(
        np_backend: Backend, make_stream: Any, seed: int) -> None:
    """Re-encoding the database with the final encoder loses less mAP against the learned
    codes, and reproduces more of the learned bits, with g than with sgn(φP) alone."""
    stream = _multilabel(make_stream, seed)
    results = run_stream(stream.chunks, replace(MULTI, seed=seed), np_backend, trace=False)
    state = results[-1].state
    assert state.query_net is not None
    learned = np.concatenate([r.codes for r in results])
    db_labels, q_labels = CL(stream.all_labels), CL(stream.query_labels)
    scores = {}
    for name, net in (("linear", None), ("residual", state.query_net)):
        def code(x: Any, net: QueryNet | None = net) -> Any:
            return encode_with(state.feature_map, state.projection, x, np_backend, net)
        queries, reencoded = code(stream.query_features), code(stream.all_features)
        scores[name] = (evaluate(queries, q_labels, learned, db_labels).map,
                        evaluate(queries, q_labels, reencoded, db_labels).map,
                        float((reencoded == learned).mean()))
    (lin_learned, lin_re, lin_bits), (res_learned, res_re, res_bits) = (
        scores["linear"], scores["residual"])
    assert res_bits > lin_bits + 0.02, scores
    assert res_re > lin_re, scores
    assert res_learned - res_re < 0.8 * (lin_learned - lin_re), scores


def test_learned_codes_do_not_depend_on_the_query_encoder(np_backend: Backend,
                                                          make_stream: Any) -> None:
    stream = make_stream(3, n_classes=5, dim=12, n_chunks=3, chunk=80, multilabel=True)
    net = run_stream(stream.chunks, SMALL, np_backend, trace=False)
    linear = run_stream(stream.chunks, replace(SMALL, query_encoder="linear"), np_backend,
                        trace=False)
    for a, b in zip(net, linear, strict=True):
        np.testing.assert_array_equal(a.codes, b.codes)
        np.testing.assert_array_equal(a.state.projection, b.state.projection)
        assert b.state.query_net is None and a.state.query_net is not None
    q = stream.query_features
    assert not np.array_equal(encode(net[-1].state, q, np_backend),
                              encode(linear[-1].state, q, np_backend))


def test_an_untrained_net_is_the_linear_encoder(np_backend: Backend, make_stream: Any) -> None:
    stream = make_stream(4, n_classes=4, dim=10, n_chunks=2, chunk=60)
    results = run_stream(stream.chunks, replace(SMALL, query_steps=0), np_backend, trace=False)
    state = results[-1].state
    assert state.query_net is not None
    q = stream.query_features
    np.testing.assert_array_equal(query_net_output(state.query_net, q, np_backend), 0)
    np.testing.assert_array_equal(
        encode(state, q, np_backend),
        encode_with(state.feature_map, state.projection, q, np_backend))


def test_training_fits_the_residual_and_leaves_its_inputs_alone(np_backend: Backend) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 6))
    target = np.sign(x[:, [0, 1, 2, 3]] * x[:, [1, 2, 3, 0]])  # XOR-like: not linear in x
    ones = np.hstack([x, np.ones((300, 1))])
    linear = np.sign(ones @ np.linalg.lstsq(ones, target, rcond=None)[0])
    assert (linear == target).mean() < 0.65
    net = init_query_net(x, bits=4, hidden=64, seed=5)
    before = {k: v.copy() for k, v in net.to_arrays().items()}
    trained = train_query_net(net, x, target, 300, np.random.default_rng(0), np_backend)
    for k, v in net.to_arrays().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    fitted = np.sign(query_net_output(trained, x, np_backend))
    assert (fitted == target).mean() > 0.85
    assert all(v.dtype == np.float32 for k, v in trained.to_arrays().items()
               if k != "query_net_scale")


def test_a_constant_first_chunk_feature_does_not_blow_up_later_inputs(
        np_backend: Backend) -> None:
    """One scale for all features: a feature constant in the first chunk (a blank pixel) and
    non-zero later stays on the others' scale."""
    first = np.ones((50, 3))
    first[:, 1:] = np.random.default_rng(0).standard_normal((50, 2))
    net = init_query_net(first, bits=4, hidden=8, seed=0)
    later = np.array([[5.0, 0.0, 0.0]])
    assert np.isfinite(query_net_output(net, later, np_backend)).all()
    assert net.scale > 0.5


def test_state_with_a_net_round_trips_through_the_codec(np_backend: Backend,
                                                        make_stream: Any) -> None:
    """No pickle: the net's arrays pass the store's codec bit for bit, and the state read back
    encodes and continues exactly as the live one."""
    stream = make_stream(6, n_classes=5, dim=12, n_chunks=3, chunk=80, multilabel=True)
    results = run_stream(stream.chunks[:2], SMALL, np_backend, trace=False)
    state = results[-1].state
    arrays = state.to_arrays()
    assert set(QUERY_NET_FIELDS) <= arrays.keys()
    restored = SDOHState.from_arrays(decode_arrays(encode_arrays(arrays)))
    assert restored.query_net is not None
    for k, v in restored.query_net.to_arrays().items():
        assert v.dtype == arrays[k].dtype and v.tobytes() == arrays[k].tobytes(), k
    q = stream.query_features
    np.testing.assert_array_equal(encode(restored, q, np_backend), encode(state, q, np_backend))
    x, lab = stream.chunks[2]
    live = learn_chunk(state, x, CL(lab), SMALL, np_backend)
    again = learn_chunk(restored, x, CL(lab), SMALL, np_backend)
    assert live.state.query_net is not None and again.state.query_net is not None
    for k, v in live.state.query_net.to_arrays().items():
        assert again.state.query_net.to_arrays()[k].tobytes() == v.tobytes(), k


def test_states_and_configs_from_before_the_net_read_as_linear(np_backend: Backend,
                                                               make_stream: Any) -> None:
    stream = make_stream(7, n_classes=4, dim=10, n_chunks=2, chunk=60)
    results = run_stream(stream.chunks, SMALL, np_backend, trace=False)
    state = results[-1].state
    old = {k: v for k, v in state.to_arrays().items() if k not in QUERY_NET_FIELDS}
    assert SDOHState.from_arrays(old).query_net is None
    method = SDOHMethod(replace(SMALL, query_encoder="linear"), 10, np_backend)
    q = stream.query_features
    linear = encode_with(state.feature_map, state.projection, q, np_backend)
    assert np.array_equal(method.encoder(old).encode(q), np.packbits(linear > 0, axis=1))
    assert not np.array_equal(method.encoder(state.to_arrays()).encode(q),
                              np.packbits(linear > 0, axis=1))
    # a stored config without the setting keeps the encoder it was built with
    stored = {"name": "a", "dim": 10, "settings": {"bits": 16}, "kind": "sdoh-hc"}
    assert IndexConfig.from_json(stored).settings.query_encoder == "linear"
    assert SDOHSettings().query_encoder == "linear"  # the net is opt-in
    fresh = IndexConfig("b", 10, SDOHSettings(bits=16, query_encoder="residual_net"))
    assert IndexConfig.from_json(fresh.to_json()).settings.query_encoder == "residual_net"


def test_a_linear_state_gains_a_net_when_the_settings_ask_for_one(
        np_backend: Backend, make_stream: Any) -> None:
    stream = make_stream(8, n_classes=4, dim=10, n_chunks=2, chunk=60)
    first = run_stream(stream.chunks[:1], replace(SMALL, query_encoder="linear"), np_backend,
                       trace=False)[0]
    assert first.state.query_net is None
    x, lab = stream.chunks[1]
    second = learn_chunk(first.state, x, ClassLists.from_dense(lab), SMALL, np_backend)
    assert second.state.query_net is not None
    assert second.state.query_net.w2.shape == (SMALL.query_hidden, SMALL.bits)


def test_inconsistent_stored_net_is_rejected(np_backend: Backend, make_stream: Any) -> None:
    stream = make_stream(9, n_classes=4, dim=10, n_chunks=1, chunk=60)
    arrays = run_stream(stream.chunks, SMALL, np_backend, trace=False)[-1].state.to_arrays()
    arrays["query_net_b1"] = arrays["query_net_b1"][:-1]
    with pytest.raises(ValueError, match="query net"):
        SDOHState.from_arrays(arrays)


@pytest.mark.parametrize("bad", [{"query_encoder": "mlp"}, {"query_hidden": 0},
                                 {"query_steps": -1}])
def test_settings_reject_bad_query_encoder_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        SDOHSettings(**bad)


def test_cli_and_api_accept_the_query_encoder_settings() -> None:
    from pydantic import ValidationError

    from hashstream.api.schemas import CreateIndex
    from hashstream.cli.main import build_parser

    args = build_parser().parse_args(["eval", "--data", "x.npz", "--query-encoder", "linear",
                                      "--query-hidden", "64", "--query-steps", "7"])
    assert (args.query_encoder, args.query_hidden, args.query_steps) == ("linear", 64, 7)
    body = CreateIndex(name="a", dim=4, query_encoder="linear", query_steps=5)
    cfg = SDOHSettings.from_dict(body.solver_settings())
    assert (cfg.query_encoder, cfg.query_steps) == ("linear", 5)
    assert SDOHSettings.from_dict(CreateIndex(name="a", dim=4).solver_settings()
                                  ).query_encoder == "linear"
    with pytest.raises(ValidationError, match="query_hidden"):
        CreateIndex(name="a", dim=4, query_hidden=0)


def test_class_balanced_weights_give_every_class_the_same_share() -> None:
    # a chunk of 300 rows of class 2 beside a memory of 30 rows of classes 0 and 1 and a
    # multi-label row, as in class-incremental order; one row without classes
    rows = [[2]] * 300 + [[0]] * 10 + [[1]] * 20 + [[0, 1]] + [[]]
    labels = ClassLists.from_lists(rows)
    w = class_balanced_weights(labels)
    single = [(i, r[0]) for i, r in enumerate(rows) if len(r) == 1]
    share = [sum(w[i] for i, c in single if c == k) for k in range(3)]
    counts = [10 + 1, 20 + 1, 300]  # rows holding each class, the multi-label row included
    np.testing.assert_allclose(share, [10 / counts[0], 20 / counts[1], 1.0])
    assert w[330] == pytest.approx((1 / counts[0] + 1 / counts[1]) / 2)
    assert w[-1] == 1.0 and (w > 0).all()
    assert w[:300].sum() < w[300:].sum()  # the new class no longer draws most rows


def test_balanced_draws_fit_the_memory_rows_a_uniform_draw_neglects(
        np_backend: Backend) -> None:
    """300 rows of the newest class beside 30 memory rows of an old one, each with its own
    residual: in the same steps, class-balanced draws fit the old class's rows better than
    uniform draws (which spend ~90 % of each batch on the new class) and the new class's
    rows still well."""
    rng = np.random.default_rng(3)
    d, r = 12, 8
    centers = rng.standard_normal((2, d)) * 3
    x = np.concatenate([centers[1] + rng.standard_normal((300, d)),
                        centers[0] + rng.standard_normal((30, d))]).astype(np.float32)
    targets = np.concatenate([np.tile(rng.standard_normal(r), (300, 1)),
                              np.tile(rng.standard_normal(r), (30, 1))]).astype(np.float32)
    labels = ClassLists.from_lists([[1]] * 300 + [[0]] * 30)
    net = init_query_net(x, r, 32, 0)
    errors = {}
    for name, weights in (("uniform", None), ("balanced", class_balanced_weights(labels))):
        trained = train_query_net(net, x, targets, 30, np.random.default_rng(0), np_backend,
                                  weights)
        err = ((np_backend.to_numpy(query_net_output(trained, x, np_backend)) - targets) ** 2
               ).mean(axis=1)
        errors[name] = (float(err[300:].mean()), float(err[:300].mean()))
    assert errors["balanced"][0] < 0.7 * errors["uniform"][0], errors
    assert errors["balanced"][1] < 2 * errors["uniform"][1] + 0.05, errors
