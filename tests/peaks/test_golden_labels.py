"""Golden: the clean-label route reproduces the AtacWorks fixture's published peak calls (real HSC data).

The fixture's peaks (``HSC_{80M,5M}.macs2_peaks.chr1_chr2.bed``) were called by
MACS2 ``bdgcmp -m ppois`` against a flat λ taken from the *whole* original
chromosome, then ``bdgpeakcall -c 3 -l 200 -g 30``. These 10-Mb slices have
another mean, so λ is fitted (``atacdenoise fit-lambda``) and the real MACS3
route is run at the mean and at the fitted λ. Figures (base-level Jaccard over
chr1 + chr2) are printed and recorded as test properties.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atacdenoise import cli
from atacdenoise.io.genome import read_chrom_sizes
from atacdenoise.io.intervals import chrom_mask, read_bed


def base_jaccard(a: pd.DataFrame, b: pd.DataFrame, sizes: dict[str, int]) -> float:
    """Return the Jaccard index |A ∩ B| / |A ∪ B| in bases, over all chromosomes of ``sizes``."""
    inter = union = 0
    for chrom, n in sizes.items():
        ma, mb = chrom_mask(a, chrom, n), chrom_mask(b, chrom, n)
        inter += int((ma & mb).sum())
        union += int((ma | mb).sum())
    return inter / union


def route(tmp: Path, track: Path, sizes_file: Path, tag: str, *extra: str) -> pd.DataFrame:
    """``atacdenoise peaks`` (bdgcmp ppois + bdgpeakcall -c 3 -l 200 -g 30) on a coverage bigWig."""
    out = tmp / f"{tag}.narrowPeak"
    args = [
        "peaks",
        "--track",
        str(track),
        "--sizes",
        str(sizes_file),
        "--out-peaks",
        str(out),
        "--out-pval",
        str(tmp / f"{tag}.pval.bw"),
        "--threads",
        "2",
        *extra,
    ]
    assert cli.main(args) == 0
    return read_bed(out)


def fit(tmp: Path, track: Path, published: Path, sizes_file: Path) -> tuple[Path, pd.DataFrame]:
    out = tmp / "fit.tsv"
    args = [
        "fit-lambda",
        "--track",
        str(track),
        "--peaks",
        str(published),
        "--sizes",
        str(sizes_file),
        "--out",
        str(out),
    ]
    assert cli.main(args) == 0
    return out, pd.read_csv(out, sep="\t").set_index("chrom")


@pytest.fixture(scope="module")
def hsc(shared_data) -> Path:
    return shared_data / "hsc"


def test_label_route_on_80M_reproduces_published_peaks_at_fitted_lambda(hsc, tmp_path, record_property):
    sizes_file = hsc / "hg19_first10mb.chr1_chr2.sizes"
    sizes = read_chrom_sizes(sizes_file)
    published_path = hsc / "HSC_80M.macs2_peaks.chr1_chr2.bed"
    published = read_bed(published_path)
    track = tmp_path / "80M.bw"  # the project's coverage stage on the 80M cut sites
    assert (
        cli.main(
            [
                "coverage",
                "--input",
                str(hsc / "HSC_80M.chr1_chr2.bam"),
                "--kind",
                "bam",
                "--sizes",
                str(sizes_file),
                "--out",
                str(track),
            ]
        )
        == 0
    )
    fit_tsv, table = fit(tmp_path, track, published_path, sizes_file)
    at_mean = base_jaccard(route(tmp_path, track, sizes_file, "mean"), published, sizes)
    at_fit = base_jaccard(route(tmp_path, track, sizes_file, "fit", "--lambda-table", str(fit_tsv)), published, sizes)
    for key, value in {"jaccard_80M_mean": at_mean, "jaccard_80M_fit": at_fit}.items():
        record_property(key, round(value, 4))
    ratios = {c: round(float(table.loc[c, "ratio"]), 3) for c in sizes}
    print(f"80M: Jaccard {at_mean:.4f} at the slice mean, {at_fit:.4f} at the fitted lambda (lambda / mean {ratios})")
    assert at_fit >= 0.95
    assert at_fit > at_mean + 0.1  # the slice mean is the wrong lambda for these labels
    # the in-process search predicted exactly what MACS3 does
    assert at_fit == pytest.approx(table.loc["all", "jaccard_fit"], abs=1e-6)  # the TSV keeps 6 digits
    assert at_mean == pytest.approx(table.loc["all", "jaccard_mean"], abs=1e-6)


def test_label_route_on_published_5M_track_reproduces_published_5M_peaks_exactly(hsc, tmp_path, record_property):
    sizes_file = hsc / "hg19_first10mb.chr1_chr2.sizes"
    sizes = read_chrom_sizes(sizes_file)
    published_path = hsc / "HSC_5M.macs2_peaks.chr1_chr2.bed"
    published = read_bed(published_path)
    track = hsc / "HSC_5M.published_coverage.chr1_chr2.bw"
    fit_tsv, _table = fit(tmp_path, track, published_path, sizes_file)
    mean_peaks = route(tmp_path, track, sizes_file, "mean")
    fit_peaks = route(tmp_path, track, sizes_file, "fit", "--lambda-table", str(fit_tsv))
    at_mean, at_fit = base_jaccard(mean_peaks, published, sizes), base_jaccard(fit_peaks, published, sizes)
    record_property("jaccard_5M_mean", round(at_mean, 4))
    record_property("jaccard_5M_fit", round(at_fit, 4))
    print(f"5M: Jaccard {at_mean:.4f} at the slice mean, {at_fit:.4f} at the fitted lambda")
    assert len(fit_peaks) == len(published) == 607
    np.testing.assert_array_equal(fit_peaks[["start", "end"]].to_numpy(), published[["start", "end"]].to_numpy())
    assert fit_peaks["chrom"].tolist() == published["chrom"].tolist()
    assert at_mean < 0.9
