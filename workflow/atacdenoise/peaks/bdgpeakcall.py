"""The bdgpeakcall route: clean labels (AtacWorks') and the ``macs3_bdgpeakcall`` baseline on a coverage track.

The coverage track is written as a bedGraph, compared with a flat
per-chromosome λ by ``macs3 bdgcmp -m ppois`` (the per-base -log10 Poisson p of
the count given λ), and thresholded by ``macs3 bdgpeakcall -c 3 -l 200 -g 30``.
λ is the chromosome's mean coverage unless fixed per chromosome or scaled
(published label sets took λ from whole chromosomes; a slice of one needs the
original λ to reproduce them, see :func:`fit_lambda`).

The Poisson score MACS3 gives an integer count ``k`` (it truncates the pileup
to an integer) is ``-log10 P(X > k; λ)`` rounded to 5 decimals; with a flat λ
the peaks of this route are therefore exactly the runs where
``floor(track) >= k_min(λ)``, which :func:`fit_lambda` uses to search λ without
running MACS3.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from atacdenoise.atomic import scratch_dir
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import BigWigTracks, BigWigWriter, read_bigwig
from atacdenoise.io.intervals import NARROWPEAK_COLUMNS, mask_from_intervals, write_narrowpeak
from atacdenoise.io.regions import TargetRegions
from atacdenoise.log import progress
from atacdenoise.peaks.macs3 import (
    iter_bedgraph,
    macs3_executable,
    read_macs3_narrowpeak,
    run_macs3,
    write_bedgraph,
    write_runs,
)
from atacdenoise.peaks.threshold import call_peaks, segment_max

log = logging.getLogger(__name__)


def mean_coverage(track: np.ndarray) -> float:
    """Mean per-base value over the whole chromosome (float64 sum / length)."""
    track = np.asarray(track)
    return float(track.sum(dtype=np.float64) / track.size) if track.size else 0.0


def flat_lambda(track: np.ndarray, fixed: float | None = None, scale: float = 1.0) -> float:
    """Return the flat λ of one chromosome: ``fixed`` when given, else ``scale`` × the mean coverage."""
    if fixed is not None:
        if not fixed > 0:
            raise InputError(f"lambda must be > 0, got {fixed}")
        return float(fixed)
    if not scale > 0:
        raise InputError(f"--lambda-scale must be > 0, got {scale}")
    return scale * mean_coverage(track)


def ppois_score(counts: np.ndarray, lam: float) -> np.ndarray:
    """-log10 P(X > k; λ) for Poisson X, rounded to 5 decimals, as ``macs3 bdgcmp -m ppois`` scores count k.

    Parameters
    ----------
    counts : float[n]
        Pileup values; truncated to integers as MACS3 does.
    lam : float
        The Poisson mean (λ > 0).

    MACS3 sums the tail series to a relative 1e-5, so its scores can differ
    from these in the 5th decimal; only λ within that distance of a
    :func:`lambda_range` bound could call differently.
    """
    k = np.floor(np.asarray(counts, dtype=np.float64))
    return np.round(-stats.poisson.logsf(k, lam) / np.log(10), 5)


def min_count(lam: float, cutoff: float = 3.0) -> int:
    """Smallest integer count whose ppois score against ``lam`` passes ``cutoff`` (MACS3's float32 ``>=``).

    With a flat λ the bdgpeakcall route calls exactly the runs where
    ``floor(track) >= min_count(λ)``.
    """
    hi = int(lam + 20 * np.sqrt(lam) + 20 * max(cutoff, 1) + 20)
    k = np.arange(hi + 1)
    ok = np.flatnonzero(ppois_score(k, lam).astype(np.float32) >= np.float32(cutoff))
    return int(ok[0])


def lambda_bound(k: int, cutoff: float = 3.0) -> float:
    """Largest λ at which count ``k`` still passes ``cutoff`` (0 when it never does).

    The score of a count falls as λ grows; rounding to 5 decimals makes the
    effective cutoff ``cutoff - 5e-6``.
    """
    if k < 0:
        return 0.0
    target = cutoff - 5e-6
    f = lambda lam: -stats.poisson.logsf(k, lam) / np.log(10) - target  # noqa: E731
    lo = 1e-12
    if f(lo) <= 0:
        return 0.0
    hi = 1.0
    while f(hi) > 0:
        hi *= 2
    return float(optimize.brentq(f, lo, hi, xtol=1e-12, rtol=1e-12))


def lambda_range(k: int, cutoff: float = 3.0) -> tuple[float, float]:
    """Interval ``(lo, hi]`` of the λ whose :func:`min_count` is ``k``.

    ``min_count(λ) = k`` exactly when count k passes and count k - 1 does not.
    """
    return lambda_bound(k - 1, cutoff), lambda_bound(k, cutoff)


def peak_overlap(
    track: np.ndarray, truth_cumsum: np.ndarray, cutoff: float, min_length: int, max_gap: int
) -> tuple[int, int]:
    """Bases in called peaks, and of those inside the truth: ``(|called|, |called ∩ truth|)``.

    ``truth_cumsum`` is ``int64[n + 1]``, the running count of truth bases
    (prefix sums make the intersection a sum over the called intervals).
    """
    starts, ends = call_peaks(track, cutoff, min_length, max_gap)
    return int((ends - starts).sum()), int((truth_cumsum[ends] - truth_cumsum[starts]).sum())


def jaccard(inter: float, called: float, truth: float) -> float:
    """Return the Jaccard index |A ∩ B| / |A ∪ B| from the sizes; 1 when both are empty."""
    union = called + truth - inter
    return float(inter / union) if union else 1.0


def fit_lambda(
    tracks: Mapping[str, np.ndarray],
    published: pd.DataFrame,
    cutoff: float = 3.0,
    min_length: int = 200,
    max_gap: int = 30,
    mode: str = "chrom",
    span: tuple[float, float] = (0.25, 4.0),
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Fit the flat λ per chromosome that best reproduces a published peak set (base-level Jaccard).

    With a flat λ the route's peaks depend only on the integer count
    threshold :func:`min_count`, so every threshold between those of
    ``span[0]`` and ``span[1]`` × the mean is tried with :func:`call_peaks`
    (no MACS3) and λ is reported as the middle of the λ interval that gives the
    best threshold. Check the result with the real route (``atacdenoise peaks
    --lambda ...``).

    Parameters
    ----------
    tracks : Mapping chrom -> float[n_bases]
        Coverage of each chromosome (read lazily if the mapping is lazy; one is
        held at a time).
    published : DataFrame
        Peaks (chrom, start, end) to reproduce.
    cutoff, min_length, max_gap
        The route's ``bdgpeakcall`` settings.
    mode : {"chrom", "scale"}
        ``chrom``: one λ per chromosome, chosen together to maximise the
        Jaccard over all chromosomes (Dinkelbach iterations on the ratio);
        ``scale``: one factor applied to every chromosome's mean.
    span : (float, float)
        Range of λ / mean searched.

    Returns
    -------
    table : DataFrame
        Per chromosome: ``chrom, length, mean, lambda, lambda_low, lambda_high,
        ratio, min_count_mean, min_count_fit, jaccard_mean, jaccard_fit``
        (``(lambda_low, lambda_high]`` gives the same peaks as ``lambda``).
    overall : dict
        ``jaccard_mean``, ``jaccard_fit`` over the union of chromosomes, and
        ``scale`` (mode ``scale``) or NaN.
    """
    if mode not in ("chrom", "scale"):
        raise ValueError(f"mode must be 'chrom' or 'scale', got {mode!r}")
    rows, options = [], {}
    for chrom in tracks:
        track = np.asarray(tracks[chrom])
        n = track.size
        sub = published[published["chrom"] == chrom]
        truth = mask_from_intervals(sub["start"].to_numpy(), sub["end"].to_numpy(), n)
        cum = np.concatenate(([0], np.cumsum(truth, dtype=np.int64)))
        mean = mean_coverage(track)
        if not mean > 0:
            log.warning("%s: no coverage; left out of the fit", chrom)
            continue
        k_mean = min_count(mean, cutoff)
        ks = np.arange(min_count(span[0] * mean, cutoff), min_count(span[1] * mean, cutoff) + 1)
        called, inter = np.array([peak_overlap(track, cum, k, min_length, max_gap) for k in ks]).T.reshape(2, -1)
        options[chrom] = (ks, called, inter, int(cum[-1]))
        rows.append({"chrom": chrom, "length": n, "mean": mean, "min_count_mean": k_mean})
        log.info("%s: mean %.4g, %d thresholds tried (counts %d..%d)", chrom, mean, ks.size, ks[0], ks[-1])
    if not rows:
        raise InputError("no chromosome with coverage: nothing to fit")
    table = pd.DataFrame(rows)
    chosen = _fit_scale(table, options, cutoff, span) if mode == "scale" else _fit_chrom(options)
    table["min_count_fit"] = table["chrom"].map(chosen)
    bounds = {k: lambda_range(k, cutoff) for k in set(chosen.values())}
    table["lambda_low"] = [bounds[k][0] for k in table["min_count_fit"]]
    table["lambda_high"] = [bounds[k][1] for k in table["min_count_fit"]]
    scale = float("nan")
    if mode == "scale":
        lo = (table["lambda_low"] / table["mean"]).max()
        hi = (table["lambda_high"] / table["mean"]).min()
        scale = (lo + hi) / 2
        table["lambda"] = scale * table["mean"]
    else:
        table["lambda"] = (table["lambda_low"] + table["lambda_high"]) / 2
    table["ratio"] = table["lambda"] / table["mean"]
    sums = {"mean": [0, 0, 0], "fit": [0, 0, 0]}
    for key, col in (("mean", "min_count_mean"), ("fit", "min_count_fit")):
        values = []
        for chrom, k in zip(table["chrom"], table[col]):
            ks, called, inter, truth = options[chrom]
            i = np.searchsorted(ks, k)
            c, x = (
                (called[i], inter[i])
                if i < ks.size and ks[i] == k
                else _overlap_at(tracks[chrom], published, chrom, k, cutoff, min_length, max_gap)
            )
            values.append(jaccard(x, c, truth))
            sums[key] = [sums[key][0] + x, sums[key][1] + c, sums[key][2] + truth]
        table[f"jaccard_{key}"] = values
    overall = {"jaccard_mean": jaccard(*sums["mean"]), "jaccard_fit": jaccard(*sums["fit"]), "scale": scale}
    cols = [
        "chrom",
        "length",
        "mean",
        "lambda",
        "lambda_low",
        "lambda_high",
        "ratio",
        "min_count_mean",
        "min_count_fit",
        "jaccard_mean",
        "jaccard_fit",
    ]
    return table[cols], overall


def _overlap_at(track, published, chrom, k, cutoff, min_length, max_gap) -> tuple[int, int]:
    """Return (called, intersection) at a threshold outside the searched span (the mean's, when span excludes 1)."""
    track = np.asarray(track)
    sub = published[published["chrom"] == chrom]
    truth = mask_from_intervals(sub["start"].to_numpy(), sub["end"].to_numpy(), track.size)
    return peak_overlap(track, np.concatenate(([0], np.cumsum(truth, dtype=np.int64))), k, min_length, max_gap)


def _fit_chrom(options: dict) -> dict[str, int]:
    """Per chromosome thresholds maximising the overall Jaccard ΣI / ΣU (Dinkelbach: argmax ΣI - tΣU, t <- ratio)."""
    t, chosen = 0.0, {}
    for _ in range(100):
        chosen = {}
        for chrom, (ks, called, inter, truth) in options.items():
            union = called + truth - inter
            chosen[chrom] = int(ks[np.argmax(inter - t * union)])
        i_sum = u_sum = 0
        for chrom, (ks, called, inter, truth) in options.items():
            j = np.searchsorted(ks, chosen[chrom])
            i_sum += inter[j]
            u_sum += called[j] + truth - inter[j]
        new = i_sum / u_sum if u_sum else 1.0
        if new <= t + 1e-15:
            break
        t = new
    return chosen


def _fit_scale(table: pd.DataFrame, options: dict, cutoff: float, span: tuple[float, float]) -> dict[str, int]:
    """One factor s for all chromosomes (λ = s × mean): the best s among the midpoints between threshold changes."""
    kmax = max(int(ks[-1]) for ks, *_ in options.values())
    bound = np.array([lambda_bound(k, cutoff) for k in range(kmax + 1)])  # count k passes iff λ <= bound[k]
    means = dict(zip(table["chrom"], table["mean"]))
    breaks = np.unique(np.concatenate([bound / means[c] for c in options]))
    breaks = breaks[(breaks > span[0]) & (breaks < span[1])]
    grid = np.concatenate((breaks, [span[1]]))
    candidates = (np.concatenate(([span[0]], grid[:-1])) + grid) / 2
    best, best_j = {}, -1.0
    for s in candidates:
        chosen, i_sum, u_sum = {}, 0, 0
        for chrom, (ks, called, inter, truth) in options.items():
            k = int(np.searchsorted(bound, s * means[chrom], side="left"))
            k = min(max(k, int(ks[0])), int(ks[-1]))
            j = k - int(ks[0])
            chosen[chrom] = k
            i_sum += inter[j]
            u_sum += called[j] + truth - inter[j]
        jac = i_sum / u_sum if u_sum else 1.0
        if jac > best_j:
            best, best_j = chosen, jac
    return best


@dataclass
class ChromPeaks:
    """Result of one chromosome of the bdgpeakcall route."""

    chrom: str
    lam: float
    peaks: pd.DataFrame  #: narrowPeak columns
    pval: tuple[np.ndarray, np.ndarray, np.ndarray]  #: -log10 p runs (starts, ends, values)


def bdgpeakcall_chrom(
    chrom: str,
    track: np.ndarray,
    lam: float,
    workdir: str | Path,
    cutoff: float = 3.0,
    min_length: int = 200,
    max_gap: int = 30,
) -> ChromPeaks:
    """Peaks and -log10 p runs of one chromosome by ``macs3 bdgcmp -m ppois`` + ``macs3 bdgpeakcall``.

    Parameters
    ----------
    chrom : str
    track : float[n_bases]
        Coverage of the whole chromosome (integer counts; MACS3 truncates).
    lam : float
        Flat λ (> 0). A chromosome without coverage (λ = 0) gets no peaks and a
        zero p track without running MACS3.
    workdir : Path
        Scratch directory (its files for this chromosome are removed after).
    cutoff, min_length, max_gap
        ``bdgpeakcall -c``, ``-l``, ``-g``.
    """
    n = int(np.asarray(track).size)
    empty_runs = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if not lam > 0:
        log.warning("%s: no coverage (lambda 0): no peaks", chrom)
        return ChromPeaks(chrom, lam, pd.DataFrame(columns=NARROWPEAK_COLUMNS), empty_runs)
    work = Path(workdir)
    treat, control = work / f"{chrom}.treat.bdg", work / f"{chrom}.lambda.bdg"
    pval, peaks = work / f"{chrom}.ppois.bdg", work / f"{chrom}.narrowPeak"
    with open(treat, "w") as fh:
        write_bedgraph(fh, chrom, track)
    control.write_text(f"{chrom}\t0\t{n}\t{float(np.float32(lam))!r}\n")
    try:
        run_macs3(["bdgcmp", "-t", treat, "-c", control, "-m", "ppois", "--outdir", work, "-o", pval.name])
        run_macs3(
            [
                "bdgpeakcall",
                "-i",
                pval,
                "-c",
                cutoff,
                "-l",
                min_length,
                "-g",
                max_gap,
                "--no-trackline",
                "--outdir",
                work,
                "-o",
                peaks.name,
            ]
        )
        runs = next((r[1:] for r in iter_bedgraph(pval) if r[0] == chrom), empty_runs)
        df = read_macs3_narrowpeak(peaks, {chrom: n})
    finally:
        for f in (treat, control, pval, peaks):
            f.unlink(missing_ok=True)
    return ChromPeaks(chrom, lam, df, runs)


# --------------------------------------------------------------------------- a whole track


def parse_lambdas(items: list[str], table: Path | None, sizes: dict[str, int]) -> dict[str, float]:
    """Read the fixed λ per chromosome from a ``fit-lambda`` table, then from ``CHR=VALUE`` items (these win)."""
    fixed: dict[str, float] = {}
    if table is not None:
        if not table.exists():
            raise InputError(f"{table}: lambda table not found")
        df = pd.read_csv(table, sep="\t", dtype={"chrom": str})
        if not {"chrom", "lambda"} <= set(df.columns):
            raise InputError(
                f"{table}: expected a TSV with columns chrom and lambda (atacdenoise fit-lambda --out), "
                f"found {list(df.columns)}"
            )
        df = df[df["chrom"].isin(list(sizes))]
        fixed.update({c: float(v) for c, v in zip(df["chrom"], df["lambda"])})
    for item in items:
        chrom, sep, value = item.partition("=")
        try:
            lam = float(value)
        except ValueError:
            lam = float("nan")
        if not sep or not lam > 0:
            raise InputError(f"--lambda {item!r}: expected CHR=VALUE with a positive number, e.g. chr1=7.35")
        if chrom not in sizes:
            raise InputError(
                f"--lambda {item!r}: {chrom} is not among the selected chromosomes ({', '.join(list(sizes)[:5])} ...)"
            )
        fixed[chrom] = lam
    return fixed


#: bases per bin when looking for chromosomes whose coverage fills only some windows
PARTIAL_BIN = 1_000_000


def warn_partial_coverage(track: np.ndarray, chrom: str, source: str | Path) -> None:
    """Warn when most 1-Mb bins of a chromosome have no coverage: its mean is then a poor λ for the covered ones."""
    n = track.size // PARTIAL_BIN
    if n < 2:
        return
    sums = track[: n * PARTIAL_BIN].reshape(n, PARTIAL_BIN).sum(axis=1, dtype=np.float64)
    covered = sums > 0
    if covered.any() and covered.sum() < n / 2:
        inside = sums[covered].sum() / (covered.sum() * PARTIAL_BIN)
        log.warning(
            "%s %s: only %d of %d 1-Mb bins have coverage; the chromosome's mean (the flat lambda) is %.3g x the "
            "covered bins' mean, so the labels there will be far too many peaks: set peaks.labels.lambda for %s "
            "(atacdenoise fit-lambda) or peaks.labels.lambda_scale",
            source,
            chrom,
            int(covered.sum()),
            n,
            mean_coverage(track) / inside,
            chrom,
        )


def label_chrom(
    track: np.ndarray,
    chrom: str,
    workdir: Path,
    fixed: float | None = None,
    lambda_scale: float = 1.0,
    cutoff: float = 3.0,
    min_length: int = 200,
    max_gap: int = 30,
    source: str | Path = "track",
    inside: np.ndarray | None = None,
) -> ChromPeaks:
    """Run the route on one chromosome's coverage and fill the narrowPeak's signal and pval.

    The signal is the peak's max coverage, the pval its max -log10 p. ``inside``
    (bool per base) marks the target regions: λ is the mean over them only, as
    the rest of the chromosome was not measured.
    """
    if np.any(track != np.floor(track)):
        log.warning("%s %s: non-integer coverage; MACS3 ppois truncates each value to an integer count", source, chrom)
    lam = flat_lambda(track if inside is None else track[inside], fixed, lambda_scale)
    if fixed is None and inside is None:
        warn_partial_coverage(track, chrom, source)
    result = bdgpeakcall_chrom(chrom, track, lam, workdir, cutoff, min_length, max_gap)
    df = result.peaks
    if len(df):
        starts, ends = df["start"].to_numpy(np.int64), df["end"].to_numpy(np.int64)
        df["signal"] = segment_max(track, starts, ends).astype(np.float64)
        rs, re_, rv = result.pval
        # peaks are unions of whole runs of the p track: the runs from the one at each start to the one before each end
        first, stop = np.searchsorted(re_, starts, side="right"), np.searchsorted(rs, ends, side="left")
        df["pval"] = segment_max(rv, first, stop).astype(np.float64)
        df["qval"] = -1.0
    log.info(
        "%s: mean coverage %.4g%s, lambda %.6g (%s), %d peaks, %s bp",
        chrom,
        mean_coverage(track if inside is None else track[inside]),
        "" if inside is None else " in the target regions",
        lam,
        "fixed" if fixed is not None else f"{lambda_scale:g} x mean",
        len(df),
        f"{int((df['end'] - df['start']).sum()) if len(df) else 0:,}",
    )
    return result


def call_track_peaks(
    track: str | Path,
    header: dict[str, int],
    sizes: dict[str, int],
    out_peaks: str | Path,
    out_pval: str | Path,
    fixed: dict[str, float] | None = None,
    lambda_scale: float = 1.0,
    cutoff: float = 3.0,
    min_length: int = 200,
    max_gap: int = 30,
    name: str = "peaks",
    tmpdir: Path | None = None,
    threads: int = 1,
    target: TargetRegions | None = None,
) -> pd.DataFrame:
    """Call the route on every chromosome of ``sizes`` of a coverage bigWig; write the narrowPeak and the p bigWig.

    Chromosomes run through MACS3 ``threads`` at a time; the p bigWig
    (``header`` lists its chromosomes) and the narrowPeak (peaks named
    ``{name}_peak_{i}``) are written atomically. Returns the peaks. With
    ``target`` regions, λ is taken over them (see :func:`label_chrom`).
    """
    fixed = fixed or {}
    macs3_executable()
    if tmpdir is not None:
        tmpdir.mkdir(parents=True, exist_ok=True)
    tables = []

    def one(chrom: str, work: Path) -> ChromPeaks:
        if target is None:
            values = read_bigwig(track, chrom)
            return label_chrom(values, chrom, work, fixed.get(chrom), lambda_scale, cutoff, min_length, max_gap, track)
        # only the span of the target regions: the rest of the chromosome holds no data
        lo, hi = target.span(chrom)
        inside = mask_from_intervals(target.starts[chrom] - lo, target.ends[chrom] - lo, hi - lo)
        values = read_bigwig(track, chrom, lo, hi)
        res = label_chrom(
            values, chrom, work, fixed.get(chrom), lambda_scale, cutoff, min_length, max_gap, track, inside
        )
        rs, re_, rv = res.pval
        peaks = (
            res.peaks.assign(start=res.peaks["start"] + lo, end=res.peaks["end"] + lo) if len(res.peaks) else res.peaks
        )
        return ChromPeaks(res.chrom, res.lam, peaks, (rs + lo, re_ + lo, rv))

    with (
        scratch_dir("atacdenoise-peaks", tmpdir) as work,
        BigWigWriter(out_pval, header) as writer,
        ThreadPoolExecutor(threads) as pool,
    ):
        jobs = pool.map(lambda c: one(c, Path(work)), sizes)
        for result in progress(jobs, total=len(sizes), desc="peaks", unit="chrom"):
            write_runs(writer, result.chrom, sizes[result.chrom], result.pval)
            tables.append(result.peaks)
    kept = [t for t in tables if len(t)]
    peaks = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(columns=NARROWPEAK_COLUMNS)
    peaks["name"] = [f"{name}_peak_{i}" for i in range(1, len(peaks) + 1)]
    write_narrowpeak(peaks, out_peaks)
    return peaks


def lambda_fit_table(
    track: str | Path,
    published: pd.DataFrame,
    sizes: dict[str, int],
    cutoff: float = 3.0,
    min_length: int = 200,
    max_gap: int = 30,
    mode: str = "chrom",
    span: tuple[float, float] = (0.5, 2.0),
    source: str | Path = "published peaks",
) -> pd.DataFrame:
    """:func:`fit_lambda` on a coverage bigWig (one chromosome in memory at a time), with a closing row ``all``.

    Chromosomes without published peaks are left out (warned). The row ``all``
    holds the Jaccard over all chromosomes at the mean and fitted (and, in mode
    ``scale``, the fitted ratio).
    """
    chroms = [c for c in sizes if c in set(published["chrom"])]
    skipped = [c for c in sizes if c not in chroms]
    if skipped:
        log.warning(
            "%s: no published peaks on %d chromosome(s) (e.g. %s): left out of the fit",
            source,
            len(skipped),
            skipped[0],
        )
    table, overall = fit_lambda(BigWigTracks(track, chroms), published, cutoff, min_length, max_gap, mode, span)
    for row in table.to_dict("records"):
        log.info(
            "%s: mean %.4g, lambda %.6g (%.4g x mean; any in (%.6g, %.6g]), Jaccard %.4f at the mean, %.4f fitted",
            row["chrom"],
            row["mean"],
            row["lambda"],
            row["ratio"],
            row["lambda_low"],
            row["lambda_high"],
            row["jaccard_mean"],
            row["jaccard_fit"],
        )
    log.info(
        "all chromosomes: Jaccard %.4f at the mean, %.4f fitted (mode %s)",
        overall["jaccard_mean"],
        overall["jaccard_fit"],
        mode,
    )
    total = {
        "chrom": "all",
        "length": int(table["length"].sum()),
        "jaccard_mean": overall["jaccard_mean"],
        "jaccard_fit": overall["jaccard_fit"],
    }
    if mode == "scale":
        total["ratio"] = overall["scale"]
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)
