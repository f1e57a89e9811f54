#!/usr/bin/env python
"""GPU inference and training on a whole hg38-size genome, against AtacWorks' published figures.

Targets (issue 9), one H100:

* inference of a whole hg38-size genome (synthetic coverage over the real
  chromosome sizes: chr1-22, X, Y, 3.09 Gb) including bigWig writing in at most
  60 s (AtacWorks: 22 min on 8x V100);
* one whole-genome training epoch (windows whose loss zones cover ~3.09 Gb) in at
  most 2.7 min (AtacWorks: 2.7 min on 8x V100).

Stages, each written to ``--out`` as soon as it ends (so a cut-off run still
reports what it measured), each skipped when ``--budget`` seconds would be exceeded:

A. levers: forward passes of the reference shape on random windows — batch size,
   fp32 vs bf16 autocast, and the dilation fold (the model run on the 8 phases of
   the sequence with undilated kernels, identical arithmetic) — output bases/s;
B. the whole genome through the real inference loop
   (``model.infer.denoise_genome``: prefetch thread, TileRunner, peak calls)
   with the bigWig reads and writes replaced by in-memory ones: what the model and
   the Python around it can do;
C. the real ``atacdenoise infer`` command (bigWig in, two bigWigs and a
   narrowPeak out) on a subset of chromosomes, extrapolated linearly to the
   genome, plus the throughput of one bigWig track writer (``bbiwrite``, its
   default threads per track, 10 zoom levels);
D. training: ``atacdenoise.model.train.train`` for one epoch of ``--train-windows``
   windows on a synthetic dataset, extrapolated to a whole-genome epoch
   (3.09 Gb / interval windows), for the default and a tuned loader.

Random (untrained) weights: the speed of a forward pass does not depend on them;
the number of peaks does (reported).

Usage on the GPU machine::

    PYTHONPATH=workflow python benchmarks/gpu.py --out $OUT --budget 360

and locally as a smoke test::

    .venv/bin/python benchmarks/gpu.py --device cpu --quick --out /tmp/gpu-smoke
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C

ATACWORKS_INFER_S = 22 * 60.0  # published: whole genome, 8x V100
ATACWORKS_EPOCH_S = 2.7 * 60.0  # published: one epoch, 8x V100
TARGET_INFER_S = 60.0
TARGET_EPOCH_S = 2.7 * 60.0

T_START = time.perf_counter()


def elapsed() -> float:
    return time.perf_counter() - T_START


# --------------------------------------------------------------------------- model helpers


def model_flops_per_base(model) -> int:
    """Multiply-adds x 2 of every conv per sequence position (bias and ReLUs left out)."""
    import torch

    macs = sum(
        m.in_channels * m.out_channels * m.kernel_size[0] // m.groups
        for m in model.modules()
        if isinstance(m, torch.nn.Conv1d)
    )
    return 2 * macs


def folded(model):
    """Run the same network on the ``d`` phases of the sequence with undilated kernels (a lever under test).

    When every conv wider than one tap has dilation ``d`` (stride 1, padding a
    multiple of ``d``), base ``t`` only ever meets bases ``t ± k·d``: the network
    splits into ``d`` independent sub-sequences (bases ``r, r+d, r+2d, ...``)
    that see the same weights undilated. Running them as ``d`` more rows of the
    batch gives the same numbers (up to rounding order) with plain convolutions.
    Inputs whose length is not a multiple of ``d`` use the original model.
    Neutral on the 2-core CPU (measured); kept here until measured on a GPU.
    """
    import torch

    class FoldedDilation(torch.nn.Module):
        def __init__(self, model: torch.nn.Module):
            super().__init__()
            self.original = model
            self.folded = copy.deepcopy(model)
            dilations = set()
            for conv in self.folded.modules():
                if isinstance(conv, torch.nn.Conv1d) and conv.kernel_size[0] > 1:
                    assert conv.stride == (1,) and conv.padding[0] % conv.dilation[0] == 0
                    dilations.add(conv.dilation[0])
                    conv.padding = (conv.padding[0] // conv.dilation[0],)
                    conv.dilation = (1,)
            assert len(dilations) <= 1, dilations
            self.d = dilations.pop() if dilations else 1

        def forward(self, x):
            b, n = x.shape
            d = self.d
            if d == 1 or n % d:
                return self.original(x)
            track, logits = self.folded(x.reshape(b, n // d, d).transpose(1, 2).reshape(b * d, n // d))

            def unfold(y):
                return y.reshape(b, d, n // d).transpose(1, 2).reshape(b, n)

            return unfold(track), unfold(logits)

    return FoldedDilation(model)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def time_forward(model, device, batch: int, width: int, amp, reps_min: int = 5, seconds: float = 1.5) -> float:
    """Seconds per forward pass of ``batch`` windows of ``width`` bases (after two warm-up passes)."""
    import torch

    x = (torch.rand(batch, width, device=device) * 8).floor()
    with torch.inference_mode(), torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        for _ in range(2):
            model(x)
        sync(device)
        n, t0 = 0, time.perf_counter()
        while n < reps_min or time.perf_counter() - t0 < seconds:
            model(x)
            n += 1
            if n >= 200:
                break
        sync(device)
    return (time.perf_counter() - t0) / n


# --------------------------------------------------------------------------- stages


def stage_levers(args, device, flops_base: int, interval: int, pad: int) -> dict:
    import torch

    from atacdenoise.model.network import build_model

    torch.manual_seed(0)
    model = build_model({"preset": args.preset}).to(device).eval()
    fold = folded(model).to(device).eval()
    width = interval + 2 * pad
    bf16 = torch.bfloat16 if device.type == "cuda" else None
    with torch.inference_mode():  # the fold is the same arithmetic: check it on this device, fp32
        x = (torch.rand(2, width, device=device) * 8).floor()
        (t0, l0), (t1, l1) = model(x), fold(x)
        fold_diff = max(float((t0 - t1).abs().max()), float((l0 - l1).abs().max()))
    C.log(f"  levers: fold vs plain max |difference| {fold_diff:.2e} (fp32)")
    configs = []
    for b in args.batch_sizes:
        configs.append(("plain", b, None))
        if bf16 is not None:
            configs.append(("plain", b, bf16))
            configs.append(("fold", b, bf16))
        else:
            configs.append(("fold", b, None))
    rows, best = [], None
    for kind, b, amp in configs:
        if elapsed() > args.budget * 0.15:
            C.log(f"levers: stopping early at {elapsed():.0f} s")
            break
        net = fold if kind == "fold" else model
        try:
            s = time_forward(net, device, b, width, amp)
        except RuntimeError as exc:  # out of memory
            C.log(f"levers {kind} b{b} {amp}: {exc}")
            continue
        bps = b * interval / s
        gflops = b * width * flops_base / s / 1e9
        rec = {
            "model": kind,
            "batch": b,
            "amp": "bf16" if amp is not None else "fp32",
            "out_bp_per_s": bps,
            "tflops": gflops / 1e3,
            "ms_per_batch": s * 1e3,
        }
        rows.append(rec)
        C.log(
            f"  levers: {kind:5s} batch {b:4d} {rec['amp']}: {bps / 1e6:8.2f} M output bp/s, {gflops / 1e3:.2f} TFLOP/s"
        )
        if best is None or bps > best["out_bp_per_s"]:
            best = rec
    return {"rows": rows, "best": best, "fold_max_abs_diff_fp32": fold_diff}


class _NullWriter:
    """Stands in for TrackWriterProcess: takes the chunks, writes nothing (an empty file at close)."""

    def __init__(self, path, sizes, max_zooms=0):
        self.path = Path(path)
        self.bases = 0

    def add(self, chrom, start, values):
        self.bases += int(np.asarray(values).size)

    def close(self):
        self.path.touch()

    def abort(self):
        self.path.unlink(missing_ok=True)


def stage_genome_compute(
    args,
    device,
    sizes: dict[str, int],
    interval: int,
    pad: int,
    batch: int,
    amp,
    fold: bool,
    work: Path,
    predicted_bps: float | None,
) -> dict:
    """Run the whole genome through denoise_genome with bigWig I/O replaced by memory; linear extrapolation if cut."""
    import torch

    from atacdenoise.model import infer as cmd
    from atacdenoise.model.infer import TileRunner
    from atacdenoise.model.network import build_model

    genome_bases = sum(sizes.values())
    run_sizes = sizes
    allowed = max(20.0, args.budget * 0.27)
    if predicted_bps and genome_bases / predicted_bps > allowed:
        run_sizes = C.genome_prefix(sizes, int(predicted_bps * allowed))
        C.log(
            f"  genome compute: predicted {genome_bases / predicted_bps:.0f} s > {allowed:.0f} s: "
            f"running {sum(run_sizes.values()):,} bases and extrapolating"
        )
    run_bases = sum(run_sizes.values())
    rng = np.random.default_rng(3)
    pool = C.synthetic_coverage(min(64_000_000, run_bases + batch * interval + 2 * pad + 1), rng)
    span = batch * interval + 2 * pad
    room = max(1, pool.size - span)

    def fake_read(bw, chrom, lo, hi):
        off = (lo * 7919 + hash(chrom)) % room
        return pool[off : off + (hi - lo)].copy()

    class _NullBW:
        def close(self):
            pass

    saved = (cmd.open_bigwig, cmd.read_values, cmd.TrackWriterProcess)
    cmd.open_bigwig, cmd.read_values, cmd.TrackWriterProcess = (lambda path: _NullBW()), fake_read, _NullWriter
    try:
        torch.manual_seed(0)
        model = build_model({"preset": args.preset})
        if fold:
            model = folded(model)
        runner = TileRunner(model, device, interval, pad, batch, amp=amp)
        paths = cmd.output_paths(str(work / "compute"))
        t0 = time.perf_counter()
        n_peaks = cmd.denoise_genome(runner, Path("synthetic.bw"), run_sizes, paths, 0.5)
        sync(device)
        wall = time.perf_counter() - t0
    finally:
        cmd.open_bigwig, cmd.read_values, cmd.TrackWriterProcess = saved
    s = runner.stats
    gpu_s = s.gpu_seconds() if device.type == "cuda" else s.compute_s
    scale = genome_bases / run_bases
    return {
        "bases": run_bases,
        "genome_bases": genome_bases,
        "wall_s": wall,
        "genome_s": wall * scale,
        "gpu_s": gpu_s,
        "genome_gpu_s": gpu_s * scale,
        "peaks": n_peaks,
        "batch": batch,
        "amp": "bf16" if amp is not None else "fp32",
        "fold": fold,
        "extrapolated": run_bases < genome_bases,
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    }


def writer_throughput(n: int = 16_000_000) -> float:
    """Measure the bases/s of one FloatTrackWriter on a per-base float track, in this process.

    The writer is the native one, with its default threads and zoom levels.
    """
    from atacdenoise.io.trackwriter import FloatTrackWriter, default_write_threads

    rng = np.random.default_rng(0)
    values = (1 / (1 + np.exp(-rng.normal(-3, 2, n)))).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with FloatTrackWriter(Path(d) / "w.bw", {"chr1": n}, 10, threads=default_write_threads(), fast=True) as w:
            for s in range(0, n, 800_000):
                w.add("chr1", s, values[s : s + 800_000])
        return n / (time.perf_counter() - t0)


def make_model_file(path: Path, preset: str, interval: int, pad: int) -> Path:
    import torch

    from atacdenoise.model.network import build_model, save_model

    torch.manual_seed(0)
    save_model(
        path,
        build_model({"preset": preset}),
        preprocessing={
            "smooth_bp": 200,
            "shift_plus": 4,
            "shift_minus": -5,
            "min_mapq": 30,
            "keep_duplicates": False,
            "cpm": False,
        },
        window={"interval": interval, "pad": pad},
        input_transform={"kind": "none"},
        threshold=0.5,
    )
    return path


def stage_cli(
    args, device, sizes: dict[str, int], subset: dict[str, int], interval: int, pad: int, batch: int, work: Path
) -> dict:
    """Run the real `atacdenoise infer` on ``subset`` (input bigWig made first), extrapolated to ``sizes``."""
    t0 = time.perf_counter()
    bw = C.synthetic_coverage_bigwig(work / "subset.bw", subset)
    make_s = time.perf_counter() - t0
    sizes_file = C.write_sizes(subset, work / "subset.sizes")
    model = make_model_file(work / "model.pt", args.preset, interval, pad)
    cmd = [
        C.python_exe(),
        "-m",
        "atacdenoise.cli",
        "infer",
        "--model",
        str(model),
        "--input",
        str(bw),
        "--sizes",
        str(sizes_file),
        "--out-prefix",
        str(work / "out" / "subset"),
        "--batch-size",
        str(batch),
        "--device",
        device.type,
    ]
    sample, out = C.run_cmd(cmd, capture=False)
    log_text = out
    m = re.search(r"denoised ([\d,]+) bp in \d+ tiles \(\d+ batches\) in ([\d.]+) s", log_text)
    g = re.search(r"([\d.]+) s of GPU time", log_text)
    inner = float(m.group(2)) if m else float("nan")
    bases = sum(subset.values())
    scale = sum(sizes.values()) / bases
    outs = {p.name: p.stat().st_size for p in (work / "out").iterdir()}
    return {
        "bases": bases,
        "wall_s": sample.wall,
        "denoise_s": inner,
        "gpu_s": float(g.group(1)) if g else None,
        "rss": sample.rss,
        "genome_s": inner * scale,
        "genome_wall_s": sample.wall * scale,
        "input_make_s": make_s,
        "outputs": outs,
        "log_tail": "\n".join(log_text.strip().splitlines()[-8:]),
    }


def make_dataset(path: Path, subset: dict[str, int]) -> Path:
    """Write a synthetic training dataset directory (noisy = thinned clean; labels where clean is high)."""
    from atacdenoise.model.dataset import DEFAULT_PREPROCESSING, chrom_arrays, write_dataset

    if (path / "meta.json").exists():
        return path
    rng = np.random.default_rng(9)

    def chroms():
        for c, n in subset.items():
            clean = C.synthetic_coverage(n, rng, cuts_per_kb=8.0)
            noisy = np.floor(clean * 0.1 + rng.random(n, dtype=np.float32)).astype(np.float32)
            hi = clean > np.quantile(clean[:: max(1, n // 100_000)], 0.97)
            from atacdenoise.io.intervals import intervals_from_mask

            yield c, chrom_arrays(noisy, clean, intervals_from_mask(hi))

    write_dataset(
        path, {"sample": "synthetic", "depth": "1", "rep": 1, "preprocessing": dict(DEFAULT_PREPROCESSING)}, chroms()
    )
    return path


def stage_train(
    args, device, genome_bases: int, dataset: Path, work: Path, batch: int, workers: int, windows: int, tag: str
) -> dict:
    import torch

    from atacdenoise.io.genome import Region
    from atacdenoise.model.dataset import open_dataset
    from atacdenoise.model.train import train

    pairs = [open_dataset(dataset)]
    chroms = pairs[0].chroms
    last = list(chroms)[-1]
    val = [Region(last, 0, min(chroms[last], 1_000_000))]
    settings = {
        "preset": args.preset,
        "epochs": 1,
        "windows_per_epoch": windows,
        "batch_size": batch,
        "num_workers": workers,
        "interval": args.interval,
        "pad": args.pad,
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = train(pairs, val, [], settings, work / f"train_{tag}", device=device.type)
    wall = time.perf_counter() - t0
    row = res.history[-1]
    bps = float(row["train_bases_per_s"])  # window bases (interval + 2 pad) per second of the training pass
    win_per_s = bps / (args.interval + 2 * args.pad)
    genome_windows = genome_bases / args.interval
    return {
        "tag": tag,
        "batch": batch,
        "workers": workers,
        "windows": windows,
        "wall_s": wall,
        "epoch_row_s": row["seconds"],
        "windows_per_s": win_per_s,
        "genome_windows": genome_windows,
        "genome_epoch_s": genome_windows / win_per_s,
        "gpu_s": row.get("gpu_seconds"),
        "peak_gpu_mem_gib": row.get("gpu_peak_mem_gib"),
    }


# --------------------------------------------------------------------------- report


def write_report(args, info: dict, res: dict) -> str:
    lines = [
        f"## GPU inference and training ({args.preset} shape)",
        "",
        f"Machine: {C.machine_line(info)}. Device run started {res.get('started', '')}; "
        f"total script time {elapsed():.0f} s.",
        "",
    ]
    lev = res.get("levers")
    if lev:
        lines += [
            "### A. Forward-pass levers (random windows of interval + 2 pad bases; output bases/s)",
            "",
            f"fold = the dilation fold (`gpu.py: folded`); its outputs differ from the plain model's by at most "
            f"{lev['fold_max_abs_diff_fp32']:.1e} in fp32 on this device.",
            "",
            C.table(
                ["model", "batch", "precision", "M output bp/s", "TFLOP/s", "ms/batch"],
                [
                    [
                        r["model"],
                        r["batch"],
                        r["amp"],
                        f"{r['out_bp_per_s'] / 1e6:.2f}",
                        f"{r['tflops']:.2f}",
                        f"{r['ms_per_batch']:.1f}",
                    ]
                    for r in lev["rows"]
                ],
            ),
            "",
        ]
    rows = []
    g = res.get("genome_compute")
    if g:
        rows.append(
            [
                "whole genome, real loop, bigWig I/O in memory "
                f"({'fold' if g['fold'] else 'plain'}, {g['amp']}, batch {g['batch']})",
                f"{g['bases'] / 1e6:.0f}" + (" (extrapolated)" if g["extrapolated"] else ""),
                f"{g['wall_s']:.1f}",
                f"{g['genome_s']:.1f}",
                f"{g['genome_gpu_s']:.1f}",
                f"{ATACWORKS_INFER_S / g['genome_s']:.0f}x",
                f"{TARGET_INFER_S / g['genome_s']:.2f}",
                "yes" if g["genome_s"] <= TARGET_INFER_S else "no",
            ]
        )
    c = res.get("cli")
    if c:
        rows.append(
            [
                f"`atacdenoise infer` incl. bigWig read/write (batch {args.infer_batch or 'best'})",
                f"{c['bases'] / 1e6:.0f}",
                f"{c['wall_s']:.1f}",
                f"{c['genome_s']:.1f} (wall {c['genome_wall_s']:.0f})",
                f"{(c['gpu_s'] or float('nan')) * sum(res['sizes'].values()) / c['bases']:.1f}",
                f"{ATACWORKS_INFER_S / c['genome_s']:.1f}x",
                f"{TARGET_INFER_S / c['genome_s']:.2f}",
                "yes" if c["genome_s"] <= TARGET_INFER_S else "no",
            ]
        )
    if rows:
        lines += [
            "### Inference, whole hg38-size genome (3.09 Gb; AtacWorks 22 min on 8x V100; target <= 60 s)",
            "",
            C.table(
                [
                    "what",
                    "bases run (M)",
                    "wall s",
                    "genome s",
                    "genome GPU s",
                    "vs AtacWorks",
                    "target / ours",
                    "meets",
                ],
                rows,
            ),
            "",
        ]
    if res.get("writer_bps"):
        w = res["writer_bps"]
        from atacdenoise.io.trackwriter import default_write_threads

        lines += [
            "One bigWig track writer "
            f"(atacdenoise.io.bbiwrite, {default_write_threads()} threads, zoom levels, per-base float32): "
            f"{w / 1e6:.1f} M bases/s on this machine's CPU, "
            "so writing two 3.09-Gb tracks (in parallel, one process each) "
            f"takes at least {sum(res['sizes'].values()) / w:.0f} s.",
            "",
        ]
    tr = res.get("train", [])
    if tr:
        lines += [
            "### Training, one whole-genome epoch "
            "(3.09 Gb / 50-kb windows; AtacWorks 2.7 min on 8x V100; target <= 2.7 min)",
            "",
            C.table(
                [
                    "loader",
                    "batch",
                    "windows timed",
                    "windows/s",
                    "genome epoch s",
                    "vs AtacWorks",
                    "meets",
                    "peak GPU GiB",
                ],
                [
                    [
                        f"{t['tag']} ({t['workers']} workers)",
                        t["batch"],
                        t["windows"],
                        f"{t['windows_per_s']:.1f}",
                        f"{t['genome_epoch_s']:.0f}",
                        f"{ATACWORKS_EPOCH_S / t['genome_epoch_s']:.2f}x",
                        "yes" if t["genome_epoch_s"] <= TARGET_EPOCH_S else "no",
                        f"{t['peak_gpu_mem_gib']:.1f}" if t.get("peak_gpu_mem_gib") else "n/a",
                    ]
                    for t in tr
                ],
            ),
            "",
        ]
    for note in res.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="folder for gpu.md, gpu.json and logs")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument(
        "--budget", type=float, default=360.0, help="seconds; stages that would not fit are skipped or shortened"
    )
    p.add_argument("--preset", default="atacworks")
    p.add_argument("--interval", type=int, default=50_000)
    p.add_argument("--pad", type=int, default=5_000)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 128])
    p.add_argument("--infer-batch", type=int, default=None, help="batch for stages B/C (default: the best of stage A)")
    p.add_argument(
        "--subset", nargs="+", default=["chr20", "chr21", "chr22"], help="chromosomes of the real CLI run (stage C)"
    )
    p.add_argument("--train-windows", type=int, default=2048)
    p.add_argument("--train-chroms", nargs="+", default=["chr21", "chr22"])
    p.add_argument("--stages", default="ABCD")
    p.add_argument("--quick", action="store_true", help="tiny genome (a CPU smoke test)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)

    import torch

    from atacdenoise.io.genome import read_chrom_sizes, select_chroms

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device visible")
    sizes = select_chroms(read_chrom_sizes(C.chrom_sizes_file("hg38.chrom.sizes")))
    if args.quick:
        sizes = C.genome_prefix(sizes, 3_000_000)
        args.subset = list(sizes)[:1]
        args.train_chroms = list(sizes)[:1]
        args.batch_sizes = args.batch_sizes[:2]
    info = C.machine()
    info["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    res: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "sizes": sizes, "notes": []}

    def save() -> None:
        (args.out / "gpu.json").write_text(
            json.dumps(
                {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, **res}, indent=2, default=str
            )
        )
        (args.out / "gpu.md").write_text(write_report(args, info, res))

    from atacdenoise.model.network import build_model

    flops = model_flops_per_base(build_model({"preset": args.preset}))
    res["flops_per_base"] = flops
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    batch, amp, fold = args.infer_batch or 64, (torch.bfloat16 if device.type == "cuda" else None), False
    predicted = None
    if "A" in args.stages:
        lev = stage_levers(args, device, flops, args.interval, args.pad)
        res["levers"] = lev
        save()
        if lev["best"]:
            best = lev["best"]
            batch = args.infer_batch or best["batch"]
            fold = best["model"] == "fold"
            amp = torch.bfloat16 if best["amp"] == "bf16" else None
            predicted = best["out_bp_per_s"]
    if "B" in args.stages and elapsed() < args.budget * 0.5:
        C.log(f"B: whole genome compute ({sum(sizes.values()):,} bases), batch {batch}, fold {fold}, amp {amp}")
        res["genome_compute"] = stage_genome_compute(
            args, device, sizes, args.interval, args.pad, batch, amp, fold, work, predicted
        )
        C.log(f"  {res['genome_compute']}")
        save()
    if predicted and not args.quick:  # about 25 s of training per loader: forward + backward ~3.5 forward passes
        rate = predicted / args.interval / 3.5
        args.train_windows = int(min(args.train_windows, max(256, rate * 25)) // 32 * 32)
        C.log(f"training: {args.train_windows} windows per timed epoch (predicted {rate:.0f} windows/s)")
    if "D" in args.stages and elapsed() < args.budget * 0.7:
        C.log("D: training (default loader)")
        ds = make_dataset(work / "dataset", {c: sizes[c] for c in args.train_chroms})
        res["train"] = [stage_train(args, device, sum(sizes.values()), ds, work, 16, 0, args.train_windows, "default")]
        C.log(f"  {res['train'][-1]}")
        save()
    if "C" in args.stages and elapsed() < args.budget * 0.8:
        C.log("C: atacdenoise infer on a subset")
        res["writer_bps"] = writer_throughput(4_000_000 if args.quick else 16_000_000)
        save()
        subset = {c: sizes[c] for c in args.subset}
        res["cli"] = stage_cli(args, device, sizes, subset, args.interval, args.pad, batch, work)
        C.log(f"  {res['cli']}")
        save()
    if "D" in args.stages and elapsed() < args.budget * 0.85 and res.get("train"):
        C.log("D: training (tuned loader)")
        ds = work / "dataset"
        workers = min(8, max(2, (os.cpu_count() or 2) // 2))
        res["train"].append(
            stage_train(args, device, sum(sizes.values()), ds, work, 32, workers, args.train_windows, "tuned")
        )
        C.log(f"  {res['train'][-1]}")
        save()
    res["notes"] += [
        f"Model FLOPs per sequence position: {flops / 1e6:.3f} MFLOP (2 x multiply-adds of every conv); "
        "a tile computes interval + 2 pad "
        f"= {args.interval + 2 * args.pad:,} positions for {args.interval:,} output bases.",
        f"Genome: {', '.join(list(sizes)[:2])} ... {list(sizes)[-1]} of hg38 ({sum(sizes.values()):,} bases); "
        "synthetic coverage; random "
        "(untrained) weights, whose peak probabilities stay below 0.5 (no peaks: peak calling costs its minimum).",
        "B replaces only the bigWig reader and the two bigWig writer processes "
        "(peak calls, prefetch thread, device copies stay); "
        "C is the real command, its 'genome s' = the command's own denoise time x genome/subset bases "
        "(wall = whole process incl. start-up).",
        "Training: the real train() for one epoch; "
        "'genome epoch s' = (3.09 Gb / interval) windows / measured windows per second of the "
        "training pass (validation excluded; includes cuDNN autotuning of the first batches).",
    ]
    save()
    print((args.out / "gpu.md").read_text())


if __name__ == "__main__":
    main()
