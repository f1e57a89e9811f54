"""Figures for the report: ``atacdenoise plots {pr,depth,tracks,heatmap} ...``.

- ``pr``: precision-recall curves per method from the ``--pr-curves`` NPZ files
  of ``atacdenoise metrics`` (one panel per sample and depth).
- ``depth``: metrics vs input depth from a metrics.tsv (and optionally the
  effective-depth table of ``atacdenoise summary``).
- ``tracks``: noisy / denoised / clean coverage and peak calls at the loci where
  the model gains and loses most against the depth-scaled noisy track.
- ``heatmap``: deepTools ``computeMatrix reference-point`` + ``plotHeatmap`` of
  noisy, denoised and clean coverage around the clean-peak summits.

The output format follows the suffix of ``--out`` (.png or .svg).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.commands.metrics import BigWigSource, _need, read_metrics
from atacdenoise.errors import InputError
from atacdenoise.evaluate.metrics import (
    evaluated_intervals,
    intervals_by_chrom,
    merge_regions,
    overlaps_any,
    paint_window,
)
from atacdenoise.io.genome import parse_region, read_chrom_sizes
from atacdenoise.io.intervals import read_bed, read_narrowpeak
from atacdenoise.log import progress

log = logging.getLogger(__name__)

KINDS = {
    "pr": "precision-recall curves per method from the NPZ files of 'atacdenoise metrics --pr-curves'",
    "depth": "metrics vs input depth from a metrics.tsv",
    "tracks": "coverage snapshots (noisy, denoised, clean, peak calls) at the loci of largest gain and loss",
    "heatmap": "deepTools heatmap of noisy, denoised and clean coverage around clean-peak summits",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", metavar="<kind>", required=True)
    for kind, text in KINDS.items():
        k = sub.add_parser(kind, help=text, description=text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        # -v/-q also after the kind; SUPPRESS keeps the values given before it
        k.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more detail (debug)")
        k.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="warnings and errors only")
        k.add_argument("--out", required=True, type=Path, help="figure to write (.png or .svg)")
        k.add_argument("--title", default="", help="figure title (default: says what is shown)")
        globals()[f"_add_{kind}"](k)


def _add_pr(k: argparse.ArgumentParser) -> None:
    k.add_argument(
        "--curves", required=True, nargs="+", type=Path, help="NPZ files from 'atacdenoise metrics --pr-curves'"
    )


def _add_depth(k: argparse.ArgumentParser) -> None:
    k.add_argument("--metrics", required=True, type=Path, help="metrics.tsv (long format)")
    k.add_argument(
        "--effective-depth", type=Path, help="effective-depth TSV from 'atacdenoise summary' (annotates the panels)"
    )
    k.add_argument(
        "--metric-names",
        nargs="+",
        default=["pearson", "spearman", "auprc", "auroc", "f1", "peak_recall"],
        help="metrics to draw",
    )
    k.add_argument(
        "--region", default="all", choices=["all", "peaks", "nonpeaks"], help="bases the metrics were computed on"
    )


def _add_inputs(k: argparse.ArgumentParser) -> None:
    k.add_argument("--clean", required=True, type=Path, help="clean coverage bigWig")
    k.add_argument("--noisy", required=True, type=Path, help="noisy coverage bigWig")
    k.add_argument("--denoised-prefix", required=True, type=Path, help="model outputs P.track.bw, P.peaks.narrowPeak")
    k.add_argument("--labels", required=True, type=Path, help="clean peaks (narrowPeak)")
    k.add_argument("--sizes", required=True, type=Path, help="chromosome sizes")
    k.add_argument("--regions", required=True, nargs="+", help="regions to draw from: 'chr10' or 'chr10:0-5000000'")
    k.add_argument("--blacklist", type=Path, help="BED(.gz) of bases to avoid")
    k.add_argument("--sample", default="", help="sample name for the default title")
    k.add_argument("--depth", default="", help="depth label for the default title (number of fragments, 'given')")


def _add_tracks(k: argparse.ArgumentParser) -> None:
    _add_inputs(k)
    k.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="NAME=PEAKS[,PVAL]",
        help="peak calls to draw too (repeatable; a PVAL bigWig is accepted and ignored)",
    )
    k.add_argument("--n-loci", type=int, default=4, help="loci to show: half of largest gain, half of largest loss")
    k.add_argument("--width", type=int, default=20_000, help="width of each locus (bp)")
    k.add_argument(
        "--depth-scale", type=float, help="noisy x scale is compared with the model (default: clean/noisy totals)"
    )
    k.add_argument("--window-bp", type=int, default=4_000_000, help="bases read at a time while scanning")


def _add_heatmap(k: argparse.ArgumentParser) -> None:
    _add_inputs(k)
    k.add_argument("--flank", type=int, default=2000, help="bp shown on each side of a summit")
    k.add_argument("--bin-size", type=int, default=20, help="bp per heatmap column")
    k.add_argument("--max-summits", type=int, default=10_000, help="strongest summits kept (by p-value column)")
    k.add_argument("--matrix", type=Path, help="also keep deepTools' matrix (.gz)")
    k.add_argument("--threads", type=int, default=1, help="computeMatrix processes")


def run(args: argparse.Namespace) -> int:
    return globals()[f"_run_{args.kind}"](args)


# --------------------------------------------------------------------------- pr, depth


def _run_pr(args: argparse.Namespace) -> int:
    from atacdenoise.evaluate.plots import plot_pr_curves

    curves = []
    for path in args.curves:
        _need(path, "PR-curve file")
        try:
            with np.load(path, allow_pickle=False) as z:
                curves.append({k: z[k] for k in z.files})
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not an NPZ written by 'atacdenoise metrics --pr-curves' ({exc})") from exc
        if not {"sample", "depth", "methods"} <= set(curves[-1]):
            raise InputError(f"{path}: lacks sample/depth/methods: not written by 'atacdenoise metrics --pr-curves'")
    plot_pr_curves(curves, args.out, args.title)
    return 0


def _run_depth(args: argparse.Namespace) -> int:
    from atacdenoise.evaluate.plots import plot_metric_vs_depth

    metrics = read_metrics(args.metrics)
    effective = None
    if args.effective_depth:
        effective = pd.read_csv(_need(args.effective_depth, "effective-depth table"), sep="\t", dtype={"depth": str})
    plot_metric_vs_depth(metrics, args.out, args.metric_names, args.region, effective, args.title)
    return 0


# --------------------------------------------------------------------------- tracks


def _run_tracks(args: argparse.Namespace) -> int:
    from atacdenoise.evaluate.plots import choose_loci, plot_track_snapshots

    if args.width < 10 or args.n_loci < 1:
        raise InputError(
            f"--width {args.width} / --n-loci {args.n_loci}: expected width >= 10 bp and at least one locus"
        )
    sizes = read_chrom_sizes(args.sizes)
    regions = merge_regions([parse_region(r, sizes) for r in args.regions], list(sizes))
    chroms = list(dict.fromkeys(r.chrom for r in regions))
    blacklist = intervals_by_chrom(read_bed(_need(args.blacklist, "blacklist"), sizes) if args.blacklist else None)
    prefix = str(args.denoised_prefix)
    peaks = {"clean": intervals_by_chrom(read_narrowpeak(_need(args.labels, "clean peak file"), sizes))}
    peaks["model"] = intervals_by_chrom(
        read_narrowpeak(_need(Path(prefix + ".peaks.narrowPeak"), "denoised peaks"), sizes)
    )
    for text in args.baseline:
        name, sep, files = text.partition("=")
        if not sep or not files:
            raise InputError(f"--baseline {text!r}: expected NAME=PEAKS[,PVAL]")
        peaks[name] = intervals_by_chrom(read_narrowpeak(_need(Path(files.split(",")[0]), f"peaks of {name}"), sizes))
    src = {
        "noisy": BigWigSource(_need(args.noisy, "noisy bigWig"), sizes, chroms),
        "model": BigWigSource(_need(Path(prefix + ".track.bw"), "denoised track"), sizes, chroms),
        "clean": BigWigSource(_need(args.clean, "clean bigWig"), sizes, chroms),
    }
    try:
        # scan whole tiles: squared-error terms per tile, so that any depth scale can be applied afterwards
        step = args.width * max(1, args.window_bp // args.width)
        tiles, terms = [], []
        sum_clean = sum_noisy = 0.0
        chunks = [(r.chrom, s, min(s + step, r.end)) for r in regions for s in range(r.start, r.end, step)]
        for chrom, s, e in progress(chunks, total=len(chunks), desc="scan", unit="window"):
            n = (e - s) // args.width * args.width
            if n == 0:
                continue
            c, x, d = (src[k].read(chrom, s, s + n).astype(np.float64) for k in ("clean", "noisy", "model"))
            masked = paint_window(blacklist.get(chrom), s, s + n)
            sum_clean += c[~masked].sum()
            sum_noisy += x[~masked].sum()
            k = n // args.width
            sxx, sxc = (x * x).reshape(k, -1).sum(1), (x * c).reshape(k, -1).sum(1)
            scc = (c * c).reshape(k, -1).sum(1)
            sse_model = ((d - c) ** 2).reshape(k, -1).sum(1)
            any_masked = masked.reshape(k, -1).any(1)
            starts = s + args.width * np.arange(k)
            has_peak = np.zeros(k, bool)
            for name in ("clean", "model"):
                iv = peaks[name].get(chrom)
                if iv is not None:
                    has_peak |= paint_window(iv, s, s + n).reshape(k, -1).any(1)
            tiles += [(chrom, int(t)) for t in starts]
            terms.append(np.stack([sxx, sxc, scc, sse_model, (~any_masked & has_peak).astype(float)], axis=1))
        scale = args.depth_scale
        if scale is None:
            scale = sum_clean / sum_noisy if sum_noisy > 0 else 1.0
        loci = []
        if tiles:
            t = np.concatenate(terms)
            gains = scale * scale * t[:, 0] - 2 * scale * t[:, 1] + t[:, 2] - t[:, 3]
            chosen, is_gain = choose_loci(gains, t[:, 4] > 0, args.n_loci)
            for i, gain in zip(chosen, is_gain):
                chrom, start = tiles[i]
                end = start + args.width
                per_base = gains[i] / args.width
                caption = f"{'gain' if gain else 'loss'}: squared error {'-' if per_base >= 0 else '+'}{abs(per_base):.3g} per base"
                log.info("locus %s:%d-%d (%s)", chrom, start, end, caption)
                loci.append(
                    {
                        "chrom": chrom,
                        "start": start,
                        "end": end,
                        "caption": caption,
                        "tracks": {k: src[k].read(chrom, start, end) for k in ("noisy", "model", "clean")},
                        "peaks": {name: iv[chrom] for name, iv in peaks.items() if chrom in iv},
                    }
                )
        log.info(
            "depth scale %.4g; %d of %d tiles eligible; showing %d loci",
            scale,
            int(t[:, 4].sum()) if tiles else 0,
            len(tiles),
            len(loci),
        )
    finally:
        for s_ in src.values():
            s_.close()
    title = args.title or _sentence(
        f"{_what(args)}coverage at the loci where the model gains and loses most (vs noisy x {scale:.3g})"
    )
    plot_track_snapshots(loci, args.out, title)
    return 0


# --------------------------------------------------------------------------- heatmap


def _what(args: argparse.Namespace) -> str:
    """'HSC, 30,000 fragments: ' from --sample/--depth, or ''."""
    from atacdenoise.evaluate.plots import depth_label

    parts = [p for p in (args.sample, depth_label(args.depth) if args.depth else "") if p]
    return ", ".join(parts) + ": " if parts else ""


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _tool(name: str) -> str:
    """Path of a deepTools CLI: on PATH or beside this Python (the project's venv)."""
    found = shutil.which(name) or (
        str(Path(sys.executable).parent / name) if (Path(sys.executable).parent / name).exists() else None
    )
    if not found:
        raise InputError(
            f"deepTools' {name} not found on PATH; install deepTools (pip install 'deeptools==3.5.6') in this environment"
        )
    return found


def summit_positions(peaks: pd.DataFrame) -> np.ndarray:
    """int64[n] summit coordinates: start + summit offset, or the midpoint where the offset is missing/out of range."""
    start, end, off = (peaks[c].to_numpy(np.int64) for c in ("start", "end", "summit"))
    ok = (off >= 0) & (off < end - start)
    return np.where(ok, start + off, (start + end) // 2)


def _run_heatmap(args: argparse.Namespace) -> int:
    sizes = read_chrom_sizes(args.sizes)
    regions = merge_regions([parse_region(r, sizes) for r in args.regions], list(sizes))
    chroms = list(dict.fromkeys(r.chrom for r in regions))
    prefix = str(args.denoised_prefix)
    tracks = {
        "noisy input": _need(args.noisy, "noisy bigWig"),
        "denoised (model)": _need(Path(prefix + ".track.bw"), "denoised track"),
        "clean (deep)": _need(args.clean, "clean bigWig"),
    }
    for path in tracks.values():
        BigWigSource(path, sizes, chroms).close()  # same checks as the metrics
    blacklist = intervals_by_chrom(read_bed(_need(args.blacklist, "blacklist"), sizes) if args.blacklist else None)
    peaks = read_narrowpeak(_need(args.labels, "clean peak file"), sizes)
    peaks = peaks.assign(pos=summit_positions(peaks))
    evaluated = evaluated_intervals(regions, blacklist)
    keep = np.zeros(len(peaks), bool)
    for chrom, iv in evaluated.items():
        on = (peaks["chrom"] == chrom).to_numpy()
        pos = peaks.loc[on, "pos"].to_numpy()
        keep[on] = overlaps_any(pos, pos + 1, *iv)
    summits = peaks[keep]
    if len(summits) > args.max_summits:
        summits = summits.sort_values("pval", ascending=False, kind="stable").head(args.max_summits)
    if summits.empty:
        log.warning("no clean-peak summit in the regions %s: writing an empty figure", [str(r) for r in regions])
        from atacdenoise.evaluate.plots import plot_track_snapshots

        plot_track_snapshots([], args.out, args.title)
        return 0
    title = args.title or _sentence(f"{_what(args)}coverage around {len(summits):,} clean-peak summits")
    with tempfile.TemporaryDirectory(prefix="atacdenoise-heatmap-") as tmpdir:
        bed = Path(tmpdir) / "summits.bed"
        summits = summits.sort_values(["chrom", "pos"])
        pd.DataFrame({"chrom": summits["chrom"], "s": summits["pos"], "e": summits["pos"] + 1}).to_csv(
            bed, sep="\t", header=False, index=False
        )
        matrix = Path(tmpdir) / "matrix.gz"
        labels = list(tracks)
        _call(
            [
                _tool("computeMatrix"),
                "reference-point",
                "-S",
                *map(str, tracks.values()),
                "--samplesLabel",
                *labels,
                "-R",
                str(bed),
                "--referencePoint",
                "center",
                "-b",
                str(args.flank),
                "-a",
                str(args.flank),
                "--binSize",
                str(args.bin_size),
                "--missingDataAsZero",
                "-p",
                str(args.threads),
                "-o",
                str(matrix),
            ]
        )
        z_max, y_max = matrix_scales(matrix, len(labels))
        with atomic_output(args.out) as tmp:
            _call(
                [
                    _tool("plotHeatmap"),
                    "-m",
                    str(matrix),
                    "-o",
                    str(tmp),
                    "--plotFileFormat",
                    args.out.suffix.lstrip(".") or "png",
                    "--sortUsingSamples",
                    str(len(labels)),
                    "--colorMap",
                    "Greys",
                    "Reds",
                    "Greys",
                    "--zMin",
                    "0",
                    "--zMax",
                    *(f"{v:.4g}" for v in z_max),
                    "--yMin",
                    "0",
                    "--yMax",
                    *(f"{v:.4g}" for v in y_max),
                    "--heatmapWidth",
                    "5",
                    "--heatmapHeight",
                    "14",
                    "--legendLocation",
                    "none",
                    "--regionsLabel",
                    f"clean-peak summits (n={len(summits):,})",
                    "--refPointLabel",
                    "summit",
                    "--xAxisLabel",
                    "distance from summit (bp)",
                    "--yAxisLabel",
                    "mean coverage (cut sites)",
                    "--plotTitle",
                    title,
                ]
            )
        if args.matrix:
            with atomic_output(args.matrix) as tmp:
                shutil.copyfile(matrix, tmp)
    log.info("wrote %s", args.out)
    return 0


def matrix_scales(matrix: Path, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample colour maxima (99th percentile) and profile maxima (1.1 x the highest mean) of a deepTools matrix.

    Noisy and clean coverage differ by the depth ratio, so each heatmap gets its own scale.
    """
    table = pd.read_csv(matrix, sep="\t", header=None, skiprows=1, compression="gzip")  # line 1: '@{json header}'
    values = table.iloc[:, 6:].to_numpy(np.float64)
    values = np.nan_to_num(values.reshape(values.shape[0], n_samples, -1))
    z = np.percentile(values, 99, axis=(0, 2))
    y = 1.1 * values.mean(axis=0).max(axis=1)
    return np.maximum(z, 1e-3), np.maximum(y, 1e-3)


def _call(cmd: list[str]) -> None:
    log.debug("running %s", " ".join(cmd))
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")
