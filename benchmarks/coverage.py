#!/usr/bin/env python
"""Coverage: ``atacdenoise coverage`` against deepTools ``bamCoverage --binSize 1`` on the same BAM, same threads.

Target (issue 9): at least 2x faster than bamCoverage.

Both tools read the same BAM with the same MAPQ and flag filters and write a
per-base bigWig: ``bamCoverage --binSize 1 --minMappingQuality 30
--samFlagExclude 3852 --Offset 1 -p THREADS`` (5' end of each read, the closest
deepTools gets to cut sites without the Tn5 shift) and ``atacdenoise coverage
--threads THREADS`` (Tn5-shifted cut sites smoothed to 201 bp, the workflow's
setting). Both are timed as whole commands (a fresh process each, start-up
included, wall time from the parent), with the same threads (``-p THREADS`` /
``--threads THREADS``), pinned to as many cores. bamCoverage writes its bigWig
through pyBigWig (libBigWig: zlib at its fixed default level 6, 10 zoom
levels); ours with the native writer (zlib level 1 as the workflow writes,
10 zoom levels). The headline row runs our command with the writer's level set
to 6 (``bbiwrite.DEFLATE_LEVEL``), the same library and level as the peer; the
workflow's level-1 command is its own row.

Inputs:

* the real demo BAM (``HSC_80M.chr1_chr2.bam``: 487,831 single-end cut-site reads over 20 Mb of hg19);
* synthetic paired-end BAMs over the first N bases of hg38 (``--genome-mb``; real
  chromosome names and order, the last chromosome cut to fit) at ``--density``
  fragments per kb: bamCoverage's time grows with the genome span at bin size 1,
  ours with the reads, so both axes grow together;
* ours alone on a whole-hg38-autosome BAM of ``--genome-fragments`` fragments
  (bamCoverage would take over an hour there: not run; the row shows our time and memory at genome scale;
  ``--genome-runs`` runs, default 1).

Default sizes (demo, 5 / 15 / 45 Mb, the 4 M-fragment genome row): roughly 6-9 min on 2 idle cores with
``--runs 3`` (bamCoverage ~0.9 s per Mb of genome span at bin size 1 dominates), plus writing the
synthetic BAMs once (~1-2 min; the 4 M-fragment one is shared with ``subsample.py``).

Usage: ``.venv/bin/python benchmarks/coverage.py [--quick] [--genome-mb 5 15 45] [--runs 3]``
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C

#: ours with the bigWig writer's deflate level set to libBigWig's (zlib 6) for the like-for-like row
LEVEL6 = "import sys; from atacdenoise.io import bbiwrite; bbiwrite.DEFLATE_LEVEL = 6; " + (
    "from atacdenoise.cli import main; sys.exit(main())"
)


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
    p.add_argument("--genome-runs", type=int, default=1, help="runs of the whole-genome row (ours only, no ratio)")
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

    peer_name = "bamCoverage --binSize 1 (zlib 6, libBigWig)"
    head_name = "atacdenoise coverage, writer at zlib 6 (like for like)"
    flow_name = "atacdenoise coverage (zlib 1, as the workflow runs it)"
    rows, data = [], {"inputs": []}
    scale = {"bases": [], "ours": [], "peer": []}
    with tempfile.TemporaryDirectory(prefix="bench-coverage-") as work:
        work = Path(work)
        for label, bam, sizes, reads, bases, run_peer in inputs:
            C.log(f"{label}: {bam}")
            args_ours = [
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
            ours_cmd = [atac, *args_ours]
            level6_cmd = [C.python_exe(), "-c", LEVEL6, *args_ours]
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
            runs = args.runs if run_peer else args.genome_runs
            res = {}
            if run_peer:
                # bamCoverage only writes chromosomes of the BAM header; give it the same file
                res[peer_name] = C.repeat(lambda cmd=peer_cmd: C.run_cmd(cmd, cores=t)[0], runs, "bamCoverage")
                res[head_name] = C.repeat(lambda cmd=level6_cmd: C.run_cmd(cmd, cores=t)[0], runs, "ours zlib 6")
            res[flow_name] = C.repeat(lambda cmd=ours_cmd: C.run_cmd(cmd, cores=t)[0], runs, "ours")
            peer = C.med(res[peer_name]) if run_peer else float("nan")
            for name, samples in res.items():
                wall = C.med(samples)
                rows.append(
                    [
                        label,
                        f"{bases / 1e6:g}",
                        f"{reads / 1e6:.2f}",
                        name,
                        f"{t} ({t} core{'s' if t > 1 else ''})",
                        f"{wall:.2f}",
                        f"{reads / wall / 1e6:.2f}",
                        (f"{peer / wall:.2f}x" if name != peer_name else "1.00x") if run_peer else "not run",
                        C.fmt_bytes(C.peak_rss(samples)),
                    ]
                )
            if run_peer and label.startswith("synthetic"):
                scale["bases"].append(bases)
                scale["ours"].append(C.med(res[head_name]))
                scale["peer"].append(peer)
            data["inputs"].append(
                {
                    "label": label,
                    "bam": str(bam),
                    "reads": reads,
                    "bases": bases,
                    "headline_ratio_whole_commands": peer / C.med(res[head_name]) if run_peer else None,
                    "workflow_ratio_whole_commands": peer / C.med(res[flow_name]) if run_peer else None,
                    "samples": {k: [vars(s) for s in v] for k, v in res.items()},
                }
            )
    libs = C.deflate_libraries()
    settings = [
        f"threads: {t} both sides (`bamCoverage -p {t}`, `atacdenoise coverage --threads {t}`); every command "
        f"pinned to {t} core(s).",
        f"bigWig deflate: bamCoverage through pyBigWig/libBigWig, zlib {libs['zlib']} level 6 (fixed, not "
        "settable); ours zlib level 6 in the headline row (like for like), level 1 in the workflow's row; "
        "10 zoom levels both.",
    ]
    notes = [
        f"Peer: deepTools bamCoverage {_deeptools_version()} "
        f"`--binSize 1 -p {t} --minMappingQuality 30 --samFlagExclude 3852 --Offset 1`; "
        f"ours: `atacdenoise coverage --threads {t}` "
        "(MAPQ >= 30, no duplicates/secondary/supplementary/QC-fail, proper pairs, "
        "Tn5 +4/-5, 201-bp boxes). Same BAM, same filters; the outputs differ by design (ours is smoothed).",
        "Ratio = bamCoverage's wall / this row's wall, whole commands with start-up (>= 2x is the target; the "
        "headline is the zlib-6 row). Peak RSS: summed over each tool's process tree (bamCoverage -p forks workers).",
        "The zlib-6 row runs the same command through `python -c` with `bbiwrite.DEFLATE_LEVEL = 6` set first.",
        C.scaling_note(
            scale["bases"], scale["ours"], "ours (zlib 6) on the synthetic BAMs (genome span and reads grow together)"
        ),
        C.scaling_note(scale["bases"], scale["peer"], "bamCoverage on the synthetic BAMs"),
    ]
    C.report(
        "Coverage: atacdenoise coverage vs deepTools bamCoverage --binSize 1",
        [
            "input",
            "genome Mb",
            "M reads",
            "tool",
            "threads (cores)",
            "wall s (median)",
            "M reads/s",
            "bamCoverage / ours (whole commands)",
            "peak RSS",
        ],
        rows,
        notes,
        args,
        data,
        settings,
    )


def _deeptools_version() -> str:
    try:
        import deeptools

        return deeptools.__version__ if hasattr(deeptools, "__version__") else "3.5.6"
    except ImportError:
        return "(version unknown)"


if __name__ == "__main__":
    main()
