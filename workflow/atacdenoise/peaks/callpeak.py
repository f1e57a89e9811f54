"""The callpeak route: the ``macs3_callpeak`` baseline on a noisy sample's Tn5 cut sites.

The cut sites go to MACS3 as a BED of 1-bp ``+`` strand reads, ``macs3
callpeak -f BED --nomodel --shift -75 --extsize 150 --keep-dup all -p 0.01
--call-summits -B`` (ENCODE's ATAC setting; BAMPE mode would ignore the shift
and pile up whole fragments), then ``macs3 bdgcmp -m ppois`` of its treatment
pileup against its local λ gives the per-base -log10 p track.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from atacdenoise.atomic import scratch_dir
from atacdenoise.errors import InputError
from atacdenoise.io.bam import MIN_MAPQ
from atacdenoise.io.intervals import write_narrowpeak
from atacdenoise.io.regions import TargetRegions
from atacdenoise.peaks.macs3 import bedgraph_to_bigwig, macs3_executable, read_macs3_narrowpeak, run_macs3
from atacdenoise.reads.coverage import iter_cut_site_parts

log = logging.getLogger(__name__)

#: MACS3's shorthand effective genome sizes (``macs3 callpeak -g``)
GENOME_SIZES = {"hs": 2.7e9, "mm": 1.87e9, "ce": 9e7, "dm": 1.2e8}


def write_cut_bed(fh, chrom: str, cuts: np.ndarray) -> int:
    """Append cut sites as 1-bp ``+`` strand BED6 reads (``cut, cut + 1``), sorted.

    With ``--shift -75 --extsize 150`` MACS3 turns each into the 150-bp window
    ``[cut - 75, cut + 75)`` centred on the cut.
    """
    cuts = np.sort(np.asarray(cuts, dtype=np.int64))
    if cuts.size == 0:
        return 0
    pd.DataFrame({"c": chrom, "s": cuts, "e": cuts + 1, "n": ".", "x": 0, "t": "+"}).to_csv(
        fh, sep="\t", header=False, index=False
    )
    return int(cuts.size)


def parse_genome_size(text: str | float | None, sizes: dict[str, int]) -> float:
    """``hs``/``mm``/``ce``/``dm`` or a number (``2.7e9``); None: the total length of ``sizes``."""
    if text is None:
        return float(sum(sizes.values()))
    if isinstance(text, str) and text in GENOME_SIZES:
        return GENOME_SIZES[text]
    try:
        value = float(text)
    except ValueError:
        raise InputError(
            f"--genome-size {text!r}: expected a number (e.g. 2.7e9) or one of {', '.join(GENOME_SIZES)}"
        ) from None
    if not value > 0:
        raise InputError(f"--genome-size must be > 0, got {text}")
    return value


def callpeak_args(
    bed: str | Path,
    name: str,
    outdir: str | Path,
    genome_size: float,
    pvalue: float = 0.01,
    shift: int = -75,
    extsize: int = 150,
) -> list[str]:
    """``macs3 callpeak`` arguments for Tn5 cut sites given as BED (ENCODE ATAC settings, with -B)."""
    return [
        "callpeak",
        "-t",
        str(bed),
        "-f",
        "BED",
        "-g",
        f"{genome_size:.6g}",
        "-n",
        name,
        "--outdir",
        str(outdir),
        "--nomodel",
        "--shift",
        str(shift),
        "--extsize",
        str(extsize),
        "--keep-dup",
        "all",
        "-p",
        f"{pvalue:g}",
        "--call-summits",
        "-B",
        "--tempdir",
        str(outdir),
    ]


def callpeak_route(
    cut_bed: str | Path,
    sizes: dict[str, int],
    out_pval: str | Path,
    workdir: str | Path,
    genome_size: float,
    name: str = "callpeak",
    pvalue: float = 0.01,
    shift: int = -75,
    extsize: int = 150,
    header: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Run ``macs3 callpeak`` on a cut-site BED, then ``bdgcmp -m ppois`` of its pileups; write the p bigWig.

    Parameters
    ----------
    cut_bed : Path
        BED of 1-bp cut sites (:func:`write_cut_bed`).
    sizes : dict
        Chromosomes kept, in output order.
    out_pval : Path
        bigWig of the per-base -log10 p (treatment pileup vs MACS3's local λ).
    workdir : Path
        Scratch directory for MACS3's files.
    header : dict, optional
        Chromosomes listed in the bigWig header (default ``sizes``).

    Returns
    -------
    DataFrame : the narrowPeak rows of ``NAME_peaks.narrowPeak``, clipped and sorted.
    """
    work = Path(workdir)
    run_macs3(callpeak_args(cut_bed, name, work, genome_size, pvalue, shift, extsize))
    treat, control = work / f"{name}_treat_pileup.bdg", work / f"{name}_control_lambda.bdg"
    pval = work / f"{name}_ppois.bdg"
    run_macs3(["bdgcmp", "-t", treat, "-c", control, "-m", "ppois", "--outdir", work, "-o", pval.name])
    bedgraph_to_bigwig(pval, sizes, out_pval, work, header)
    return read_macs3_narrowpeak(work / f"{name}_peaks.narrowPeak", sizes)


# --------------------------------------------------------------------------- a whole input


def write_cut_sites_bed(
    source: str | Path,
    kind: str,
    sizes: dict[str, int],
    bed: str | Path,
    min_mapq: int = MIN_MAPQ,
    keep_duplicates: bool = False,
    threads: int = 1,
    target: TargetRegions | None = None,
) -> int:
    """Write the Tn5 cut sites of a BAM or fragments file (filtered as by ``coverage``) as BED; return how many.

    A BAM is streamed one chromosome at a time, a fragments file one chunk at a time (memory flat in its size).
    With ``target`` regions only the cut sites inside them are written.
    """

    def inside(chrom: str, pos: np.ndarray) -> np.ndarray:
        return pos if target is None else pos[target.contains(chrom, pos)]

    total = 0
    with open(bed, "w") as fh:  # a fragments file per chunk, in file order (MACS3 reads an unsorted BED alike)
        parts = iter_cut_site_parts(source, kind, sizes, {}, min_mapq, keep_duplicates, threads=threads)
        for chrom, pos in parts:
            total += write_cut_bed(fh, chrom, inside(chrom, pos))
    return total


def callpeak_baseline(
    source: str | Path,
    kind: str,
    header: dict[str, int],
    sizes: dict[str, int],
    out_peaks: str | Path,
    out_pval: str | Path,
    genome_size: float,
    name: str = "callpeak",
    pvalue: float = 0.01,
    shift: int = -75,
    extsize: int = 150,
    min_mapq: int = MIN_MAPQ,
    keep_duplicates: bool = False,
    threads: int = 1,
    tmpdir: Path | None = None,
    target: TargetRegions | None = None,
) -> pd.DataFrame:
    """Run the callpeak route on a BAM or fragments file; write its narrowPeak and p bigWig atomically.

    Returns the peaks (clipped to the chromosomes, in ``sizes`` order).
    Raises :class:`InputError` when no cut site is left after filtering. With
    ``target`` regions only their cut sites are used and MACS3's genome size is
    their length (its background λ is depth over the measured bases).
    """
    if target is not None:
        genome_size = float(target.bp(list(sizes)))
    macs3_executable()
    with scratch_dir("atacdenoise-callpeak", tmpdir) as work:
        bed = Path(work) / "cutsites.bed"
        n = write_cut_sites_bed(source, kind, sizes, bed, min_mapq, keep_duplicates, threads, target)
        if n == 0:
            raise InputError(
                f"{source}: no cut sites on the selected chromosomes after filtering; nothing for MACS3 to call"
            )
        log.info("%s: %s cut sites; macs3 callpeak with genome size %.4g", source, f"{n:,}", genome_size)
        peaks = callpeak_route(bed, sizes, out_pval, work, genome_size, name, pvalue, shift, extsize, header=header)
        write_narrowpeak(peaks, out_peaks)
    return peaks
