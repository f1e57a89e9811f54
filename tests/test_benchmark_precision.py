"""benchmarks/precision.py: the anatomy of the float32 probability's AUROC (issue 19.2)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import precision as P
from atacdenoise.evaluate.metrics import auroc, intervals_by_chrom, paint_window
from atacdenoise.io.bbiwrite import BigWigFileWriter
from atacdenoise.io.genome import parse_region, read_chrom_sizes
from atacdenoise.io.intervals import read_bed


def test_runs_counts_the_records_of_equal_neighbours():
    assert P.runs(np.array([1, 1, 2, 2, 2, 1], np.float32)) == 3
    assert P.runs(np.zeros(5, np.float32)) == 1 and P.runs(np.zeros(0, np.float32)) == 0


def test_background_anatomy_finds_the_round_off_variants_and_what_their_order_is_worth(tmp_path):
    sizes = read_chrom_sizes(P.SIZES)
    n = sizes[P.CHROM]
    region = parse_region(P.HOLDOUT, sizes)
    labels = paint_window(intervals_by_chrom(read_bed(P.LABELS)).get(P.CHROM), 0, n)
    rng = np.random.default_rng(3)
    c = np.float32(2.0185903e-4)
    # the background: c and its neighbours 16 float32 steps (2**-19 relative) apart, the higher ones more often
    # on peak bases (20 significant bits keep them apart, 18 and fewer do not)
    steps = np.where(labels, rng.integers(0, 6, n), rng.integers(0, 3, n)).astype(np.float32)
    prob = (c + steps * 16 * (np.nextafter(c, np.float32(1)) - c)).astype(np.float32)
    signal = rng.random(n) < 0.1  # bases near reads: far above the background, peaks higher
    prob[signal] = np.where(labels[signal], 0.3 + 0.6 * rng.random(signal.sum()), 0.01 + 0.3 * rng.random(signal.sum()))
    with BigWigFileWriter(tmp_path / "ref.peakprob.bw", sizes, threads=1) as writer:
        writer.add(P.CHROM, 0, prob)
    a = P.background_anatomy(tmp_path / "ref")
    held = prob[region.start : region.end]
    lab = labels[region.start : region.end]
    assert a["background"] in prob[~labels & (prob < 0.005)][:100]  # one of the negatives' three values
    assert a["variants"] == 6 and a["bases_share"] == pytest.approx(np.mean(held < 0.005), abs=1e-9)
    assert a["auroc"] == auroc(held, lab)
    merged = np.where(held < 0.005, c, held)
    assert a["auroc_delta_variants_merged"] == pytest.approx(auroc(merged, lab) - a["auroc"], abs=1e-12)
    assert a["auroc_delta_variants_merged"] < -0.001  # the variants' order ranked peak bases up
    lowest, highest = a["peak_share_lowest_highest"]
    assert lowest < highest
    rows = {r["low_bits"]: r for r in a["roundings"]}
    assert set(rows) == {6, *P.LOW_TAIL_BITS}
    assert abs(rows[20]["auroc_delta"]) < 1e-6 and rows[6]["auroc_delta"] < -0.001  # 20 bits keep the steps, 6 not
    assert rows[6]["runs_vs_float32"] < rows[20]["runs_vs_float32"] <= 1
    table = P.anatomy_table([("synthetic", a)])
    assert table.count("\n") == 2 and "| synthetic | 0.000201859" in table
