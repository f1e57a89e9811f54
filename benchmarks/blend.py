r"""Never worse than the input (issue 20.1): the demo's model with and without the fitted blend, every depth, 3 seeds.

For each seed the real ``atacdenoise train`` runs with the demo's shipped settings (``config/config.yaml``:
light preset, 12 epochs of 48 windows, batch 4, lr 1e-3; the defaults fit the blend) on the datasets the
workflow made (``results/dataset/HSC/*``: run the demo's data stages first, see below). The model file is
then copied without its ``blend`` entry (the network alone: the same weights, as the blend is fitted after
training), and both are applied with the real ``atacdenoise infer`` to each noisy track on chr2 and scored
by ``atacdenoise metrics`` on the holdout (chr2:5-10 Mb) against the 80M clean track and its published
peaks. Printed: per depth, mean ± sd over seeds of the Pearson r and AUPRC of the network alone, the
blend and the noisy input, and the weight of the network inference chose. Runs are cached under ``--work``.

    .venv/bin/snakemake results/dataset/HSC/given.rep1 results/dataset/HSC/15000.rep1 \\
        results/dataset/HSC/60000.rep1 --profile profiles/local --cores 2 --configfile config/config.yaml
    .venv/bin/python benchmarks/blend.py --seeds 1 2 3 --out benchmarks/BLEND.table.md

``--preset standard`` trains the reference shape on the same schedule instead (issue 20.2: ~24x the light
model's compute; ``--epochs`` changes the schedule); give it its own ``--work``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("blend")

#: the demo's shipped training settings (config/config.yaml, model.training) on the light preset
SETTINGS = {"preset": "light", "epochs": 12, "batch_size": 4, "lr": 1e-3, "windows_per_epoch": 48}
DATASETS = ["given.rep1", "15000.rep1", "60000.rep1"]
#: depth label -> noisy coverage track
DEPTHS = {"15000": "15000.rep1", "given (real 5M)": "given.rep1", "60000": "60000.rep1"}
SIZES = "resources/demo/hg19_first10mb.chr1_chr2.sizes"
CLEAN = "results/coverage/HSC/full.rep1.bw"
LABELS = "resources/demo/HSC_80M.macs2_peaks.chr1_chr2.bed"
VAL, HOLDOUT = "chr2:3000000-5000000", "chr2:5000000-10000000"


def _run(cmd: list[str], what: str) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise SystemExit(f"{what} failed:\n{res.stderr[-3000:]}")
    return res.stderr


def _strip_blend(model: Path, out: Path) -> None:
    import torch

    ckpt = torch.load(model, map_location="cpu", weights_only=True)
    ckpt.pop("blend", None)
    torch.save(ckpt, out)


def run_seed(seed: int, work: Path, threads: int, overrides: dict | None = None) -> list[dict]:
    """Train one seed, denoise every depth with and without the blend, score the holdout (cached)."""
    out = work / f"seed{seed}"
    cached = out / "result.json"
    if cached.exists():
        return json.loads(cached.read_text())
    py = [sys.executable, "-m", "atacdenoise.cli"]
    datasets = [f"results/dataset/HSC/{d}" for d in DATASETS]
    log.info("seed %d: training", seed)
    settings = json.dumps({**SETTINGS, **(overrides or {}), "seed": seed})
    train = ["train", "--datasets", *datasets, "--sizes", SIZES, "--val", VAL, "--holdout", HOLDOUT]
    _run(
        [*py, *train, "--settings", settings, "--out-dir", str(out), "--threads", str(threads)], f"seed {seed} training"
    )
    _strip_blend(out / "model.pt", out / "network.pt")
    rows = []
    for depth, name in DEPTHS.items():
        noisy = f"results/coverage/HSC/{name}.bw"
        for kind, model in (("blend", out / "model.pt"), ("network", out / "network.pt")):
            prefix = out / f"{kind}.{name}"
            infer = ["infer", "--model", str(model), "--input", noisy, "--sizes", SIZES, "--chroms", "chr2"]
            _run([*py, *infer, "--threads", str(threads), "--out-prefix", str(prefix)], f"seed {seed} {depth} infer")
            metrics = ["metrics", "--clean", CLEAN, "--labels", LABELS, "--noisy", noisy, "--sizes", SIZES]
            metrics += ["--denoised-prefix", str(prefix), "--regions", HOLDOUT, "--model", kind, "--sample", "HSC"]
            metrics += ["--depth", name.split(".")[0], "--rep", "1", "--out", f"{prefix}.metrics.tsv"]
            _run([*py, *metrics], f"seed {seed} {kind} {depth} metrics")
            m = pd.read_csv(f"{prefix}.metrics.tsv", sep="\t")
            m = m[m["region"] == "all"].set_index(["method", "metric"])["value"]
            side = json.loads(Path(f"{prefix}.track.bw.json").read_text())
            rows.append(
                {
                    "seed": seed,
                    "depth": depth,
                    "kind": kind,
                    "pearson": float(m["model", "pearson"]),
                    "auprc": float(m["model", "auprc"]),
                    "f1": float(m["model", "f1"]),
                    "noisy_pearson": float(m["noisy", "pearson"]),
                    "noisy_auprc": float(m["noisy", "auprc"]),
                    "weight": float(side.get("blend_weight", 1.0)),
                }
            )
            log.info("seed %d %s %s: Pearson %.4f (noisy %.4f)", seed, depth, kind, rows[-1]["pearson"],
                     rows[-1]["noisy_pearson"])  # fmt: skip
    cached.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per depth, mean ± sd over seeds of the network alone, the blend and the noisy input."""
    df = pd.DataFrame(rows)

    def ms(x: pd.Series, digits: int = 4) -> str:
        return f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f}" if len(x) > 1 else f"{x.iloc[0]:.{digits}f}"

    head = (
        "| depth | seeds | Pearson: network | Pearson: blend | Pearson: noisy input | weight of the network | "
        "AUPRC: model | AUPRC: noisy input | F1 | blend - input (Pearson) |"
    )
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for depth in DEPTHS:
        net = df[(df.depth == depth) & (df.kind == "network")]
        bl = df[(df.depth == depth) & (df.kind == "blend")]
        diff = bl.pearson.to_numpy() - bl.noisy_pearson.to_numpy()
        lines.append(
            f"| {depth} | {len(bl)} | {ms(net.pearson)} | {ms(bl.pearson)} | {ms(bl.noisy_pearson)} | "
            f"{ms(bl.weight, 2)} | {ms(bl.auprc)} | {ms(bl.noisy_auprc)} | {ms(bl.f1)} | "
            f"{statistics.mean(diff):+.4f} (min {min(diff):+.4f}) |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--work", type=Path, default=Path("/tmp/atacdenoise-blend"), help="runs and cached results")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per run")
    p.add_argument("--out", type=Path, help="also write the Markdown table here")
    p.add_argument(
        "--preset", default=SETTINGS["preset"], help="model preset (light: the demo's; standard: the reference shape)"
    )
    p.add_argument("--epochs", type=int, default=SETTINGS["epochs"], help="training epochs (the demo's: 12)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    missing = [f for f in [*(f"results/dataset/HSC/{d}/meta.json" for d in DATASETS), CLEAN] if not (REPO / f).exists()]
    if missing:
        raise SystemExit(f"{missing} are missing: run the demo's data stages first (see the module docstring)")
    args.work.mkdir(parents=True, exist_ok=True)
    overrides = {"preset": args.preset, "epochs": args.epochs}
    rows = [r for seed in args.seeds for r in run_seed(seed, args.work, args.threads, overrides)]
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
