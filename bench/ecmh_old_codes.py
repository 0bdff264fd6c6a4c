"""ECMH's old-code retrieval per seed (issue 14 item 5, session 8): where the seed-to-seed
spread of image queries' old codes comes from, and candidate changes of the extension.

Run:  python bench/ecmh_old_codes.py --validation 0.2 --bits 16 32 --seeds 0 1 2 3 4 \
          --variants default ext+100 ext+200 ensemble

Per (bits, seed) the old model is trained once (as ``hashstream ecmh-eval``: Wiki, new classes
7–9) and extended by each variant; every variant is scored against that one old model, so
the columns of a row differ by the extension alone. Variants:

- ``default``: the current defaults;
- ``ext+K``: the defaults with stage 1–3 seeded by seed + K (the old model, split and queries
  unchanged): the extension's own seed-to-seed spread;
- ``NAME@K``: variant NAME with the extension seeded by seed + K;
- ``ensemble``: the mean of the outputs (F, G) of ``default`` and ``ext+100`` (two extensions);
- ``imgdistN``: L_d of INet's pass weighted N times the default (``image_distill_factor``);
- ``avgK``: stage 3's weights averaged over its last K epochs (``extend_average_epochs``).

``imgdistN`` and ``avgK`` need the two settings, which are not in the library (session 8
measured them and adopted neither): ``git apply bench/ecmh_old_codes_candidates.patch``
first, ``git apply -R`` after.

Diagnostics for the old-class queries (paper §3.4's old-codes row): the share of their image
(text) code bits that differ between the old and the extended model, the old-codes mAP of
I→T / T→I relative to the old model, the same for the tie-aware mAP, and the std of the
relative I→T value under a paired bootstrap of the old-class queries (2000 resamples).
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
from ecmh_table import NEW_CLASSES, WIKI

from hashstream.eval.ecmh import (
    Codes,
    CrossModalData,
    ProtocolConfig,
    _table_rows,
    encode_items,
    extension_rows,
    load_cross_modal,
    train_old_model,
)
from hashstream.solver.class_lists import ClassLists
from hashstream.solver.ecmh.networks import (
    ECMHModel,
    image_representations,
    image_tensor,
    text_representations,
    text_tensor,
)
from hashstream.solver.ecmh.settings import TrainSettings
from hashstream.solver.metrics import evaluate

Array = np.ndarray[Any, Any]


def outputs(model: ECMHModel, data: CrossModalData, idx: Array) -> tuple[Array, Array]:
    """F and G of items ``idx`` (before the sign)."""
    f = image_representations(model, image_tensor(data.image[idx], model.device))
    g = text_representations(model, text_tensor(model.config, data.text[idx], model.device))
    return f.detach().cpu().numpy(), g.detach().cpu().numpy()


def settings_for(name: str, seed: int) -> TrainSettings:
    if "@" in name:  # a variant with its extension seeded by seed + K
        name, offset = name.split("@")
        return replace(settings_for(name, seed), seed=seed + int(offset))
    base = TrainSettings(seed=seed, device="cpu")
    if name == "default":
        return base
    if name.startswith("ext+"):
        return replace(base, seed=seed + int(name[4:]))
    if (name.startswith(("imgdist", "avg"))
            and "extend_average_epochs" not in TrainSettings.__dataclass_fields__):
        raise SystemExit(f"variant {name!r} needs the candidate settings: git apply "
                         "bench/ecmh_old_codes_candidates.patch")
    if name.startswith("imgdist"):
        return replace(base, image_distill_factor=float(name[7:]))
    if name.startswith("avg"):
        return replace(base, extend_average_epochs=int(name[3:]))
    raise ValueError(f"unknown variant {name!r}")


def one_config(data: CrossModalData, bits: int, seed: int, validation: float | None,
               variants: list[str], boot: int) -> dict[str, Any]:
    settings = TrainSettings(seed=seed, device="cpu")
    config = ProtocolConfig(bits=bits, new_classes=NEW_CLASSES, settings=settings,
                            validation=validation, log_every=10**6)
    t0 = time.perf_counter()
    old = train_old_model(data, config)
    lab, sp = data.labels, old.split
    q = sp.queries
    q_new = sp.is_new[q]
    oq = q[~q_new]
    old_q = encode_items(old.core.model, data, oq)
    db_lists = ClassLists.from_dense(lab[old.old_train])
    oq_lists = ClassLists.from_dense(lab[oq])

    def per_query(c: Codes) -> dict[str, Any]:
        i2t = evaluate(c.image, oq_lists, old.old_db.unified, db_lists)
        t2i = evaluate(c.text, oq_lists, old.old_db.unified, db_lists)
        return {"i2t": i2t.average_precision, "t2i": t2i.average_precision,
                "i2t_tie": i2t.average_precision_tie_aware,
                "t2i_tie": t2i.average_precision_tie_aware}

    ref = per_query(old_q)
    rng = np.random.default_rng([seed, bits, 77])
    samples = rng.integers(0, oq.size, size=(boot, oq.size))
    out: dict[str, Any] = {
        "old_model": {k: float(v.mean()) for k, v in ref.items()},
        "old_model_boot_rel_std_i2t": float(
            np.std(ref["i2t"][samples].mean(axis=1) / ref["i2t"].mean())),
        "n_old_queries": int(oq.size), "old_seconds": time.perf_counter() - t0,
        "variants": {}}
    outs: dict[str, tuple[Array, Array, Array, Array]] = {}
    for name in variants:
        t1 = time.perf_counter()
        if name == "ensemble":
            parts = [outs[k] for k in ("default", "ext+100")]
            fq, gq, fn, gn = (np.mean([p[i] for p in parts], axis=0) for i in range(4))
        else:
            _, ext = extension_rows(data, config, old, settings_for(name, seed))
            fq, gq = outputs(ext.model, data, q)
            fn, gn = outputs(ext.model, data, old.new_train)
        outs[name] = (fq, gq, fn, gn)
        qc = Codes.of(fq, gq)
        db = Codes.concat([old.old_db, Codes.of(fn, gn)])
        rows = _table_rows(qc, lab[q], q_new, old.old_db, lab[old.old_train], db,
                           lab[old.database], "unified")
        ext_oq = qc.take(~q_new)
        pq = per_query(ext_oq)
        rel = {k: float(pq[k].mean() / ref[k].mean() - 1) for k in pq}
        boot_rel = pq["i2t"][samples].mean(axis=1) / ref["i2t"][samples].mean(axis=1) - 1
        out["variants"][name] = {
            "rows": rows, "rel": rel,
            "boot_rel_std_i2t": float(boot_rel.std()),
            "flip_image": float((ext_oq.image != old_q.image).mean()),
            "flip_text": float((ext_oq.text != old_q.text).mean()),
            "seconds": time.perf_counter() - t1}
    return out


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def report(results: dict[str, Any], variants: list[str]) -> str:
    lines = ["| bits | seed | old model I→T / T→I | boot std of old I→T | "
             + " | ".join(f"{v}: old codes T→I / I→T (tie-aware I→T); flips img / txt; "
                          f"boot std; all" for v in variants) + " |",
             "|---|---|---|---|" + "---|" * len(variants)]
    for key, r in results.items():
        bits, seed = key.split("_")
        cells = [bits, seed, f"{r['old_model']['i2t']:.4f} / {r['old_model']['t2i']:.4f}",
                 f"{r['old_model_boot_rel_std_i2t']:.1%}"]
        for v in variants:
            x = r["variants"][v]
            a = x["rows"]["all_tasks"]
            cells.append(f"{_pct(x['rel']['t2i'])} / {_pct(x['rel']['i2t'])} "
                         f"({_pct(x['rel']['i2t_tie'])}); {x['flip_image']:.1%} / "
                         f"{x['flip_text']:.1%}; {x['boot_rel_std_i2t']:.1%}; "
                         f"{(a['t2i'] + a['i2t']) / 2:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| bits | variant | old codes T→I mean ± std (worst) | I→T mean ± std (worst) "
              "| I→T tie-aware mean ± std | flips img / txt | all tasks mean ± std |",
              "|---|---|---|---|---|---|---|"]
    for bits in sorted({k.split("_")[0] for k in results}, key=int):
        rs = [r for k, r in results.items() if k.split("_")[0] == bits]
        for v in variants:
            xs = [r["variants"][v] for r in rs]
            t2i = np.array([x["rel"]["t2i"] for x in xs])
            i2t = np.array([x["rel"]["i2t"] for x in xs])
            tie = np.array([x["rel"]["i2t_tie"] for x in xs])
            al = np.array([(x["rows"]["all_tasks"]["t2i"] + x["rows"]["all_tasks"]["i2t"]) / 2
                           for x in xs])
            fi = np.mean([x["flip_image"] for x in xs])
            ft = np.mean([x["flip_text"] for x in xs])
            lines.append(
                f"| {bits} | {v} | {_pct(t2i.mean())} ± {t2i.std(ddof=1):.1%} "
                f"({_pct(t2i[np.argmax(np.abs(t2i))])}) | {_pct(i2t.mean())} ± "
                f"{i2t.std(ddof=1):.1%} ({_pct(i2t[np.argmax(np.abs(i2t))])}) | "
                f"{_pct(tie.mean())} ± {tie.std(ddof=1):.1%} | {fi:.1%} / {ft:.1%} | "
                f"{al.mean():.4f} ± {al.std(ddof=1):.4f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(WIKI))
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--validation", type=float, default=None)
    ap.add_argument("--variants", nargs="+", default=["default", "ext+100", "ext+200",
                                                      "ensemble"])
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--out", default="bench/out/ecmh_old_codes.md")
    args = ap.parse_args()
    for i, v in enumerate(args.variants):  # refuse a bad list before any training
        if v == "ensemble":
            if not {"default", "ext+100"} <= set(args.variants[:i]):
                raise SystemExit("'ensemble' needs 'default' and 'ext+100' before it")
        else:
            settings_for(v, 0)
    torch.set_num_threads(1)
    data = load_cross_modal(args.data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for bits in args.bits:
        for seed in args.seeds:
            r = one_config(data, bits, seed, args.validation, args.variants, args.boot)
            results[f"{bits}_{seed}"] = r
            print(f"{bits} bits seed {seed}: " + ", ".join(
                f"{v} {r['variants'][v]['rel']['i2t']:+.1%}" for v in args.variants),
                file=sys.stderr, flush=True)
            (out.parent / f"{out.stem}.json").write_text(json.dumps(results, indent=1))
    split = ("validation: 20 % of the training items held out as queries" if args.validation
             else "evaluation queries (test_idx)")
    text = [f"Wiki, new classes {list(NEW_CLASSES)}, {split}; old codes relative to each "
            "config's one old model; torch threads 1", "", report(results, args.variants), "",
            f"total {time.perf_counter() - started:.0f}s"]
    out.write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
