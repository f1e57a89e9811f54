"""Accuracy harness: train model variants on the demo's chr1, score them on chr2, several seeds each.

Each variant is a set of training settings laid over a common base (the demo's light model and CPU
schedule). Every (variant, seed) runs the real ``atacdenoise train`` on the datasets the workflow made
(``results/dataset/HSC/*``, so run ``make demo`` first), picks its best epoch on the validation region
(chr2:3-5 Mb), then runs the real ``atacdenoise infer`` on the real 5M sample's chr2 and
``atacdenoise metrics`` on the holdout (chr2:5-10 Mb) against the 80M clean track and its published
MACS2 peaks, exactly as the benchmark stage does. Results are cached per (variant, seed) under
``--work``, so an interrupted sweep continues where it stopped. The table (mean ± sd over seeds) is
printed as Markdown and, with ``--out``, written to a file.

    python benchmarks/accuracy.py --seeds 1 2 3 --jobs 2 --out benchmarks/ACCURACY.table.md
    python benchmarks/accuracy.py --variants reference default --seeds 1

Variants are defined in :data:`VARIANTS`; add one line to try another change.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("accuracy")

#: settings shared by every variant: the demo's light model and CPU schedule (config/config.yaml has 12 epochs)
BASE = {"preset": "light", "batch_size": 4, "lr": 1e-3, "windows_per_epoch": 48, "epochs": 6}
#: the reference recipe (DESIGN 2.5-2.6): tracks as stored, peak head at p = 0.5, batch Pearson, threshold 0.5
REFERENCE = {"input_transform": {"kind": "none"}, "prior_init": False, "threshold": 0.5}
#: the shipped defaults (train.TRAIN_DEFAULTS): depth normalisation, head at the label base rate,
#: threshold from validation
DEFAULT: dict = {"input_transform": {"kind": "depth"}, "prior_init": True, "threshold": "val_f1"}
#: one change at a time against the default (and the reference itself)
VARIANTS: dict[str, dict] = {
    "reference": REFERENCE,
    "default": DEFAULT,
    "+window-pearson": {**DEFAULT, "pearson": "window"},
    "+pos-weight-auto": {**DEFAULT, "pos_weight": "auto"},
    "+cls-sees-features": {**DEFAULT, "cls_sees_features": True},
    "+cosine-lr": {**DEFAULT, "lr_schedule": "cosine"},
    "+input-skip": {**DEFAULT, "input_skip": True},
    "no-flip": {**DEFAULT, "flip": False},
    "single-depth": {**DEFAULT, "_datasets": ["given.rep1"]},  # train on the real 5M pair only
    "default-12ep": {**DEFAULT, "epochs": 12},  # the demo's shipped schedule
    "default-24ep": {**DEFAULT, "epochs": 24},
    "standard-size": {**DEFAULT, "preset": "standard"},  # the reference shape: ~24x the compute, for a GPU machine
}
#: issue 23: larger batches (a GPU's) with the learning rate scaled from the demo's batch 4 (train.base_lr).
#: Every one sees the same windows (128 per epoch, 6 epochs), so a batch of 32 takes 8x fewer steps than one of 4.
SCALING_EPOCH = {**DEFAULT, "windows_per_epoch": 128}
BATCH_VARIANTS: dict[str, dict] = {
    "batch4": SCALING_EPOCH,
    "batch16-same-lr": {**SCALING_EPOCH, "batch_size": 16},
    **{
        f"batch{b}-{rule}": {**SCALING_EPOCH, "batch_size": b, "lr_batch": 4, "lr_scaling": rule}
        for b in (16, 32)
        for rule in ("sqrt", "linear")
    },
}
VARIANTS.update(BATCH_VARIANTS)
#: run unless --variants says otherwise (standard-size needs a GPU machine to finish in reasonable time; the batch
#: variants are their own sweep: --variants batch4 batch16-same-lr ...)
DEFAULT_VARIANTS = [v for v in VARIANTS if v != "standard-size" and v not in BATCH_VARIANTS]
DATASET_DIR = "results/dataset/HSC"
DATASETS = ["given.rep1", "15000.rep1", "60000.rep1"]
SIZES = "resources/demo/hg19_first10mb.chr1_chr2.sizes"
CLEAN = "results/coverage/HSC/full.rep1.bw"
NOISY = "results/coverage/HSC/given.rep1.bw"
LABELS = "resources/demo/HSC_80M.macs2_peaks.chr1_chr2.bed"
BASELINES = [
    f"macs3_{k}=results/peaks/HSC/given.rep1.{k}.narrowPeak,results/peaks/HSC/given.rep1.{k}.pval.bw"
    for k in ("bdgpeakcall", "callpeak")
]
NOISY_RE = re.compile(r"noisy input alone: Pearson ([0-9.]+), AUROC ([0-9.]+), AUPRC ([0-9.]+)")


def _run(cmd: list[str], what: str) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise SystemExit(f"{what} failed:\n{res.stderr[-3000:]}")
    return res.stderr


def run_variant(name: str, seed: int, work: Path, threads: int, val: str, holdout: str) -> dict:
    """Train, denoise and score one (variant, seed); cached in ``work/<name>.seed<seed>/result.json``."""
    out = work / f"{name}.seed{seed}"
    cached = out / "result.json"
    if cached.exists():
        return json.loads(cached.read_text())
    spec = dict(VARIANTS[name])
    datasets = spec.pop("_datasets", DATASETS)
    settings = {**BASE, **spec, "seed": seed}
    py = [sys.executable, "-m", "atacdenoise.cli"]
    log.info("%s seed %d: training %s", name, seed, json.dumps(settings))
    err = _run(
        [
            *py,
            "train",
            "--datasets",
            *[f"{DATASET_DIR}/{d}" for d in datasets],
            "--sizes",
            SIZES,
            "--val",
            val,
            "--holdout",
            holdout,
            "--settings",
            json.dumps(settings),
            "--out-dir",
            str(out),
            "--threads",
            str(threads),
        ],
        f"{name} seed {seed} training",
    )
    hist = pd.read_csv(out / "history.tsv", sep="\t")
    best = hist.loc[hist["val_auprc"].idxmax()]
    noisy = NOISY_RE.search(err)
    chrom = holdout.split(":")[0]
    _run(
        [
            *py,
            "infer",
            "--model",
            str(out / "model.pt"),
            "--input",
            NOISY,
            "--sizes",
            SIZES,
            "--chroms",
            chrom,
            "--threads",
            str(threads),
            "--out-prefix",
            str(out / "given"),
        ],
        f"{name} seed {seed} inference",
    )
    _run(
        [
            *py,
            "metrics",
            "--clean",
            CLEAN,
            "--labels",
            LABELS,
            "--noisy",
            NOISY,
            "--denoised-prefix",
            str(out / "given"),
            *[a for b in BASELINES for a in ("--baseline", b)],
            "--sizes",
            SIZES,
            "--regions",
            holdout,
            "--model",
            name,
            "--sample",
            "HSC",
            "--depth",
            "given",
            "--rep",
            "1",
            "--out",
            str(out / "metrics.tsv"),
        ],
        f"{name} seed {seed} metrics",
    )
    m = pd.read_csv(out / "metrics.tsv", sep="\t")
    m = m[m["region"] == "all"].set_index(["method", "metric"])["value"]
    import torch

    meta = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    row = {
        "variant": name,
        "seed": seed,
        "best_epoch": int(best["epoch"]),
        "val_pearson": float(best["val_pearson"]),
        "val_auprc": float(best["val_auprc"]),
        "threshold": float(meta["threshold"]),
        "seconds": float(hist["seconds"].sum()),
        "pearson": float(m["model", "pearson"]),
        "auprc": float(m["model", "auprc"]),
        "f1": float(m["model", "f1"]),
        "f1_at_0.5": float(m["model_t0.5", "f1"]),
        "noisy_pearson": float(m["noisy", "pearson"]),
        "noisy_auprc": float(m["noisy", "auprc"]),
        "bdgpeakcall_auprc": float(m["macs3_bdgpeakcall", "auprc"]),
        "bdgpeakcall_f1": float(m["macs3_bdgpeakcall", "f1"]),
        "callpeak_f1": float(m["macs3_callpeak", "f1"]),
        "val_noisy_pearson": float(noisy.group(1)) if noisy else math.nan,
    }
    cached.write_text(json.dumps(row, indent=1) + "\n")
    log.info(
        "%s seed %d: holdout Pearson %.4f, AUPRC %.4f, F1 %.4f (cut %.3f) / %.4f (0.5)",
        name,
        seed,
        row["pearson"],
        row["auprc"],
        row["f1"],
        row["threshold"],
        row["f1_at_0.5"],
    )
    return row


def table(rows: list[dict]) -> str:
    """Markdown: one line per variant, mean ± sd over seeds, then the input and MACS3 figures."""
    df = pd.DataFrame(rows)
    head = (
        "| variant | seeds | holdout Pearson | holdout AUPRC | F1 (cut from validation) | F1 (cut 0.5) | cut | "
        "val AUPRC (best epoch) | best epoch | train min |"
    )
    lines = [head, "|---" * (head.count("|") - 1) + "|"]

    def ms(x: pd.Series, digits: int = 4) -> str:
        return f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f}" if len(x) > 1 else f"{x.iloc[0]:.{digits}f}"

    for name, g in df.groupby("variant", sort=False):
        lines.append(
            f"| {name} | {len(g)} | {ms(g.pearson)} | {ms(g.auprc)} | {ms(g.f1)} | {ms(g['f1_at_0.5'])} | "
            f"{ms(g.threshold, 2)} | {ms(g.val_auprc)} | {'/'.join(str(e) for e in g.best_epoch)} | "
            f"{statistics.median(g.seconds) / 60:.1f} |"
        )
    r = df.iloc[0]
    lines += [
        "",
        f"Same holdout, same input: noisy 5M coverage Pearson {r.noisy_pearson:.4f}, AUPRC {r.noisy_auprc:.4f}; "
        f"MACS3 bdgpeakcall AUPRC {r.bdgpeakcall_auprc:.4f}, F1 {r.bdgpeakcall_f1:.4f}; "
        f"MACS3 callpeak F1 {r.callpeak_f1:.4f}.",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--variants",
        nargs="+",
        default=DEFAULT_VARIANTS,
        choices=list(VARIANTS),
        help="default: all but standard-size (the reference shape; run it on a GPU machine)",
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument(
        "--work", type=Path, default=Path("/tmp/atacdenoise-accuracy"), help="run directories and cached results"
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time")
    p.add_argument("--val", default="chr2:3000000-5000000")
    p.add_argument("--holdout", default="chr2:5000000-10000000")
    p.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    missing = [
        f for f in [*(f"{DATASET_DIR}/{d}/meta.json" for d in DATASETS), CLEAN, NOISY] if not (REPO / f).exists()
    ]
    if missing:
        raise SystemExit(f"{missing} are missing: run `make demo` first (the workflow makes them)")
    args.work.mkdir(parents=True, exist_ok=True)
    jobs = [(v, s) for v in args.variants for s in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda j: run_variant(j[0], j[1], args.work, args.threads, args.val, args.holdout), jobs))
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
