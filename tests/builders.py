"""Inputs that tests build themselves: tiny BAMs with hand-computed cut sites, sizes files, training datasets."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from atacdenoise.model.dataset import chrom_arrays, write_dataset

SIZES = {"chr1": 1000, "chr2": 500, "chrM": 300, "chrUn_gl000220": 200}


def write_sizes(path: Path, sizes: dict[str, int] = SIZES) -> Path:
    path.write_text("".join(f"{c}\t{n}\n" for c, n in sizes.items()))
    return path


def write_sample_sheet(path: Path, rows: dict[str, tuple[str, str]]) -> Path:
    """Write a sample sheet for the summary: ``{sample: (cell_type, role)}`` (kind and paths are dummies)."""
    lines = ["sample\tcell_type\tkind\tpath\tnoisy\tpeaks\tbarcodes\trole"]
    lines += [f"{s}\t{ct}\tbam\t{s}.bam\t\t\t\t{role}" for s, (ct, role) in rows.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_bam(
    path: Path, reads: list[dict], sizes: dict[str, int] = SIZES, sort: bool = True, index: bool = True
) -> Path:
    """Write reads as a BAM, sorted and indexed.

    Each read is a dict of name, flag, chrom, pos, cigar, mapq, [mate_chrom, mate_pos].
    """
    header = {
        "HD": {"VN": "1.6", "SO": "coordinate" if sort else "unsorted"},
        "SQ": [{"SN": c, "LN": n} for c, n in sizes.items()],
    }
    raw = path.with_name(path.stem + ".raw.bam") if sort else path
    with pysam.AlignmentFile(str(raw), "wb", header=header) as out:
        for r in reads:
            a = pysam.AlignedSegment(out.header)
            a.query_name = r["name"]
            a.flag = r["flag"]
            a.reference_name = r["chrom"]
            a.reference_start = r["pos"]
            a.mapping_quality = r.get("mapq", 60)
            cigar = r.get("cigar", "20M")
            if cigar:
                a.cigarstring = cigar
                qlen = pysam.AlignedSegment(out.header)
                qlen.cigarstring = cigar
                a.query_sequence = "A" * qlen.query_length
                a.query_qualities = pysam.qualitystring_to_array("I" * qlen.query_length)
            if "mate_pos" in r:
                a.next_reference_name = r.get("mate_chrom", r["chrom"])
                a.next_reference_start = r["mate_pos"]
            out.write(a)
    if sort:
        pysam.sort("-o", str(path), str(raw))
        raw.unlink()
        if index:
            pysam.index(str(path))
    return path


# name, flag, chrom, pos, cigar, mapq; expected cut site (0-based) or the filter that drops it
READS = [
    dict(name="plus", flag=0, chrom="chr1", pos=100),  # + : 100 + 4 = 104
    dict(name="minus", flag=16, chrom="chr1", pos=200),  # - : end 220 -> 220 - 1 - 5 = 214
    dict(name="minus_del", flag=16, chrom="chr1", pos=300, cigar="10M5D10M"),  # end 325 -> 319
    dict(name="plus_softclip", flag=0, chrom="chr1", pos=400, cigar="5S15M"),  # aligned start 400 -> 404
    dict(name="mapq255", flag=0, chrom="chr1", pos=260, mapq=255),  # 255 (not available) passes -q 30 -> 264
    dict(name="pp", flag=99, chrom="chr1", pos=500, mate_pos=600),  # proper pair R1 + -> 504
    dict(name="pp", flag=147, chrom="chr1", pos=600, mate_pos=500),  # proper pair R2 - : end 620 -> 614
    dict(name="ip", flag=97, chrom="chr1", pos=520, mate_pos=700),  # improper pair: dropped
    dict(name="ip", flag=145, chrom="chr1", pos=700, mate_pos=520),  # improper pair: dropped
    dict(name="dup", flag=1024, chrom="chr1", pos=150),  # duplicate: dropped (154 with --keep-duplicates)
    dict(name="sec", flag=256, chrom="chr1", pos=160),  # secondary
    dict(name="supp", flag=2048, chrom="chr1", pos=170),  # supplementary
    dict(name="qcf", flag=512, chrom="chr1", pos=180),  # QC fail
    dict(name="unm", flag=4, chrom="chr1", pos=190, cigar=None, mapq=0),  # unmapped, placed by its mate
    dict(name="lowq", flag=0, chrom="chr1", pos=250, mapq=10),  # MAPQ 10 < 30
    dict(name="mito", flag=0, chrom="chrM", pos=50),  # chrM: excluded chromosome
    dict(name="unplaced", flag=0, chrom="chrUn_gl000220", pos=50),  # unplaced contig: excluded
    dict(name="c2_plus0", flag=0, chrom="chr2", pos=0),  # 4
    dict(name="c2_minus0", flag=16, chrom="chr2", pos=0),  # end 20 -> 14
    dict(name="c2_off_left", flag=16, chrom="chr2", pos=0, cigar="5M"),  # end 5 -> -1: off the chromosome
    dict(name="c2_off_right", flag=0, chrom="chr2", pos=497, cigar="3M"),  # 501 >= 500: off the chromosome
]


#: chromosomes of :func:`fragment_table`
FRAGMENT_SIZES = {"chr1": 100_000, "chr2": 50_000}


def fragment_table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Sorted fragments: n on chr1, n // 2 on chr2, random positions and barcodes."""
    rng = np.random.default_rng(seed)
    rows = []
    for chrom, k in (("chr1", n), ("chr2", n // 2)):
        start = np.sort(rng.integers(0, FRAGMENT_SIZES[chrom] - 1000, size=k))
        end = start + rng.integers(20, 900, size=k)
        rows.append(
            pd.DataFrame(
                {
                    "chrom": chrom,
                    "start": start,
                    "end": end,
                    "barcode": [f"BC{i % 7}-1" for i in range(k)],
                    "count": rng.integers(1, 4, size=k),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def write_plain(path: Path, df: pd.DataFrame, header: str = "# cellranger-atac fragments\n# id=x\n") -> Path:
    path.write_text(header + df.to_csv(sep="\t", header=False, index=False))
    return path


def lines_of(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return [line.rstrip("\n") for line in fh if not line.startswith("#")]


#: a tiny network and short training on :func:`make_training_dataset` (well under a second per epoch on one thread)
TINY_TRAINING = dict(
    filters=4,
    kernel_size=5,
    dilation=4,
    reg_blocks=1,
    cls_blocks=1,
    convs_per_block=2,
    interval=1000,
    pad=100,
    windows_per_epoch=12,
    batch_size=4,
    lr=1e-3,
    seed=7,
)
#: the network part of :data:`TINY_TRAINING`
TINY_MODEL = {
    k: TINY_TRAINING[k] for k in ("filters", "kernel_size", "dilation", "reg_blocks", "cls_blocks", "convs_per_block")
}


def write_model_file(path: Path, **extra) -> Path:
    """Write a model.pt of a tiny untrained network as training saves it, ``extra`` joining its metadata."""
    from atacdenoise.model.network import build_model, save_model  # torch: only for the tests that need it

    save_model(
        path,
        build_model(TINY_MODEL),
        preprocessing=PRE,
        window={"interval": TINY_TRAINING["interval"], "pad": TINY_TRAINING["pad"]},
        input_transform={"kind": "none"},
        threshold=0.5,
        extra=extra,
    )
    return path


#: chromosomes of :func:`make_training_dataset`
TRAIN_SIZES = {"chr1": 30_000, "chr2": 12_000}
#: the default preprocessing settings of a coverage track (as written in its sidecar)
PRE = {"smooth_bp": 200, "shift_plus": 4, "shift_minus": -5, "min_mapq": 30, "keep_duplicates": False, "cpm": False}


def make_training_dataset(path: Path, peaks_on_chr2: bool = True, seed: int = 0, preprocessing: dict = PRE) -> Path:
    """Gamma noise with a bump every 2 kb (label 1 on the bump); no bump on chr2 when ``peaks_on_chr2`` is False."""
    rng = np.random.default_rng(seed)

    def chroms():
        for chrom, n in TRAIN_SIZES.items():
            starts = np.arange(500, n - 500, 2000)
            if chrom == "chr2" and not peaks_on_chr2:
                starts = starts[:0]
            ends = starts + 300
            bump = np.zeros(n, np.float32)
            for s, e in zip(starts, ends):
                bump[s:e] = 20
            clean = (bump + rng.gamma(1.0, 2.0, n)).astype(np.float32)
            noisy = rng.poisson(clean / 8).astype(np.float32)
            yield chrom, chrom_arrays(noisy, clean, (starts, ends))

    meta = {"sample": "T", "cell_type": "TC", "depth": "8x", "rep": "1", "preprocessing": preprocessing}
    write_dataset(path, meta, chroms())
    return path
