#!/usr/bin/env python
"""The compact outputs' rounding and bins: the native pass (``compact_native.c``) against NumPy's, per chunk and whole.

``atacdenoise infer`` stores both tracks at the compact precision: every base rounded and binned
(``model/infer.py``: ``bin_track``, ``bin_probability``). Where a GPU computes the model, this and the bigWig
writers are the CPU's work per base, and they bound the run (issue 23: the card was busy 23 % of a whole-genome
run). Rows, both routes on the same values, the same threads:

* **the writers' side**: the writer's encoding of the compact files the command wrote (in chunks of a GPU batch,
  6.4 M bases) under the old and the new ``smallest``
  rule (``bbiwrite.SMALLEST_BOTH_FROM``), and the hand-off of chunks to a writer process (``TrackWriterProcess``'s
  raw pipe against its shared memory, and an ``mp.Queue``): GB/s, and CPU seconds per GB of both processes;
* **input**: infer's prefetch thread on GPU chunks of the synthetic input: the bigWig read until now (the bases
  between runs put back through a mask, NaN replaced over every base) against now, and the windows' tiling;
* **one chunk**: ``compact_chunk`` on 6.4 M bases (a GPU batch: 128 tiles of 50 kb) of real model output, one
  thread, best of ``--runs`` (ms per M bases). The values are the float32 outputs of ``atacdenoise infer
  --precision float32`` on the demo (``--results``: the demo model on the 5M sample's chr2), else of the
  near-free model below;
* **peak calls**: the chunks of that output streamed through ``PeakStream`` (infer's writer thread calls
  peaks this way), the last quiet run found by a cumulative sum over every base (until 2026-12-06) against
  from the positions of the bases not below the threshold; also on a background-only probability (no peaks,
  like the random-weights model of the H100 run);
* **whole command, near-free model**: ``atacdenoise infer`` on a synthetic coverage bigWig of ``--bases`` (default
  chr1's length) with a depth-normalised model of next to no arithmetic (as when a GPU runs the model): wall time
  of the whole process, and the rounding seconds it logs ("where the time went");
* **whole command, the demo model** (with ``--results``): the same on the demo's chr2, where the CPU computes
  the model (the rounding is then a small part of the run).

The NumPy route is ``ATACDENOISE_NATIVE_COMPACT=0``; the outputs of both routes are compared byte for byte.

Usage: ``.venv/bin/python benchmarks/rounding.py [--results results] [--quick] [--runs 3]``
"""

from __future__ import annotations

import filecmp
import re
import statistics
import sys
import time
from pathlib import Path

import common as C

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

#: bases of one chunk: a GPU batch of 128 tiles of 50 kb
CHUNK = 128 * 50_000
ROUTES = {"NumPy": {"ATACDENOISE_NATIVE_COMPACT": "0"}, "native": {"ATACDENOISE_NATIVE_COMPACT": "1"}}


def tiny_model(path: Path, genome_bp: int) -> Path:
    """Save a depth-normalised model of next to no arithmetic (light, 2 filters, 1 tap): its track is binned."""
    import torch

    from atacdenoise.model.dataset import DEFAULT_PREPROCESSING
    from atacdenoise.model.network import build_model, save_model

    torch.manual_seed(0)
    reference = 4.0 * genome_bp / 1000 * 201  # 4 cut sites per kb, each a 201-bp box: the input's own total
    save_model(
        path,
        build_model({"preset": "light", "filters": 2, "kernel_size": 1}),
        preprocessing=dict(DEFAULT_PREPROCESSING),
        window={"interval": 50_000, "pad": 5_000},
        input_transform={"kind": "depth", "reference": reference},
        threshold=0.5,
    )
    return path


def whole(label: str, cmd_for, runs: int, threads: int) -> dict:
    """Both routes of one command, alternating runs; their outputs must be the same bytes."""
    out: dict = {}
    for k in range(runs):
        for route, env in ROUTES.items():
            prefix = cmd_for.work / f"{route}"
            sample, text = C.run_cmd(cmd_for(prefix), env=env, capture=False, cores=threads, cwd=REPO)
            m = re.search(r"rounding ([\d.]+) s on (\d+) thread", text)
            r = out.setdefault(route, {"wall": [], "round_s": []})
            r["wall"].append(sample.wall)
            r["round_s"].append(float(m.group(1)) if m else float("nan"))
            C.log(f"  {label}, {route}, run {k + 1}/{runs}: {sample.wall:.2f} s, rounding {r['round_s'][-1]:.2f} s")
    for key in ("track.bw", "peakprob.bw", "peaks.narrowPeak"):
        a, b = (cmd_for.work / f"{route}.{key}" for route in ROUTES)
        if not filecmp.cmp(a, b, shallow=False):
            raise SystemExit(f"{label}: the two routes wrote different {key}")
    return out


class Command:
    """``infer`` of one model on one chromosome, at one precision, writing under ``work``."""

    def __init__(self, work: Path, model: Path, bw: Path, sizes: Path, chrom: str, threads: int):
        self.work, self.args = work, (model, bw, sizes, chrom)
        self.threads = threads
        work.mkdir(parents=True, exist_ok=True)

    def __call__(self, prefix: Path, precision: str = "compact") -> list:
        model, bw, sizes, chrom = self.args
        options = ("--chroms", chrom, "--threads", self.threads, "--precision", precision)
        return C.infer_argv(model, bw, sizes, prefix, *options)


def chunk_rates(values: Path, chrom: str, runs: int) -> dict[str, float]:
    """Ms per M bases of ``compact_chunk`` on one chunk of ``values``' float32 outputs, per route, one thread."""
    import numpy as np

    from atacdenoise.io.bigwig import read_bigwig
    from atacdenoise.model import compact_native
    from atacdenoise.model.infer import PROB_BIN_CUTS, compact_chunk

    track = read_bigwig(f"{values}.track.bw", chrom)[:CHUNK]
    prob = read_bigwig(f"{values}.peakprob.bw", chrom)[:CHUNK]
    kernels = compact_native.load()
    if kernels is None:
        raise SystemExit("the native compact rounding did not build: nothing to compare")
    cuts = (0.5648118, *PROB_BIN_CUTS)  # the demo model's threshold, and 0.5
    out, results = {}, {}
    for route, loader in (("NumPy", lambda: None), ("native", lambda: kernels)):
        compact_native.load = loader
        best = float("inf")
        for _ in range(max(runs, 3)):
            t0 = time.perf_counter()
            results[route] = compact_chunk(track, prob, 1_000_003, 4.9, cuts)
            best = min(best, time.perf_counter() - t0)
        out[route] = best / track.size * 1e9  # ns per base = ms per M bases
    for a, b in zip(results["NumPy"], results["native"]):
        if not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
            raise SystemExit("one chunk: the two routes differ")
    out["bases"] = track.size
    return out


def encode_rates(values: Path, chrom: str, runs: int) -> dict[str, float]:
    """Time the writer's encoding of ``values``' compact files, chunk by chunk (ms per M bases, one thread), per rule.

    ``both``: every step-like chunk encoded both ways and deflated twice (``SMALLEST_BOTH_FROM = 1``, the rule
    until this change); ``fixed-step below 64``: the rule now. Also the bytes each rule writes.
    """
    import numpy as np

    from atacdenoise.io import bbiwrite
    from atacdenoise.io.bigwig import read_bigwig

    chunks = [
        v[k : k + CHUNK]
        for key in ("track", "peakprob")
        for v in [read_bigwig(f"{values}.{key}.bw", chrom)]
        for k in range(0, v.size, CHUNK)
    ]
    bases = sum(c.size for c in chunks)
    out, default = {}, bbiwrite.SMALLEST_BOTH_FROM
    for rule, threshold in (("both", 1), ("fixed-step below 64", default)):
        bbiwrite.SMALLEST_BOTH_FROM = threshold
        best, size = float("inf"), 0
        for _ in range(max(runs, 2)):
            t0 = time.perf_counter()
            blocks = [bbiwrite.encode_chunk(0, 0, np.ascontiguousarray(c), 4096, True, True)[0] for c in chunks]
            best = min(best, time.perf_counter() - t0)
            size = sum(len(b) for blk in blocks for b in blk.payloads)
        out[rule] = best / bases * 1e9
        out[f"{rule} bytes"] = size
    bbiwrite.SMALLEST_BOTH_FROM = default
    out["bases"] = bases
    return out


def _windowed_cut(stream, prob):
    """PeakStream's last cut as it was until 2026-12-06: a cumulative sum over every base (the definition)."""
    import numpy as np

    below = prob < stream.threshold
    if below.size < stream.quiet:
        return 0
    c = np.concatenate(([0], np.cumsum(below, dtype=np.int64)))
    full = np.flatnonzero(c[stream.quiet :] - c[: -stream.quiet] == stream.quiet)
    return int(full[-1] + stream.quiet) if full.size else 0


def peak_rates(values: Path, chrom: str, threshold: float, runs: int) -> dict[str, float]:
    """Ms per M bases of streaming chunks through ``PeakStream`` (the writer thread's peak calls), one thread.

    On ``values``' float32 outputs (their probability at their model's threshold) and on a background-only
    probability of the same length (no peaks, as the random-weights model of the H100 run), with the cut found by
    a cumulative sum (until now) and from the bases not below the threshold (now); the peak tables must agree.
    """
    import numpy as np

    from atacdenoise.io.bigwig import read_bigwig
    from atacdenoise.peaks.threshold import PeakStream

    prob = read_bigwig(f"{values}.peakprob.bw", chrom)
    track = read_bigwig(f"{values}.track.bw", chrom)
    out: dict[str, float] = {"bases": prob.size, "threshold": threshold}
    for kind, p in (("model", prob), ("background", np.full_like(prob, 2e-4))):
        tables = {}
        for route in ("windowed", "edges"):
            best = float("inf")
            for _ in range(max(runs, 3)):
                stream = PeakStream(chrom, threshold)
                if route == "windowed":
                    stream._last_cut = lambda q, stream=stream: _windowed_cut(stream, q)
                t0 = time.perf_counter()
                for k in range(0, p.size, CHUNK):
                    stream.add(k, p[k : k + CHUNK], track[k : k + CHUNK])
                tables[route] = stream.finish()
                best = min(best, time.perf_counter() - t0)
            out[f"{kind} {route}"] = best / p.size * 1e9
        if not tables["windowed"].equals(tables["edges"]):
            raise SystemExit(f"peak calls ({kind}): the two cuts gave different peaks")
        out[f"{kind} peaks"] = len(tables["edges"])
    return out


def input_rates(bw_path: Path, chrom: str, runs: int) -> dict[str, float]:
    """Ms per M bases of infer's prefetch thread on GPU chunks: reading the input bigWig, tiling the windows.

    The read until now (the bases between runs put back through a mask, ``np.nan_to_num`` over every base)
    against now (those bases given the fill in the same pass, NaN looked for by one sum), and the tiling until now
    (each chunk copied into a zeroed buffer first) against now (windows straight from the values read, inside a
    chromosome); the values and windows must agree. One thread, best of ``runs``.
    """
    import numpy as np

    from atacdenoise.io import bbiread
    from atacdenoise.io.bigwig import open_bigwig
    from atacdenoise.model.infer import plan_chunks, read_range, read_values, tile_windows

    interval, pad = 50_000, 5_000
    paint = bbiread._paint_runs

    def until_now(bw, lo, hi):
        bbiread._paint_runs = lambda out, start, r, fill=np.nan, clean=None: paint(out, start, r, fill, None)
        try:
            return np.nan_to_num(bw.values(chrom, lo, hi, fill=0.0), copy=False)
        finally:
            bbiread._paint_runs = paint

    def tile_until_now(values, start, end, length, interval, pad, out):
        """tile_windows until 2026-12-06: every chunk copied into a zeroed buffer first."""
        n_tiles = -(-(end - start) // interval)
        lo, _ = read_range(start, end, length, pad)
        buf = np.zeros(n_tiles * interval + 2 * pad, dtype=np.float32)
        buf[lo - (start - pad) : lo - (start - pad) + values.size] = values
        out[:n_tiles] = np.lib.stride_tricks.sliding_window_view(buf, interval + 2 * pad)[::interval][:n_tiles]
        return out[:n_tiles]

    bw = open_bigwig(bw_path)
    length = bw.chroms(chrom)
    chunks = plan_chunks(length, interval, CHUNK // interval)
    windows = np.zeros((CHUNK // interval, interval + 2 * pad), np.float32)
    out: dict[str, float] = {"bases": length}
    sums = {}
    try:
        routes = (
            ("until now", until_now, tile_until_now),
            ("now", lambda bw, lo, hi: read_values(bw, chrom, lo, hi), tile_windows),
        )
        for route, read, tile in routes:
            best = best_tile = float("inf")
            for _ in range(max(runs, 2)):
                spent = tiled = 0.0
                total = 0.0
                for start, end in chunks:
                    lo, hi = read_range(start, end, length, pad)
                    t0 = time.perf_counter()
                    values = read(bw, lo, hi)
                    t1 = time.perf_counter()
                    tile(values, start, end, length, interval, pad, out=windows)
                    tiled += time.perf_counter() - t1
                    spent += t1 - t0
                    total += float(values.astype(np.float64).sum()) + float(windows.astype(np.float64).sum())
                best, best_tile = min(best, spent), min(best_tile, tiled)
            out[route] = best / length * 1e9
            out[f"{route} tile"] = best_tile / length * 1e9
            sums[route] = total
    finally:
        bw.close()
    if sums["until now"] != sums["now"]:
        raise SystemExit("input read: the two routes read different values")
    return out


def _drain_queue(chunks, done) -> None:
    """Child: take pickled chunks off an ``mp.Queue`` until None (the hand-off until 2026-12-05)."""
    from atacdenoise.cpus import cpu_seconds

    n, c0 = 0, None
    while (item := chunks.get()) is not None:
        c0 = cpu_seconds() if c0 is None else c0  # from the first chunk (the child is up)
        n += item[2].nbytes
    done.put((n, cpu_seconds() - c0))


def _drain_chunks(receiver, done) -> None:
    """Child: take chunks from a :class:`ChunkSender`'s receiver until None (``TrackWriterProcess``'s hand-off)."""
    from atacdenoise.cpus import cpu_seconds

    receiver.attach()
    n, c0 = 0, None
    while (item := receiver.recv()) is not None:
        c0 = cpu_seconds() if c0 is None else c0
        n += item[2].nbytes
    done.put((n, cpu_seconds() - c0))


#: the hand-off routes: an ``mp.Queue`` (until 2026-12-05), ``ChunkSender`` through its pipe (until 2026-12-06),
#: ``ChunkSender`` through shared memory (now, where the platform has it)
HANDOFFS = ("mp.Queue", "raw pipe", "shared memory")


def handoff_rates(bases: int, chunks: int) -> dict[str, float]:
    """GB/s and CPU seconds per GB of handing ``chunks`` chunks of ``bases`` float32 to a child that only takes them.

    ``mp.Queue``: pickled by its feeder thread; ``raw pipe``: :class:`~atacdenoise.io.trackwriter.ChunkSender`
    with ``ATACDENOISE_HANDOFF=pipe`` (a header, then the bytes received straight into an array); ``shared
    memory``: ``ChunkSender`` as ``TrackWriterProcess`` uses it (each chunk copied into 16-MB slots piece by piece,
    a header per piece; the child copies them out into one array). Timed from the first chunk to the child's count
    of what it got; CPU seconds of this process and of the child over the same span.
    """
    import multiprocessing as mp
    import os

    import numpy as np

    from atacdenoise.cpus import cpu_seconds
    from atacdenoise.io.trackwriter import HANDOFF_ENV, ChunkSender

    ctx = mp.get_context("spawn")
    values = np.random.default_rng(0).random(bases, dtype=np.float32)
    out: dict[str, float] = {}
    for route in HANDOFFS:
        done = ctx.Queue()
        if route == "mp.Queue":
            chunks_q = ctx.Queue(maxsize=4)
            proc = ctx.Process(target=_drain_queue, args=(chunks_q, done))
            proc.start()

            def send(item, chunks_q=chunks_q):
                chunks_q.put(item)

            close = chunks_q.close
        else:
            os.environ[HANDOFF_ENV] = "pipe" if route == "raw pipe" else "shared"
            sender = ChunkSender(ctx)
            os.environ.pop(HANDOFF_ENV)
            if sender.shared != (route == "shared memory"):
                raise SystemExit(f"hand-off: no {route} on this machine")
            proc = ctx.Process(target=_drain_chunks, args=(sender.receiver(), done))
            proc.start()
            sender.started()

            def send(item, sender=sender, proc=proc):
                if item is None:
                    sender.send(None)
                    return
                for piece in sender.pieces(*item, proc.is_alive):
                    sender.send(piece)

            close = sender.close
        send(("chrA", 0, values[:1000]))  # the child is up
        time.sleep(0.5)
        t0, c0 = time.perf_counter(), cpu_seconds()
        for k in range(chunks):
            send(("chrA", k, values))
        send(None)
        got, child_cpu = done.get()
        wall, parent_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        gb = (got - 4000) / 1e9
        out[route] = gb / wall
        out[f"{route} cpu s/GB"] = (parent_cpu + child_cpu) / gb
        proc.join()
        close()
    return out


def main() -> int:
    p = C.base_parser(__doc__)
    p.add_argument("--results", type=Path, default=None, help="the demo's results/ (its model and coverage)")
    p.add_argument("--bases", type=C.parse_size, default=None, help="synthetic chromosome length (default: chr1's)")
    args = p.parse_args()
    work = args.cache / "rounding"
    work.mkdir(parents=True, exist_ok=True)
    bases = args.bases or (2_000_000 if args.quick else 248_956_422)
    sizes = {"chrS": bases}
    bw = C.synthetic_coverage_genome_bigwig(work / f"input-{bases}.bw", sizes)["path"]
    sizes_file = C.write_sizes(sizes, work / f"synthetic-{bases}.sizes")
    tiny = Command(work / "tiny", tiny_model(work / "tiny.pt", bases), Path(bw), sizes_file, "chrS", args.threads)
    rows, data = [], {"bases": bases}
    data["tiny"] = whole("near-free model", tiny, args.runs, args.threads)
    demo = None
    if args.results:
        model, cov = args.results / "models/demo/model.pt", args.results / "coverage/HSC/given.rep1.bw"
        sizes_demo = REPO / "resources/demo/hg19_first10mb.chr1_chr2.sizes"
        demo = Command(work / "demo", model, cov, sizes_demo, "chr2", args.threads)
        data["demo"] = whole("demo model", demo, args.runs, args.threads)
    values = (demo or tiny).work / "float32"
    if not Path(f"{values}.peaks.narrowPeak").exists():
        C.run_cmd((demo or tiny)(values, "float32"), cwd=REPO)
    data["chunk"] = chunk_rates(values, "chr2" if demo else "chrS", args.runs)
    stored = (demo or tiny).work / "native"  # the compact files the real command wrote: the writer's input
    data["encode"] = encode_rates(stored, "chr2" if demo else "chrS", args.runs)
    data["handoff"] = handoff_rates(CHUNK, 4 if args.quick else 40)
    data["input"] = input_rates(Path(bw), "chrS", args.runs)
    from atacdenoise.model.network import load_model

    threshold = float(load_model((demo or tiny).args[0])[1]["threshold"])
    data["peaks"] = peak_rates(values, "chr2" if demo else "chrS", threshold, args.runs)
    chunk = data["chunk"]
    rows.append(
        [
            f"one chunk ({chunk['bases'] / 1e6:.1f} M bases, {'demo model' if demo else 'near-free model'}), 1 thread",
            f"{chunk['NumPy']:.1f} ms per M bases",
            f"{chunk['native']:.1f} ms per M bases",
            f"{chunk['NumPy'] / chunk['native']:.1f}x",
        ]
    )
    enc, both, now = data["encode"], "both", "fixed-step below 64"
    rows.append(
        [
            f"the writer's encoding of the stored compact values ({enc['bases'] / 1e6:.0f} M bases, both tracks, "
            "level 6), 1 thread: both ways vs fixed-step below 64-base runs",
            f"{enc[both]:.1f} ms per M bases ({enc[both + ' bytes'] / enc['bases']:.3f} B/base)",
            f"{enc[now]:.1f} ms per M bases ({enc[now + ' bytes'] / enc['bases']:.3f} B/base)",
            f"{enc[both] / enc[now]:.2f}x",
        ]
    )
    hand = data["handoff"]
    rows.append(
        [
            "hand-off of 6.4-M-base chunks to a writer process (the child only receives them): raw pipe vs shared "
            f"memory (an mp.Queue, pickled: {hand['mp.Queue']:.2f} GB/s, "
            f"{hand['mp.Queue cpu s/GB']:.2f} CPU s per GB)",
            f"{hand['raw pipe']:.2f} GB/s, {hand['raw pipe cpu s/GB']:.2f} CPU s per GB",
            f"{hand['shared memory']:.2f} GB/s, {hand['shared memory cpu s/GB']:.2f} CPU s per GB",
            f"{hand['shared memory'] / hand['raw pipe']:.2f}x",
        ]
    )
    inp = data["input"]
    rows.append(
        [
            f"input of GPU chunks ({inp['bases'] / 1e6:.0f} M bases, synthetic coverage), infer's prefetch thread, "
            "1 thread: the bigWig read + the windows' tiling",
            f"{inp['until now']:.2f} + {inp['until now tile']:.2f} ms per M bases",
            f"{inp['now']:.2f} + {inp['now tile']:.2f} ms per M bases",
            f"{(inp['until now'] + inp['until now tile']) / (inp['now'] + inp['now tile']):.1f}x",
        ]
    )
    pk = data["peaks"]
    for kind, label in (("model", "the model's probability"), ("background", "a background-only probability")):
        rows.append(
            [
                f"peak calls streamed by chunk (PeakStream, the writer thread), {label} ({pk[kind + ' peaks']} "
                f"peaks in {pk['bases'] / 1e6:.0f} M bases), 1 thread: the cut by cumulative sum vs from the edges",
                f"{pk[kind + ' windowed']:.1f} ms per M bases",
                f"{pk[kind + ' edges']:.1f} ms per M bases",
                f"{pk[kind + ' windowed'] / pk[kind + ' edges']:.1f}x",
            ]
        )
    for key, label in (
        ("tiny", f"whole `infer`, near-free model, {bases / 1e6:g} Mb"),
        ("demo", "whole `infer`, demo model, chr2 (10 Mb)"),
    ):
        if key not in data:
            continue
        d = data[key]
        walls = {r: statistics.median(d[r]["wall"]) for r in ROUTES}
        rounds = {r: statistics.median(d[r]["round_s"]) for r in ROUTES}
        rows.append(
            [
                label,
                f"{walls['NumPy']:.2f} s (rounding {rounds['NumPy']:.2f} s)",
                f"{walls['native']:.2f} s (rounding {rounds['native']:.2f} s)",
                f"{walls['NumPy'] / walls['native']:.2f}x",
            ]
        )
    C.report(
        "The compact outputs' CPU side: rounding, encoding, hand-off (same values, same threads)",
        [
            "what",
            "until now: NumPy rounding (ATACDENOISE_NATIVE_COMPACT=0); both encodings; raw pipe; masked read; "
            "cut by cumsum",
            "now: compact_native.c; fixed-step below 64-base runs; shared memory; one-pass read; cut from the edges",
            "speed-up",
        ],
        rows,
        [
            "Both routes write the same bytes (compared); whole commands alternate routes, medians of the runs.",
            "Rounding seconds: the command's own log, summed over its rounding threads (half the cores, <= 6).",
        ],
        args,
        data,
        settings=[f"infer --threads {args.threads}, pinned to as many cores; compact outputs (the default)"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
