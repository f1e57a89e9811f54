"""Target regions (genome.regions): reading, merging, membership and intersections."""

from __future__ import annotations

import numpy as np
import pytest

from atacdenoise.errors import InputError
from atacdenoise.io.genome import Region
from atacdenoise.io.regions import read_target_regions, regions_in_target, restrict_sizes

SIZES = {"chr1": 10_000, "chr2": 5_000, "chr3": 3_000}


def _bed(tmp_path, text):
    p = tmp_path / "regions.bed"
    p.write_text(text)
    return p


def test_regions_are_merged_sorted_and_cover_their_bases(tmp_path):
    bed = _bed(tmp_path, "chr1\t500\t900\nchr1\t100\t300\nchr1\t250\t400\nchr2\t0\t50\nchr1\t900\t950\n")
    t = read_target_regions(bed, SIZES)
    assert t.chroms == ["chr1", "chr2"]
    assert t.starts["chr1"].tolist() == [100, 500] and t.ends["chr1"].tolist() == [400, 950]
    assert t.bp() == 300 + 450 + 50 and t.bp(["chr2"]) == 50
    assert t.span("chr1") == (100, 950) and t.span("chr3") == (0, 0)
    pos = np.array([99, 100, 399, 400, 499, 500, 949, 950])
    assert t.contains("chr1", pos).tolist() == [False, True, True, False, False, True, True, False]
    assert not t.contains("chr3", np.array([5])).any()
    assert list(restrict_sizes(SIZES, t)) == ["chr1", "chr2"] and restrict_sizes(SIZES, None) is SIZES


def test_intersections_cut_the_holdout_to_the_regions(tmp_path):
    t = read_target_regions(_bed(tmp_path, "chr1\t100\t400\nchr1\t500\t950\n"), SIZES)
    assert t.intersect([Region("chr1", 300, 600), Region("chr2", 0, 10)]) == [
        Region("chr1", 300, 400),
        Region("chr1", 500, 600),
    ]
    path = tmp_path / "regions.bed"
    assert regions_in_target(["chr1:300-600"], path, SIZES, "holdout") == ["chr1:300-400", "chr1:500-600"]
    assert regions_in_target(["chr2"], None, SIZES, "holdout") == ["chr2"]
    with pytest.raises(InputError, match="do not overlap the target regions"):
        regions_in_target(["chr2"], path, SIZES, "the holdout regions")


def test_bad_region_files_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match=r"none of its chromosomes \(chr1\) are in the genome sizes file"):
        read_target_regions(_bed(tmp_path, "chr1\t0\t10\n"), {"chr2": 5_000})
    with pytest.raises(InputError, match="chr3"):
        read_target_regions(_bed(tmp_path, "chr3\t0\t3001\n"), SIZES)
    with pytest.raises(InputError, match="none of its chromosomes"):
        read_target_regions(_bed(tmp_path, "1\t0\t10\n"), SIZES)
    assert read_target_regions(None, SIZES) is None
