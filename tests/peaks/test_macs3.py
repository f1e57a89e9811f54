"""MACS3 routes: bdgcmp/bdgpeakcall labels, λ handling and fitting, the callpeak baseline, the three commands."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from atacdenoise import cli
from atacdenoise.errors import InputError
from atacdenoise.io.bigwig import read_bigwig, write_bigwig
from atacdenoise.io.intervals import read_narrowpeak
from atacdenoise.peaks import bdgpeakcall, callpeak, macs3
from atacdenoise.peaks.threshold import call_peaks
from atacdenoise.reads.cutsites import smooth

pytestmark = pytest.mark.skipif(
    not __import__("shutil").which("macs3") and not (Path(__import__("sys").executable).parent / "macs3").exists(),
    reason="macs3 not installed",
)


# --------------------------------------------------------------------------- synthetic inputs


def planted_track(seed: int = 0) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """50 kb of low background (0..4) with blocks of 20; returns the track and the peaks bdgpeakcall must find.

    Blocks: [5000,5600) alone; [10000,10300) + [10320,10500) 20 bp apart (merged); [20000,20150)
    too short; [30000,30250) + [30281,30400) 31 bp apart (not merged, the second too short);
    [49700,50000) at the chromosome end.
    """
    rng = np.random.default_rng(seed)
    track = np.minimum(rng.poisson(2.0, 50_000), 4).astype(np.float32)
    for s, e in [
        (5000, 5600),
        (10000, 10300),
        (10320, 10500),
        (20000, 20150),
        (30000, 30250),
        (30281, 30400),
        (49700, 50000),
    ]:
        track[s:e] = 20
    return track, [(5000, 5600), (10000, 10500), (30000, 30250), (49700, 50000)]


def atac_like_track(length: int, seed: int, rate: float = 0.02) -> np.ndarray:
    """Integer coverage like the pipeline's: Poisson cut sites, enriched islands, 201-bp box smoothing."""
    rng = np.random.default_rng(seed)
    lam = np.full(length, rate)
    for start in rng.integers(0, length - 2000, size=length // 20_000):
        lam[start : start + rng.integers(100, 1500)] *= rng.uniform(3, 30)
    return smooth(rng.poisson(lam).astype(np.int32), 200).astype(np.float32)


def write_sizes(path: Path, sizes: dict[str, int]) -> Path:
    path.write_text("".join(f"{c}\t{n}\n" for c, n in sizes.items()))
    return path


# --------------------------------------------------------------------------- bedGraph I/O


def test_bedgraph_round_trip_covers_every_base_and_keeps_float32_values(tmp_path):
    values = np.array([0, 0, 0.1, 0.1, 1e-7, 3, 3, 0, 2.5e6, 0], dtype=np.float32)
    bdg = tmp_path / "x.bdg"
    with open(bdg, "w") as fh:
        assert macs3.write_bedgraph(fh, "chrX", values) == 7
    lines = bdg.read_text().splitlines()
    assert lines[0].split("\t")[:3] == ["chrX", "0", "2"]  # zero runs are written: MACS3 reads gaps wrongly
    ((chrom, s, e, v),) = list(macs3.iter_bedgraph(bdg))
    assert chrom == "chrX" and s[0] == 0 and e[-1] == values.size and np.array_equal(s[1:], e[:-1])
    np.testing.assert_array_equal(macs3.runs_to_array(s, e, v, values.size), values)


def test_iter_bedgraph_streams_chromosomes_across_chunks_and_skips_track_line(tmp_path):
    bdg = tmp_path / "y.bdg"
    bdg.write_text(
        'track type=bedGraph name="x"\nchr2\t0\t5\t1\nchr2\t5\t9\t2\nchr1\t0\t4\t3\nchr1\t4\t8\t0\nchr1\t8\t20\t4\n'
    )
    got = {c: (s.tolist(), e.tolist(), v.tolist()) for c, s, e, v in macs3.iter_bedgraph(bdg, chunksize=2)}
    assert got == {"chr2": ([0, 5], [5, 9], [1.0, 2.0]), "chr1": ([0, 4, 8], [4, 8, 20], [3.0, 0.0, 4.0])}


# --------------------------------------------------------------------------- λ and the Poisson score


def test_lambda_is_the_mean_unless_fixed_or_scaled():
    track = np.array([0, 2, 4, 6], dtype=np.float32)
    assert bdgpeakcall.flat_lambda(track) == 3.0
    assert bdgpeakcall.flat_lambda(track, scale=1.5) == 4.5
    assert bdgpeakcall.flat_lambda(track, fixed=7.25, scale=1.5) == 7.25
    with pytest.raises(InputError):
        bdgpeakcall.flat_lambda(track, fixed=0.0)


def test_min_count_and_lambda_range_agree():
    for lam in np.geomspace(0.01, 200, 120):
        k = bdgpeakcall.min_count(lam)
        lo, hi = bdgpeakcall.lambda_range(k)
        assert lo < lam <= hi
        assert (
            bdgpeakcall.ppois_score(np.array([k]), lam)[0] >= 3 > bdgpeakcall.ppois_score(np.array([k - 1]), lam)[0]
            if k
            else True
        )


def test_ppois_score_matches_macs3_bdgcmp(tmp_path):
    counts = np.repeat(np.arange(0, 60), 10).astype(np.float32)
    for lam in (0.35, 4.3, 7.345):
        result = bdgpeakcall.bdgpeakcall_chrom("chrS", counts, lam, tmp_path, cutoff=1e9)  # no peaks: just the p track
        macs = macs3.runs_to_array(*result.pval, counts.size)
        ours = bdgpeakcall.ppois_score(counts, np.float32(lam))
        np.testing.assert_allclose(macs, ours, atol=2e-5)
        assert result.peaks.empty


# --------------------------------------------------------------------------- the bdgpeakcall route


def test_macs3_label_route_finds_the_planted_peaks(tmp_path):
    track, expected = planted_track()
    lam = bdgpeakcall.flat_lambda(track)
    assert 4 < bdgpeakcall.min_count(lam) <= 20  # background never passes, blocks always do
    result = bdgpeakcall.bdgpeakcall_chrom("chrP", track, lam, tmp_path)
    assert list(zip(result.peaks["start"], result.peaks["end"])) == expected
    assert list(tmp_path.iterdir()) == []  # scratch files removed


def test_route_calls_exactly_the_runs_at_or_above_the_min_count(tmp_path):
    track = atac_like_track(1_000_000, seed=3)
    mean = bdgpeakcall.mean_coverage(track)
    for scale in (0.8, 1.0, 1.4):
        lam = scale * mean
        route = bdgpeakcall.bdgpeakcall_chrom("chrQ", track, lam, tmp_path).peaks
        s, e = call_peaks(track, bdgpeakcall.min_count(lam))
        assert route["start"].tolist() == s.tolist() and route["end"].tolist() == e.tolist()
        assert len(route) > 10


def test_chromosome_without_coverage_gives_no_peaks_without_running_macs3(tmp_path):
    result = bdgpeakcall.bdgpeakcall_chrom("chrZ", np.zeros(1000, np.float32), 0.0, tmp_path)
    assert result.peaks.empty and result.pval[0].size == 0


def test_failed_macs3_command_raises_with_its_stderr(tmp_path):
    with pytest.raises(macs3.Macs3Error, match="macs3 bdgcmp failed") as info:
        macs3.run_macs3(
            [
                "bdgcmp",
                "-t",
                tmp_path / "missing.bdg",
                "-c",
                tmp_path / "missing2.bdg",
                "-m",
                "ppois",
                "--outdir",
                tmp_path,
                "-o",
                "x.bdg",
            ]
        )
    assert "missing.bdg" in str(info.value)


# --------------------------------------------------------------------------- λ fitting


def test_fit_lambda_recovers_the_lambda_that_made_the_peaks():
    tracks = {"chrA": atac_like_track(600_000, seed=5), "chrB": atac_like_track(400_000, seed=6, rate=0.03)}
    true = {
        "chrA": 1.7 * bdgpeakcall.mean_coverage(tracks["chrA"]),
        "chrB": 1.3 * bdgpeakcall.mean_coverage(tracks["chrB"]),
    }
    rows = []
    for chrom, track in tracks.items():
        s, e = call_peaks(track, bdgpeakcall.min_count(true[chrom]))
        rows.append(pd.DataFrame({"chrom": chrom, "start": s, "end": e}))
    published = pd.concat(rows, ignore_index=True)
    table, overall = bdgpeakcall.fit_lambda(tracks, published)
    for row in table.to_dict("records"):
        assert row["lambda_low"] < true[row["chrom"]] <= row["lambda_high"]
        assert row["lambda_low"] < row["lambda"] <= row["lambda_high"]
        assert row["min_count_fit"] == bdgpeakcall.min_count(true[row["chrom"]]) == bdgpeakcall.min_count(row["lambda"])
        assert row["jaccard_fit"] == 1.0 and row["jaccard_mean"] < 1.0
    assert overall["jaccard_fit"] == 1.0 and overall["jaccard_mean"] < 0.99
    # one scale for both: the best common factor cannot reproduce both chromosomes exactly here
    table_s, overall_s = bdgpeakcall.fit_lambda(tracks, published, mode="scale")
    assert np.allclose(table_s["ratio"], overall_s["scale"])
    assert overall["jaccard_mean"] < overall_s["jaccard_fit"] <= overall["jaccard_fit"]


# --------------------------------------------------------------------------- callpeak route


def test_cut_sites_become_150bp_windows_centred_on_the_cut(tmp_path):
    bed = tmp_path / "cuts.bed"
    with open(bed, "w") as fh:
        callpeak.write_cut_bed(fh, "chr1", np.array([100_000, 5_000, 5_000]))
    assert bed.read_text().splitlines()[0] == "chr1\t5000\t5001\t.\t0\t+"
    sizes = {"chr1": 200_000}
    callpeak.callpeak_route(bed, sizes, tmp_path / "p.bw", tmp_path, genome_size=2e5, name="t")
    ((_, s, e, v),) = list(macs3.iter_bedgraph(tmp_path / "t_treat_pileup.bdg"))
    pile = macs3.runs_to_array(s, e, v, 200_000)
    assert np.flatnonzero(pile == 1).tolist() == list(range(99_925, 100_075))  # [cut - 75, cut + 75)
    assert np.flatnonzero(pile == 2).tolist() == list(range(4_925, 5_075))  # --keep-dup all keeps both


def cluster_cut_sites(sizes: dict[str, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Sparse background cut sites plus dense clusters at known places (chr1: 50 kb, 120 kb; chr2: 30 kb)."""
    rng = np.random.default_rng(seed)
    clusters = {"chr1": [50_000, 120_000], "chr2": [30_000]}
    out = {}
    for chrom, n in sizes.items():
        cuts = [rng.integers(10, n - 60, size=n // 2000)]
        cuts += [rng.normal(c, 60, size=80).astype(np.int64) for c in clusters.get(chrom, [])]
        out[chrom] = np.sort(np.concatenate(cuts))
    return out


def write_cut_bam(path: Path, sizes: dict[str, int], cuts: dict[str, np.ndarray]) -> Path:
    """Write single-end 50-bp reads whose Tn5-shifted 5' ends are the cut sites.

    + reads start at cut - 4, - reads end at cut + 6.
    """
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": c, "LN": n} for c, n in sizes.items()]}
    unsorted = path.with_suffix(".unsorted.bam")
    with pysam.AlignmentFile(str(unsorted), "wb", header=header) as bam:
        for tid, chrom in enumerate(sizes):
            for i, cut in enumerate(cuts[chrom]):
                r = pysam.AlignedSegment()
                r.query_name = f"{chrom}_{i}"
                r.query_sequence = "A" * 50
                r.query_qualities = pysam.qualitystring_to_array("I" * 50)
                r.reference_id = tid
                r.is_reverse = bool(i % 2)
                r.reference_start = int(cut) + 6 - 50 if r.is_reverse else int(cut) - 4
                r.cigarstring = "50M"
                r.mapping_quality = 60
                bam.write(r)
    pysam.sort("-o", str(path), str(unsorted))
    pysam.index(str(path))
    return path


def write_fragments(path: Path, cuts: dict[str, np.ndarray]) -> Path:
    """Write the same cut sites paired into fragments (start = one cut, end - 1 = the next), gzipped."""
    with gzip.open(path, "wt") as fh:
        for chrom, c in cuts.items():
            c = np.sort(c)
            for a, b in zip(c[0::2], c[1::2]):
                fh.write(f"{chrom}\t{a}\t{b + 1}\tBC1\t1\n")
    return path


def run_callpeak(
    tmp_path: Path, kind: str, path: Path, genome: Path, sizes: dict[str, int]
) -> tuple[pd.DataFrame, dict]:
    peaks, pval = tmp_path / f"{kind}.narrowPeak", tmp_path / f"{kind}.pval.bw"
    rc = cli.main(
        [
            "callpeak",
            "--input",
            str(path),
            "--kind",
            kind,
            "--sizes",
            str(genome),
            "--out-peaks",
            str(peaks),
            "--out-pval",
            str(pval),
            "--name",
            "demo",
            "--tmpdir",
            str(tmp_path / "scratch"),
        ]
    )
    assert rc == 0
    return read_narrowpeak(peaks), {c: read_bigwig(pval, c) for c in sizes}


@pytest.fixture
def cluster_inputs(tmp_path) -> tuple[dict[str, int], dict[str, np.ndarray], Path]:
    sizes = {"chr1": 200_000, "chr2": 100_000}
    cuts = cluster_cut_sites(sizes)
    cuts = {c: v[: v.size // 2 * 2] for c, v in cuts.items()}  # even count: every cut pairs into a fragment
    return sizes, cuts, write_sizes(tmp_path / "g.sizes", {**sizes, "chrM": 16_569})


def test_callpeak_command_on_a_bam_finds_the_clusters(tmp_path, cluster_inputs, capsys):
    sizes, cuts, genome = cluster_inputs
    df, p = run_callpeak(tmp_path, "bam", write_cut_bam(tmp_path / "x.bam", sizes, cuts), genome, sizes)
    for chrom, centre in [("chr1", 50_000), ("chr1", 120_000), ("chr2", 30_000)]:
        hit = df[(df["chrom"] == chrom) & (df["start"] <= centre) & (df["end"] > centre)]
        assert len(hit) >= 1 and (hit["pval"] > 5).all()
        assert p[chrom][centre] > 5  # the -log10 p track is high at the cluster
    assert len(df) <= 6  # background stays quiet
    assert df["chrom"].tolist() == sorted(df["chrom"], key=["chr1", "chr2"].index)  # sizes order
    assert not list((tmp_path / "scratch").iterdir())  # scratch cleaned
    assert "macs3 callpeak -t" in capsys.readouterr().err  # the exact command line is logged


def test_callpeak_on_fragments_equals_callpeak_on_the_same_cut_sites_as_bam(tmp_path, cluster_inputs):
    sizes, cuts, genome = cluster_inputs
    df_bam, p_bam = run_callpeak(tmp_path, "bam", write_cut_bam(tmp_path / "x.bam", sizes, cuts), genome, sizes)
    df_frag, p_frag = run_callpeak(tmp_path, "fragments", write_fragments(tmp_path / "x.tsv.gz", cuts), genome, sizes)
    pd.testing.assert_frame_equal(df_bam, df_frag)
    for chrom in sizes:
        np.testing.assert_array_equal(p_bam[chrom], p_frag[chrom])


# --------------------------------------------------------------------------- peaks and fit-lambda commands


def test_peaks_command_writes_macs3_peaks_pval_track_and_honours_fixed_lambda(tmp_path, capsys):
    sizes = {"chrA": 300_000, "chrB": 200_000}
    tracks = {"chrA": atac_like_track(300_000, seed=11), "chrB": atac_like_track(200_000, seed=12)}
    genome = write_sizes(tmp_path / "g.sizes", {**sizes, "chrM": 16_569})
    bw = tmp_path / "cov.bw"
    write_bigwig(bw, {**sizes, "chrM": 16_569}, tracks)
    out, pval = tmp_path / "out.narrowPeak", tmp_path / "out.pval.bw"
    rc = cli.main(
        [
            "peaks",
            "--track",
            str(bw),
            "--sizes",
            str(genome),
            "--out-peaks",
            str(out),
            "--out-pval",
            str(pval),
            "--lambda",
            "chrB=3.5",
            "--lambda-scale",
            "1.2",
            "--threads",
            "2",
            "--name",
            "lab",
        ]
    )
    assert rc == 0
    df = read_narrowpeak(out)
    lams = {"chrA": 1.2 * bdgpeakcall.mean_coverage(tracks["chrA"]), "chrB": 3.5}
    for chrom, track in tracks.items():
        sub = df[df["chrom"] == chrom]
        s, e = call_peaks(track, bdgpeakcall.min_count(lams[chrom]))
        assert sub["start"].tolist() == s.tolist() and sub["end"].tolist() == e.tolist() and len(sub) > 3
        score = bdgpeakcall.ppois_score(track, np.float32(lams[chrom]))
        np.testing.assert_allclose(read_bigwig(pval, chrom), score, atol=2e-5)
        np.testing.assert_allclose(sub["pval"], [score[a:b].max() for a, b in zip(s, e)], rtol=1e-4)  # %.5g in the file
        assert sub["signal"].tolist() == [float(track[a:b].max()) for a, b in zip(s, e)]
    assert df["name"].tolist() == [f"lab_peak_{i}" for i in range(1, len(df) + 1)]
    err = capsys.readouterr().err
    assert "chrB: mean coverage" in err and "lambda 3.5 (fixed)" in err and "macs3 bdgpeakcall -i" in err


def test_peaks_command_rejects_bad_lambda(tmp_path, capsys):
    genome = write_sizes(tmp_path / "g.sizes", {"chrA": 1000})
    bw = tmp_path / "cov.bw"
    write_bigwig(bw, {"chrA": 1000}, {"chrA": np.ones(1000, np.float32)})
    args = [
        "peaks",
        "--track",
        str(bw),
        "--sizes",
        str(genome),
        "--out-peaks",
        str(tmp_path / "o.np"),
        "--out-pval",
        str(tmp_path / "o.bw"),
    ]
    assert cli.main([*args, "--lambda", "chrA=abc"]) == 2
    assert cli.main([*args, "--lambda", "chrQ=2"]) == 2
    err = capsys.readouterr().err
    assert "expected CHR=VALUE" in err and "chrQ is not among" in err
    assert not (tmp_path / "o.np").exists() and not (tmp_path / "o.bw").exists()


def test_fit_lambda_command_table_feeds_peaks_command(tmp_path):
    sizes = {"chrA": 400_000}
    track = atac_like_track(400_000, seed=21)
    genome = write_sizes(tmp_path / "g.sizes", sizes)
    bw = tmp_path / "cov.bw"
    write_bigwig(bw, sizes, {"chrA": track})
    lam_true = 1.5 * bdgpeakcall.mean_coverage(track)
    s, e = call_peaks(track, bdgpeakcall.min_count(lam_true))
    published = tmp_path / "pub.bed"
    pd.DataFrame({"c": "chrA", "s": s, "e": e}).to_csv(published, sep="\t", header=False, index=False)
    fit = tmp_path / "fit.tsv"
    assert (
        cli.main(
            ["fit-lambda", "--track", str(bw), "--peaks", str(published), "--sizes", str(genome), "--out", str(fit)]
        )
        == 0
    )
    table = pd.read_csv(fit, sep="\t")
    assert table["chrom"].tolist() == ["chrA", "all"]
    assert table.loc[0, "jaccard_fit"] == 1.0 and table.loc[1, "jaccard_fit"] == 1.0
    assert table.loc[0, "lambda_low"] < lam_true <= table.loc[0, "lambda_high"]
    out = tmp_path / "o.narrowPeak"
    args = [
        "peaks",
        "--track",
        str(bw),
        "--sizes",
        str(genome),
        "--lambda-table",
        str(fit),
        "--out-peaks",
        str(out),
        "--out-pval",
        str(tmp_path / "o.bw"),
    ]
    assert cli.main(args) == 0
    df = read_narrowpeak(out)
    assert df["start"].tolist() == s.tolist() and df["end"].tolist() == e.tolist()


def test_the_label_route_warns_when_coverage_fills_only_some_windows_of_a_chromosome(caplog):
    track = np.zeros(5_000_000, np.float32)
    track[1_000_000:2_000_000] = 20.0  # one covered megabase of five
    with caplog.at_level("WARNING"):
        bdgpeakcall.warn_partial_coverage(track, "chr9", "x.bw")
    assert (
        "x.bw chr9: only 1 of 5 1-Mb bins have coverage; the chromosome's mean (the flat lambda) is 0.2 x the "
        "covered bins' mean"
    ) in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        bdgpeakcall.warn_partial_coverage(np.full(5_000_000, 2.0, np.float32), "chr9", "x.bw")
    assert caplog.text == ""
