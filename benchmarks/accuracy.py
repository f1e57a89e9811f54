"""Accuracy harness: train model variants on the demo's chr1 and score them on chr2, several seeds each.

Each variant is a set of training settings laid over a common base (the demo's light model and short
schedule); every (variant, seed) runs the real ``atacdenoise train`` on the datasets the workflow made
(``results/dataset/HSC/*``, so run ``make demo`` first) and is scored on the validation region with the
best epoch's figures from ``history.tsv``, next to the noisy input's own figures from the training log.
The table (mean ± sd over seeds) is printed as Markdown and, with ``--out``, written to a file.

    python benchmarks/accuracy.py --seeds 1 2 3 --out benchmarks/ACCURACY.table.md
    python benchmarks/accuracy.py --variants reference depth+prior --seeds 1

Variants are defined in :data:`VARIANTS`; add one line to try another change.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("accuracy")

#: settings shared by every variant: the demo's light model and short CPU schedule
BASE = {"preset": "light", "batch_size": 4, "lr": 1e-3, "windows_per_epoch": 48, "epochs": 6}
#: one change at a time against the reference recipe (no depth normalisation, head at p = 0.5, batch Pearson)
VARIANTS: dict[str, dict] = {
    "reference": {"input_transform": {"kind": "none"}, "prior_init": False},
    "window-pearson": {"input_transform": {"kind": "none"}, "prior_init": False, "pearson": "window"},
    "depth": {"input_transform": {"kind": "depth"}, "prior_init": False},
    "depth+prior": {"input_transform": {"kind": "depth"}, "prior_init": True},  # the shipped default
    "depth+prior+skip": {"input_transform": {"kind": "depth"}, "prior_init": True, "input_skip": True},
    "depth+prior+window-pearson-12ep": {"input_transform": {"kind": "depth"}, "prior_init": True, "pearson": "window", "epochs": 12},
}
DATASETS = ["results/dataset/HSC/given.rep1", "results/dataset/HSC/15000.rep1", "results/dataset/HSC/60000.rep1"]
NOISY_RE = re.compile(r"noisy input alone: Pearson ([0-9.]+), AUROC ([0-9.]+), AUPRC ([0-9.]+)")


def run_variant(name: str, seed: int, work: Path, threads: int, val: str, holdout: str) -> dict:
    """Train one (variant, seed) and return its best-epoch validation figures and the noisy baseline."""
    out = work / f"{name}.seed{seed}"
    settings = {**BASE, **VARIANTS[name], "seed": seed}
    cmd = [sys.executable, "-m", "atacdenoise.cli", "train", "--datasets", *[str(REPO / d) for d in DATASETS],
           "--sizes", str(REPO / "resources/demo/hg19_first10mb.chr1_chr2.sizes"), "--val", val, "--holdout", holdout,
           "--settings", json.dumps(settings), "--out-dir", str(out), "--threads", str(threads)]  # fmt: skip
    log.info("%s seed %d: %s", name, seed, json.dumps(settings))
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{name} seed {seed} failed:\n{res.stderr[-3000:]}")
    hist = pd.read_csv(out / "history.tsv", sep="\t")
    best = hist.loc[hist["val_auprc"].idxmax()]
    noisy = NOISY_RE.search(res.stderr)
    return {
        "variant": name, "seed": seed, "best_epoch": int(best["epoch"]), "val_pearson": float(best["val_pearson"]),
        "val_auroc": float(best["val_auroc"]), "val_auprc": float(best["val_auprc"]),
        "max_val_pearson": float(hist["val_pearson"].max()), "seconds": float(hist["seconds"].sum()),
        "noisy_pearson": float(noisy.group(1)) if noisy else float("nan"),
        "noisy_auprc": float(noisy.group(3)) if noisy else float("nan"),
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    """Markdown: one line per variant, mean ± sd over seeds."""
    df = pd.DataFrame(rows)
    lines = ["| variant | seeds | val Pearson (best epoch) | max val Pearson | val AUROC | val AUPRC | noisy Pearson / AUPRC | train s |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip

    def ms(x: pd.Series) -> str:
        return f"{x.mean():.4f} ± {x.std(ddof=1):.4f}" if len(x) > 1 else f"{x.iloc[0]:.4f}"

    for name, g in df.groupby("variant", sort=False):
        lines.append(f"| {name} | {len(g)} | {ms(g.val_pearson)} | {ms(g.max_val_pearson)} | {ms(g.val_auroc)} | {ms(g.val_auprc)} | "
                     f"{g.noisy_pearson.mean():.4f} / {g.noisy_auprc.mean():.4f} | {statistics.median(g.seconds):.0f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--work", type=Path, default=Path("/tmp/atacdenoise-accuracy"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--val", default="chr2:3000000-5000000")
    p.add_argument("--holdout", default="chr2:5000000-10000000")
    p.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    missing = [d for d in DATASETS if not (REPO / d / "meta.json").exists()]
    if missing:
        raise SystemExit(f"datasets {missing} are missing: run `make demo` first (they are made by the workflow)")
    rows = [run_variant(v, s, args.work, args.threads, args.val, args.holdout) for v in args.variants for s in args.seeds]
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
