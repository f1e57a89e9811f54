"""Summit heatmaps: noisy, denoised and clean coverage around the clean-peak summits, drawn by deepTools.

``computeMatrix reference-point`` stacks the three tracks around every summit
of the evaluated regions (the strongest ``max_summits`` by p-value), and
``plotHeatmap`` draws them sorted by the clean track, each with its own colour
scale (noisy and clean coverage differ by the depth ratio).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output, scratch_dir
from atacdenoise.errors import InputError, require_file
from atacdenoise.evaluate.metrics import evaluated_intervals, intervals_by_chrom, merge_regions, overlaps_any
from atacdenoise.evaluate.plots import plot_track_snapshots
from atacdenoise.io.bigwig import BigWigSource
from atacdenoise.io.genome import parse_region
from atacdenoise.io.intervals import read_bed, read_narrowpeak

log = logging.getLogger(__name__)


def deeptools(name: str) -> str:
    """Path of a deepTools command: on PATH or beside this Python (the project's venv)."""
    beside = Path(sys.executable).parent / name
    found = shutil.which(name) or (str(beside) if beside.exists() else None)
    if not found:
        raise InputError(
            f"deepTools' {name} not found on PATH; "
            "install deepTools (pip install 'deeptools==3.5.6') in this environment"
        )
    return found


def _call(cmd: list[str]) -> None:
    log.debug("running %s", " ".join(cmd))
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{Path(cmd[0]).name} failed (exit {res.returncode}): {res.stderr.strip()[-2000:]}")


def summit_positions(peaks: pd.DataFrame) -> np.ndarray:
    """int64[n] summit coordinates: start + summit offset, or the midpoint where the offset is missing/out of range."""
    start, end, off = (peaks[c].to_numpy(np.int64) for c in ("start", "end", "summit"))
    ok = (off >= 0) & (off < end - start)
    return np.where(ok, start + off, (start + end) // 2)


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


def summit_heatmap(
    clean: Path,
    noisy: Path,
    denoised_prefix: Path,
    labels: Path,
    sizes: dict[str, int],
    regions: list[str],
    out: Path,
    blacklist: Path | None = None,
    flank: int = 2000,
    bin_size: int = 20,
    max_summits: int = 10_000,
    threads: int = 1,
    what: str = "",
    title: str = "",
    matrix_out: Path | None = None,
) -> int:
    """Draw the heatmap of the three tracks around the clean-peak summits of ``regions``; return the summits drawn.

    ``what`` prefixes the default title (e.g. ``"HSC, 30,000 fragments: "``);
    ``title`` replaces it. With no summit in the regions an empty figure is
    written (and a warning logged). ``matrix_out`` keeps deepTools' matrix.
    """
    regions = merge_regions([parse_region(r, sizes) for r in regions], list(sizes))
    chroms = list(dict.fromkeys(r.chrom for r in regions))
    tracks = {
        "noisy input": require_file(noisy, "noisy bigWig"),
        "denoised (model)": require_file(Path(f"{denoised_prefix}.track.bw"), "denoised track"),
        "clean (deep)": require_file(clean, "clean bigWig"),
    }
    for path in tracks.values():
        BigWigSource(path, sizes, chroms).close()  # same checks as the metrics
    masked = intervals_by_chrom(read_bed(require_file(blacklist, "blacklist"), sizes) if blacklist else None)
    peaks = read_narrowpeak(require_file(labels, "clean peak file"), sizes)
    peaks = peaks.assign(pos=summit_positions(peaks))
    keep = np.zeros(len(peaks), bool)
    for chrom, iv in evaluated_intervals(regions, masked).items():
        on = (peaks["chrom"] == chrom).to_numpy()
        pos = peaks.loc[on, "pos"].to_numpy()
        keep[on] = overlaps_any(pos, pos + 1, *iv)
    summits = peaks[keep]
    if len(summits) > max_summits:
        summits = summits.sort_values("pval", ascending=False, kind="stable").head(max_summits)
    if summits.empty:
        log.warning("no clean-peak summit in the regions %s: writing an empty figure", [str(r) for r in regions])
        plot_track_snapshots([], out, title)
        return 0
    text = f"{what}coverage around {len(summits):,} clean-peak summits"
    title = title or text[:1].upper() + text[1:]
    names = list(tracks)
    with scratch_dir("atacdenoise-heatmap") as tmpdir:
        bed = Path(tmpdir) / "summits.bed"
        summits = summits.sort_values(["chrom", "pos"])
        pd.DataFrame({"chrom": summits["chrom"], "s": summits["pos"], "e": summits["pos"] + 1}).to_csv(
            bed, sep="\t", header=False, index=False
        )
        matrix = Path(tmpdir) / "matrix.gz"
        cmd = [
            deeptools("computeMatrix"),
            "reference-point",
            "-S",
            *map(str, tracks.values()),
            "--samplesLabel",
            *names,
        ]
        cmd += ["-R", str(bed), "--referencePoint", "center", "-b", str(flank), "-a", str(flank)]
        cmd += ["--binSize", str(bin_size), "--missingDataAsZero", "-p", str(threads), "-o", str(matrix)]
        _call(cmd)
        z_max, y_max = matrix_scales(matrix, len(names))
        with atomic_output(out) as tmp:
            cmd = [deeptools("plotHeatmap"), "-m", str(matrix), "-o", str(tmp)]
            cmd += ["--plotFileFormat", out.suffix.lstrip(".") or "png", "--sortUsingSamples", str(len(names))]
            cmd += ["--colorMap", "Greys", "Reds", "Greys", "--zMin", "0", "--zMax", *(f"{v:.4g}" for v in z_max)]
            cmd += ["--yMin", "0", "--yMax", *(f"{v:.4g}" for v in y_max)]
            cmd += ["--heatmapWidth", "5", "--heatmapHeight", "14", "--legendLocation", "none"]
            cmd += ["--regionsLabel", f"clean-peak summits (n={len(summits):,})", "--refPointLabel", "summit"]
            cmd += ["--xAxisLabel", "distance from summit (bp)", "--yAxisLabel", "mean coverage (cut sites)"]
            cmd += ["--plotTitle", title]
            _call(cmd)
        if matrix_out:
            with atomic_output(matrix_out) as tmp:
                shutil.copyfile(matrix, tmp)
    return len(summits)
