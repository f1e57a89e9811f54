"""Pooled references: libraries merged into one deep input, with the libraries listed in its sidecar."""

from __future__ import annotations

import json

import pandas as pd
import pysam
import pytest

from atacdenoise.cli import run_command
from atacdenoise.errors import InputError
from conftest import REPO


def _read(path):
    return pd.read_csv(path, sep="\t", comment="#", header=None, names=["chrom", "start", "end", "barcode", "count"])


def test_fragments_pool_holds_every_library_sorted(shared_data, tmp_path):
    libs = [shared_data / "immune" / f"TeffNaive_U_1001_{r}.fragments.tsv.gz" for r in "ab"]
    out = tmp_path / "pool.tsv.gz"
    sizes = shared_data / "genomes" / "hg38.chrom.sizes"
    assert (
        run_command(
            ["pool", "--inputs", *map(str, libs), "--kind", "fragments", "--sizes", str(sizes), "--out", str(out)]
        )
        == 0
    )
    pooled, parts = _read(out), [_read(p) for p in libs]
    assert len(pooled) == sum(len(p) for p in parts)
    # the same fragments, library names kept in the barcode column
    key = ["chrom", "start", "end", "barcode"]
    expected = pd.concat(parts).sort_values(key).reset_index(drop=True)
    assert pooled.sort_values(key).reset_index(drop=True)[key].equals(expected[key])
    # sorted by chromosome block and start (tabix-indexed), every chromosome in one block
    assert (out.parent / "pool.tsv.gz.tbi").exists()
    for _, block in pooled.groupby("chrom", sort=False):
        assert block["start"].is_monotonic_increasing
    meta = json.loads((tmp_path / "pool.tsv.gz.json").read_text())
    assert meta["sources"] == {str(p): len(q) for p, q in zip(libs, parts)} and meta["total"] == len(pooled)


def test_bam_pool_merges_and_indexes(tmp_path):
    bams = [REPO / "resources/demo/HSC_5M.chr1_chr2.bam", REPO / "resources/demo/HSC_80M.chr1_chr2.bam"]
    out = tmp_path / "pool.bam"
    sizes = REPO / "resources/demo/hg19_first10mb.chr1_chr2.sizes"
    assert (
        run_command(["pool", "--inputs", *map(str, bams), "--kind", "bam", "--sizes", str(sizes), "--out", str(out)])
        == 0
    )
    n = [pysam.AlignmentFile(str(b)).mapped for b in bams]
    with pysam.AlignmentFile(str(out)) as fh:
        assert fh.mapped == sum(n)  # needs the index, which pool wrote
    meta = json.loads((tmp_path / "pool.bam.json").read_text())
    assert list(meta["sources"].values()) == n


def test_a_file_listed_twice_is_refused(tmp_path):
    bam = REPO / "resources/demo/HSC_5M.chr1_chr2.bam"
    sizes = REPO / "resources/demo/hg19_first10mb.chr1_chr2.sizes"
    with pytest.raises(InputError, match="listed twice"):
        run_command(
            [
                "pool",
                "--inputs",
                str(bam),
                str(bam),
                "--kind",
                "bam",
                "--sizes",
                str(sizes),
                "--out",
                str(tmp_path / "p.bam"),
            ]
        )
