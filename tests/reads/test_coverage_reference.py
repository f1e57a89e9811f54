"""Coverage of the real ENCODE BAMs against deepTools, base for base (an independent reference, not our code).

deepTools reads the same BAM with the same read filters, expressed in its own
options: ``--minMappingQuality 30``, ``--samFlagExclude 3844`` (unmapped,
secondary, QC-fail, duplicate, supplementary), and for paired-end data
``--samFlagInclude 2`` (proper pairs; both mates). Two deepTools routes:

* strict: ``bamCoverage --Offset 1 --binSize 1`` gives each read's 5' aligned
  base (the documented "first base of the alignment, taking orientation into
  account"), once for ``+`` reads (``--samFlagExclude +16``) and once for ``-``
  reads (``--samFlagInclude +16``); the Tn5 shift of DESIGN.md and Buenrostro
  et al. 2013 (``+`` strand +4, ``-`` strand -5) is then applied to those
  5' bases. Our ``--smooth-bp 0`` track must equal it at every base (and our
  default 201-bp track must equal it convolved with a 201-bp box:
  ``tests/reads/test_coverage.py``, which imports these helpers).
* deepTools' own shift: ``alignmentSieve --ATACshift`` (``--shift 4 -5 5 -4``)
  then ``bamCoverage --Offset 1``. For a clean read this puts the cut exactly
  where ours is (``+``: ``start + 4``; ``-``: new end ``end - 5``, so the 5'
  base ``end - 6``). But alignmentSieve takes a read's end as
  ``reference_start + query_alignment_end``, a query coordinate: for a ``-``
  read with soft clips or indels that is not the alignment's reference end
  (these ENCODE reads are heavily soft-clipped), and its cut moves by the
  difference. Every other base must agree, and the differences must be exactly
  those reads. alignmentSieve's shift keeps proper pairs only, so this route
  applies to the paired-end BAM alone.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from atacdenoise.cli import run_command
from atacdenoise.io.bigwig import read_bigwig
from conftest import SHARED_DATA

PE_BAM = SHARED_DATA / "encode" / "ENCSR356KRQ_pe_1in400.chr19_chrM.dupmarked.bam"
SE_BAM = SHARED_DATA / "encode" / "ENCSR889WQX_se_1in400.chr19_chrM.nodup.bam"
HG38 = SHARED_DATA / "genomes" / "hg38.chrom.sizes"
MM10 = SHARED_DATA / "genomes" / "mm10_chr19_chrM.chrom.sizes"

#: compared regions (0-based, half-open): 6 Mb of chr19 each (the mm10 chr19 reads begin at 3 Mb); bamCoverage
#: --binSize 1 costs ~0.5 s of CPU per Mb and per run, and these 1/400 subsamples hold ~90-250 kept reads per Mb
PE_REGION = ("chr19", 0, 6_000_000)
SE_REGION = ("chr19", 3_000_000, 9_000_000)
#: cut sites each comparison must cover at least
MIN_CUTS = {PE_REGION: 1000, SE_REGION: 400}
#: bases left out at each region end (a cut near the end may come from a read whose 5' base lies outside)
EDGE = 10
#: our default filters as SAM flags: unmapped 0x4, secondary 0x100, QC-fail 0x200, duplicate 0x400, supplementary 0x800
EXCLUDE = 0x4 | 0x100 | 0x200 | 0x400 | 0x800
PROPER_PAIR, REVERSE = 0x2, 0x10
MIN_MAPQ = 30
SHIFT_PLUS, SHIFT_MINUS = 4, -5  # DESIGN.md; Buenrostro et al. 2013

_BIN = Path(sys.executable).parent
BAMCOVERAGE = shutil.which("bamCoverage") or shutil.which("bamCoverage", path=str(_BIN))
ALIGNMENTSIEVE = shutil.which("alignmentSieve") or shutil.which("alignmentSieve", path=str(_BIN))
needs_deeptools = pytest.mark.skipif(
    BAMCOVERAGE is None or ALIGNMENTSIEVE is None or not SHARED_DATA.is_dir(),
    reason="deepTools (bamCoverage, alignmentSieve) or ../shared/data not found",
)


def bedgraph_counts(path: Path, chrom: str, lo: int, hi: int) -> np.ndarray:
    """Per-base values of a bedGraph over ``[lo, hi)`` of one chromosome: int64[hi - lo] (bases not listed: 0)."""
    df = pd.read_csv(path, sep="\t", header=None, names=["chrom", "start", "end", "value"])
    df = df[(df["chrom"] == chrom) & (df["value"] != 0)]
    out = np.zeros(hi - lo, dtype=np.int64)
    for start, end, value in zip(df["start"], df["end"], df["value"], strict=True):
        assert value == int(value), f"{path}: non-integer count {value}"
        out[max(start, lo) - lo : max(min(end, hi) - lo, 0)] = int(value)
    return out


def bam_coverage(bam: Path, out: Path, region: tuple[str, int, int], include: int, exclude: int) -> np.ndarray:
    """``bamCoverage --Offset 1 --binSize 1`` (the 5' aligned base of every kept read) over the region."""
    chrom, lo, hi = region
    args = [BAMCOVERAGE, "-b", str(bam), "-o", str(out), "--outFileFormat", "bedgraph", "--binSize", "1"]
    args += ["--Offset", "1", "--region", f"{chrom}:{lo + 1}:{hi}", "--minMappingQuality", str(MIN_MAPQ)]
    args += ["--samFlagExclude", str(exclude), "-p", "1"]
    if include:
        args += ["--samFlagInclude", str(include)]
    subprocess.run(args, check=True, capture_output=True)
    return bedgraph_counts(out, chrom, lo, hi)


@functools.cache
def deeptools_cut_counts(bam: Path, region: tuple[str, int, int], paired: bool) -> np.ndarray:
    """Tn5 cut sites per base over ``region`` from deepTools' 5' ends (strict route): int64[hi - lo], read-only."""
    pair = PROPER_PAIR if paired else 0
    with tempfile.TemporaryDirectory() as tmp:
        plus = bam_coverage(bam, Path(tmp) / "plus.bdg", region, pair, EXCLUDE | REVERSE)
        minus = bam_coverage(bam, Path(tmp) / "minus.bdg", region, pair | REVERSE, EXCLUDE)
    cuts = np.zeros_like(plus)
    cuts[SHIFT_PLUS:] += plus[:-SHIFT_PLUS]  # a + read's 5' base c cuts at c + 4
    cuts[:SHIFT_MINUS] += minus[-SHIFT_MINUS:]  # a - read's 5' base c cuts at c - 5
    cuts.flags.writeable = False
    return cuts


@functools.cache
def deeptools_atacshift_counts(bam: Path, region: tuple[str, int, int]) -> np.ndarray:
    """``alignmentSieve --ATACshift`` + ``bamCoverage --Offset 1``: deepTools' own shifted cut sites, read-only."""
    with tempfile.TemporaryDirectory() as tmp:
        sieved, shifted = Path(tmp) / "sieve.bam", Path(tmp) / "shifted.bam"
        args = [ALIGNMENTSIEVE, "-b", str(bam), "-o", str(sieved), "--ATACshift", "-p", "1"]
        args += ["--minMappingQuality", str(MIN_MAPQ), "--samFlagExclude", str(EXCLUDE)]
        args += ["--samFlagInclude", str(PROPER_PAIR)]
        subprocess.run(args, check=True, capture_output=True)
        pysam.sort("-o", str(shifted), str(sieved))  # shifting can break the coordinate order
        pysam.index(str(shifted))
        counts = bam_coverage(shifted, Path(tmp) / "atac.bdg", region, 0, 0)
    counts.flags.writeable = False
    return counts


def box(counts: np.ndarray, smooth_bp: int = 200) -> np.ndarray:
    """Widen every cut site to ``smooth_bp + 1`` centred bases, by direct convolution (not our cumulative sum)."""
    return np.convolve(counts, np.ones(smooth_bp + 1, dtype=np.int64), mode="same")


def ours(tmp: Path, bam: Path, sizes: Path, region: tuple[str, int, int], *extra: str) -> np.ndarray:
    """``atacdenoise coverage`` on the whole BAM, read back over ``region``."""
    chrom, lo, hi = region
    out = tmp / "ours.bw"
    argv = ["coverage", "--input", str(bam), "--kind", "bam", "--sizes", str(sizes), "--out", str(out)]
    assert run_command([*argv, "--chroms", chrom, *extra]) == 0
    return read_bigwig(out, chrom, lo, hi).astype(np.int64)


@needs_deeptools
@pytest.mark.parametrize(
    "bam,sizes,region,paired",
    [(PE_BAM, HG38, PE_REGION, True), (SE_BAM, MM10, SE_REGION, False)],
    ids=["paired_end", "single_end"],
)
def test_cut_sites_equal_deeptools_five_prime_ends_shifted_plus4_minus5(tmp_path, bam, sizes, region, paired):
    """Unsmoothed cut sites: ours == deepTools' 5' ends of the reads it keeps, shifted +4 / -5, at every base."""
    reference = deeptools_cut_counts(bam, region, paired)
    got = ours(tmp_path, bam, sizes, region, "--smooth-bp", "0")
    inner = slice(EDGE, -EDGE)
    assert reference[inner].sum() > MIN_CUTS[region]  # the comparison covers many cut sites
    np.testing.assert_array_equal(got[inner], reference[inner])
    # a one-base change of either shift, or dropping the proper-pair rule, is seen
    for extra in (["--shift-plus", "5"], ["--shift-minus", "-4"]):
        off = ours(tmp_path, bam, sizes, region, "--smooth-bp", "0", *extra)
        assert (off[inner] != reference[inner]).sum() > 100


def atacshift_misplaced_cuts(bam: Path, region: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Kept ``-`` reads that alignmentSieve ends at ``start + query_alignment_end``, not at ``reference_end``.

    Returns their cut sites relative to the region start, where we put them
    (``reference_end - 6``) and where alignmentSieve's shift puts them
    (``reference_start + query_alignment_end - 6``).
    """
    chrom, lo, hi = region
    ref, sieve = [], []
    with pysam.AlignmentFile(str(bam)) as fh:
        for r in fh.fetch(chrom, max(lo - 1000, 0), hi + 1000):
            if r.flag & EXCLUDE or not r.flag & PROPER_PAIR or not r.is_reverse or r.mapping_quality < MIN_MAPQ:
                continue
            end = r.reference_start + r.query_alignment_end
            if end != r.reference_end:
                ref.append(r.reference_end - 1 + SHIFT_MINUS - lo)
                sieve.append(end - 1 + SHIFT_MINUS - lo)
    return np.array(ref, dtype=np.int64), np.array(sieve, dtype=np.int64)


def counts_in(pos: np.ndarray, n: int) -> np.ndarray:
    """Cut sites per base of positions in ``[0, n)`` (others dropped): int64[n]."""
    return np.bincount(pos[(pos >= 0) & (pos < n)], minlength=n).astype(np.int64)


@needs_deeptools
def test_paired_end_cut_sites_equal_alignmentsieve_atacshift_but_its_soft_clipped_minus_reads(tmp_path):
    """Ours == deepTools' own +4/-5 (alignmentSieve --ATACshift) but where it ends - reads in query coordinates."""
    sieved = deeptools_atacshift_counts(PE_BAM, PE_REGION)
    got = ours(tmp_path, PE_BAM, HG38, PE_REGION, "--smooth-bp", "0")
    ref_pos, sieve_pos = atacshift_misplaced_cuts(PE_BAM, PE_REGION)
    n = got.size
    inner = slice(EDGE, -EDGE)
    assert got[inner].sum() == sieved[inner].sum() > 1000  # the same reads: only some cuts sit elsewhere
    assert ref_pos.size > 100  # soft clips and indels of - reads: 233 of the kept reads here
    explained = sieved - counts_in(sieve_pos, n) + counts_in(ref_pos, n)
    np.testing.assert_array_equal(got[inner], explained[inner])
