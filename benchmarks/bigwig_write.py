#!/usr/bin/env python
"""Writing per-base float tracks to bigWig: ``atacdenoise.io.bbiwrite`` against pyBigWig (libBigWig) on the same track.

Why (issue 9): inference writes two per-base float tracks (denoised signal,
peak probability) of the whole genome; the GPU target (whole hg38-size genome
in 60 s, bigWig writing included) needs ~100 M bases/s per track, and
libBigWig writes ~9 M/s in one thread and builds zoom levels in memory.

Input: a per-base float32 track over the first N bases of hg38 (``--bases``;
real chromosome names, sizes and order), the kind a model writes: ``--kind
prob`` (default) a peak probability (logistic of smoothed noise: ~0 in the
background, near 1 in ~2 % of the genome; random mantissas), or ``--kind
signal`` a denoised coverage (smoothed synthetic cut-site coverage times
1 + small noise). The track is made once and cached as ``.npy``; each writer
runs in a fresh Python process that reads it from the page cache and writes it
in chunks of 800 kb (16 tiles of 50 kb, as inference does), timed from the
first chunk to the closed file (reading included); peak RSS is the whole
process's.

Rows (each a fresh process pinned to as many cores as it has threads; the
headline ratio is whole process against whole process, start-up included,
wall time from the parent; the in-process write time is a second column):

* pyBigWig (libBigWig: zlib at its fixed default level 6, one thread) with 10
  zoom levels (built at close) and without (what inference wrote above 100 Mb before);
* ours with 10 zoom levels on **1 thread, 1 core** (the headline, against
  single-threaded libBigWig): ISA-L level 1 (``fast``, as inference writes its
  tracks), zlib level 1 (reproducible bytes, as the workflow writes coverage and
  p-value tracks) and zlib level 6 (libBigWig's library and level: like for like);
* ours on ``--threads`` threads and cores (ISA-L and zlib, level 1), a second column.

Every ratio is printed beside its deflate library and level. Every output is read back
with pyBigWig and compared with the track (identical float32 values).

Usage: ``.venv/bin/python benchmarks/bigwig_write.py [--quick] [--bases 20M 80M 250M] [--kind prob|signal] [--runs 3]``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C

CHUNK = 800_000

WRITE = """
import json, sys, time
import numpy as np
sys.path.insert(0, {workflow!r})
fh = open({npy!r}, "rb")
np.lib.format.read_magic(fh)
np.lib.format.read_array_header_1_0(fh)
data_start = fh.tell()
sizes = {sizes!r}
writer, zooms, threads, out, fast, level = {writer!r}, {zooms!r}, {threads!r}, {out!r}, {fast!r}, {level!r}
t0 = time.perf_counter()
if writer == "ours":
    from atacdenoise.io import bbiwrite
    from atacdenoise.io.bbiwrite import BigWigFileWriter
    bbiwrite.DEFLATE_LEVEL = level  # read by bbiwrite.deflate at every call (1 is the writer's own)
    w = BigWigFileWriter(out, sizes, zoom_levels=zooms, threads=threads, fast=fast)
    DEFLATE = bbiwrite.DEFLATE if fast else "zlib"
    add, close = w.add, w.close
else:
    import pyBigWig
    from atacdenoise.io.bbiwrite import dense_segments
    DEFLATE = "zlib"  # libBigWig's compress(): zlib's default level, 6
    bw = pyBigWig.open(out, "w")
    bw.addHeader(list(sizes.items()), maxZooms=zooms)
    def add(chrom, start, values):
        for a, b in dense_segments(values):
            bw.addEntries(chrom, start + a, values=np.ascontiguousarray(values[a:b]), span=1, step=1)
    close = bw.close
t1 = time.perf_counter()
off = 0
for chrom, n in sizes.items():
    for s in range(0, n, {chunk}):
        e = min(n, s + {chunk})
        fh.seek(data_start + 4 * (off + s))
        add(chrom, s, np.fromfile(fh, dtype="<f4", count=e - s))
    off += n
close()
print(json.dumps({{"seconds": time.perf_counter() - t1, "deflate": DEFLATE}}))
"""


def make_track(path: Path, n: int, kind: str, seed: int = 3) -> Path:
    """Write the benchmark's per-base track (see the module docstring), cached."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(n,))
    step = 50_000_000
    for a in range(0, n, step):
        m = min(step, n - a)
        if kind == "signal":
            cov = C.synthetic_coverage(m, rng)
            out[a : a + m] = cov * (1 + 0.05 * rng.standard_normal(m).astype(np.float32))
        else:
            z = rng.standard_normal(m // 100 + 2)
            z = np.repeat(z, 100)[:m] + 0.3 * rng.standard_normal(m)  # ~100-bp correlated, per-base jitter
            out[a : a + m] = (1 / (1 + np.exp(-(3 * z - 7)))).astype(np.float32)
    out.flush()
    del out
    path.with_suffix(".tmp.npy").replace(path)
    return path


def check_output(path: Path, npy: Path, sizes: dict[str, int], step: int = 10_000_000) -> None:
    """Every base of ``path`` (read with pyBigWig, missing as 0) equals the track."""
    import pyBigWig

    track = np.load(npy, mmap_mode="r")
    off = 0
    with pyBigWig.open(str(path)) as bw:
        for chrom, n in sizes.items():
            for a in range(0, n, step):
                b = min(n, a + step)
                got = np.nan_to_num(np.asarray(bw.values(chrom, a, b, numpy=True), dtype=np.float32))
                if not np.array_equal(got, track[off + a : off + b]):
                    raise AssertionError(f"{path}: {chrom}:{a}-{b} differs from the input track")
            off += n


#: (writer, zoom levels, threads (= cores), ISA-L, deflate level); libBigWig's level is zlib's default, 6
Writer = tuple[str, int, int, bool, int]


def writers_for(threads: int) -> list[Writer]:
    """List the rows: the peer with and without zoom levels, ours on 1 core (3 deflate settings) and on ``threads``."""
    out: list[Writer] = [("pyBigWig", 10, 1, False, 6), ("pyBigWig", 0, 1, False, 6)]
    out += [("ours", 10, 1, True, 1), ("ours", 10, 1, False, 1), ("ours", 10, 1, False, 6)]
    if threads > 1:
        out += [("ours", 10, threads, True, 1), ("ours", 10, threads, False, 1)]
    return out


def deflate_label(writer: str, fast: bool, level: int, library: str) -> str:
    """'ISA-L 1', 'zlib 1', 'zlib 6 (libBigWig)'."""
    name = {"isal": "ISA-L", "zlib": "zlib"}.get(library, library)
    return f"{name} {level}" + (" (libBigWig)" if writer == "pyBigWig" else "")


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[1])
    p.add_argument("--bases", nargs="+", type=C.parse_size, default=None, help="track sizes (first N bases of hg38)")
    p.add_argument("--kind", choices=["prob", "signal"], default="prob")
    p.add_argument("--no-check", action="store_true", help="skip reading every output back")
    args = p.parse_args()
    bases = args.bases or ([5_000_000] if args.quick else [20_000_000, 80_000_000, 250_000_000])
    genome = C.read_sizes(C.chrom_sizes_file())
    work = args.cache / "bigwig_write"
    work.mkdir(parents=True, exist_ok=True)
    writers = writers_for(args.threads)
    peer_z, peer_0 = writers[0], writers[1]
    rows, data, times = [], {"samples": []}, {w: [] for w in writers}
    for n in bases:
        sizes = C.genome_prefix(genome, n)
        npy = make_track(work / f"{args.kind}-{n}.npy", n, args.kind)
        res = {}
        for w in writers:
            writer, zooms, threads, fast, level = w
            out = work / f"out-{writer}-{zooms}-{threads}-{fast}-{level}.bw"
            code = WRITE.format(
                workflow=str(C.REPO / "workflow"),
                npy=str(npy),
                sizes=sizes,
                writer=writer,
                zooms=zooms,
                threads=threads,
                out=str(out),
                chunk=CHUNK,
                fast=fast,
                level=level,
            )
            label = f"{C.fmt_num(n)} {writer} zooms={zooms} threads={threads}{' isal' if fast else ''} level {level}"
            samples = C.repeat(lambda code=code, t=threads: C.run_python(code, cores=t), args.runs, label)
            if not args.no_check:
                check_output(out, npy, sizes)
            res[w] = (samples, out.stat().st_size)
            out.unlink()
        for w in writers:
            writer, zooms, threads, fast, level = w
            samples, size = res[w]
            wall, secs = C.med(samples), C.med(samples, "inner")
            times[w].append(wall)
            is_peer = writer == "pyBigWig"
            lib = deflate_label(writer, fast, level, samples[0].extra["deflate"])
            rows.append(
                [
                    C.fmt_num(n),
                    writer,
                    lib,
                    zooms,
                    f"{threads} ({threads} core{'s' if threads > 1 else ''})",
                    f"{wall:.2f}",
                    f"{secs:.2f}",
                    f"{n / wall / 1e6:.1f}",
                    f"{C.med(res[peer_z][0]) / wall:.2f}x" if w != peer_z else "1.00x",
                    f"{C.med(res[peer_0][0]) / wall:.2f}x" if not is_peer else ("1.00x" if w == peer_0 else ""),
                    f"{C.med(res[peer_z][0], 'inner') / secs:.2f}x",
                    C.fmt_bytes(C.peak_rss(samples)),
                    f"{size / n:.2f}",
                ]
            )
            data["samples"].append(
                {
                    "bases": n,
                    "writer": writer,
                    "zooms": zooms,
                    "threads": threads,
                    "cores": threads,
                    "fast": fast,
                    "deflate": lib,
                    "level": level,
                    "wall": [s.wall for s in samples],
                    "inner": [s.inner for s in samples],
                    "rss": [s.rss for s in samples],
                    "file_bytes": size,
                    "ratio_vs_pybigwig_zooms_wall": C.med(res[peer_z][0]) / wall,
                    "ratio_vs_pybigwig_no_zooms_wall": C.med(res[peer_0][0]) / wall,
                }
            )
    libs = C.deflate_libraries()
    settings = [
        "threads: pyBigWig 1 (libBigWig has no threads); ours 1 (one deflating worker and the caller's thread) "
        f"for the headline and {args.threads} in their own rows; every writer process pinned to as many cores "
        "as its threads (1 thread: 1 core).",
        "deflate library and level: beside every row; libBigWig calls zlib's `compress()` (level 6, fixed); "
        "ours deflates at level 1 (`bbiwrite.DEFLATE_LEVEL`), with ISA-L for inference's tracks (`fast`) and "
        "zlib for every other bigWig of the workflow; the 'zlib 6' row sets the level to 6 for a like-for-like row. "
        f"zlib {libs['zlib']}, isal {libs.get('isal', 'not installed')}.",
    ]
    notes = [
        f"Track: {args.kind}; chunks of {CHUNK:,} bases; 'wall s' is the whole process from the parent (start-up "
        "and imports included, the headline); 'write s' the time inside the process from the first chunk to the "
        "closed file (imports excluded; reading the chunks from the page cache included).",
        "Ratios: 'vs pyBigWig, 10 zooms' = libBigWig's wall with 10 zoom levels / this row's wall (the same zoom "
        "request; libBigWig's first level is 16 bp on a per-base track, ours 128 bp); 'vs pyBigWig, no zooms' "
        "against libBigWig writing no zoom levels at all (less work than ours); 'in-process' the same with the "
        "write times, a second figure only.",
    ]
    for w, t in times.items():
        if len(t) >= 2:
            notes.append(
                C.scaling_note(bases, t, f"{w[0]} zooms={w[1]} threads={w[2]}{' isal' if w[3] else ''} level {w[4]}")
            )
    if not args.no_check:
        notes.append("Every output was read back with pyBigWig: identical float32 values at every base.")
    C.report(
        f"bigWig writing of a per-base float track ({args.kind})",
        [
            "bases",
            "writer",
            "deflate (library, level)",
            "zoom levels",
            "threads (cores)",
            "wall s",
            "write s (in-process)",
            "M bases/s (wall)",
            "vs pyBigWig, 10 zooms (whole process)",
            "vs pyBigWig, no zooms (whole process)",
            "vs pyBigWig, 10 zooms (in-process)",
            "peak RSS",
            "bytes/base",
        ],
        rows,
        notes,
        args,
        data,
        settings,
    )


if __name__ == "__main__":
    main()
