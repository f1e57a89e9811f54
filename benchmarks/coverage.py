#!/usr/bin/env python
"""Coverage: ``atacdenoise coverage`` against deepTools ``bamCoverage --binSize 1`` on the same BAM, same threads.

Target (issue 9): at least 2x faster than bamCoverage.

Both tools read the same BAM with the same MAPQ and flag filters and write a
per-base bigWig: ``bamCoverage --binSize 1 --minMappingQuality 30
--samFlagExclude 3852 --Offset 1 -p THREADS`` (5' end of each read, the closest
deepTools gets to cut sites without the Tn5 shift) and ``atacdenoise coverage
--threads THREADS`` (Tn5-shifted cut sites smoothed to 201 bp, the workflow's
setting). Both are timed as command lines, start-up included.

Inputs:

* the real demo BAM (``HSC_80M.chr1_chr2.bam``: 487,831 single-end cut-site reads over 20 Mb of hg19);
* synthetic paired-end BAMs over the first N bases of hg38 (``--genome-mb``; real
  chromosome names and order, the last chromosome cut to fit) at ``--density``
  fragments per kb: bamCoverage's time grows with the genome span at bin size 1,
  ours with the reads, so both axes grow together;
* ours alone on a whole-hg38-autosome BAM of ``--genome-fragments`` fragments
  (bamCoverage would take over an hour there: not run; the row shows our time and memory at genome scale).

Usage: ``.venv/bin/python benchmarks/coverage.py [--quick] [--genome-mb 5 15 45] [--runs 3]``
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--genome-mb",
        nargs="+",
        type=float,
        default=None,
        help="synthetic genome spans in Mb (default 5 15 45; --quick 5)",
    )
    p.add_argument("--density", type=float, default=5.0, help="fragments per kb of genome in the synthetic BAMs")
    p.add_argument(
        "--genome-fragments",
        type=C.parse_size,
        default=4_000_000,
        help="fragments of the whole-genome BAM (ours only; 0 skips it; shared with subsample.py's cache)",
    )
    p.add_argument("--no-demo", action="store_true", help="skip the real demo BAM")
    args = p.parse_args()
    spans = args.genome_mb or ([5] if args.quick else [5, 15, 45])
    if args.quick:
        args.genome_fragments = 0
    atac = C.tool("atacdenoise", "install the package: .venv/bin/pip install -e .")
    bamcov = C.tool("bamCoverage", "install deepTools: .venv/bin/pip install deeptools==3.5.6")
    hg38 = C.read_sizes(C.chrom_sizes_file("hg38.auto.sizes"))
    t = args.threads

    inputs = []  # (label, bam, sizes file, reads, bases, run peer)
    if not args.no_demo:
        demo = C.SHARED / "hsc" / "HSC_80M.chr1_chr2.bam"
        if not demo.exists():
            demo = C.REPO / "resources" / "demo" / "HSC_80M.chr1_chr2.bam"
        sizes = demo.parent / "hg19_first10mb.chr1_chr2.sizes"
        inputs.append(("demo HSC 80M (real, SE)", demo, sizes, 487_831, 20_000_000, True))
    for mb in spans:
        genome = C.genome_prefix(hg38, int(mb * 1e6))
        n = int(args.density * mb * 1000)
        bam = C.synthetic_pe_bam(args.cache / f"pe_hg38_{int(mb * 1e6)}bp_{n}.bam", genome, n)
        sizes = C.write_sizes(genome, args.cache / f"hg38_{int(mb * 1e6)}bp.sizes")
        inputs.append((f"synthetic PE, {mb:g} Mb", bam, sizes, 2 * n, int(mb * 1e6), True))
    if args.genome_fragments:
        n = args.genome_fragments
        bam = C.synthetic_pe_bam(args.cache / f"pe_hg38_{n}.bam", hg38, n)
        sizes = C.write_sizes(hg38, args.cache / "hg38.auto.sizes")
        inputs.append(
            (f"synthetic PE, hg38 autosomes ({n / 1e6:g} M fragments)", bam, sizes, 2 * n, sum(hg38.values()), False)
        )

    rows, data = [], {"inputs": []}
    scale = {"bases": [], "ours": [], "peer": []}
    with tempfile.TemporaryDirectory(prefix="bench-coverage-") as work:
        work = Path(work)
        for label, bam, sizes, reads, bases, run_peer in inputs:
            C.log(f"{label}: {bam}")
            ours_cmd = [
                atac,
                "coverage",
                "-q",
                "--input",
                str(bam),
                "--kind",
                "bam",
                "--sizes",
                str(sizes),
                "--threads",
                str(t),
                "--out",
                str(work / "ours.bw"),
            ]
            peer_cmd = [
                bamcov,
                "-b",
                str(bam),
                "-o",
                str(work / "peer.bw"),
                "--binSize",
                "1",
                "-p",
                str(t),
                "--minMappingQuality",
                "30",
                "--samFlagExclude",
                "3852",
                "--Offset",
                "1",
                "--verbose",
            ]
            res = {
                "atacdenoise coverage": C.repeat(lambda ours_cmd=ours_cmd: C.run_cmd(ours_cmd)[0], args.runs, "ours")
            }
            if run_peer:
                # bamCoverage only writes chromosomes of the BAM header; give it the same file
                res["bamCoverage --binSize 1"] = C.repeat(
                    lambda peer_cmd=peer_cmd: C.run_cmd(peer_cmd)[0], args.runs, "bamCoverage"
                )
            ours = C.med(res["atacdenoise coverage"])
            peer = C.med(res["bamCoverage --binSize 1"]) if run_peer else float("nan")
            for name, samples in res.items():
                wall = C.med(samples)
                rows.append(
                    [
                        label,
                        f"{bases / 1e6:g}",
                        f"{reads / 1e6:.2f}",
                        name,
                        f"{wall:.2f}",
                        f"{reads / wall / 1e6:.2f}",
                        f"{peer / wall:.2f}x" if run_peer else "not run",
                        C.fmt_bytes(C.peak_rss(samples)),
                    ]
                )
            if run_peer and label.startswith("synthetic"):
                scale["bases"].append(bases)
                scale["ours"].append(ours)
                scale["peer"].append(peer)
            data["inputs"].append(
                {
                    "label": label,
                    "bam": str(bam),
                    "reads": reads,
                    "bases": bases,
                    "samples": {k: [vars(s) for s in v] for k, v in res.items()},
                }
            )
    notes = [
        f"Peer: deepTools bamCoverage {_deeptools_version()} "
        f"`--binSize 1 -p {t} --minMappingQuality 30 --samFlagExclude 3852 --Offset 1`; "
        f"ours: `atacdenoise coverage --threads {t}` "
        "(MAPQ >= 30, no duplicates/secondary/supplementary/QC-fail, proper pairs, "
        "Tn5 +4/-5, 201-bp boxes). Same BAM, same filters; the outputs differ by design (ours is smoothed).",
        "Ratio = bamCoverage time / ours (>= 2x is the target). "
        "Peak RSS: summed over each tool's process tree (bamCoverage -p forks workers).",
        C.scaling_note(
            scale["bases"], scale["ours"], "ours on the synthetic BAMs (genome span and reads grow together)"
        ),
        C.scaling_note(scale["bases"], scale["peer"], "bamCoverage on the synthetic BAMs"),
    ]
    C.report(
        "Coverage: atacdenoise coverage vs deepTools bamCoverage --binSize 1",
        ["input", "genome Mb", "M reads", "tool", "wall s (median)", "M reads/s", "bamCoverage / ours", "peak RSS"],
        rows,
        notes,
        args,
        data,
    )


def _deeptools_version() -> str:
    try:
        import deeptools

        return deeptools.__version__ if hasattr(deeptools, "__version__") else "3.5.6"
    except ImportError:
        return "(version unknown)"


if __name__ == "__main__":
    main()
