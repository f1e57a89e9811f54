#!/usr/bin/env python
"""Subsample: ``atacdenoise subsample`` against Debian ``samtools view --subsample`` on the same BAM and fraction.

Issue 9 set a target of 0.9x samtools' throughput and the identical read set
for the same seed semantics (``samtools view --subsample F --subsample-seed S``
vs our ``--fraction F --seed S``); issue 21 asked for whole commands doing the
same job on both sides (rows below); issue 16 replaced the native record scan that met it
by samtools through pysam (see benchmarks/README.md for why), so this script
now shows what that costs.

Inputs: synthetic paired-end BAMs over the real hg38 autosome sizes with
``--fragments`` read pairs each (written once with pysam, cached). Every row is
a whole command (a fresh process, start-up included, wall time from the
parent), pinned to ``--threads`` cores, and compared with the peer that does the
same job:

* to a target depth, from scratch (**the headline**): ``atacdenoise subsample
  --fragments N`` (counts the input, subsamples, indexes, counts the output)
  against ``samtools view -c`` (usable pairs: ``-f 67 -F 3852 -q 30``, the
  count a samtools user needs to turn N into a fraction) + ``samtools view -b
  --subsample F`` + ``samtools index`` in one shell, the fraction computed
  from the count;
* the workflow's way: ``atacdenoise count`` once per input, then ``atacdenoise
  subsample --fragments N --counts`` per depth and replicate; the sum of the
  two commands against the same peer, and each command against its own peer
  (``samtools view -c``; ``view --subsample`` + ``index`` with the fraction known);
* a given fraction: ``atacdenoise subsample --fraction`` (it still counts the
  input and the output, for its sidecar) against ``view --subsample`` + ``index``;
* ``subsample_bam()`` in-process (the two htslib steps alone), a second figure.

Ours is samtools itself (pysam's htslib, ``view --subsample``), so the read set
is the same by construction. Both sides write BGZF at htslib's default level
(6; neither gives a level) and run ``-@ threads-1`` helper threads; the
deflate library differs (Debian's samtools uses libdeflate, pysam's wheel zlib)
and is printed with the table.
Needs Debian samtools on PATH: ``apt-get install -y samtools``.

Usage: ``.venv/bin/python benchmarks/subsample.py [--quick] [--fragments 500k 1.5M 4M] [--runs 3]``
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C

FRACTION = 0.1
SEED = 42


def read_digest(samtools: str, bam: Path) -> str:
    """md5 of the BAM's records as SAM text (headers excluded): equal digests = identical read sets and records."""
    out = subprocess.run(
        f"{samtools} view {bam} | md5sum", shell=True, check=True, capture_output=True, text=True
    ).stdout
    return out.split()[0]


#: the usable fragments of a paired-end BAM as `atacdenoise count` counts them (`io.bam.usable_filter_args`):
#: paired, proper pair, first read; none of unmapped, mate unmapped, secondary, QC-fail, duplicate, supplementary
USABLE_PE = "-f 67 -F 3852 -q 30"
#: BGZF level of both sides: htslib's default (`samtools view -b` and pysam's `view -b` give none)
BGZF_LEVEL = "6 (htslib default, both sides)"


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--fragments",
        nargs="+",
        type=C.parse_size,
        default=None,
        help="read pairs per synthetic BAM (default 500k 1.5M 4M; --quick 100k 300k)",
    )
    p.add_argument("--fraction", type=float, default=FRACTION)
    p.add_argument("--seed", type=int, default=SEED)
    args = p.parse_args()
    sizes_list = args.fragments or ([100_000, 300_000] if args.quick else [500_000, 1_500_000, 4_000_000])
    samtools = C.tool("samtools", "install Debian's samtools: apt-get install -y samtools")
    version = (
        subprocess.run([samtools, "--version"], capture_output=True).stdout.decode(errors="replace").splitlines()[0]
    )
    atac = C.tool("atacdenoise", "install the package: .venv/bin/pip install -e .")
    genome = C.read_sizes(C.chrom_sizes_file("hg38.auto.sizes"))
    sizes_file = C.write_sizes(genome, args.cache / "hg38.auto.sizes")
    t = args.threads
    if not 0 < args.fraction < 1:
        sys.exit("--fraction must be in (0, 1)")
    libs = C.deflate_libraries()

    # the jobs: (peer row, [our rows]); every row a whole command
    peer_depth = f"samtools view -c ({USABLE_PE}) + view --subsample + index (to a target depth)"
    peer_frac = "samtools view --subsample + index (fraction known)"
    peer_count = f"samtools view -c ({USABLE_PE})"
    ours_depth = "atacdenoise subsample --fragments N (to a target depth, counts included)"
    ours_workflow = "atacdenoise count + subsample --fragments N --counts (the workflow's two commands, summed)"
    ours_counted = "atacdenoise subsample --fragments N --counts (per depth, input counted before)"
    ours_count = "atacdenoise count (once per input)"
    ours_frac = "atacdenoise subsample --fraction (counts input and output too)"
    ours_inproc = "subsample_bam() in-process (view --subsample + index)"
    peer_of = {
        ours_depth: peer_depth,
        ours_workflow: peer_depth,
        ours_counted: peer_frac,
        ours_count: peer_count,
        ours_frac: peer_frac,
        ours_inproc: peer_frac,
    }
    rows, data, times = [], {"sizes": []}, {"samtools": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="bench-subsample-") as work:
        work = Path(work)
        for n in sizes_list:
            bam = C.synthetic_pe_bam(args.cache / f"pe_hg38_{n}.bam", genome, n)
            reads = 2 * n
            target = round(n * args.fraction * 0.8)
            C.log(f"{n:,} fragments ({reads:,} reads): {bam}")
            peer_out, our_out = work / "samtools.bam", work / "ours.bam"
            helpers = f"-@ {t - 1}"
            view = f"{samtools} view -b {helpers} --subsample-seed {args.seed} -o {peer_out}"
            index = f"{samtools} index {helpers} {peer_out}"
            count = f"{samtools} view -c {helpers} {USABLE_PE} {bam}"
            peer_depth_cmd = (
                f'n=$({count}) && f=$(awk -v t={target} -v n="$n" \'BEGIN {{ printf "%.9f", t / n }}\') && '
                f'{view} --subsample "$f" {bam} && {index}'
            )
            peer_frac_cmd = f"{view} --subsample {args.fraction} {bam} && {index}"
            common = ["--input", str(bam), "--sizes", str(sizes_file), "--threads", str(t)]
            subsample = [atac, "subsample", "-q", *common, "--seed", str(args.seed), "--out", str(our_out)]
            frac_cmd = [*subsample, "--fraction", str(args.fraction)]
            frag_cmd = [*subsample, "--fragments", str(target)]
            counts_file = work / "usable.json"
            count_cmd = [atac, "count", "-q", *common, "--out", str(counts_file)]
            C.run_cmd(count_cmd, cores=t)  # made once per input, as the workflow does (and timed below)
            counted_cmd = [*frag_cmd, "--counts", str(counts_file)]
            inproc = f"""
                import json, time
                from atacdenoise.reads.subsample import subsample_bam
                t0 = time.perf_counter()
                subsample_bam({str(bam)!r}, {str(work / "inproc.bam")!r}, {args.fraction!r}, {args.seed}, threads={t})
                print(json.dumps({{"seconds": time.perf_counter() - t0}}))
            """
            configs = {
                peer_depth: (partial(C.run_cmd, peer_depth_cmd, shell=True, cores=t), "samtools count+view+index"),
                peer_frac: (partial(C.run_cmd, peer_frac_cmd, shell=True, cores=t), "samtools view+index"),
                peer_count: (partial(C.run_cmd, count, shell=True, cores=t), "samtools view -c"),
                ours_depth: (partial(C.run_cmd, frag_cmd, cores=t), "ours --fragments"),
                ours_count: (partial(C.run_cmd, count_cmd, cores=t), "ours count"),
                ours_counted: (partial(C.run_cmd, counted_cmd, cores=t), "ours --fragments --counts"),
                ours_frac: (partial(C.run_cmd, frac_cmd, cores=t), "ours --fraction"),
            }
            res = {name: C.repeat(lambda f=fn: f()[0], args.runs, label) for name, (fn, label) in configs.items()}
            res[ours_inproc] = C.repeat(partial(C.run_python, inproc, cores=t), args.runs, "ours in-process")
            # identical read set: the same fraction and seed through the CLI vs samtools --subsample
            C.run_cmd(peer_frac_cmd, shell=True)
            C.run_cmd(frac_cmd)
            same = read_digest(samtools, peer_out) == read_digest(samtools, our_out)
            kept = int(subprocess.run([samtools, "view", "-c", str(peer_out)], capture_output=True, text=True).stdout)
            walls = {name: C.med(samples) for name, samples in res.items()}
            walls[ours_workflow] = walls[ours_count] + walls[ours_counted]
            order = [peer_depth, ours_depth, ours_workflow, peer_frac, ours_counted, ours_frac, ours_inproc]
            order += [peer_count, ours_count]
            for name in order:
                samples = res.get(name)
                wall = walls[name]
                inner = C.med(samples, "inner") if samples else float("nan")
                is_peer = name not in peer_of
                rows.append(
                    [
                        f"{n / 1e6:g} M",
                        name,
                        f"{t} (-@ {t - 1})",
                        f"{wall:.2f}",
                        f"{inner:.2f}" if inner == inner else "",
                        f"{reads / wall / 1e6:.2f}",
                        "(peer)" if is_peer else f"{walls[peer_of[name]] / wall:.2f}x",
                        "" if is_peer else (f"{walls[peer_of[name]] / inner:.2f}x" if inner == inner else ""),
                        C.fmt_bytes(C.peak_rss(samples)) if samples else "",
                        ("yes" if same else "NO") if "fraction" in name else "",
                    ]
                )
            times["samtools"].append(walls[peer_depth])
            times["ours"].append(walls[ours_depth])
            data["sizes"].append(
                {
                    "fragments": n,
                    "target": target,
                    "kept_reads": kept,
                    "identical": same,
                    "headline_ratio_whole_commands": walls[peer_depth] / walls[ours_depth],
                    "workflow_ratio_whole_commands": walls[peer_depth] / walls[ours_workflow],
                    "fraction_ratio_whole_commands": walls[peer_frac] / walls[ours_frac],
                    "walls": walls,
                    "samples": {k: [vars(s) for s in v] for k, v in res.items()},
                }
            )
            C.log(f"  headline (to a target depth, whole commands): {walls[peer_depth] / walls[ours_depth]:.2f}x")
    pysam_version = __import__("pysam").__version__
    settings = [
        f"threads: {t} both sides (`samtools ... -@ {t - 1}` and `atacdenoise ... --threads {t}`, which runs "
        f"pysam's samtools with `-@ {t - 1}`); every command pinned to {t} core(s).",
        f"BGZF level: {BGZF_LEVEL}.",
        f"deflate library: peer {version} with htslib on {libs.get('samtools_htslib_deflate', '?')}; ours pysam "
        f"{pysam_version}'s htslib on {libs.get('pysam_htslib_deflate', '?')} (zlib {libs['zlib']}).",
    ]
    notes = [
        f"Peer: {version} (Debian), `samtools view -b -@ {t - 1} --subsample F --subsample-seed {args.seed}` then "
        f"`samtools index`; to a target depth it first counts the usable pairs (`samtools view -c {USABLE_PE}`) and "
        "sets F = target / count (awk), all in one `sh -c`. Ours keeps the same fraction with the same seed "
        "(pysam's samtools `view --subsample/--subsample-seed`, then its `index`).",
        "Input: synthetic proper-pair BAMs over the hg38 autosome sizes (pysam-written, 50-bp reads, "
        "10 % MAPQ < 30, 5 % duplicates).",
        "Throughput = input reads / wall second; 'vs peer (whole commands)' = the peer's wall / this row's wall, "
        "the peer being the row named in the tool column's job (to a target depth: the counting peer; a known "
        "fraction: view + index; counting: view -c); >= 0.9x was the issue-9 target. 'in-process' ratios divide "
        "the peer's wall by our time inside the process (imports excluded), a second figure only.",
        f"N = {args.fraction} x 0.8 of the input's pairs (always satisfiable). Our count runs one `samtools view -c` "
        "pass per kind of fragment (proper pairs; single-end reads), the peer's one (it knows its input is "
        "paired-end); ours also counts the output for its sidecar.",
        "The workflow row is the sum of the medians of `atacdenoise count` and `subsample --counts` (two whole "
        "commands); the workflow counts once per input for all its depths and replicates.",
        "identical = the kept records (SAM text, header excluded) have the same md5 as samtools' for the same seed "
        "and fraction.",
        C.scaling_note([2 * n for n in sizes_list], times["samtools"], "samtools to a target depth"),
        C.scaling_note([2 * n for n in sizes_list], times["ours"], "atacdenoise subsample --fragments"),
    ]
    C.report(
        "Subsample: atacdenoise subsample vs samtools view --subsample",
        [
            "fragments",
            "tool",
            "threads",
            "wall s (median)",
            "in-process s",
            "M reads/s",
            "vs peer (whole commands)",
            "vs peer (ours in-process)",
            "peak RSS",
            "identical reads",
        ],
        rows,
        notes,
        args,
        data,
        settings,
    )


if __name__ == "__main__":
    main()
