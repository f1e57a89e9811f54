"""compact_native.c: the compact outputs' rounding and bins in C, bit for bit the NumPy functions of infer."""

from __future__ import annotations

import numpy as np
import pytest

from atacdenoise import native
from atacdenoise.model import compact_native, infer
from atacdenoise.model.infer import (
    PROB_BIN,
    PROB_BITS,
    PROB_LOW_BELOW,
    PROB_LOW_BITS,
    TRACK_BIN,
    TRACK_BITS,
    bin_probability,
    bin_track,
    compact_chunk,
    compact_spread,
    round_probability_bits,
)

needs_cc = pytest.mark.skipif(native.compiler() is None, reason="no C compiler on PATH (cc, gcc, clang or $CC)")


@pytest.fixture(scope="module")
def kernels():
    k = compact_native.load()
    assert k is not None, "the native compact rounding did not build (see the log)"
    return k


def _probabilities(rng: np.random.Generator, n: int) -> np.ndarray:
    """Probabilities as a model writes them and the edge cases: tails over 40 orders, subnormals, 0, 1, 0.5, cuts."""
    smooth = np.clip(np.cumsum(rng.normal(0, 0.02, n)) % 1.3, 0, 1)  # runs through both cuts, bins on both sides
    tail = 10.0 ** rng.uniform(-45, 0, n)  # 1e-45: float32 subnormals, 0 after the cast
    high = 1 - 10.0 ** rng.uniform(-8, 0, n)
    pick = rng.integers(0, 3, n)
    p = np.where(pick == 0, smooth, np.where(pick == 1, tail, high)).astype(np.float32)
    if n == 0:
        return p
    special = np.array([0, 1, 0.5, 0.5648118, 2.0**-7, 2.0**-7 * (1 - 2**-20), 1e-40, 2.0**-149], np.float32)
    at = rng.integers(0, n, 400)
    p[at] = rng.choice(special, at.size)
    cut = np.float32(0.5648118)
    near = rng.integers(0, n, 200)  # just below and at each cut
    p[near] = rng.choice([np.nextafter(cut, np.float32(0)), cut, np.nextafter(np.float32(0.5), np.float32(0))], 200)
    return p


def _tracks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Denoised coverage: exact zeros among low values, signal far above the floor, and the edge cases."""
    low = np.where(rng.random(n) < 0.6, 0, rng.random(n) * 2)
    signal = 10.0 ** rng.uniform(-3, 3, n)
    t = np.where(rng.random(n) < 0.7, low, signal).astype(np.float32)
    if n == 0:
        return t
    special = np.array(
        [-0.0, -1.5, 3.4e38, np.finfo(np.float32).max, np.inf, -np.inf, 1e-40, 2.0**-149, 2.4999], np.float32
    )
    at = rng.integers(0, n, 300)
    t[at] = rng.choice(special, at.size)
    return t


@needs_cc
@pytest.mark.parametrize("start", [0, 3, 8, 1_000_003, 249_999_995])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 100_003])
def test_probability_equals_numpy_bit_for_bit(kernels, start, n):
    rng = np.random.default_rng(start + n)
    p = _probabilities(rng, n)
    for cuts in [(0.5648118, 0.5), (0.5,), ()]:
        for width in (PROB_BIN, 16, 5):
            want = bin_probability(round_probability_bits(p), p, start, cuts, width=width)
            got = compact_native.compact_probability(
                kernels, p, start, cuts, width, PROB_BITS, PROB_LOW_BITS, PROB_LOW_BELOW
            )
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=f"{cuts} {width}")


@needs_cc
@pytest.mark.parametrize("bits, low_bits, low_below", [(8, 6, 2.0**-7), (9, None, 0.5), (7, 4, 2.0**-3), (24, 1, 0.25)])
def test_probability_rounding_equals_numpy_at_other_bits(kernels, bits, low_bits, low_below):
    p = _probabilities(np.random.default_rng(bits), 50_001)
    want = round_probability_bits(p, bits, low_bits=low_bits, low_below=low_below)
    got = compact_native.round_probability(kernels, p, bits, low_bits, low_below)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@needs_cc
@pytest.mark.parametrize("start", [0, 5, 8, 1_000_003])
@pytest.mark.parametrize("floor", [0.0, 2.5, 4.90270155, np.inf])
def test_track_equals_numpy_bit_for_bit(kernels, start, floor):
    rng = np.random.default_rng(start)
    for n in (0, 1, 8, 9, 60_001):
        t = _tracks(rng, n)
        for width, bits in ((TRACK_BIN, TRACK_BITS), (16, TRACK_BITS), (3, 12)):
            want = infer.round_significant_bits(_unrounded(t, start, floor, width), bits)
            if bits == TRACK_BITS:
                np.testing.assert_array_equal(want, bin_track(t, start, floor, width=width))
            got = compact_native.compact_track(kernels, t, start, floor, width, bits)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=f"{n} {width} {bits}")


def _unrounded(t: np.ndarray, start: int, floor: float, width: int) -> np.ndarray:
    """:func:`bin_track` before its rounding (the NumPy route's own pieces)."""
    out = np.asarray(t, np.float32).copy()
    if floor <= 0:
        return out
    for lo, hi, size in infer.aligned_pieces(start, out.size, width):
        out[lo:hi] = infer._track_rows(out[lo:hi].reshape(-1, size), floor)
    return out


@needs_cc
def test_nan_bins_are_kept_as_numpy_keeps_them(kernels):
    p = np.array([0.1, np.nan, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, *np.arange(1, 9) / 100], np.float32)
    want = bin_probability(round_probability_bits(p), p, 0, (0.5,))
    got = compact_native.compact_probability(kernels, p, 0, (0.5,), 8, PROB_BITS, PROB_LOW_BITS, PROB_LOW_BELOW)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    t = np.array([0.5, np.nan, 0, 1, 0.5, 0.25, 0, 0.1, 0, 0, 0, 0, 0, 0, 0, 0.3], np.float32)
    np.testing.assert_array_equal(
        compact_native.compact_track(kernels, t, 0, 2.0, 8, TRACK_BITS).view(np.uint32),
        bin_track(t, 0, 2.0).view(np.uint32),
    )


@needs_cc
def test_too_many_cuts_are_refused(kernels):
    p = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="at most"):
        compact_native.compact_probability(
            kernels, p, 0, [0.5] * (compact_native.MAX_CUTS + 1), 8, PROB_BITS, PROB_LOW_BITS, PROB_LOW_BELOW
        )


@needs_cc
def test_compact_chunk_is_the_same_with_and_without_the_kernel(kernels, monkeypatch):
    rng = np.random.default_rng(5)
    t, p, spread = _tracks(rng, 30_011), _probabilities(rng, 30_011), _probabilities(rng, 30_011) / 4
    native_route = compact_chunk(t, p, 1_234_567, 4.9, (0.5648118, 0.5)), compact_spread(spread)
    monkeypatch.setattr(compact_native, "load", lambda: None)
    numpy_route = compact_chunk(t, p, 1_234_567, 4.9, (0.5648118, 0.5)), compact_spread(spread)
    for got, want in zip([*native_route[0], native_route[1]], [*numpy_route[0], numpy_route[1]]):
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(numpy_route[1], round_probability_bits(spread))


def test_the_kernel_can_be_turned_off(monkeypatch, caplog):
    monkeypatch.setattr(compact_native, "_tried", False)
    monkeypatch.setattr(compact_native, "_kernels", None)
    monkeypatch.setenv(compact_native.ENV, "0")
    with caplog.at_level("INFO", logger="atacdenoise.model.compact_native"):
        assert compact_native.load() is None
    assert compact_native.ENV in caplog.text
