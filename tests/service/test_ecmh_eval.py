"""`ecmh-eval`: the ECMH extension protocol end to end on tiny synthetic .npz files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hashstream.eval import ecmh as ecmh_eval
from hashstream.eval.online_hashing import DatasetError

N, CLASSES = 240, 5
FAST = ["--epochs", "4", "--extend-epochs", "3", "--warmup-epochs", "2", "--batch-size", "100",
        "--hidden", "16", "--embed-dim", "8", "--bits", "8", "--quiet", "--device", "cpu"]
ROWS = {"old_codes", "old_tasks", "new_tasks", "all_tasks"}


def _arrays(seed: int = 0, tokens: bool = False, split: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, N)
    labels = np.eye(CLASSES, dtype=np.uint8)[y]
    out: dict[str, np.ndarray] = {
        "features": (rng.standard_normal((CLASSES, 10))[y] * 2
                     + rng.standard_normal((N, 10))).astype(np.float32),
        "labels": labels,
    }
    if tokens:
        ids = np.full((N, 6), -1, dtype=np.int64)  # -1 pads
        for i in range(N):
            length = rng.integers(2, 7)
            ids[i, :length] = 6 * y[i] + rng.integers(0, 6, length)  # new classes: new words
        out["tokens"] = ids
    else:
        out["text"] = (rng.standard_normal((CLASSES, 4))[y] + rng.standard_normal((N, 4))
                       ).astype(np.float32)
    if split:
        test = np.sort(rng.choice(N, 60, replace=False))
        out["test_idx"] = test
        out["train_idx"] = np.setdiff1d(np.arange(N), test)
    return out


def _run(path: Path, out: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    ecmh_eval.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ecmh-eval", "--data", str(path), "--new-classes", "3,4",
                              "--seed", "0", "--json", str(out), *FAST, *extra])
    return ecmh_eval.run(args)


SCORES = {"i2t", "t2i", "i2t_tie_aware", "t2i_tie_aware", "i2t_projection_ties",
          "t2i_projection_ties"}


def _check_result(result: dict[str, Any]) -> None:
    assert set(result["old_model"]) == {"old_codes"}
    for method in ("ecmh", "fine_tuning", "joint"):
        assert set(result[method]) == ROWS
        for row in ROWS:
            assert set(result[method][row]) == SCORES
            assert all(0.0 <= v <= 1.0 for v in result[method][row].values())
    # the linear → centers baseline: same rows and columns, finite, trained on all items
    assert set(result["linear"]) == ROWS
    for row in ROWS:
        values = result["linear"][row]
        assert set(values) == SCORES
        assert all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in values.values())
    counts = result["counts"]
    assert result["linear_baseline"]["train_items"] == counts["old_train"] + counts["new_train"]
    assert {"ecmh_extend", "fine_tuning", "joint", "linear"} <= set(result["seconds"])
    assert isinstance(result["protocol"], dict) and "old_tasks" in result["protocol"]
    assert result["new_classes"] == [3, 4]


@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
def test_ecmh_eval_writes_every_key(tmp_path: Path, tokens: bool,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    path, out = tmp_path / "data.npz", tmp_path / "out.json"
    np.savez(path, **_arrays(tokens=tokens, split=not tokens))
    assert _run(path, out) == 0
    result = json.loads(out.read_text())
    _check_result(result)
    table = capsys.readouterr().out
    assert "| all_tasks | linear → centers (all tasks, refit) |" in table
    # 5 balanced classes (chance mAP ≈ 0.2): the linear reference retrieves far above chance
    linear_all = result["linear"]["all_tasks"]
    assert min(linear_all["i2t"], linear_all["t2i"]) > 0.4, linear_all
    counts = result["counts"]
    assert counts["old_train"] + counts["new_train"] == (180 if not tokens else N - N // 5)
    assert ("skipped" in result["warmup"]) != tokens
    assert result["config"]["text_kind"] == ("tokens" if tokens else "dense")


def test_bad_new_classes_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, **_arrays())
    parser = argparse.ArgumentParser()
    ecmh_eval.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ecmh-eval", "--data", str(path), "--new-classes", "0,1,2,3,4",
                              "--quiet"])
    assert ecmh_eval.run(args) == 2
    assert "at least one class must stay old" in capsys.readouterr().err


def test_loader_checks_arrays(tmp_path: Path) -> None:
    arrays = _arrays()
    del arrays["text"]
    path = tmp_path / "no_text.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match="'text'"):
        ecmh_eval.load_cross_modal(path)
    arrays = _arrays(tokens=True)
    arrays["tokens"] = arrays["tokens"].astype(np.float32)
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match="integer"):
        ecmh_eval.load_cross_modal(path)


def test_validation_split_never_touches_the_evaluation_queries(tmp_path: Path) -> None:
    arrays = _arrays()
    data = ecmh_eval.CrossModalData(arrays["features"], arrays["text"], "dense",
                                    arrays["labels"], arrays["train_idx"], arrays["test_idx"])
    plain = ecmh_eval.split_items(data, ecmh_eval.ProtocolConfig(new_classes=(3, 4)))
    held = ecmh_eval.split_items(data, ecmh_eval.ProtocolConfig(new_classes=(3, 4),
                                                                validation=0.25))
    assert np.array_equal(plain.queries, arrays["test_idx"])
    assert not set(held.queries) & set(arrays["test_idx"])
    assert not set(held.database) & set(arrays["test_idx"])
    assert not set(held.queries) & set(held.database)
    assert np.array_equal(np.sort(np.concatenate([held.queries, held.database])),
                          arrays["train_idx"])
    assert held.queries.size == round(0.25 * arrays["train_idx"].size)

    # through the CLI: linear nets (no widths) on the validation split
    path, out = tmp_path / "data.npz", tmp_path / "out.json"
    np.savez(path, **arrays)
    assert _run(path, out, "--validation", "0.25", "--image-hidden", "--text-hidden",
                "--freeze-first-layer") == 0
    result = json.loads(out.read_text())
    _check_result(result)
    counts = result["counts"]
    assert counts["old_queries"] + counts["new_queries"] == held.queries.size
    assert counts["old_train"] + counts["new_train"] == held.database.size
    assert result["config"]["image_hidden"] == [] == result["config"]["text_hidden"]
    assert result["config"]["validation"] == 0.25 and result["config"]["freeze_first_layer"]
    assert result["protocol"]["split"].startswith("validation")


@pytest.mark.parametrize("flags,message", [
    (["--validation", "1.5"], "--validation"),
    (["--image-hidden", "0"], "widths"),
], ids=["validation", "width"])
def test_bad_protocol_flags_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   flags: list[str], message: str) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, **_arrays())
    assert _run(path, tmp_path / "out.json", *flags) == 2
    assert message in capsys.readouterr().err
