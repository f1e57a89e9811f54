"""Is a model fit for a sample? Compare the track being denoised with the data the model was trained on.

A model applied to data unlike its training data fails quietly: users of the
reference method got "a constant, low-level background" from a model applied to
a sample of another depth or quality. Training stores a compact profile of its
noisy inputs in ``model.pt`` (key :data:`PROFILE_KEY`, from
:func:`training_profile`); inference measures the same numbers on the track it
denoises (:func:`track_profile`) and compares them (:func:`compare`):

* ``preprocessing``: smoothing, Tn5 shifts, CPM (a mismatch is already an
  error in inference; the row records what was checked);
* ``cut_sites_per_mb``: depth, cut sites per Mb of the bases the data cover;
* ``fraction_in_training_peaks``: the share of the track's signal inside the
  training data's clean peaks (for a box-smoothed cut-site track, about the
  fraction of cut sites in those peaks: a FRiP against the model's peaks);
* ``fragment_length_distance``: total-variation distance of the fragment-length
  histogram from the training data's pooled histogram (when coverage sidecars
  record ``fragment_lengths``).

Each row gets a status: ``ok``, ``outside`` (clearly outside what the model saw,
by the thresholds below) or ``unknown`` (a number is missing: a model file without
a profile, a bigWig without sidecar, single-end data without fragment lengths).
The functions are pure, except :func:`training_profile` and :func:`track_profile`
(which read the datasets' arrays and sidecars, or the bigWig) and the writers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import atomic_output
from atacdenoise.evaluate.metrics import merge_intervals
from atacdenoise.io.bigwig import bigwig_total, open_bigwig
from atacdenoise.io.intervals import intervals_from_mask
from atacdenoise.io.sidecar import read_sidecar
from atacdenoise.model.dataset import PairData

log = logging.getLogger(__name__)

#: key of the training profile in model.pt's metadata
PROFILE_KEY = "training_profile"
PROFILE_FORMAT = "atacdenoise-fitness/1"
#: columns of ``PREFIX.fitness.tsv``
COLUMNS = ["metric", "sample", "training_min", "training_median", "training_max", "status", "note"]
OK, OUTSIDE, UNKNOWN = "ok", "outside", "unknown"
#: what to do about a sample outside the training data (in every warning)
ADVICE = "train a model on data like this sample, or add it as a training pair"

#: depth below this times the lowest trained depth is outside. The network sees inputs scaled to one
#: total (depth normalisation), so what depth changes is the sparsity: at half the depth every base
#: holds half the cut sites and the noise relative to the signal grows by ~1.4×; below that the
#: input is emptier than anything the model learned from (the reference method's users then got a
#: flat background). Depths within 2× of the trained ones are the range the model is meant to cover.
DEPTH_LOW_FACTOR = 0.5
#: depth above this times the highest trained depth is outside: the input is far less noisy than the
#: training inputs, and a model trained to fill gaps smooths away detail that is real.
DEPTH_HIGH_FACTOR = 2.0
#: a share of signal in the training peaks below this times the lowest trained share is outside:
#: half the FRiP means either a library of much lower quality (ENCODE's ATAC standard separates
#: acceptable from ideal FRiP by 0.2 vs 0.3, well within 2×) or another cell type, whose peaks the
#: model has never seen; its peak calls then follow the training cell type's peaks.
PEAK_FRACTION_LOW_FACTOR = 0.5
#: a total-variation distance of fragment-length histograms (in FRAGMENT_BIN_BP bins, lengths of
#: 1000 bp and more in one bin) above this is outside. Measured on the real immune atlas
#: (../shared/data/immune, 50 bulk libraries of one study, 10-bp bins): technical replicates differ
#: by 0.01-0.18 (median 0.06), libraries of different donors and cell types by up to 0.36 (median
#: 0.13), each library is at most 0.19 from the pool of all 50; libraries of other labs and
#: protocols sit at 0.17 (10x scATAC PBMC, ../shared/data/pbmc_sc) and 0.19 (ENCODE bulk,
#: ../shared/data/encode) from that pool. All of those are data a model should be applied to, so the
#: threshold lies above every one of them: 0.4 flags only a profile unlike any real library seen
#: (e.g. any of those libraries cut to its nucleosomal fragments of 150 bp and more: 0.65 from the pool).
FRAGMENT_DISTANCE_OUTSIDE = 0.4
#: fragment-length histograms are compared in bins of this many bp (1-bp bins are too noisy: with
#: 50 k fragments the sampling noise alone is ~0.04 in 1-bp bins, ~0.013 in 10-bp bins)
FRAGMENT_BIN_BP = 10
#: histograms of fewer fragments are too noisy to compare (sampling noise ~0.06 at 5 000 in 10-bp bins)
MIN_FRAGMENTS = 5_000
#: fragments shorter than this are counted as nucleosome-free in the notes
NUCLEOSOME_FREE_BP = 150
#: at most this many training peaks are stored (every k-th kept beyond it); training and sample
#: fractions are both measured on the stored peaks, so they stay comparable
MAX_STORED_PEAKS = 100_000
#: bases read at a time when summing a track inside the peaks (bounds memory per chromosome)
READ_CHUNK = 4_000_000
#: preprocessing settings shown in the table (those inference checks against the model)
PREPROCESSING_SHOWN = ("smooth_bp", "shift_plus", "shift_minus", "cpm")


# --------------------------------------------------------------------------- pure numbers


def signal_in_intervals(
    read: Callable[[int, int], np.ndarray], length: int, starts: np.ndarray, ends: np.ndarray, chunk: int = READ_CHUNK
) -> tuple[float, float]:
    """Return (signal inside the intervals, total signal) of one chromosome, read ``chunk`` bases at a time.

    Parameters
    ----------
    read : ``read(lo, hi)`` returns float[hi - lo], the track over bases ``[lo, hi)``.
    length : chromosome length (bases).
    starts, ends : int[n] sorted, disjoint intervals (half-open, 0-based).
    chunk : bases per read; memory is one chunk's cumulative sum (float64).
    """
    starts, ends = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    inside = total = 0.0
    for lo in range(0, length, chunk):
        hi = min(lo + chunk, length)
        cum = np.concatenate(([0.0], np.cumsum(np.asarray(read(lo, hi), dtype=np.float64))))
        total += float(cum[-1])
        a, b = np.searchsorted(ends, lo, side="right"), np.searchsorted(starts, hi, side="left")
        s, e = np.clip(starts[a:b], lo, hi) - lo, np.clip(ends[a:b], lo, hi) - lo
        inside += float(np.sum(cum[e] - cum[s]))
    return inside, total


def cut_sites_per_mb(
    sidecar: dict | None, lengths: dict[str, int], total_signal: float | None = None, smooth_bp: int | None = None
) -> tuple[float | None, str]:
    """Return the depth of a track in cut sites per Mb and how it was measured.

    The cut sites are the sidecar's ``n_cut_sites`` summed over the chromosomes of ``lengths``; the
    bases are the sidecar's ``regions_bp`` when it records target regions (then all its cut sites
    count), else the summed ``lengths`` (the bases the data cover). Without cut-site counts (a
    user's bigWig), ``total_signal / (smooth_bp + 1)``: every cut site adds a box of
    ``smooth_bp + 1`` ones to an uncorrected track (not so with CPM: unknown).
    """
    sidecar = sidecar or {}
    n_cut = sidecar.get("n_cut_sites")
    regions_bp = sidecar.get("regions_bp")
    if isinstance(n_cut, dict) and n_cut:
        if regions_bp:
            return sum(n_cut.values()) / (regions_bp / 1e6), "counted cut sites over the target regions"
        counted = {c: n for c, n in n_cut.items() if c in lengths}
        bases = sum(lengths[c] for c in counted)
        if bases > 0:
            return sum(counted.values()) / (bases / 1e6), "counted cut sites over the chromosomes"
    width = sidecar.get("smooth_bp", smooth_bp)
    if total_signal is not None and width is not None and not sidecar.get("cpm"):
        bases = regions_bp or sum(lengths.values())
        if bases > 0:
            box = int(width) + 1
            return total_signal / box / (bases / 1e6), f"estimated: total signal / {box} per cut site"
    return None, "no cut-site counts (sidecar) and no way to estimate them"


def fragment_histogram(sidecar: dict | None) -> np.ndarray | None:
    """Return the sidecar's ``fragment_lengths`` (counts, index = length in bp, last = longer) or None."""
    raw = (sidecar or {}).get("fragment_lengths")
    if raw is None:
        return None
    try:
        h = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        log.warning("fragment_lengths in a sidecar is not a list of counts: ignored")
        return None
    if h.ndim != 1 or h.size < 2 or not np.all(np.isfinite(h)) or np.any(h < 0) or h.sum() <= 0:
        return None
    return h


def fold_histogram(counts: np.ndarray, n: int, bin_bp: int = FRAGMENT_BIN_BP) -> np.ndarray:
    """Cut a length histogram to ``n`` 1-bp bins (the rest into the last, "longer") and sum into ``bin_bp`` bins."""
    counts = np.asarray(counts, dtype=np.float64)
    cut = np.concatenate((counts[: n - 1], [counts[n - 1 :].sum()]))
    return np.add.reduceat(cut, np.arange(0, n, bin_bp))


def fragment_distance(a: np.ndarray, b: np.ndarray, bin_bp: int = FRAGMENT_BIN_BP) -> float:
    """Total-variation distance (0 alike .. 1 disjoint) of two length histograms, normalised, in ``bin_bp`` bins."""
    n = min(a.size, b.size)
    fa, fb = fold_histogram(a, n, bin_bp), fold_histogram(b, n, bin_bp)
    return round(float(0.5 * np.abs(fa / fa.sum() - fb / fb.sum()).sum()), 9)  # no -0.0 or 1e-17 for "same"


def nucleosome_free(h: np.ndarray) -> float:
    """Fraction of fragments shorter than :data:`NUCLEOSOME_FREE_BP`."""
    return float(h[:NUCLEOSOME_FREE_BP].sum() / h.sum())


def pooled_histogram(hists: list[np.ndarray]) -> np.ndarray:
    """Mean of normalised histograms, each cut to the shortest's length (its last bin the longer ones)."""
    n = min(h.size for h in hists)
    cut = [fold_histogram(h, n, bin_bp=1) for h in hists]
    return np.mean([c / c.sum() for c in cut], axis=0)


def value_range(values: list[float | None]) -> dict[str, float | None]:
    """Min, median and max of the values that are not None (all None when there are none)."""
    v = [float(x) for x in values if x is not None]
    if not v:
        return {"min": None, "median": None, "max": None}
    return {"min": min(v), "median": float(np.median(v)), "max": max(v)}


def thin_peaks(peaks: dict[str, tuple[np.ndarray, np.ndarray]], max_n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every k-th interval of each chromosome, k the smallest that keeps at most ``max_n`` in all."""
    n = sum(s.size for s, _ in peaks.values())
    k = max(1, -(-n // max_n))
    return {c: (s[::k], e[::k]) for c, (s, e) in peaks.items()}


# --------------------------------------------------------------------------- profiles


def _pair_depth(pair: PairData, sidecar: dict | None) -> tuple[float | None, str]:
    """Cut sites per Mb of a dataset's noisy track over the bases it covers (unmasked, or the sidecar's regions)."""
    unmasked = {c: int(np.count_nonzero(pair.arrays(c)["mask"])) for c in pair.chroms}
    total = None
    if not (sidecar and isinstance(sidecar.get("n_cut_sites"), dict)):
        total = pair.total("noisy")  # a user's bigWig: estimate from the signal
    smooth = (pair.meta.get("preprocessing") or {}).get("smooth_bp")
    side = sidecar if sidecar is not None else {"cpm": (pair.meta.get("preprocessing") or {}).get("cpm")}
    return cut_sites_per_mb(side, unmasked, total, smooth)


def training_profile(pairs: list[PairData]) -> dict:
    """Profile of the training data's noisy tracks, to store in model.pt under :data:`PROFILE_KEY`.

    Parameters
    ----------
    pairs : the opened training datasets; each ``meta.json`` names its noisy bigWig, whose
        sidecar gives the cut sites (and, when recorded, ``regions_bp`` and ``fragment_lengths``).

    Returns
    -------
    dict of plain Python values (model.pt is loaded with ``weights_only=True``):
    ``format``; ``pairs``: per dataset ``name``, ``noisy``, ``cut_sites_per_mb``, ``depth_basis``,
    ``fraction_in_training_peaks`` (noisy signal inside the stored peaks / all of it),
    ``fragment_length_distance`` (from the pooled histogram), ``nucleosome_free``; ``peaks``:
    ``{chrom: {"starts": [...], "ends": [...]}}``, the union of the clean labels' runs of 1 on every
    training chromosome (at most :data:`MAX_STORED_PEAKS`, ``peaks_total`` before thinning);
    ``fragment_lengths``: the pooled normalised histogram or None; ``summary``: min, median and max
    over the pairs of each metric.
    """
    runs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for p in pairs:
        for chrom in p.chroms:
            # datasets made with target regions store a span starting at p.offset(chrom): peaks in genome coordinates
            s, e = intervals_from_mask(p.arrays(chrom)["labels"])
            runs.setdefault(chrom, []).append((s + p.offset(chrom), e + p.offset(chrom)))
    union = {
        c: merge_intervals(np.concatenate([s for s, _ in r]), np.concatenate([e for _, e in r]))
        for c, r in runs.items()
    }
    n_total = sum(s.size for s, _ in union.values())
    peaks = thin_peaks(union, MAX_STORED_PEAKS)

    rows, hists = [], []
    for p in pairs:
        sidecar = read_sidecar(p.meta["noisy"]) if p.meta.get("noisy") else None
        depth, basis = _pair_depth(p, sidecar)
        inside = total = 0.0
        for chrom, length in p.chroms.items():
            noisy, off = p.arrays(chrom)["noisy"], p.offset(chrom)
            starts, ends = (np.asarray(x, dtype=np.int64) - off for x in peaks[chrom])
            i, t = signal_in_intervals(lambda lo, hi, a=noisy: a[lo:hi], length, starts, ends)
            inside, total = inside + i, total + t
        hist = fragment_histogram(sidecar)
        hists.append(hist)
        rows.append(
            {
                "name": p.name,
                "noisy": str(p.meta.get("noisy")),
                "cut_sites_per_mb": depth,
                "depth_basis": basis,
                "fraction_in_training_peaks": inside / total if total > 0 else None,
                "nucleosome_free": nucleosome_free(hist) if hist is not None else None,
            }
        )
    have = [h for h in hists if h is not None]
    pooled = pooled_histogram(have) if have else None
    for row, h in zip(rows, hists):
        row["fragment_length_distance"] = fragment_distance(h, pooled) if h is not None and pooled is not None else None
    metrics = ("cut_sites_per_mb", "fraction_in_training_peaks", "fragment_length_distance", "nucleosome_free")
    summary = {m: value_range([r[m] for r in rows]) for m in metrics}
    log.info(
        "training profile (for the fitness check of inference): %d peaks stored of %d; cut sites per Mb %s-%s; "
        "fraction of signal in the peaks %s-%s; fragment lengths from %d of %d datasets",
        sum(s.size for s, _ in peaks.values()),
        n_total,
        _fmt(summary["cut_sites_per_mb"]["min"]),
        _fmt(summary["cut_sites_per_mb"]["max"]),
        _fmt(summary["fraction_in_training_peaks"]["min"]),
        _fmt(summary["fraction_in_training_peaks"]["max"]),
        len(have),
        len(pairs),
    )
    return {
        "format": PROFILE_FORMAT,
        "pairs": rows,
        "peaks": {c: {"starts": s.tolist(), "ends": e.tolist()} for c, (s, e) in peaks.items()},
        "peaks_total": int(n_total),
        "fragment_lengths": pooled.tolist() if pooled is not None else None,
        "fragment_pairs": len(have),
        "summary": summary,
    }


def profile_peaks(training: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return the stored training peaks as ``{chrom: (starts, ends)}`` int64 arrays."""
    return {
        c: (np.asarray(v["starts"], dtype=np.int64), np.asarray(v["ends"], dtype=np.int64))
        for c, v in (training.get("peaks") or {}).items()
    }


def sample_profile(
    sidecar: dict | None,
    lengths: dict[str, int],
    peak_signal: tuple[float, float] | None,
    total_signal: float | None = None,
    smooth_bp: int | None = None,
) -> dict:
    """Return the numbers of :func:`training_profile` for one track being denoised.

    Parameters
    ----------
    sidecar : the track's ``X.bw.json`` (None: a bigWig without one).
    lengths : chromosome lengths of the genome the track covers.
    peak_signal : (signal inside the training peaks, total signal) over the chromosomes shared with
        the training data (:func:`signal_in_intervals`), or None when none is shared.
    total_signal : the track's total over ``lengths`` (estimates the depth without cut-site counts).
    smooth_bp : smoothing assumed when the sidecar does not say (the model's).
    """
    depth, basis = cut_sites_per_mb(sidecar, lengths, total_signal, smooth_bp)
    hist = fragment_histogram(sidecar)
    inside, total = peak_signal if peak_signal is not None else (0.0, 0.0)
    return {
        "cut_sites_per_mb": depth,
        "depth_basis": basis,
        "fraction_in_training_peaks": inside / total if total > 0 else None,
        "shared_chroms": peak_signal is not None,
        "fragment_lengths": hist.tolist() if hist is not None else None,
        "preprocessing": None if sidecar is None else {k: sidecar.get(k) for k in PREPROCESSING_SHOWN},
    }


# --------------------------------------------------------------------------- the comparison


def _preprocessing_text(pre: dict | None) -> str | None:
    text = " ".join(f"{k}={pre[k]}" for k in PREPROCESSING_SHOWN if pre.get(k) is not None) if pre else ""
    return text or None


def _row(metric: str, sample, summary: dict, status: str, note: str) -> dict:
    return {
        "metric": metric,
        "sample": sample,
        "training_min": summary.get("min"),
        "training_median": summary.get("median"),
        "training_max": summary.get("max"),
        "status": status,
        "note": note,
    }


def _depth_row(training: dict, sample: dict) -> dict:
    s, rng = sample["cut_sites_per_mb"], training["summary"]["cut_sites_per_mb"]
    if s is None or rng["min"] is None:
        why = sample["depth_basis"] if s is None else "the training profile has no depth"
        return _row("cut_sites_per_mb", s, rng, UNKNOWN, why)
    if s < DEPTH_LOW_FACTOR * rng["min"]:
        return _row(
            "cut_sites_per_mb",
            s,
            rng,
            OUTSIDE,
            f"{s / rng['min']:.2g}x the lowest trained depth (below {DEPTH_LOW_FACTOR}x): the sample is much sparser "
            "than the training inputs; the denoised track may be a flat, low background",
        )
    if s > DEPTH_HIGH_FACTOR * rng["max"]:
        return _row(
            "cut_sites_per_mb",
            s,
            rng,
            OUTSIDE,
            f"{s / rng['max']:.2g}x the highest trained depth (above {DEPTH_HIGH_FACTOR}x): the model was trained to "
            "fill in far sparser data and may smooth away real detail",
        )
    return _row(
        "cut_sites_per_mb", s, rng, OK, f"{s / rng['median']:.2g}x the median trained depth ({sample['depth_basis']})"
    )


def _peaks_row(training: dict, sample: dict) -> dict:
    s, rng = sample["fraction_in_training_peaks"], training["summary"]["fraction_in_training_peaks"]
    if rng["min"] is None or not training.get("peaks_total"):
        return _row("fraction_in_training_peaks", s, rng, UNKNOWN, "the training data hold no peaks")
    if s is None:
        why = "no signal" if sample["shared_chroms"] else "no chromosome in common with the training data"
        return _row("fraction_in_training_peaks", s, rng, UNKNOWN, why)
    if s < PEAK_FRACTION_LOW_FACTOR * rng["min"]:
        return _row(
            "fraction_in_training_peaks",
            s,
            rng,
            OUTSIDE,
            f"{s / rng['min']:.2g}x the lowest trained fraction (below {PEAK_FRACTION_LOW_FACTOR}x): a library of much "
            "lower quality or another cell type; peak calls may follow the training data's peaks",
        )
    return _row("fraction_in_training_peaks", s, rng, OK, f"{s / rng['median']:.2g}x the median trained fraction")


def _fragment_row(training: dict, sample: dict) -> dict:
    rng = training["summary"].get("fragment_length_distance", {})
    pooled, h = training.get("fragment_lengths"), sample["fragment_lengths"]
    if pooled is None:
        return _row("fragment_length_distance", None, rng, UNKNOWN, "the training sidecars record no fragment lengths")
    if h is None:
        return _row("fragment_length_distance", None, rng, UNKNOWN, "the sample's sidecar records no fragment lengths")
    h, pooled = np.asarray(h, dtype=np.float64), np.asarray(pooled, dtype=np.float64)
    if h.sum() < MIN_FRAGMENTS:
        return _row(
            "fragment_length_distance",
            None,
            rng,
            UNKNOWN,
            f"{h.sum():.0f} fragments: too few to compare (< {MIN_FRAGMENTS})",
        )
    d = fragment_distance(h, pooled)
    nfr = f"{nucleosome_free(h):.0%} of fragments < {NUCLEOSOME_FREE_BP} bp (training {nucleosome_free(pooled):.0%})"
    if d > FRAGMENT_DISTANCE_OUTSIDE:
        return _row(
            "fragment_length_distance",
            d,
            rng,
            OUTSIDE,
            f"total-variation distance above {FRAGMENT_DISTANCE_OUTSIDE} (more than between any two real libraries of "
            f"one study); {nfr}",
        )
    return _row("fragment_length_distance", d, rng, OK, nfr)


def compare(training: dict | None, sample: dict, preprocessing: dict | None = None) -> pd.DataFrame:
    """Compare a sample's profile (:func:`sample_profile`) with the model's (:func:`training_profile`).

    ``preprocessing`` is the model's (model.pt ``preprocessing``), shown beside the sample's.

    Returns
    -------
    DataFrame of :data:`COLUMNS`, one row per metric: ``preprocessing``, ``cut_sites_per_mb``,
    ``fraction_in_training_peaks``, ``fragment_length_distance``. ``status`` is ``ok``, ``outside``
    (beyond :data:`DEPTH_LOW_FACTOR` / :data:`DEPTH_HIGH_FACTOR` times the trained depth range, below
    :data:`PEAK_FRACTION_LOW_FACTOR` times the lowest trained fraction, or a fragment-length distance
    above :data:`FRAGMENT_DISTANCE_OUTSIDE`) or ``unknown``; ``note`` says why. ``training`` None (a
    model file from before profiles) makes every numeric row ``unknown``.
    """
    pre = _preprocessing_text(sample.get("preprocessing"))
    trained_pre = _preprocessing_text(preprocessing)
    same = {"min": trained_pre, "median": trained_pre, "max": trained_pre}
    rows = [
        _row("preprocessing", pre, same, OK, "checked against the model: they agree")
        if pre is not None
        else _row("preprocessing", None, same, UNKNOWN, "the track has no sidecar: its preprocessing is unknown")
    ]
    if training is None:
        none = value_range([])
        for metric in ("cut_sites_per_mb", "fraction_in_training_peaks", "fragment_length_distance"):
            value = sample.get(metric) if metric != "fragment_length_distance" else None
            rows.append(_row(metric, value, none, UNKNOWN, "the model file has no training profile: re-train it"))
    else:
        rows += [_depth_row(training, sample), _peaks_row(training, sample), _fragment_row(training, sample)]
    return pd.DataFrame(rows, columns=COLUMNS)


# --------------------------------------------------------------------------- files and logs


def fitness_path(prefix: str | Path) -> Path:
    """Return the path of the fitness table of ``--out-prefix``: ``PREFIX.fitness.tsv``."""
    return Path(f"{prefix}.fitness.tsv")


def track_profile(
    path: str | Path, sidecar: dict | None, lengths: dict[str, int], training: dict | None, smooth_bp: int | None = None
) -> dict:
    """Measure :func:`sample_profile` on a bigWig: its signal in the training peaks, chunk by chunk.

    ``lengths`` are the genome's chromosomes; the training peaks are tested on those the bigWig,
    the genome and the training data share. The total signal is read only when the sidecar has no
    cut-site counts (then ``smooth_bp``, the model's, converts it to cut sites).
    """
    peaks = profile_peaks(training or {})
    peak_signal = None
    bw = open_bigwig(path)
    try:
        shared = [c for c in peaks if c in lengths and bw.chroms(c) is not None]
        if shared:
            inside = total = 0.0
            for chrom in shared:

                def read(lo: int, hi: int, chrom: str = chrom) -> np.ndarray:
                    return np.nan_to_num(bw.values(chrom, lo, hi, fill=0.0), copy=False)

                i, t = signal_in_intervals(read, lengths[chrom], *peaks[chrom])
                inside, total = inside + i, total + t
            peak_signal = (inside, total)
    finally:
        bw.close()
    counted = isinstance((sidecar or {}).get("n_cut_sites"), dict) and bool(sidecar["n_cut_sites"])
    total_signal = None if counted else bigwig_total(path, lengths)
    return sample_profile(sidecar, lengths, peak_signal, total_signal, smooth_bp)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "NA"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def log_fitness(table: pd.DataFrame, source: str | Path) -> None:
    """Log a one-line summary of the comparison and a warning for every metric outside the training range."""
    counts = table["status"].value_counts()
    numeric = table[table["metric"] != "preprocessing"]
    log.info(
        "model fitness of %s: %d ok, %d outside, %d unknown (%s)",
        source,
        counts.get(OK, 0),
        counts.get(OUTSIDE, 0),
        counts.get(UNKNOWN, 0),
        "; ".join(
            f"{r.metric} {_fmt(r.sample)} [trained {_fmt(r.training_min)}-{_fmt(r.training_max)}] {r.status}"
            for r in numeric.itertuples()
        ),
    )
    for r in table[table["status"] == OUTSIDE].itertuples():
        log.warning(
            "%s is outside what the model saw: %s = %s, training data %s-%s (%s); %s",
            source,
            r.metric,
            _fmt(r.sample),
            _fmt(r.training_min),
            _fmt(r.training_max),
            r.note,
            ADVICE,
        )


def write_fitness(table: pd.DataFrame, path: str | Path) -> None:
    """Write the comparison as a TSV atomically (numbers to 6 significant digits, NA for missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = table.map(lambda v: "NA" if v is None or (isinstance(v, float) and np.isnan(v)) else v)
    text = text.map(lambda v: f"{v:.6g}" if isinstance(v, float) else str(v))
    with atomic_output(path) as tmp:
        text.to_csv(tmp, sep="\t", index=False)
    log.info("model fitness table: %s", path)


def assess_track(meta: dict, path: str | Path, sidecar: dict | None, lengths: dict[str, int]) -> pd.DataFrame:
    """Compare a track with the training profile of a model's metadata (from ``load_model``) and log the outcome.

    Returns the table of :func:`compare`; a model without a profile gives ``unknown`` rows.
    """
    training, preprocessing = meta.get(PROFILE_KEY), meta.get("preprocessing") or {}
    if training is None:
        log.info("the model file has no training profile (trained before fitness checks): fitness is unknown")
    sample = track_profile(path, sidecar, lengths, training, preprocessing.get("smooth_bp"))
    table = compare(training, sample, preprocessing)
    log_fitness(table, path)
    return table
