"""The grid that chose ECMH's defaults (issue 14 item 5), on a validation split of Wiki's
training items: the evaluation queries (test_idx) are never scored here.

Run:  python bench/ecmh_validation.py --out bench/out/ecmh_validation.md
      (parts: --part training | extension; --cells SUBSTRING keeps the cells named so)

Split: per seed, 20 % of the training items (seeded) are the queries, the other 80 % the
database and training items (``hashstream ecmh-eval --validation 0.2``); new classes
royalty, sport, warfare; 32 bits.

- training: INet/TNet trained from scratch on all database items (as joint retraining);
  all-tasks mAP of the validation queries: optimiser, step size, batch, epochs and widths.
- extension: the old model (Adam 1e-3, batch 100, 100 epochs) extended by Algorithm 2 under
  each (L_d weight, first layer frozen or not, step size, stage-3 epochs); all-tasks mAP and
  old-code retrieval relative to the old model (the 2 % target of the issue).
- centers (session 6): the current defaults extended under each (``center_weight``, the
  stage-3 term against old classes; L_d weight) and, without the term, each (agreement
  threshold α, L_d weight), at ``--bits`` (one or more); all-tasks, old-tasks and new-tasks
  mAP and old-code retrieval.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ecmh_table import NEW_CLASSES, WIKI

from hashstream.eval.ecmh import (
    CrossModalData,
    ProtocolConfig,
    _network_config,
    _table_rows,
    encode_items,
    extension_rows,
    fit_linear_baseline,
    load_cross_modal,
    split_items,
    train_old_model,
)
from hashstream.solver.ecmh.settings import TrainSettings
from hashstream.solver.ecmh.train import train_from_scratch

VALIDATION = 0.2
BITS = 32
Cell = tuple[str, tuple[int, ...], dict[str, Any]]


def _name(hidden: tuple[int, ...], kw: dict[str, Any]) -> str:
    width = "x".join(map(str, hidden)) or "linear"
    return (f"{width} {kw.get('optimizer', 'adam')} lr {kw['lr']:g} batch {kw['batch_size']} "
            f"epochs {kw.get('epochs', 100)}")


def training_cells() -> list[Cell]:
    step: list[tuple[tuple[int, ...], dict[str, Any]]] = [
        ((512,), {"lr": 3e-3, "batch_size": 500}),  # the earlier default
        ((512,), {"lr": 1e-3, "batch_size": 500}),
        ((512,), {"lr": 1e-2, "batch_size": 500}),
        ((512,), {"lr": 3e-3, "batch_size": 500, "epochs": 300}),
        ((512,), {"optimizer": "sgd", "lr": 1.5, "batch_size": 500}),  # the paper's
        ((512,), {"optimizer": "sgd", "lr": 15.0, "batch_size": 500}),
        ((512,), {"optimizer": "sgd", "lr": 1.5, "batch_size": 100, "epochs": 200}),
        ((512,), {"lr": 3e-3, "batch_size": 100}),
        ((512,), {"lr": 3e-3, "batch_size": 50}),
        ((1024,), {"lr": 3e-3, "batch_size": 100}),
        ((512, 512), {"lr": 3e-3, "batch_size": 100}),
        ((512,), {"lr": 3e-4, "batch_size": 50, "epochs": 200}),
    ]
    widths = [((), {}), ((256,), {}), ((512,), {}), ((1024,), {}), ((512, 512), {}),
              ((512,), {"batch_size": 50}), ((1024,), {"batch_size": 50}),
              ((512,), {"epochs": 200}), ((1024,), {"epochs": 200})]
    cells = [(h, kw) for h, kw in step]
    cells += [(h, {"lr": 1e-3, "batch_size": 100, **kw}) for h, kw in widths]
    return [(_name(h, kw), h, kw) for h, kw in cells]


def extension_cells() -> list[Cell]:
    cells: list[Cell] = []
    for hidden, weight, freeze in itertools.product(
            ((1024,), (512,)), (0.0, 1 / BITS, 1.0, 10.0, 30.0, 100.0, 300.0, 1000.0),
            (False, True)):
        kw = {"distill_weight": weight, "freeze_first_layer": freeze}
        cells.append((f"{hidden[0]} L_d {weight:g} frozen {freeze}", hidden, kw))
    for lr, epochs in ((3e-4, 50), (1e-3, 20), (3e-4, 20)):
        for weight, freeze in itertools.product((1 / BITS, 10.0, 100.0), (False, True)):
            kw = {"distill_weight": weight, "freeze_first_layer": freeze, "lr": lr,
                  "extend_epochs": epochs}
            cells.append((f"1024 L_d {weight:g} frozen {freeze} stage-3 lr {lr:g} epochs "
                          f"{epochs}", (1024,), kw))
    return cells


def center_cells() -> list[Cell]:
    cells: list[Cell] = []
    for weight, distill in itertools.product((0.0, 0.3, 1.0, 3.0, 10.0, 30.0),
                                             (300.0, 1000.0)):
        kw = {"center_weight": weight, "distill_weight": distill}
        cells.append((f"centers {weight:g} L_d {distill:g}", (1024,), kw))
    for alpha, distill in itertools.product((0.0, 0.3), (300.0, 1000.0)):
        kw = {"alpha": alpha, "distill_weight": distill}
        cells.append((f"alpha {alpha:g} L_d {distill:g}", (1024,), kw))
    return cells


def _mean(v: dict[str, float]) -> float:
    return (v["t2i"] + v["i2t"]) / 2


def run_training(data: CrossModalData, cells: list[Cell], seeds: list[int]
                 ) -> dict[str, dict[int, dict[str, float]]]:
    out: dict[str, dict[int, dict[str, float]]] = {}
    for seed in seeds:
        for name, hidden, kw in cells:
            settings = TrainSettings(seed=seed, device="cpu", **kw)
            config = ProtocolConfig(bits=BITS, new_classes=NEW_CLASSES, image_hidden=hidden,
                                    text_hidden=hidden, settings=settings,
                                    validation=VALIDATION)
            sp = split_items(data, config)
            lab, db, q = data.labels, sp.database, sp.queries
            t0 = time.perf_counter()
            result = train_from_scratch(_network_config(data, config, db), data.image[db],
                                        data.text[db], lab[db], settings, log_every=10**6)
            codes = encode_items(result.model, data, db)
            rows = _table_rows(encode_items(result.model, data, q), lab[q], sp.is_new[q],
                               codes, lab[db], codes, lab[db], "unified")
            out.setdefault(name, {})[seed] = {**rows["all_tasks"],
                                              "seconds": time.perf_counter() - t0}
            print(f"training seed {seed} {name}: {_mean(rows['all_tasks']):.4f}",
                  file=sys.stderr, flush=True)
    return out


def run_extension(data: CrossModalData, cells: list[Cell], seeds: list[int], bits: int = BITS,
                  tag: str = "extension") -> dict[str, dict[int, dict[str, Any]]]:
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for seed, hidden in itertools.product(seeds, sorted({c[1] for c in cells}, reverse=True)):
        base = TrainSettings(seed=seed, device="cpu", lr=1e-3, batch_size=100)
        config = ProtocolConfig(bits=bits, new_classes=NEW_CLASSES, image_hidden=hidden,
                                text_hidden=hidden, settings=base, validation=VALIDATION,
                                log_every=10**6)
        old = train_old_model(data, config)
        for name, h, kw in cells:
            if h != hidden:
                continue
            rows, _ = extension_rows(data, config, old, TrainSettings(
                **{**base.as_dict(), **kw}))
            oc, ref = rows["old_codes"], old.old_codes
            out.setdefault(name, {})[seed] = {
                **{row: rows[row] for row in ("all_tasks", "old_tasks", "new_tasks")},
                "old_codes_rel": {d: oc[d] / ref[d] - 1 for d in ("t2i", "i2t")}}
            print(f"{tag} {bits} bits seed {seed} {name}: {_mean(rows['all_tasks']):.4f}",
                  file=sys.stderr, flush=True)
    return out


def linear_means(data: CrossModalData, seeds: list[int]) -> dict[int, float]:
    out = {}
    for seed in seeds:
        config = ProtocolConfig(bits=BITS, new_classes=NEW_CLASSES,
                                settings=TrainSettings(seed=seed), validation=VALIDATION)
        sp = split_items(data, config)
        lab, db, q = data.labels, sp.database, sp.queries
        lin = fit_linear_baseline(data, db, BITS, seed)
        codes = lin.encode(data, db)
        rows = _table_rows(lin.encode(data, q), lab[q], sp.is_new[q], codes, lab[db], codes,
                           lab[db], "unified")
        out[seed] = _mean(rows["all_tasks"])
    return out


def center_table(results: dict[str, Any], seeds: list[int], bits: int) -> str:
    """One row per cell: means over seeds of all/old/new tasks (T→I / I→T) and the worst
    old-code change over seeds."""
    lines = [f"{bits} bits | all tasks mean per seed | mean | old tasks T→I / I→T | new tasks "
             "T→I / I→T | worst old-code change (T→I, I→T) |", "|---|---|---|---|---|---|"]
    for name, per in results.items():
        got = [per[s] for s in seeds if s in per]
        means = [_mean(r["all_tasks"]) for r in got]
        avg = {row: {d: np.mean([r[row][d] for r in got]) for d in ("t2i", "i2t")}
               for row in ("old_tasks", "new_tasks")}
        worst = [min(r["old_codes_rel"][d] for r in got) for d in ("t2i", "i2t")]
        lines.append(f"| {name} | " + " / ".join(f"{m:.4f}" for m in means)
                     + f" | {np.mean(means):.4f} | "
                     + " | ".join(f"{avg[row]['t2i']:.3f} / {avg[row]['i2t']:.3f}"
                                  for row in ("old_tasks", "new_tasks"))
                     + f" | {worst[0]:+.1%}, {worst[1]:+.1%} |")
    return "\n".join(lines)


def tables(training: dict[str, Any], extension: dict[str, Any], linear: dict[int, float],
           seeds: list[int]) -> str:
    lines = ["linear → centers, all tasks mean: " + ", ".join(
        f"seed {s} {v:.4f}" for s, v in linear.items()), ""]
    if training:
        lines += ["| training cell | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
                  "|---|" + "---|" * (len(seeds) + 1)]
        for name, per in training.items():
            means = [_mean(per[s]) for s in seeds if s in per]
            lines.append(f"| {name} | " + " | ".join(f"{m:.4f}" for m in means)
                         + f" | {np.mean(means):.4f} |")
        lines.append("")
    if extension:
        lines += ["| extension cell | all tasks mean per seed | mean | worst old-code change "
                  "(T→I, I→T) |", "|---|---|---|---|"]
        for name, per in extension.items():
            means = [_mean(per[s]["all_tasks"]) for s in seeds if s in per]
            worst = [min(per[s]["old_codes_rel"][d] for s in seeds if s in per)
                     for d in ("t2i", "i2t")]
            lines.append(f"| {name} | " + " / ".join(f"{m:.4f}" for m in means)
                         + f" | {np.mean(means):.4f} | {worst[0]:+.1%}, {worst[1]:+.1%} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(WIKI))
    ap.add_argument("--part", choices=("training", "extension", "both", "centers"),
                    default="both")
    ap.add_argument("--bits", type=int, nargs="+", default=[BITS],
                    help="code lengths of the centers part (default 32)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cells", default=None, help="keep only cells whose name contains this")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--out", default="bench/out/ecmh_validation.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_cross_modal(args.data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def keep(cells: list[Cell]) -> list[Cell]:
        return [c for c in cells if args.cells is None or args.cells in c[0]]

    started = time.perf_counter()
    if args.part == "centers":
        per_bits = {b: run_extension(data, keep(center_cells()), args.seeds, b, "centers")
                    for b in args.bits}
        text = "\n\n".join(center_table(r, args.seeds, b) for b, r in per_bits.items())
        text += (f"\n\ntotal bench time {time.perf_counter() - started:.0f}s, torch threads "
                 f"{args.threads}")
        (out.parent / f"{out.stem}.json").write_text(json.dumps(
            {str(b): r for b, r in per_bits.items()}, indent=1))
        out.write_text(text + "\n")
        print(text)
        return
    training = (run_training(data, keep(training_cells()), args.seeds)
                if args.part in ("training", "both") else {})
    extension = (run_extension(data, keep(extension_cells()), args.seeds)
                 if args.part in ("extension", "both") else {})
    text = tables(training, extension, linear_means(data, args.seeds), args.seeds)
    text += (f"\n\ntotal bench time {time.perf_counter() - started:.0f}s, torch threads "
             f"{args.threads}")
    (out.parent / f"{out.stem}.json").write_text(json.dumps(
        {"training": training, "extension": extension}, indent=1))
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
