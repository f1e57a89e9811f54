"""bigWig files written natively: blocks compressed on a thread pool, zoom levels streamed to disk.

Why not libBigWig (pyBigWig) for the per-base tracks of inference: it
compresses every block with zlib at the default level in the calling thread
(~9 M bases/s on one core), and builds zoom levels at close by re-reading all
data into memory (~14 bytes a base, some 40 GB for hg38), so whole-genome
tracks had to be written without zoom levels. Here:

* each chunk is encoded (fixed-step or bedGraph items), deflated at level 1
  (per-base floats barely compress, so higher levels cost time for ~5 % of
  size; zlib, or with ``fast`` ISA-L's 4-10x faster ``isal_zlib``, whose
  bytes are not reproducible; with ``smallest``, rounded model outputs
  written once and kept, libdeflate at :data:`SMALL_LEVEL`, where repeats
  make the deeper search pay) and summarised for the first zoom level by a
  worker thread; those calls release the GIL, so ``threads`` workers use
  ``threads`` cores;
* the caller's thread writes the results strictly in order, so with zlib the
  file is the same bytes for any number of threads;
* zoom records are built incrementally from each chunk's first-level summary
  (every level is a multiple of the first), compressed, and spilled to
  anonymous temporary files (nothing left behind if the process is killed),
  then copied in at close: memory stays bounded whatever the genome size.

The layout follows the bigWig format, version 4 (Kent et al., Bioinformatics
2010): 64-byte header, zoom headers, total summary, chromosome B+ tree, data
(uint64 block count, then zlib blocks of a 24-byte section header and items),
the data's R-tree, then per zoom level its data (uint32 block count, blocks of
32-byte records) and R-tree, and the magic number again at the end.
"""

from __future__ import annotations

import collections
import os
import struct
import tempfile
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from atacdenoise.io.intervals import intervals_from_mask, run_lengths

try:  # ISA-L deflate: zlib-format streams, 4-10x faster than zlib level 1 at the same size
    from isal import isal_zlib as _deflate_mod

    DEFLATE = "isal"
except ImportError:  # pragma: no cover - isal is a dependency; zlib keeps the writer working without it
    _deflate_mod = zlib
    DEFLATE = "zlib"

try:  # libdeflate: zlib-format streams, the same bytes every run, ~3x faster than zlib at level 6
    import deflate as _libdeflate
except ImportError:  # pragma: no cover - a dependency; without it compact outputs use zlib at the same level
    _libdeflate = None

BIGWIG_MAGIC = 0x888FFC26
CHROM_TREE_MAGIC = 0x78CA8C91
RTREE_MAGIC = 0x2468ACE0
HEADER_SIZE = 64
ZOOM_HEADER_SIZE = 24
SUMMARY_SIZE = 40
#: largest uncompressed block, as libBigWig; fixed-step blocks hold (32768 - 24) / 4 values
BUF_SIZE = 32768
SECTION_HEADER = struct.Struct("<IIIIIBBH")
DENSE_PER_BLOCK = (BUF_SIZE - SECTION_HEADER.size) // 4
RUNS_PER_BLOCK = (BUF_SIZE - SECTION_HEADER.size) // 12
ZOOM_PER_BLOCK = BUF_SIZE // 32
#: children per R-tree / B+ tree node (as the UCSC tools)
FANOUT = 256
#: reduction of the first zoom level (bases) and the factor between levels. 128 bp: a browser view of
#: >= 100 kb reads zoom records; narrower views read the raw blocks (fast). A zoom record is 32 bytes: at
#: 32 bp that is 1 byte a base before compression (a quarter of the data itself), at 128 bp a quarter byte.
FIRST_ZOOM = 128
ZOOM_FACTOR = 4
#: in a dense chunk, runs of zeros at least this long are left out (shorter ones are written)
DENSE_SKIP_ZEROS = 1024
DEFLATE_LEVEL = 1
#: with ``smallest``, step-like chunks whose runs average fewer bases than this are written as fixed-step values
#: without trying bedGraph items: on every compact chunk of the demo model's outputs (mean runs of 7-56 bases)
#: those deflated to 0.49-0.63 of the items, and on regular runs the items win only from ~128 bases
#: (``benchmarks/README.md``, "The CPU side of compact outputs"); trying both deflated every such chunk twice
SMALLEST_BOTH_FROM = 64
#: deflate level of rounded model outputs (``smallest``): their runs of repeated values reward the lazy match
#: search that starts at level 4; level 6 made compact tracks 15-20 % smaller than level 1 (0.32 instead of
#: 0.40 bytes a base for the peak probability on the demo, 9 bits, ``benchmarks/README.md``) at ~2x the write time
SMALL_LEVEL = 6

#: zoom record while it is being built (sums in float64) and on disk
_REC = np.dtype(
    [
        ("chrom", "<u4"),
        ("start", "<u4"),
        ("end", "<u4"),
        ("count", "<u4"),
        ("min", "<f4"),
        ("max", "<f4"),
        ("sum", "<f8"),
        ("sumsq", "<f8"),
    ]
)
_DISK_REC = np.dtype(
    [
        ("chrom", "<u4"),
        ("start", "<u4"),
        ("end", "<u4"),
        ("count", "<u4"),
        ("min", "<f4"),
        ("max", "<f4"),
        ("sum", "<f4"),
        ("sumsq", "<f4"),
    ]
)
_RUN_ITEM = np.dtype([("start", "<u4"), ("end", "<u4"), ("value", "<f4")])
_LEAF_ITEM = np.dtype([("c0", "<u4"), ("s0", "<u4"), ("c1", "<u4"), ("e1", "<u4"), ("offset", "<u8"), ("size", "<u8")])
_NODE_ITEM = np.dtype([("c0", "<u4"), ("s0", "<u4"), ("c1", "<u4"), ("e1", "<u4"), ("offset", "<u8")])


def deflate(data: bytes, fast: bool = False, small: bool = False) -> bytes:
    """zlib-format stream of ``data`` (every compressor here releases the GIL).

    ``small`` (the writer's ``smallest``: rounded model outputs): libdeflate at :data:`SMALL_LEVEL`, or
    zlib at that level without it; the same bytes every run. ``fast``: ISA-L, 4-10x faster than zlib at
    the same level and size, but its streams are not reproducible byte for byte (the same input gave
    different, equally valid streams from run to run, 1-5 blocks in 3,000); the values read back are
    always the same. Otherwise zlib at :data:`DEFLATE_LEVEL`: the same bytes every run.
    """
    if small:
        if _libdeflate is not None:
            return _libdeflate.zlib_compress(data, SMALL_LEVEL)
        return zlib.compress(data, SMALL_LEVEL)
    if fast and DEFLATE == "isal":
        return _deflate_mod.compress(data, DEFLATE_LEVEL)
    return zlib.compress(data, DEFLATE_LEVEL)


@dataclass
class _Blocks:
    """Compressed blocks of one chunk, in order: payloads and the genomic start and end of each."""

    payloads: list[bytes] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)


# --- pure encoders (run on worker threads) -------------------------------------------------------------------------


def dense_segments(values: np.ndarray, skip: int = DENSE_SKIP_ZEROS) -> list[tuple[int, int]]:
    """Return the (a, b) ranges of ``values`` to write as fixed-step data.

    They are the non-zero stretches, split only at >= ``skip`` zeros.
    """
    starts, ends = intervals_from_mask(values != 0)
    if not starts.size:
        return []
    opens = np.concatenate(([True], starts[1:] - ends[:-1] >= skip))
    closes = np.concatenate((opens[1:], [True]))
    return list(zip(starts[opens].tolist(), ends[closes].tolist()))


def zoom_from_dense(chrom_id: int, pos: int, values: np.ndarray, reduction: int) -> np.ndarray:
    """Zoom records (one per ``reduction``-base bin) of per-base ``values``, all written, from ``pos`` on."""
    return zoom_from_mask(chrom_id, pos, values, np.ones(values.size, dtype=bool), reduction)


def zoom_from_segments(
    chrom_id: int, start: int, values: np.ndarray, segments: list[tuple[int, int]], reduction: int
) -> np.ndarray:
    """Zoom records of the ``[a, b)`` ranges of ``values`` (a chunk at ``start``) that are written."""
    written = np.zeros(values.size, dtype=bool)
    for a, b in segments:
        written[a:b] = True
    return zoom_from_mask(chrom_id, start, values, written, reduction)


def zoom_from_mask(chrom_id: int, start: int, values: np.ndarray, written: np.ndarray, reduction: int) -> np.ndarray:
    """Zoom records of the ``written`` bases of a chunk at ``start``: count, min, max, sum, sum of squares per bin.

    Bases not written must be 0 (the writer leaves out only runs of zeros), so
    sums need no mask. The chunk is padded to whole bins and reduced as rows of
    a reshaped view (contiguous, SIMD-friendly, no integer division per base);
    only the few bins partly written are reduced again under the mask for
    their min, max and extent. Bins without a written base give no record;
    start and end are the first and last written base of the bin.
    """
    head = start % reduction
    nbins = -(-(head + values.size) // reduction)
    shape = (nbins, reduction)
    v = np.zeros(nbins * reduction, dtype=np.float32)
    v[head : head + values.size] = values
    mask = np.zeros(nbins * reduction, dtype=bool)
    mask[head : head + values.size] = written
    m2, v2 = mask.reshape(shape), v.reshape(shape)
    count = m2.sum(axis=1)
    base = start - head + np.arange(nbins, dtype=np.int64) * reduction
    starts, ends = base.copy(), base + reduction
    mins, maxs = v2.min(axis=1), v2.max(axis=1)
    partial = np.flatnonzero((count > 0) & (count < reduction))
    if partial.size:
        pm, pv = m2[partial], v2[partial]
        mins[partial] = np.where(pm, pv, np.inf).min(axis=1)
        maxs[partial] = np.where(pm, pv, -np.inf).max(axis=1)
        starts[partial] += pm.argmax(axis=1)
        ends[partial] = base[partial] + reduction - pm[:, ::-1].argmax(axis=1)
    keep = np.flatnonzero(count)
    rec = np.empty(keep.size, dtype=_REC)
    rec["chrom"] = chrom_id
    rec["start"], rec["end"], rec["count"] = starts[keep], ends[keep], count[keep]
    rec["min"], rec["max"] = mins[keep], maxs[keep]
    rec["sum"] = v2.sum(axis=1, dtype=np.float64)[keep]
    rec["sumsq"] = np.einsum("ij,ij->i", v2, v2, dtype=np.float64)[keep]
    return rec


def zoom_from_runs(
    chrom_id: int, starts: np.ndarray, ends: np.ndarray, values: np.ndarray, reduction: int
) -> np.ndarray:
    """Zoom records of constant-value runs ``[starts, ends)``: runs are cut at bin edges, then summed per bin."""
    if not starts.size:
        return np.empty(0, dtype=_REC)
    first_bin = starts // reduction
    nbins = (ends - 1) // reduction - first_bin + 1
    which = np.repeat(np.arange(starts.size), nbins)
    k = np.arange(which.size) - np.repeat(np.cumsum(nbins) - nbins, nbins)
    bins = first_bin[which] + k
    s = np.maximum(starts[which], bins * reduction)
    e = np.minimum(ends[which], (bins + 1) * reduction)
    v = values[which]
    pieces = np.empty(which.size, dtype=_REC)
    pieces["chrom"] = chrom_id
    pieces["start"], pieces["end"], pieces["count"] = s, e, e - s
    pieces["min"] = pieces["max"] = v
    v64 = v.astype(np.float64)
    pieces["sum"] = v64 * (e - s)
    pieces["sumsq"] = v64 * v64 * (e - s)
    return reduce_records(pieces, reduction)


def reduce_records(rec: np.ndarray, reduction: int) -> np.ndarray:
    """Merge zoom records (sorted along the genome) that fall in the same ``reduction``-base bin of a chromosome."""
    if rec.size <= 1:
        return rec.copy()
    bins = rec["start"].astype(np.int64) // reduction
    new = np.flatnonzero((bins[1:] != bins[:-1]) | (rec["chrom"][1:] != rec["chrom"][:-1])) + 1
    idx = np.concatenate(([0], new)).astype(np.intp)
    out = np.empty(idx.size, dtype=_REC)
    out["chrom"] = rec["chrom"][idx]
    out["start"] = rec["start"][idx]
    out["end"] = np.maximum.reduceat(rec["end"], idx)
    out["count"] = np.add.reduceat(rec["count"], idx)
    out["min"] = np.minimum.reduceat(rec["min"], idx)
    out["max"] = np.maximum.reduceat(rec["max"], idx)
    out["sum"] = np.add.reduceat(rec["sum"], idx)
    out["sumsq"] = np.add.reduceat(rec["sumsq"], idx)
    return out


def _merge_two(a: np.void, b: np.void) -> tuple:
    """One zoom record of two in the same bin (``a`` first)."""
    return (
        a["chrom"],
        a["start"],
        max(a["end"], b["end"]),
        a["count"] + b["count"],
        min(a["min"], b["min"]),
        max(a["max"], b["max"]),
        a["sum"] + b["sum"],
        a["sumsq"] + b["sumsq"],
    )


def encode_runs(
    chrom_id: int, start: int, values: np.ndarray, reduction: int, fast: bool = False, small: bool = False
) -> tuple[_Blocks, np.ndarray]:
    """Blocks and first-level zoom records of ``values`` as bedGraph items of constant runs, zero runs left out."""
    blocks = _Blocks()
    s, e, v = run_lengths(values)
    keep = v != 0
    s, e, v = s[keep] + start, e[keep] + start, v[keep]
    items = np.empty(s.size, dtype=_RUN_ITEM)
    items["start"], items["end"], items["value"] = s, e, v
    for a in range(0, items.size, RUNS_PER_BLOCK):
        part = items[a : a + RUNS_PER_BLOCK]
        b0, b1 = int(part["start"][0]), int(part["end"][-1])
        head = SECTION_HEADER.pack(chrom_id, b0, b1, 0, 0, 1, 0, part.size)
        blocks.payloads.append(deflate(head + part.tobytes(), fast, small))
        blocks.starts.append(b0)
        blocks.ends.append(b1)
    return blocks, zoom_from_runs(chrom_id, s, e, v, reduction)


def encode_dense(
    chrom_id: int, start: int, values: np.ndarray, reduction: int, fast: bool = False, small: bool = False
) -> tuple[_Blocks, np.ndarray]:
    """Blocks and first-level zoom records of ``values`` as fixed-step items, long zero runs left out."""
    blocks = _Blocks()
    segments = dense_segments(values)
    for a, b in segments:
        for c in range(a, b, DENSE_PER_BLOCK):
            d = min(b, c + DENSE_PER_BLOCK)
            head = SECTION_HEADER.pack(chrom_id, start + c, start + d, 1, 1, 3, 0, d - c)
            blocks.payloads.append(deflate(head + values[c:d].tobytes(), fast, small))
            blocks.starts.append(start + c)
            blocks.ends.append(start + d)
    if not segments:
        return blocks, np.empty(0, dtype=_REC)
    return blocks, zoom_from_segments(chrom_id, start, values, segments, reduction)


def encode_chunk(
    chrom_id: int, start: int, values: np.ndarray, reduction: int, fast: bool = False, smallest: bool = False
) -> tuple[_Blocks, np.ndarray]:
    """Blocks and first-level zoom records of per-base ``values`` at ``start`` (zeros left out, see the writer).

    Step-like values (at most a quarter as many runs as bases) become bedGraph items, others fixed-step
    items. ``smallest`` (rounded model outputs, every block deflated at :data:`SMALL_LEVEL`): runs of a few
    bases deflate better as fixed-step values, equal neighbours being repeats, so a step-like chunk whose runs
    average fewer than :data:`SMALLEST_BOTH_FROM` bases is written so; one with longer runs is encoded both
    ways and the smaller kept.
    """
    n = values.size
    runs = np.count_nonzero(values[1:] != values[:-1]) + 1 if n else 0
    if runs * 4 > n or (smallest and runs * SMALLEST_BOTH_FROM > n):
        return encode_dense(chrom_id, start, values, reduction, fast, smallest)
    step = encode_runs(chrom_id, start, values, reduction, fast, smallest)
    if not smallest:
        return step
    dense = encode_dense(chrom_id, start, values, reduction, fast, smallest)
    return dense if sum(map(len, dense[0].payloads)) < sum(map(len, step[0].payloads)) else step


def _deflate_zoom(rec: np.ndarray, fast: bool = False, small: bool = False) -> bytes:
    disk = np.empty(rec.size, dtype=_DISK_REC)
    for name in _DISK_REC.names:
        disk[name] = rec[name]
    return deflate(disk.tobytes(), fast, small)


# --- index trees ---------------------------------------------------------------------------------------------------


def rtree_bytes(leaves: np.ndarray, offset: int, end_of_data: int, items_per_slot: int) -> bytes:
    """Encode an R-tree over blocks (``_LEAF_ITEM`` records, in file order) to be written at ``offset``.

    Built bottom-up with :data:`FANOUT` children a node and laid out top-down
    (root first), each level's nodes one after another.
    """
    n = leaves.size
    levels = [leaves]  # items of each level, leaves first
    while levels[-1].size > FANOUT:
        below = levels[-1]
        idx = np.arange(0, below.size, FANOUT)
        last = np.minimum(idx + FANOUT, below.size) - 1
        up = np.empty(idx.size, dtype=_NODE_ITEM)
        up["c0"], up["s0"] = below["c0"][idx], below["s0"][idx]
        up["c1"], up["e1"] = below["c1"][last], below["e1"][last]
        levels.append(up)
    # items per node, node sizes and node offsets, level by level from the root down (an empty tree: one empty leaf)
    plan, pos = [], offset + 48
    for depth, items in enumerate(reversed(levels)):
        is_leaf = depth == len(levels) - 1
        counts = np.array([min(FANOUT, items.size - a) for a in range(0, items.size, FANOUT)] or [0])
        sizes = 4 + counts * (_LEAF_ITEM.itemsize if is_leaf else _NODE_ITEM.itemsize)
        plan.append((is_leaf, counts, pos + np.concatenate(([0], np.cumsum(sizes)[:-1]))))
        pos += int(sizes.sum())
    first, last = (leaves[0], leaves[-1]) if n else (np.zeros(1, _LEAF_ITEM)[0],) * 2
    out = bytearray(
        struct.pack(
            "<IIQIIIIQII",
            RTREE_MAGIC,
            FANOUT,
            n,
            int(first["c0"]),
            int(first["s0"]),
            int(last["c1"]),
            int(last["e1"]),
            end_of_data,
            items_per_slot,
            0,
        )
    )
    for depth, (is_leaf, counts, _) in enumerate(plan):
        items = levels[len(levels) - 1 - depth].copy()
        if not is_leaf:  # point each item at its child node on the next level down
            items["offset"] = plan[depth + 1][2]
        a = 0
        for count in counts.tolist():
            out += struct.pack("<BBH", 1 if is_leaf else 0, 0, count)
            out += items[a : a + count].tobytes()
            a += count
    return bytes(out)


def chrom_tree_bytes(sizes: dict[str, int], ids: dict[str, int], offset: int) -> bytes:
    """Encode the chromosome B+ tree to be written at ``offset``: keys sorted by name, zero-padded to the longest.

    Nodes hold up to ``block`` items (padded to that size, as the UCSC tools);
    more chromosomes than that get upper levels whose items point at nodes.
    """
    names = sorted(sizes)
    key_size = max([len(c.encode()) for c in names] + [1])
    block = max(1, min(len(names), FANOUT))
    levels = [[(c.encode().ljust(key_size, b"\0"), struct.pack("<II", ids[c], sizes[c])) for c in names]]
    while len(levels[-1]) > block:  # an upper level: the first key of each node below
        below = levels[-1]
        levels.append([(below[i][0], None) for i in range(0, len(below), block)])
    node_size = 4 + block * (key_size + 8)
    starts, pos = [], offset + 32
    for items in reversed(levels):
        starts.append(pos)
        pos += -(-max(len(items), 1) // block) * node_size
    out = bytearray(struct.pack("<IIIIQQ", CHROM_TREE_MAGIC, block, key_size, 8, len(names), 0))
    for depth, items in enumerate(reversed(levels)):
        is_leaf = depth == len(levels) - 1
        for j in range(0, max(len(items), 1), block):
            node = items[j : j + block]
            body = bytearray(struct.pack("<BBH", 1 if is_leaf else 0, 0, len(node)))
            for k, (key, val) in enumerate(node):
                child = None if is_leaf else struct.pack("<Q", starts[depth + 1] + (j + k) * node_size)
                body += key + (val if is_leaf else child)
            out += body.ljust(node_size, b"\0")
    return bytes(out)


# --- the writer ----------------------------------------------------------------------------------------------------


class _Ordered:
    """Futures whose results are consumed strictly in submission order; at most ``limit`` pending."""

    def __init__(self, pool: ThreadPoolExecutor, limit: int, consume: Callable):
        self.pool, self.limit, self.consume = pool, limit, consume
        self.pending: collections.deque[tuple[Future, object]] = collections.deque()

    def submit(self, fn: Callable, *args, meta=None) -> None:
        self.pending.append((self.pool.submit(fn, *args), meta))
        self.drain(block=len(self.pending) > self.limit)

    def drain(self, block: bool = False, everything: bool = False) -> None:
        while self.pending and (everything or block or self.pending[0][0].done()):
            fut, meta = self.pending.popleft()
            self.consume(fut.result(), meta)
            block = False


class _ZoomLevel:
    """One zoom level being built: the open last bin, finished records awaiting a block, blocks spilled to disk."""

    def __init__(self, reduction: int, directory: Path):
        self.reduction = reduction
        self.tail = np.empty(0, dtype=_REC)
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        # kept open while the file is written; BigWigFileWriter closes it
        self.spill: BinaryIO = tempfile.TemporaryFile(dir=directory, prefix=".zoom-")  # noqa: SIM115
        self.index: list[tuple[int, int, int, int, int, int]] = []
        self.count = 0

    def add(self, records: np.ndarray) -> list[np.ndarray]:
        """Fold new records of this level (one per bin, along the genome) in; return finished full blocks."""
        if not records.size:
            return []
        if self.tail.size:
            t, r = self.tail[0], records[0]
            if t["chrom"] == r["chrom"] and int(t["start"]) // self.reduction == int(r["start"]) // self.reduction:
                records = records.copy()  # the open bin continues: fold the tail into the first record
                records[0] = _merge_two(t, r)
            else:
                records = np.concatenate((self.tail, records))
        self.tail = records[-1:]
        return self._collect(records[:-1], final=False)

    def finish(self) -> list[np.ndarray]:
        tail, self.tail = self.tail, np.empty(0, dtype=_REC)
        return self._collect(tail, final=True)

    def _collect(self, done: np.ndarray, final: bool) -> list[np.ndarray]:
        if done.size:
            self.buffer.append(done)
            self.buffered += done.size
        if not self.buffered:
            return []
        recs = np.concatenate(self.buffer)
        # blocks never span chromosomes; full blocks go now, the rest waits unless this is the end
        out = []
        cuts = np.flatnonzero(recs["chrom"][1:] != recs["chrom"][:-1]) + 1
        bounds = np.concatenate(([0], cuts, [recs.size]))
        a = 0
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            last_group = hi == recs.size
            for c in range(lo, hi, ZOOM_PER_BLOCK):
                d = min(hi, c + ZOOM_PER_BLOCK)
                if d - c < ZOOM_PER_BLOCK and last_group and not final:
                    break
                out.append(recs[c:d])
                a = d
        rest = recs[a:]
        self.buffer, self.buffered = ([rest] if rest.size else []), rest.size
        return out

    def write(self, payload: bytes, rec: np.ndarray) -> None:
        pos = self.spill.tell()
        self.spill.write(payload)
        self.index.append(
            (int(rec["chrom"][0]), int(rec["start"][0]), int(rec["chrom"][-1]), int(rec["end"][-1]), pos, len(payload))
        )
        self.count += 1


class BigWigFileWriter:
    """Write a bigWig from per-base float32 chunks, along the genome (see the module docstring).

    ``add(chrom, start, values)``: per chunk, step-like values (at most a quarter
    as many runs as bases) become bedGraph items with zero runs skipped; others
    fixed-step values, split only at runs of at least :data:`DENSE_SKIP_ZEROS`
    zeros (left out; a missing base reads as 0). Values are stored exactly as
    float32. ``zoom_levels``: at most this many zoom levels (0: none), the first
    at ``first_zoom`` bases (default :data:`FIRST_ZOOM`), each :data:`ZOOM_FACTOR` times the last, none
    coarser than the longest chromosome. ``smallest``: encode each step-like chunk both ways and keep
    the smaller (:func:`encode_chunk`; for rounded model outputs) and deflate every block with libdeflate at
    :data:`SMALL_LEVEL` (the same bytes every run; overrides ``fast``). ``fast``: deflate with ISA-L (see
    :func:`deflate`: faster, values identical, bytes not reproducible);
    otherwise zlib, and the same input gives the same file for any number of
    threads. ``close()`` finishes the file; ``abort()`` closes it unfinished
    (the caller deletes it).
    """

    def __init__(
        self,
        path: str | Path,
        sizes: dict[str, int],
        zoom_levels: int = 10,
        threads: int = 1,
        fast: bool = False,
        first_zoom: int = FIRST_ZOOM,
        smallest: bool = False,
    ):
        if first_zoom < 1:
            raise ValueError(f"first_zoom must be a positive number of bases, got {first_zoom}")
        self.path = Path(path)
        self.sizes = {c: int(n) for c, n in sizes.items()}
        for c, n in self.sizes.items():
            if n >= 2**32:
                raise ValueError(f"{c}: {n} bases, more than a bigWig can address")
        self.ids = {c: i for i, c in enumerate(self.sizes)}
        self.fast = fast
        longest = max(self.sizes.values(), default=0)
        self.first_zoom = int(first_zoom)
        self.smallest = smallest
        self.reductions = [self.first_zoom * ZOOM_FACTOR**k for k in range(max(0, zoom_levels))]
        self.reductions = [r for r in self.reductions if r <= max(longest, self.first_zoom)]
        self._last = (-1, 0)
        # kept open across add() calls; close() and abort() close it
        self._fh = open(self.path, "wb")  # noqa: SIM115
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="bigwig")
        self._data = _Ordered(self._pool, 2 * max(1, threads) + 2, self._consume_chunk)
        self._zoom_out = _Ordered(self._pool, 4 * max(1, threads) + 4, self._consume_zoom)
        self._zooms = [_ZoomLevel(r, self.path.parent) for r in self.reductions]
        self._leaves: list[np.ndarray] = []
        self._nblocks = 0
        self._summary = [0, np.inf, -np.inf, 0.0, 0.0]  # bases covered, min, max, sum, sum of squares
        # header, room for every zoom header, summary and chromosome tree now; the numbers at close
        self._fh.write(b"\0" * (HEADER_SIZE + ZOOM_HEADER_SIZE * len(self.reductions)))
        self._summary_offset = self._fh.tell()
        self._fh.write(b"\0" * SUMMARY_SIZE)
        self._chrom_tree_offset = self._fh.tell()
        self._fh.write(chrom_tree_bytes(self.sizes, self.ids, self._chrom_tree_offset))
        self._data_offset = self._fh.tell()
        self._fh.write(b"\0" * 8)

    # -- input

    def add(self, chrom: str, start: int, values: np.ndarray) -> None:
        """Queue per-base ``values`` at ``chrom:start``; calls must move forward along the genome."""
        if chrom not in self.ids:
            raise ValueError(f"chromosome {chrom} is not in this bigWig's header")
        idx = self.ids[chrom]
        if (idx, start) < self._last:
            raise ValueError(f"bigWig entries out of order at {chrom}:{start}")
        values = np.ascontiguousarray(values, dtype=np.float32)
        if start < 0 or start + values.size > self.sizes[chrom]:
            raise ValueError(f"values run past the end of {chrom}")
        self._last = (idx, start + values.size)
        if values.size:
            self._data.submit(
                encode_chunk, idx, int(start), values, self.first_zoom, self.fast, self.smallest, meta=idx
            )

    # -- results, in order, on the caller's thread

    def _consume_chunk(self, result: tuple[_Blocks, np.ndarray], chrom_id: int) -> None:
        blocks, first_level = result
        if blocks.payloads:
            n = len(blocks.payloads)
            leaves = np.empty(n, dtype=_LEAF_ITEM)
            sizes = np.fromiter((len(p) for p in blocks.payloads), dtype=np.uint64, count=n)
            offset = self._fh.tell()
            leaves["c0"] = leaves["c1"] = chrom_id
            leaves["s0"], leaves["e1"] = blocks.starts, blocks.ends
            leaves["offset"] = offset + np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.uint64)
            leaves["size"] = sizes
            self._fh.write(b"".join(blocks.payloads))
            self._leaves.append(leaves)
            self._nblocks += n
        if first_level.size:
            s = self._summary
            s[0] += int(first_level["count"].sum())
            s[1] = min(s[1], float(first_level["min"].min()))
            s[2] = max(s[2], float(first_level["max"].max()))
            s[3] += float(first_level["sum"].sum())
            s[4] += float(first_level["sumsq"].sum())
            records = first_level
            for level in self._zooms:  # each level from the one below: 4x fewer records each time
                records = reduce_records(records, level.reduction)
                for rec in level.add(records):
                    self._zoom_out.submit(_deflate_zoom, rec, self.fast, self.smallest, meta=(level, rec))

    def _consume_zoom(self, payload: bytes, meta) -> None:
        level, rec = meta
        level.write(payload, rec)

    # -- finishing

    def close(self) -> None:
        """Write everything still queued, the indexes and zoom levels, and the header."""
        try:
            self._data.drain(everything=True)
            for level in self._zooms:
                for rec in level.finish():
                    self._zoom_out.submit(_deflate_zoom, rec, self.fast, self.smallest, meta=(level, rec))
            self._zoom_out.drain(everything=True)
            self._finish_file()
        finally:
            self._release()

    def abort(self) -> None:
        """Stop without finishing the file (it is left incomplete for the caller to delete)."""
        for q in (self._data, self._zoom_out):
            for fut, _ in q.pending:
                fut.cancel()
            q.pending.clear()
        self._release()

    def _release(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for level in self._zooms:
            level.spill.close()
        if not self._fh.closed:
            self._fh.close()

    def _finish_file(self) -> None:
        fh = self._fh
        fh.seek(self._data_offset)
        fh.write(struct.pack("<Q", self._nblocks))
        fh.seek(0, os.SEEK_END)
        index_offset = fh.tell()
        leaves = np.concatenate(self._leaves) if self._leaves else np.empty(0, dtype=_LEAF_ITEM)
        fh.write(rtree_bytes(leaves, index_offset, index_offset, 1))
        self._leaves = []
        zoom_headers = []
        has_data = self._summary[0] > 0
        for level in self._zooms if has_data else []:
            data_offset = fh.tell()
            fh.write(struct.pack("<I", level.count))
            level.spill.seek(0)
            base = fh.tell()
            while True:
                buf = level.spill.read(1 << 24)
                if not buf:
                    break
                fh.write(buf)
            index = np.array(level.index, dtype=np.uint64).reshape(-1, 6)
            leaves = np.empty(len(index), dtype=_LEAF_ITEM)
            for j, name in enumerate(_LEAF_ITEM.names):
                leaves[name] = index[:, j]
            leaves["offset"] += np.uint64(base)
            index_at = fh.tell()
            fh.write(rtree_bytes(leaves, index_at, index_at, ZOOM_PER_BLOCK))
            zoom_headers.append(struct.pack("<IIQQ", level.reduction, 0, data_offset, index_at))
        fh.write(struct.pack("<I", BIGWIG_MAGIC))
        fh.seek(0)
        fh.write(
            struct.pack(
                "<IHHQQQHHQQIQ",
                BIGWIG_MAGIC,
                4,
                len(zoom_headers),
                self._chrom_tree_offset,
                self._data_offset,
                index_offset,
                0,
                0,
                0,
                self._summary_offset,
                BUF_SIZE,
                0,
            )
        )
        for head in zoom_headers:
            fh.write(head)
        fh.seek(self._summary_offset)
        covered, lo, hi, total, squares = self._summary
        if not covered:
            lo = hi = 0.0
        fh.write(struct.pack("<Qdddd", covered, lo, hi, total, squares))
        fh.flush()

    def __enter__(self) -> BigWigFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
