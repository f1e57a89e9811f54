"""Chromosome selection."""

from __future__ import annotations

from atacdenoise.io.genome import select_chroms


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
