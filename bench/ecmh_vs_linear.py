"""ECMH's extension against the linear map onto the centers (issue 14 item 5), before and
after the defaults chosen on the validation split, side by side in one run.

Run:  python bench/ecmh_vs_linear.py --bits 32 --seeds 0 1 2 --out bench/out/ecmh_vs_linear.md

Per (bits, seed), on Wiki's evaluation queries (test_idx; ``--validation 0.2`` scores on
held-out training items instead): the old model and ECMH's extension (Algorithm 2) under the
earlier defaults ("before": Adam 3e-3 on batches of 500, 512 hidden units, the paper's
λ_d = 1/(m L²), i.e. L_d weight 1/L) and under the current defaults ("after"), and the
linear → centers baseline fitted on all training items. Columns: all-tasks mAP (T→I / I→T and
their mean) and old-code retrieval relative to each run's own old model (paper §3.4: old-class
queries encoded by the extended model against the old items' codes from the old model).
Fine-tuning and joint retraining are left out (``hashstream ecmh-eval`` has them). ``--loss
dhd|idcwh`` compares the same for the other objectives (before: their L_d weight 10).

``--before defaults`` makes "before" the current defaults instead, and ``--center-weight`` /
``--distill-weight`` change "after" from the defaults (session 6: stage 3's term against old
classes); the table then has old/new-task columns too (``--tasks``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ecmh_table import NEW_CLASSES, WIKI

from hashstream.eval.ecmh import (
    CrossModalData,
    ProtocolConfig,
    _table_rows,
    extension_rows,
    fit_linear_baseline,
    load_cross_modal,
    train_old_model,
)
from hashstream.solver.ecmh.settings import Objective, TrainSettings


def earlier(seed: int, bits: int, loss: Objective) -> tuple[TrainSettings, tuple[int, ...]]:
    """The defaults before issue 14 item 5, and their hidden widths (L_d: the paper's λ_d
    for ECMH's loss, issue 7's weight 10 for DHD/IDCWH)."""
    return TrainSettings(seed=seed, device="cpu", lr=3e-3, batch_size=500, loss=loss,
                         distill_weight=1.0 / bits if loss == "ecmh" else 10.0), (512,)


def after(seed: int, bits: int, loss: Objective) -> tuple[TrainSettings, tuple[int, ...]]:
    """The current defaults."""
    return TrainSettings(seed=seed, device="cpu", loss=loss), ProtocolConfig().image_hidden


Make = Callable[[int, int, Objective], tuple[TrainSettings, tuple[int, ...]]]


def changed(center_weight: float | None, distill_weight: float | None) -> Make:
    """The defaults with ``center_weight`` / ``distill_weight`` where given."""
    def make(seed: int, bits: int, loss: Objective) -> tuple[TrainSettings, tuple[int, ...]]:
        settings, hidden = after(seed, bits, loss)
        if center_weight is not None:
            settings = replace(settings, center_weight=center_weight)
        if distill_weight is not None:
            settings = replace(settings, distill_weight=distill_weight)
        return settings, hidden
    return make


def one_run(data: CrossModalData, bits: int, seed: int, validation: float | None,
            loss: Objective = "ecmh", before: Make = earlier, later: Make = after
            ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, make in (("before", before), ("after", later)):
        settings, hidden = make(seed, bits, loss)
        config = ProtocolConfig(bits=bits, new_classes=NEW_CLASSES, image_hidden=hidden,
                                text_hidden=hidden, settings=settings, validation=validation,
                                log_every=10**6)
        t0 = time.perf_counter()
        old = train_old_model(data, config)
        rows, _ = extension_rows(data, config, old)
        out[name] = {"old_model": old.old_codes, "ecmh": rows,
                     "seconds": time.perf_counter() - t0,
                     "settings": {**settings.as_dict(), "hidden": list(hidden),
                                  "l_d_weight": settings.l_d_weight}}
    # the linear reference on the same split (the split depends on the seed only)
    lab = data.labels
    sp, db = old.split, old.database
    lin = fit_linear_baseline(data, db, bits, seed)
    lin_db = lin.encode(data, db)
    q = sp.queries
    out["linear"] = _table_rows(lin.encode(data, q), lab[q], sp.is_new[q],
                                lin_db.take(np.arange(old.old_train.size)),
                                lab[old.old_train], lin_db, lab[db], "unified")
    return out


def _mean(v: dict[str, float]) -> float:
    return (v["t2i"] + v["i2t"]) / 2


def task_table(results: dict[tuple[int, int], dict[str, Any]]) -> str:
    """Old and new tasks (T→I / I→T), before, after and the linear row."""
    lines = ["| bits | seed | old tasks before | after | linear | new tasks before | after "
             "| linear |", "|---|---|---|---|---|---|---|---|"]
    for (bits, seed), r in sorted(results.items()):
        cells = []
        for row in ("old_tasks", "new_tasks"):
            for v in (r["before"]["ecmh"][row], r["after"]["ecmh"][row], r["linear"][row]):
                cells.append(f"{v['t2i']:.3f} / {v['i2t']:.3f}")
        lines.append(f"| {bits} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(results: dict[tuple[int, int], dict[str, Any]]) -> str:
    lines = ["| bits | seed | ECMH all T→I / I→T (mean), before | after | linear → centers "
             "| after − linear | old codes T→I / I→T vs old model, before | after |",
             "|---|---|---|---|---|---|---|---|"]
    for (bits, seed), r in sorted(results.items()):
        cells = []
        for name in ("before", "after"):
            a = r[name]["ecmh"]["all_tasks"]
            cells.append(f"{a['t2i']:.4f} / {a['i2t']:.4f} ({_mean(a):.3f})")
        lin = r["linear"]["all_tasks"]
        cells.append(f"{lin['t2i']:.4f} / {lin['i2t']:.4f} ({_mean(lin):.3f})")
        cells.append(f"{_mean(r['after']['ecmh']['all_tasks']) - _mean(lin):+.3f}")
        for name in ("before", "after"):
            oc, ref = r[name]["ecmh"]["old_codes"], r[name]["old_model"]
            cells.append(f"{oc['t2i'] / ref['t2i'] - 1:+.1%} / {oc['i2t'] / ref['i2t'] - 1:+.1%}")
        lines.append(f"| {bits} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(WIKI))
    ap.add_argument("--bits", type=int, nargs="+", default=[32])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--validation", type=float, default=None,
                    help="score on this share of held-out training items instead")
    ap.add_argument("--loss", choices=("ecmh", "dhd", "idcwh"), default="ecmh",
                    help="objective of INet/TNet in both runs (default ecmh)")
    ap.add_argument("--before", choices=("earlier", "defaults"), default="earlier",
                    help="'before' settings: the earlier defaults (issue 14) or the current")
    ap.add_argument("--center-weight", type=float, default=None,
                    help="'after': the defaults with this center_weight")
    ap.add_argument("--distill-weight", type=float, default=None,
                    help="'after': the defaults with this L_d weight")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--out", default="bench/out/ecmh_vs_linear.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_cross_modal(args.data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[tuple[int, int], dict[str, Any]] = {}
    for bits in args.bits:
        for seed in args.seeds:
            results[(bits, seed)] = one_run(
                data, bits, seed, args.validation, args.loss,
                earlier if args.before == "earlier" else after,
                changed(args.center_weight, args.distill_weight))
            r = results[(bits, seed)]
            print(f"{bits} bits seed {seed}: before {r['before']['seconds']:.0f}s, after "
                  f"{r['after']['seconds']:.0f}s", file=sys.stderr, flush=True)
            (out.parent / f"{out.stem}.json").write_text(json.dumps(
                {f"{b}_{s}": v for (b, s), v in results.items()}, indent=1))
    split = ("validation: 20 % of the training items held out as queries"
             if args.validation else "evaluation queries (test_idx), database = train_idx")
    text = [f"Wiki, new classes {list(NEW_CLASSES)}, {split}, loss {args.loss}; mAP@all, "
            "T→I = text queries, "
            "I→T = image queries; old codes relative to each run's own old model.", "",
            table(results), "", task_table(results), "",
            f"total bench time {time.perf_counter() - started:.0f}s, torch threads "
            f"{args.threads}"]
    out.write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
