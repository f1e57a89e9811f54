"""Inference: seamless tiling with tails, bounded streaming, peaks as MACS3 calls them, bad inputs refused."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig
import pytest
import torch

from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import read_bigwig, write_bigwig
from atacdenoise.io.intervals import mask_from_intervals, read_narrowpeak
from atacdenoise.model.infer import (
    TRACK_BITS,
    PeakStream,
    TileRunner,
    check_preprocessing,
    plan_chunks,
    plan_tiles,
    read_range,
    round_significant_bits,
    stitch,
    tile_windows,
)
from atacdenoise.model.network import DenoiseResNet, save_model, transform_input
from atacdenoise.peaks.macs3 import write_bedgraph

CPU = torch.device("cpu")
#: a tiny real model: receptive field 1 + 2·(2·4·2) + 1·(2·4·2) = 49 bp, so pad >= 24 makes tiling exact
TINY = dict(filters=3, kernel_size=5, dilation=2, reg_blocks=2, cls_blocks=1, convs_per_block=2)
PREPROCESSING = {
    "smooth_bp": 200,
    "shift_plus": 4,
    "shift_minus": -5,
    "min_mapq": 30,
    "keep_duplicates": False,
    "cpm": False,
}


def tiny_model(seed: int = 1) -> DenoiseResNet:
    """Random weights; seed 1 leaves the track non-zero on about half the bases (not a dead ReLU)."""
    torch.manual_seed(seed)
    return DenoiseResNet(**TINY).eval()


def single_pass(
    model: torch.nn.Module, x: np.ndarray, pad: int, transform: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Compute the reference (track, probability): one forward pass over the whole chromosome.

    The chromosome gets ``pad`` zeros each side.
    """
    with torch.inference_mode():
        inp = transform_input(torch.from_numpy(np.pad(x, pad).astype(np.float32))[None], transform)
        track, logits = model(inp)
    sl = slice(pad, pad + x.size)
    return track[0, sl].numpy(), torch.sigmoid(logits[0, sl]).numpy()


def coverage(length: int, seed: int) -> np.ndarray:
    """Simulate coverage like the real input, integer counts as float32.

    Tn5 cut sites (sparse background plus clusters at "peaks", one at the very
    end of the chromosome), each widened to a 201-bp box.
    """
    rng = np.random.default_rng(seed)
    centres = np.r_[rng.integers(0, length, size=max(1, length // 1500)), length - 40]
    cuts = np.r_[
        rng.integers(0, length, size=length // 250),
        np.concatenate([rng.normal(c, 60, size=rng.integers(10, 60)) for c in centres]).astype(np.int64),
    ]
    cuts = np.clip(cuts, 0, length - 1)
    counts = np.bincount(cuts, minlength=length)
    csum = np.concatenate(([0], np.cumsum(counts)))
    idx = np.arange(length)
    return (csum[np.minimum(idx + 101, length)] - csum[np.maximum(idx - 100, 0)]).astype(np.float32)


def run_tiled(runner: TileRunner, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []

    def read(lo: int, hi: int) -> np.ndarray:
        calls.append((lo, hi))
        return x[lo:hi]

    chunks = list(runner.run_chromosome(read, x.size))
    assert [c[0] for c in chunks] == [s for s, _ in plan_chunks(x.size, runner.interval, runner.batch_size)]
    return np.concatenate([c[1] for c in chunks]), np.concatenate([c[2] for c in chunks]), calls


# --------------------------------------------------------------------------- tiling (pure parts)


@pytest.mark.parametrize("length", [1, 999, 1000, 1001, 10_037])
def test_tiles_cover_every_base_exactly_once_tail_included(length):
    interval = 1000
    starts = plan_tiles(length, interval, pad=50)
    ends = np.minimum(starts + interval, length)
    assert starts[0] == 0 and ends[-1] == length
    assert len(starts) == -(-length // interval)
    assert np.array_equal(starts[1:], ends[:-1])  # contiguous, no overlap, no hole


def test_plan_tiles_rejects_bad_geometry():
    with pytest.raises(ValueError):
        plan_tiles(0, 1000, 10)
    with pytest.raises(ValueError):
        plan_tiles(100, 0, 10)


def test_tile_windows_hold_context_and_zeros_beyond_the_chromosome_ends():
    length, interval, pad = 25, 10, 3
    x = np.arange(1, length + 1, dtype=np.float32)  # value = position + 1, so 0 means "beyond the ends"
    lo, hi = read_range(0, length, length, pad)
    assert (lo, hi) == (0, length)
    w = tile_windows(x[lo:hi], 0, length, length, interval, pad)
    assert w.shape == (3, interval + 2 * pad)
    assert np.array_equal(w[0], np.r_[[0, 0, 0], np.arange(1, 14)])  # bases -3..12
    assert np.array_equal(w[1], np.arange(8, 24))  # bases 7..22
    assert np.array_equal(w[2], np.r_[np.arange(18, 26), np.zeros(8)])  # bases 17..32, past the end = 0
    # a middle chunk reads only its own bases plus context
    lo, hi = read_range(10, 20, length, pad)
    assert (lo, hi) == (7, 23)
    assert np.array_equal(tile_windows(x[lo:hi], 10, 20, length, interval, pad), w[1:2])
    # two tiles inside a longer chromosome: windowed straight from the values read (no zero buffer), into ``out``
    y = np.arange(1, 46, dtype=np.float32)
    whole = tile_windows(y, 0, 45, 45, interval, pad)
    lo, hi = read_range(10, 30, 45, pad)
    out = np.full((4, interval + 2 * pad), -1, np.float32)
    got = tile_windows(y[lo:hi], 10, 30, 45, interval, pad, out=out)
    assert got.base is out and np.array_equal(got, whole[1:3]) and (out[2:] == -1).all()


def test_stitch_keeps_the_central_interval_and_cuts_the_tail():
    interval, pad = 4, 2
    out = np.arange(3 * (interval + 2 * pad), dtype=np.float32).reshape(3, -1)
    got = stitch(out, interval, pad, n_bases=10)
    assert np.array_equal(got, np.r_[out[0, 2:6], out[1, 2:6], out[2, 2:4]])


# --------------------------------------------------------------------------- tiling with the model


@pytest.mark.parametrize("batch_size", [1, 3])
def test_tiled_inference_equals_one_pass_over_the_whole_chromosome_tail_included(batch_size):
    model = tiny_model()
    assert model.receptive_field == 49
    length, interval, pad = 10_037, 1000, 30  # not a multiple of interval: a 37-bp tail
    x = coverage(length, seed=1)
    track, prob, _ = run_tiled(TileRunner(model, CPU, interval, pad, batch_size), x)
    ref_track, ref_prob = single_pass(model, x, pad)
    assert track.shape == prob.shape == (length,)
    np.testing.assert_allclose(track, ref_track, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(prob, ref_prob, rtol=1e-5, atol=1e-6)
    # the tail was denoised: the strong box at the very end shows in the output's last bases
    tail = slice(length - 37, length)
    empty = single_pass(model, np.zeros(length, np.float32), pad)[0][tail]
    assert not np.allclose(track[tail], empty)
    np.testing.assert_allclose(track[tail], ref_track[tail], rtol=1e-5, atol=1e-5)


def test_too_little_context_shows_seams_so_the_equality_test_is_sensitive():
    model = tiny_model()
    x = coverage(5000, seed=2)
    track, _, _ = run_tiled(TileRunner(model, CPU, 1000, 5, 2), x)
    ref_track, _ = single_pass(model, x, 30)
    assert np.abs(track - ref_track).max() > 1e-3


def test_chromosome_shorter_than_one_tile_is_denoised_whole():
    model = tiny_model()
    x = coverage(777, seed=3)
    track, prob, calls = run_tiled(TileRunner(model, CPU, 1000, 30, 16), x)
    assert calls == [(0, 777)]
    ref_track, ref_prob = single_pass(model, x, 30)
    np.testing.assert_allclose(track, ref_track, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(prob, ref_prob, rtol=1e-5, atol=1e-6)


def test_long_chromosome_is_read_and_computed_in_bounded_chunks():
    model = tiny_model()
    length, interval, pad, batch = 2_000_003, 5000, 30, 4
    x = coverage(length, seed=4)
    runner = TileRunner(model, CPU, interval, pad, batch)
    track, _, calls = run_tiled(runner, x)
    n_tiles = -(-length // interval)
    assert len(calls) == -(-n_tiles // batch) == runner.stats.chunks  # one read per chunk of `batch` tiles
    assert max(hi - lo for lo, hi in calls) <= batch * interval + 2 * pad  # never more than one chunk in memory
    assert [lo for lo, _ in calls] == sorted(lo for lo, _ in calls) and calls[-1][1] == length
    assert runner.stats.tiles == n_tiles and runner.stats.bases == length
    ref = single_pass(model, x[-30_000:], pad)[0]  # the end of the chromosome: zeros beyond it in both
    np.testing.assert_allclose(track[-20_000:], ref[-20_000:], rtol=1e-5, atol=1e-5)


def test_stretches_stream_as_one_pipeline_with_no_drain_at_a_boundary():
    """The next chromosome's first chunk is read while the model still runs this one's last (issue 23)."""
    import threading
    import time

    model = tiny_model()
    interval, pad, batch = 1000, 30, 2
    xs = {"chrA": coverage(4_500, seed=5), "chrB": coverage(2_100, seed=6), "chrC": coverage(700, seed=7)}
    runner = TileRunner(model, CPU, interval, pad, batch)
    events: list[tuple[str, str, int]] = []
    lock = threading.Lock()

    def reader(chrom: str):
        def read(lo: int, hi: int) -> np.ndarray:
            with lock:
                events.append(("read", chrom, lo))
            return xs[chrom][lo:hi]

        return read

    def launch(windows: torch.Tensor, n_bases: int):
        with lock:
            events.append(("forward", "", n_bases))
        time.sleep(0.2)  # a slow model: the prefetch thread has long finished its read
        out = runner.launch(windows, n_bases)
        with lock:
            events.append(("done", "", n_bases))
        return out

    stretches = [(c, reader(c), x.size) for c, x in xs.items()]
    chunks = list(runner.run_stretches(stretches, launch))
    for chrom, x in xs.items():  # outputs as if each chromosome ran alone
        mine = [c for c in chunks if c[0] == chrom]
        assert [c[1] for c in mine] == [s for s, _ in plan_chunks(x.size, interval, batch)]
        alone = run_tiled(TileRunner(model, CPU, interval, pad, batch), x)[0]
        np.testing.assert_array_equal(np.concatenate([c[2] for c in mine]), alone)
    before = 0
    for prev, nxt in (("chrA", "chrB"), ("chrB", "chrC")):  # the next one's first read before the last chunk is done
        before += len(plan_chunks(xs[prev].size, interval, batch))
        first_read = events.index(("read", nxt, 0))
        assert sum(e[0] == "done" for e in events[:first_read]) < before, events


def test_each_chunk_is_launched_before_the_previous_ones_outputs_are_handed_on():
    """The launch-ahead order a GPU overlaps by (its model runs chunk k + 1 while the caller hands chunk k on)."""
    runner = TileRunner(tiny_model(), CPU, 1000, 30, 2)
    x = coverage(9_000, seed=8)  # 5 chunks of 2 tiles
    order: list[str] = []

    def launch(windows: torch.Tensor, n_bases: int):
        order.append(f"launch{sum(o.startswith('launch') for o in order)}")
        return runner.launch(windows, n_bases)

    got = []
    for k, (_, track, _) in enumerate(runner.run_chromosome(lambda lo, hi: x[lo:hi], x.size, launch)):
        order.append(f"hand{k}")
        got.append(track)
    assert order == ["launch0", "launch1", "hand0", "launch2", "hand1", "launch3", "hand2", "launch4", "hand3", "hand4"]
    np.testing.assert_array_equal(np.concatenate(got), run_tiled(TileRunner(tiny_model(), CPU, 1000, 30, 2), x)[0])


# --------------------------------------------------------------------------- streaming peak calls


def whole_chromosome_peaks(prob: np.ndarray, track: np.ndarray, threshold: float) -> pd.DataFrame:
    from atacdenoise.peaks.threshold import call_peaks, peak_table

    starts, ends = call_peaks(prob, threshold, min_length=200, max_gap=30)
    return peak_table("chrT", starts, ends, prob, track=track, name_prefix="chrT_peak")


def streamed_peaks(
    prob: np.ndarray, track: np.ndarray, threshold: float, cuts: list[int]
) -> tuple[pd.DataFrame, PeakStream]:
    stream = PeakStream("chrT", threshold, min_length=200, max_gap=30)
    bounds = [0, *cuts, prob.size]
    for a, b in itertools.pairwise(bounds):
        stream.add(a, prob[a:b], track[a:b])
    return stream.finish(), stream


def peaky_probability(length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probability with above-threshold islands of many lengths and gaps (some <= 30, some > 30)."""
    rng = np.random.default_rng(seed)
    prob = rng.uniform(0, 0.45, size=length).astype(np.float32)
    pos = 0
    while pos < length:
        pos += int(rng.integers(5, 400))
        run = int(rng.integers(1, 300))
        prob[pos : pos + run] = rng.uniform(0.5, 1.0, size=len(prob[pos : pos + run]))
        pos += run
    track = rng.gamma(2.0, 3.0, size=length).astype(np.float32)
    return prob, track


def test_streamed_peak_calls_equal_whole_chromosome_calls_across_chunk_boundaries():
    prob, track = peaky_probability(60_000, seed=5)
    whole = whole_chromosome_peaks(prob, track, 0.5)
    assert len(whole) > 20
    rng = np.random.default_rng(6)
    for cuts in (
        [1000 * i for i in range(1, 60)],
        sorted(rng.choice(np.arange(1, 60_000), 80, replace=False).tolist()),
    ):
        got, _ = streamed_peaks(prob, track, 0.5, cuts)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), whole.reset_index(drop=True), check_dtype=False)


def test_peak_stream_holds_only_the_bases_since_the_last_quiet_run():
    prob, track = peaky_probability(200_000, seed=7)
    _, stream = streamed_peaks(prob, track, 0.5, list(range(1000, 200_000, 1000)))
    longest_region = 300 + 400  # islands up to 300 bp, joined only by sub-32-bp gaps: far below the chromosome
    assert stream.max_buffered < 1000 + 10 * longest_region


# --------------------------------------------------------------------------- settings checks


def test_preprocessing_mismatch_names_the_key_and_both_values():
    with pytest.raises(InputError, match=r"smooth_bp.*100.*smooth_bp=200"):
        check_preprocessing({**PREPROCESSING, "smooth_bp": 100}, PREPROCESSING, "noisy.bw")
    check_preprocessing({**PREPROCESSING, "source": "x.bam", "min_mapq": 10}, PREPROCESSING, "noisy.bw")  # not compared


# --------------------------------------------------------------------------- the command, end to end

SIZES = {"chr1": 23_456, "chr2": 777}  # chr1: 23 full tiles + a 456-bp tail; chr2: shorter than one tile
WINDOW = {"interval": 1000, "pad": 30}
TRANSFORM = {"kind": "log1p"}


def calibrated_model(x: np.ndarray) -> DenoiseResNet:
    """Set the tiny model to smooth its input and to call peaks where it is in its top ~15 %.

    The model smooths with averaging convs and unit skips; it calls peaks where the
    smoothed chr1 coverage is in its top ~15 %: peaks follow the coverage boxes, with ragged edges from the
    Poisson background (gaps to merge, short islands to drop).
    """
    model = tiny_model()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv1d):
                module.weight.fill_(1.0 / (module.in_channels * module.kernel_size[0]))
                module.bias.zero_()
        for block in [*model.reg_blocks, *model.cls_blocks]:
            if isinstance(block.skip, torch.nn.Conv1d):
                block.skip.weight.fill_(1.0)
        model.reg_out.weight.fill_(1.0 / TINY["filters"])
        model.cls_out.weight.fill_(1.0 / TINY["filters"])
        pad = WINDOW["pad"]
        _, logits = model(transform_input(torch.from_numpy(np.pad(x, pad))[None], TRANSFORM))
        logits = logits[0, pad:-pad].numpy()
        cut, scale = np.quantile(logits, 0.85), 4.0 / logits.std()  # logit = scale·(smoothed - cut)
        model.cls_out.weight *= scale
        model.cls_out.bias.fill_(-scale * cut)
    return model


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "atacdenoise.cli", "infer", *map(str, args)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("genome")
    sizes = d / "genome.sizes"
    sizes.write_text("".join(f"{c}\t{n}\n" for c, n in SIZES.items()))
    xs = {c: coverage(n, seed=20 + i) for i, (c, n) in enumerate(SIZES.items())}
    noisy = d / "noisy.bw"
    write_bigwig(noisy, SIZES, xs)
    Path(f"{noisy}.json").write_text(json.dumps({**PREPROCESSING, "source": "noisy.bam", "kind": "bam"}))
    model = calibrated_model(xs["chr1"])
    model_pt = d / "model.pt"
    save_model(model_pt, model, preprocessing=PREPROCESSING, window=WINDOW, input_transform=TRANSFORM, threshold=0.5)
    return {"dir": d, "sizes": sizes, "noisy": noisy, "model": model_pt, "net": model, "x": xs}


@pytest.fixture(scope="module")
def inferred(genome, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("infer") / "sample"
    res = run_cli(
        "--model",
        genome["model"],
        "--input",
        genome["noisy"],
        "--sizes",
        genome["sizes"],
        "--out-prefix",
        out,
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--device",
        "auto" if not torch.cuda.is_available() else "cpu",
        "--precision",
        "float32",  # the model's values, to compare with one pass (compact outputs: tests/model/test_precision.py)
    )
    assert res.returncode == 0, res.stderr
    return {"prefix": out, "stderr": res.stderr}


def test_cli_writes_float_tracks_equal_to_one_pass_of_the_model(genome, inferred):
    prefix = inferred["prefix"]
    assert "device: cpu" in inferred["stderr"]
    from atacdenoise.model.cpuconv import load_kernel

    if load_kernel() is not None:  # the outputs below come from the native CPU convolution
        assert "convolutions on the native kernel" in inferred["stderr"]
    assert torch.cuda.is_available() or "no CUDA device: running on CPU" in inferred["stderr"]
    # the log names each stage's busy seconds and the slowest (the writers' CPU seconds: test_trackwriter.py)
    busy = re.search(
        r"busy per stage: model [\d.]+; input [\d.]+; rounding [\d.]+; writer thread [\d.]+; track writer "
        r"[\d.]+; peakprob writer [\d.]+ .*; the slowest: [a-z ]+, [\d.]+ s of the [\d.]+ s",
        inferred["stderr"],
    )
    assert busy, inferred["stderr"][-2000:]
    for chrom, x in genome["x"].items():
        ref_track, ref_prob = single_pass(genome["net"], x, WINDOW["pad"], TRANSFORM)
        track = read_bigwig(f"{prefix}.track.bw", chrom)
        prob = read_bigwig(f"{prefix}.peakprob.bw", chrom)
        np.testing.assert_allclose(track, ref_track, rtol=1e-5, atol=1e-5)  # every base, tail included
        np.testing.assert_allclose(prob, ref_prob, rtol=1e-5, atol=1e-6)
    track = read_bigwig(f"{prefix}.track.bw", "chr1")
    assert np.any(track != np.round(track))  # not rounded to integers
    with pyBigWig.open(f"{prefix}.track.bw") as bw:
        assert bw.chroms() == SIZES


def test_cli_peaks_equal_macs3_bdgpeakcall_on_the_written_probability_track(genome, inferred, tmp_path):
    if shutil.which("macs3") is None:
        pytest.skip("macs3 CLI not installed")
    prefix = inferred["prefix"]
    bedgraph = tmp_path / "peakprob.bdg"
    with open(bedgraph, "w") as fh:
        for chrom in SIZES:
            write_bedgraph(fh, chrom, read_bigwig(f"{prefix}.peakprob.bw", chrom))  # exact float32 text
    subprocess.run(
        [
            "macs3",
            "bdgpeakcall",
            "-i",
            bedgraph,
            "-c",
            "0.5",
            "-l",
            "200",
            "-g",
            "30",
            "-o",
            tmp_path / "macs3.narrowPeak",
        ],
        check=True,
        capture_output=True,
    )
    macs3 = read_narrowpeak(tmp_path / "macs3.narrowPeak")
    ours = read_narrowpeak(f"{prefix}.peaks.narrowPeak")
    assert len(ours) >= 5
    assert list(zip(ours.chrom, ours.start, ours.end)) == list(zip(macs3.chrom, macs3.start, macs3.end))
    # summits sit at the denoised track's maximum within each peak
    track = read_bigwig(f"{prefix}.track.bw", "chr1")
    for p in ours[ours.chrom == "chr1"].itertuples():
        assert track[p.start + p.summit] == track[p.start : p.end].max()
    # peaks span tile boundaries (tiles of 1,000 bp, chunks of 2 tiles) and come out whole
    assert any((p.start // 1000) != ((p.end - 1) // 1000) for p in ours.itertuples())


def test_larger_tiles_give_the_same_outputs(genome, inferred, tmp_path):
    """--interval changes only how much context is computed per output base, not the outputs."""
    out = tmp_path / "big"
    res = run_cli(
        "--model",
        genome["model"],
        "--input",
        genome["noisy"],
        "--sizes",
        genome["sizes"],
        "--out-prefix",
        out,
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--interval",
        "2500",
        "--precision",
        "float32",
    )
    assert res.returncode == 0, res.stderr
    assert "tiles of 2500 bp" in res.stderr
    for chrom in SIZES:
        for kind in ("track", "peakprob"):
            np.testing.assert_allclose(
                read_bigwig(f"{out}.{kind}.bw", chrom),
                read_bigwig(f"{inferred['prefix']}.{kind}.bw", chrom),
                rtol=1e-5,
                atol=1e-6,
            )
    assert Path(f"{out}.peaks.narrowPeak").read_text() == Path(f"{inferred['prefix']}.peaks.narrowPeak").read_text()
    bad = run_cli(
        "--model",
        genome["model"],
        "--input",
        genome["noisy"],
        "--sizes",
        genome["sizes"],
        "--out-prefix",
        out,
        "--interval",
        "0",
    )
    assert bad.returncode == 2 and "--interval 0" in bad.stderr


def test_threshold_command_reproduces_inference_peaks(inferred, tmp_path):
    """`atacdenoise threshold` at the model's threshold, summits on the track: inference's narrowPeak, byte for byte."""
    prefix = inferred["prefix"]
    out = tmp_path / "again.narrowPeak"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "atacdenoise.cli",
            "threshold",
            "--prob",
            f"{prefix}.peakprob.bw",
            "--track",
            f"{prefix}.track.bw",
            "--threshold",
            "0.5",
            "--out",
            out,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert out.read_text() == Path(f"{prefix}.peaks.narrowPeak").read_text()


def _no_outputs(prefix: Path) -> bool:
    return not [
        p.name
        for p in prefix.parent.iterdir()
        if p.name.startswith(prefix.name) or p.name.startswith(f".{prefix.name}")
    ]


def test_cli_refuses_a_track_made_with_other_preprocessing(genome, tmp_path):
    noisy = tmp_path / "noisy100.bw"
    shutil.copy(genome["noisy"], noisy)
    Path(f"{noisy}.json").write_text(json.dumps({**PREPROCESSING, "smooth_bp": 100}))
    prefix = tmp_path / "out" / "s"
    res = run_cli(
        "--model",
        genome["model"],
        "--input",
        noisy,
        "--sizes",
        genome["sizes"],
        "--out-prefix",
        prefix,
        "--threads",
        "1",
    )
    assert res.returncode == 2
    assert "smooth_bp" in res.stderr and "Traceback" not in res.stderr
    assert not prefix.parent.exists() or _no_outputs(prefix)


def test_cli_refuses_a_corrupt_checkpoint(genome, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(genome["model"].read_bytes()[:2000])  # truncated
    prefix = tmp_path / "s"
    res = run_cli(
        "--model", bad, "--input", genome["noisy"], "--sizes", genome["sizes"], "--out-prefix", prefix, "--threads", "1"
    )
    assert res.returncode == 2
    assert str(bad) in res.stderr and "Traceback" not in res.stderr
    assert _no_outputs(prefix)


def test_cli_refuses_a_bigwig_missing_a_chromosome_of_the_sizes_file(genome, tmp_path):
    noisy = tmp_path / "chr1only.bw"
    write_bigwig(noisy, {"chr1": SIZES["chr1"]}, {"chr1": genome["x"]["chr1"]})
    prefix = tmp_path / "s"
    res = run_cli(
        "--model",
        genome["model"],
        "--input",
        noisy,
        "--sizes",
        genome["sizes"],
        "--out-prefix",
        prefix,
        "--threads",
        "1",
    )
    assert res.returncode == 2
    assert "chr2" in res.stderr and "Traceback" not in res.stderr
    assert _no_outputs(prefix)


def test_cli_without_sidecar_warns_and_denoises_the_chosen_chromosomes(genome, tmp_path):
    noisy = tmp_path / "user.bw"
    shutil.copy(genome["noisy"], noisy)  # no sidecar beside it
    prefix = tmp_path / "s"
    res = run_cli(
        "--model",
        genome["model"],
        "--input",
        noisy,
        "--sizes",
        genome["sizes"],
        "--chroms",
        "chr2",
        "--out-prefix",
        prefix,
        "--threads",
        "1",
        "--threshold",
        "0.9",
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr
    assert "no preprocessing sidecar" in res.stderr
    with pyBigWig.open(f"{prefix}.track.bw") as bw:
        assert bw.chroms() == {"chr2": SIZES["chr2"]}
    ref_track, _ = single_pass(genome["net"], genome["x"]["chr2"], WINDOW["pad"], TRANSFORM)
    # the default precision is compact: the values one pass gives, to 8 significant bits
    track = read_bigwig(f"{prefix}.track.bw", "chr2")
    np.testing.assert_array_equal(track, round_significant_bits(track, TRACK_BITS))
    np.testing.assert_allclose(track, ref_track, rtol=2.0**-TRACK_BITS + 1e-5, atol=1e-5)
    assert "probability >= 0.9" in res.stderr and "output precision: compact" in res.stderr


def test_mask_of_the_tiles_is_the_whole_chromosome():
    # the chunks handed to the writers tile [0, length) with no hole and no overlap
    chunks = plan_chunks(10_037, 1000, 3)
    mask = mask_from_intervals(np.array([s for s, _ in chunks]), np.array([e for _, e in chunks]), 10_037)
    assert mask.all() and sum(e - s for s, e in chunks) == 10_037


@pytest.mark.parametrize("max_zooms", [0, 10])
def test_float_track_writer_stores_dense_and_sparse_chunks_exactly(tmp_path, max_zooms):
    from atacdenoise.io.trackwriter import FloatTrackWriter

    rng = np.random.default_rng(8)
    dense = rng.random(50_000, dtype=np.float32)
    dense[1000:5000] = 0  # a long zero run (left out) and a short one (written)
    dense[7000:7010] = 0
    steps = np.repeat(np.arange(10, dtype=np.float32), 1000)  # run-length friendly
    sizes = {"chrA": 80_000, "chrB": 10_000}
    path = tmp_path / "t.bw"
    with FloatTrackWriter(path, sizes, max_zooms=max_zooms) as w:
        w.add("chrA", 0, dense)
        w.add("chrA", 50_000, np.r_[steps, np.zeros(10_000, np.float32)])
        w.add("chrB", 0, steps)
    with pyBigWig.open(str(path)) as bw:
        assert (bw.header()["nLevels"] > 0) == (max_zooms > 0)
        a = np.nan_to_num(bw.values("chrA", 0, 80_000, numpy=True))
        b = np.nan_to_num(bw.values("chrB", 0, 10_000, numpy=True))
        assert np.isnan(bw.values("chrA", 2000, 2001, numpy=True)[0])  # long zero run not stored
    assert np.array_equal(a[:50_000], dense) and np.array_equal(a[50_000:60_000], steps) and not a[60_000:].any()
    assert np.array_equal(b, steps)


# --------------------------------------------------------------------------- GPU (skipped without CUDA)

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@gpu
def test_gpu_tiled_inference_matches_the_cpu_single_pass():
    model = tiny_model()
    x = coverage(10_037, seed=1)
    ref_track, ref_prob = single_pass(model, x, 30)
    track, prob, _ = run_tiled(TileRunner(model, torch.device("cuda"), 1000, 30, 4), x)
    np.testing.assert_allclose(track, ref_track, rtol=1e-4, atol=1e-4)  # fp32 (TF32 off for convs by default)
    np.testing.assert_allclose(prob, ref_prob, rtol=1e-4, atol=1e-4)
    track16, prob16, _ = run_tiled(TileRunner(model, torch.device("cuda"), 1000, 30, 4, amp=torch.bfloat16), x)
    assert np.abs(prob16 - ref_prob).max() < 0.05 and np.corrcoef(track16, ref_track)[0, 1] > 0.99


@pytest.mark.gpu
@gpu
def test_gpu_copy_streams_and_launch_ahead_give_the_cpus_outputs_chunk_for_chunk():
    """Uploads, model and downloads on three streams, each chunk launched before the last is handed on (issue 23).

    Over 100 chunks every one equals the CPU's, so no input buffer is refilled before its upload and no output is
    read before its download; an ensemble (one upload, two members) too.
    """
    from atacdenoise.model.infer import EnsembleRunner, Launched

    cuda = torch.device("cuda")
    x = coverage(400_037, seed=3)
    runner = TileRunner(tiny_model(), cuda, 1000, 30, 4)
    track, prob, _ = run_tiled(runner, x)
    ref_track, ref_prob, _ = run_tiled(TileRunner(tiny_model(), CPU, 1000, 30, 4), x)
    np.testing.assert_allclose(track, ref_track, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(prob, ref_prob, rtol=1e-4, atol=1e-4)
    assert runner.stats.chunks == len(plan_chunks(x.size, 1000, 4)) == 101
    windows = runner.new_buffer()
    assert windows.is_pinned()
    launched = runner.launch(windows, 4000)
    assert isinstance(launched, Launched) and launched.done is not None and launched.arrays[0].is_pinned()
    assert all(a.shape == (4000,) for a in launched.result())

    def members(device: torch.device) -> EnsembleRunner:
        return EnsembleRunner([TileRunner(tiny_model(seed), device, 1000, 30, 4) for seed in (1, 2)])

    chunks = list(members(cuda).run_chromosome(lambda lo, hi: x[lo:hi], x.size))
    ref = list(members(CPU).run_chromosome(lambda lo, hi: x[lo:hi], x.size))
    assert [c[0] for c in chunks] == [c[0] for c in ref]
    for got, want in zip(chunks, ref):
        for a, b in zip(got[1:], want[1:]):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@gpu
def test_gpu_cli_picks_cuda_and_logs_gpu_time_and_memory(genome, tmp_path):
    prefix = tmp_path / "s"
    res = run_cli(
        "--model",
        genome["model"],
        "--input",
        genome["noisy"],
        "--sizes",
        genome["sizes"],
        "--out-prefix",
        prefix,
        "--amp",
        "off",
        "--precision",
        "float32",  # the model's values (the compact default rounds to 8 significant bits)
    )
    assert res.returncode == 0, res.stderr
    assert "device: cuda" in res.stderr and "GPU time" in res.stderr and "peak GPU memory" in res.stderr
    assert "busy per stage: model " in res.stderr and "the slowest: " in res.stderr  # the model's: the GPU's time
    ref_track, _ = single_pass(genome["net"], genome["x"]["chr1"], WINDOW["pad"], TRANSFORM)
    np.testing.assert_allclose(read_bigwig(f"{prefix}.track.bw", "chr1"), ref_track, rtol=1e-4, atol=1e-4)


class FailingModel(torch.nn.Module):
    """The tiny model, failing on its third batch: an error in the middle of a chromosome."""

    def __init__(self):
        super().__init__()
        self.net, self.calls = tiny_model(), 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("simulated failure in the middle of a run")
        return self.net(x)


def test_a_failure_mid_run_leaves_no_output_and_no_temporary_file(genome, tmp_path):
    from atacdenoise.model.infer import denoise_genome, output_paths

    runner = TileRunner(FailingModel(), CPU, WINDOW["interval"], WINDOW["pad"], batch_size=2)
    with pytest.raises(RuntimeError, match="simulated failure"):
        denoise_genome(runner, genome["noisy"], SIZES, output_paths(str(tmp_path / "s")), 0.5)
    assert list(tmp_path.iterdir()) == []


def test_compact_chunks_rounded_on_several_threads_equal_one_thread(genome, tmp_path, monkeypatch):
    """Chunks are rounded in parallel (a GPU's output rate) but written and peak-called in order: same files."""
    from atacdenoise.model import infer
    from atacdenoise.model.infer import denoise_genome, output_paths

    assert infer.round_threads(2) == 1 and infer.round_threads(16) == infer.ROUND_THREADS_MAX  # a laptop: as before
    floor = float(np.mean(genome["x"]["chr1"]))  # bins where the track is low, per-base rounding elsewhere
    outputs = {}
    for threads in (1, 4):
        monkeypatch.setattr(infer, "round_threads", lambda threads=threads: threads)
        runner = TileRunner(  # batch 2: 13 chunks
            genome["net"], CPU, WINDOW["interval"], WINDOW["pad"], 2, lambda x: transform_input(x, TRANSFORM)
        )
        paths = output_paths(str(tmp_path / f"t{threads}"))
        denoise_genome(runner, genome["noisy"], SIZES, paths, 0.5, precision="compact", floor=floor)
        outputs[threads] = paths
    for key in ("track", "peakprob"):
        for chrom in SIZES:
            np.testing.assert_array_equal(read_bigwig(outputs[4][key], chrom), read_bigwig(outputs[1][key], chrom))
    peaks = outputs[1]["peaks"].read_text()
    assert peaks and outputs[4]["peaks"].read_text() == peaks


def test_a_rounding_failure_leaves_no_output(genome, tmp_path, monkeypatch):
    from atacdenoise.model import infer
    from atacdenoise.model.infer import denoise_genome, output_paths

    calls = []

    def failing(track, prob, start, floor, cuts):
        calls.append(start)
        if len(calls) == 3:
            raise RuntimeError("simulated rounding failure")
        return track, prob

    monkeypatch.setattr(infer, "compact_chunk", failing)
    monkeypatch.setattr(infer, "round_threads", lambda: 3)
    runner = TileRunner(genome["net"], CPU, WINDOW["interval"], WINDOW["pad"], batch_size=2)
    with pytest.raises(RuntimeError, match="simulated rounding failure"):
        denoise_genome(runner, genome["noisy"], SIZES, output_paths(str(tmp_path / "s")), 0.5, floor=1.0)
    assert list(tmp_path.iterdir()) == []


def test_read_values_zeroes_nan_and_missing_bases_and_bounds_infinities(tmp_path):
    """The reader of infer: NaN and missing bases read as 0, infinities as the largest float32, the rest as stored."""
    from atacdenoise.io.bigwig import open_bigwig
    from atacdenoise.model.infer import read_values

    path = tmp_path / "odd.bw"
    bw = pyBigWig.open(str(path), "w")
    bw.addHeader([("chrA", 100)])
    bw.addEntries("chrA", 10, values=[1.0, float("nan"), float("inf"), float("-inf"), 2.0], span=1, step=1)
    bw.addEntries("chrA", 50, values=[3.0, 4.0], span=1, step=1)
    bw.close()
    big = np.finfo(np.float32).max
    reader = open_bigwig(path)
    try:
        np.testing.assert_array_equal(read_values(reader, "chrA", 8, 17), [0, 0, 1, 0, big, -big, 2, 0, 0])
        np.testing.assert_array_equal(read_values(reader, "chrA", 49, 53), [0, 3, 4, 0])
    finally:
        reader.close()


def test_busy_per_stage_spreads_each_stage_over_its_threads_and_names_the_slowest():
    from atacdenoise.model.infer import RunStats

    s = RunStats(compute_s=10.0, input_s=4.0, round_s=18.0, round_threads=6, write_s=1.0, peaks_s=2.5)
    s.writer_cpu_s, s.write_threads = {"track": 96.0, "peakprob": 40.0}, 8
    assert s.busy() == {
        "model": 10.0,
        "input": 4.0,
        "rounding": 3.0,
        "writer thread": 3.5,
        "track writer": 12.0,
        "peakprob writer": 5.0,
    }
    assert s.busy(model_s=6.0)["model"] == 6.0  # the GPU's own time where there is one
    line = s.busy_line(wall=20.0)
    assert line.startswith("model 10.0; input 4.0; rounding 3.0; writer thread 3.5; track writer 12.0;")
    assert line.endswith("the slowest: track writer, 12.0 s of the 20.0 s")
