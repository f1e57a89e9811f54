"""Training data on disk, measured on the real demo (issue 19.1): bytes per base of a sample's clean part and pairs.

The demo's coverage tracks are made from the real HSC BAMs (80M deep, the real 5M library, and a
60,000-fragment subsample of the deep one); the labels are the published MACS2 peaks. Targets: at most
5 bytes a base for a sample's first pair (its clean part included) and 2.5 for each further pair, where
every pair held 9.6 bytes a base of float32 copies before. The stored values are exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atacdenoise import cli
from atacdenoise.io.bigwig import read_bigwig
from atacdenoise.model.dataset import open_dataset, read_window

FIRST_PAIR_TARGET = 5.0
EXTRA_PAIR_TARGET = 2.5


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def demo_datasets(shared_data, tmp_path_factory) -> dict:
    hsc, d = shared_data / "hsc", tmp_path_factory.mktemp("dataset_size")
    sizes = hsc / "hg19_first10mb.chr1_chr2.sizes"
    argv = ["subsample", "--input", str(hsc / "HSC_80M.chr1_chr2.bam"), "--fragments", "60000", "--seed", "1"]
    assert cli.main([*argv, "--sizes", str(sizes), "--out", str(d / "60000.bam")]) == 0
    inputs = {"full": hsc / "HSC_80M.chr1_chr2.bam", "5M": hsc / "HSC_5M.chr1_chr2.bam", "60000": d / "60000.bam"}
    for name, bam in inputs.items():
        argv = ["coverage", "--input", str(bam), "--kind", "bam", "--sizes", str(sizes), "--out", str(d / f"{name}.bw")]
        assert cli.main(argv) == 0
    clean = d / "HSC" / "clean"
    argv = ["dataset-clean", "--clean", str(d / "full.bw"), "--labels", str(hsc / "HSC_80M.macs2_peaks.chr1_chr2.bed")]
    assert cli.main([*argv, "--sizes", str(sizes), "--sample", "HSC", "--out", str(clean)]) == 0
    for name in ("5M", "60000"):
        argv = ["dataset", "--noisy", str(d / f"{name}.bw"), "--clean-dataset", str(clean), "--sizes", str(sizes)]
        assert cli.main([*argv, "--depth", name, "--rep", "1", "--out", str(d / "HSC" / f"{name}.rep1")]) == 0
    bases = sum(int(line.split()[1]) for line in sizes.read_text().splitlines())
    return {"dir": d, "clean": clean, "bases": bases}


def test_bytes_per_base_of_the_demo_meet_the_targets(demo_datasets):
    d, bases = demo_datasets["dir"], demo_datasets["bases"]
    clean = _size(demo_datasets["clean"]) / bases
    pairs = {name: _size(d / "HSC" / f"{name}.rep1") / bases for name in ("5M", "60000")}
    assert clean + pairs["5M"] <= FIRST_PAIR_TARGET, (clean, pairs)
    assert max(pairs.values()) <= EXTRA_PAIR_TARGET, pairs
    # the deep track needs 16 bits, the noisy ones 8: 2 + 1 bytes a base for the clean part, 1 per pair
    assert clean == pytest.approx(3.0, abs=0.01) and pairs["5M"] == pytest.approx(1.0, abs=0.01)


def test_stored_windows_equal_the_coverage_bigwigs(demo_datasets):
    d = demo_datasets["dir"]
    pair = open_dataset(d / "HSC" / "5M.rep1")
    for chrom, start in (("chr1", 1_234_567), ("chr2", 9_999_000)):
        w = read_window(pair, chrom, start, start + 2000, 2000, 500, flip=False)
        for name, bw in (("noisy", "5M.bw"), ("clean", "full.bw")):
            lo, hi = start - 500, min(start + 2500, pair.chroms[chrom])
            expected = read_bigwig(d / bw, chrom, lo, hi)
            np.testing.assert_array_equal(w[name][: hi - lo], expected)
        stored = pair.stored(chrom)["clean"]
        assert stored.dtype == np.uint16 and stored.max() > 255  # a real deep track, beyond 8 bits
