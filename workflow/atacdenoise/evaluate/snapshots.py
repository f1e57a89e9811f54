"""Track snapshots: the loci of a holdout region where the model gains and loses most against the noisy input.

The region is cut into tiles of ``width`` bases; for each, the model's gain is
the reduction of squared error against the clean track, ``SSE(scale x noisy) -
SSE(denoised)``, with the noisy track scaled to the clean depth. Tiles with a
clean or model peak and no blacklisted base are eligible; half the loci shown
are the largest gains, half the largest losses, so the report shows where the
model fails too.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from atacdenoise.errors import InputError, require_file
from atacdenoise.evaluate.metrics import intervals_by_chrom, merge_regions, paint_window
from atacdenoise.io.bigwig import BigWigSource
from atacdenoise.io.genome import parse_region
from atacdenoise.io.intervals import read_bed, read_narrowpeak
from atacdenoise.log import progress

log = logging.getLogger(__name__)


def tile_gains(clean: np.ndarray, noisy: np.ndarray, denoised: np.ndarray, width: int, scale: float) -> np.ndarray:
    """Per-tile reduction of squared error by the model: SSE(scale * noisy) - SSE(denoised).

    Arrays are float[n] over ``n // width`` whole tiles (the tail is dropped);
    returns float64[n // width]. Positive = the model is closer to the clean track.
    """
    k = clean.size // width
    c = clean[: k * width].reshape(k, width).astype(np.float64)
    x = noisy[: k * width].reshape(k, width).astype(np.float64)
    d = denoised[: k * width].reshape(k, width).astype(np.float64)
    return ((scale * x - c) ** 2).sum(axis=1) - ((d - c) ** 2).sum(axis=1)


def choose_loci(gains: np.ndarray, eligible: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the indices of the ``ceil(n/2)`` largest gains and the ``n//2`` smallest (losses), among eligible tiles.

    Returns ``(indices, is_gain)``; fewer when fewer tiles are eligible. Each tile is used once.
    """
    idx = np.flatnonzero(eligible & np.isfinite(gains))
    order = idx[np.argsort(-gains[idx], kind="stable")]
    n_gain = min((n + 1) // 2, order.size)
    best = order[:n_gain]
    rest = order[n_gain:]
    worst = rest[::-1][: min(n - n_gain, rest.size)]
    return np.concatenate((best, worst)), np.concatenate((np.ones(best.size, bool), np.zeros(worst.size, bool)))


def snapshot_loci(
    clean: Path,
    noisy: Path,
    denoised_prefix: Path,
    labels: Path,
    sizes: dict[str, int],
    regions: list[str],
    blacklist: Path | None = None,
    baselines: dict[str, Path] | None = None,
    n_loci: int = 4,
    width: int = 20_000,
    depth_scale: float | None = None,
    window_bp: int = 4_000_000,
) -> tuple[list[dict], float]:
    """Choose the loci to draw and read their tracks and peaks; return them and the noisy track's depth scale.

    Each locus is a dict of ``chrom, start, end, caption``, ``tracks`` (noisy,
    model, clean: float32[width]) and ``peaks`` (name -> (starts, ends)) for the
    clean peaks, the model's and each baseline's (``baselines``: name ->
    narrowPeak). The scan keeps squared-error terms per tile, so the depth scale
    (default: clean / noisy totals over the unmasked bases) is applied after it.
    """
    if width < 10 or n_loci < 1:
        raise InputError(f"--width {width} / --n-loci {n_loci}: expected width >= 10 bp and at least one locus")
    regions = merge_regions([parse_region(r, sizes) for r in regions], list(sizes))
    chroms = list(dict.fromkeys(r.chrom for r in regions))
    masked_bases = intervals_by_chrom(read_bed(require_file(blacklist, "blacklist"), sizes) if blacklist else None)
    prefix = str(denoised_prefix)
    peaks = {"clean": intervals_by_chrom(read_narrowpeak(require_file(labels, "clean peak file"), sizes))}
    model_peaks = require_file(Path(prefix + ".peaks.narrowPeak"), "denoised peaks")
    peaks["model"] = intervals_by_chrom(read_narrowpeak(model_peaks, sizes))
    for name, path in (baselines or {}).items():
        peaks[name] = intervals_by_chrom(read_narrowpeak(require_file(path, f"peaks of {name}"), sizes))
    src = {
        "noisy": BigWigSource(require_file(noisy, "noisy bigWig"), sizes, chroms),
        "model": BigWigSource(require_file(Path(prefix + ".track.bw"), "denoised track"), sizes, chroms),
        "clean": BigWigSource(require_file(clean, "clean bigWig"), sizes, chroms),
    }
    try:
        step = width * max(1, window_bp // width)
        tiles, terms = [], []
        sum_clean = sum_noisy = 0.0
        chunks = [(r.chrom, s, min(s + step, r.end)) for r in regions for s in range(r.start, r.end, step)]
        for chrom, s, e in progress(chunks, total=len(chunks), desc="scan", unit="window"):
            n = (e - s) // width * width
            if n == 0:
                continue
            c, x, d = (src[k].read(chrom, s, s + n).astype(np.float64) for k in ("clean", "noisy", "model"))
            masked = paint_window(masked_bases.get(chrom), s, s + n)
            sum_clean += c[~masked].sum()
            sum_noisy += x[~masked].sum()
            k = n // width
            sxx, sxc = (x * x).reshape(k, -1).sum(1), (x * c).reshape(k, -1).sum(1)
            scc = (c * c).reshape(k, -1).sum(1)
            sse_model = ((d - c) ** 2).reshape(k, -1).sum(1)
            any_masked = masked.reshape(k, -1).any(1)
            starts = s + width * np.arange(k)
            has_peak = np.zeros(k, bool)
            for name in ("clean", "model"):
                iv = peaks[name].get(chrom)
                if iv is not None:
                    has_peak |= paint_window(iv, s, s + n).reshape(k, -1).any(1)
            tiles += [(chrom, int(t)) for t in starts]
            terms.append(np.stack([sxx, sxc, scc, sse_model, (~any_masked & has_peak).astype(float)], axis=1))
        scale = depth_scale
        if scale is None:
            scale = sum_clean / sum_noisy if sum_noisy > 0 else 1.0
        loci = []
        eligible = 0
        if tiles:
            t = np.concatenate(terms)
            eligible = int(t[:, 4].sum())
            gains = scale * scale * t[:, 0] - 2 * scale * t[:, 1] + t[:, 2] - t[:, 3]
            chosen, is_gain = choose_loci(gains, t[:, 4] > 0, n_loci)
            for i, gain in zip(chosen, is_gain):
                chrom, start = tiles[i]
                end = start + width
                per_base = gains[i] / width
                sign = "-" if per_base >= 0 else "+"
                caption = f"{'gain' if gain else 'loss'}: squared error {sign}{abs(per_base):.3g} per base"
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
        log.info("depth scale %.4g; %d of %d tiles eligible; showing %d loci", scale, eligible, len(tiles), len(loci))
    finally:
        for source in src.values():
            source.close()
    return loci, scale
