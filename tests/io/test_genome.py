"""Chromosome selection."""

from __future__ import annotations

import pytest

from atacdenoise.errors import InputError
from atacdenoise.io.genome import DEFAULT_EXCLUDE, read_chrom_sizes, select_chroms


def test_default_chromosome_selection_drops_mitochondria_contigs_and_ebv():
    sizes = {
        "chr1": 10,
        "chrX": 5,
        "chrM": 1,
        "chrEBV": 2,
        "EBV": 2,
        "chr1_KI270706v1_random": 3,
        "chrUn_GL000195v1": 4,
        "2": 6,
    }
    assert list(select_chroms(sizes)) == ["chr1", "chrX", "2"]


def test_exclude_dropping_every_chromosome_names_them_and_the_pattern():
    sizes = {f"chr{i}_w{i}": 1000 for i in range(1, 8)}  # pseudo-chromosomes of windows, as a cohort makes them
    with pytest.raises(InputError) as err:
        select_chroms(sizes)
    msg = str(err.value)
    assert msg.startswith(
        f"no chromosomes left: genome.exclude {DEFAULT_EXCLUDE!r} drops every one of the 7 chromosome(s)"
    )
    assert "chr1_w1 (matched '_'), chr2_w2 (matched '_')" in msg and "and 2 more" in msg
    assert "set genome.exclude to a pattern that keeps yours" in msg
    assert select_chroms(sizes, exclude_regex="^chrM$") == sizes  # the fix the message suggests


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "-h"])
def test_chromosome_names_that_are_paths_or_options_are_refused(tmp_path, name):
    """Chromosome names become file names (CHROM.noisy.npy in a dataset): '../x' would write outside its folder."""
    sizes = tmp_path / "g.sizes"
    sizes.write_text(f"chr1\t1000\n{name}\t500\n")
    with pytest.raises(InputError, match="chromosome names become file names"):
        read_chrom_sizes(sizes)
