"""MACS3 peak routes: clean labels (bdgcmp ppois + bdgpeakcall) and the callpeak baseline.

Two ways to call peaks, both through the ``macs3`` command line (MACS3 has no
stable in-process API):

* **bdgpeakcall route** (AtacWorks' clean labels, and a baseline on the noisy
  track): the coverage track is written as a bedGraph, compared with a flat
  per-chromosome λ by ``macs3 bdgcmp -m ppois`` (the per-base -log10 Poisson p
  of the count given λ), and thresholded by ``macs3 bdgpeakcall -c 3 -l 200
  -g 30``. λ is the chromosome's mean coverage unless fixed per chromosome or
  scaled (published label sets took λ from whole chromosomes; a slice of one
  needs the original λ to reproduce them, see :func:`fit_lambda`).
* **callpeak route** (the MACS3 baseline): the Tn5 cut sites as a BED of 1-bp
  ``+`` strand reads, ``macs3 callpeak -f BED --nomodel --shift -75 --extsize
  150 --keep-dup all -p 0.01 --call-summits -B`` (ENCODE's ATAC setting; BAMPE
  would ignore the shift), then ``macs3 bdgcmp -m ppois`` of its treatment
  pileup against its local λ for the per-base -log10 p track.

MACS3 reads a bedGraph as consecutive runs: a missing stretch takes the value
of the *next* line, so every bedGraph written here covers every base of the
chromosome, zeros included. The Poisson score MACS3 gives an integer count
``k`` (it truncates the pileup to an integer) is ``-log10 P(X > k; λ)``
rounded to 5 decimals; with a flat λ the peaks of the first route are
therefore exactly the runs where ``floor(track) >= k_min(λ)``, which
:func:`fit_lambda` uses to search λ without running MACS3.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import BigWigWriter
from atacdenoise.io.intervals import NARROWPEAK_COLUMNS, mask_from_intervals, run_lengths
from atacdenoise.peaks.threshold import call_peaks

log = logging.getLogger(__name__)

#: rows per chunk when streaming a bedGraph back in
BEDGRAPH_CHUNK = 2_000_000

#: bases painted at a time when turning runs into bigWig entries
WINDOW = 10_000_000

#: MACS3's shorthand effective genome sizes (``macs3 callpeak -g``)
GENOME_SIZES = {"hs": 2.7e9, "mm": 1.87e9, "ce": 9e7, "dm": 1.2e8}


class Macs3Error(InputError):
    """A ``macs3`` command failed; the message holds the command line and MACS3's stderr."""


# --------------------------------------------------------------------------- running MACS3


def macs3_executable() -> str:
    """Path of the ``macs3`` command: on PATH, else beside the running Python (a venv's bin/)."""
    found = shutil.which("macs3") or shutil.which("macs3", path=str(Path(sys.executable).parent))
    if not found:
        raise InputError(
            "macs3 not found on PATH nor beside this Python; install it (pip install 'macs3>=3.0.4,<3.1') "
            "or activate the environment that has it"
        )
    return found


def run_macs3(args: list[str], cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run ``macs3 <args>``, logging the exact command line; raise :class:`Macs3Error` on failure.

    MACS3 logs progress to stderr; it is passed on at debug level (``-v``).
    """
    cmd = [macs3_executable(), *map(str, args)]
    log.info("running: %s", shlex.join(cmd))
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.stderr:
        log.debug("macs3 %s stderr:\n%s", args[0], proc.stderr.rstrip())
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-20:])
        raise Macs3Error(f"macs3 {args[0]} failed (exit status {proc.returncode}): {shlex.join(cmd)}\n{tail}")
    return proc


# --------------------------------------------------------------------------- bedGraph I/O


def format_values(values: np.ndarray) -> np.ndarray:
    """Text of float32 values that MACS3 parses back to the same float32 (exact decimal of the value).

    Formats each distinct value once (coverage tracks have few), so the cost is
    in the number of distinct values, not of runs.
    """
    uniq, inverse = np.unique(np.asarray(values, dtype=np.float32), return_inverse=True)
    text = np.array([repr(float(u)) for u in uniq], dtype=object)
    return text[inverse]


def write_bedgraph(fh, chrom: str, values: np.ndarray) -> int:
    """Append one whole chromosome as bedGraph runs (zeros included) to an open text file.

    Parameters
    ----------
    fh : text file
        Opened for writing.
    chrom : str
        Chromosome name.
    values : float[n_bases]
        Per-base values from base 0 to the chromosome end.

    Returns
    -------
    int : number of lines written.
    """
    starts, ends, vals = run_lengths(np.asarray(values, dtype=np.float32))
    if starts.size == 0:
        return 0
    df = pd.DataFrame({"chrom": chrom, "start": starts, "end": ends, "value": format_values(vals)})
    df.to_csv(fh, sep="\t", header=False, index=False)
    return int(starts.size)


def iter_bedgraph(
    path: str | Path, chunksize: int = BEDGRAPH_CHUNK
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Stream a bedGraph chromosome by chromosome: ``(chrom, starts, ends, values)`` per chromosome.

    ``track``/``browser``/``#`` lines are skipped; the file must be grouped by
    chromosome (MACS3's are). Memory is bounded by the largest chromosome.
    """
    reader = pd.read_csv(
        path,
        sep="\t",
        header=None,
        names=["chrom", "start", "end", "value"],
        usecols=[0, 1, 2, 3],
        dtype={"chrom": str, "start": np.int64, "end": np.int64, "value": np.float32},
        comment="#",
        chunksize=chunksize,
        skiprows=_header_lines(path),
    )
    current, parts = None, []
    seen: set[str] = set()
    for chunk in reader:
        names = chunk["chrom"].to_numpy()
        cuts = np.flatnonzero(names[1:] != names[:-1]) + 1
        for block in np.split(np.arange(len(chunk)), cuts):
            if block.size == 0:
                continue
            chrom = names[block[0]]
            if chrom != current:
                if current is not None:
                    yield (current, *_concat(parts))
                if chrom in seen:
                    raise InputError(f"{path}: bedGraph is not grouped by chromosome ({chrom} appears twice)")
                seen.add(chrom)
                current, parts = chrom, []
            sub = chunk.iloc[block]
            parts.append((sub["start"].to_numpy(), sub["end"].to_numpy(), sub["value"].to_numpy()))
    if current is not None:
        yield (current, *_concat(parts))


def _header_lines(path: str | Path) -> int:
    """Number of leading ``track``/``browser`` lines."""
    n = 0
    with open(path) as fh:
        for line in fh:
            if not line.startswith(("track", "browser")):
                break
            n += 1
    return n


def _concat(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def runs_to_array(starts: np.ndarray, ends: np.ndarray, values: np.ndarray, length: int) -> np.ndarray:
    """Paint sorted, non-overlapping bedGraph runs into float32[length]; bases outside every run are 0, runs clipped."""
    out = np.zeros(length, dtype=np.float32)
    s = np.clip(np.asarray(starts, dtype=np.int64), 0, length)
    e = np.clip(np.asarray(ends, dtype=np.int64), 0, length)
    keep = e > s
    s, e, v = s[keep], e[keep], np.asarray(values, dtype=np.float32)[keep]
    lengths = e - s
    offsets = np.cumsum(lengths) - lengths
    pos = np.repeat(s - offsets, lengths) + np.arange(int(lengths.sum()))
    out[pos] = np.repeat(v, lengths)
    return out


def write_runs(
    writer: BigWigWriter, chrom: str, length: int, runs: tuple[np.ndarray, np.ndarray, np.ndarray], window: int = WINDOW
) -> None:
    """Add sorted, non-overlapping runs of one chromosome to a bigWig, painted window by window (bounded memory)."""
    starts, ends, values = (np.asarray(r) for r in runs)
    for w0 in range(0, length, window):
        w1 = min(w0 + window, length)
        lo, hi = np.searchsorted(ends, w0, side="right"), np.searchsorted(starts, w1, side="left")
        if hi > lo:
            writer.add(chrom, w0, runs_to_array(starts[lo:hi] - w0, ends[lo:hi] - w0, values[lo:hi], w1 - w0))


def bedgraph_to_bigwig(
    bdg: str | Path, sizes: dict[str, int], out: str | Path, workdir: str | Path, header: dict[str, int] | None = None
) -> dict[str, int]:
    """Convert a (MACS3) bedGraph into a bigWig of the chromosomes of ``sizes``, in the order of ``sizes``.

    Chromosomes not in ``sizes`` are skipped, runs past a chromosome end are
    clipped, bases without a run are 0 (not stored). The bedGraph is streamed
    and each chromosome parked in ``workdir`` as ``.npz`` runs, because MACS3
    sorts chromosomes by name while a bigWig wants the sizes order.

    ``header`` (default ``sizes``) lists the bigWig's chromosomes, a superset
    of ``sizes`` in the same order (e.g. the whole sizes file).

    Returns
    -------
    dict : chromosome -> runs read.
    """
    workdir = Path(workdir)
    parked: dict[str, Path] = {}
    for chrom, s, e, v in iter_bedgraph(bdg):
        if chrom not in sizes:
            log.debug("%s: %s not in the genome sizes, skipped", bdg, chrom)
            continue
        parked[chrom] = workdir / f"runs.{len(parked)}.npz"
        np.savez(parked[chrom], s=s, e=e, v=v)
    counts = {}
    with BigWigWriter(out, header or sizes) as writer:
        for chrom, length in sizes.items():
            if chrom not in parked:
                continue
            with np.load(parked[chrom]) as z:
                counts[chrom] = int(z["s"].size)
                write_runs(writer, chrom, length, (z["s"], z["e"], z["v"]))
            parked[chrom].unlink()
    return counts


# --------------------------------------------------------------------------- λ


def mean_coverage(track: np.ndarray) -> float:
    """Mean per-base value over the whole chromosome (float64 sum / length)."""
    track = np.asarray(track)
    return float(track.sum(dtype=np.float64) / track.size) if track.size else 0.0


def flat_lambda(track: np.ndarray, fixed: float | None = None, scale: float = 1.0) -> float:
    """The flat λ of one chromosome: ``fixed`` when given, else ``scale`` × the mean coverage."""
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
    """|A ∩ B| / |A ∪ B| from the sizes; 1 when both are empty."""
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
    """The flat λ per chromosome that best reproduces a published peak set (base-level Jaccard).

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
    """(called, intersection) at a threshold outside the searched span (the mean's, when span excludes 1)."""
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


# --------------------------------------------------------------------------- the bdgpeakcall route


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


def read_macs3_narrowpeak(path: str | Path, sizes: dict[str, int]) -> pd.DataFrame:
    """A MACS3 narrowPeak, restricted to ``sizes``, ends clipped to the chromosome, sorted in ``sizes`` order.

    MACS3 knows no chromosome lengths for BED input, so a peak can run past
    an end; it is clipped here.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=NARROWPEAK_COLUMNS)
    df = pd.read_csv(path, sep="\t", header=None, names=NARROWPEAK_COLUMNS, comment="#", dtype={"chrom": str})
    df = df[df["chrom"].isin(list(sizes))].copy()
    length = df["chrom"].map(sizes).astype(np.int64)
    df["start"] = df["start"].clip(lower=0)
    df["end"] = np.minimum(df["end"].to_numpy(), length.to_numpy())
    df = df[df["end"] > df["start"]]
    df["summit"] = np.minimum(df["summit"], df["end"] - df["start"] - 1)
    order = {c: i for i, c in enumerate(sizes)}
    df = df.assign(_o=df["chrom"].map(order)).sort_values(["_o", "start", "end"], kind="stable").drop(columns="_o")
    return df.reset_index(drop=True)


# --------------------------------------------------------------------------- the callpeak route


def write_cut_bed(fh, chrom: str, cuts: np.ndarray) -> int:
    """Append cut sites as 1-bp ``+`` strand BED6 reads (``cut, cut + 1``), sorted.

    With ``--shift -75 --extsize 150`` MACS3 turns each into the 150-bp window
    ``[cut - 75, cut + 75)`` centred on the cut.
    """
    cuts = np.sort(np.asarray(cuts, dtype=np.int64))
    if cuts.size == 0:
        return 0
    pd.DataFrame({"c": chrom, "s": cuts, "e": cuts + 1, "n": ".", "x": 0, "t": "+"}).to_csv(
        fh, sep="\t", header=False, index=False
    )
    return int(cuts.size)


def parse_genome_size(text: str | float | None, sizes: dict[str, int]) -> float:
    """``hs``/``mm``/``ce``/``dm`` or a number (``2.7e9``); None: the total length of ``sizes``."""
    if text is None:
        return float(sum(sizes.values()))
    if isinstance(text, str) and text in GENOME_SIZES:
        return GENOME_SIZES[text]
    try:
        value = float(text)
    except ValueError:
        raise InputError(
            f"--genome-size {text!r}: expected a number (e.g. 2.7e9) or one of {', '.join(GENOME_SIZES)}"
        ) from None
    if not value > 0:
        raise InputError(f"--genome-size must be > 0, got {text}")
    return value


def callpeak_args(
    bed: str | Path,
    name: str,
    outdir: str | Path,
    genome_size: float,
    pvalue: float = 0.01,
    shift: int = -75,
    extsize: int = 150,
) -> list[str]:
    """``macs3 callpeak`` arguments for Tn5 cut sites given as BED (ENCODE ATAC settings, with -B)."""
    return [
        "callpeak",
        "-t",
        str(bed),
        "-f",
        "BED",
        "-g",
        f"{genome_size:.6g}",
        "-n",
        name,
        "--outdir",
        str(outdir),
        "--nomodel",
        "--shift",
        str(shift),
        "--extsize",
        str(extsize),
        "--keep-dup",
        "all",
        "-p",
        f"{pvalue:g}",
        "--call-summits",
        "-B",
        "--tempdir",
        str(outdir),
    ]


def callpeak_route(
    cut_bed: str | Path,
    sizes: dict[str, int],
    out_pval: str | Path,
    workdir: str | Path,
    genome_size: float,
    name: str = "callpeak",
    pvalue: float = 0.01,
    shift: int = -75,
    extsize: int = 150,
    header: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Run ``macs3 callpeak`` on a cut-site BED, then ``bdgcmp -m ppois`` of its pileups; write the p bigWig.

    Parameters
    ----------
    cut_bed : Path
        BED of 1-bp cut sites (:func:`write_cut_bed`).
    sizes : dict
        Chromosomes kept, in output order.
    out_pval : Path
        bigWig of the per-base -log10 p (treatment pileup vs MACS3's local λ).
    workdir : Path
        Scratch directory for MACS3's files.
    header : dict, optional
        Chromosomes listed in the bigWig header (default ``sizes``).

    Returns
    -------
    DataFrame : the narrowPeak rows of ``NAME_peaks.narrowPeak``, clipped and sorted.
    """
    work = Path(workdir)
    run_macs3(callpeak_args(cut_bed, name, work, genome_size, pvalue, shift, extsize))
    treat, control = work / f"{name}_treat_pileup.bdg", work / f"{name}_control_lambda.bdg"
    pval = work / f"{name}_ppois.bdg"
    run_macs3(["bdgcmp", "-t", treat, "-c", control, "-m", "ppois", "--outdir", work, "-o", pval.name])
    bedgraph_to_bigwig(pval, sizes, out_pval, work, header)
    return read_macs3_narrowpeak(work / f"{name}_peaks.narrowPeak", sizes)
