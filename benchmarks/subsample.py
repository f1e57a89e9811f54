#!/usr/bin/env python
"""Subsample: ``atacdenoise subsample`` against Debian ``samtools view -s`` on the same BAM and fraction.

Issue 9 set a target of 0.9x samtools' throughput and the identical read set
for the same seed semantics (``samtools view -s SEED.FRAC`` vs our ``--seed
SEED --fraction 0.FRAC``); issue 16 replaced the native record scan that met it
by samtools through pysam (see benchmarks/README.md for why), so this script
now shows what that costs.

Inputs: synthetic paired-end BAMs over the real hg38 autosome sizes with
``--fragments`` read pairs each (written once with pysam, cached). Rows:

* ``samtools view -s`` + ``samtools index``: the peer, same outputs as ours (BAM + .bai);
* ``atacdenoise subsample --fraction`` (CLI, start-up and its depth accounting included);
* ``atacdenoise subsample --fragments`` (the target in fragments: the input is counted first);
* ``atacdenoise subsample --fragments --counts`` (what the workflow runs: the input counted once beforehand);
* ``atacdenoise count`` (CLI: the workflow's one count per input, a ``samtools view -c`` pass per kind);
* ``subsample_bam()`` in-process (the sampling itself: pysam's samtools ``view --subsample``, then the index).

Ours is samtools itself (pysam's htslib, ``view --subsample``), so the read set
is the same by construction; the difference is the compression library
(Debian's samtools uses libdeflate, pysam's wheel zlib), the Python start-up and
the counting passes.

Both tools get ``--threads`` threads in all (samtools ``-@ threads-1``).
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
    seed_frac = f"{args.seed}{str(args.fraction)[1:]}"  # 42 and 0.1 -> "42.1"
    if not (0 < args.fraction < 1) or float(seed_frac) != args.seed + args.fraction:
        sys.exit("--fraction must be in (0, 1) and print as 0.xxx so that samtools -s SEED.FRAC can express it")

    rows, data, times = [], {"sizes": []}, {"samtools": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="bench-subsample-") as work:
        work = Path(work)
        for n in sizes_list:
            bam = C.synthetic_pe_bam(args.cache / f"pe_hg38_{n}.bam", genome, n)
            reads = 2 * n
            C.log(f"{n:,} fragments ({reads:,} reads): {bam}")
            peer_out, our_out = work / "samtools.bam", work / "ours.bam"
            peer_view = f"{samtools} view -b -@ {t - 1} -s {seed_frac} -o {peer_out} {bam}"
            peer_cmd = f"{peer_view} && {samtools} index -@ {t - 1} {peer_out}"
            common = ["--input", str(bam), "--sizes", str(sizes_file), "--threads", str(t)]
            subsample = [atac, "subsample", "-q", *common, "--seed", str(args.seed), "--out", str(our_out)]
            frac_cmd = [*subsample, "--fraction", str(args.fraction)]
            frag_cmd = [*subsample, "--fragments", str(round(n * args.fraction * 0.8))]
            counts_file = work / "usable.json"
            count_cmd = [atac, "count", "-q", *common, "--out", str(counts_file)]
            C.run_cmd(count_cmd)  # made once per input, as the workflow does (and timed below)
            counted_cmd = [*frag_cmd, "--counts", str(counts_file)]
            inproc = f"""
                import json, time
                from atacdenoise.reads.subsample import subsample_bam
                t0 = time.perf_counter()
                subsample_bam({str(bam)!r}, {str(work / "inproc.bam")!r}, {args.fraction!r}, {args.seed}, threads={t})
                print(json.dumps({{"seconds": time.perf_counter() - t0}}))
            """
            configs = {
                "samtools view -s + index": (partial(C.run_cmd, peer_cmd, shell=True), "samtools view+index"),
                "samtools view -s (no index)": (partial(C.run_cmd, peer_view, shell=True), "samtools view"),
                "atacdenoise subsample --fraction (CLI)": (partial(C.run_cmd, frac_cmd), "ours --fraction"),
                "atacdenoise subsample --fragments (CLI)": (partial(C.run_cmd, frag_cmd), "ours --fragments"),
                "atacdenoise subsample --fragments --counts (CLI, input counted once)": (
                    partial(C.run_cmd, counted_cmd),
                    "ours --fragments --counts",
                ),
                "atacdenoise count (CLI, once per input)": (partial(C.run_cmd, count_cmd), "ours count"),
            }
            res = {name: C.repeat(lambda f=fn: f()[0], args.runs, label) for name, (fn, label) in configs.items()}
            res["subsample_bam() in-process"] = C.repeat(partial(C.run_python, inproc), args.runs, "ours in-process")
            # identical read set: the same fraction and seed through the CLI vs samtools -s SEED.FRAC
            C.run_cmd(peer_cmd, shell=True)
            C.run_cmd(frac_cmd)
            same = read_digest(samtools, peer_out) == read_digest(samtools, our_out)
            kept = int(subprocess.run([samtools, "view", "-c", str(peer_out)], capture_output=True, text=True).stdout)
            base = C.med(res["samtools view -s + index"])
            for name, samples in res.items():
                wall = C.med(samples)
                inner = C.med(samples, "inner")
                rows.append(
                    [
                        f"{n / 1e6:g} M",
                        name,
                        f"{wall:.2f}" + (f" ({inner:.2f} in-process)" if inner == inner else ""),
                        f"{reads / wall / 1e6:.2f}",
                        f"{base / wall:.2f}x",
                        C.fmt_bytes(C.peak_rss(samples)),
                        ("yes" if same else "NO") if "fraction" in name else "",
                    ]
                )
            times["samtools"].append(base)
            times["ours"].append(C.med(res["atacdenoise subsample --fraction (CLI)"]))
            data["sizes"].append(
                {
                    "fragments": n,
                    "kept_reads": kept,
                    "identical": same,
                    "samples": {k: [vars(s) for s in v] for k, v in res.items()},
                }
            )
    pysam_version = __import__("pysam").__version__
    notes = [
        f"Peer: {version} (Debian, libdeflate), `samtools view -b -@ {t - 1} -s {seed_frac}` then `samtools index`; "
        f"ours keeps fraction {args.fraction} with `--seed {args.seed}`: pysam {pysam_version}'s samtools "
        "`view --subsample/--subsample-seed` (zlib), then its `index`.",
        "Input: synthetic proper-pair BAMs over the hg38 autosome sizes (pysam-written, 50-bp reads, "
        "10 % MAPQ < 30, 5 % duplicates).",
        "Throughput = input reads / wall second; ratio = samtools (view + index) time / this row's time "
        "(>= 0.9x was the issue-9 target).",
        "`--fragments` asks for 80 % of the expected kept pairs (so it is always satisfiable).",
        "`--counts`: the input's usable fragments counted beforehand by `atacdenoise count` (timed in its own row), "
        "as the workflow does once per input for all its depths and replicates.",
        "identical = the kept records (SAM text, header excluded) have the same md5 as samtools' for the same seed "
        "and fraction.",
        C.scaling_note([2 * n for n in sizes_list], times["samtools"], "samtools"),
        C.scaling_note([2 * n for n in sizes_list], times["ours"], "atacdenoise subsample --fraction"),
    ]
    C.report(
        "Subsample: atacdenoise subsample vs samtools view -s",
        ["fragments", "tool", "wall s (median)", "M reads/s", "vs samtools", "peak RSS", "identical reads"],
        rows,
        notes,
        args,
        data,
    )


if __name__ == "__main__":
    main()
