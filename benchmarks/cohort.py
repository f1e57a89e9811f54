#!/usr/bin/env python
"""Real-cohort benchmark (issue 18): seen vs unseen T-cell states of ../shared/data/immune, several seeds.

For every seed the whole workflow runs from scratch in its own directory (``--work``/seed{N}) on the
full shared data: all four windows (``windows.hg38.bed`` as ``genome.regions``), cell states as cell types.
Each state's deep reference pools donors 1001-1003 (6 libraries); its noisy inputs are donor 1004's
library ``a`` (a real single library, never in the pool) and a subsample of the pool to 20 k fragments in
the regions. The model (light preset, 12 CPU epochs of 48 windows) is trained on
:data:`TRAIN` and applied to every state; the benchmark scores the holdout ``chr21:20-31 Mb``.

Printed (and written with ``--out``): per state, depth and method, the mean ± sd over seeds of the
per-base AUPRC and Pearson r, the AUPRC ratio model / MACS3 bdgpeakcall on the same input (target
>= 1.3x for unseen states), and the seen - unseen gap. Runs already complete are reused, so an
interrupted sweep continues.

    .venv/bin/python benchmarks/cohort.py --seeds 1 2 3 --out benchmarks/COHORT.table.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
IMMUNE = REPO.parent / "shared" / "data" / "immune"
HG38 = REPO.parent / "shared" / "data" / "genomes" / "hg38.chrom.sizes"
#: cell states trained on, and those held out (role test)
TRAIN = ["TCD8naive_U", "TCD8EM_U"]
TEST = ["TeffNaive_U", "TeffNaive_S", "TCD8EM_S"]
POOL_DONORS = (1001, 1002, 1003)
NOISY_DONOR = 1004
TARGET_RATIO = 1.3


def sheet(states: dict[str, str]) -> str:
    """Return the sample sheet: one row per cell state (role train or test), pool as path, one real library noisy."""
    rows = ["sample\tcell_type\tkind\tpath\tnoisy\tpeaks\tbarcodes\trole"]
    for state, role in states.items():
        pool = ";".join(str(IMMUNE / f"{state}_{d}_{r}.fragments.tsv.gz") for d in POOL_DONORS for r in "ab")
        noisy = IMMUNE / f"{state}_{NOISY_DONOR}_a.fragments.tsv.gz"
        rows.append(f"{state}\t{state}\tfragments\t{pool}\t{noisy}\t\t\t{role}")
    return "\n".join(rows) + "\n"


def config(seed: int, epochs: int) -> dict:
    """Return the workflow config of one seed."""
    return {
        "samples": "samples.tsv",
        "genome": {"sizes": str(HG38), "regions": str(IMMUNE / "windows.hg38.bed")},
        "depths": [20000],
        "seed": seed,
        "split": {"val_chroms": ["chr21:13199000-16000000"], "holdout_chroms": ["chr21:20000000-31001000"]},
        "model": {
            "name": "cohort",
            "preset": "light",
            "training": {"epochs": epochs, "batch_size": 4, "lr": 0.001, "windows_per_epoch": 48},
            "infer_chroms": ["chr21"],
            "threads": 2,
        },
        "threads": 2,
    }


def run_seed(work: Path, seed: int, epochs: int, cores: int) -> Path:
    """Run (or reuse) one seed's workflow; return its metrics.tsv."""
    d = work / f"seed{seed}"
    metrics = d / "results/benchmark/cohort/metrics.tsv"
    if metrics.exists():
        print(f"seed {seed}: reusing {metrics}", file=sys.stderr)
        return metrics
    d.mkdir(parents=True, exist_ok=True)
    (d / "samples.tsv").write_text(sheet({**dict.fromkeys(TRAIN, "train"), **dict.fromkeys(TEST, "test")}))
    (d / "config.yaml").write_text(yaml.safe_dump(config(seed, epochs)))
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    cmd = [
        "snakemake",
        str(metrics.relative_to(d)),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(d),
        "--profile",
        str(REPO / "profiles/local"),
    ]
    cmd += ["--cores", str(cores), "--configfile", str(d / "config.yaml")]  # --configfile takes every word after it
    t0 = time.perf_counter()
    with open(d / "snakemake.log", "w") as log:
        res = subprocess.run(cmd, cwd=d, stdout=log, stderr=subprocess.STDOUT, env=env)
    if res.returncode != 0:
        sys.exit(f"seed {seed}: snakemake failed, see {d / 'snakemake.log'}")
    print(f"seed {seed}: workflow {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return metrics


def table(frames: list[pd.DataFrame]) -> str:
    """Markdown table of mean ± sd over seeds, per cell state and depth, and the seen - unseen gap."""
    df = pd.concat(frames, ignore_index=True)
    df = df[(df["region"] == "all") & df["metric"].isin(["auprc", "pearson"])]
    df = df[df["method"].isin(["model", "noisy", "macs3_bdgpeakcall"])]
    df["depth"] = df["depth"].astype(str).map(lambda d: "real library" if d.startswith("given") else f"{d} fragments")
    wide = df.pivot_table(
        index=["seed", "sample", "seen", "depth"], columns=["method", "metric"], values="value", aggfunc="mean"
    )
    rows = []
    for (state, seen, depth), g in wide.groupby(level=["sample", "seen", "depth"]):
        auprc_m, auprc_b = g[("model", "auprc")], g[("macs3_bdgpeakcall", "auprc")]
        ratio = auprc_m / auprc_b
        r_m, r_n = g[("model", "pearson")], g[("noisy", "pearson")]
        rows.append(
            {
                "state": state,
                "seen": seen,
                "depth": depth,
                "n": len(g),
                "auprc_model": _ms(auprc_m),
                "auprc_bdgpeakcall": _ms(auprc_b),
                "ratio": _ms(ratio, 2),
                "ratio_ok": "yes" if ratio.mean() >= TARGET_RATIO else "**no**",
                "r_model": _ms(r_m),
                "r_noisy": _ms(r_n),
                "r_ok": "yes" if r_m.mean() > r_n.mean() else "**no**",
                "_ratio": ratio.mean(),
                "_auprc": auprc_m.mean(),
                "_r": r_m.mean(),
            }
        )
    t = pd.DataFrame(rows).sort_values(["seen", "state", "depth"], ascending=[False, True, True])
    head = (
        "| cell state | seen | noisy input | seeds | AUPRC model | AUPRC MACS3 bdgpeakcall | ratio | >= 1.3x "
        "| Pearson r model | Pearson r noisy | r above noisy |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r.state} | {r.seen} | {r.depth} | {r.n} | {r.auprc_model} | {r.auprc_bdgpeakcall} | {r.ratio} "
        f"| {r.ratio_ok} | {r.r_model} | {r.r_noisy} | {r.r_ok} |\n"
        for r in t.itertuples()
    )
    gap = [
        "\n| noisy input | AUPRC model: seen - unseen | ratio: seen - unseen | Pearson r model: seen - unseen |",
        "|---|---|---|---|",
    ]
    for depth, g in t.groupby("depth"):
        s, u = g[g["seen"] == "yes"], g[g["seen"] == "no"]
        if len(s) and len(u):
            gap.append(
                f"| {depth} | {s['_auprc'].mean() - u['_auprc'].mean():+.3f} | "
                f"{s['_ratio'].mean() - u['_ratio'].mean():+.2f} | {s['_r'].mean() - u['_r'].mean():+.3f} |"
            )
    return head + body + "\n".join(gap) + "\n"


def _ms(x: pd.Series, digits: int = 3) -> str:
    values = list(x.dropna())
    if not values:
        return "NA"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def main() -> None:
    """Run the seeds and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=12, help="training epochs (48 windows each)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "atacdenoise-cohort")
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    frames = []
    for seed in args.seeds:
        m = pd.read_csv(run_seed(args.work, seed, args.epochs, args.cores), sep="\t")
        frames.append(m.assign(seed=seed))
    text = table(frames)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
