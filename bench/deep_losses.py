"""DHD and IDCWH (issue 7) against ECMH's own objective on Wiki, by the protocol and budget of
``bench/ecmh_table.py`` (same split, new classes, seed, epochs, optimiser, network).

Run:  python bench/deep_losses.py --out bench/out/deep_losses.md

Every (bits, loss) runs the whole ``hashstream ecmh-eval`` protocol with ``--loss``: old model,
ECMH extension (Algorithm 2; with dhd/idcwh its stage 3 minimises that objective + ECMH's L_d),
fine-tuning and joint retraining. At 32 bits, extras: IDCWH with SDOH-HC's discrete center
step instead of sgn(Σ b) (``--idcwh-centers dcc``), also over more seeds; DHD without
self-distillation (no views, λ1 = 0: the paper's Table 3 ablation); and a sweep of the L_d
weight of the extension (old model retrained, identical by seed; only the extension reruns),
which also compares the two center estimates on the trained old IDCWH model's codes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ecmh_table import NEW_CLASSES, ORDER, WIKI

from hashstream.eval.ecmh import (
    Codes,
    CrossModalData,
    ProtocolConfig,
    _network_config,
    _table_rows,
    encode_items,
    load_cross_modal,
    run_protocol,
    split_items,
)
from hashstream.solver.ecmh.extend import extend
from hashstream.solver.ecmh.idcwh import (
    IDCWHHead,
    binary_sign,
    dcc_centers,
    estimate_centers,
)
from hashstream.solver.ecmh.settings import (
    DISTILL_WEIGHTS,
    DHDSettings,
    IDCWHSettings,
    TrainSettings,
)
from hashstream.solver.ecmh.train import paired_data, train_from_scratch

NAMES = {"old_model": "Old model", "fine_tuning": "Fine-tuning", "ecmh": "ECMH extension",
         "joint": "Joint retrain"}
LOSSES: dict[str, dict[str, Any]] = {
    "ecmh": {"loss": "ecmh"},
    "dhd": {"loss": "dhd"},
    "idcwh": {"loss": "idcwh"},
}
EXTRA_32: dict[str, dict[str, Any]] = {
    "idcwh-dcc": {"loss": "idcwh", "idcwh": IDCWHSettings(center_update="dcc")},
    # the paper's Table 3 "− SdH": L_HP + λ2 L_bce-Q on clean inputs, no views, no L_SdH
    "dhd-no-sdh": {"loss": "dhd", "dhd": DHDSettings(lambda_sdh=0.0, teacher_scale=0.0)},
}


def pair(r: dict[str, Any], method: str, row: str) -> str:
    v = r[method][row]
    return f"{v['t2i']:.4f} / {v['i2t']:.4f}"


def full_table(runs: dict[str, dict[str, Any]]) -> str:
    names = list(runs)
    lines = ["| task | method | " + " | ".join(f"{n} T→I / I→T" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for row, methods in ORDER:
        for m in methods:
            note = " (reference)" if (row, m) == ("old_codes", "joint") else ""
            lines.append(f"| {row} | {NAMES[m]}{note} | "
                         + " | ".join(pair(runs[n], m, row) for n in names) + " |")
    return "\n".join(lines)


def summary_table(results: dict[tuple[int, str], dict[str, Any]]) -> str:
    lines = ["| bits | loss | old model old_codes | ECMH-ext old_codes | ECMH-ext all_tasks "
             "| fine-tuning all_tasks | joint all_tasks | s: old / extend / joint |",
             "|---|---|---|---|---|---|---|---|"]
    for (bits, name), r in sorted(results.items()):
        s = r["seconds"]
        lines.append(f"| {bits} | {name} | {pair(r, 'old_model', 'old_codes')} | "
                     f"{pair(r, 'ecmh', 'old_codes')} | {pair(r, 'ecmh', 'all_tasks')} | "
                     f"{pair(r, 'fine_tuning', 'all_tasks')} | {pair(r, 'joint', 'all_tasks')} "
                     f"| {s['old_model']:.0f} / {s['ecmh_extend']:.1f} / {s['joint']:.0f} |")
    return "\n".join(lines)


def center_comparison(codes: torch.Tensor, labels: torch.Tensor, settings: IDCWHSettings,
                      batch: int, seed: int) -> dict[str, float]:
    """sgn(Σ b) against SDOH-HC's DCC step on the same codes: share of center bits that differ
    (whole set, and mean over random batches of ``batch`` pairs), and the smallest Hamming
    distance between two classes' centers under each estimate."""
    head = IDCWHHead(int(labels.shape[1]), int(codes.shape[1]), settings)

    def both(b: torch.Tensor, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, classes = estimate_centers(b, lab)
        d = dcc_centers(u, b, lab, classes, head.hadamard(b.device), settings.dcc_theta,
                        settings.dcc_eta, settings.dcc_sweeps)
        return u, d

    def min_dist(u: torch.Tensor) -> float:
        dist = (u.shape[1] - u @ u.T) / 2
        dist.fill_diagonal_(float("inf"))
        return float(dist.min())

    u, d = both(codes, labels)
    rng = np.random.default_rng(seed)
    n = codes.shape[0] // 2  # codes are [image; text] of the same n items
    diffs = []
    for _ in range(20):
        idx = torch.as_tensor(rng.choice(n, size=min(batch, n), replace=False))
        rows = torch.cat([idx, idx + n])
        ub, db = both(codes[rows], labels[rows])
        diffs.append(float((ub != db).float().mean()))
    return {"differ_full": float((u != d).float().mean()), "differ_batch": float(np.mean(diffs)),
            "min_dist_sign": min_dist(u), "min_dist_dcc": min_dist(d)}


def weight_sweep(data: CrossModalData, config: ProtocolConfig,
                 weights: list[float]) -> dict[str, Any]:
    """Old model as ``run_protocol`` trains it (same seed: the same model), then the ECMH
    extension for each L_d weight; the rows old_codes … all_tasks for each."""
    settings = config.settings
    device = torch.device("cpu")
    sp = split_items(data, config)
    old_train = sp.database[~sp.is_new[sp.database]]
    new_train = sp.database[sp.is_new[sp.database]]
    lab = data.labels
    old = train_from_scratch(_network_config(data, config, old_train), data.image[old_train],
                             data.text[old_train], lab[old_train], settings, device=device,
                             log_every=config.log_every)
    old_db = encode_items(old.model, data, old_train)
    q, q_new = sp.queries, sp.is_new[sp.queries]
    db_labels = np.concatenate([lab[old_train], lab[new_train]])
    new_pairs = paired_data(old.model.config, data.image[new_train], data.text[new_train],
                            lab[new_train], device)
    out: dict[str, Any] = {"weights": {}}
    for w in weights:
        ext = extend(old.model, new_pairs, replace(settings, distill_weight=w),
                     log_every=config.log_every, head=old.head)
        db = Codes.concat([old_db, encode_items(ext.model, data, new_train)])
        out["weights"][str(w)] = _table_rows(encode_items(ext.model, data, q), lab[q], q_new,
                                             old_db, lab[old_train], db, db_labels,
                                             config.database_codes)
    if settings.loss == "idcwh":
        codes = binary_sign(torch.cat([old.f, old.g]))
        labels = torch.as_tensor(np.concatenate([lab[old_train], lab[old_train]]),
                                 dtype=torch.float32)
        out["centers"] = center_comparison(codes, labels,
                                           settings.idcwh, settings.batch_size, settings.seed)
    return out


def seeds_table(runs: dict[tuple[int, str], dict[str, Any]]) -> str:
    cols = [("old_model", "old_codes"), ("ecmh", "old_codes"), ("ecmh", "all_tasks"),
            ("joint", "all_tasks")]
    lines = ["| seed | centers | old model old_codes | ECMH-ext old_codes | ECMH-ext all_tasks "
             "| joint all_tasks |", "|---|---|---|---|---|---|"]
    for (seed, name), r in sorted(runs.items()):
        lines.append(f"| {seed} | {name} | " + " | ".join(pair(r, m, row) for m, row in cols)
                     + " |")
    for name in ("sign", "dcc"):
        mine = [r for (_, n), r in runs.items() if n == name]
        cells = []
        for m, row in cols:
            t2i = np.mean([r[m][row]["t2i"] for r in mine])
            i2t = np.mean([r[m][row]["i2t"] for r in mine])
            cells.append(f"{t2i:.4f} / {i2t:.4f}")
        lines.append(f"| mean of {len(mine)} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(sweeps: dict[str, dict[str, Any]]) -> str:
    lines = ["| loss | L_d weight | old_codes | old_tasks | new_tasks | all_tasks |",
             "|---|---|---|---|---|---|"]
    for name, sw in sweeps.items():
        for w, rows in sorted(sw["weights"].items(), key=lambda kv: float(kv[0])):
            r = {"x": rows}
            lines.append(f"| {name} | {float(w):g} | " + " | ".join(
                pair(r, "x", row) for row in ("old_codes", "old_tasks", "new_tasks",
                                              "all_tasks")) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(WIKI))
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--sweep", type=float, nargs="*", default=[1.0, 100.0],
                    help="extra L_d weights for the 32-bit extension sweep (default 1 100; "
                    "the default weight's run is in the main table)")
    ap.add_argument("--center-seeds", type=int, nargs="*", default=[1, 2],
                    help="more seeds for IDCWH sign vs dcc at 32 bits (default 1 2)")
    ap.add_argument("--epochs", type=int, default=None, help="override (smoke tests only)")
    ap.add_argument("--extend-epochs", type=int, default=None, help="override (smoke tests)")
    ap.add_argument("--out", default="bench/out/deep_losses.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_cross_modal(args.data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = TrainSettings(seed=args.seed, device="cpu")
    if args.epochs is not None:
        settings = replace(settings, epochs=args.epochs)
    if args.extend_epochs is not None:
        settings = replace(settings, extend_epochs=args.extend_epochs)
    base = ProtocolConfig(new_classes=NEW_CLASSES, settings=settings)
    started = time.perf_counter()
    results: dict[tuple[int, str], dict[str, Any]] = {}
    for bits in args.bits:
        todo = dict(LOSSES)
        if bits == 32:
            todo.update(EXTRA_32)
        for name, change in todo.items():
            t0 = time.perf_counter()
            config = replace(base, bits=bits, settings=replace(base.settings, **change))
            results[(bits, name)] = run_protocol(data, config)
            (out.parent / f"{out.stem}_{bits}_{name}.json").write_text(
                json.dumps(results[(bits, name)], indent=1))
            print(f"{bits} bits {name}: {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    sweeps: dict[str, dict[str, Any]] = {}
    if args.sweep and 32 in args.bits:
        for name in ("dhd", "idcwh"):
            t0 = time.perf_counter()
            config = replace(base, bits=32, settings=replace(base.settings, loss=name))
            sweeps[name] = weight_sweep(data, config, args.sweep)
            default = str(config.settings.l_d_weight)
            sweeps[name]["weights"][default] = {
                row: results[(32, name)]["ecmh"][row]
                for row in ("old_codes", "old_tasks", "new_tasks", "all_tasks")}
            print(f"sweep {name}: {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        (out.parent / f"{out.stem}_sweep.json").write_text(json.dumps(sweeps, indent=1))
    center_runs: dict[tuple[int, str], dict[str, Any]] = {}
    if 32 in args.bits:
        for name in ("sign", "dcc"):
            center_runs[(args.seed, name)] = results[(32, "idcwh" if name == "sign"
                                                      else "idcwh-dcc")]
        for seed in args.center_seeds:
            for name in ("sign", "dcc"):
                t0 = time.perf_counter()
                settings = replace(base.settings, seed=seed, loss="idcwh",
                                   idcwh=IDCWHSettings(center_update=name))
                center_runs[(seed, name)] = run_protocol(data, replace(base, bits=32,
                                                                       settings=settings))
                print(f"seed {seed} idcwh {name}: {time.perf_counter() - t0:.0f}s",
                      file=sys.stderr)
        (out.parent / f"{out.stem}_centers.json").write_text(json.dumps(
            {f"{seed}_{name}": r for (seed, name), r in center_runs.items()}, indent=1))
    text = [f"Wiki, new classes {list(NEW_CLASSES)} (royalty, sport, warfare), mAP@all as "
            "T→I / I→T (text queries / image queries); database codes sign(F + G).", ""]
    if 32 in args.bits:
        text += ["32 bits:", "", full_table({n: results[(32, n)] for n in
                                             [*LOSSES, *EXTRA_32]}), ""]
    text += ["All bit lengths:", "", summary_table(results)]
    if sweeps:
        text += ["", f"32-bit extension, L_d weight (default {DISTILL_WEIGHTS['dhd']:g}; "
                 "old model identical):", "", sweep_table(sweeps)]
        if "centers" in sweeps.get("idcwh", {}):
            c = sweeps["idcwh"]["centers"]
            text += ["", "Binary centers of the trained old IDCWH model's codes (both "
                     "modalities): sgn(Σ b) vs SDOH-HC's DCC step (θ = η = 1, 3 sweeps): "
                     f"bits that differ {c['differ_full']:.4f} (whole set), "
                     f"{c['differ_batch']:.4f} (mean over 20 batches of "
                     f"{base.settings.batch_size} pairs); closest two centers "
                     f"{c['min_dist_sign']:.0f} bits (sign) vs {c['min_dist_dcc']:.0f} (DCC)."]
    if len(center_runs) > 2:
        text += ["", "IDCWH at 32 bits, binary centers by sgn(Σ b) or SDOH-HC's DCC step, "
                 "over seeds:", "", seeds_table(center_runs)]
    text += ["", f"total bench time {time.perf_counter() - started:.0f}s, "
             f"torch threads {args.threads}"]
    out.write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
