"""Input QC of one BAM, fragments file or bigWig: the numbers ATAC-seq users expect from a pipeline.

One row per input (``write_qc``), gathered by ``atacdenoise qc-summary``:

- ``paired``: the input has fragment lengths (a paired-end BAM or a fragments
  file); NA for a bigWig.
- ``reads_used`` / ``fragments_used``: BAM reads that passed the read filters;
  fragment lines on the selected chromosomes of a fragments file and the read
  pairs behind them (its count column).
- ``duplicate_fraction``: BAM, of the primary mapped reads, those flagged
  duplicate (0x400); NA when duplicates are kept (they are not counted then).
  Fragments file: ``1 - lines / read pairs`` when a count is above 1, else NA
  (a file of counts 1 says nothing about duplicates).
- ``low_mapq_fraction``: BAM, of the reads that passed every other filter,
  those below ``min_mapq``; NA for fragments files (no MAPQ).
- ``frip``: fraction of cut sites inside the (clean) peaks; for a bigWig, of
  the coverage signal (cut sites' boxes straddle peak edges both ways: within
  0.01 of the cut-site FRiP on the HSC demo).
- ``tss_enrichment``: the ENCODE definition on cut sites (bigWig: signal):
  aggregate ±2,000 bp around every TSS, strand-aware, normalised by the mean of
  the 100 bp at both ends, smoothed by a running mean, maximum.
- ``cut_sites_per_mb`` and ``cut_sites_per_mb:<region>``: cut sites per Mb of
  every region (a BED of target regions, else whole chromosomes); NA for a bigWig.
- ``fraglen_*``: summary of the fragment-length histogram (:mod:`atacdenoise.reads.fraglen`):
  fragments profiled, median, fraction below 150 bp (nucleosome-free) and of
  150-300 bp (mono-nucleosome).

With target regions, cut sites, fragments and TSSs outside them are left out of everything but
``reads_used`` / ``fragments_used``, which stay the input's own counts on the selected chromosomes (its
depth): ``cut_sites`` and ``cut_sites_per_mb`` count the regions only, so that ``cut_sites_per_mb`` is
``cut_sites / region_mb``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.errors import InputError
from atacdenoise.evaluate.metrics import merge_intervals
from atacdenoise.io.bigwig import open_bigwig, read_bigwig
from atacdenoise.io.intervals import mask_from_intervals, starts_in_regions
from atacdenoise.reads.coverage import CutSiteSpill, iter_cut_site_parts
from atacdenoise.reads.fraglen import MAX_FRAGMENTS, Regions, fragment_lengths, median_length

log = logging.getLogger(__name__)

#: TSS enrichment: bases each side of the TSS, bases at each end that give the background, running-mean width
TSS_FLANK = 2000
TSS_EDGE = 100
TSS_SMOOTH = 51
#: TSSs aggregated per step (bounds the memory of the pairs of TSS and cut site)
TSS_CHUNK = 2000
#: fragment-length classes: nucleosome-free below NFR_BP, mono-nucleosome up to MONO_BP
NFR_BP = 150
MONO_BP = 300
#: the columns every QC row has, in order (then ``cut_sites_per_mb:<region>``)
COLUMNS = [
    "sample",
    "depth",
    "rep",
    "kind",
    "input",
    "paired",
    "reads_used",
    "fragments_used",
    "cut_sites",
    "duplicate_fraction",
    "low_mapq_fraction",
    "frip",
    "tss_enrichment",
    "fraglen_fragments",
    "fraglen_median",
    "fraglen_nfr_fraction",
    "fraglen_mono_fraction",
    "region_mb",
    "cut_sites_per_mb",
]
REGION_PREFIX = "cut_sites_per_mb:"


# --------------------------------------------------------------------------- intervals


def merged_by_chrom(df: pd.DataFrame) -> Regions:
    """``{chrom: (starts, ends)}`` of the union of a BED's intervals: sorted, disjoint (what the QC functions take)."""
    return {str(c): merge_intervals(sub["start"].to_numpy(), sub["end"].to_numpy()) for c, sub in df.groupby("chrom")}


def region_names(df: pd.DataFrame) -> list[str]:
    """Name each region of a BED by its 4th column when every one is set and unique, else ``chrom:start-end``."""
    if "c3" in df and (df["c3"] != "").all() and df["c3"].is_unique:
        return df["c3"].tolist()
    return [f"{c}:{s}-{e}" for c, s, e in zip(df["chrom"], df["start"], df["end"])]


# --------------------------------------------------------------------------- read-filter fractions


def bam_filter_fractions(filters: dict, keep_duplicates: bool = False) -> tuple[float, float]:
    """Duplicate and low-MAPQ fractions from the read-filter counts of a BAM (the coverage sidecar's ``filters``).

    Filters apply in the order of :data:`atacdenoise.reads.cutsites.FILTERS` and
    a read is counted under the first it fails, so: duplicates among the primary
    mapped reads that are not QC-fail; low MAPQ among the reads that passed every
    other filter. A fraction without reads, or duplicates when they were kept
    (``keep_duplicates``: ``dropped_duplicate`` is then 0 whatever the flags), are NaN.
    """
    seen = filters["seen"]
    primary = seen - sum(filters[f"dropped_{k}"] for k in ("unmapped", "secondary", "supplementary", "qcfail"))
    dup = filters["dropped_duplicate"] / primary if primary and not keep_duplicates else np.nan
    reached = filters["kept"] + filters["dropped_low_mapq"]
    low = filters["dropped_low_mapq"] / reached if reached else np.nan
    return float(dup), float(low)


def fragments_duplicate_fraction(lines: int, read_pairs: int) -> float:
    """``1 - lines / read pairs`` of a fragments file's count column; NaN when no count is above 1."""
    return 1.0 - lines / read_pairs if read_pairs > lines else float("nan")


# --------------------------------------------------------------------------- FRiP and cut-site density


def interval_sums(track: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> float:
    """Sum of ``track`` over disjoint, sorted ``[starts, ends)`` (float64)."""
    if len(starts) == 0:
        return 0.0
    mask = mask_from_intervals(starts, ends, track.size)
    return float(track[mask].sum(dtype=np.float64))


# --------------------------------------------------------------------------- TSS enrichment


def tss_positions(df: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{chrom: (tss int64[n], minus bool[n])}`` of a BED: ``start`` on ``+``/``.``, ``end - 1`` on ``-``; unique."""
    minus = (df["c5"] == "-").to_numpy() if "c5" in df else np.zeros(len(df), dtype=bool)
    tss = np.where(minus, df["end"].to_numpy() - 1, df["start"].to_numpy())
    table = pd.DataFrame({"chrom": df["chrom"].to_numpy(), "tss": tss, "minus": minus}).drop_duplicates()
    return {str(c): (s["tss"].to_numpy(np.int64), s["minus"].to_numpy()) for c, s in table.groupby("chrom")}


def usable_tss(
    tss: dict[str, tuple[np.ndarray, np.ndarray]],
    sizes: dict[str, int],
    regions: Regions | None = None,
    flank: int = TSS_FLANK,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Keep the TSSs whose window ``[tss - flank, tss + flank]`` lies on a chromosome of ``sizes`` (and a region)."""
    out = {}
    for chrom, (pos, minus) in tss.items():
        if chrom not in sizes:
            continue
        keep = (pos - flank >= 0) & (pos + flank < sizes[chrom])
        if regions is not None:
            if chrom not in regions:
                continue
            starts, ends = regions[chrom]
            idx = np.searchsorted(starts, pos - flank, side="right") - 1
            ok = idx >= 0
            ok[ok] = pos[ok] + flank < ends[idx[ok]]
            keep &= ok
        if keep.any():
            out[chrom] = (pos[keep], minus[keep])
    return out


def tss_profile(positions: np.ndarray, tss: np.ndarray, minus: np.ndarray, flank: int = TSS_FLANK) -> np.ndarray:
    """Cut sites at each offset from the TSSs of one chromosome, summed over TSSs: int64[2 * flank + 1].

    Offsets are oriented along each TSS's strand (downstream positive); index ``flank`` is the TSS.
    """
    pos = np.sort(np.asarray(positions, dtype=np.int64))
    profile = np.zeros(2 * flank + 1, dtype=np.int64)
    for a in range(0, tss.size, TSS_CHUNK):
        t, m = tss[a : a + TSS_CHUNK], minus[a : a + TSS_CHUNK]
        lo = np.searchsorted(pos, t - flank, side="left")
        hi = np.searchsorted(pos, t + flank, side="right")
        n = hi - lo
        owner = np.repeat(np.arange(t.size), n)
        within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        offset = pos[lo[owner] + within] - t[owner]
        offset = np.where(m[owner], -offset, offset)
        profile += np.bincount(offset + flank, minlength=2 * flank + 1)
    return profile


def track_tss_profile(track: np.ndarray, tss: np.ndarray, minus: np.ndarray, flank: int = TSS_FLANK) -> np.ndarray:
    """Per-base signal at each offset from the TSSs of one chromosome, summed: float64[2 * flank + 1]."""
    offsets = np.arange(-flank, flank + 1)
    profile = np.zeros(offsets.size, dtype=np.float64)
    for a in range(0, tss.size, TSS_CHUNK):
        t, m = tss[a : a + TSS_CHUNK], minus[a : a + TSS_CHUNK]
        rows = track[t[:, None] + offsets[None, :]].astype(np.float64)
        rows[m] = rows[m, ::-1]
        profile += rows.sum(axis=0)
    return profile


def tss_enrichment(profile: np.ndarray, edge: int = TSS_EDGE, smooth: int = TSS_SMOOTH) -> tuple[float, np.ndarray]:
    """TSS enrichment score of an aggregate profile, and the normalised smoothed profile.

    The profile is divided by the mean of its first and last ``edge`` bases (the
    background, 1.9-2 kb from the TSS), smoothed by a running mean of ``smooth``
    bases; the score is its maximum. NaN (and the unsmoothed zeros) when the
    background is empty.
    """
    profile = np.asarray(profile, dtype=np.float64)
    background = np.concatenate([profile[:edge], profile[-edge:]]).mean()
    if background <= 0:
        return float("nan"), np.zeros_like(profile)
    norm = profile / background
    smoothed = np.convolve(norm, np.ones(smooth) / smooth, mode="valid")
    pad = (norm.size - smoothed.size) // 2
    return float(smoothed.max()), np.pad(smoothed, (pad, norm.size - smoothed.size - pad), constant_values=np.nan)


# --------------------------------------------------------------------------- fragment lengths


def fraglen_summary(hist: np.ndarray | None) -> dict[str, float]:
    """Fragments profiled, median length, fractions below NFR_BP and in [NFR_BP, MONO_BP); NaN without a histogram."""
    if hist is None or int(np.sum(hist)) == 0:
        keys = ("fraglen_fragments", "fraglen_median", "fraglen_nfr_fraction", "fraglen_mono_fraction")
        return dict.fromkeys(keys, np.nan) | ({"fraglen_fragments": 0} if hist is not None else {})
    total = int(hist.sum())
    return {
        "fraglen_fragments": total,
        "fraglen_median": median_length(hist),
        "fraglen_nfr_fraction": float(hist[:NFR_BP].sum() / total),
        "fraglen_mono_fraction": float(hist[NFR_BP:MONO_BP].sum() / total),
    }


# --------------------------------------------------------------------------- one input


def _reads_qc(path, kind, sizes, min_mapq, keep_duplicates, threads, folder: Path) -> tuple[CutSiteSpill, dict]:
    """Spill an input's cut sites to ``folder`` (:class:`CutSiteSpill`) and return them with its counts columns.

    The file is read once, one chromosome (BAM) or chunk (fragments file) at a time, so memory stays flat in
    its size; :func:`cut_site_stats` then reads the spill back one chromosome at a time.
    """
    report: dict = {}
    spill = CutSiteSpill(folder, sizes)
    for chrom, pos in iter_cut_site_parts(path, kind, sizes, report, min_mapq, keep_duplicates, threads=threads):
        spill.add(chrom, pos)
    if kind == "bam":
        dup, low = bam_filter_fractions(report, keep_duplicates)
        counts = {"reads_used": report["kept"], "fragments_used": np.nan}
        counts |= {"duplicate_fraction": dup, "low_mapq_fraction": low}
    else:
        counts = {"reads_used": report["reads"], "fragments_used": report["used"]}
        counts |= {
            "duplicate_fraction": fragments_duplicate_fraction(report["used"], report["reads"]),
            "low_mapq_fraction": np.nan,
        }
    return spill, counts


def cut_site_stats(
    chromosomes: Iterable[tuple[str, np.ndarray]],
    sizes: dict[str, int],
    peaks: Regions | None = None,
    regions: pd.DataFrame | None = None,
    tss: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict:
    """FRiP, TSS profile and cut-site density from ``(chrom, cut sites)``, one whole chromosome at a time.

    Every figure is a sum over chromosomes, so only one chromosome's cut sites are held. With ``regions``
    (BED rows), the cut sites outside them are left out of ``cut_sites``, FRiP and the TSS profile; the
    density counts each region on its own (all cut sites in it), else each whole chromosome of ``sizes``.

    Returns ``cut_sites`` (int), ``frip`` (NaN without peaks or cut sites), ``tss_profile`` (int64 sum over
    TSSs, :func:`tss_profile`) and ``density`` (DataFrame: region, chrom, start, end, cut_sites, per_mb, one
    row per region in input order).
    """
    if regions is None:
        table = pd.DataFrame({"chrom": list(sizes), "start": 0, "end": list(sizes.values())})
        names = list(sizes)
    else:
        table, names = regions, region_names(regions)
    region_iv = merged_by_chrom(regions) if regions is not None else None
    r_chrom = table["chrom"].to_numpy()
    r_start, r_end = table["start"].to_numpy(np.int64), table["end"].to_numpy(np.int64)
    counts = np.zeros(len(table), dtype=np.int64)
    profile = np.zeros(2 * TSS_FLANK + 1, dtype=np.int64)
    n_used = inside = 0
    for chrom, pos in chromosomes:
        pos = np.sort(np.asarray(pos, dtype=np.int64))
        rows = np.flatnonzero(r_chrom == chrom)
        counts[rows] = np.searchsorted(pos, r_end[rows]) - np.searchsorted(pos, r_start[rows])
        if region_iv is not None:
            used = pos[starts_in_regions(pos, *region_iv[chrom])] if chrom in region_iv else pos[:0]
        else:
            used = pos
        n_used += used.size
        if peaks is not None and chrom in peaks:
            inside += int(starts_in_regions(used, *peaks[chrom]).sum())
        if tss and chrom in tss:
            profile += tss_profile(used, *tss[chrom])
    density = pd.DataFrame({"region": names, "chrom": r_chrom, "start": r_start, "end": r_end, "cut_sites": counts})
    length = r_end - r_start
    density["per_mb"] = np.where(length > 0, counts / np.maximum(length, 1) * 1e6, np.nan)
    frip = inside / n_used if peaks is not None and n_used else float("nan")
    return {"cut_sites": n_used, "frip": frip, "tss_profile": profile, "density": density}


def _bigwig_qc(
    path: Path,
    sizes: dict[str, int],
    peaks: Regions | None,
    regions: Regions | None,
    tss: dict[str, tuple[np.ndarray, np.ndarray]] | None,
) -> dict:
    """FRiP and TSS enrichment from a coverage bigWig's signal, one chromosome at a time."""
    in_peaks = total = 0.0
    profile = np.zeros(2 * TSS_FLANK + 1)
    bw = open_bigwig(path)
    try:
        for chrom, length in sizes.items():
            if regions is not None and chrom not in regions:
                continue
            track = read_bigwig(path, chrom, bw=bw)
            if regions is not None:
                track = np.where(mask_from_intervals(*regions[chrom], length), track, np.float32(0))
            total += float(track.sum(dtype=np.float64))
            if peaks is not None and chrom in peaks:
                in_peaks += interval_sums(track, *peaks[chrom])
            if tss is not None and chrom in tss:
                profile += track_tss_profile(track, *tss[chrom])
    finally:
        bw.close()
    return {
        "frip": in_peaks / total if peaks is not None and total > 0 else np.nan,
        "tss_enrichment": tss_enrichment(profile)[0] if tss else np.nan,
    }


def input_qc(
    path: str | Path,
    kind: str,
    sizes: dict[str, int],
    peaks: pd.DataFrame | None = None,
    regions: pd.DataFrame | None = None,
    tss: pd.DataFrame | None = None,
    min_mapq: int = 30,
    keep_duplicates: bool = False,
    max_fragments: int | None = MAX_FRAGMENTS,
    threads: int = 1,
) -> tuple[dict, np.ndarray | None]:
    """Compute the QC numbers of one input (see the module docstring) and its fragment-length histogram.

    Parameters
    ----------
    path, kind : str or Path, str
        BAM, fragments file or bigWig, and which (``bam``, ``fragments``, ``bigwig``).
    sizes : dict
        Selected chromosomes and lengths.
    peaks, regions, tss : DataFrame, optional
        Peaks for FRiP, target regions, TSSs (BED rows; strand in column 6).
    min_mapq, keep_duplicates : int, bool
        Read filters, as in the coverage stage.
    max_fragments : int or None
        Fragments profiled for the length histogram.

    Returns
    -------
    row : dict
        The columns of :data:`COLUMNS` except sample, depth and rep, and one
        ``cut_sites_per_mb:<region>`` per region.
    hist : int64[MAX_FRAGMENT + 1] or None
        Fragment lengths; None for single-end BAMs and bigWigs.
    """
    path = Path(path)
    peak_iv = merged_by_chrom(peaks) if peaks is not None else None
    region_iv = merged_by_chrom(regions) if regions is not None else None
    tss_iv = usable_tss(tss_positions(tss), sizes, region_iv) if tss is not None else None
    if tss is not None:
        n_tss = sum(t.size for t, _ in tss_iv.values())
        log.info(
            "%d of %d TSSs have their +-%d bp window on the chromosomes%s",
            n_tss,
            len(tss),
            TSS_FLANK,
            " and in the regions" if regions is not None else "",
        )
    row: dict = {"kind": kind, "input": str(path)}
    if kind == "bigwig":
        row |= {"paired": np.nan, "reads_used": np.nan, "fragments_used": np.nan, "cut_sites": np.nan}
        row |= {"duplicate_fraction": np.nan, "low_mapq_fraction": np.nan}
        row |= _bigwig_qc(path, sizes, peak_iv, region_iv, tss_iv)
        row |= fraglen_summary(None) | {"region_mb": np.nan, "cut_sites_per_mb": np.nan}
        log.info("%s: a bigWig: FRiP and TSS enrichment from its signal; no reads, fragments or cut-site counts", path)
        return row, None
    if kind not in ("bam", "fragments"):
        raise ValueError(f"kind {kind!r}: expected bam, fragments or bigwig")
    with tempfile.TemporaryDirectory(prefix="atacdenoise-qc-") as folder:
        spill, counts = _reads_qc(path, kind, sizes, min_mapq, keep_duplicates, threads, Path(folder))
        stats = cut_site_stats(((c, spill.take(c)) for c in sizes), sizes, peak_iv, regions, tss_iv)
    row |= {"paired": np.nan, **counts, "cut_sites": stats["cut_sites"]}
    row["frip"] = stats["frip"]
    row["tss_enrichment"] = tss_enrichment(stats["tss_profile"])[0] if tss_iv else np.nan
    hist = fragment_lengths(path, kind, sizes, region_iv, min_mapq, keep_duplicates, max_fragments)
    row["paired"] = hist is not None
    row |= fraglen_summary(hist)
    density = stats["density"]
    mb = float((density["end"] - density["start"]).sum()) / 1e6
    row |= {"region_mb": mb, "cut_sites_per_mb": density["cut_sites"].sum() / mb if mb else np.nan}
    row |= {f"{REGION_PREFIX}{r}": v for r, v in zip(density["region"], density["per_mb"])}
    return row, hist


# --------------------------------------------------------------------------- tables


def write_qc(row: dict, path: str | Path) -> None:
    """Write one QC row as a TSV (header + one line), atomically; NaN as ``NA``."""
    df = pd.DataFrame([row])
    first = [c for c in COLUMNS if c in df]
    df = df[first + [c for c in df.columns if c not in first]]
    with atomic_output(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")


def read_qc(path: str | Path) -> pd.DataFrame:
    """Read a QC table (one row or gathered); raise ``InputError`` when it is not one."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: QC table not found")
    df = pd.read_csv(path, sep="\t", dtype={"sample": str, "depth": str, "rep": str}, na_values=["NA"])
    missing = [c for c in COLUMNS if c not in df]
    if missing:
        raise InputError(f"{path}: not a QC table (columns {missing} missing); make it again with atacdenoise qc")
    return df


def gather_qc(paths: list[str | Path]) -> pd.DataFrame:
    """Concatenate QC tables: the fixed columns first, then every region's column (NA where an input lacks it)."""
    df = pd.concat([read_qc(p) for p in paths], ignore_index=True)
    regions = [c for c in df.columns if c.startswith(REGION_PREFIX)]
    return df[COLUMNS + regions]
