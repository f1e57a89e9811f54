#!/usr/bin/env python
"""Training data on disk (issue 19.1): bytes per base and training windows per second, this tree vs a baseline.

The baseline is another git revision of this repository (default ``1644f00``, the last one that stored
every pair as float32 copies of noisy, clean, labels and mask), checked out into a temporary worktree.
Both sides make the demo's datasets from the same coverage bigWigs (the real HSC 80M deep sample, the
real 5M library and a 60,000-fragment subsample of the deep one, made once by this tree and cached) with
their own ``atacdenoise`` commands, then read the same training windows (reference shape: 50,000 +
2 x 5,000 bases, batch 16, drawn with one seed over both pairs) through their own ``WindowSet`` and the
training loader (``train._loader``) with 0 and 2 worker processes; each measurement is a fresh process.

    .venv/bin/python benchmarks/dataset.py [--baseline REV] [--windows N] [--runs 3]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

REPO = Path(__file__).resolve().parents[1]
HSC = REPO.parent / "shared" / "data" / "hsc"
SIZES = HSC / "hg19_first10mb.chr1_chr2.sizes"
PAIRS = ("5M", "60000")

#: reads the windows; {tree} {datasets} {windows} {workers} are filled in; prints one JSON line
READ_WINDOWS = """
import json, time
import numpy as np, torch
torch.set_num_threads(1)
from atacdenoise.model.dataset import open_dataset, start_table, sample_windows, WindowSet
from atacdenoise.model.train import _loader
import atacdenoise.model.dataset as D
decode = getattr(D, "decode_batch", lambda b: b)  # windows come as stored since issue 23: decoded as training does
pairs = [open_dataset(p) for p in {datasets!r}]
table = start_table(pairs, 50_000, 5_000, [])
windows = sample_windows(table, {windows}, 50_000, np.random.default_rng(7))
loader = _loader(WindowSet(pairs, windows, 50_000, 5_000), 16, {workers}, torch.device("cpu"))
t0 = time.perf_counter()
n = total = 0
for batch in loader:
    batch = decode(batch)
    n += batch["noisy"].shape[0]
    total += float(batch["noisy"].sum() + batch["clean"].sum() + batch["labels"].sum() + batch["mask"].sum())
seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "windows": n, "checksum": total}}))
"""


def make_inputs(cache: Path) -> dict[str, Path]:
    """Coverage bigWigs of the demo (deep, real 5M, 60,000-fragment subsample) and the labels, made by this tree."""
    cache.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).parent / "atacdenoise")
    bams = {"full": HSC / "HSC_80M.chr1_chr2.bam", "5M": HSC / "HSC_5M.chr1_chr2.bam", "60000": cache / "60000.bam"}
    if not bams["60000"].exists():
        args = ["subsample", "--input", str(bams["full"]), "--fragments", "60000", "--seed", "1", "--sizes", str(SIZES)]
        subprocess.run([exe, *args, "--out", str(bams["60000"])], check=True)
    out = {}
    for name, bam in bams.items():
        out[name] = cache / f"{name}.bw"
        if not out[name].exists():
            subprocess.run(
                [exe, "coverage", "--input", str(bam), "--kind", "bam", "--sizes", str(SIZES), "--out", str(out[name])],
                check=True,
            )
    out["labels"] = HSC / "HSC_80M.macs2_peaks.chr1_chr2.bed"
    return out


def make_datasets(tree: Path, work: Path, inputs: dict[str, Path], new_layout: bool) -> tuple[list[Path], dict]:
    """Make the two pairs with ``tree``'s own commands; return the pair folders and the bytes written."""
    env = {**os.environ, "PYTHONPATH": str(tree / "workflow")}
    cmd = [sys.executable, "-m", "atacdenoise.cli"]
    sizes = ["--sizes", str(SIZES)]
    pairs, written = [], {}
    if new_layout:
        clean = work / "HSC" / "clean"
        args = ["dataset-clean", "--clean", str(inputs["full"]), "--labels", str(inputs["labels"]), *sizes]
        subprocess.run([*cmd, *args, "--sample", "HSC", "--out", str(clean)], env=env, check=True)
        written["clean part"] = du(clean)
    for name in PAIRS:
        pair = work / "HSC" / f"{name}.rep1"
        if new_layout:
            args = ["dataset", "--noisy", str(inputs[name]), "--clean-dataset", str(work / "HSC" / "clean"), *sizes]
        else:
            args = ["dataset", "--noisy", str(inputs[name]), "--clean", str(inputs["full"]), "--sample", "HSC"]
            args += ["--labels", str(inputs["labels"]), *sizes]
        subprocess.run([*cmd, *args, "--depth", name, "--rep", "1", "--out", str(pair)], env=env, check=True)
        written[f"pair {name}"] = du(pair)
        pairs.append(pair)
    return pairs, written


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--baseline", default="1644f00", help="git revision storing float32 copies in every pair")
    p.add_argument("--windows", type=int, default=400, help="training windows read per measurement")
    args = p.parse_args()
    if args.quick:
        args.windows, args.runs = 48, 1
    bases = sum(int(line.split()[1]) for line in SIZES.read_text().splitlines())
    inputs = make_inputs(args.cache / "dataset")
    rows, data = [], {"bases": bases, "sides": {}}
    with tempfile.TemporaryDirectory(prefix="atacdenoise-dataset-bench-") as tmp:
        base_tree = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree), args.baseline],
            check=True,
            capture_output=True,
        )
        try:
            sides = {f"baseline {args.baseline}": (base_tree, False), "this tree": (REPO, True)}
            rates = {}
            for label, (tree, new_layout) in sides.items():
                common.log(f"{label}: making the datasets")
                pairs, written = make_datasets(tree, Path(tmp) / label.replace(" ", "_"), inputs, new_layout)
                code_env = {"PYTHONPATH": str(tree / "workflow")}
                for workers in (0, 2):
                    code = READ_WINDOWS.format(datasets=[str(x) for x in pairs], windows=args.windows, workers=workers)
                    samples = common.repeat(
                        lambda c=code, e=code_env: common.run_python(c, env=e, cores=args.threads),
                        args.runs,
                        f"{label}, {workers} workers",
                    )
                    rate = args.windows / common.med(samples, "inner")
                    rates[(label, workers)] = rate
                    data["sides"].setdefault(label, {})[f"workers_{workers}"] = {
                        "windows_per_s": rate,
                        "checksum": samples[0].extra["checksum"],
                        "peak_rss": common.peak_rss(samples),
                    }
                first = written.get("clean part", 0) + written[f"pair {PAIRS[0]}"]
                extra = written[f"pair {PAIRS[1]}"]
                data["sides"][label]["bytes"] = written
                rows.append(
                    [
                        label,
                        f"{first / bases:.2f}",
                        f"{extra / bases:.2f}",
                        common.fmt_num(rates[(label, 0)]),
                        common.fmt_num(rates[(label, 2)]),
                    ]
                )
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)], check=False)
    sums = {label: d["workers_0"]["checksum"] for label, d in data["sides"].items()}
    base_label, new_label = list(data["sides"])
    for workers in (0, 2):
        ratio = rates[(new_label, workers)] / rates[(base_label, workers)]
        rows.append(
            [
                f"ratio (this tree / baseline), {workers} workers",
                "",
                "",
                f"{ratio:.2f}x" if workers == 0 else "",
                f"{ratio:.2f}x" if workers == 2 else "",
            ]
        )
    notes = [
        f"{bases:,} bases (the demo: chr1 and chr2, 10 Mb each); first pair = the sample's clean part + its first "
        "noisy input (5M); extra pair = one more noisy input of the same sample (60,000 fragments)",
        f"windows: {args.windows} of 60,000 bases (reference shape), batch 16, the same windows on both sides; "
        f"sum over every array of every window: {json.dumps(sums)} (equal = the same values read)",
        "windows/s: the loop over the training DataLoader, in-process time (imports excluded), median of the runs",
    ]
    common.report(
        "Training data on disk: bytes per base and windows per second",
        ["side", "first pair, B/base", "extra pair, B/base", "windows/s, 0 workers", "windows/s, 2 workers"],
        rows,
        notes,
        args,
        data,
        settings=[f"every reading process pinned to {args.threads} core(s); torch 1 thread"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
