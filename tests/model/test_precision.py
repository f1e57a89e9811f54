"""Compact denoised outputs: values to the documented significant bits, bounded error, float32 unchanged, small files.

The realistic case runs ``atacdenoise infer`` (in process) on 2 Mb of the demo's real 5M-read HSC
coverage (``resources/demo``) with a light-shaped model set to smooth its input and call peaks where the
smoothed coverage is high (the way a trained model's outputs look: a smooth track, zero or a constant
floor away from reads, a probability near 1 in peaks), once per ``--precision``.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from atacdenoise.io.bbiwrite import FIRST_ZOOM, BigWigFileWriter
from atacdenoise.io.bigwig import bigwig_total, read_bigwig
from atacdenoise.model.infer import (
    COMPACT_FIRST_ZOOM,
    PROB_BIN,
    PROB_BITS,
    PROB_LOW_BELOW,
    PROB_LOW_BITS,
    TRACK_BIN,
    TRACK_BITS,
    TRACK_FLOOR,
    aligned_pieces,
    bin_probability,
    bin_track,
    compact_chunk,
    denoise_array,
    denoise_bigwig,
    keep_sides,
    round_probability_bits,
    round_significant_bits,
    track_floor,
)
from atacdenoise.model.network import build_model, save_model, transform_input

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "resources" / "demo"
SIZES = DEMO / "hg19_first10mb.chr1_chr2.sizes"
#: 2 Mb of the demo's holdout chromosome arm
CHROM, START, END = "chr2", 5_000_000, 7_000_000
PRE = {"smooth_bp": 200, "shift_plus": 4, "shift_minus": -5, "min_mapq": 30, "keep_duplicates": False, "cpm": False}
TRANSFORM = {"kind": "log1p"}


def reference_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Round each value to ``bits`` significant bits in exact rational arithmetic (an independent reference).

    ``v = m · 2**e`` with ``0.5 <= |m| < 1`` (``math.frexp``, exact); the last kept bit is worth ``2**(e - bits)``,
    and ``round`` on an exact ``Fraction`` rounds half to even; a result past the float32 range is clamped.
    """
    out = []
    for v in values.tolist():
        if v == 0 or not math.isfinite(v):
            out.append(v)
            continue
        unit = Fraction(2) ** (math.frexp(v)[1] - bits)
        r = float(round(Fraction(v) / unit) * unit)
        largest = (2**bits - 1) * 2.0 ** (128 - bits)  # past the float32 range: the largest float32 with `bits` bits
        out.append(math.copysign(min(abs(r), largest), r))
    return np.array(out, dtype=np.float64).astype(np.float32)


def _wide_values(n: int, seed: int = 0) -> np.ndarray:
    """float32 values of both signs over the whole normal range, plus ties and grid points."""
    rng = np.random.default_rng(seed)
    wide = (10.0 ** rng.uniform(-37, 38, n) * rng.choice([-1, 1], n)).astype(np.float32)
    edges = np.array([1.0, 1.5, 1 + 2**-8, 1 + 3 * 2**-9, 255.5, 256.5, 0.1, -0.1, 3.0e38, 1e-30], np.float32)
    return np.concatenate([wide, edges])


# --------------------------------------------------------------------------- the rounding functions


@pytest.mark.parametrize("bits", [1, 6, TRACK_BITS, PROB_BITS, 20, 24])
def test_significant_bits_round_to_nearest_even_within_the_relative_bound(bits):
    x = _wide_values(5_000)
    q = round_significant_bits(x, bits)
    assert q.dtype == np.float32
    np.testing.assert_array_equal(q, reference_bits(x, bits))
    rel = np.abs(q.astype(np.float64) - x) / np.abs(x.astype(np.float64))
    assert rel.max() <= 2.0**-bits
    # at most `bits` significant bits: the float32 mantissa's last 24 - bits bits are zero
    assert np.all(q.view(np.uint32) & np.uint32((1 << (24 - bits)) - 1) == 0)
    np.testing.assert_array_equal(round_significant_bits(q, bits), q)  # idempotent
    order = np.sort(x)
    assert np.all(np.diff(round_significant_bits(order, bits).astype(np.float64)) >= 0)  # monotone


def test_significant_bits_tie_cases_specials_and_the_float32_edges():
    q = round_significant_bits(np.array([1 + 2**-9, 1 + 3 * 2**-9, 255.5, 256.5, -(1 + 2**-9)], np.float32), 8)
    np.testing.assert_array_equal(q, np.array([1.0, 1 + 2**-7, 256.0, 256.0, -1.0], np.float32))  # ties to even
    special = round_significant_bits(np.array([0.0, -0.0, np.nan, np.inf, -np.inf], np.float32), 8)
    assert special[0] == 0 and special[1] == 0 and np.signbit(special[1]) and np.isnan(special[2])
    assert special[3] == np.inf and special[4] == -np.inf
    # the largest float32 would round up past the range: it gets the largest float32 with 8 bits, not inf
    top = round_significant_bits(np.array([np.finfo(np.float32).max, -np.finfo(np.float32).max], np.float32), 8)
    np.testing.assert_array_equal(top, np.array([1, -1], np.float32) * np.float32((2**8 - 1) * 2.0 ** (128 - 8)))
    # subnormals keep `bits` significant bits (relative error, not the 2**-149 grid's absolute one)
    tiny = np.array([1e-45, 3e-45, 1.234e-40, 5e-39], np.float32)
    q = round_significant_bits(tiny, 4)
    np.testing.assert_array_equal(q, reference_bits(tiny, 4))
    assert np.all(q > 0) and np.all(np.abs(q.astype(np.float64) - tiny) <= 2.0**-4 * tiny)
    for bad in (0, 25, 8.0, np.array([8, 0])):
        with pytest.raises(ValueError, match="bits"):
            round_significant_bits(tiny, bad)


def test_significant_bits_per_value_are_each_values_own_rounding():
    """Per-element bits (one pass for the probability's two bands) give what each count gives alone."""
    x = _wide_values(5_000)
    x = np.concatenate([x, np.array([np.finfo(np.float32).max, -np.finfo(np.float32).max, np.inf, np.nan], np.float32)])
    bits = np.random.default_rng(3).integers(1, 25, x.size)
    q = round_significant_bits(x, bits)
    for b in np.unique(bits):
        np.testing.assert_array_equal(q[bits == b], round_significant_bits(x[bits == b], int(b)))


def test_probabilities_keep_7_bits_of_the_distance_to_the_nearer_end_4_below_1_128_monotone_in_p():
    rng = np.random.default_rng(2)
    tails = 10.0 ** rng.uniform(-30, np.log10(0.5), 20_000)
    edge = np.float32(PROB_LOW_BELOW)
    band_edges = [edge, np.nextafter(edge, 0), np.nextafter(edge, 1), 1 - edge, np.nextafter(1 - edge, 1)]
    p = np.concatenate([tails, 1 - tails, rng.uniform(0, 1, 20_000), [0, 0.5, 1, 1e-8, 1 - 2**-24, 2**-24]])
    p = np.sort(np.concatenate([p.astype(np.float32), np.array(band_edges, np.float32)]))
    q = round_probability_bits(p)
    assert q.dtype == np.float32
    assert np.all(np.diff(q.astype(np.float64)) >= 0)  # sorted p -> non-decreasing output, across the bands too
    exact = np.isin(p, np.array([0.0, 0.5, 1.0, PROB_LOW_BELOW, 1 - PROB_LOW_BELOW], np.float32))
    np.testing.assert_array_equal(q[exact], p[exact])  # 0, 0.5, 1 and the band edges exact
    assert q.min() >= 0 and q.max() <= 1
    # q = the rounding of d = min(p, 1 - p), mirrored above 0.5, to 6 bits below 1/128 and 8 from there:
    # checked in exact integer arithmetic
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    d = np.minimum(p64, 1 - p64).astype(np.float32)
    coarse = d < PROB_LOW_BELOW
    assert PROB_LOW_BITS < PROB_BITS and 0.5 < np.mean(coarse) < 0.9  # both bands are exercised
    expect = np.empty_like(d)
    expect[coarse] = reference_bits(d[coarse], PROB_LOW_BITS)
    expect[~coarse] = reference_bits(d[~coarse], PROB_BITS)
    low = p <= 0.5
    np.testing.assert_array_equal(q[low], expect[low])
    np.testing.assert_array_equal(1 - q64[~low], expect[~low].astype(np.float64))
    bound = np.where(coarse, 2.0**-PROB_LOW_BITS, 2.0**-PROB_BITS) * d
    assert np.all(np.abs(q64 - p64) <= bound)  # relative precision in both tails
    np.testing.assert_array_equal(round_probability_bits(q), q)  # idempotent
    nan = round_probability_bits(np.array([np.nan], np.float32))
    assert np.isnan(nan[0])
    # one band: low_bits=None keeps `bits` everywhere
    one = round_probability_bits(p, 9, low_bits=None)
    np.testing.assert_array_equal(one[low], reference_bits(p[low], 9))


@pytest.mark.parametrize("low_below", [0.0, 0.01, 0.75, -0.125])
def test_the_band_edge_must_be_a_power_of_two_so_the_rounding_stays_monotone(low_below):
    with pytest.raises(ValueError, match="power of two"):
        round_probability_bits(np.array([0.1], np.float32), low_below=low_below)


def test_compact_chunk_rounds_the_track_to_8_bits_and_the_probability_to_8_or_6():
    track, prob = np.array([1.2345], np.float32), np.array([0.123456, 0.001], np.float32)
    # 1.2345 = 1.0011110|0...b -> 1.0011110b = 1.234375; 0.123456 = (252.84 / 256)·2**-3 -> (253 / 256)·2**-3 (8
    # bits); 0.001 = (32.77 / 64)·2**-9 -> (33 / 64)·2**-9 (6 bits, below 1/128)
    assert round_significant_bits(track, TRACK_BITS)[0] == np.float32(1.234375)
    p = round_probability_bits(prob)
    assert p[0] == np.float32(253 / 2048) and p[1] == np.float32(33 / 32768)
    # one base per bin (chunk from position 7, bins of 8): each base is its own bin's mean
    t, p = compact_chunk(track, prob[:1], 7, 0.0, (0.5,))
    assert t[0] == np.float32(1.234375) and p[0] == np.float32(253 / 2048)


# --------------------------------------------------------------------------- the writer


def _first_zoom(path: Path) -> int:
    """Bases per record of a bigWig's first zoom level (its first zoom header, at byte 64)."""
    with open(path, "rb") as fh:
        fh.seek(64)
        return struct.unpack("<I", fh.read(4))[0]


def test_writer_keeps_the_smaller_encoding_of_a_step_like_chunk_and_the_values(tmp_path):
    """Rounded outputs: runs of a few equal values deflate smaller as fixed-step data than as bedGraph items."""
    rng = np.random.default_rng(1)
    cuts = np.bincount(rng.integers(0, 200_000, 4_000), minlength=200_000).astype(np.float64)  # sparse reads
    kernel = np.exp(-0.5 * (np.arange(-600, 601) / 200.0) ** 2)
    smooth = np.convolve(cuts, kernel / kernel.sum(), mode="same")  # a smooth track, as a model's
    prob = (np.rint(256 / (1 + np.exp(-(smooth * 150 - 5.0)))) / 256).astype(np.float32)  # on 1/256 steps
    assert (np.count_nonzero(prob[1:] != prob[:-1]) + 1) * 4 <= prob.size  # step-like: would be bedGraph items
    sizes = {"chr1": prob.size}
    written = {}
    for smallest in (False, True):
        path = tmp_path / f"p{smallest}.bw"
        with BigWigFileWriter(path, sizes, threads=1, first_zoom=COMPACT_FIRST_ZOOM, smallest=smallest) as w:
            for k in range(0, prob.size, 50_000):
                w.add("chr1", k, prob[k : k + 50_000])
        np.testing.assert_array_equal(read_bigwig(path, "chr1"), prob)
        assert _first_zoom(path) == COMPACT_FIRST_ZOOM
        written[smallest] = path.stat().st_size
    assert written[True] < written[False]


# --------------------------------------------------------------------------- inference on real coverage


def smoothing_model(x: np.ndarray, pad: int, transform: dict = TRANSFORM, mean: float | None = None) -> torch.nn.Module:
    """Light-shaped network set to smooth its input (0 on its lowest 60 %) and to call peaks on its top 5 %.

    ``transform``: the model's input transform (a depth one at scale 1: the coverage as it is); ``mean``: the
    track's mean over ``x`` (a trained depth-normalised model's is the reference total over the genome's length).
    """
    torch.manual_seed(0)
    model = build_model({"preset": "light"}).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv1d):
                module.weight.fill_(1.0 / (module.in_channels * module.kernel_size[0]))
                module.bias.zero_()
        for block in [*model.reg_blocks, *model.cls_blocks]:
            if isinstance(block.skip, torch.nn.Conv1d):
                block.skip.weight.fill_(1.0)
        inp = transform_input(torch.from_numpy(np.pad(x, pad))[None], transform)
        track, _ = model(inp)
        # a trained model's track is exactly 0 (the output ReLU) on most of the background (66 % of the demo's
        # holdout): set the offset that zeroes the lowest 60 %
        model.reg_out.bias.fill_(-float(np.quantile(track[0, pad:-pad].numpy(), 0.6)))
        if mean is not None:  # the track is ReLU of reg_out's output: scaling reg_out scales it
            gain = mean / float(model(inp)[0][0, pad:-pad].mean())
            model.reg_out.weight *= gain
            model.reg_out.bias *= gain
        _, logits = model(inp)
        logits = logits[0, pad:-pad].numpy()
        cut, scale = np.quantile(logits, 0.95), 4.0 / logits.std()
        model.cls_out.weight *= scale
        model.cls_out.bias.fill_(-scale * cut)
    return model


@pytest.fixture(scope="module")
def denoised(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("precision")
    bed = d / "region.bed"
    bed.write_text(f"{CHROM}\t{START}\t{END}\n")
    noisy = d / "noisy.bw"
    args = ["--input", DEMO / "HSC_5M.chr1_chr2.bam", "--kind", "bam", "--sizes", SIZES, "--out", noisy]
    res = subprocess.run(
        [sys.executable, "-m", "atacdenoise.cli", "coverage", *args, "--chroms", CHROM, "--target-regions", bed],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    x = read_bigwig(noisy, CHROM)[START:END]
    assert np.count_nonzero(x) > 0.05 * x.size  # real reads: ~11 % of the bases are within 100 bp of a cut site
    interval = 50_000
    probe = build_model({"preset": "light"})
    pad = probe.receptive_field // 2 + 1
    model = smoothing_model(x, pad)
    model_pt = d / "model.pt"
    window = {"interval": interval, "pad": pad}
    save_model(model_pt, model, preprocessing=PRE, window=window, input_transform=TRANSFORM, threshold=0.5)
    out = {}
    for precision in ("float32", "compact"):
        prefix = d / precision
        denoise_bigwig(
            model_pt, noisy, SIZES, prefix, chroms=[CHROM], device="cpu", threads=1,
            target_regions=bed, precision=precision,
        )  # fmt: skip
        out[precision] = {
            "prefix": prefix,
            "track": read_bigwig(f"{prefix}.track.bw", CHROM)[START:END],
            "prob": read_bigwig(f"{prefix}.peakprob.bw", CHROM)[START:END],
            "bytes": {k: Path(f"{prefix}.{k}.bw").stat().st_size / (END - START) for k in ("track", "peakprob")},
        }
    ref_track, ref_prob = denoise_array(
        model, x, interval, pad, device="cpu", transform=lambda t: transform_input(t, TRANSFORM)
    )
    # a depth-normalised model (the default input transform; its reference the input's total: scale 1), whose
    # compact track is binned below the model's mean coverage
    depth = {"kind": "depth", "reference": bigwig_total(noisy, {CHROM: 10_000_000})}
    genome_bp = sum(int(line.split()[1]) for line in SIZES.read_text().splitlines())  # chr1, chr2: the input's
    model = smoothing_model(x, pad, depth, mean=depth["reference"] / genome_bp)
    save_model(model_pt, model, preprocessing=PRE, window=window, input_transform=depth, threshold=0.5)
    prefix = d / "depth"
    denoise_bigwig(
        model_pt, noisy, SIZES, prefix, chroms=[CHROM], device="cpu", threads=1,
        target_regions=bed, precision="compact",
    )  # fmt: skip
    out["depth"] = {
        "genome_bp": genome_bp,
        "prefix": prefix,
        "track": read_bigwig(f"{prefix}.track.bw", CHROM)[START:END],
        "bytes": {k: Path(f"{prefix}.{k}.bw").stat().st_size / (END - START) for k in ("track", "peakprob")},
        "ref": denoise_array(model, x, interval, pad, device="cpu", transform=lambda t: transform_input(t, depth))[0],
        "transform": depth,
    }
    return {**out, "ref": (ref_track, ref_prob)}


def test_float32_outputs_are_the_models_values_bit_for_bit(denoised):
    ref_track, ref_prob = denoised["ref"]
    np.testing.assert_array_equal(denoised["float32"]["track"], ref_track)
    np.testing.assert_array_equal(denoised["float32"]["prob"], ref_prob)
    side = json.loads(Path(f"{denoised['float32']['prefix']}.track.bw.json").read_text())
    assert side["precision"] == "float32" and side["first_zoom_bp"] == FIRST_ZOOM


def test_compact_outputs_are_the_float32_ones_rounded_within_the_bounds(denoised):
    f, c = denoised["float32"], denoised["compact"]
    # exactly the documented storage of the model's values: the probability's 8-bp means (per base where a
    # bin straddles the threshold, 0.5 here, the fixture model's), rounded; the track rounded
    rounded = round_probability_bits(f["prob"])
    np.testing.assert_array_equal(c["prob"], bin_probability(rounded, f["prob"], START, (0.5,)))
    np.testing.assert_array_equal(c["prob"] >= 0.5, f["prob"] >= 0.5)  # the model's own calls, base by base
    binned = c["prob"] != rounded
    assert 0.1 < np.mean(binned) < 0.9  # a quarter of the bases hold a bin mean unlike their own value (0.26)
    np.testing.assert_array_equal(c["track"], round_significant_bits(f["track"], TRACK_BITS))
    levels = np.unique(c["track"])
    np.testing.assert_array_equal(levels, reference_bits(levels, TRACK_BITS))
    # error bounds: 2**-8 of the distance to the nearer end (0 and 1 exact), 2**-6 below 1/128; 1/256 of the
    # track's value
    p, q = f["prob"].astype(np.float64), rounded.astype(np.float64)
    assert c["prob"].min() >= 0 and c["prob"].max() <= 1
    d = np.minimum(p, 1 - p)
    assert np.all(np.abs(q - p) <= np.where(d < PROB_LOW_BELOW, 2.0**-PROB_LOW_BITS, 2.0**-PROB_BITS) * d)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(q[order]) >= 0)  # the per-base rounding keeps the bases' ranking, up to ties
    t = f["track"].astype(np.float64)
    nonzero = t != 0
    assert np.count_nonzero(nonzero) > 0.1 * t.size
    rel = np.abs(c["track"][nonzero] - t[nonzero]) / np.abs(t[nonzero])
    assert rel.max() <= 2.0**-TRACK_BITS
    assert np.all(c["track"][~nonzero] == 0)  # zero stays zero
    for key, bits, of in (
        ("peakprob", PROB_LOW_BITS, f"min(p, 1 - p) of the {PROB_BIN}-bp mean or of the base"),
        ("track", TRACK_BITS, "the value"),
    ):
        side = json.loads(Path(f"{c['prefix']}.{key}.bw.json").read_text())
        assert side["precision"] == "compact" and side["max_relative_error"] == 2.0**-bits
        assert side["relative_to"] == of and side["first_zoom_bp"] == COMPACT_FIRST_ZOOM
    assert json.loads(Path(f"{c['prefix']}.peakprob.bw.json").read_text())["bin_bp"] == PROB_BIN


def _threshold_again(prefix: Path, out: Path) -> str:
    """Return infer's narrowPeak at ``prefix``, checked equal to `atacdenoise threshold` on its stored files."""
    cmd = [sys.executable, "-m", "atacdenoise.cli", "threshold", "--prob", f"{prefix}.peakprob.bw"]
    cmd += ["--track", f"{prefix}.track.bw", "--threshold", "0.5", "--out", out]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    ours = Path(f"{prefix}.peaks.narrowPeak").read_text()
    assert ours.count("\n") > 20 and out.read_text() == ours
    return ours


def test_peaks_are_what_the_compact_file_gives_at_the_threshold(denoised, tmp_path):
    """`atacdenoise threshold` on the stored (binned) probability, summits on the track: infer's narrowPeak."""
    ours = _threshold_again(denoised["compact"]["prefix"], tmp_path / "again.narrowPeak")
    # the float32 outputs' peaks: the same regions (the stored values keep the model's side of the threshold)
    f32 = Path(f"{denoised['float32']['prefix']}.peaks.narrowPeak").read_text()
    regions = [[line.split("\t")[:3] for line in text.splitlines()] for text in (ours, f32)]
    assert regions[0] == regions[1]


def _sided(value: float, rounded: float, cuts: tuple) -> float:
    """Return ``rounded``, moved to the cut (or the float32 below it) where it lies across a cut from ``value``."""
    for cut in map(np.float32, cuts):
        if value >= cut and rounded < cut:
            rounded = cut
        elif value < cut and rounded >= cut:
            rounded = np.nextafter(cut, np.float32(0))
    return np.float32(rounded)


def _bin_reference(rounded: np.ndarray, prob: np.ndarray, start: int, cuts: tuple, width: int) -> np.ndarray:
    """One bin at a time: the rounded mean, or the bases' own rounded values where they straddle a cut.

    Each value is kept on its source's side of every cut.
    """
    out, i = np.empty_like(rounded), 0
    while i < prob.size:
        j = min(prob.size, ((start + i) // width + 1) * width - start)  # the end of base i's bin
        p = prob[i:j]
        if any(0 < np.count_nonzero(p >= np.float32(cut)) < p.size for cut in cuts):
            out[i:j] = [_sided(a, b, cuts) for a, b in zip(p, rounded[i:j])]
        else:
            mean = np.float32(sum(map(float, p)) / p.size)  # float64, left to right
            out[i:j] = _sided(mean, round_probability_bits(mean), cuts)
        i = j
    return out


@pytest.mark.parametrize("start", [0, 5, 8, 1_000_003])
def test_probability_bins_are_aligned_means_and_keep_the_calls_at_every_cut(start):
    rng = np.random.default_rng(start)
    # a background, a ramp through both cuts and noisy peaks: bins on either side and straddling
    prob = np.concatenate(
        [rng.random(301) * 0.01, np.linspace(0, 1, 257), np.clip(0.5 + rng.normal(0, 0.2, 203), 0, 1)]
    ).astype(np.float32)
    rounded = round_probability_bits(prob)
    cuts = (0.5, 0.1)  # 0.1 is not a float32: compared as float32, as the peak caller does
    # values the rounding carries across a cut: just below and at each cut
    near = [np.nextafter(np.float32(c), np.float32(0)) for c in cuts] + [np.float32(c) for c in cuts]
    prob = np.concatenate([prob, np.array(near, np.float32)])
    rounded = round_probability_bits(prob)
    assert any(np.any((prob >= np.float32(c)) != (rounded >= np.float32(c))) for c in cuts)
    stored = bin_probability(rounded, prob, start, cuts, width=PROB_BIN)
    np.testing.assert_array_equal(stored, _bin_reference(rounded, prob, start, cuts, PROB_BIN))
    for cut in map(np.float32, cuts):
        np.testing.assert_array_equal(stored >= cut, prob >= cut)  # the model's own calls
    # bins start at multiples of the width on the chromosome: constant within each unsplit bin
    ids = (start + np.arange(prob.size)) // PROB_BIN
    kept = stored != keep_sides(rounded, prob, cuts)
    for b in np.unique(ids[kept]):
        assert np.unique(stored[ids == b]).size == 1
    assert bin_probability(rounded[:0], prob[:0], start, cuts).size == 0


def test_compact_files_take_a_fraction_of_a_byte_per_base(denoised):
    f, c = denoised["float32"]["bytes"], denoised["compact"]["bytes"]
    # benchmarks/precision.py, the demo model on the demo's chr2 at its three depths: 0.11-0.17 bytes a base for
    # the probability (0.17-0.37 per base, before the 8-bp bins) and 0.11-0.19 for the track (0.13-0.24 per base,
    # before its bins), against 1.3-2.1 and 1.2-1.4 in float32. This fixture (not a trained model: a smoothing
    # network with log1p input, so its track stays per base; the depth-normalised one's binned track is 0.18,
    # asserted <= 0.2 below) gives 0.12 and 0.21 against 1.14 and 1.25 in float32 (0.22 for the probability per
    # base; 0.32 with 9 bits of min(p, 1 - p) everywhere and a first zoom of 512 bp)
    assert c["peakprob"] <= 0.2 and c["track"] <= 0.25, (c, f)
    assert c["peakprob"] <= f["peakprob"] / 8 and c["track"] <= f["track"] / 5, (c, f)
    # the outputs are realistic: mostly non-zero, not constant, peaks present
    prob = denoised["compact"]["prob"]
    assert 0.01 < np.mean(prob >= 0.5) < 0.2 and np.unique(prob).size > 100


def _track_reference(track: np.ndarray, start: int, floor: float, width: int) -> np.ndarray:
    """One bin at a time: below the floor, the nonzero bases hold the nonzero mean; then 8 bits."""
    out, i = track.copy(), 0
    while i < track.size:
        j = min(track.size, ((start + i) // width + 1) * width - start)  # the end of base i's bin
        t = track[i:j]
        if np.abs(t).max() < floor and np.any(t != 0):
            out[i:j] = np.where(t != 0, np.float32(sum(map(float, t)) / np.count_nonzero(t)), 0)
        i = j
    return reference_bits(out, TRACK_BITS)


@pytest.mark.parametrize("start", [0, 5, 8, 1_000_003])
def test_track_bins_are_aligned_nonzero_means_below_the_floor_and_keep_the_zeros(start):
    rng = np.random.default_rng(start)
    # the background: exact zeros among small values; then signal around and far above the floor
    low = np.where(rng.random(403) < 0.6, 0, rng.random(403) * 2).astype(np.float32)
    track = np.concatenate([low, rng.random(205) * 4, 10 + rng.random(101) * 100]).astype(np.float32)
    floor = 2.5
    stored = bin_track(track, start, floor, width=TRACK_BIN)
    np.testing.assert_array_equal(stored, _track_reference(track, start, floor, TRACK_BIN))
    np.testing.assert_array_equal(stored == 0, track == 0)  # zeros stay zero, nonzero values stay nonzero
    high = track >= floor
    np.testing.assert_array_equal(stored[high], round_significant_bits(track[high], TRACK_BITS))  # bins >= floor
    assert np.mean(stored != round_significant_bits(track, TRACK_BITS)) > 0.1
    np.testing.assert_array_equal(bin_track(track, start, 0.0), round_significant_bits(track, TRACK_BITS))
    assert bin_track(track[:0], start, floor).size == 0


def test_track_floor_is_the_models_mean_coverage_and_needs_depth_normalisation():
    def meta(kind: str, reference: float | None = None) -> dict:
        return {"input_transform": {"kind": kind, **({"reference": reference} if reference else {})}}

    assert track_floor([meta("depth", 2e7)], 10_000_000) == TRACK_FLOOR * 2.0
    assert track_floor([meta("depth", 2e7), meta("depth", 4e7)], 10_000_000) == TRACK_FLOOR * 3.0  # an ensemble
    # no known output scale: the track stays per base
    assert track_floor([meta("log1p")], 10_000_000) == 0.0
    assert track_floor([meta("depth", 2e7), meta("none")], 10_000_000) == 0.0
    assert track_floor([meta("depth")], 10_000_000) == 0.0
    assert track_floor([{}], 10_000_000) == 0.0


def test_a_depth_normalised_models_compact_track_is_binned_below_its_mean_coverage(denoised, tmp_path):
    d = denoised["depth"]
    side = json.loads(Path(f"{d['prefix']}.track.bw.json").read_text())
    # the input is scaled to the reference total over the genome's chromosomes it has (both)
    floor = track_floor([{"input_transform": d["transform"]}], d["genome_bp"])
    assert side["bin_bp"] == TRACK_BIN and side["bin_floor"] == pytest.approx(floor) and floor > 0
    np.testing.assert_array_equal(d["track"], bin_track(d["ref"], START, floor))
    rounded = round_significant_bits(d["ref"], TRACK_BITS)
    assert 0.05 < np.mean(d["track"] != rounded) < 0.9, np.mean(d["track"] != rounded)
    assert d["bytes"]["track"] <= 0.2, d["bytes"]
    # the summits and signal come from the stored track: `atacdenoise threshold` on the files gives the narrowPeak
    _threshold_again(d["prefix"], tmp_path / "again.narrowPeak")


def test_keep_sides_moves_only_values_carried_across_a_cut_and_keeps_the_bound_and_the_order():
    cuts = (0.5648118, 0.5)
    c0, c1 = map(np.float32, cuts)
    # just below and at each cut, where 8 significant bits of min(p, 1 - p) round across it; and far from them
    prob = np.array(
        [np.nextafter(c0, np.float32(0)), c0, np.nextafter(c1, np.float32(0)), c1, 0.3, 0.9, 0.56, 0.57], np.float32
    )
    prob = np.sort(np.concatenate([prob, np.linspace(0.49, 0.58, 2001, dtype=np.float32)]))
    rounded = round_probability_bits(prob)
    assert np.any((rounded >= c0) != (prob >= c0))  # the rounding alone moves calls at the threshold
    sided = keep_sides(rounded, prob, cuts)
    for cut in (c0, c1):
        np.testing.assert_array_equal(sided >= cut, prob >= cut)
    moved = sided != rounded
    assert np.all(np.isin(sided[moved], [c0, c1, np.nextafter(c0, np.float32(0)), np.nextafter(c1, np.float32(0))]))
    assert np.all(np.abs(sided.astype(np.float64) - prob) <= np.abs(rounded.astype(np.float64) - prob))
    assert np.all(np.diff(sided) >= 0)  # still monotone in p
    assert keep_sides(rounded, prob, ()) is not rounded and np.array_equal(keep_sides(rounded, prob, ()), rounded)


@pytest.mark.parametrize("start, n", [(0, 0), (0, 16), (3, 5), (5, 3), (8, 17), (13, 40), (7, 1), (1000003, 9999)])
def test_aligned_pieces_tile_the_chunk_on_the_chromosomes_bin_boundaries(start, n):
    pieces = aligned_pieces(start, n, 8)
    assert [(lo, hi) for lo, hi, _ in pieces] == [
        (a, b) for a, b in zip([0, *[h for _, h, _ in pieces]], [h for _, h, _ in pieces])
    ]
    assert sum(hi - lo for lo, hi, _ in pieces) == n  # contiguous from 0 to n
    bins = [(start + lo + k * size, size) for lo, hi, size in pieces for k in range((hi - lo) // size)]
    assert all((hi - lo) % size == 0 and 0 < size <= 8 for lo, hi, size in pieces)
    for first, size in bins:  # every bin lies within one aligned 8-bp bin of the chromosome
        assert first // 8 == (first + size - 1) // 8
    assert len({first // 8 for first, _ in bins}) == len(bins)  # and no two share one
