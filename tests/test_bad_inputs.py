"""Every bad input of issue 7 ends in exit status 2 and a message naming the file and the problem.

Each case runs the real ``atacdenoise`` command line (or ``snakemake -n``) in a
subprocess on tiny inputs written here, and checks: the exit status, that
stderr names the file and the problem, that no Python traceback is shown, and
that no output (final or temporary) is left behind.

Issue 17 (a shared cluster) adds names that are paths or options, config values that reach a shell,
tools missing from PATH, a sample sheet missing from the working directory, and damaged bigWig/BAM
inputs at the command line. Its other items are tested where their code lives: damaged files in depth
and the fuzz of the binary readers in ``tests/io/test_damaged.py`` and ``tests/io/test_fuzz.py``; shared
file systems in ``tests/test_atomic.py`` and ``tests/cluster/test_shared_fs.py``; checkpoints tied to
their data, the previous checkpoint and the trainer's lock in ``tests/model/test_resume.py``; the users'
rerun pattern in ``tests/workflow/test_rerun.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pysam
import pytest
import yaml

from atacdenoise.io.bigwig import write_bigwig
from atacdenoise.model.dataset import open_dataset
from atacdenoise.model.network import build_model, save_model
from builders import READS, make_bam, write_sizes
from conftest import BUNDLED_CONFIGS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SIZES = {"chr1": 1000, "chr2": 500}  # the sizes of test_cutsites.make_bam
PRE = {"smooth_bp": 200, "shift_plus": 4, "shift_minus": -5, "min_mapq": 30, "keep_duplicates": False, "cpm": False}


def atacdenoise(*argv, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "atacdenoise"), *map(str, argv)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def snakemake(*argv, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(cwd), *map(str, argv)]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env, timeout=300
    )
    res.stderr = res.stdout  # a dry run reports on stdout, a real run on stderr: look at both
    return res


def assert_refused(res: subprocess.CompletedProcess, *needles: str, status: int = 2) -> str:
    """Exit status, every needle in stderr (the file, the problem, the fix), no traceback."""
    err = res.stderr
    assert res.returncode == status, f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{err}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in stderr:\n{err}"
    assert "Traceback" not in err, err
    return err


def assert_nothing_left(out_dir: Path) -> None:
    """No output and no temporary file under ``out_dir``."""
    left = [p for p in out_dir.rglob("*")] if out_dir.exists() else []
    assert left == [], f"left behind: {left}"


@pytest.fixture
def sizes_file(tmp_path: Path) -> Path:
    return write_sizes(tmp_path / "genome.sizes", SIZES)


def coverage(bam: Path, sizes: Path, out: Path, kind: str = "bam") -> subprocess.CompletedProcess:
    return atacdenoise("coverage", "--input", bam, "--kind", kind, "--sizes", sizes, "--out", out)


# --------------------------------------------------------------------------- BAM inputs
def test_bam_not_coordinate_sorted(tmp_path, sizes_file):
    bam = make_bam(tmp_path / "unsorted.bam", READS[::-1], sort=False)
    out = tmp_path / "out"
    err = assert_refused(
        coverage(bam, sizes_file, out / "x.bw"), "unsorted.bam", "sorted by 'unsorted'", "samtools sort"
    )
    assert "expected 'coordinate'" in err
    assert_nothing_left(out)


def test_bam_reads_out_of_order_without_sort_order_header(tmp_path, sizes_file):
    """No @HD SO tag and an index (from a sorted copy): the first reads are looked at and found out of order."""
    sorted_bam = make_bam(tmp_path / "sorted.bam", READS)
    header = {"HD": {"VN": "1.6"}, "SQ": [{"SN": c, "LN": n} for c, n in SIZES.items()]}
    bam = tmp_path / "noso.bam"
    with pysam.AlignmentFile(str(sorted_bam)) as src, pysam.AlignmentFile(str(bam), "wb", header=header) as dst:
        for read in reversed(list(src.fetch(until_eof=True))):
            dst.write(pysam.AlignedSegment.from_dict(read.to_dict(), dst.header))
    shutil.copy(str(sorted_bam) + ".bai", str(bam) + ".bai")
    out = tmp_path / "out"
    assert_refused(
        coverage(bam, sizes_file, out / "x.bw"), "noso.bam", "reads are not sorted by coordinate", "samtools sort"
    )
    assert_nothing_left(out)


def test_bam_without_index(tmp_path, sizes_file):
    bam = make_bam(tmp_path / "noidx.bam", READS, index=False)
    out = tmp_path / "out"
    assert_refused(coverage(bam, sizes_file, out / "x.bw"), "noidx.bam", "BAM has no index", "samtools index")
    assert_nothing_left(out)


def test_bam_with_stale_index(tmp_path, sizes_file):
    bam = make_bam(tmp_path / "stale.bam", READS)
    t = Path(str(bam) + ".bai").stat().st_mtime
    os.utime(bam, (t + 60, t + 60))  # the BAM was re-made after it was indexed
    out = tmp_path / "out"
    assert_refused(coverage(bam, sizes_file, out / "x.bw"), "stale.bam", "older than the BAM", "samtools index")
    assert_nothing_left(out)


def test_empty_bam(tmp_path, sizes_file):
    bam = make_bam(tmp_path / "empty.bam", [])
    out = tmp_path / "out"
    assert_refused(coverage(bam, sizes_file, out / "x.bw"), "empty.bam", "no mapped reads")
    assert_nothing_left(out)


def test_paired_end_bam_without_proper_pairs(tmp_path, sizes_file):
    reads = []
    for i in range(5):  # paired (0x1), mates mapped, but never flagged proper (0x2)
        reads += [
            dict(name=f"p{i}", flag=97, chrom="chr1", pos=100 + 50 * i, mate_pos=600 + 50 * i),
            dict(name=f"p{i}", flag=145, chrom="chr1", pos=600 + 50 * i, mate_pos=100 + 50 * i),
        ]
    bam = make_bam(tmp_path / "improper.bam", reads)
    out = tmp_path / "out"
    assert_refused(
        coverage(bam, sizes_file, out / "x.bw"), "improper.bam", "flagged paired-end but none", "proper pair"
    )
    assert_nothing_left(out)


def test_chromosome_names_1_vs_chr1_with_hint(tmp_path, sizes_file):
    bam = make_bam(tmp_path / "ensembl.bam", [dict(name="a", flag=0, chrom="1", pos=10)], sizes={"1": 1000, "2": 500})
    out = tmp_path / "out"
    assert_refused(
        coverage(bam, sizes_file, out / "x.bw"),
        "ensembl.bam",
        "are in the genome sizes file",
        "without the 'chr' prefix",
    )
    assert_nothing_left(out)


# --------------------------------------------------------------------------- bigWig inputs
def test_bigwig_missing_a_chromosome_of_the_sizes_file(tmp_path, sizes_file):
    bw = tmp_path / "only_chr1.bw"
    write_bigwig(bw, {"chr1": 1000}, {"chr1": np.ones(1000, np.float32)})
    out = tmp_path / "out"
    assert_refused(
        coverage(bw, sizes_file, out / "x.bw", kind="bigwig"), "only_chr1.bw", "['chr2']", "missing from this bigWig"
    )
    assert_nothing_left(out)


def test_bigwig_with_other_chromosome_lengths(tmp_path, sizes_file):
    bw = tmp_path / "hg_other.bw"
    write_bigwig(bw, {"chr1": 1200, "chr2": 500}, {"chr1": np.ones(1200, np.float32)})
    out = tmp_path / "out"
    res = atacdenoise(
        "peaks", "--track", bw, "--sizes", sizes_file, "--out-peaks", out / "p.narrowPeak", "--out-pval", out / "p.bw"
    )
    assert_refused(res, "hg_other.bw", "chromosome chr1 is 1,200 bp long there but 1,000", "another assembly")
    assert_nothing_left(out)


@pytest.mark.parametrize("damage", ["cut", "loop"])
def test_damaged_bigwig_ends_in_exit_2_not_a_hang(tmp_path, sizes_file, damage):
    """A bigWig cut short in transfer, or whose chromosome tree points back at itself (it hung start-up)."""
    import struct

    bw = tmp_path / "damaged.bw"
    rng = np.random.default_rng(3)
    write_bigwig(bw, SIZES, {c: rng.poisson(2.0, n).astype(np.float32) for c, n in SIZES.items()})
    raw = bytearray(bw.read_bytes())
    if damage == "cut":
        raw = raw[: len(raw) * 2 // 3]
    else:  # the chromosome tree's root leaf becomes an inner node whose only child is itself
        chrom_tree = struct.unpack_from("<Q", raw, 8)[0]
        key_size = struct.unpack_from("<I", raw, chrom_tree + 8)[0]
        struct.pack_into("<BBH", raw, chrom_tree + 32, 0, 0, 1)
        struct.pack_into("<Q", raw, chrom_tree + 36 + key_size, chrom_tree + 32)
    bw.write_bytes(bytes(raw))
    out = tmp_path / "out"
    assert_refused(coverage(bw, sizes_file, out / "x.bw", kind="bigwig"), "damaged.bw", "damaged or truncated")
    assert_nothing_left(out)


def test_bam_index_cut_short_ends_in_exit_2_not_an_abort(tmp_path, sizes_file):
    """Htslib aborts the whole process on a .bai cut inside a bin's records: the index is checked first."""
    bam = make_bam(tmp_path / "reads.bam", READS)
    bai = Path(f"{bam}.bai")
    raw = bai.read_bytes()
    stat = bam.stat()
    bai.write_bytes(raw[: len(raw) // 2 + 2])
    os.utime(bai, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    out = tmp_path / "out"
    assert_refused(coverage(bam, sizes_file, out / "x.bw"), "reads.bam.bai", "samtools index")
    assert_nothing_left(out)


# --------------------------------------------------------------------------- peak files (dataset labels)
@pytest.fixture
def tracks(tmp_path: Path) -> tuple[Path, Path]:
    noisy, clean = tmp_path / "noisy.bw", tmp_path / "clean.bw"
    write_bigwig(noisy, SIZES, {c: np.full(n, 1, np.float32) for c, n in SIZES.items()})
    write_bigwig(clean, SIZES, {c: np.full(n, 3, np.float32) for c, n in SIZES.items()})
    return noisy, clean


def dataset(tracks, labels: Path, sizes: Path, out: Path) -> subprocess.CompletedProcess:
    noisy, clean = tracks
    return atacdenoise(
        "dataset",
        "--noisy",
        noisy,
        "--clean",
        clean,
        "--labels",
        labels,
        "--sizes",
        sizes,
        "--out",
        out,
        "--sample",
        "S",
        "--depth",
        "10",
        "--rep",
        "1",
    )


def test_peak_file_on_chromosomes_not_in_the_sizes_file(tmp_path, sizes_file, tracks):
    labels = tmp_path / "ensembl_peaks.bed"
    labels.write_text("1\t100\t300\n2\t50\t80\n")
    out = tmp_path / "out"
    assert_refused(
        dataset(tracks, labels, sizes_file, out / "ds"), "ensembl_peaks.bed", "none of its chromosomes", "'chr' prefix"
    )
    assert_nothing_left(out)


def test_peak_file_with_coordinates_past_the_chromosome_end(tmp_path, sizes_file, tracks):
    labels = tmp_path / "long_peaks.bed"
    labels.write_text("chr1\t100\t300\nchr2\t450\t700\n")
    out = tmp_path / "out"
    assert_refused(
        dataset(tracks, labels, sizes_file, out / "ds"),
        "long_peaks.bed",
        "chr2:450-700 extends past the chromosome end",
    )
    assert_nothing_left(out)


NARROWPEAK = (
    "chr1\t100\t300\tp1\t50\t.\t5.0\t7.1\t4.2\t90\n"
    "chr1\t600\t650\tp2\t20\t.\t2.0\t3.3\t1.1\t10\n"
    "chr2\t0\t120\tp3\t10\t.\t1.0\t2.0\t1.0\t60\n"
)


@pytest.mark.parametrize("variant", ["plain", "track_header", "gzip_bed"])
def test_narrowpeak_with_or_without_track_header_and_gzipped_bed_all_parse(tmp_path, sizes_file, tracks, variant):
    """All three spellings give the same labels: every line counts (none silently dropped)."""
    if variant == "plain":
        labels = tmp_path / "peaks.narrowPeak"
        labels.write_text(NARROWPEAK)
    elif variant == "track_header":
        labels = tmp_path / "peaks.narrowPeak"
        labels.write_text(
            'track type=narrowPeak name="peaks" description="MACS peaks"\nbrowser position chr1:1-1000\n' + NARROWPEAK
        )
    else:
        labels = tmp_path / "peaks.bed.gz"
        with gzip.open(labels, "wt") as fh:
            fh.write("".join("\t".join(line.split("\t")[:3]) + "\n" for line in NARROWPEAK.splitlines()))
    out = tmp_path / "ds"
    res = dataset(tracks, labels, sizes_file, out)
    assert res.returncode == 0, res.stderr
    pair = open_dataset(out)
    chr1, chr2 = pair.arrays("chr1")["labels"], pair.arrays("chr2")["labels"]
    assert int(chr1.sum()) == 200 + 50 and int(chr2.sum()) == 120
    assert chr1[100:300].all() and chr1[600:650].all() and not chr1[300:600].any() and chr2[:120].all()


# --------------------------------------------------------------------------- fragments and barcodes
def test_fragments_file_with_wrong_column_count(tmp_path, sizes_file):
    frags = tmp_path / "frags.bed"
    frags.write_text("chr1\t100\t300\tAAAC\t1\nchr1\t200\t400\tAAAG\n")  # line 2: 4 columns
    out = tmp_path / "out"
    assert_refused(
        coverage(frags, sizes_file, out / "x.bw", kind="fragments"),
        "frags.bed, line 2",
        "wrong number of columns",
        "5 tab-separated",
    )
    assert_nothing_left(out)


def _fragments(tmp_path: Path) -> Path:
    frags = tmp_path / "frags.tsv"
    frags.write_text("chr1\t100\t300\tAAAC\t1\nchr1\t200\t400\tAAAG\t2\nchr2\t10\t90\tAAAT\t1\n")
    return frags


def test_barcode_table_with_duplicates(tmp_path):
    table = tmp_path / "barcodes.tsv"
    table.write_text("AAAC\tB\nAAAG\tB\nAAAC\tT\n")
    out = tmp_path / "out"
    res = atacdenoise(
        "cells", "--fragments", _fragments(tmp_path), "--barcodes", table, "--cell-type", "B", "--out", out / "b.tsv.gz"
    )
    assert_refused(res, "barcodes.tsv", "listed more than once", "'AAAC' on line 1 (B), line 3 (T)")
    assert_nothing_left(out)


def test_cell_count_above_the_cells_of_the_type(tmp_path):
    table = tmp_path / "barcodes.tsv"
    table.write_text("AAAC\tB\nAAAG\tB\nAAAT\tT\n")
    out = tmp_path / "out"
    res = atacdenoise(
        "cells",
        "--fragments",
        _fragments(tmp_path),
        "--barcodes",
        table,
        "--cell-type",
        "B",
        "--n-cells",
        "5",
        "--out",
        out / "b.tsv.gz",
    )
    assert_refused(res, "barcodes.tsv", "asked for 5 cells of type 'B' but the table has only 2")
    assert_nothing_left(out)


def test_depth_above_the_fragments_in_the_bam(tmp_path, sizes_file):
    bam = make_bam(tmp_path / "small.bam", READS)
    out = tmp_path / "out"
    res = atacdenoise(
        "subsample", "--input", bam, "--fragments", 1000, "--seed", 1, "--sizes", sizes_file, "--out", out / "s.bam"
    )
    assert_refused(res, "small.bam", "asked for 1,000 fragments but only", "lower the target depth")
    assert_nothing_left(out)


# --------------------------------------------------------------------------- sample sheet and config
@pytest.fixture
def demo_config(tmp_path: Path) -> tuple[Path, dict]:
    """Write a copy of the demo config with absolute paths, and its sample sheet, in ``tmp_path``."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["genome"]["sizes"] = str(REPO / config["genome"]["sizes"])
    sheet = (REPO / "config" / "samples.tsv").read_text().replace("resources/", f"{REPO}/resources/")
    (tmp_path / "samples.tsv").write_text(sheet)
    config["samples"] = str(tmp_path / "samples.tsv")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


def _write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def test_demo_config_and_sheet_pass_the_check(demo_config, tmp_path):
    res = atacdenoise("check", "--config", demo_config[0], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "all inputs look fine" in res.stderr


def test_bundled_configs_pass_the_check_before_the_fixture_exists():
    """The few-cell cohort names the simulated fixture, which a rule makes: not reported as missing."""
    for config in BUNDLED_CONFIGS:
        res = atacdenoise("check", "--config", config, cwd=REPO)
        assert res.returncode == 0, res.stderr
        assert "all inputs look fine" in res.stderr


def test_duplicate_sample_names(demo_config, tmp_path):
    cfg, config = demo_config
    lines = Path(config["samples"]).read_text().splitlines()
    Path(config["samples"]).write_text("\n".join([*lines, lines[1]]) + "\n")  # the HSC row twice
    res = snakemake("-n", "--configfile", cfg, cwd=tmp_path)
    assert_refused(res, "samples.tsv", "duplicate sample names ['HSC']", status=1)
    assert_refused(atacdenoise("check", "--config", cfg), "samples.tsv", "duplicate sample names ['HSC']")


@pytest.mark.parametrize("name", ["x;touch pwned", "$(touch pwned)", "a b", ".", "..", "-h", "../x", "-rf"])
def test_unsafe_sample_names_are_rejected_and_nothing_runs(demo_config, tmp_path, name):
    """Names that are shell code, paths ('.', '..', '../x') or options ('-h') stop the workflow at parse time."""
    cfg, config = demo_config
    lines = Path(config["samples"]).read_text().splitlines()
    row = lines[1].split("\t")
    Path(config["samples"]).write_text("\n".join([lines[0], "\t".join([name, *row[1:]])]) + "\n")
    res = snakemake("--configfile", cfg, "--cores", "1", cwd=tmp_path)  # a real run, not -n: it must stop at parse time
    msg = f"sample name {name!r} is unsafe in file paths and shell commands"
    assert_refused(res, msg, "starting with a letter, a digit or '_'", status=1)
    res = atacdenoise("check", "--config", cfg, cwd=tmp_path)
    assert_refused(res, msg, "letters, digits")
    assert not (tmp_path / "pwned").exists() and not (REPO / "pwned").exists()
    assert not (tmp_path / "results").exists()


def test_unknown_config_key(demo_config, tmp_path):
    cfg, config = demo_config
    config["model"]["trainig"] = {"epochs": 2}  # typo
    _write_config(cfg, config)
    assert_refused(
        atacdenoise("check", "--config", cfg), "config.yaml", "unknown key 'model.trainig'", "fix the spelling"
    )
    assert_refused(
        snakemake("-n", "--configfile", cfg, cwd=tmp_path),
        "Additional properties are not allowed",
        "'trainig' was unexpected",
        status=1,
    )


def test_config_value_of_the_wrong_type(demo_config, tmp_path):
    cfg, config = demo_config
    config["replicates"] = "two"
    _write_config(cfg, config)
    assert_refused(
        atacdenoise("check", "--config", cfg), "config.yaml", "key replicates: 'two' is not of type 'integer'"
    )
    assert_refused(
        snakemake("-n", "--configfile", cfg, cwd=tmp_path), "'two' is not of type 'integer'", "['replicates']", status=1
    )


def test_check_lists_every_bad_input_of_a_sheet_at_once(demo_config, tmp_path, sizes_file):
    """One run names all the problems: a stale index, a bigWig of another assembly, a BED of Ensembl names."""
    cfg, config = demo_config
    stale = make_bam(tmp_path / "stale.bam", READS)
    t = Path(str(stale) + ".bai").stat().st_mtime
    os.utime(stale, (t + 60, t + 60))
    bw = tmp_path / "other.bw"
    write_bigwig(bw, {"chr1": 1200, "chr2": 500}, {})
    peaks = tmp_path / "ens.bed"
    peaks.write_text("1\t10\t20\n")
    sheet = Path(config["samples"])
    sheet.write_text(
        f"sample\tcell_type\tkind\tpath\tnoisy\tpeaks\nA\tX\tbam\t{stale}\t\t{peaks}\nB\tX\tbigwig\t{bw}\t\t\n"
    )
    config["genome"]["sizes"] = str(sizes_file)
    config["depths"] = []
    _write_config(cfg, config)
    err = assert_refused(atacdenoise("check", "--config", cfg, cwd=tmp_path), "3 problem(s)")
    assert "sample A: " in err and "stale.bam: its index stale.bam.bai is older than the BAM" in err
    assert "sample A: " in err and "ens.bed: none of its chromosomes" in err
    assert "sample B: " in err and "other.bw: chromosome chr1 is 1,200 bp long" in err


# --------------------------------------------------------------------------- model checkpoints (infer)
@pytest.fixture
def infer_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """Make a noisy coverage bigWig with its sidecar (defaults), and a tiny model trained on smooth_bp=100 tracks."""
    bw = tmp_path / "noisy.bw"
    write_bigwig(bw, SIZES, {c: np.full(n, 2, np.float32) for c, n in SIZES.items()})
    Path(f"{bw}.json").write_text(json.dumps({**PRE, "source": "x.bam", "kind": "bam"}))
    model = build_model(dict(filters=2, kernel_size=3, dilation=1, reg_blocks=1, cls_blocks=1, convs_per_block=1))
    path = tmp_path / "other_settings.pt"
    save_model(
        path,
        model,
        preprocessing={**PRE, "smooth_bp": 100},
        window={"interval": 400, "pad": 50},
        input_transform={"kind": "none"},
        threshold=0.5,
    )
    return bw, path


def infer(model: Path, bw: Path, sizes: Path, prefix: Path) -> subprocess.CompletedProcess:
    return atacdenoise(
        "infer",
        "--model",
        model,
        "--input",
        bw,
        "--sizes",
        sizes,
        "--out-prefix",
        prefix,
        "--threads",
        1,
        "--device",
        "cpu",
    )


def test_model_from_other_preprocessing_settings(tmp_path, sizes_file, infer_inputs):
    bw, model = infer_inputs
    out = tmp_path / "out"
    res = infer(model, bw, sizes_file, out / "S")
    assert_refused(res, "noisy.bw", "smooth_bp is 200 for this coverage track", "smooth_bp=100", "re-make the coverage")
    assert_nothing_left(out)


def test_corrupt_model_checkpoint(tmp_path, sizes_file, infer_inputs):
    bw, model = infer_inputs
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # truncated copy
    out = tmp_path / "out"
    assert_refused(
        infer(corrupt, bw, sizes_file, out / "S"),
        "corrupt.pt",
        "not a readable atacdenoise model file",
        "re-train or re-copy",
    )
    assert_nothing_left(out)


# --------------------------------------------------------------------------- outputs
def test_output_directory_not_writable(tmp_path, sizes_file):
    """Tests run as root, who may write anywhere: the output "directory" is an existing regular file instead."""
    bam = make_bam(tmp_path / "ok.bam", READS)
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory\n")
    out = blocker / "sub" / "x.bw"
    assert_refused(coverage(bam, sizes_file, out), f"{out}", "file.txt is a file, not a directory")
    assert blocker.read_text() == "not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "genome.sizes", "ok.bam", "ok.bam.bai"]


def test_inference_output_prefix_under_a_file(tmp_path, sizes_file, infer_inputs):
    bw, model = infer_inputs
    blocker = tmp_path / "results"
    blocker.write_text("")
    assert_refused(infer(model, bw, sizes_file, blocker / "S"), "results/S.track.bw", "is a file, not a directory")


# --------------------------------------------------------------------------- shell quoting
def test_paths_with_spaces_and_shell_characters_reach_the_coverage_rule_quoted(tmp_path, demo_config):
    """A working directory with a space and a BAM named with spaces and `$(...)`: the rule runs, nothing else does."""
    _, config = demo_config
    work = tmp_path / "work dir"
    data = work / "my data"
    data.mkdir(parents=True)
    bam = make_bam(data / "reads $(touch pwned) x.bam", READS)
    sizes = write_sizes(data / "genome sizes.txt", SIZES)
    (work / "samples.tsv").write_text(f"sample\tcell_type\tkind\tpath\nS\tX\tbam\tmy data/{bam.name}\n")
    config.update(samples="samples.tsv", depths=[])
    config["genome"]["sizes"] = str(sizes.relative_to(work))
    cfg = _write_config(work / "config.yaml", config)
    target = "results/coverage/S/full.rep1.bw"
    res = snakemake(target, "--configfile", cfg, "--cores", "2", cwd=work)
    assert res.returncode == 0, res.stderr
    side = json.loads((work / f"{target}.json").read_text())
    assert side["source"] == f"my data/{bam.name}"
    assert sum(side["n_cut_sites"].values()) > 0
    assert not (work / "pwned").exists() and not (data / "pwned").exists() and not (REPO / "pwned").exists()


def test_defaulted_keys_lists_every_value_the_user_did_not_set():
    from atacdenoise.checks import defaulted_keys

    given = {"genome": {"sizes": "g.sizes"}, "model": {"training": {"epochs": 3}}}
    filled = {
        "genome": {"sizes": "g.sizes", "blacklist": None},
        "depths": [],
        "model": {"name": "default", "training": {"epochs": 3}, "architecture": {}},
        "peaks": {"labels": {"cutoff": 3}},
    }
    assert defaulted_keys(given, filled) == {
        "genome.blacklist": None,
        "depths": [],
        "model.name": "default",
        "model.architecture": {},
        "peaks.labels.cutoff": 3,
    }


def test_check_warns_when_real_data_cover_only_windows_of_their_chromosomes(shared_data, tmp_path):
    """The immune cohort holds four windows of hg38: MACS3's chromosome-mean lambda would be far too low there."""
    clean = shared_data / "immune" / "TCD8EM_S_1001_a.fragments.tsv.gz"
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(f"sample\tcell_type\tkind\tpath\nEM\tTCD8EM\tfragments\t{clean}\n")
    config = {
        "samples": str(sheet),
        "genome": {"sizes": str(REPO / "resources" / "genomes" / "hg38.chrom.sizes")},
        "split": {"val_chroms": ["chr12"], "holdout_chroms": ["chr21"]},
    }
    cfg = _write_config(tmp_path / "config.yaml", config)
    res = atacdenoise("check", "--config", cfg, cwd=tmp_path)
    assert res.returncode == 0, res.stderr  # a warning, not an error: partial data are legitimate
    assert (
        f"{clean}: data cover only parts of 4 chromosome(s): chr1 (1 of 64 probes), chr7 (1 of 64 probes), "
        "chr12 (2 of 64 probes), chr21 (24 of 64 probes) have data in fewer than half of 64 evenly spaced 10-kb "
        "probes, densely where they do."
    ) in res.stderr
    assert "give peaks.labels.lambda per chromosome (atacdenoise fit-lambda)" in res.stderr
    assert "all inputs look fine (1 warning(s) above)" in res.stderr


def test_check_does_not_warn_about_data_that_cover_their_chromosomes(demo_config, tmp_path):
    res = atacdenoise("check", "--config", demo_config[0], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "data cover only parts" not in res.stderr and "warning(s) above" not in res.stderr


def test_partial_coverage_needs_empty_probes_and_dense_data_where_there_are_any():
    from atacdenoise.checks import partial_coverage

    windows = [0] * 40 + [50] * 24  # dense in 24 of 64 probes: partial
    sparse = [0] * 40 + [1] * 24  # 1 read per 10 kb where any: shallow data, not partial
    full = [30] * 64
    assert partial_coverage({"a": windows, "b": sparse, "c": full, "d": [0] * 64}) == {"a": (24, 64)}


# ---------------------------------------------------------------- names and values reaching a shell (issue 17)
def test_a_model_name_that_is_a_path_is_refused(demo_config, tmp_path):
    cfg, config = demo_config
    for name in ("..", "-h", "."):
        config["model"]["name"] = name
        _write_config(cfg, config)
        msg = f"model.name {name!r} is unsafe in file paths and shell commands"
        assert_refused(snakemake("--configfile", cfg, "--cores", "1", cwd=tmp_path), msg, status=1)
        assert_refused(atacdenoise("check", "--config", cfg, cwd=tmp_path), msg)
    assert not (tmp_path / "results").exists()


def test_wildcards_do_not_match_paths_or_options(demo_config, tmp_path):
    """A target whose sample or model part is '..' or '-h' matches no rule (it cannot escape its folder)."""
    cfg, _ = demo_config
    for target in (
        "results/coverage/../full.rep1.bw",
        "results/coverage/-h/full.rep1.bw",
        "results/models/../model.pt",
    ):
        res = snakemake("-n", target, "--configfile", cfg, cwd=tmp_path)
        assert res.returncode == 1 and "MissingRuleException" in res.stdout, res.stdout


def test_a_sheet_path_that_starts_with_a_dash_is_refused(demo_config, tmp_path):
    cfg, config = demo_config
    bam = make_bam(tmp_path / "-reads.bam", READS)
    Path(config["samples"]).write_text(f"sample\tcell_type\tkind\tpath\nS\tX\tbam\t{bam.name}\n")
    msg = "path file '-reads.bam' starts with '-', which commands would read as an option; write it as './-reads.bam'"
    assert_refused(snakemake("-n", "--configfile", cfg, cwd=tmp_path), msg, status=1)
    assert_refused(atacdenoise("check", "--config", cfg, cwd=tmp_path), msg)


def _shell_commands(out: str, program: str) -> list[str]:
    """Return the commands ``atacdenoise PROGRAM ...`` that ``snakemake -n -p`` prints, without their log redirect."""
    prefix = f"Shell command: atacdenoise {program} "
    return [
        line.removeprefix("Shell command: ").rsplit(" 2> ", 1)[0]
        for line in out.splitlines()
        if line.startswith(prefix)
    ]


def test_chromosome_names_and_lambda_keys_reach_the_shell_quoted(demo_config, tmp_path):
    """`HLA-A*01:01:01:01` is a real GRCh38 contig: unquoted, bash would glob it against the files of the run folder."""
    cfg, config = demo_config
    hla = "HLA-A*01:01:01:01"
    config["model"]["infer_chroms"] = ["chr2", hla]
    config["peaks"]["labels"]["lambda"] = {"chr1": 3.5, hla: 2.0}
    _write_config(cfg, config)
    sheet = Path(config["samples"])
    lines = [line.split("\t") for line in sheet.read_text().splitlines()]
    lines[1][lines[0].index("peaks")] = ""  # labels are called on the clean track: the --lambda route
    sheet.write_text("\n".join("\t".join(cols) for cols in lines) + "\n")
    res = snakemake("-n", "-p", "--configfile", cfg, cwd=tmp_path)
    assert res.returncode == 0, res.stdout
    infer = _shell_commands(res.stdout, "infer")
    peaks = [c for c in _shell_commands(res.stdout, "peaks") if "HSC/full.rep1.bw" in c]
    assert infer and len(peaks) == 1, res.stdout
    run = tmp_path / "run"
    run.mkdir()
    for decoy in ("HLA-A_01:01:01:01", "HLA-A_01:01:01:01=2.0"):  # what the unquoted globs would expand to
        (run / decoy).write_text("")
    echo = 'atacdenoise() { printf "%s\\n" "$@"; }; '
    for cmd, expected in ((infer[0], ["--chroms", "chr2", hla]), (peaks[0], ["--lambda", "chr1=3.5", f"{hla}=2.0"])):
        argv = subprocess.run(["bash", "-c", echo + cmd], capture_output=True, text=True, cwd=run, check=True).stdout
        words = argv.splitlines()
        i = words.index(expected[0])
        assert sorted(words[i + 1 : i + len(expected)]) == sorted(expected[1:]), words


# --------------------------------------------------------------------------- environment and paths (issue 17, item 6)
def test_workflow_without_the_environment_on_path_says_how_to_fix_it(demo_config, tmp_path):
    """`.venv/bin/snakemake` without `source .venv/bin/activate`: one clear error before any job, not exit-127 jobs."""
    from atacdenoise.checks import missing_tools

    cfg, _ = demo_config
    bare = "/usr/bin:/bin"
    if not missing_tools(path=bare):
        pytest.skip(f"atacdenoise and its tools are installed system-wide ({bare}): nothing to check")
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(cfg)]
    env = {**os.environ, "PATH": bare}
    run = subprocess.run(
        [*cmd, "--cores", "1", "results/coverage/HSC/full.rep1.bw"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    run.stderr = run.stdout
    assert_refused(
        run,
        "command(s) atacdenoise, macs3, computeMatrix, plotHeatmap not found on PATH",
        f"they are in {BIN}",
        f"source {BIN / 'activate'}",
        "make demo",
        status=1,
    )
    assert "exit status 127" not in run.stdout.replace("would fail with exit status 127", "")
    assert not (tmp_path / "results").exists()  # no job ran (no log, no output)
    dry = subprocess.run([*cmd, "-n"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert dry.returncode == 0, dry.stdout + dry.stderr  # a dry run runs no command: it needs none


def test_missing_tools_look_on_path_and_beside_atacdenoise(tmp_path):
    """MACS3 and deepTools may sit beside atacdenoise (where it finds them), atacdenoise itself must be on PATH."""
    from atacdenoise.checks import missing_tools, tools_problem

    assert missing_tools(path=str(BIN)) == []
    assert missing_tools(path=str(tmp_path)) == ["atacdenoise", "macs3", "computeMatrix", "plotHeatmap"]
    (tmp_path / "atacdenoise").symlink_to(BIN / "atacdenoise")  # only atacdenoise linked onto PATH: the rest beside it
    assert missing_tools(path=str(tmp_path)) == []
    assert tools_problem(path=str(BIN)) is None
    problem = tools_problem(path=str(tmp_path / "nowhere"), env_bin=tmp_path / "nowhere")
    assert "not found on PATH" in problem and "make venv" in problem and "source .venv/bin/activate" in problem


def test_a_relative_sample_sheet_missing_from_the_working_directory_is_explained(demo_config, tmp_path):
    """`samples: config/samples.tsv` read from another --directory: name the resolved path and the working directory."""
    cfg, config = demo_config
    config["samples"] = "sheets/samples.tsv"
    _write_config(cfg, config)
    work = tmp_path / "elsewhere"
    work.mkdir()
    res = snakemake("-n", "--configfile", cfg, cwd=work)
    expected = (
        f"sheets/samples.tsv: sample sheet not found (looked for {work / 'sheets/samples.tsv'}: relative paths are "
        f"read from the working directory {work})"
    )
    assert_refused(res, expected, "an absolute path works from any directory", "--directory", status=1)
    assert "FileNotFoundError" not in res.stdout
    assert_refused(atacdenoise("check", "--config", cfg, cwd=work), expected)
