"""DHD and IDCWH as INet/TNet objectives (issue 7): each loss against its paper formula written
out by hand, the feature-space views, binary center estimation, SDOH-HC's center step, training
lowering each objective, extension with ECMH's L_d, and ``ecmh-eval --loss dhd|idcwh``."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hashstream.eval import ecmh as ecmh_eval
from hashstream.solver.backend import Backend
from hashstream.solver.dcc import dcc
from hashstream.solver.ecmh.dhd import (
    DHDHead,
    augment_features,
    augment_tokens,
    bce_quantization_loss,
    hash_proxy_loss,
    input_std,
    self_distillation_loss,
)
from hashstream.solver.ecmh.extend import extend, fine_tune
from hashstream.solver.ecmh.idcwh import (
    IDCWHHead,
    center_similarity_loss,
    classwise_loss,
    dcc_centers,
    estimate_centers,
    quantization_loss,
)
from hashstream.solver.ecmh.networks import build_model
from hashstream.solver.ecmh.settings import (
    PAD_ID,
    DHDSettings,
    IDCWHSettings,
    NetworkConfig,
    TrainSettings,
)
from hashstream.solver.ecmh.train import core_algorithm, paired_data, train_from_scratch
from hashstream.solver.hadamard import sylvester

Array = np.ndarray[Any, Any]
FAST = TrainSettings(epochs=15, extend_epochs=6, warmup_epochs=2, batch_size=80, seed=0,
                     lr=3e-3, device="cpu")  # a small budget: a large step


def toy(seed: int, n: int = 160, classes: tuple[int, ...] = (0, 1, 2), n_classes: int = 5,
        tokens: bool = False) -> tuple[Array, Array, Array]:
    """Per-class means plus noise; class k's words are 8k..8k+7 (later classes: new ids)."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(1234)
    img_means = means.standard_normal((n_classes, 12)) * 2
    txt_means = means.standard_normal((n_classes, 6)) * 2
    y = rng.choice(np.asarray(classes), n)
    labels = np.eye(n_classes, dtype=np.uint8)[y]
    image = (img_means[y] + rng.standard_normal((n, 12))).astype(np.float32)
    if not tokens:
        return image, (txt_means[y] + rng.standard_normal((n, 6))).astype(np.float32), labels
    ids = np.full((n, 7), PAD_ID, dtype=np.int64)
    for i in range(n):
        length = rng.integers(3, 8)
        ids[i, :length] = 8 * y[i] + rng.integers(0, 8, length)
    return image, ids, labels


def net_config(tokens: bool = False, vocab: int = 24) -> NetworkConfig:
    if tokens:
        return NetworkConfig(bits=16, image_dim=12, text_kind="tokens", vocab_blocks=(vocab,),
                             embed_dim=8, image_hidden=(32,), text_hidden=(32,))
    return NetworkConfig(bits=16, image_dim=12, text_dim=6, image_hidden=(32,),
                         text_hidden=(32,))


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# --- DHD losses against Eq. 2-7, written out --------------------------------------------


H = torch.tensor([[0.9, -0.2, 0.4, -0.7], [-0.5, 0.6, 0.1, 0.3], [0.2, 0.8, -0.9, 0.05]],
                 dtype=torch.float64)
LABELS = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.float64)  # row 2: 2 labels


def test_hash_proxy_loss_is_eq_4() -> None:
    proxies = torch.tensor([[1.0, -1.0, 0.5, -0.5], [-0.3, 0.9, 0.2, 0.1], [0.1, 0.4, -1.2, 0.0]],
                           dtype=torch.float64)
    tau = 0.3
    total = 0.0
    for i in range(3):
        # Eq. 3: p_T = [S(p_1, h), ..., S(p_c, h)]; Eq. 4: H(y, softmax(p_T / τ)).
        p = [_cos(proxies[j].tolist(), H[i].tolist()) / tau for j in range(3)]
        norm = sum(math.exp(v) for v in p)
        y = [v / sum(LABELS[i].tolist()) for v in LABELS[i].tolist()]  # y / ‖y‖₁
        total += -sum(y[j] * math.log(math.exp(p[j]) / norm) for j in range(3))
    assert hash_proxy_loss(H, proxies, LABELS, tau).item() == pytest.approx(total / 3, rel=1e-12)


def test_self_distillation_loss_is_eq_2_with_stop_gradient() -> None:
    h_t = H.clone().requires_grad_(True)
    h_s = (H.flip(0) * 0.5).requires_grad_(True)
    expected = sum(1 - _cos(h_s[i].tolist(), h_t[i].tolist()) for i in range(3)) / 3
    loss = self_distillation_loss(h_t, h_s)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert h_t.grad is None  # sg(h_T): the teacher is a fixed target
    assert h_s.grad is not None and h_s.grad.abs().sum() > 0


def test_bce_quantization_loss_is_eq_6() -> None:
    sigma = 0.5
    h = torch.tensor([[0.9, -0.2, 0.0, -0.7], [-2.5, 0.6, 0.1, 3.0]], dtype=torch.float64)
    total = 0.0
    for row in h.tolist():
        acc = 0.0
        for v in row:
            g_pos = math.exp(-((v - 1) ** 2) / (2 * sigma ** 2))  # Eq. 5, m = +1
            g_neg = math.exp(-((v + 1) ** 2) / (2 * sigma ** 2))  # m = −1
            b_pos = 0.5 * ((1 if v >= 0 else -1) + 1)  # Eq. 7 with sgn(0) = +1
            b_neg = 1 - b_pos

            def h_b(u: float, p: float) -> float:  # binary cross entropy
                return -(u * math.log(p) if u else 0.0) - (
                    (1 - u) * math.log(1 - p) if u < 1 else 0.0)

            acc += h_b(b_pos, g_pos) + h_b(b_neg, g_neg)
        total += acc / len(row)  # (1/K) Σ_k
    got = bce_quantization_loss(h, sigma).item()
    assert got == pytest.approx(total / 2, rel=1e-10)


def test_bce_quantization_is_finite_far_from_the_codes() -> None:
    p = torch.tensor([[-40.0, 55.0, 1e-8, -1e-8]], requires_grad=True)
    loss = bce_quantization_loss(p, 0.5)
    loss.backward()
    assert torch.isfinite(loss) and p.grad is not None and torch.isfinite(p.grad).all()
    # −log g⁺(−40) = 41² / (2 σ²): exact, where exp would underflow
    assert loss.item() > (41 ** 2 / 0.5) / 4


# --- feature-space views ------------------------------------------------------------------


def test_feature_views_differ_but_keep_shape() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 12) * 3 + 1
    std = x.std(dim=0)
    s = DHDSettings()
    weak = augment_features(x, std, s.teacher_scale, s, gen)
    strong = augment_features(x, std, 1.0, s, gen)
    for view in (weak, strong):
        assert view.shape == x.shape and view.dtype == x.dtype
        assert not torch.equal(view, x)
    assert not torch.equal(weak, strong)
    # the weak view changes fewer rows, and less
    changed_weak = (weak != x).any(dim=1).float().mean()
    changed_strong = (strong != x).any(dim=1).float().mean()
    assert changed_weak < changed_strong
    assert (weak - x).norm() < (strong - x).norm()
    # with every probability at 0 a view is the input itself
    off = replace(s, dropout_prob=0.0, noise_prob=0.0, mix_prob=0.0)
    assert torch.equal(augment_features(x, std, 1.0, off, gen), x)


def test_each_feature_transformation_does_what_it_says() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(300, 8) + 0.5  # no zeros of its own
    std = torch.ones(8)
    none = DHDSettings(dropout_prob=0.0, noise_prob=0.0, mix_prob=0.0)
    drop = augment_features(x, std, 1.0, replace(none, dropout_prob=1.0, dropout_rate=0.25), gen)
    kept = drop != 0
    assert 0.6 < kept.float().mean() < 0.9
    assert torch.allclose(drop[kept], (x / 0.75)[kept])  # inverted-dropout rescale
    mixed = augment_features(x, std, 1.0, replace(none, mix_prob=1.0, mix_max=0.3), gen)
    # a mixed row stays in the segment between its item and a partner, nearer its item
    assert ((mixed - x).norm(dim=1) <= 0.3 * (x.max() - x.min()) * math.sqrt(8) + 1e-6).all()


def test_token_views_drop_words_only() -> None:
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 50, (200, 9))
    ids[:, 7:] = PAD_ID
    s = DHDSettings()
    weak = augment_tokens(ids, s.teacher_scale, s, gen)
    strong = augment_tokens(ids, 1.0, s, gen)
    for view in (weak, strong):
        assert view.shape == ids.shape and view.dtype == ids.dtype
        changed = view != ids
        assert changed.any() and (view[changed] == PAD_ID).all()
    assert not torch.equal(weak, strong)
    assert (weak != ids).sum() < (strong != ids).sum()


def test_input_std_comes_from_the_standardiser() -> None:
    image, text, _ = toy(0)
    data_img, data_txt = torch.as_tensor(image), torch.as_tensor(text)
    model = build_model(net_config(), image=data_img, text=data_txt)
    std = input_std(model.inet)
    assert std is not None
    assert torch.allclose(std, data_img.std(dim=0) + 1e-6, rtol=1e-4)
    tok = build_model(net_config(tokens=True))
    assert input_std(tok.tnet) is None


# --- IDCWH losses, center estimation ----------------------------------------------------


def test_classwise_loss_is_the_normalised_gaussian() -> None:
    mu = torch.tensor([[1.0, -1.0, 0.5, -0.5], [-0.3, 0.9, 0.2, 0.1], [0.1, 0.4, -1.2, 0.0]],
                      dtype=torch.float64)
    sigma = 0.8
    total = 0.0
    for i in range(3):
        logit = [-sum((a - b) ** 2 for a, b in zip(H[i].tolist(), mu[j].tolist(), strict=True))
                 / (2 * sigma ** 2) for j in range(3)]
        norm = sum(math.exp(v) for v in logit)
        y = [v / sum(LABELS[i].tolist()) for v in LABELS[i].tolist()]
        total += -sum(y[j] * math.log(math.exp(logit[j]) / norm) for j in range(3))
    assert classwise_loss(H, mu, LABELS, sigma).item() == pytest.approx(total / 3, rel=1e-12)


def test_center_similarity_loss_is_the_slides_formula() -> None:
    u = torch.tensor([[1.0, -1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, -1.0]], dtype=torch.float64)
    classes = torch.tensor([0, 2])
    mu = torch.tensor([[0.7, -0.2, 0.5, 0.1], [-0.3, 0.9, 0.2, 0.1], [-0.6, -0.4, 0.3, -0.8]],
                      dtype=torch.float64, requires_grad=True)
    bits, total = 4, 0.0
    for z in range(2):
        for j in range(3):
            theta = 0.5 * bits * _cos(u[z].tolist(), mu[j].tolist())  # θ = 0.5 l cos(u, μ)
            s = 1.0 if int(classes[z]) == j else 0.0
            total += -(s * theta - math.log(1 + math.exp(theta)))
    loss = center_similarity_loss(u, classes, mu)
    assert loss.item() == pytest.approx(total / 6, rel=1e-12)  # averaged over Z × c pairs
    loss.backward()
    assert mu.grad is not None and mu.grad.abs().sum() > 0


def test_quantization_loss_is_squared_distance_to_the_sign() -> None:
    h = torch.tensor([[0.5, -0.25, 0.0], [-1.0, 0.75, -0.5]], dtype=torch.float64)
    expected = ((0.5 ** 2 + 0.75 ** 2 + 1.0) + (0 + 0.25 ** 2 + 0.5 ** 2)) / 2  # sgn(0) = +1
    assert quantization_loss(h).item() == pytest.approx(expected, rel=1e-12)


def test_center_estimate_is_sign_of_the_class_sum_with_ties_up() -> None:
    codes = torch.tensor([[1, 1, -1, -1], [-1, 1, -1, 1], [1, -1, -1, 1],
                          [-1, -1, 1, 1], [-1, 1, 1, -1]], dtype=torch.float32)
    labels = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 1, 0],
                           [0, 0, 1, 0], [0, 0, 1, 0]], dtype=torch.float32)
    u, classes = estimate_centers(codes, labels)
    assert classes.tolist() == [0, 2]  # classes 1 and 3 have no item
    # class 0: rows 0, 1, 2 sum to (1, 1, −3, 1); class 2: rows 2, 3, 4 sum to (−1, −1, 1, 1)
    assert u.tolist() == [[1, 1, -1, 1], [-1, -1, 1, 1]]
    tie = torch.tensor([[1, -1, 1], [-1, 1, 1]], dtype=torch.float32)
    u, _ = estimate_centers(tie, torch.ones(2, 1))
    assert u.tolist() == [[1, 1, 1]]  # sums 0, 0, 2: sgn(0) = +1
    # it minimises Σ_i y_ji ‖u_j − b_i‖² over all 2^L binary u_j (class 0, L = 4)
    best = min((sum(float(((torch.tensor(c, dtype=torch.float32) - codes[i]) ** 2).sum())
                    for i in (0, 1, 2)), c) for c in
               [[(k >> b & 1) * 2 - 1 for b in range(4)] for k in range(16)])
    u0 = estimate_centers(codes, labels)[0][0]
    assert sum(float(((u0 - codes[i]) ** 2).sum()) for i in (0, 1, 2)) == best[0]


def test_dcc_centers_match_the_sdoh_hc_dcc_solver() -> None:
    rng = np.random.default_rng(3)
    codes = np.where(rng.random((40, 8)) < 0.6, 1.0, -1.0)
    y = rng.integers(0, 3, 40)
    labels = np.eye(3)[y]
    hadamard = np.where(rng.random((3, 8)) < 0.5, 1.0, -1.0)
    theta, eta = 2.0, 1.0
    start, classes = estimate_centers(torch.as_tensor(codes), torch.as_tensor(labels))
    got = dcc_centers(start, torch.as_tensor(codes), torch.as_tensor(labels), classes,
                      torch.as_tensor(hadamard), theta, eta, sweeps=3)
    l_hat = labels / np.linalg.norm(labels, axis=1, keepdims=True)
    q = theta * hadamard + eta * 8 * (l_hat.T @ codes)
    want = dcc(start.numpy(), q, eta * codes.T @ codes, 3, Backend("numpy", np, np.float64))
    assert np.array_equal(got.numpy(), want)
    # with balanced, uncorrelated bits (BᵀB = nI) and θ = 0 it is IDCWH's sgn(Σ b)
    b = torch.as_tensor(sylvester(8).astype(np.float64))
    lab = torch.as_tensor(np.eye(2)[[0, 0, 0, 1, 1, 1, 1, 0]])
    u, cls = estimate_centers(b, lab)
    flipped = -u  # a start far from the answer
    assert torch.equal(dcc_centers(flipped, b, lab, cls, torch.zeros(2, 8), 0.0, 1.0, 2), u)


# --- heads, training, extension ---------------------------------------------------------


@pytest.mark.parametrize("loss", ["dhd", "idcwh"])
def test_heads_grow_without_touching_old_rows(loss: str) -> None:
    gen = torch.Generator().manual_seed(0)
    head = DHDHead(3, 8, DHDSettings(), gen) if loss == "dhd" else IDCWHHead(
        3, 8, IDCWHSettings(), gen)
    before = [p.detach().clone() for p in head.parameters()]
    head.grow(5, gen)
    assert head.n_classes == 5
    assert torch.equal(list(head.parameters())[0], before[0])
    head.grow(4, gen)
    assert head.n_classes == 5


@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
@pytest.mark.parametrize("loss", ["dhd", "idcwh", "idcwh-dcc"])
def test_training_lowers_each_objective(loss: str, tokens: bool) -> None:
    image, text, labels = toy(0, n=200, classes=(0, 1, 2, 3, 4), tokens=tokens)
    settings = replace(FAST, loss="idcwh" if loss.startswith("idcwh") else loss,
                       idcwh=IDCWHSettings(center_update="dcc" if loss == "idcwh-dcc"
                                           else "sign"))
    result = train_from_scratch(net_config(tokens, vocab=40), image, text, labels, settings,
                                log_every=5)
    first, last = result.history[0], result.history[-1]
    assert last["total"] < 0.6 * first["total"]
    main = "proxy" if loss == "dhd" else "classwise"
    assert last[main] < 0.5 * first[main]
    assert result.head is not None and result.head.n_classes == 5
    assert "distillation" not in last  # no old model: no L_d
    # the codes separate the classes across modalities
    from hashstream.solver.ecmh.networks import image_representations, sign, text_representations
    from hashstream.solver.metrics import evaluate

    data = paired_data(result.model.config, image, text, labels, result.model.device)
    f = sign(image_representations(result.model, data.image)).numpy()
    g = sign(text_representations(result.model, data.text)).numpy()
    assert evaluate(f, labels, g, labels).map > 0.8
    assert evaluate(g, labels, f, labels).map > 0.8


def test_same_seed_same_dhd_run() -> None:
    image, text, labels = toy(0, n=60)
    settings = replace(FAST, epochs=2, loss="dhd")
    a = train_from_scratch(net_config(), image, text, labels, settings)
    b = train_from_scratch(net_config(), image, text, labels, settings)
    assert torch.equal(a.codes, b.codes)
    assert a.head is not None and b.head is not None
    assert all(torch.equal(p, q) for p, q in zip(a.head.parameters(), b.head.parameters(),
                                                   strict=True))


@pytest.mark.parametrize("tokens", [False, True], ids=["dense", "tokens"])
@pytest.mark.parametrize("loss", ["dhd", "idcwh"])
def test_extension_combines_the_objective_with_ecmh_distillation(loss: str,
                                                                  tokens: bool) -> None:
    settings = replace(FAST, loss=loss)
    old = train_from_scratch(net_config(tokens), *toy(0, classes=(0, 1, 2), tokens=tokens),
                             settings)
    assert old.head is not None
    old_head = [p.detach().clone() for p in old.head.parameters()]
    image, text, labels = toy(1, classes=(3, 4), tokens=tokens)
    new = paired_data(old.model.config, image, text, labels, old.model.device)
    results = {}
    for weight in (0.0, 100.0):
        ext = extend(old.model, new, replace(settings, distill_weight=weight), head=old.head)
        assert ext.core.head is not None and ext.core.head.n_classes == 5
        assert "distillation" in ext.core.history[-1]
        results[weight] = ext
    # the old run's head is left alone (the extension trains a copy)
    assert all(torch.equal(p, q) for p, q in zip(old.head.parameters(), old_head, strict=True))
    assert (ext.warmup is not None) == tokens

    def moved(ext: Any) -> float:  # agreed entries' squared change from F_{n|θo}, G_{n|θo}
        a = ext.agreement
        return float((a * (ext.core.f - ext.f_old) ** 2).sum()
                     + (a * (ext.core.g - ext.g_old) ** 2).sum())

    assert moved(results[100.0]) < 0.5 * moved(results[0.0])
    ft = fine_tune(old.model, new, settings, head=old.head)
    assert ft.head is not None and "distillation" not in ft.history[-1]


def test_head_and_loss_must_match() -> None:
    image, text, labels = toy(0, n=40)
    dhd = train_from_scratch(net_config(), image, text, labels, replace(FAST, epochs=1,
                                                                        loss="dhd"))
    data = paired_data(dhd.model.config, image, text, labels, dhd.model.device)
    with pytest.raises(ValueError, match="is 'idcwh' but the head is a DHDHead"):
        core_algorithm(dhd.model, data, replace(FAST, loss="idcwh"), epochs=1, head=dhd.head)
    with pytest.raises(ValueError, match="settings.loss is 'ecmh'"):
        core_algorithm(dhd.model, data, FAST, epochs=1, head=dhd.head)
    with pytest.raises(ValueError, match="loss must be"):
        TrainSettings(loss="csq")  # type: ignore[arg-type]


def test_settings_round_trip_through_as_dict() -> None:
    s = replace(FAST, loss="idcwh", idcwh=IDCWHSettings(center_update="dcc"))
    assert TrainSettings(**s.as_dict()) == s


# --- ecmh-eval --loss ---------------------------------------------------------------------


def _npz(path: Path, tokens: bool) -> None:
    rng = np.random.default_rng(0)
    n, c = 240, 5
    y = rng.integers(0, c, n)
    out: dict[str, Array] = {
        "features": (rng.standard_normal((c, 10))[y] * 2
                     + rng.standard_normal((n, 10))).astype(np.float32),
        "labels": np.eye(c, dtype=np.uint8)[y]}
    if tokens:
        ids = np.full((n, 6), -1, dtype=np.int64)
        for i in range(n):
            length = rng.integers(2, 7)
            ids[i, :length] = 6 * y[i] + rng.integers(0, 6, length)
        out["tokens"] = ids
    else:
        out["text"] = (rng.standard_normal((c, 4))[y] + rng.standard_normal((n, 4))
                       ).astype(np.float32)
    test = np.sort(rng.choice(n, 60, replace=False))
    out["test_idx"], out["train_idx"] = test, np.setdiff1d(np.arange(n), test)
    np.savez(path, **out)


@pytest.mark.parametrize("extra", [["--loss", "dhd"], ["--loss", "idcwh"],
                                   ["--loss", "idcwh", "--idcwh-centers", "dcc"],
                                   ["--loss", "dhd", "--text-input", "tokens"]],
                         ids=["dhd", "idcwh", "idcwh-dcc", "dhd-tokens"])
def test_ecmh_eval_runs_each_loss_end_to_end(tmp_path: Path, extra: list[str]) -> None:
    path, out = tmp_path / "data.npz", tmp_path / "out.json"
    _npz(path, tokens="tokens" in extra)
    parser = argparse.ArgumentParser()
    ecmh_eval.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ecmh-eval", "--data", str(path), "--new-classes", "3,4",
                              "--epochs", "4", "--extend-epochs", "3", "--warmup-epochs", "2",
                              "--batch-size", "100", "--hidden", "16", "--embed-dim", "8",
                              "--bits", "8", "--quiet", "--device", "cpu", "--json", str(out),
                              *extra])
    assert ecmh_eval.run(args) == 0
    result = json.loads(out.read_text())
    loss = extra[1]
    assert result["config"]["loss"] == loss
    assert loss.upper() in result["protocol"]["loss"]
    for method in ("ecmh", "fine_tuning", "joint"):
        for row in ("old_codes", "old_tasks", "new_tasks", "all_tasks"):
            assert all(0.0 <= v <= 1.0 for v in result[method][row].values())
    main = "proxy" if loss == "dhd" else "classwise"
    assert main in result["objective"]["old_model"]["last"]
    assert "distillation" in result["objective"]["ecmh_extend"]["last"]
