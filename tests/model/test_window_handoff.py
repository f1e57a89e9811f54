"""Training windows handed on as stored and decoded where the model runs (dataset.read_window_stored, decode_batch).

The loader's workers send each window's coverage in its stored type and the flags as one byte (4-5 bytes a base
instead of 16); the training process decodes the batch after the copy to the device. The values must be the
float32 windows of :func:`read_window` bit for bit, for every storage type, depth factor, strand and edge.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from atacdenoise.model.dataset import (
    WIRE_TYPES,
    WindowSet,
    chrom_arrays,
    decode_batch,
    decode_window,
    open_dataset,
    read_window,
    read_window_stored,
    wire_types,
    write_dataset,
)
from atacdenoise.model.train import noisy_baseline

SIZES = {"chr1": 3000, "chr2": 1200}
INTERVAL, PAD = 500, 100


def _pair(tmp_path: Path, name: str, noisy_top: float, whole: bool = True) -> Path:
    """Make a pair with its own clean part; ``noisy_top`` sets the stored type (255: uint8, 60000: uint16)."""
    rng = np.random.default_rng(len(name) + int(noisy_top))

    def chroms():
        for chrom, n in SIZES.items():
            noisy = rng.integers(0, int(noisy_top) + 1, n).astype(np.float32)
            if not whole:
                noisy = noisy + np.float32(0.25)  # cpm-like: stored as float32
            clean = rng.integers(0, 40_000, n).astype(np.float32)  # uint16 with the top bit set
            peaks = (np.arange(0, n, 37), np.arange(5, n + 5, 37).clip(max=n))
            yield chrom, chrom_arrays(noisy, clean, peaks, (np.array([50]), np.array([90])))

    write_dataset(tmp_path / name, {"sample": "T", "depth": name, "rep": "1", "preprocessing": {}}, chroms())
    return tmp_path / name


@pytest.fixture
def pairs(tmp_path):
    out = [
        open_dataset(_pair(tmp_path, "u8", 255)),
        open_dataset(_pair(tmp_path, "u16", 60_000)),
        open_dataset(_pair(tmp_path, "f32", 9, whole=False)),
    ]
    out[1].scale = {"noisy": 0.37, "clean": 1.0}  # depth normalisation's factors
    out[2].scale = {"noisy": 1.0, "clean": 2.5}
    return out


def _windows(n_pairs: int) -> np.ndarray:
    """Windows over every pair: inside, past both chromosome ends, a short loss zone (a validation tile), flipped."""
    from atacdenoise.model.dataset import WINDOW_DTYPE

    rows = []
    for p in range(n_pairs):
        for chrom, start, stop, flip in ((0, 1000, 1500, False), (0, 0, 500, True), (1, 900, 1200, False)):
            rows.append((p, chrom, start, stop, flip))
        rows.append((p, 1, 800, 1100, True))
    return np.array(rows, dtype=WINDOW_DTYPE)


def test_wire_types_are_the_narrowest_for_every_pair(pairs):
    assert pairs[0].stored("chr1")["noisy"].dtype == np.uint8
    assert pairs[1].stored("chr1")["noisy"].dtype == np.uint16
    assert pairs[2].stored("chr1")["noisy"].dtype == np.float32
    assert wire_types(pairs[:1]) == {"noisy": np.uint8, "clean": np.int16}
    assert wire_types(pairs[:2]) == {"noisy": np.int16, "clean": np.int16}
    assert wire_types(pairs) == {"noisy": np.float32, "clean": np.int16}
    assert set(wire_types(pairs).values()) <= set(WIRE_TYPES)


@pytest.mark.parametrize("n_pairs", [1, 2, 3])
@pytest.mark.parametrize("workers", [0, 1])
def test_decoded_batches_equal_the_float32_windows_bit_for_bit(pairs, n_pairs, workers):
    use = pairs[:n_pairs]
    windows = _windows(n_pairs)
    stored = WindowSet(use, windows, INTERVAL, PAD)
    loader = torch.utils.data.DataLoader(stored, batch_size=5, num_workers=workers)
    batches = list(loader)
    got = {k: torch.cat([decode_batch(b)[k] for b in batches]).numpy() for k in ("noisy", "clean", "labels", "mask")}
    chroms = list(SIZES)
    for name in ("noisy", "clean", "labels", "mask"):
        want = np.stack(
            [
                read_window(use[w["pair"]], chroms[w["chrom"]], w["start"], w["stop"], INTERVAL, PAD, w["flip"])[name]
                for w in windows
            ]
        )
        assert got[name].dtype == np.float32
        assert np.array_equal(got[name].view(np.uint32), want.view(np.uint32)), name
    # the float32 route of the same set gives the same arrays (the benchmark's baseline)
    decoded = WindowSet(use, windows, INTERVAL, PAD, decoded=True)
    assert np.array_equal(decoded[3]["noisy"], got["noisy"][3])
    # what goes through the workers and the copy: the stored types, one flags byte
    b = batches[0]
    assert b["flags"].dtype == torch.uint8 and b["scale"].shape == (min(5, len(windows)), 2)
    assert {str(b[k].dtype) for k in ("noisy", "clean")} <= {"torch.uint8", "torch.int16", "torch.float32"}


def test_stored_window_masks_the_loss_zone_edges_and_flips_consistently(pairs):
    pair = pairs[1]
    w = read_window_stored(pair, "chr2", 900, 1150, INTERVAL, PAD, False, wire_types([pair]))
    mask = decode_window(w)["mask"]
    # usable: inside the chromosome (1200), inside the loss zone [900, 1150), off the blacklist
    assert np.flatnonzero(mask).tolist() == list(range(PAD, PAD + 250))
    f = read_window_stored(pair, "chr2", 900, 1150, INTERVAL, PAD, True, wire_types([pair]))
    for name in ("noisy", "clean", "flags"):
        assert np.array_equal(f[name], w[name][::-1]), name
    assert w["noisy"].dtype == np.int16 and w["flags"].dtype == np.uint8
    assert (w["noisy"].view(np.uint16).max()) > 32767 or (w["clean"].view(np.uint16).max() > 32767)


def test_stored_batches_are_a_third_of_the_bytes(pairs):
    loader = torch.utils.data.DataLoader(WindowSet(pairs[:2], _windows(2), INTERVAL, PAD), batch_size=8)
    b = next(iter(loader))
    width = INTERVAL + 2 * PAD
    per_base = sum(b[k].numel() * b[k].element_size() for k in ("noisy", "clean", "flags")) / (8 * width)
    assert per_base == 5.0  # int16 noisy and clean + flags; the float32 windows were 16


def test_noisy_baseline_reads_stored_batches(pairs):
    s = {"pad": PAD, "interval": INTERVAL}
    stored = torch.utils.data.DataLoader(WindowSet(pairs, _windows(3), INTERVAL, PAD), batch_size=4)
    floats = torch.utils.data.DataLoader(WindowSet(pairs, _windows(3), INTERVAL, PAD, decoded=True), batch_size=4)
    assert noisy_baseline(stored, s) == noisy_baseline(floats, s)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_decodes_pinned_stored_batches_as_the_cpu_does(pairs):
    """What training does on a card: pinned stored batches, copied without blocking, decoded there (issue 23)."""
    loader = torch.utils.data.DataLoader(WindowSet(pairs, _windows(3), INTERVAL, PAD), batch_size=6, pin_memory=True)
    for batch in loader:
        want = decode_batch(batch)
        got = decode_batch({k: v.to("cuda", non_blocking=True) for k, v in batch.items()})
        for name in ("noisy", "clean", "labels", "mask"):
            assert got[name].is_cuda and torch.equal(got[name].cpu(), want[name]), name
