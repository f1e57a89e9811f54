"""Fragments files.

Reading (plain/gzip/bgzip), validation with line numbers, bgzip+tabix writing, seeded subsampling.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from atacdenoise.cli import main
from atacdenoise.errors import InputError
from atacdenoise.io.fragments import (
    count_fragments,
    draw_per_chunk,
    fragment_cut_sites_by_chrom,
    iter_fragments,
    subsample_fragments,
    write_fragments,
)
from builders import write_sizes

SIZES = {"chr1": 100_000, "chr2": 50_000}


def fragment_table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Sorted fragments: n on chr1, n // 2 on chr2, random positions and barcodes."""
    rng = np.random.default_rng(seed)
    rows = []
    for chrom, k in (("chr1", n), ("chr2", n // 2)):
        start = np.sort(rng.integers(0, SIZES[chrom] - 1000, size=k))
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


def test_subsample_keeps_exactly_n_input_lines_deterministically(tmp_path: Path) -> None:
    df = fragment_table(300)
    src = write_plain(tmp_path / "f.tsv", df)
    all_lines = set(df.to_csv(sep="\t", header=False, index=False).splitlines())
    got = {}
    for label, seed in (("a", 5), ("b", 5), ("c", 6)):
        out = tmp_path / f"{label}.tsv.gz"
        assert subsample_fragments(src, out, 100, seed, chunk_rows=64) == 100
        got[label] = lines_of(out)
        assert Path(str(out) + ".tbi").exists()
    assert len(got["a"]) == 100 and set(got["a"]) <= all_lines
    assert got["a"] == got["b"] and got["a"] != got["c"]


def test_subsample_restricted_to_selected_chromosomes(tmp_path: Path) -> None:
    src = write_plain(tmp_path / "f.tsv", fragment_table(300))
    out = tmp_path / "chr2.tsv.gz"
    subsample_fragments(src, out, 150, 1, chroms={"chr2": SIZES["chr2"]})
    lines = lines_of(out)
    assert len(lines) == 150 and all(line.startswith("chr2\t") for line in lines)  # all 150 chr2 fragments


def test_sequential_chunk_draws_are_uniform_and_exact() -> None:
    """Over many seeds every row is kept with probability n / m, and each draw keeps exactly n rows."""
    m, n, chunk, trials = 20, 5, 7, 4000
    kept = np.zeros(m)
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        pool, todo, rows = m, n, []
        for first in range(0, m, chunk):
            size = min(chunk, m - first)
            pick = draw_per_chunk(rng, size, pool, todo)
            rows.extend(first + pick)
            pool, todo = pool - size, todo - pick.size
        assert len(rows) == n
        kept[rows] += 1
    freq = kept / trials
    sd = np.sqrt(0.25 * 0.75 / trials)
    assert np.all(np.abs(freq - n / m) < 5 * sd)


def test_subsample_cli_on_fragments_writes_tbi_and_sidecar(tmp_path: Path) -> None:
    src = write_plain(tmp_path / "f.tsv", fragment_table(300))
    sizes = write_sizes(tmp_path / "g.sizes", {**SIZES, "chrM": 16_569})
    out = tmp_path / "sub.tsv.gz"
    assert (
        main(
            [
                "subsample",
                "--input",
                str(src),
                "--fragments",
                "120",
                "--seed",
                "9",
                "--out",
                str(out),
                "--sizes",
                str(sizes),
            ]
        )
        == 0
    )
    meta = json.loads(Path(str(out) + ".json").read_text())
    assert meta == {
        "target": 120,
        "fraction": 120 / 450,
        "achieved": 120,
        "seed": 9,
        "available": 450,
        "source": str(src),
    }
    assert len(lines_of(out)) == 120 and Path(str(out) + ".tbi").exists()
    # --fraction rounds to a whole number of fragments
    out2 = tmp_path / "half.tsv.gz"
    assert main(["subsample", "--input", str(src), "--fraction", "0.5", "--seed", "9", "--out", str(out2)]) == 0
    assert len(lines_of(out2)) == 225


def test_subsample_cli_too_many_fragments_exits_2_naming_both_numbers(tmp_path: Path, capsys) -> None:
    src = write_plain(tmp_path / "f.tsv", fragment_table(300))
    out = tmp_path / "res" / "sub.tsv.gz"
    assert main(["subsample", "--input", str(src), "--fragments", "5000", "--seed", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "f.tsv" in err and "5,000" in err and "450" in err
    assert not out.exists() and not Path(str(out) + ".tbi").exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


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
