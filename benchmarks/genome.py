"""Genome-scale benchmark (issue 19, items 3-5): every workflow stage on a whole hg38-size genome, measured.

Inputs look like real data: the real HSC cut-site pattern (``../shared/data/hsc/HSC_80M.chr1_chr2.bam``,
487,831 Tn5 cut sites over 2 x 10 Mb, the deep "clean" library) tiled over every primary hg38 chromosome
(chr1-22, X, Y of ``hg38.chrom.sizes``; the unplaced contigs and chrM are left out), as a 10x-style
fragments file: each fragment's left cut site is drawn from the tiled pattern and its length from a
nucleosome ladder. The noisy sample is subsampled from it by ``atacdenoise subsample`` itself (that is
the subsample stage). Inputs are generated with NumPy, written by the project's own fragments writer and
cached under ``--cache``.

Each stage runs as the workflow runs it (the ``atacdenoise`` subcommand with the arguments of its rule in
``workflow/rules/*.smk`` at the default config), each a fresh process timed by :mod:`common` (wall from
the parent, peak RSS of the process tree). Every stage runs twice: on the largest chromosome alone and
on the whole genome, so that a peak RSS that grows with the genome shows (issue 19.4). Stages that take
``--threads`` also run at 1 thread on the whole genome, for the extrapolation. The ``loader`` stage
measures training windows per second read from the on-disk dataset through the training code's own
DataLoader (0, 1, 2 workers, the ``standard`` preset's window) and the rate a GPU would consume, from the
model's FLOPs per window (issue 19.5). Finally, a table extrapolates a 4-sample x 3-depth x 2-replicate
hg38 cohort to this machine, a 32-core CPU node and one GPU node, with its assumptions printed under it.

``.venv/bin/python benchmarks/genome.py [--quick] [--fragments 25M] [--stages ...] [--json FILE]``
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import common
from common import fmt_bytes, fmt_num, log, run_cmd, run_python, table

HSC_BAM = common.SHARED / "hsc" / "HSC_80M.chr1_chr2.bam"
#: the HSC fixture covers the first 10 Mb of chr1 and chr2: the tiled template is 20 Mb long
HSC_BLOCK = 10_000_000
PRIMARY = re.compile(r"^chr([0-9]+|X|Y)$")
#: published dense bf16 rate of one H100 SXM (no sparsity), FLOP/s
H100_BF16 = 989e12
#: effective rate of our reference-shape model measured on one H200 (../shared/GPU.md, issue 23), FLOP/s
H200_MEASURED = 32.5e12
#: GPU figures of ../shared/GPU.md (one H200, reference shape): whole-genome inference (process) and epoch
GPU_INFER_S_PER_GENOME = 288.0
GPU_EPOCH_S_PER_GENOME = 207.0
#: the extrapolated cohort (issue 19.3)
COHORT = {"samples": 4, "depths": 3, "replicates": 2}
STAGES = (
    "subsample",
    "coverage_clean",
    "coverage_noisy",
    "qc",
    "peaks_labels",
    "peaks_noisy",
    "callpeak_noisy",
    "dataset_clean",
    "dataset",
    "train",
    "infer",
    "metrics",
    "loader",
)
#: stages that take --threads in their rule (also measured at 1 thread on the whole genome)
THREADED = ("coverage_clean", "coverage_noisy", "train", "infer")
#: defaults of workflow/schemas/config.schema.yaml that the rules pass
EXCLUDE = r"^(chrM|chrMT|M|MT)$|_|^chrUn|^Un|^GL|^KI|^JH|^(chr)?EBV$"
SAMPLE, CELL_TYPE, REP, SEED = "hsc", "HSC", 1, 1


# --------------------------------------------------------------------------- inputs


def primary_sizes(quick: bool) -> dict[str, int]:
    """chr1-22, X, Y of hg38 (``--quick``: chr21, chr22 and chrY cut to 2, 1.5 and 1 Mb)."""
    sizes = {
        c: n for c, n in common.read_sizes(common.chrom_sizes_file("hg38.chrom.sizes")).items() if PRIMARY.match(c)
    }
    if quick:
        return {"chr21": 2_000_000, "chr22": 1_500_000, "chrY": 1_000_000}
    return sizes


def hsc_template(cache: Path) -> np.ndarray:
    """Cut sites of the deep HSC library on one 20-Mb template (chr2's block after chr1's): int64, sorted."""
    out = cache / "hsc80m.template.npy"
    if out.exists():
        return np.load(out)
    import pysam

    parts = []
    with pysam.AlignmentFile(str(HSC_BAM)) as bam:
        for block, chrom in enumerate(("chr1", "chr2")):
            reads = [(r.reference_start, r.reference_end, r.is_reverse) for r in bam.fetch(chrom)]
            start, end, rev = (np.array(x) for x in zip(*reads))
            from atacdenoise.reads.cutsites import read_cut_sites

            parts.append(read_cut_sites(start, end, rev) + block * HSC_BLOCK)
    template = np.sort(np.concatenate(parts))
    cache.mkdir(parents=True, exist_ok=True)
    np.save(out, template)
    return template


def fragment_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    """ATAC fragment lengths: 55 % sub-nucleosomal (~90 bp), 30 % mono- (~200), 15 % di-nucleosomal (~400)."""
    kind = rng.choice(3, size=n, p=[0.55, 0.30, 0.15])
    length = np.where(
        kind == 0,
        rng.gamma(4.0, 15.0, n) + 30,
        np.where(kind == 1, rng.normal(200, 25, n), rng.normal(400, 35, n)),
    )
    return np.clip(length, 30, 1000).astype(np.int64)


def chrom_fragments(template: np.ndarray, chrom_index: int, length: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (start, end) of ``n`` fragments on one chromosome: the template tiled along it, drawn with replacement.

    The generator is seeded by the chromosome's index in hg38, so a chromosome's fragments are the same
    whether it is generated alone or with the whole genome.
    """
    rng = np.random.default_rng([SEED, chrom_index])
    span = 2 * HSC_BLOCK
    tiles = np.arange(0, length, span, dtype=np.int64)
    pos = (template[None, :] + tiles[:, None]).ravel()
    pos = pos[pos < length - 1000]
    start = np.sort(pos[rng.integers(0, pos.size, n)])
    end = np.minimum(start + fragment_lengths(n, rng), length)
    return start, end


def make_fragments(out: Path, sizes: dict[str, int], n_total: int, genome_bases: int, cache: Path) -> Path:
    """Write the clean fragments file over ``sizes`` (``n_total`` fragments over ``genome_bases``), cached."""
    if out.exists() and Path(str(out) + ".tbi").exists():
        return out
    import pandas as pd

    from atacdenoise.io.fragments import write_fragments

    template = hsc_template(cache)
    order = list(common.read_sizes(common.chrom_sizes_file("hg38.chrom.sizes")))
    t0 = time.perf_counter()

    def chunks():
        for chrom, length in sizes.items():
            n = round(n_total * length / genome_bases)
            start, end = chrom_fragments(template, order.index(chrom), length, n)
            yield pd.DataFrame({"chrom": chrom, "start": start, "end": end, "barcode": "HSC_80M", "count": 1})

    n = write_fragments(chunks(), out, source=HSC_BAM)
    log(f"  wrote {out} ({n:,} fragments, {fmt_bytes(out.stat().st_size)}) in {time.perf_counter() - t0:.0f} s")
    return out


# --------------------------------------------------------------------------- the model's FLOPs


def conv_flops_per_position(model) -> int:
    """Forward FLOPs per output position of a 1-D conv network: 2 x in/groups x out x taps, summed over its convs.

    Every conv of the model is 'same'-padded at stride 1, so each runs at every position.
    """
    import torch

    total = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Conv1d):
            if m.stride != (1,):
                raise ValueError(f"{m}: stride {m.stride}; this count assumes stride-1 convs")
            total += 2 * (m.in_channels // m.groups) * m.out_channels * m.kernel_size[0]
    return total


def training_flops_per_window(preset: str = "standard") -> dict:
    """FLOPs of one training window (forward + backward = 3 x forward) of ``preset``, with its window shape."""
    from atacdenoise.model.network import build_model
    from atacdenoise.model.train import resolve_settings

    hparams, s = resolve_settings({"preset": preset})
    per_pos = conv_flops_per_position(build_model(hparams))
    length = s["interval"] + 2 * s["pad"]
    return {
        "preset": preset,
        "interval": s["interval"],
        "pad": s["pad"],
        "batch_size": s["batch_size"],
        "forward_flops_per_position": per_pos,
        "train_flops_per_window": 3 * per_pos * length,
    }


# --------------------------------------------------------------------------- stages


@dataclass
class Scope:
    """One measured genome: its chromosomes, inputs and work directory."""

    name: str  # "largest" (the largest chromosome alone) or "genome"
    sizes: dict[str, int]
    work: Path
    clean: Path
    n_clean: int
    infer_chroms: list[str]
    val: str
    holdout: str
    #: stages run on these chromosomes only (extrapolated per base); None: every stage on every chromosome
    partial: list[str] | None = None
    partial_stages: tuple[str, ...] = ()

    @property
    def bases(self) -> int:
        return sum(self.sizes.values())

    @property
    def sizes_file(self) -> Path:
        return self.work / "genome.sizes"

    def p(self, name: str) -> Path:
        return self.work / name


@dataclass
class Row:
    stage: str
    scope: str
    threads: int
    wall: float
    rss: int
    written: int
    rate: float
    unit: str
    load: float
    note: str = ""
    extra: dict = field(default_factory=dict)


def path_bytes(paths: list[Path]) -> int:
    """Bytes on disk of files and (recursively) directories."""
    total = 0
    for p in paths:
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        elif p.exists():
            total += p.stat().st_size
    return total


def denoised_prefix(sc: Scope, threads: int, precision: str) -> Path:
    """Where ``infer`` writes at ``threads`` and ``precision`` (a folder each: no run overwrites another's)."""
    return sc.p(f"denoised.t{threads}.{precision}/{SAMPLE}")


def stage_command(stage: str, sc: Scope, threads: int, args) -> tuple[list[str], list[Path], float, str, str]:
    """(command, outputs, rate numerator, rate unit, note) of ``stage`` as its rule runs it."""
    ad = common.tool("atacdenoise", "install the project: make setup")
    sizes = str(sc.sizes_file)
    noisy, clean_bw, noisy_bw = sc.p("noisy.tsv.gz"), sc.p("clean.bw"), sc.p("noisy.bw")
    tmp = sc.p("tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    depth = args.noisy_fragments_for(sc)
    cov = [
        "--kind",
        "fragments",
        "--sizes",
        sizes,
        "--exclude",
        EXCLUDE,
        "--smooth-bp",
        "200",
        "--shift-plus",
        "4",
        "--shift-minus",
        "-5",
        "--min-mapq",
        "30",
        "--threads",
        str(threads),
    ]
    label_args = ["--cutoff", "3", "--min-length", "200", "--max-gap", "30", "--tmpdir", str(tmp)]
    model_dir = sc.p(f"model.t{threads}")
    settings = {
        "preset": "light",
        "epochs": args.epochs,
        "windows_per_epoch": args.windows,
        "batch_size": 4,
        "lr": 0.001,
        "seed": SEED,
    }
    infer_prefix = denoised_prefix(sc, threads, args.precision)
    infer_bases = sum(sc.sizes[c] for c in sc.infer_chroms)
    part = sc.partial if stage in sc.partial_stages else None
    chroms = ["--chroms", *part] if part else []
    bases = sum(sc.sizes[c] for c in part) if part else sc.bases
    note = f"on {', '.join(part)} only, extrapolated per base" if part else ""
    if stage == "subsample":
        cmd = [
            ad,
            "subsample",
            "--input",
            str(sc.clean),
            "--fragments",
            str(depth),
            "--seed",
            str(SEED * 1000 + REP),
            "--sizes",
            sizes,
            "--out",
            str(noisy),
        ]
        return cmd, [noisy, Path(f"{noisy}.tbi"), Path(f"{noisy}.json")], sc.n_clean, "fragments/s", ""
    if stage == "coverage_clean":
        out = clean_bw
        return (
            [ad, "coverage", "--input", str(sc.clean), *cov, "--out", str(out)],
            [out, Path(f"{out}.json")],
            sc.bases,
            "bases/s",
            "",
        )
    if stage == "coverage_noisy":
        out = sc.p(f"noisy.t{threads}.bw") if threads != args.threads else noisy_bw
        return (
            [ad, "coverage", "--input", str(noisy), *cov, "--out", str(out)],
            [out, Path(f"{out}.json")],
            sc.bases,
            "bases/s",
            "",
        )
    if stage == "qc":  # rule qc, on the deep input (the largest of a sample's inputs)
        tsv, fraglen = sc.p("clean.qc.tsv"), sc.p("clean.fraglen.tsv")
        cmd = [ad, "qc", "--input", str(sc.clean), "--kind", "fragments", "--sizes", sizes, "--exclude", EXCLUDE]
        cmd += ["--min-mapq", "30", "--sample", SAMPLE, "--depth", "full", "--rep", str(REP), "--threads", "1"]
        return [*cmd, "--out", str(tsv), "--out-fraglen", str(fraglen)], [tsv, fraglen], sc.bases, "bases/s", ""
    if stage == "peaks_labels":
        peaks, pval = sc.p("clean.bdgpeakcall.narrowPeak"), sc.p("clean.bdgpeakcall.pval.bw")
        cmd = [
            ad,
            "peaks",
            "--track",
            str(clean_bw),
            "--sizes",
            sizes,
            *chroms,
            "--lambda-scale",
            "1.0",
            *label_args,
            "--out-peaks",
            str(peaks),
            "--out-pval",
            str(pval),
        ]
        return cmd, [peaks, pval], bases, "bases/s", note
    if stage == "peaks_noisy":
        peaks, pval = sc.p("noisy.bdgpeakcall.narrowPeak"), sc.p("noisy.bdgpeakcall.pval.bw")
        cmd = [
            ad,
            "peaks",
            "--track",
            str(noisy_bw),
            "--sizes",
            sizes,
            *chroms,
            *label_args,
            "--out-peaks",
            str(peaks),
            "--out-pval",
            str(pval),
        ]
        return cmd, [peaks, pval], bases, "bases/s", note
    if stage == "callpeak_noisy":
        peaks, pval = sc.p("noisy.callpeak.narrowPeak"), sc.p("noisy.callpeak.pval.bw")
        cmd = [
            ad,
            "callpeak",
            "--input",
            str(noisy),
            "--kind",
            "fragments",
            "--sizes",
            sizes,
            *chroms,
            "--genome-size",
            "hs",
            "--pvalue",
            "0.01",
            "--shift",
            "-75",
            "--extsize",
            "150",
            "--min-mapq",
            "30",
            "--name",
            f"{SAMPLE}.{depth}.rep{REP}",
            "--tmpdir",
            str(tmp),
            "--out-peaks",
            str(peaks),
            "--out-pval",
            str(pval),
        ]
        return cmd, [peaks, pval], depth * bases / sc.bases, "fragments/s", note
    if stage == "dataset_clean":  # rule dataset_clean: the sample's clean track, labels and mask, once
        out = sc.p("clean_part")
        cmd = [
            ad,
            "dataset-clean",
            "--clean",
            str(clean_bw),
            "--labels",
            str(sc.p("clean.bdgpeakcall.narrowPeak")),
            "--sizes",
            sizes,
            *chroms,
            "--sample",
            SAMPLE,
            "--cell-type",
            CELL_TYPE,
            "--out",
            str(out),
        ]
        return cmd, [out], bases, "bases/s", note
    if stage == "dataset":  # rule dataset: one noisy input beside its sample's clean part
        out = sc.p("dataset")
        cmd = [
            ad,
            "dataset",
            "--noisy",
            str(noisy_bw),
            "--clean-dataset",
            str(sc.p("clean_part")),
            "--sizes",
            sizes,
            "--depth",
            str(depth),
            "--rep",
            str(REP),
            "--out",
            str(out),
        ]
        return cmd, [out], bases, "bases/s", note
    if stage == "train":
        cmd = [
            ad,
            "train",
            "--datasets",
            str(sc.p("dataset")),
            "--sizes",
            sizes,
            "--val",
            sc.val,
            "--holdout",
            sc.holdout,
            "--settings",
            json.dumps(settings, sort_keys=True),
            "--out-dir",
            str(model_dir),
            "--gpus",
            "1",
            "--threads",
            str(threads),
            "--device",
            "cpu",
        ]
        note = f"light preset, {args.epochs} epochs x {args.windows} windows, batch 4"
        return cmd, [model_dir], args.epochs * args.windows, "windows/s", note
    if stage == "infer":
        model = sc.p(f"model.t{args.threads}/model.pt")
        cmd = [
            ad,
            "infer",
            "--model",
            str(model),
            "--input",
            str(noisy_bw),
            "--sizes",
            sizes,
            "--chroms",
            *sc.infer_chroms,
            "--batch-size",
            "16",
            "--threads",
            str(threads),
            "--precision",
            args.precision,
            "--device",
            "cpu",
            "--out-prefix",
            str(infer_prefix),
        ]
        outs = [Path(f"{infer_prefix}.{x}") for x in ("track.bw", "peakprob.bw", "peaks.narrowPeak", "fitness.tsv")]
        outs += [Path(f"{p}.json") for p in outs[:2]]
        note = f"{args.precision} outputs"
        if infer_bases != sc.bases:
            note += f"; on {', '.join(sc.infer_chroms)} only, extrapolated per base"
        return cmd, outs, infer_bases, "bases/s", note
    if stage == "metrics":
        pre = str(sc.p("noisy.{}.{}"))
        out = sc.p("metrics.tsv")
        cmd = [
            ad,
            "metrics",
            "--clean",
            str(clean_bw),
            "--labels",
            str(sc.p("clean.bdgpeakcall.narrowPeak")),
            "--noisy",
            str(noisy_bw),
            "--denoised-prefix",
            str(denoised_prefix(sc, args.threads, args.precision)),
            "--baseline",
            f"macs3_bdgpeakcall={pre.format('bdgpeakcall', 'narrowPeak')},{pre.format('bdgpeakcall', 'pval.bw')}",
            "--baseline",
            f"macs3_callpeak={pre.format('callpeak', 'narrowPeak')},{pre.format('callpeak', 'pval.bw')}",
            "--sizes",
            sizes,
            "--regions",
            sc.holdout,
            "--model",
            "light",
            "--sample",
            SAMPLE,
            "--depth",
            str(depth),
            "--rep",
            str(REP),
            "--out",
            str(out),
            "--pr-curves",
            str(sc.p("metrics.pr.npz")),
        ]
        return cmd, [out, sc.p("metrics.pr.npz")], region_bases(sc.holdout), "bases/s", f"holdout {sc.holdout}"
    raise ValueError(stage)


def region_bases(region: str) -> int:
    m = re.fullmatch(r"[^:]+:(\d+)-(\d+)", region)
    if not m:
        raise ValueError(f"region {region!r}: expected chrom:start-end")
    return int(m.group(2)) - int(m.group(1))


LOADER_CHILD = """
import json, time
import numpy as np, torch
from atacdenoise.model.dataset import open_dataset, start_table, sample_windows, WindowSet
from atacdenoise.model import train as T
_, s = T.resolve_settings({{"preset": "standard"}})
interval, pad, bs = s["interval"], s["pad"], s["batch_size"]
pair = open_dataset({path!r})
table = start_table([pair], interval, pad, [])
rates = {{}}
for w in {workers}:
    windows = sample_windows(table, {n}, interval, np.random.default_rng([{seed}, w]), flip=True)
    loader = T._loader(WindowSet([pair], windows, interval, pad), bs, w, torch.device("cpu"))
    t0 = time.perf_counter()
    k = 0
    for batch in loader:
        k += len(next(iter(batch.values())))
    rates[w] = k / (time.perf_counter() - t0)
print(json.dumps({{"rates": rates, "interval": interval, "pad": pad, "batch_size": bs}}))
"""


def run_loader(sc: Scope, args) -> Row:
    """Training windows/s from the on-disk dataset through train's DataLoader, 0/1/2 workers (standard window)."""
    ds = sc.p("dataset")
    if not ds.exists():
        sys.exit(f"{ds}: no dataset; run the dataset stage first (--stages dataset)")
    load = os.getloadavg()[0]
    code = LOADER_CHILD.format(path=str(ds), workers=list(args.workers), n=args.loader_windows, seed=SEED)
    s = run_python(code, env=child_env())
    rates = {int(k): v for k, v in s.extra["rates"].items()}
    best = max(rates.values())
    note = "windows/s by workers: " + ", ".join(f"{w}: {r:.1f}" for w, r in sorted(rates.items()))
    return Row("loader", sc.name, 1, s.wall, s.rss, 0, best, "windows/s", load, note, extra=s.extra)


def child_env() -> dict:
    """Return the environment that makes the children import this checkout's package."""
    wf = str(common.REPO / "workflow")
    return {"PYTHONPATH": wf + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}


def run_stage(stage: str, sc: Scope, threads: int, args) -> Row:
    """Run one stage as a fresh process (its outputs removed first); return its figures."""
    if stage == "loader":
        return run_loader(sc, args)
    cmd, outs, count, unit, note = stage_command(stage, sc, threads, args)
    for p in outs:
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    load = os.getloadavg()[0]
    log(f"[{sc.name}] {stage} (threads {threads}): {' '.join(cmd)[:300]}")
    s, _ = run_cmd(cmd, env=child_env(), cores=threads)
    row = Row(stage, sc.name, threads, s.wall, s.rss, path_bytes(outs), count / s.wall, unit, load, note)
    if stage == "infer":  # each bigWig's bytes a base (issue 19.2's measure): outs start with track.bw, peakprob.bw
        row.extra["bytes_per_base"] = {p.name.split(".")[-2]: p.stat().st_size / count for p in outs[:2]}
        row.note += "; " + ", ".join(f"{k}.bw {v:.3f} B/base" for k, v in row.extra["bytes_per_base"].items())
    if "extrapolated" in note:  # the whole genome's time, per base
        part = sc.infer_chroms if stage == "infer" else sc.partial
        row.extra["genome_scale"] = sc.bases / sum(sc.sizes[c] for c in part)
    log(f"  {s.wall:.1f} s, peak RSS {fmt_bytes(s.rss)}, wrote {fmt_bytes(row.written)}, {fmt_num(row.rate)} {unit}")
    return row


# --------------------------------------------------------------------------- extrapolation


def cohort_jobs() -> dict[str, int]:
    """Jobs of each stage in the cohort: per sample (clean) or per noisy pair; train once."""
    pairs = COHORT["samples"] * COHORT["depths"] * COHORT["replicates"]
    per_sample = ("coverage_clean", "peaks_labels", "dataset_clean")
    jobs = {
        st: (1 if st == "train" else COHORT["samples"] if st in per_sample else pairs)
        for st in STAGES
        if st != "loader"
    }
    jobs["qc"] = COHORT["samples"] + pairs  # every input, deep and noisy (each timed as the deep one)
    return jobs


def amdahl(t1: float, t2: float, n: int) -> float:
    """Time on ``n`` threads from times on 1 and 2 (serial fraction fitted from the two, clipped to [0, 1])."""
    f = min(1.0, max(0.0, 2 * t2 / t1 - 1))
    return t1 * (f + (1 - f) / n)


def stage_time(t1: float, t2: float | None, jobs: int, cores: int, rss: int, ram: float) -> tuple[float, str]:
    """Wall time of ``jobs`` equal jobs on ``cores``: the better of 1-thread jobs side by side or 2-thread jobs.

    Jobs run in waves, at most cores / threads at a time and as many as the RAM holds (80 %).
    """
    best = (math.inf, "")
    for threads, t in ((1, t1), (2, t2)):
        if t is None or threads > cores:
            continue
        at_once = max(1, min(jobs, cores // threads, int(0.8 * ram // max(rss, 1))))
        if jobs == 1 and threads == 2 and cores > 2:  # one job: give it every core
            return amdahl(t1, t2, cores), f"1 job x {cores} threads (Amdahl from 1 and 2 threads)"
        total = math.ceil(jobs / at_once) * t
        if total < best[0]:
            best = (total, f"{at_once} x {threads}-thread jobs at once")
    return best


def extrapolate(rows: list[Row], genome_bases: int, loader: dict | None) -> tuple[str, list[str], dict]:
    """Return the cohort table (seconds per stage on three machines), its assumptions and its figures."""
    g = {(r.stage, r.threads): r for r in rows if r.scope == "genome"}
    jobs = cohort_jobs()
    holdout_bases = 134_000_000  # a chr10-size holdout chromosome
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    machines = {"this machine": (2, ram), "32-core CPU node (256 GiB)": (32, 256 * 2**30)}
    out_rows, data = [], {}
    totals = [0.0, 0.0, 0.0]
    for st, n in jobs.items():
        mine = [r for (s, _t), r in g.items() if s == st]
        if not mine:
            continue
        by_t = {r.threads: r for r in mine}
        r1, r2 = by_t.get(1), by_t.get(2)
        rss = max(r.rss for r in mine)

        def per_job(r: Row, st: str = st) -> float:
            # whole genome per job: stages run on part of it are scaled per base
            if st == "metrics":
                return r.wall * holdout_bases / region_bases_from_note(r.note)
            return r.wall * r.extra.get("genome_scale", 1.0)

        if r1 is None:  # a threaded stage run at 2 threads only: no 1-thread figure to scale from
            continue
        t1, t2 = per_job(r1), (per_job(r2) if r2 else None)
        if st == "train":  # a real training run: 25 epochs x one genome of windows (50 kb each)
            windows = 25 * genome_bases / 50_000
            t1, t2 = windows / r1.rate, (windows / r2.rate if r2 else None)
        cells, how = [], []
        for _name, (cores, ram) in machines.items():
            t, h = stage_time(t1, t2, n, cores, rss, ram)
            cells.append(t)
            how.append(h)
        if st == "train":
            gpu, gh = 25 * GPU_EPOCH_S_PER_GENOME, "GPU: 25 whole-genome epochs at GPU.md's 207 s"
        elif st == "infer":
            gpu, gh = n * GPU_INFER_S_PER_GENOME, f"GPU: {n} x GPU.md's 288 s per genome"
        else:
            gpu, gh = stage_time(t1, t2, n, 16, rss, 128 * 2**30)
        cells.append(gpu)
        how.append(gh)
        for i, t in enumerate(cells):
            totals[i] += t
        data[st] = {"jobs": n, "per_job_1t": t1, "per_job_2t": t2, "seconds": cells, "how": how}
        out_rows.append([st, n, fmt_s(t1), fmt_s(t2) if t2 else "-", *(fmt_s(c) for c in cells), "; ".join(how)])
    out_rows.append(["**total**", "", "", "", *(f"**{fmt_s(t)}**" for t in totals), "stages one after another"])
    headers = [
        "stage",
        "jobs",
        "per job, 1 thread",
        "per job, 2 threads",
        "this machine (2 cores)",
        "32-core node",
        "GPU node (16 cores + 1 GPU)",
        "how",
    ]
    text = table(headers, out_rows)
    notes = [
        f"Cohort: {COHORT['samples']} samples x {COHORT['depths']} depths x {COHORT['replicates']} replicates of an "
        f"hg38-size genome ({fmt_num(genome_bases)} bases): {jobs['subsample']} noisy pairs; per sample one clean "
        "coverage and one label peak call; per pair subsample, coverage, both MACS3 baselines, dataset, infer and "
        "metrics; one training run for the cohort; QC on every input (each timed as the deep one's, an upper "
        "bound).",
        "Per-job times are this run's whole-genome figures; every depth's job is assumed to take as long as the "
        "measured one (subsampling reads the whole clean file whatever the depth; coverage and peak calling are "
        "dominated by the genome's length at these depths).",
        "Threads, measured: coverage, train and infer ran at 1 and 2 threads on the whole genome (the "
        "`threads` column above); the other stages are 1-thread jobs in their rules. A node runs the better "
        "of 1-thread jobs side by side or 2-thread jobs, as many at once as cores and 80 % of RAM allow (peak "
        "RSS per job from this run); one job alone on a node gets every core, its time from Amdahl's law "
        "fitted to the 1- and 2-thread times.",
        "The 32-core node is assumed to have this machine's per-core speed and 256 GiB; disk bandwidth is assumed "
        "not to limit jobs side by side (not measured: 1 local disk here). Stages run one after another (a "
        "snakemake run overlaps them, so totals are upper bounds).",
        "Train: a real run is 25 epochs (TRAIN_DEFAULTS) x one genome of 50-kb windows per epoch; the CPU columns "
        "scale the light preset's measured windows/s; the GPU column is the standard preset's 207 s per "
        "whole-genome epoch on one H200 (../shared/GPU.md, issue 23).",
        "Infer: CPU columns scale the light preset's measured bases/s per base (chr1 + chr21 here) to the genome; "
        "the GPU column is the standard preset's 288 s per genome on one H200 (GPU.md: infer on chr20-22, "
        "process time, extrapolated per base). Metrics: scaled per base to a chr10-size (134 Mb) holdout.",
    ]
    if loader:
        notes.append(f"GPU feed: {loader['summary']}")
    data["totals"] = totals
    return text, notes, data


def region_bases_from_note(note: str) -> int:
    return region_bases(note.split()[-1])


def fmt_s(t: float | None) -> str:
    if t is None or t != t:
        return "-"
    if t >= 3600:
        return f"{t / 3600:.1f} h"
    if t >= 120:
        return f"{t / 60:.1f} min"
    return f"{t:.1f} s"


# --------------------------------------------------------------------------- main


def main() -> None:
    p = common.base_parser(__doc__.splitlines()[0])
    p.set_defaults(cache=Path("/work/scratch-genome/cache"), runs=1)
    p.add_argument("--work", type=Path, default=Path("/work/scratch-genome/work"), help="stage outputs")
    p.add_argument("--fragments", type=common.parse_size, default=None, help="clean fragments (25M; --quick: 100k)")
    p.add_argument("--noisy-ratio", type=int, default=None, help="clean / noisy depth (16, HSC's 80M / 5M; quick 4)")
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stages to run")
    p.add_argument("--scopes", nargs="+", choices=("largest", "genome"), default=["genome", "largest"])
    p.add_argument(
        "--partial",
        nargs="*",
        choices=STAGES,
        default=["peaks_labels", "peaks_noisy", "callpeak_noisy", "dataset_clean", "dataset"],
        help="stages run on the largest and smallest chromosome only in the genome scope (extrapolated per base; "
        "not with --quick); infer always is",
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs (3; quick 1)")
    p.add_argument("--windows", type=int, default=None, help="training windows per epoch (64; quick 16)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers to measure")
    p.add_argument("--loader-windows", type=int, default=None, help="windows read per worker count (256; quick 32)")
    p.add_argument("--drop-dataset", action="store_true", help="delete each dataset after the loader stage")
    p.add_argument(
        "--precision",
        choices=("compact", "float32"),
        default="compact",
        help="infer's output precision (compact: the rule's default, model.output_precision)",
    )
    args = p.parse_args()
    if args.fragments is None:
        args.fragments = 100_000 if args.quick else 25_000_000
    quick_or = lambda value, quick: quick if args.quick else value  # noqa: E731
    for key, value, quick in (
        ("loader_windows", 256, 32),
        ("noisy_ratio", 16, 4),
        ("epochs", 2, 1),
        ("windows", 64, 8),
    ):
        if getattr(args, key) is None:
            setattr(args, key, quick_or(value, quick))

    full = primary_sizes(args.quick)
    genome_bases = sum(full.values())
    largest = max(full, key=full.get)
    small = min(full, key=full.get)
    label = f"{'quick' if args.quick else 'hg38'}.{args.fragments}"
    work = args.work / label
    if args.quick:
        val, holdout = f"{largest}:500000-700000", f"{largest}:1000000-1500000"
    else:
        val, holdout = f"{largest}:10000000-12000000", f"{largest}:20000000-30000000"
    scopes = []
    for name in args.scopes:
        sizes = {largest: full[largest]} if name == "largest" else full
        n = round(args.fragments * sum(sizes.values()) / genome_bases)
        clean = args.cache / f"clean.{label}.{name}.tsv.gz"
        infer = list(sizes) if args.quick or name == "largest" else [largest, small]
        sc = Scope(name, sizes, work / name, clean, n, infer, val, holdout)
        if name == "genome" and not args.quick:
            sc.partial, sc.partial_stages = [largest, small], tuple(args.partial)
        sc.work.mkdir(parents=True, exist_ok=True)
        common.write_sizes(sizes, sc.sizes_file)
        scopes.append(sc)

    def noisy_for(sc: Scope) -> int:
        return max(1000, sc.n_clean // args.noisy_ratio)

    args.noisy_fragments_for = noisy_for

    log(f"machine: {common.machine_line()}")
    rows: list[Row] = []
    for sc in scopes:
        make_fragments(sc.clean, sc.sizes, args.fragments, genome_bases, args.cache)
        for st in args.stages:
            thread_list = [args.threads] if st in THREADED else [1]  # the rules' threads
            if st in THREADED and sc.name == "genome" and args.threads != 1:
                thread_list.append(1)
            for t in thread_list:
                rows.append(run_stage(st, sc, t, args))
            if st == "loader" and args.drop_dataset:
                shutil.rmtree(sc.p("dataset"), ignore_errors=True)
                shutil.rmtree(sc.p("clean_part"), ignore_errors=True)

    flops = training_flops_per_window("standard")
    print_tables(rows, scopes, args, flops, genome_bases, largest)


def print_tables(rows: list[Row], scopes: list[Scope], args, flops: dict, genome_bases: int, largest: str) -> None:
    info = common.machine()
    print(
        f"\n## Genome-scale stages ({'quick' if args.quick else 'hg38 primary chr1-22, X, Y'}, "
        f"{fmt_num(args.fragments)} clean fragments)\n"
    )
    print(f"Machine: {common.machine_line(info)}.\n")
    for sc in scopes:
        print(
            f"- scope `{sc.name}`: {len(sc.sizes)} chromosome(s), {fmt_num(sc.bases)} bases, "
            f"{sc.n_clean:,} clean / {args.noisy_fragments_for(sc):,} noisy fragments"
        )
    print()
    body = [
        [
            r.stage,
            r.scope,
            r.threads,
            f"{r.wall:.1f}",
            fmt_bytes(r.rss),
            fmt_bytes(r.written),
            f"{fmt_num(r.rate)} {r.unit}",
            f"{r.load:.2f}",
            r.note,
        ]
        for r in rows
    ]
    print(
        table(
            [
                "stage",
                "scope",
                "threads",
                "wall s",
                "peak RSS (tree)",
                "bytes written",
                "rate",
                "1-min load at start",
                "note",
            ],
            body,
        )
    )

    # memory: the largest chromosome alone against the whole genome
    mem_rows, mem = [], {}
    for st in STAGES:
        a = next((r for r in rows if r.stage == st and r.scope == "largest"), None)
        t = args.threads if st in THREADED else 1
        b = next((r for r in rows if r.stage == st and r.scope == "genome" and r.threads == t), None)
        if a and b:
            ratio = b.rss / a.rss
            verdict = "flat" if ratio <= 1.5 else "grows with the genome"
            mem[st] = {"largest": a.rss, "genome": b.rss, "ratio": ratio}
            mem_rows.append([st, fmt_bytes(a.rss), fmt_bytes(b.rss), f"{ratio:.2f}", verdict])
    if mem_rows:
        print(f"\n### Peak RSS: {largest} alone vs the whole genome (flat: within 1.5x)\n")
        print(table(["stage", f"{largest} alone", "whole genome", "ratio", "verdict"], mem_rows))

    # feeding a GPU
    loader = None
    lrow = next((r for r in rows if r.stage == "loader" and r.scope == "genome"), None) or next(
        (r for r in rows if r.stage == "loader"), None
    )
    per_win = flops["train_flops_per_window"]
    print(
        f"\n### Feeding a GPU (preset `standard`: window {flops['interval']:,} + 2 x {flops['pad']:,} bases, "
        f"batch {flops['batch_size']})\n"
    )
    print(
        f"FLOPs per training window (forward + backward = 3 x forward; {flops['forward_flops_per_position']:,} "
        f"forward FLOPs per position, counted from the network's convs): {per_win / 1e9:.1f} GFLOP.\n"
    )
    need = {
        "H100 SXM, published dense bf16 (989 TFLOP/s)": H100_BF16 / per_win,
        "effective rate measured on an H200 (GPU.md, issue 23: 32.5 TFLOP/s)": H200_MEASURED / per_win,
    }
    grows = []
    if lrow:
        rates = {int(k): v for k, v in lrow.extra["rates"].items()}
        per_worker = max(v / k for k, v in rates.items() if k > 0) if any(k > 0 for k in rates) else rates[0]
        for w, r in sorted(rates.items()):
            grows.append([f"{w} workers", f"{r:.1f}"])
        print(table(["DataLoader", f"windows/s ({lrow.scope} dataset)"], grows))
        print()
        rows_g = [[k, f"{v:,.0f}", f"{math.ceil(v / per_worker):,}"] for k, v in need.items()]
        print(
            table(
                ["GPU rate", "windows/s one GPU consumes", "CPU workers needed (at the best per-worker rate)"], rows_g
            )
        )
        summary = "; ".join(f"{k}: {v:,.0f} windows/s -> {math.ceil(v / per_worker)} workers" for k, v in need.items())
        loader = {"rates": rates, "per_worker": per_worker, "need": need, "summary": summary}
        print(
            f"\n- per worker: {per_worker:.1f} windows/s (best of rate / workers over 1 and 2 workers); "
            "the windows are drawn as training draws them (sample_windows over the dataset's start table) and "
            "read cold or warm as the page cache has them."
        )

    if not args.quick or any(r.scope == "genome" for r in rows):
        text, notes, data = extrapolate(rows, genome_bases, loader)
        print(
            f"\n### Extrapolated: a {COHORT['samples']}-sample x {COHORT['depths']}-depth x "
            f"{COHORT['replicates']}-replicate hg38 cohort\n"
        )
        print(text)
        print()
        for n in notes:
            print(f"- {n}")
    else:
        data = {}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "fragments": args.fragments,
                    "quick": args.quick,
                    "scopes": {sc.name: {"chroms": sc.sizes, "n_clean": sc.n_clean} for sc in scopes},
                    "rows": [r.__dict__ for r in rows],
                    "memory": mem,
                    "flops": flops,
                    "loader": loader,
                    "cohort": data,
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
