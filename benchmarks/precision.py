r"""Compact denoised outputs (issue 19.2): bytes per base and every benchmark metric against float32, per precision.

For each trained demo model (``--models``: light models trained on the demo, e.g. the ``seedN/model.pt`` that
``benchmarks/blend.py --work DIR`` leaves) the real ``atacdenoise infer`` denoises the real 5M sample's chr2
(``results/coverage/HSC/given.rep1.bw``, ``--threads 1``) once at ``--precision float32`` and once at
``--precision compact``, and the real ``atacdenoise metrics`` scores each on the holdout (chr2:5-10 Mb) against
the 80M clean track and its published peaks, as ``benchmarks/blend.py`` and ``benchmarks/accuracy.py`` do.

Candidate precisions that ``infer`` does not offer are measured from the float32 run's outputs: both tracks
rounded by the candidate's functions (:data:`CANDIDATES`), written by the project's bigWig writer with the
settings ``infer`` uses for compact outputs (first zoom level :data:`~atacdenoise.model.infer.COMPACT_FIRST_ZOOM`
bases, each chunk as runs or fixed-step values, whichever deflates smaller, ISA-L), peaks called on the rounded
probability at the model's stored threshold by the same :class:`~atacdenoise.peaks.threshold.PeakStream`, then
scored by the real ``atacdenoise metrics``. The row ``compact, offline route`` is the shipped compact rounding
taken that way: its values and metrics must equal the real ``infer --precision compact`` run's (checked), which
shows the offline route is the infer route. ``... per base`` is ``compact`` before its 8-bp bins (2026-12-05
afternoon), ``9 bits ...`` as it was until 2026-12-05 morning, ``1/256 steps;
3 digits`` as it was before issue 19.2's first fix.

Reference routes (:data:`REFERENCES`): the same model computed otherwise by the real ``infer --precision
float32``, to show how far the metrics move without any rounding of the outputs: with PyTorch's convolutions
instead of the native kernels (another correct float32 implementation) and with bf16 autocast (``--amp bf16``:
what ``--amp auto``, the default, does on a GPU; here on the CPU).

The last table (:func:`background_anatomy`) shows where the float32 probability's AUROC is decided: at the
network's background value, whose round-off variants (a few float32 steps apart) cover half the holdout and
order peak bases above or below the rest, and what keeping that order costs in records (runs) per low-tail
rounding. ``--only TEXT ...`` measures only the candidates whose names hold one of the texts.

``--depths`` denoises more of the demo's inputs with each model (``coverage/HSC/{depth}.rep1.bw``: ``given`` is
the 5M library, the default; the demo also makes 15000 and 60000): every (model, input) pair is then one case
of the tables below, and a last table gives each input's figures apart.

Bytes per base: file size / bases of chr2 (10,000,000, all denoised). Deltas: candidate - float32 for every
``model`` and ``model_t0.5`` row of ``metrics.tsv`` (MSE as a relative change), mean over the cases and the
largest |delta|; "meets" = both files <= 0.2 bytes a base and every |delta| < 0.0005 for every case (MSE:
relative < 0.0005); "within the GPU route" = for every metric, the largest |delta| over the cases is at most
the bf16 route's (or < 0.0005). Outputs are cached under ``--work``.

    .venv/bin/python benchmarks/precision.py --results /work/main/results \
        --models /work/scratch-blend/seed{1,2,3}/model.pt --work /work/scratch-compact/bench
    .venv/bin/python benchmarks/precision.py --results /work/main/results \
        --models /work/main/results/models/demo/model.pt --depths 15000 60000 given --work /work/scratch-compact/bench
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from atacdenoise.io.bbiwrite import BigWigFileWriter  # noqa: E402
from atacdenoise.io.bigwig import read_bigwig  # noqa: E402
from atacdenoise.io.genome import read_chrom_sizes  # noqa: E402
from atacdenoise.io.intervals import write_narrowpeak  # noqa: E402
from atacdenoise.model.infer import (  # noqa: E402
    COMPACT_FIRST_ZOOM,
    COMPACT_PROB_ROUNDING,
    COMPACT_PROB_STORAGE,
    COMPACT_TRACK_STORAGE,
    PROB_BIN_CUTS,
    TRACK_BIN,
    TRACK_BITS,
    TRACK_FLOOR,
    bin_probability,
    bin_track,
    round_probability_bits,
    round_significant_bits,
    track_floor,
)
from atacdenoise.peaks.threshold import MAX_GAP, MIN_LENGTH, PeakStream  # noqa: E402

log = logging.getLogger("precision")

SIZES = REPO / "resources/demo/hg19_first10mb.chr1_chr2.sizes"
LABELS = REPO / "resources/demo/HSC_80M.macs2_peaks.chr1_chr2.bed"
CHROM, HOLDOUT = "chr2", "chr2:5000000-10000000"
#: the issue's target per file (bytes per base) and the largest metric change allowed ("unchanged to the 3rd decimal")
TARGET_BYTES, TARGET_DELTA = 0.2, 0.0005
#: low-tail bits of the candidates that keep the background's order (see :func:`background_anatomy`)
LOW_TAIL_BITS = (12, 16, 18, 20)
#: bases per chunk handed to the writer and the peak caller (infer's: 16 tiles of 50 kb)
CHUNK = 800_000


# --------------------------------------------------------------------------- candidate roundings (pure, vectorised)


def logit_grid(prob: np.ndarray, step: float) -> np.ndarray:
    """Probabilities on a grid of ``step`` in logit space (0 and 1 exact), as float32: relative precision at both ends.

    ``p`` becomes ``sigmoid(step * rint(logit(p) / step))``: the error in logit space is at most ``step / 2``.
    """
    p = np.asarray(prob, dtype=np.float64)
    out = p.copy()
    mid = (p > 0) & (p < 1)
    logit = np.log(p[mid]) - np.log1p(-p[mid])
    out[mid] = 1.0 / (1.0 + np.exp(-np.rint(logit / step) * step))
    return out.astype(np.float32)


def grid_probability(prob: np.ndarray, steps: int = 256) -> np.ndarray:
    """Probabilities on multiples of ``1 / steps`` (ties to even), as float32: ``compact`` before issue 19.2's fix.

    With ``steps`` a power of two every step is exact in float32: 0 and 1 stay exact, the error is at most
    ``1 / (2·steps)``.
    """
    p = np.asarray(prob, dtype=np.float32)
    return np.rint(p * np.float32(steps)) / np.float32(steps)


def significant_digits(values: np.ndarray, digits: int = 3) -> np.ndarray:
    """Values to ``digits`` significant decimal digits as float32 (0, NaN, inf unchanged): ``compact``'s track before.

    The value nearest ``float(f"{v:.{digits - 1}e}")`` for each ``v``: relative error <= 0.5 % for 3 digits.
    """
    x = np.asarray(values, dtype=np.float32).astype(np.float64)
    ok = np.isfinite(x) & (x != 0)
    v = x[ok]
    shift = digits - 1 - np.floor(np.log10(np.abs(v)))  # decimal places to keep (negative: round to tens, ...)
    scale = 10.0 ** np.abs(shift)  # an exact integer in float64 for |shift| <= 22, so the division rounds once
    x[ok] = np.where(shift >= 0, np.rint(v * scale) / scale, np.rint(v / scale) * scale)
    return x.astype(np.float32)


def bin_means(values: np.ndarray, width: int) -> np.ndarray:
    """Each ``width``-base bin (from base 0; the last one may be shorter) holds its mean, as float32."""
    n = values.size // width * width
    means = values[:n].reshape(-1, width).mean(axis=1, dtype=np.float64)
    tail = [values[n:].mean(dtype=np.float64)] if n < values.size else []
    out = np.repeat(means, width)
    return np.concatenate([out, np.repeat(tail, values.size - n)]).astype(np.float32)


def _binned(width: int, rounding: Callable) -> Callable:
    """Return ``rounding`` of ``width``-base means (``floor``, for a track: unused)."""
    return lambda x, floor=0.0: rounding(bin_means(x, width))


def _same(x: np.ndarray, floor: float = 0.0) -> np.ndarray:
    return x


def _floor_bins(factor: float, width: int = TRACK_BIN) -> Callable:
    """Return the compact track's storage (:func:`~atacdenoise.model.infer.bin_track`) at ``factor`` x its floor."""
    return lambda t, floor: bin_track(t, 0, factor * floor, width)


#: the shipped ``compact`` rounding (``infer``'s functions), measured from the float32 outputs
OFFLINE_COMPACT = f"compact, offline route ({COMPACT_PROB_STORAGE}; track: {COMPACT_TRACK_STORAGE})"
#: ``compact`` before the 8-bp bins (the same rounding, per base)
PER_BASE = f"{COMPACT_PROB_ROUNDING}, per base; {TRACK_BITS} bits (compact before the 8-bp bins)"
#: ``compact`` before the track's bins (2026-12-05 evening): the probability as now, the track per base
TRACK_PER_BASE = f"probability as compact; track: {TRACK_BITS} bits per base (compact before the track's bins)"
#: ``compact`` before this change (9 bits of min(p, 1 - p) everywhere), at today's writer settings
COMPACT_9 = "9 bits of min(p, 1-p); 8 bits (compact until 2026-12-05 morning)"


def _bits(bits: int, low_bits: int | None = None) -> Callable:
    """Return a rounding to ``bits`` significant bits of min(p, 1 - p) (``low_bits`` below 1/128; None: one band)."""
    return lambda p: round_probability_bits(p, bits, low_bits=low_bits)


def _track(bits: int) -> Callable:
    """Return a rounding to ``bits`` significant bits (the track's, or a probability's own; ``floor``: unused)."""
    return lambda t, floor=0.0: round_significant_bits(t, bits)


class Candidate(NamedTuple):
    """One way to store the outputs: the probability's and the track's roundings, and how the probability is kept.

    ``binned``: the probability is then stored as infer stores compact ones (bin means, per base where a bin
    straddles the model's threshold or 0.5: :func:`~atacdenoise.model.infer.bin_probability`).
    """

    prob: Callable
    track: Callable  # track(values, floor): ``floor`` is the model's compact-track floor (``track_floor``)
    binned: bool = False


#: candidate -> its storage; the float32 outputs are rounded by them (see the docstring)
CANDIDATES: dict[str, Candidate] = {
    OFFLINE_COMPACT: Candidate(round_probability_bits, _floor_bins(TRACK_FLOOR), binned=True),
    TRACK_PER_BASE: Candidate(round_probability_bits, _track(TRACK_BITS), binned=True),
    f"probability as compact; track: {TRACK_BIN}-bp bins below half the floor": Candidate(
        round_probability_bits, _floor_bins(TRACK_FLOOR / 2), binned=True
    ),
    f"probability as compact; track: {TRACK_BIN}-bp bins below twice the floor": Candidate(
        round_probability_bits, _floor_bins(TRACK_FLOOR * 2), binned=True
    ),
    f"probability as compact; track: {2 * TRACK_BIN}-bp bins below the floor": Candidate(
        round_probability_bits, _floor_bins(TRACK_FLOOR, 2 * TRACK_BIN), binned=True
    ),
    PER_BASE: Candidate(round_probability_bits, _track(TRACK_BITS)),
    COMPACT_9: Candidate(_bits(9), _track(8)),
    "1/256 steps; 3 digits (compact before issue 19.2)": Candidate(
        grid_probability, lambda t, floor=0.0: significant_digits(t)
    ),
    "logit step 1/16; 6 bits": Candidate(lambda p: logit_grid(p, 1 / 16), _track(6)),
    "9 bits of min(p, 1-p), 6 below 1/128; 8 bits": Candidate(_bits(9, 6), _track(8)),
    "8 bits of min(p, 1-p), 5 below 1/128; 8 bits": Candidate(_bits(8, 5), _track(8)),
    "7 bits of min(p, 1-p), 6 below 1/128; 8 bits": Candidate(_bits(7, 6), _track(8)),
    "7 bits of min(p, 1-p), 4 below 1/128; 7 bits": Candidate(_bits(7, 4), _track(7)),
    "8-bp means, then compact (both)": Candidate(_binned(8, round_probability_bits), _binned(8, _track(TRACK_BITS))),
    "16-bp means, then compact (both)": Candidate(_binned(16, round_probability_bits), _binned(16, _track(TRACK_BITS))),
    "8-bp means of the probability, straddling bins not kept; track compact": Candidate(
        _binned(8, round_probability_bits), _track(TRACK_BITS)
    ),
    "compact probability per base; track: 4-bp means, 8 bits": Candidate(round_probability_bits, _binned(4, _track(8))),
    "compact probability per base; track: 2-bp means, 8 bits": Candidate(round_probability_bits, _binned(2, _track(8))),
    # what AUROC's third decimal costs: the low tail kept to its float32 round-off, per base (bins move AUROC too)
    **{
        f"8 bits of min(p, 1-p), {b} below 1/128, per base; track compact": Candidate(
            _bits(8, b), _floor_bins(TRACK_FLOOR)
        )
        for b in LOW_TAIL_BITS
    },
    "16 bits of min(p, 1-p); float32": Candidate(_bits(16), _same),
    "20 bits (float32 round-off only); float32": Candidate(_track(20), _same),
}
QUICK = [OFFLINE_COMPACT, TRACK_PER_BASE]

#: other float32 computations of the same model, run by the real ``infer --precision float32``: how far the
#: metrics move without any rounding of the outputs. name -> (environment, extra arguments, cache stem)
GPU_ROUTE = "bf16 autocast (the GPU route's default, `--amp auto`), here on the CPU"
REFERENCES: dict[str, tuple[dict[str, str], tuple[str, ...], str]] = {
    "float32, PyTorch's convolutions (ATACDENOISE_NATIVE_CONV=0)": ({"ATACDENOISE_NATIVE_CONV": "0"}, (), "ref-torch"),
    GPU_ROUTE: ({}, ("--amp", "bf16"), "ref-bf16"),
}


def cache_name(candidate: str) -> str:
    """File-name stem of a candidate's outputs under ``--work`` (from its name, so the cache survives reordering)."""
    stem = "candidate-" + re.sub(r"[^A-Za-z0-9]+", "-", candidate).strip("-")
    if len(stem) > 160:  # a file name has at most 255 bytes: the start and a digest of the whole name
        stem = f"{stem[:140]}-{hashlib.sha256(candidate.encode()).hexdigest()[:12]}"
    return stem


# --------------------------------------------------------------------------- runs


def _run(cmd: list, what: str, env: dict[str, str] | None = None) -> None:
    res = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, cwd=REPO, env={**os.environ, **(env or {})}
    )
    if res.returncode != 0:
        raise SystemExit(f"{what} failed:\n{res.stderr[-3000:]}")


def _metrics(prefix: Path, noisy: Path, clean: Path) -> dict[str, float]:
    """Run ``atacdenoise metrics`` on ``prefix``'s outputs (cached).

    Returns the model's rows (``model`` and ``model_t0.5``) as ``method.metric.region`` -> value.
    """
    out = Path(f"{prefix}.metrics.tsv")
    if not out.exists():
        cmd = [sys.executable, "-m", "atacdenoise.cli", "metrics", "--clean", clean, "--labels", LABELS]
        cmd += ["--noisy", noisy, "--sizes", SIZES, "--denoised-prefix", prefix, "--regions", HOLDOUT]
        cmd += ["--model", "light", "--sample", "HSC", "--depth", "given", "--rep", "1", "--out", out]
        _run(cmd, f"metrics of {prefix}")
    m = pd.read_csv(out, sep="\t")
    m = m[m["method"].str.startswith("model")]
    return {f"{a}.{b}.{c}": float(v) for a, b, c, v in zip(m["method"], m["metric"], m["region"], m["value"])}


def _sizes(prefix: Path, length: int) -> dict[str, float]:
    return {k: Path(f"{prefix}.{k}.bw").stat().st_size / length for k in ("track", "peakprob")}


def infer(
    model: Path, noisy: Path, prefix: Path, precision: str, env: dict[str, str] | None = None, extra: tuple = ()
) -> None:
    """Run the real ``atacdenoise infer`` on chr2 at ``precision`` (cached); ``env``/``extra``: a reference route's."""
    if Path(f"{prefix}.peaks.narrowPeak").exists():
        return
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "atacdenoise.cli", "infer", "--model", model, "--input", noisy, "--sizes", SIZES]
    cmd += ["--chroms", CHROM, "--threads", "1", "--precision", precision, *extra, "--out-prefix", prefix]
    log.info("infer %s at %s %s %s", model, precision, env or "", " ".join(extra))
    _run(cmd, f"infer {model} --precision {precision}", env)


def offline(
    reference: Path,
    prefix: Path,
    rounding: tuple[Callable, Callable],
    threshold: float,
    floor: float = 0.0,
    binned: bool = False,
) -> None:
    """Round the float32 outputs at ``reference``, write them as infer writes compact outputs, call peaks (cached).

    ``binned``: the probability is stored as infer stores compact ones (:attr:`Candidate.binned`). Peaks are called on
    the stored values, as infer calls them.
    """
    if Path(f"{prefix}.peaks.narrowPeak").exists():
        return
    sizes = read_chrom_sizes(SIZES)
    raw = read_bigwig(f"{reference}.peakprob.bw", CHROM)
    prob = rounding[0](raw)
    track = rounding[1](read_bigwig(f"{reference}.track.bw", CHROM), floor)
    stored = bin_probability(prob, raw, 0, (threshold, *PROB_BIN_CUTS)) if binned else prob
    for key, values in (("track", track), ("peakprob", stored)):
        with BigWigFileWriter(
            f"{prefix}.{key}.bw", sizes, threads=1, fast=True, first_zoom=COMPACT_FIRST_ZOOM, smallest=True
        ) as writer:
            for k in range(0, values.size, CHUNK):
                writer.add(CHROM, k, values[k : k + CHUNK])
    peaks = PeakStream(CHROM, threshold, min_length=MIN_LENGTH, max_gap=MAX_GAP)
    for k in range(0, prob.size, CHUNK):
        peaks.add(k, stored[k : k + CHUNK], track[k : k + CHUNK])
    write_narrowpeak(peaks.finish(), Path(f"{prefix}.peaks.narrowPeak"))


def run_model(index: int, model: Path, work: Path, results: Path, candidates: list[str], depth: str) -> dict[str, dict]:
    """Every candidate's sizes and metrics for one model denoising the demo's input of ``depth``."""
    import torch

    noisy, clean = results / f"coverage/HSC/{depth}.rep1.bw", results / "coverage/HSC/full.rep1.bw"
    length = read_chrom_sizes(SIZES)[CHROM]
    out = work / f"model{index}" if depth == "given" else work / f"model{index}" / f"depth-{depth}"
    meta = torch.load(model, map_location="cpu", weights_only=True)
    threshold = float(meta["threshold"])
    floor = track_floor([meta], sum(read_chrom_sizes(SIZES).values()))  # as infer's: the input has both chroms
    rows = {}
    for precision in ("float32", "compact"):
        prefix = out / precision
        infer(model, noisy, prefix, precision)
        rows[precision] = {"bytes": _sizes(prefix, length), "metrics": _metrics(prefix, noisy, clean)}
    for name, (env, extra, stem) in REFERENCES.items():
        infer(model, noisy, out / stem, "float32", env, extra)
        rows[name] = {"bytes": _sizes(out / stem, length), "metrics": _metrics(out / stem, noisy, clean)}
    for k, name in enumerate(candidates):
        prefix = out / cache_name(name)
        cand = CANDIDATES[name]
        offline(out / "float32", prefix, (cand.prob, cand.track), threshold, floor, binned=cand.binned)
        rows[name] = {"bytes": _sizes(prefix, length), "metrics": _metrics(prefix, noisy, clean)}
        log.info("model %d, %s: %s done (%d/%d)", index, depth, name, k + 1, len(candidates))
    if OFFLINE_COMPACT in rows:  # the offline route is the infer route: same values, same metrics
        offline_prefix = out / cache_name(OFFLINE_COMPACT)
        for key in ("track", "peakprob"):
            real = read_bigwig(f"{out / 'compact'}.{key}.bw", CHROM)
            if not np.array_equal(real, read_bigwig(f"{offline_prefix}.{key}.bw", CHROM)):
                raise SystemExit(f"model {index}, {depth}: the offline route's {key} differs from infer's compact")
        if rows[OFFLINE_COMPACT]["metrics"] != rows["compact"]["metrics"]:
            raise SystemExit(f"model {index}, {depth}: the offline route's metrics differ from infer's compact")
    return rows


# --------------------------------------------------------------------------- the background's order


#: values within this relative distance of the probability's most common value count as its round-off variants
BACKGROUND_REL = 1e-5


def runs(values: np.ndarray) -> int:
    """Count the runs of equal neighbouring values: the bedGraph records a bigWig stores for them."""
    return int(1 + np.count_nonzero(np.diff(values))) if values.size else 0


def background_anatomy(reference: Path) -> dict:
    """Where the float32 probability's AUROC on the holdout is decided, from the float32 run at ``reference``.

    The network gives every base far from reads (almost) one value ``c``: the most common value. Its variants
    within :data:`BACKGROUND_REL` (a few float32 steps apart) order some peak bases above or below the rest,
    by input (on the demo model: up at the 5M library, down at 15,000 reads). Returns their count and share of
    the holdout, the peak-base share at the lowest and highest variant, AUROC of the float32 values, its move
    when only the variants become ``c``, and per low-tail rounding (8 significant bits of min(p, 1 - p), ``b``
    below 1/128; 6 is compact's, per base) the AUROC move and the runs (records) against float32's.
    """
    from atacdenoise.evaluate.metrics import auroc, intervals_by_chrom, paint_window
    from atacdenoise.io.genome import parse_region
    from atacdenoise.io.intervals import read_bed

    region = parse_region(HOLDOUT, read_chrom_sizes(SIZES))
    lo, hi = region.start, region.end
    prob = read_bigwig(f"{reference}.peakprob.bw", CHROM, lo, hi)
    labels = paint_window(intervals_by_chrom(read_bed(LABELS)).get(CHROM), lo, hi)
    values, counts = np.unique(prob, return_counts=True)
    c = values[np.argmax(counts)]
    near = np.abs(prob.astype(np.float64) / np.float64(c) - 1) < BACKGROUND_REL
    variants = np.unique(prob[near])
    share = [float(labels[prob == v].mean()) for v in (variants[0], variants[-1])]
    base = auroc(prob, labels)
    merged = np.where(near, c, prob)
    rows = []
    for bits in (6, *LOW_TAIL_BITS):
        r = round_probability_bits(prob, 8, low_bits=bits)
        rows.append({"low_bits": bits, "auroc_delta": auroc(r, labels) - base, "runs_vs_float32": runs(r) / runs(prob)})
    return {
        "background": float(c),
        "variants": int(variants.size),
        "bases_share": float(near.mean()),
        "peak_share_lowest_highest": share,
        "peak_share_all": float(labels.mean()),
        "auroc": base,
        "auroc_delta_variants_merged": auroc(merged, labels) - base,
        "roundings": rows,
    }


def anatomy_table(cases: list[tuple[str, dict]]) -> str:
    """Markdown: :func:`background_anatomy` of each case (model, input)."""
    lines = [
        "| case | background c | variants within 1e-5 of c: bases (share of holdout) | peak bases at the lowest "
        "/ highest variant (all bases) | AUROC | AUROC move, only the variants made c | AUROC move (runs vs "
        "float32) with 6 / " + " / ".join(map(str, LOW_TAIL_BITS)) + " bits below 1/128, per base |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, a in cases:
        lo, hi = a["peak_share_lowest_highest"]
        moves = "; ".join(f"{r['auroc_delta']:+.5f} ({r['runs_vs_float32']:.2f})" for r in a["roundings"])
        lines.append(
            f"| {name} | {a['background']:.9g} | {a['variants']} ({a['bases_share']:.1%}) | "
            f"{lo:.2%} / {hi:.2%} ({a['peak_share_all']:.2%}) | {a['auroc']:.5f} | "
            f"{a['auroc_delta_variants_merged']:+.5f} | {moves} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- tables


def deltas(rows: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per candidate: metric -> candidate - float32 (MSE: relative change)."""
    base = rows["float32"]["metrics"]
    out = {}
    for name, r in rows.items():
        d = {}
        for key, ref in base.items():
            value = r["metrics"][key]
            d[key] = (value - ref) / ref if ".mse." in key else value - ref
        out[name] = d
    return out


def tables(per_case: list[dict[str, dict]]) -> str:
    """Markdown: a summary per candidate, then the largest |delta| of every metric per candidate."""
    names = [n for n in per_case[0] if n != "float32"]
    d = [deltas(rows) for rows in per_case]
    metrics = list(d[0]["float32"])
    head = (
        "| candidate (probability; track) | track.bw B/base | peakprob.bw B/base | AUPRC | AUROC | ECE | "
        "Pearson | Spearman | F1 | largest \\|delta\\| (metric) | meets both | within the GPU route |"
    )
    lines = [head, "|---" * 12 + "|"]
    gpu = {k: max(abs(x[GPU_ROUTE][k]) for x in d) for k in metrics}
    for name in ["float32", *names]:
        track = [rows[name]["bytes"]["track"] for rows in per_case]
        prob = [rows[name]["bytes"]["peakprob"] for rows in per_case]

        def mean(key: str, name: str = name) -> str:
            return f"{np.mean([x[name][key] for x in d]):+.5f}"

        worst = {k: max(abs(x[name][k]) for x in d) for k in metrics}
        top = max(worst, key=worst.get)
        ok = max(track) <= TARGET_BYTES and max(prob) <= TARGET_BYTES and worst[top] < TARGET_DELTA
        # every metric moves no more than the default GPU route moves it (or < TARGET_DELTA)
        within = all(worst[k] <= max(TARGET_DELTA, gpu[k]) for k in metrics)
        label = "float32 (reference)" if name == "float32" else name
        if name in REFERENCES:
            label = f"reference route: {name}"
        if name == "compact":
            label = f"compact (shipped: {COMPACT_PROB_STORAGE}; track: {COMPACT_TRACK_STORAGE}), real infer"
        lines.append(
            f"| {label} | {np.mean(track):.3f} (max {max(track):.3f}) | {np.mean(prob):.3f} (max {max(prob):.3f}) | "
            f"{mean('model.auprc.all')} | {mean('model.auroc.all')} | {mean('model.ece.all')} | "
            f"{mean('model.pearson.all')} | {mean('model.spearman.all')} | {mean('model.f1.all')} | "
            f"{worst[top]:.5f} ({top}) | {'yes' if ok else 'no'} | {'yes' if within else 'no'} |"
        )
    lines += ["", "Largest |delta| over the models (and inputs), every metric (MSE: relative):", ""]
    short = {n: f"c{k}" for k, n in enumerate(names)}
    lines.append("| metric | " + " | ".join(short.values()) + " |")
    lines.append("|---" * (len(names) + 1) + "|")
    for key in metrics:
        cells = [f"{max(abs(x[n][key]) for x in d):.5f}" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "; ".join(f"{c}: {n}" for n, c in short.items())]
    return "\n".join(lines)


def per_depth_table(depths: list[str], per_case: list[dict[str, dict]]) -> str:
    """Markdown: per candidate and input depth, bytes a base (mean, max over the models), largest AUPRC/AUROC moves."""
    order = list(dict.fromkeys(depths))
    names = ["float32", *[n for n in per_case[0] if n != "float32"]]
    d = [deltas(rows) for rows in per_case]
    head = "| candidate | " + " | ".join(f"{x}: track, peakprob B/base; AUPRC, AUROC" for x in order) + " |"
    lines = [head, "|---" * (len(order) + 1) + "|"]
    for name in names:
        cells = []
        for depth in order:
            idx = [k for k, x in enumerate(depths) if x == depth]
            track = [per_case[k][name]["bytes"]["track"] for k in idx]
            prob = [per_case[k][name]["bytes"]["peakprob"] for k in idx]
            auprc = max(abs(d[k][name]["model.auprc.all"]) for k in idx)
            auroc = max(abs(d[k][name]["model.auroc.all"]) for k in idx)
            cells.append(
                f"{np.mean(track):.3f} ({max(track):.3f}), {np.mean(prob):.3f} ({max(prob):.3f}); "
                f"{auprc:.4f}, {auroc:.4f}"
            )
        label = "compact (shipped), real infer" if name == "compact" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TRACK_METRICS = (".pearson.", ".spearman.", ".mse.")


def track_table(depths: list[str], per_case: list[dict[str, dict]]) -> str:
    """Markdown: per candidate and input, the largest |delta| of the track's metrics, and within bf16 or not.

    "within bf16": every track metric moves no more than the bf16 route moves it on that input (or < 0.0005).
    """
    order = list(dict.fromkeys(depths))
    names = [n for n in per_case[0] if n != "float32"]
    d = [deltas(rows) for rows in per_case]
    keys = [k for k in d[0]["float32"] if any(t in k for t in TRACK_METRICS)]
    head = "| candidate | " + " | ".join(
        f"{x}: track B/base; largest track \\|delta\\| (metric); within bf16" for x in order
    )
    lines = [head + " |", "|---" * (len(order) + 1) + "|"]
    for name in names:
        cells = []
        for depth in order:
            idx = [k for k, x in enumerate(depths) if x == depth]
            worst = {k: max(abs(d[i][name][k]) for i in idx) for k in keys}
            gpu = {k: max(abs(d[i][GPU_ROUTE][k]) for i in idx) for k in keys}
            top = max(worst, key=worst.get)
            within = all(worst[k] <= max(TARGET_DELTA, gpu[k]) for k in keys)
            track = max(per_case[i][name]["bytes"]["track"] for i in idx)
            cells.append(f"{track:.3f}; {worst[top]:.5f} ({top}); {'yes' if within else 'no'}")
        label = "compact (shipped), real infer" if name == "compact" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", type=Path, required=True, help="trained demo models (model.pt)")
    p.add_argument("--results", type=Path, default=REPO / "results", help="the demo's results/ (coverage bigWigs)")
    p.add_argument("--work", type=Path, default=Path("/tmp/atacdenoise-precision"), help="outputs, cached")
    p.add_argument(
        "--depths",
        nargs="+",
        default=["given"],
        help="the demo's inputs to denoise (coverage/HSC/{depth}.rep1.bw: given = the 5M library, 15000, 60000)",
    )
    p.add_argument("--quick", action="store_true", help="the first model and two candidates only")
    p.add_argument(
        "--only", nargs="+", metavar="TEXT", help="only the candidates whose names hold one of these (and compact's)"
    )
    p.add_argument("--out", type=Path, help="also write the Markdown tables here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    inputs = [args.results / f"coverage/HSC/{d}.rep1.bw" for d in ("full", *args.depths)]
    missing = [m for m in [*args.models, *inputs] if not m.exists()]
    if missing:
        raise SystemExit(f"{[str(m) for m in missing]} missing: train the demo models / run the demo's data stages")
    models = args.models[:1] if args.quick else args.models
    candidates = QUICK if args.quick else list(CANDIDATES)
    if args.only:
        candidates = [c for c in candidates if c == OFFLINE_COMPACT or any(t in c for t in args.only)]
    results = args.results.resolve()
    cases = [(k + 1, m.resolve(), d) for d in args.depths for k, m in enumerate(models)]
    per_case = [run_model(k, m, args.work, results, candidates, d) for k, m, d in cases]
    text = tables(per_case)
    if len(args.depths) > 1:  # each input's files and its largest AUPRC and AUROC moves, per candidate
        text += "\n\n" + per_depth_table([d for _, _, d in cases], per_case)
    text += "\n\n" + track_table([d for _, _, d in cases], per_case)
    names = [f"model {k}, {d}" for k, _, d in cases]
    refs = [args.work / f"model{k}" / ("" if d == "given" else f"depth-{d}") / "float32" for k, _, d in cases]
    text += "\n\n" + anatomy_table([(n, background_anatomy(r)) for n, r in zip(names, refs)])
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
