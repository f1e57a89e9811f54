"""Fragments files: reading (plain/gzip/bgzip), validation with line numbers, counting, bgzip+tabix writing."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pandas as pd
import pysam
import pytest

from atacdenoise.cli import main
from atacdenoise.errors import InputError
from atacdenoise.io.fragments import count_fragments, fragment_cut_sites_by_chrom, iter_fragments, write_fragments
from builders import FRAGMENT_SIZES as SIZES
from builders import fragment_table, lines_of, write_plain, write_sizes


def test_plain_gzip_and_bgzip_files_read_the_same(tmp_path: Path) -> None:
    df = fragment_table()
    plain = write_plain(tmp_path / "f.tsv", df)
    gz = tmp_path / "f.gzip.tsv.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    bgz = tmp_path / "f.bgz.tsv.gz"
    pysam.tabix_compress(str(plain), str(bgz))
    for path in (plain, gz, bgz):
        got = pd.concat(list(iter_fragments(path, chunk_rows=37, barcodes=True)), ignore_index=True)
        assert got["start"].tolist() == df["start"].tolist() and got["end"].tolist() == df["end"].tolist()
        assert got["barcode"].tolist() == df["barcode"].tolist() and got["count"].tolist() == df["count"].tolist()
        assert got["chrom"].tolist() == df["chrom"].tolist()


@pytest.mark.parametrize(
    "bad_line, what",
    [
        ("chr1\t500\t600\tBC1-1", "wrong number of columns"),  # 4 columns
        ("chr1\t500\t600\tBC1-1\t1\textra", "wrong number of columns"),  # 6 columns
        ("chr1\t500\t600\tBC1-1\t1\tx\ty", "wrong number of columns"),  # 7 columns (pandas' tokenizer error path)
        ("chr1\tfive\t600\tBC1-1\t1", "column 'start' is not an integer"),
        ("chr1\t600\t600\tBC1-1\t1", "expected 0 <= start < end"),
    ],
)
def test_malformed_line_is_reported_with_file_and_line_number(tmp_path: Path, bad_line: str, what: str) -> None:
    good = ["chr1\t100\t200\tBC0-1\t1", "chr1\t150\t300\tBC1-1\t2"]
    path = tmp_path / "bad.tsv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("# header\n" + "\n".join([*good, bad_line, "chr1\t900\t950\tBC2-1\t1"]) + "\n")
    with pytest.raises(InputError, match=rf"bad\.tsv\.gz, line 4: {re.escape(what)}"):
        list(iter_fragments(path))


def test_empty_fragments_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.tsv"
    path.write_text("# only a header\n")
    with pytest.raises(InputError, match=r"empty\.tsv: no fragments"):
        list(iter_fragments(path))


def test_fragments_with_other_chromosome_names_get_a_naming_hint(tmp_path: Path) -> None:
    df = fragment_table(20)
    df["chrom"] = df["chrom"].str.removeprefix("chr")
    path = write_plain(tmp_path / "ensembl.tsv", df)
    with pytest.raises(InputError, match=r"ensembl\.tsv: none of its chromosomes.*'chr' prefix"):
        fragment_cut_sites_by_chrom(path, SIZES)


def test_fragment_past_the_chromosome_end_is_refused(tmp_path: Path) -> None:
    path = write_plain(tmp_path / "long.tsv", fragment_table(20))
    with pytest.raises(
        InputError, match=r"long\.tsv: a fragment on chr1 ends at .* past the chromosome's length 1,000"
    ):
        count_fragments(path, {"chr1": 1000, "chr2": 50_000})


def test_write_fragments_bgzips_and_indexes(tmp_path: Path) -> None:
    df = fragment_table(50)
    out = tmp_path / "out" / "w.tsv.gz"
    assert write_fragments([df.iloc[:30], df.iloc[30:]], out, header="# test\n") == len(df)
    assert len(lines_of(out)) == len(df)
    with pysam.TabixFile(str(out)) as tbx:
        hits = list(tbx.fetch("chr2", 0, SIZES["chr2"]))
    assert len(hits) == (df["chrom"] == "chr2").sum()
    assert sorted(p.name for p in out.parent.iterdir()) == ["w.tsv.gz", "w.tsv.gz.tbi"]


def test_write_fragments_refuses_unsorted_rows_and_leaves_nothing(tmp_path: Path) -> None:
    df = fragment_table(50).iloc[::-1]
    out = tmp_path / "u.tsv.gz"
    with pytest.raises(InputError, match=r"in\.tsv: fragments are not sorted"):
        write_fragments([df], out, source="in.tsv")
    assert list(tmp_path.iterdir()) == []


def test_coverage_cli_on_bad_fragments_file_exits_2_and_names_the_line(tmp_path: Path, capsys) -> None:
    src = tmp_path / "bad.tsv"
    src.write_text("chr1\t10\t20\tA-1\t1\nchr1\t30\t40\tA-1\n")
    out = tmp_path / "cov.bw"
    rc = main(
        [
            "coverage",
            "--input",
            str(src),
            "--kind",
            "fragments",
            "--sizes",
            str(write_sizes(tmp_path / "g.sizes", SIZES)),
            "--out",
            str(out),
        ]
    )
    assert rc == 2
    assert "bad.tsv, line 2: wrong number of columns" in capsys.readouterr().err
    assert not out.exists()


def test_barcodes_with_a_hash_are_read_whole(tmp_path):
    """Real barcodes hold '#' (ArchR: `PBMCSmall#ACTGTCCTCTACCCGT-1`); only lines starting with '#' are comments."""
    from atacdenoise.io.fragments import iter_fragments

    path = tmp_path / "f.tsv"
    path.write_text(
        "# a header line\tof a kind\n"
        "chr1\t100\t150\tPBMCSmall#ACTGTCCTCTACCCGT-1\t1\n"
        "#another comment\n"
        "chr1\t200\t260\tPBMCSmall#TACGGATAGGATTAAC-1\t2\n"
    )
    (chunk,) = list(iter_fragments(path, barcodes=True))
    assert chunk["barcode"].tolist() == ["PBMCSmall#ACTGTCCTCTACCCGT-1", "PBMCSmall#TACGGATAGGATTAAC-1"]
    assert chunk["start"].tolist() == [100, 200] and chunk["count"].tolist() == [1, 2]
