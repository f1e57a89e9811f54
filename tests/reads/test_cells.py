"""Few-cell ATAC: barcode tables, exact seeded cell draws, pseudobulk fragments, and the simulated fixture."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from atacdenoise.cli import main
from atacdenoise.errors import InputError
from atacdenoise.evaluate.effective_depth import equivalent_cells
from atacdenoise.io.bigwig import read_bigwig
from atacdenoise.reads import cells, simcells

# ---------------------------------------------------------------- barcode table


def test_two_column_table_skips_comments_and_blank_lines():
    t = cells.parse_barcode_lines(["# made by hand\n", "AAA-1\tNK\n", "\n", "CCC-1\tB\n"])
    assert t["barcode"].tolist() == ["AAA-1", "CCC-1"]
    assert t["cell_type"].tolist() == ["NK", "B"]
    assert t["line"].tolist() == [2, 4]


def test_header_picks_named_columns_in_any_order_and_ignores_extra_ones():
    lines = ["nFrags\tcell_type\tBarcode\n", "120\tNK\tAAA-1\n", "80\tB\tCCC-1\n"]
    t = cells.parse_barcode_lines(lines)
    assert t["barcode"].tolist() == ["AAA-1", "CCC-1"] and t["cell_type"].tolist() == ["NK", "B"]


def test_malformed_lines_are_counted_and_located():
    lines = ["AAA\tNK\n", "CCC NK\n", "GGG\tB\n", "TTT\tB\textra\n"]
    with pytest.raises(InputError, match=r"tbl\.tsv: 2 line\(s\) do not have 2 tab-separated columns \(lines 2, 4\)"):
        cells.parse_barcode_lines(lines, source="tbl.tsv")


def test_empty_cell_type_is_an_error_with_its_line():
    with pytest.raises(InputError, match=r"1 line\(s\) have an empty barcode or cell type \(lines 2\)"):
        cells.parse_barcode_lines(["AAA\tNK\n", "CCC\t\n"])


def test_duplicate_barcodes_are_counted_and_shown_with_their_lines():
    lines = ["AAA\tNK\n", "CCC\tB\n", "AAA\tB\n", "CCC\tB\n", "GGG\tB\n"]
    with pytest.raises(
        InputError, match=r"2 barcode\(s\) are listed more than once, e.g. 'AAA' on line 1 \(NK\), line 3 \(B\)"
    ):
        cells.parse_barcode_lines(lines)


def test_table_without_barcodes_is_an_error():
    with pytest.raises(InputError, match="no barcodes"):
        cells.parse_barcode_lines(["barcode\tcell_type\n", "# nothing\n"])


def test_gzipped_table_is_read(tmp_path):
    path = tmp_path / "b.tsv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("barcode\tcell_type\nAAA\tNK\n")
    assert cells.read_barcode_table(path)["cell_type"].tolist() == ["NK"]


def test_missing_cell_type_lists_the_types_present_with_counts():
    t = cells.parse_barcode_lines(["A1\tB\n", "A2\tB\n", "A3\tT\n"])
    with pytest.raises(InputError, match=r"no cell of type 'NK'; the table has B \(2\), T \(1\)"):
        cells.barcodes_of_type(t, "NK", "tbl.tsv")
    assert cells.barcodes_of_type(t, "B").tolist() == ["A1", "A2"]


# ---------------------------------------------------------------- cell draws

CANDIDATES = np.array([f"BC{i:03d}-1" for i in range(40)])


def test_draw_is_exactly_n_distinct_cells_of_the_candidates():
    got = cells.select_barcodes(CANDIDATES, 10, seed=7)
    assert got.size == 10 and np.unique(got).size == 10
    assert set(got) <= set(CANDIDATES)
    assert got.tolist() == sorted(got.tolist())


def test_same_seed_same_cells_whatever_the_table_order():
    shuffled = CANDIDATES[np.random.default_rng(0).permutation(CANDIDATES.size)]
    a = cells.select_barcodes(CANDIDATES, 10, seed=7)
    assert np.array_equal(a, cells.select_barcodes(shuffled, 10, seed=7))
    assert not np.array_equal(a, cells.select_barcodes(CANDIDATES, 10, seed=8))


def test_draws_are_nested_across_numbers_of_cells():
    small, mid, big = (set(cells.select_barcodes(CANDIDATES, n, seed=3)) for n in (5, 10, 30))
    assert small < mid < big


def test_draw_is_the_seeded_permutation_prefix():
    want = np.sort(np.sort(CANDIDATES)[np.random.default_rng(11).permutation(CANDIDATES.size)][:4])
    assert np.array_equal(cells.select_barcodes(CANDIDATES, 4, seed=11), want)


def test_draws_are_uniform_over_cells():
    cand = CANDIDATES[:10]
    hits = pd.Series(np.concatenate([cells.select_barcodes(cand, 3, seed=s) for s in range(3000)])).value_counts()
    # each cell drawn with probability 3/10: 900 expected, binomial sd ~25
    assert hits.size == 10 and (hits - 900).abs().max() < 5 * 25


def test_all_cells_when_no_number_is_given():
    assert np.array_equal(cells.select_barcodes(CANDIDATES[::-1], None, seed=1), np.sort(CANDIDATES))


def test_more_cells_than_the_type_has_names_both_numbers():
    with pytest.raises(InputError, match=r"asked for 50 cells of type 'NK' but the table has only 40"):
        cells.select_barcodes(CANDIDATES, 50, seed=1, cell_type="NK")
    with pytest.raises(InputError, match="at least 1"):
        cells.select_barcodes(CANDIDATES, 0, seed=1)


# ---------------------------------------------------------------- pseudobulk filtering


def _chunk(rows):
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "barcode", "count"])


def test_pseudobulk_keeps_selected_cells_and_counts_the_rest():
    chunks = [
        _chunk([("chr1", 10, 60, "A", 1), ("chr1", 20, 90, "B", 1), ("chr1", 30, 80, "X", 1)]),
        _chunk([("chr1", 40, 70, "A", 2), ("chr2", 5, 50, "C", 1), ("chr2", 6, 60, "Y", 1)]),
    ]
    stats = cells.PseudobulkStats(selected=np.array(["A", "C"]))
    out = pd.concat(cells.pseudobulk_chunks(chunks, np.array(["A", "C"]), np.array(["A", "B", "C"]), stats))
    assert out[["chrom", "start", "barcode"]].values.tolist() == [
        ["chr1", 10, "A"],
        ["chr1", 40, "A"],
        ["chr2", 5, "C"],
    ]
    assert stats.per_cell.tolist() == [2, 1]
    assert (stats.fragments_seen, stats.kept, stats.other_cells, stats.unknown) == (6, 3, 1, 2)
    assert stats.example_unknown == "X"


def test_selected_cell_without_fragments_is_an_error_unless_allowed():
    stats = cells.PseudobulkStats(selected=np.array(["A", "C", "D"]), per_cell=np.array([4, 0, 0]))
    with pytest.raises(InputError, match=r"2 of the 3 selected cells of type 'NK' .* have no fragment, e.g. 'C', 'D'"):
        cells.check_pseudobulk(stats, "f.tsv.gz", "b.tsv", "NK")
    cells.check_pseudobulk(stats, "f.tsv.gz", "b.tsv", "NK", allow_missing=True)


def test_no_selected_cell_in_the_fragments_hints_at_barcode_spelling():
    stats = cells.PseudobulkStats(selected=np.array(["AAA-1"]), per_cell=np.array([0]), example_unknown="AAA")
    with pytest.raises(InputError, match=r"e.g. the fragments file has 'AAA'.*spell barcodes the same way"):
        cells.check_pseudobulk(stats, "f.tsv.gz", "b.tsv", "NK", allow_missing=True)


# ---------------------------------------------------------------- the cells command (real files)

#: a tiny fragments file: 4 cells on a 2-kb chr1 and a 1-kb chr2
FRAGMENTS = [
    ("chr1", 100, 300, "AAA-1", 1),
    ("chr1", 120, 180, "CCC-1", 1),
    ("chr1", 150, 400, "GGG-1", 2),
    ("chr1", 150, 151, "TTT-1", 1),
    ("chr1", 900, 1100, "AAA-1", 1),
    ("chr1", 1990, 2000, "CCC-1", 1),
    ("chr1", 1995, 2000, "NOCELL-1", 1),
    ("chr2", 0, 50, "GGG-1", 1),
    ("chr2", 400, 700, "TTT-1", 1),
]
TYPES = {"AAA-1": "NK", "CCC-1": "NK", "GGG-1": "NK", "TTT-1": "B"}


def _write(tmp_path: Path, fragments=FRAGMENTS, types=TYPES) -> tuple[Path, Path, Path]:
    frag = tmp_path / "fragments.tsv"
    frag.write_text("# a 10x-style header\n" + "".join("\t".join(map(str, r)) + "\n" for r in fragments))
    table = tmp_path / "barcodes.tsv"
    table.write_text("barcode\tcell_type\n" + "".join(f"{b}\t{t}\n" for b, t in types.items()))
    sizes = tmp_path / "genome.sizes"
    sizes.write_text("chr1\t2000\nchr2\t1000\n")
    return frag, table, sizes


def _read_fragments(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None, comment="#", names=["chrom", "start", "end", "barcode", "count"])


def test_cells_command_writes_the_fragments_of_all_cells_of_the_type(tmp_path):
    frag, table, _ = _write(tmp_path)
    out, chosen = tmp_path / "nk.tsv.gz", tmp_path / "nk.txt"
    rc = main(
        [
            "cells",
            "--fragments",
            str(frag),
            "--barcodes",
            str(table),
            "--cell-type",
            "NK",
            "--out",
            str(out),
            "--out-barcodes",
            str(chosen),
        ]
    )
    assert rc == 0
    got = _read_fragments(out)
    want = pd.DataFrame([r for r in FRAGMENTS if TYPES.get(r[3]) == "NK"], columns=got.columns)
    pd.testing.assert_frame_equal(got, want)
    assert chosen.read_text().split() == ["AAA-1", "CCC-1", "GGG-1"]
    with pysam.TabixFile(str(out)) as tbx:  # bgzipped and indexed
        assert len(list(tbx.fetch("chr1", 0, 2000))) == 5


def test_cells_command_draws_n_cells_with_the_seed(tmp_path):
    frag, table, _ = _write(tmp_path)
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.tsv.gz"
        assert (
            main(
                [
                    "cells",
                    "--fragments",
                    str(frag),
                    "--barcodes",
                    str(table),
                    "--cell-type",
                    "NK",
                    "--n-cells",
                    "2",
                    "--seed",
                    "5",
                    "--out",
                    str(out),
                    "--out-barcodes",
                    str(tmp_path / f"{name}.txt"),
                ]
            )
            == 0
        )
        outs.append(out)
    chosen = (tmp_path / "a.txt").read_text().split()
    assert chosen == cells.select_barcodes(np.array(["AAA-1", "CCC-1", "GGG-1"]), 2, 5).tolist()
    got = _read_fragments(outs[0])
    assert set(got["barcode"]) == set(chosen)
    assert len(got) == sum(r[3] in chosen for r in FRAGMENTS)
    assert _read_fragments(outs[1]).equals(got)


def test_pseudobulk_coverage_is_the_sum_of_its_cells_coverage(tmp_path):
    frag, table, sizes = _write(tmp_path)
    singles = tmp_path / "singles.tsv"  # every cell its own type
    singles.write_text("".join(f"{b}\t{b}\n" for b in TYPES))

    def coverage(cell_type: str, table_path: Path, name: str) -> dict[str, np.ndarray]:
        fr, bw = tmp_path / f"{name}.tsv.gz", tmp_path / f"{name}.bw"
        assert (
            main(
                [
                    "cells",
                    "--fragments",
                    str(frag),
                    "--barcodes",
                    str(table_path),
                    "--cell-type",
                    cell_type,
                    "--out",
                    str(fr),
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "coverage",
                    "--input",
                    str(fr),
                    "--kind",
                    "fragments",
                    "--sizes",
                    str(sizes),
                    "--smooth-bp",
                    "20",
                    "--out",
                    str(bw),
                ]
            )
            == 0
        )
        return {c: read_bigwig(bw, c) for c in ("chr1", "chr2")}

    bulk = coverage("NK", table, "nk")
    parts = [coverage(b, singles, b) for b in ("AAA-1", "CCC-1", "GGG-1")]
    for chrom in ("chr1", "chr2"):
        assert np.array_equal(bulk[chrom], sum(p[chrom] for p in parts))
    # by hand (box of 21 bp): NK cut sites on chr1 are 100, 299, 120, 179, 150, 399, 900, 1099, 1990, 1999
    assert (bulk["chr1"][110], bulk["chr1"][160], bulk["chr1"][1995], bulk["chr1"][500]) == (2, 1, 2, 0)


def test_unknown_cell_type_and_too_many_cells_exit_2_with_counts(tmp_path, capfd):
    frag, table, _ = _write(tmp_path)
    base = ["cells", "--fragments", str(frag), "--barcodes", str(table), "--out", str(tmp_path / "x.tsv.gz")]
    assert main([*base, "--cell-type", "HSC"]) == 2
    assert main([*base, "--cell-type", "B", "--n-cells", "2"]) == 2
    err = capfd.readouterr().err
    assert "no cell of type 'HSC'; the table has NK (3), B (1)" in err
    assert "asked for 2 cells of type 'B' but the table has only 1" in err
    assert not (tmp_path / "x.tsv.gz").exists()


def test_table_barcodes_absent_from_the_fragments_fail_with_a_count(tmp_path, capfd):
    frag, table, _ = _write(tmp_path, types={**TYPES, "ZZZ-1": "NK", "YYY-1": "NK"})
    out = tmp_path / "x.tsv.gz"
    base = ["cells", "--fragments", str(frag), "--barcodes", str(table), "--cell-type", "NK", "--out", str(out)]
    assert main(base) == 2
    assert "2 of the 5 selected cells of type 'NK'" in capfd.readouterr().err
    assert not out.exists()
    assert main([*base, "--allow-missing"]) == 0 and len(_read_fragments(out)) == 6


def test_barcode_spelling_mismatch_is_explained(tmp_path, capfd):
    frag, table, _ = _write(tmp_path, types={b.removesuffix("-1"): t for b, t in TYPES.items()})
    assert (
        main(
            [
                "cells",
                "--fragments",
                str(frag),
                "--barcodes",
                str(table),
                "--cell-type",
                "NK",
                "--out",
                str(tmp_path / "x.tsv.gz"),
            ]
        )
        == 2
    )
    err = capfd.readouterr().err
    assert "No selected barcode occurs in the fragments file" in err and "'-1' suffix" in err


def test_malformed_fragments_line_exits_2_with_its_line_number(tmp_path, capfd):
    bad = [*FRAGMENTS[:3], ("chr1", 500, "x", "AAA-1", 1), *FRAGMENTS[3:]]
    frag, table, _ = _write(tmp_path, fragments=bad)
    assert (
        main(
            [
                "cells",
                "--fragments",
                str(frag),
                "--barcodes",
                str(table),
                "--cell-type",
                "NK",
                "--out",
                str(tmp_path / "x.tsv.gz"),
            ]
        )
        == 2
    )
    assert re.search(r"line 5: column 'end' is not an integer", capfd.readouterr().err)


# ---------------------------------------------------------------- the simulated fixture (pure parts)


def test_neighbouring_cut_sites_pair_into_fragments_within_runs():
    start, end, unpaired = simcells.pair_cut_sites(np.array([2001, 0, 7, 5, 2000, 2002, 5000]), max_fragment=1000)
    # runs {0, 5, 7}, {2000, 2001, 2002}, {5000}: pairs (0, 5) and (2000, 2001); 7, 2002, 5000 left over
    assert start.tolist() == [0, 2000] and end.tolist() == [6, 2002] and unpaired == 3


def test_fragment_ends_give_back_exactly_the_paired_cut_sites():
    pos = np.random.default_rng(1).integers(0, 50_000, 3000)
    start, end, unpaired = simcells.pair_cut_sites(pos, max_fragment=300)
    back = np.sort(np.concatenate([start, end - 1]))
    assert back.size + unpaired == pos.size
    assert np.all(np.bincount(back, minlength=50_000) <= np.bincount(pos, minlength=50_000))
    assert np.all((end - 1 - start) <= 300) and np.all(end > start)


def test_barcodes_are_distinct_10x_style_and_seeded():
    a = simcells.make_barcodes(500, np.random.default_rng(4))
    assert np.unique(a).size == 500 and all(re.fullmatch(r"[ACGT]{16}-1", b) for b in a)
    assert np.array_equal(a, simcells.make_barcodes(500, np.random.default_rng(4)))


def test_no_cell_holds_the_same_fragment_twice_after_spreading():
    rng = np.random.default_rng(2)
    start = np.repeat(np.array([10, 20, 30]), [40, 5, 1])
    end = start + 1
    w = simcells.cell_weights(50, 0.5, rng)
    cell = simcells.spread_repeats(start, end, np.zeros(start.size, dtype=np.int64), w, rng)
    assert cell.size == start.size and not simcells.repeated_in_cell(start, end, cell).any()


def test_cell_types_split_the_cells_evenly():
    t = simcells.split_cell_types(11, ["A", "B"], np.random.default_rng(0))
    assert sorted(pd.Series(t).value_counts().tolist()) == [5, 6]


# ---------------------------------------------------------------- the simulated fixture on the real HSC data


@pytest.fixture(scope="module")
def hsc_fixture(tmp_path_factory, repo):
    bam = repo / "resources" / "demo" / "HSC_80M.chr1_chr2.bam"
    sizes = repo / "resources" / "demo" / "hg19_first10mb.chr1_chr2.sizes"
    out = tmp_path_factory.mktemp("simcells")
    args = [
        "simulate-cells",
        "--bam",
        str(bam),
        "--sizes",
        str(sizes),
        "--chroms",
        "chr2",
        "--cells",
        "400",
        "--cell-types",
        "A",
        "B",
        "--seed",
        "3",
    ]
    for name in ("one", "two"):
        assert (
            main(
                [
                    *args,
                    "--out-fragments",
                    str(out / f"{name}.tsv.gz"),
                    "--out-barcodes",
                    str(out / f"{name}.barcodes.tsv"),
                ]
            )
            == 0
        )
    return out, bam, sizes


def test_fixture_cut_sites_are_the_real_bulk_cut_sites(hsc_fixture):
    out, bam, _ = hsc_fixture
    from atacdenoise.reads import cutsites as cs

    with pysam.AlignmentFile(str(bam)) as b:
        bulk, _ = cs.bam_cut_sites(b, "chr2", 10_000_000)
    frags = _read_fragments(out / "one.tsv.gz")
    assert set(frags["chrom"]) == {"chr2"} and (frags["count"] == 1).all()
    sim = np.concatenate([frags["start"].to_numpy(), frags["end"].to_numpy() - 1])
    diff = np.bincount(bulk, minlength=10_000_000) - np.bincount(sim, minlength=10_000_000)
    # every simulated cut site is a real one; only the few unpaired ones (< 0.1 %) are missing
    assert diff.min() == 0 and 0 <= diff.sum() < 0.001 * bulk.size


def test_fixture_is_deterministic_and_looks_like_single_cell_data(hsc_fixture):
    out, _, _ = hsc_fixture
    assert (out / "one.tsv.gz").read_bytes() == (out / "two.tsv.gz").read_bytes()
    assert (out / "one.barcodes.tsv").read_bytes() == (out / "two.barcodes.tsv").read_bytes()
    table = cells.read_barcode_table(out / "one.barcodes.tsv")
    assert table["cell_type"].value_counts().to_dict() == {"A": 200, "B": 200}
    frags = _read_fragments(out / "one.tsv.gz")
    assert not frags.duplicated(["chrom", "start", "end", "barcode"]).any()
    per_cell = frags["barcode"].value_counts()
    assert set(per_cell.index) == set(table["barcode"])
    # log-normal depths (sdlog 0.5): the 90th percentile cell has ~3.6x the 10th
    q10, q90 = np.percentile(per_cell, [10, 90])
    assert 2.5 < q90 / q10 < 5.5


# ---------------------------------------------------------------- cells needed by a baseline


def test_equivalent_cells_interpolates_in_log_cells():
    n, macs3 = np.array([10, 100, 1000]), np.array([0.2, 0.4, 0.8])
    # 0.6 is halfway between 100 and 1000 in log space -> sqrt(100 * 1000)
    cells_needed, how = equivalent_cells(n, macs3, 0.6)
    assert how == "=" and cells_needed == pytest.approx(316.2278, rel=1e-6)
    assert equivalent_cells(n[::-1], macs3[::-1], 0.4) == (pytest.approx(100.0), "=")


def test_equivalent_cells_outside_the_measured_range_is_qualified():
    n, macs3 = np.array([10, 50, 500]), np.array([0.3, 0.5, 0.6])
    assert equivalent_cells(n, macs3, 0.9) == (500.0, ">")
    assert equivalent_cells(n, macs3, 0.1) == (10.0, "<=")
