#!/usr/bin/env python
"""Peak calls from probabilities: ``atacdenoise.peaks.threshold`` against ``macs3 bdgpeakcall -c 0.5 -l 200 -g 30``.

Both call peaks on the same track.

Target (issue 9): at least 10x faster, identical intervals.

Input: a synthetic per-base peak-probability track over the first N bases of
hg38 (``--bases``; real chromosome names and order): background runs of low
probability with isolated short excursions above 0.5, and peak regions
(100-1,500 bp, one per ~5 kb) whose values mostly lie above 0.5 with short dips
below it, so that the gap merging (``-g 30``) and the length filter (``-l 200``)
both matter. Values are multiples of 1/256 (exact in float32 and in decimal
text, so the bedGraph MACS3 reads holds exactly the values we threshold);
runs are ~25 bp on average. The same track is written as a bigWig (ours) and a
bedGraph (MACS3).

Rows (each a fresh process, wall time from the parent, start-up included):

* ``macs3 bdgpeakcall`` on the bedGraph (the peer; MACS3 reads bedGraph text
  only and runs on one thread), pinned to 1 core;
* bigWig -> bedGraph, the conversion a MACS3 user starting from our bigWig
  needs (the workflow's converter, ``peaks.macs3.write_bedgraph``), 1 core:
  timed apart, and added to the peer in its own ratio column;
* ``atacdenoise threshold --threads 1`` (the whole command), pinned to 1 core:
  **the headline**, same threads as MACS3;
* ``atacdenoise threshold --threads 2`` (the whole command, 2 cores; MACS3 has no
  threads to match): a second column;
* ours in-process (``threshold_bigwig`` + ``write_narrowpeak``, what the command
  runs, imports excluded), 1 thread, 1 core: a second figure;
* optionally the same with pyBigWig reading per base (the previous path) and
  ours on the in-memory array (``call_peaks`` + ``peak_table``, what inference
  does on each chunk it has just computed).

The track is read as a bigWig by ours and as a bedGraph by MACS3: the formats
differ (binary, compressed blocks vs text lines), each tool's own input.

Usage: ``.venv/bin/python benchmarks/callpeaks.py [--quick] [--bases 10M 50M 250M] [--runs 3] [--skip-pybigwig]``
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C

CUTOFF, MIN_LENGTH, MAX_GAP = 0.5, 200, 30


def probability_track(n: int, rng: np.random.Generator, mean_run: float = 25.0) -> np.ndarray:
    """float32[n] synthetic peak probability (multiples of 1/256), see the module docstring."""
    n_runs = int(n / mean_run * 1.2) + 16
    lengths = rng.geometric(1.0 / mean_run, n_runs)
    ends = np.cumsum(lengths)
    n_runs = int(np.searchsorted(ends, n)) + 1
    lengths, ends = lengths[:n_runs], ends[:n_runs]
    starts = ends - lengths
    # peak regions: one per ~5 kb, 100-1500 bp
    n_peaks = max(1, n // 5000)
    p_start = np.sort(rng.integers(0, n, n_peaks))
    p_end = p_start + rng.integers(100, 1500, n_peaks)
    mid = (starts + ends) // 2
    k = np.searchsorted(p_start, mid, side="right") - 1
    in_peak = (k >= 0) & (mid < p_end[np.maximum(k, 0)])
    u = rng.random(n_runs)
    value = np.where(in_peak, 0.45 + 0.55 * u, 0.6 * u**3)
    q = np.minimum(np.round(value * 256), 255) / 256
    return np.repeat(q.astype(np.float32), lengths)[:n]


def make_inputs(path_bw: Path, path_bdg: Path, sizes: dict[str, int], mean_run: float, seed: int = 5) -> None:
    """Write the same probability track as a bigWig (float32 per base) and a bedGraph (runs) for MACS3."""
    if path_bw.exists() and path_bdg.exists():
        return
    from atacdenoise.io.bigwig import BigWigWriter
    from atacdenoise.peaks.macs3 import write_bedgraph

    rng = np.random.default_rng(seed)
    tmp_bdg = path_bdg.with_suffix(".tmp")
    with BigWigWriter(path_bw, sizes) as w, open(tmp_bdg, "w") as fh:
        for chrom, n in sizes.items():
            track = probability_track(n, rng, mean_run)
            w.add(chrom, 0, track)
            write_bedgraph(fh, chrom, track)
    tmp_bdg.replace(path_bdg)


OURS_FROM_FILE = """
import json, time
t0 = time.perf_counter()
from atacdenoise.peaks.threshold import threshold_bigwig
from atacdenoise.io.intervals import write_narrowpeak
t1 = time.perf_counter()
df = threshold_bigwig({bw!r}, {cutoff}, None, None, {min_length}, {max_gap}, threads={threads})  # `threshold`'s work
a = time.perf_counter()
write_narrowpeak(df, {out!r})
write_s = time.perf_counter() - a
print(json.dumps({{"seconds": time.perf_counter() - t1, "import_s": t1 - t0, "read_call_s": a - t1,
                  "write_s": write_s, "peaks": len(df)}}))
"""

#: bigWig -> bedGraph, as the workflow writes MACS3's input (``peaks.bdgpeakcall``: per-base values of each
#: chromosome through ``macs3.write_bedgraph``); MACS3 reads bedGraph only, so a user starting from the bigWig pays it
TO_BEDGRAPH = """
import json, time
t0 = time.perf_counter()
from atacdenoise.io.bigwig import open_bigwig
from atacdenoise.peaks.macs3 import write_bedgraph
t1 = time.perf_counter()
bw = open_bigwig({bw!r}, threads=1)
lines = 0
with open({out!r}, "w") as fh:
    for chrom, n in bw.chroms().items():
        lines += write_bedgraph(fh, chrom, bw.values(chrom, fill=0.0))
bw.close()
print(json.dumps({{"seconds": time.perf_counter() - t1, "import_s": t1 - t0, "lines": lines}}))
"""

OURS_PYBIGWIG = """
import json, time
t0 = time.perf_counter()
import numpy as np, pandas as pd, pyBigWig
from atacdenoise.peaks.threshold import call_peaks, peak_table
from atacdenoise.io.intervals import write_narrowpeak
t1 = time.perf_counter()
bw = pyBigWig.open({bw!r})
tables, read_s, call_s = [], 0.0, 0.0
for chrom, n in bw.chroms().items():
    a = time.perf_counter()
    prob = bw.values(chrom, 0, n, numpy=True).astype(np.float32, copy=False)
    np.copyto(prob, 0, where=np.isnan(prob))  # bases without data read as 0
    b = time.perf_counter()
    s, e = call_peaks(prob, {cutoff}, {min_length}, {max_gap})
    tables.append(peak_table(chrom, s, e, prob, name_prefix=chrom + "_peak"))
    call_s += time.perf_counter() - b
    read_s += b - a
bw.close()
a = time.perf_counter()
df = pd.concat(tables, ignore_index=True)
write_narrowpeak(df, {out!r})
write_s = time.perf_counter() - a
print(json.dumps({{"seconds": time.perf_counter() - t1, "import_s": t1 - t0, "read_s": read_s, "call_s": call_s,
                  "write_s": write_s, "peaks": len(df)}}))
"""

OURS_IN_MEMORY = """
import json, time
import numpy as np
from atacdenoise.io.bigwig import open_bigwig
from atacdenoise.peaks.threshold import call_peaks, peak_table
bw = open_bigwig({bw!r})
arrays = {{c: bw.values(c, fill=0.0) for c, n in bw.chroms().items()}}
bw.close()
t0 = time.perf_counter()
n_peaks = 0
for chrom, prob in arrays.items():
    s, e = call_peaks(prob, {cutoff}, {min_length}, {max_gap})
    n_peaks += len(peak_table(chrom, s, e, prob, name_prefix=chrom + "_peak"))
print(json.dumps({{"seconds": time.perf_counter() - t0, "peaks": n_peaks}}))
"""


def read_intervals(path: Path) -> np.ndarray:
    import pandas as pd

    if path.stat().st_size == 0:
        return np.zeros((0, 3), dtype=object)
    df = pd.read_csv(path, sep="\t", header=None, comment="t", usecols=[0, 1, 2], dtype={0: str})
    return df.to_numpy()


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--bases",
        nargs="+",
        type=C.parse_size,
        default=None,
        help="sizes of tracks with ~25-bp runs (default 10M 50M 250M; --quick 2M 10M)",
    )
    p.add_argument("--skip-pybigwig", action="store_true", help="leave out the row that reads the bigWig with pyBigWig")
    p.add_argument("--skip-in-memory", action="store_true", help="leave out the row that calls on in-memory arrays")
    p.add_argument(
        "--dense-bases",
        nargs="*",
        type=C.parse_size,
        default=None,
        help="sizes of tracks with a new value at nearly every base, like a model's output "
        "(default 2M 10M; --quick none)",
    )
    args = p.parse_args()
    sizes_list = args.bases or ([2_000_000, 10_000_000] if args.quick else [10_000_000, 50_000_000, 250_000_000])
    dense = args.dense_bases if args.dense_bases is not None else ([] if args.quick else [2_000_000, 10_000_000])
    inputs = [(n, 25.0) for n in sizes_list] + [(n, 1.0) for n in dense]
    macs3 = C.tool("macs3", "install MACS3: .venv/bin/pip install 'macs3>=3.0.4,<3.1'")
    atac = C.tool("atacdenoise", "install the package: .venv/bin/pip install -e .")
    hg38 = C.read_sizes(C.chrom_sizes_file("hg38.auto.sizes"))
    multi = max(2, args.threads)  # the second column: ours on more threads (MACS3 has none to match)
    if len(os.sched_getaffinity(0)) < multi:
        C.log(f"  note: {len(os.sched_getaffinity(0))} core(s) here; the {multi}-thread row runs on them")

    rows, data = [], {"sizes": []}
    scale = {"n": [], "ours": [], "peer": []}
    peer_name = "macs3 bdgpeakcall (bedGraph in), 1 thread"
    conv_name = "bigWig -> bedGraph for MACS3 (workflow's converter), 1 thread"
    head_name = "atacdenoise threshold --threads 1 (whole command)"
    multi_name = f"atacdenoise threshold --threads {multi} (whole command)"
    inproc_name = "ours in-process (threshold_bigwig + write), 1 thread"
    pybw_name = "ours, bigWig read by pyBigWig, per-base caller (previous path), 1 thread"
    mem_name = "ours on in-memory arrays (call_peaks + peak_table), 1 thread"
    with tempfile.TemporaryDirectory(prefix="bench-callpeaks-") as work:
        work = Path(work)
        for n, mean_run in inputs:
            genome = C.genome_prefix(hg38, n)
            tag = f"{n}" if mean_run == 25.0 else f"{n}_run{mean_run:g}"
            bw, bdg = args.cache / f"prob_{tag}.bw", args.cache / f"prob_{tag}.bdg"
            make_inputs(bw, bdg, genome, mean_run)
            with open(bdg) as fh:
                lines = sum(1 for _ in fh)
            C.log(f"{n:,} bases ({lines:,} bedGraph lines): {bw}")
            peer_out, our_out = work / "macs3.narrowPeak", work / "ours.narrowPeak"
            peer_cmd = [
                macs3,
                "bdgpeakcall",
                "-i",
                str(bdg),
                "-c",
                str(CUTOFF),
                "-l",
                str(MIN_LENGTH),
                "-g",
                str(MAX_GAP),
                "--no-trackline",
                "--outdir",
                str(work),
                "-o",
                peer_out.name,
            ]

            def ours_cmd(threads: int, bw=bw, our_out=our_out) -> list[str]:
                return [
                    atac,
                    "threshold",
                    "-q",
                    "--prob",
                    str(bw),
                    "--threshold",
                    str(CUTOFF),
                    "--min-length",
                    str(MIN_LENGTH),
                    "--max-gap",
                    str(MAX_GAP),
                    "--threads",
                    str(threads),
                    "--out",
                    str(our_out),
                ]

            kw = dict(bw=str(bw), cutoff=CUTOFF, min_length=MIN_LENGTH, max_gap=MAX_GAP, out=str(our_out), threads=1)
            conv_code = TO_BEDGRAPH.format(bw=str(bw), out=str(work / "converted.bdg"))
            res = {
                peer_name: C.repeat(lambda cmd=peer_cmd: C.run_cmd(cmd, cores=1)[0], args.runs, "macs3"),
                conv_name: C.repeat(lambda code=conv_code: C.run_python(code, cores=1), args.runs, "to bedGraph"),
            }
            (work / "converted.bdg").unlink(missing_ok=True)
            a = read_intervals(peer_out)
            identical = {}
            res[head_name] = C.repeat(lambda: C.run_cmd(ours_cmd(1), cores=1)[0], args.runs, "threshold 1 thread")
            identical[head_name] = np.array_equal(read_intervals(our_out), a)
            res[multi_name] = C.repeat(
                lambda: C.run_cmd(ours_cmd(multi), cores=multi)[0], args.runs, f"threshold {multi} threads"
            )
            identical[multi_name] = np.array_equal(read_intervals(our_out), a)
            res[inproc_name] = C.repeat(
                lambda kw=kw: C.run_python(OURS_FROM_FILE.format(**kw), cores=1), args.runs, "ours in-process"
            )
            identical[inproc_name] = np.array_equal(read_intervals(our_out), a)
            if not args.skip_pybigwig:
                res[pybw_name] = C.repeat(
                    lambda kw=kw: C.run_python(OURS_PYBIGWIG.format(**kw), cores=1), args.runs, "ours (pyBigWig)"
                )
                identical[pybw_name] = np.array_equal(read_intervals(our_out), a)
            if not args.skip_in_memory:
                res[mem_name] = C.repeat(
                    lambda kw=kw: C.run_python(OURS_IN_MEMORY.format(**kw), cores=1), args.runs, "ours in memory"
                )
            peer, conv = C.med(res[peer_name]), C.med(res[conv_name])
            for name, samples in res.items():
                wall, inner = C.med(samples), C.med(samples, "inner")
                ours = name not in (peer_name, conv_name)
                threads = multi if name == multi_name else 1
                rows.append(
                    [
                        f"{n / 1e6:g}",
                        f"{lines / 1e6:.2f}",
                        "~25 bp" if mean_run > 1 else "per base",
                        name,
                        f"{threads} ({threads} core{'s' if threads > 1 else ''})",
                        f"{wall:.2f}",
                        f"{inner:.2f}" if inner == inner else "",
                        f"{n / wall / 1e6:.1f}",
                        f"{peer / wall:.2f}x" if ours else ("1.00x" if name == peer_name else ""),
                        f"{(peer + conv) / wall:.2f}x" if ours else "",
                        f"{peer / inner:.1f}x" if ours and inner == inner else "",
                        C.fmt_bytes(C.peak_rss(samples)),
                        ("yes" if identical[name] else "NO") if name in identical else "",
                    ]
                )
            if mean_run > 1:
                scale["n"].append(n)
                scale["ours"].append(C.med(res[head_name]))
                scale["peer"].append(peer)
            inproc = res[inproc_name]
            parts = {k: float(np.median([s.extra[k] for s in inproc])) for k in ("read_call_s", "write_s", "import_s")}
            data["sizes"].append(
                {
                    "bases": n,
                    "mean_run": mean_run,
                    "bedgraph_lines": lines,
                    "peaks_macs3": int(a.shape[0]),
                    "identical": identical,
                    "headline_ratio_whole_commands": peer / C.med(res[head_name]),
                    "ratio_with_conversion": (peer + conv) / C.med(res[head_name]),
                    "ratio_multi_threads": peer / C.med(res[multi_name]),
                    "ratio_in_process": peer / C.med(inproc, "inner"),
                    "ours_parts_s": parts,
                    "samples": {k: [vars(s) for s in v] for k, v in res.items()},
                }
            )
            C.log(
                f"  peaks: macs3 {a.shape[0]:,}, identical {identical}; whole commands 1 thread: "
                f"{peer / C.med(res[head_name]):.2f}x; ours in-process split: "
                + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items())
            )
    version = _macs3_version(macs3)
    settings = [
        f"threads: MACS3 {version} `bdgpeakcall` 1 (it has no threads option); ours `--threads 1` for the headline, "
        f"`--threads {multi}` in its own row; every process pinned to as many cores as it has threads.",
        "inputs: the same track, as each tool reads it: ours a bigWig (binary, deflate-compressed blocks, "
        f"inflated by {_inflate_library()}; written once, not timed), MACS3 a bedGraph (text, its only input "
        "format; the conversion is its own row). Nothing is compressed on output (narrowPeak text both sides).",
    ]
    notes = [
        f"Peer: MACS3 {version} `bdgpeakcall -c {CUTOFF} -l {MIN_LENGTH} -g {MAX_GAP}` "
        "on a bedGraph of the track; ours: `atacdenoise threshold --threshold "
        f"{CUTOFF} --min-length {MIN_LENGTH} --max-gap {MAX_GAP}` on the bigWig (narrowPeak with summits and scores).",
        "Ratios: 'vs macs3 (whole commands)' = macs3 wall / this row's wall, each a fresh process with start-up "
        "(the headline: the `--threads 1` row); '+ bedGraph conversion' adds the time to write MACS3's bedGraph "
        "from the bigWig (its own row) to MACS3's; 'vs macs3 (ours in-process)' divides MACS3's wall by our "
        "in-process time (imports excluded), a second figure only.",
        "identical = the same (chrom, start, end) intervals, in the same order, as MACS3's narrowPeak.",
        "Tracks: '~25 bp' = runs of equal value ~25 bp long on average (a smooth track); "
        "'per base' = a new value at nearly every "
        "base, as a model's peak probability is (one bedGraph line per base for MACS3).",
        "Ours reads with the native reader (`atacdenoise.io.bbiread`), keeps the runs (or bases) at or above the "
        "threshold as it decodes (`runs_at_least`), and calls them without painting a track base by base "
        "(`call_peaks_runs` + `peak_table_runs`); its split (read and call / write) is in the JSON output.",
        C.scaling_note(scale["n"], scale["ours"], "atacdenoise threshold --threads 1 (smooth tracks)"),
        C.scaling_note(scale["n"], scale["peer"], "macs3 bdgpeakcall (smooth tracks)"),
    ]
    C.report(
        "Peak calls from probabilities: atacdenoise threshold vs macs3 bdgpeakcall",
        [
            "bases (M)",
            "bedGraph lines (M)",
            "values",
            "tool",
            "threads (cores)",
            "wall s (median)",
            "in-process s",
            "M bases/s (wall)",
            "vs macs3 (whole commands)",
            "vs macs3 + bedGraph conversion",
            "vs macs3 (ours in-process)",
            "peak RSS",
            "identical",
        ],
        rows,
        notes,
        args,
        data,
        settings,
    )


def _inflate_library() -> str:
    """Name the library the native bigWig reader inflates with (ISA-L when installed, else zlib)."""
    from atacdenoise.io import bbiread

    return "ISA-L (isal_zlib)" if bbiread._inflate_mod.__name__.startswith("isal") else "zlib"


def _macs3_version(macs3: str) -> str:
    import subprocess

    out = subprocess.run([macs3, "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).strip().split()[-1]


if __name__ == "__main__":
    main()
