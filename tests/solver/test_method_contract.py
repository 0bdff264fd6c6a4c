"""The Method contract (``hashstream.solver.method``), checked for every registered method the
way river's ``check_estimator`` checks an estimator: one list of checks, run against each
method × configuration (SDOH-HC: every exemplar policy × feature map, and the linear query
encoder; ECMH: every objective).

Checks: determinism under a seed; the objective never rises across a round's steps (where the
method reports a trace); a state survives the store's codec (encode_arrays/decode_arrays) and
gives identical next-round codes; the encoder built from stored arrays encodes as the round's
own encoder, and reproduces the stored codes of the targets that are encodings (every
single-modality target; "pairs" where the method stores its encoder's codes); encoding is
row-wise (a permutation of the queries permutes their codes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from hashstream.solver import method as methods
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.method import PAIRS, LearnResult, Method, MethodSpec
from hashstream.store.codec import decode_arrays, encode_arrays

DIM, TEXT_DIM = 16, 6
SDOH = {"bits": 16, "n_anchors": 48, "n1": 30, "n2": 30, "iterations": 2,
        "condensed_steps": 10, "query_hidden": 32, "query_steps": 20, "seed": 3}
ECMH = {"bits": 16, "text_dim": TEXT_DIM, "image_hidden": [12], "text_hidden": [12],
        "epochs": 2, "extend_epochs": 1, "warmup_epochs": 1, "seed": 3}

# Whether a method's stored "pairs" codes are its encoder's codes of the items' features.
# SDOH-HC stores the learned B (the discrete solution; P is then fitted to it, so sgn(φP)
# agrees with B on most bits but not all), ECMH the unified sign(F + G) of both modalities.
PAIRS_ARE_ENCODED = {"lsh": True, "sdoh-hc": False, "ecmh": False}


def _configs() -> list[Any]:
    out = []
    for name in methods.names():
        if name == "sdoh-hc":
            for policy in ("random", "class_balanced", "nearest_center", "condensed"):
                for fmap in ("identity", "rbf"):
                    out.append(pytest.param(name, {**SDOH, "exemplar_policy": policy,
                                                   "feature_map": fmap},
                                            id=f"sdoh-hc-{policy}-{fmap}"))
            out.append(pytest.param(name, {**SDOH, "query_encoder": "residual_net"},
                                    id="sdoh-hc-residual-net-encoder"))
        elif name == "ecmh":
            for loss in ("ecmh", "dhd", "idcwh"):
                out.append(pytest.param(name, {**ECMH, "loss": loss}, id=f"ecmh-{loss}"))
        else:
            out.append(pytest.param(name, {"bits": 16, "seed": 3}, id=name))
    return out


CONFIGS = _configs()


def _chunks(make_stream: Any) -> list[tuple[np.ndarray[Any, Any], ClassLists,
                                          np.ndarray[Any, Any]]]:
    """Three chunks of (features, labels, text); the third brings classes the first lacks."""
    stream = make_stream(5, n_classes=6, dim=DIM, n_chunks=3, chunk=90)
    rng = np.random.default_rng(5)
    text_means = rng.standard_normal((6, TEXT_DIM)) * 2
    out = []
    for x, lab in stream.chunks:
        labels = ClassLists.from_dense(lab)
        text = (text_means[labels.first_class()]
                + rng.standard_normal((len(x), TEXT_DIM))).astype(np.float32)
        out.append((x, labels, text))
    return out


def _make(name: str, settings: dict[str, Any]) -> Method:
    return methods.create(name, MethodSpec(DIM, settings))


def _learn(method: Method, state: Any, chunk: Any) -> LearnResult:
    x, labels, text = chunk
    return method.learn(state, x, labels, text=text, ids=np.arange(len(x)))


def _through_codec(arrays: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if arrays is None else decode_arrays(encode_arrays(arrays))


def _stored(results: list[LearnResult]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(state arrays, model arrays) as the store would hold them after ``results``."""
    model = next((r.model for r in reversed(results) if r.model is not None), None)
    state = dict(results[-1].state_arrays)
    if results[-1].projection is not None:
        state["projection"] = results[-1].projection
    return _through_codec(state) or {}, _through_codec(model)


def _queries(chunk: Any, modality: str) -> np.ndarray[Any, Any]:
    return chunk[0] if modality == "image" else chunk[2]


@pytest.mark.parametrize(("name", "settings"), CONFIGS)
def test_result_shape_and_declared_fields(name: str, settings: dict[str, Any],
                                          make_stream: Any) -> None:
    chunks = _chunks(make_stream)
    method = _make(name, settings)
    assert method.name == name and method.targets[0] == PAIRS
    res = _learn(method, None, chunks[0])
    assert set(res.codes) == set(method.targets)
    for codes in res.codes.values():
        assert codes.dtype == np.uint8 and codes.shape == (len(chunks[0][0]),
                                                           (method.bits + 7) // 8)
    assert all(isinstance(v, np.ndarray) and v.dtype.kind in "biuf"
               for v in res.state_arrays.values())
    assert set(method.encoder_fields) <= set(res.state_arrays) | {"projection"}
    assert set(method.fixed_fields) <= set(method.encoder_fields)
    assert set(method.grown_fields) <= set(method.encoder_fields) - set(method.fixed_fields)
    later = res
    for chunk in chunks[1:]:  # a grown field keeps every row it had: rows are only appended
        later = _learn(method, later.state, chunk)
        for f in method.grown_fields:
            before, after = res.state_arrays[f], later.state_arrays[f]
            np.testing.assert_array_equal(after[:len(before)], before)
    assert tuple(res.encoder.modalities) == tuple(method.modalities)
    assert ("model_version" in res.state_arrays) == (res.model is not None)


@pytest.mark.parametrize(("name", "settings"), CONFIGS)
def test_deterministic_under_a_seed(name: str, settings: dict[str, Any],
                                    make_stream: Any) -> None:
    chunks = _chunks(make_stream)
    runs = []
    for _ in range(2):
        method, state, codes = _make(name, settings), None, []
        for chunk in chunks:
            res = _learn(method, state, chunk)
            state = res.state
            codes.append(res.codes)
        runs.append((codes, res.state_arrays))
    (codes_a, state_a), (codes_b, state_b) = runs
    for a, b in zip(codes_a, codes_b, strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[t], b[t]) for t in a)
    assert state_a.keys() == state_b.keys()
    assert all(state_a[k].tobytes() == state_b[k].tobytes() for k in state_a)


@pytest.mark.parametrize(("name", "settings"), CONFIGS)
def test_objective_never_increases_within_a_round(name: str, settings: dict[str, Any],
                                                  make_stream: Any) -> None:
    if name != "sdoh-hc":
        pytest.skip(f"{name} reports no per-step objective trace")
    from hashstream.solver.sdoh_hc.method import SDOHMethod
    from hashstream.solver.sdoh_hc.round import learn_chunk

    method = _make(name, settings)
    assert isinstance(method, SDOHMethod)
    state = None
    for x, labels, _ in _chunks(make_stream):
        traced = learn_chunk(state, x, labels, method.settings, method.backend, trace=True)
        values = [v for _, v in traced.trace]
        assert values, "no trace"
        for prev, cur in zip(values, values[1:], strict=False):
            assert cur <= prev + 1e-9 * max(abs(prev), 1.0), traced.trace
        # the method is this round: same codes as the traced call
        res = method.learn(state, x, labels)
        assert np.array_equal(res.codes[PAIRS], np.packbits(traced.codes > 0, axis=1))
        state = res.state


@pytest.mark.parametrize(("name", "settings"), CONFIGS)
def test_state_round_trip_through_the_codec(name: str, settings: dict[str, Any],
                                            make_stream: Any) -> None:
    """Continuing from the stored arrays gives the same next round as continuing live."""
    chunks = _chunks(make_stream)
    method = _make(name, settings)
    results = [_learn(method, None, chunks[0])]
    results.append(_learn(method, results[0].state, chunks[1]))
    live = _learn(method, results[-1].state, chunks[2])
    state, model = _stored(results)
    restored = method.state_from_arrays(state, model)
    again = _learn(_make(name, settings), restored, chunks[2])
    assert all(np.array_equal(live.codes[t], again.codes[t]) for t in method.targets)
    assert live.state_arrays.keys() == again.state_arrays.keys()
    assert all(live.state_arrays[k].tobytes() == again.state_arrays[k].tobytes()
               for k in live.state_arrays)


@pytest.mark.parametrize(("name", "settings"), CONFIGS)
def test_stored_encoder_reproduces_codes(name: str, settings: dict[str, Any],
                                         make_stream: Any) -> None:
    chunks = _chunks(make_stream)
    method = _make(name, settings)
    results = [_learn(method, None, chunks[0])]
    results.append(_learn(method, results[0].state, chunks[2]))
    state, model = _stored(results)
    fields = {k: v for k, v in state.items() if k in method.encoder_fields}
    encoder = method.encoder(fields, model)  # from encoder_fields alone, as a replica
    assert encoder.bits == method.bits
    for modality in method.modalities:
        for chunk in (chunks[0], chunks[1]):
            q = _queries(chunk, modality)
            assert np.array_equal(encoder.encode(q, modality),
                                  results[-1].encoder.encode(q, modality))
    last = chunks[2]
    for target in method.targets:  # a single-modality target is that modality's encoding
        if target in method.modalities:
            assert np.array_equal(results[-1].codes[target],
                                  encoder.encode(_queries(last, target), target))
    if name not in PAIRS_ARE_ENCODED:
        pytest.skip(f"whether {name}'s stored codes are its encoder's is not declared here")
    pairs = encoder.encode(last[0], "image")
    if PAIRS_ARE_ENCODED[name]:
        assert np.array_equal(results[-1].codes[PAIRS], pairs)
    elif name == "sdoh-hc":
        # documented relation: B is the round's discrete solution and P its ridge fit, so
        # sgn(φP) of the chunk agrees with the stored B on most bits
        same = 1.0 - np.unpackbits(results[-1].codes[PAIRS] ^ pairs, axis=1).mean()
        assert same > 0.7, same


@pytest.mark.parametrize(("name", "settings"), CONFIGS)
def test_encoding_is_row_wise(name: str, settings: dict[str, Any], make_stream: Any) -> None:
    """A permutation of the queries permutes their codes (no batch statistics), and for a
    method whose stored codes are encodings, of a later chunk's codes as well."""
    chunks = _chunks(make_stream)
    method = _make(name, settings)
    first = _learn(method, None, chunks[0])
    perm = np.random.default_rng(0).permutation(len(chunks[1][0]))
    for modality in method.modalities:
        q = _queries(chunks[1], modality)
        assert np.array_equal(first.encoder.encode(q[perm], modality),
                              first.encoder.encode(q, modality)[perm])
    if PAIRS_ARE_ENCODED.get(name):
        x, labels, text = chunks[1]
        straight = method.learn(first.state, x, labels, text=text)
        shuffled = method.learn(first.state, x[perm], labels.take(perm), text=text[perm])
        assert np.array_equal(shuffled.codes[PAIRS], straight.codes[PAIRS][perm])


@pytest.mark.parametrize(("name", "settings"), CONFIGS)
def test_projection_signs_are_the_codes(name: str, settings: dict[str, Any],
                                        make_stream: Any) -> None:
    """Every encoder's real-valued projection (what orders the items at one distance) has the
    codes as its signs (sgn(0) = +1), row for row, in every modality it takes."""
    chunks = _chunks(make_stream)
    method = _make(name, settings)
    encoder = _learn(method, None, chunks[0]).encoder
    for modality in method.modalities:
        q = _queries(chunks[1], modality)
        z = encoder.project(q, modality)
        assert z.shape == (len(q), method.bits) and np.issubdtype(z.dtype, np.floating)
        assert np.isfinite(z).all() and np.abs(z).max() > 0
        assert np.array_equal(np.packbits(z >= 0, axis=1), encoder.encode(q, modality))


def test_registry() -> None:
    assert {"sdoh-hc", "ecmh", "lsh"} <= set(methods.names())
    with pytest.raises(KeyError, match="unknown method"):
        methods.get("no-such-method")
    lsh = methods.get("lsh")
    methods.register("lsh-alias", lsh)
    try:
        assert methods.create("lsh-alias", MethodSpec(DIM, {"bits": 8})).bits == 8
    finally:
        methods._REGISTRY.pop("lsh-alias")


def test_cross_modal_method_needs_text(make_stream: Any) -> None:
    x, labels, _ = _chunks(make_stream)[0]
    with pytest.raises(ValueError, match="text is required"):
        _make("ecmh", ECMH).learn(None, x, labels)
