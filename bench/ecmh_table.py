"""The ECMH paper's Table 1 (and Table 2's times) on Wiki: old model, fine-tuning, ECMH and
joint retraining at 16/32/64 bits, new classes = the last three (royalty, sport, warfare).

Run:  python bench/ecmh_table.py --out bench/out/ecmh_wiki.md

Every bit length runs the whole protocol of ``hashstream ecmh-eval`` (same seed, same split:
the official Wiki train/test split, queries = test_idx, database = train_idx). Two 32-bit
variants follow the paper more literally and show why the defaults differ: Eq. 6 as printed
(``--common-loss paper``) and the paper's optimiser (SGD, learning rate 1.5). The JSON of each
run goes beside the markdown (bench/out/ecmh_wiki_<bits>[_<variant>].json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from hashstream.eval.ecmh import ProtocolConfig, load_cross_modal, run_protocol
from hashstream.solver.ecmh.settings import TrainSettings

WIKI = Path(__file__).resolve().parents[2] / "shared/data/wiki/wiki.npz"
NEW_CLASSES = (7, 8, 9)  # royalty, sport, warfare: 705 of 2173 training items
VARIANTS: dict[str, dict[str, Any]] = {
    "paper-eq6": {"common_loss": "paper"},
    "paper-sgd": {"optimizer": "sgd", "lr": 1.5},
}
ORDER = [("old_codes", ["old_model", "fine_tuning", "ecmh", "joint"]),
         ("old_tasks", ["joint", "fine_tuning", "ecmh"]),
         ("new_tasks", ["joint", "fine_tuning", "ecmh"]),
         ("all_tasks", ["joint", "fine_tuning", "ecmh"])]
NAMES = {"old_model": "Old model", "fine_tuning": "Fine-tuning", "ecmh": "ECMH",
         "joint": "Joint-ECMH (retrain)"}


def table(results: dict[int, dict[str, Any]]) -> str:
    bits = sorted(results)
    head = "| task | method | " + " | ".join(f"{b} T→I | {b} I→T" for b in bits) + " |"
    lines = [head, "|---|---|" + "---|---|" * len(bits)]
    for row, methods in ORDER:
        for m in methods:
            cells = []
            for b in bits:
                v = results[b][m][row]
                cells += [f"{v['t2i']:.4f}", f"{v['i2t']:.4f}"]
            note = " (reference)" if (row, m) == ("old_codes", "joint") else ""
            lines.append(f"| {row} | {NAMES[m]}{note} | " + " | ".join(cells) + " |")
    lines += ["", "| bits | old model s | ECMH extend s | fine-tuning s | joint retrain s "
              "| joint / ECMH | A_α agreed |", "|---|---|---|---|---|---|---|"]
    for b in bits:
        s = results[b]["seconds"]
        lines.append(f"| {b} | {s['old_model']:.1f} | {s['ecmh_extend']:.1f} | "
                     f"{s['fine_tuning']:.1f} | {s['joint']:.1f} | "
                     f"{s['joint'] / s['ecmh_extend']:.1f}× | "
                     f"{results[b]['agreement_fraction']:.2f} |")
    return "\n".join(lines)


def variant_lines(variants: dict[str, dict[str, Any]]) -> str:
    lines = ["| 32-bit variant | old model old_codes T→I / I→T | ECMH old_codes | "
             "ECMH all_tasks | joint all_tasks |", "|---|---|---|---|---|"]
    for name, r in variants.items():
        def pair(m: str, row: str, r: dict[str, Any] = r) -> str:
            return f"{r[m][row]['t2i']:.4f} / {r[m][row]['i2t']:.4f}"
        lines.append(f"| {name} | {pair('old_model', 'old_codes')} | "
                     f"{pair('ecmh', 'old_codes')} | {pair('ecmh', 'all_tasks')} | "
                     f"{pair('joint', 'all_tasks')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(WIKI))
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--no-variants", action="store_true", help="skip the 32-bit paper variants")
    ap.add_argument("--out", default="bench/out/ecmh_wiki.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_cross_modal(args.data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = ProtocolConfig(new_classes=NEW_CLASSES,
                          settings=TrainSettings(seed=args.seed, device="cpu"))
    started = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    for bits in args.bits:
        t0 = time.perf_counter()
        results[bits] = run_protocol(data, replace(base, bits=bits))
        (out.parent / f"{out.stem}_{bits}.json").write_text(json.dumps(results[bits], indent=1))
        print(f"{bits} bits done in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    variants: dict[str, dict[str, Any]] = {}
    if not args.no_variants:
        for name, change in VARIANTS.items():
            settings = replace(base.settings, **change)
            variants[name] = run_protocol(data, replace(base, bits=32, settings=settings))
            (out.parent / f"{out.stem}_32_{name}.json").write_text(
                json.dumps(variants[name], indent=1))
            print(f"variant {name} done", file=sys.stderr)
    text = [f"Wiki, new classes {list(NEW_CLASSES)} (royalty, sport, warfare), mAP@all; "
            f"T→I = text queries, I→T = image queries; database codes sign(F + G).", "",
            table(results)]
    if variants:
        text += ["", variant_lines(variants)]
    text += ["", f"total bench time {time.perf_counter() - started:.0f}s, "
             f"torch threads {args.threads}"]
    out.write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
