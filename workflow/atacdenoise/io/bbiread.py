"""bigWig files read natively: blocks inflated on a thread pool, decoded with NumPy a batch at a time.

Why not libBigWig (pyBigWig) for reading: ``values(numpy=True)`` decodes item
by item in C after inflating each block in the calling thread (~20 M bases/s
on a per-base track), and ``intervals()`` builds a Python tuple per item. Here:

* the data blocks of a query are found through the R-tree once per
  chromosome (the leaves are cached), read with a few large ``pread`` calls
  (thread-safe: no shared file position) and inflated by worker threads
  (``zlib``/ISA-L release the GIL);
* a batch of inflated blocks is decoded at once: section headers are
  gathered with one fancy index; fixed-step blocks (per-base tracks) are
  copied as whole slices, bedGraph and variable-step items become arrays of
  runs.

Two views of the same data: :meth:`BigWigFileReader.values` (per-base float32
array, missing bases as NaN or ``fill``) and :meth:`BigWigFileReader.runs`
(``starts, ends, values`` of the stored items, what a run-length consumer such
as peak calling on a smooth track wants), and :meth:`BigWigFileReader.runs_at_least`
(only the runs at or above a cutoff, selected as the blocks decode). Layout: bigWig versions 1-4,
little-endian (every UCSC, libBigWig and :mod:`atacdenoise.io.bbiwrite` file; a big-endian file is refused
with a message); zoom levels are not read (every query is exact).

Damaged files (a transfer cut short, flipped bytes) end in :class:`BigWigReadError`, an
:class:`~atacdenoise.errors.InputError` naming the file, never in a hang or an unbounded allocation:
a file that does not end with the magic number again (as every bigWig does) is cut short and refused,
no read goes past the end of the file, the two trees are walked with a set of visited nodes and a depth
limit (a node pointing back at itself or an ancestor is refused), a node holds at most the tree's block
size of items, and a data block inflates to at most the header's ``uncompressBufSize``.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atacdenoise.errors import InputError

try:  # ISA-L inflate: 2-4x zlib's speed on the same streams
    from isal import isal_zlib as _inflate_mod
except ImportError:  # pragma: no cover - isal is a dependency; zlib keeps the reader working without it
    _inflate_mod = zlib

BIGWIG_MAGIC = 0x888FFC26
CHROM_TREE_MAGIC = 0x78CA8C91
RTREE_MAGIC = 0x2468ACE0
_HEADER = struct.Struct("<IHHQQQHHQQIQ")
_CHROM_TREE_HEADER = struct.Struct("<IIIIQQ")
_RTREE_HEADER = struct.Struct("<IIQIIIIQII")
_LEAF = np.dtype([("c0", "<u4"), ("s0", "<u4"), ("c1", "<u4"), ("e1", "<u4"), ("offset", "<u8"), ("size", "<u8")])
_NODE = np.dtype([("c0", "<u4"), ("s0", "<u4"), ("c1", "<u4"), ("e1", "<u4"), ("offset", "<u8")])
BEDGRAPH, VARSTEP, FIXEDSTEP = 1, 2, 3
#: inflated bytes decoded at a time (bounds the reader's memory beside the output; the next batch inflates meanwhile)
BATCH_BYTES = 8 << 20
#: neighbouring blocks closer than this in the file are read with one pread
_READ_GAP = 1 << 16
#: deepest index tree walked (a real tree of 2**64 items is 16 levels deep at the smallest block size, 4)
MAX_TREE_DEPTH = 64
#: largest ``uncompressBufSize`` accepted (UCSC tools and libBigWig write 32 KiB; a larger value is damage)
MAX_UNCOMPRESS_BUF = 64 << 20


class BigWigReadError(InputError, ValueError):
    """The file is not a bigWig this reader understands, or is damaged (the message names the file and says why).

    An :class:`~atacdenoise.errors.InputError` (the CLI prints the message, no traceback) and, as before, a ValueError.
    """


def _damaged(path: Path, what: str) -> BigWigReadError:
    """Return the error for a structure of ``path`` that cannot be right: say what, and the fix."""
    return BigWigReadError(f"{path}: {what}; the file is damaged or truncated: copy it again or re-create it")


@dataclass(frozen=True)
class _Decoded:
    """Items of a batch of blocks as runs, or as contiguous fixed-step segments."""

    starts: np.ndarray
    ends: np.ndarray
    values: np.ndarray


class _TooLarge(Exception):
    """A block inflates past its limit (raised on a worker thread, worded by the reader)."""


def _inflate_one(payload: memoryview, limit: int) -> bytes:
    """Inflate one zlib stream to at most ``limit`` bytes; raise :class:`_TooLarge` past it, zlib's error if cut."""
    d = _inflate_mod.decompressobj()
    out = d.decompress(payload, limit + 1)
    if len(out) > limit:
        raise _TooLarge(limit)
    if not d.eof:
        raise _inflate_mod.error("incomplete or truncated stream")
    return out


def _inflate_all(payloads: list[memoryview], limit: int) -> list[bytes]:
    """Inflated blocks, in order, each at most ``limit`` bytes (0: stored uncompressed; ISA-L/zlib release the GIL)."""
    if not limit:
        return [bytes(p) for p in payloads]
    return [_inflate_one(p, limit) for p in payloads]


class BigWigFileReader:
    """Read-only bigWig with a pyBigWig-like interface (``chroms``, ``values``, ``stats`` sum) plus :meth:`runs`.

    ``threads`` workers inflate blocks (1: the calling thread). One reader may
    be used by one thread at a time; different readers of a file are independent.
    """

    def __init__(self, path: str | Path, threads: int = 1):
        self.path = Path(path)
        self.threads = max(1, int(threads))
        self._fd = os.open(self.path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size
        self._pool: ThreadPoolExecutor | None = None
        self._leaf_cache: tuple[int, np.ndarray] | None = None
        try:
            self._read_header()
        except BaseException:
            os.close(self._fd)
            self._fd = -1  # else __del__ closes the number again, by then maybe another file's
            raise

    # --- structure ---------------------------------------------------------------------------------------------

    def _pread(self, offset: int, size: int) -> bytes:
        """Read ``size`` bytes at ``offset``, or fewer where the file ends first (never allocating past its end)."""
        size = min(int(size), self._size - int(offset))
        if size <= 0 or offset < 0:
            return b""
        out = os.pread(self._fd, size, offset)
        if len(out) < size:  # pread may return less near the end or on a signal: finish or fail clearly
            parts = [out]
            got = len(out)
            while got < size:
                more = os.pread(self._fd, size - got, offset + got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            out = b"".join(parts)
        return out

    def _read_header(self) -> None:
        raw = self._pread(0, _HEADER.size)
        if len(raw) < _HEADER.size:
            raise _damaged(self.path, f"{len(raw)} bytes, too short for a bigWig header")
        magic = struct.unpack_from("<I", raw)[0]
        if magic != BIGWIG_MAGIC:
            if struct.unpack_from(">I", raw)[0] == BIGWIG_MAGIC:
                raise BigWigReadError(
                    f"{self.path}: a big-endian bigWig; convert it with bigWigToBedGraph | bedGraphToBigWig"
                )
            raise BigWigReadError(f"{self.path}: not a bigWig (magic {magic:#x}); give a bigWig file")
        (
            _,
            self.version,
            self.zoom_levels,
            chrom_tree,
            self.data_offset,
            self.index_offset,
            _,
            _,
            _,
            _,
            self.uncompress_buf_size,
            _,
        ) = _HEADER.unpack(raw)
        if struct.unpack("<I", self._pread(self._size - 4, 4).rjust(4, b"\0"))[0] != BIGWIG_MAGIC:
            # every bigWig ends with its magic number again (UCSC tools, libBigWig, our writer): a cut file does not
            raise _damaged(self.path, "it does not end with the bigWig magic number, so it is cut short")
        if self.uncompress_buf_size > MAX_UNCOMPRESS_BUF:
            raise _damaged(self.path, f"the header's block size ({self.uncompress_buf_size:,} bytes) is impossible")
        self._read_chrom_tree(chrom_tree)
        head = self._pread(self.index_offset, _RTREE_HEADER.size)
        if len(head) < _RTREE_HEADER.size or _RTREE_HEADER.unpack(head)[0] != RTREE_MAGIC:
            raise _damaged(self.path, "data index missing or not where the header says")
        self._rtree_block = _RTREE_HEADER.unpack(head)[1]
        if self._rtree_block < 1:
            raise _damaged(self.path, "data index has block size 0")

    def _node(self, at: int, seen: set[int], depth: int, block: int, what: str) -> tuple[bool, int]:
        """Check a tree node's place and header (``is_leaf``, item count); return them.

        A node already seen (a loop), past the depth limit, outside the file or
        with more items than the tree's block size is a :func:`_damaged` error.
        """
        if at in seen or depth > MAX_TREE_DEPTH:
            raise _damaged(self.path, f"{what} loops back on itself (node at byte {at})")
        seen.add(at)
        raw = self._pread(at, 4)
        if len(raw) < 4:
            raise _damaged(self.path, f"{what} points past the end of the file (byte {at})")
        is_leaf, _, n = struct.unpack("<BBH", raw)
        if is_leaf > 1 or n > block:
            raise _damaged(self.path, f"{what} node at byte {at} is not a tree node")
        return bool(is_leaf), n

    def _read_chrom_tree(self, offset: int) -> None:
        head = self._pread(offset, _CHROM_TREE_HEADER.size)
        if len(head) < _CHROM_TREE_HEADER.size:
            raise _damaged(self.path, "chromosome tree missing")
        magic, block, key_size, val_size, count, _ = _CHROM_TREE_HEADER.unpack(head)
        if magic != CHROM_TREE_MAGIC or val_size != 8 or not 0 < key_size < self._size or block < 1:
            raise _damaged(self.path, "chromosome tree header damaged")
        leaf = np.dtype([("key", f"S{key_size}"), ("id", "<u4"), ("size", "<u4")])
        node = np.dtype([("key", f"S{key_size}"), ("child", "<u8")])
        found: list[tuple[int, bytes, int]] = []
        seen: set[int] = set()
        stack = [(offset + _CHROM_TREE_HEADER.size, 0)]
        while stack:
            at, depth = stack.pop()
            is_leaf, n = self._node(at, seen, depth, block, "chromosome tree")
            kind = leaf if is_leaf else node
            raw = self._pread(at + 4, n * kind.itemsize)
            if len(raw) < n * kind.itemsize:
                raise _damaged(self.path, f"chromosome tree node at byte {at} is cut short")
            items = np.frombuffer(raw, dtype=kind, count=n)
            if is_leaf:
                found += zip(items["id"].tolist(), items["key"].tolist(), items["size"].tolist())
                if len(found) > count:
                    break
            else:
                stack += [(int(c), depth + 1) for c in items["child"][::-1].tolist()]
        if len(found) != count:
            raise _damaged(self.path, f"chromosome tree lists {len(found)} of {count} chromosomes")
        try:
            found = sorted((cid, key.decode("utf-8"), size) for cid, key, size in found)
        except UnicodeDecodeError:
            bad = next(key for _, key, _ in found if not _is_utf8(key))
            raise _damaged(self.path, f"chromosome name {bad[:40]!r} is not UTF-8 text") from None
        if len({name for _, name, _ in found}) != count or len({cid for cid, _, _ in found}) != count:
            raise _damaged(self.path, "chromosome tree lists a chromosome name or id twice")
        self._chrom_ids = {name: cid for cid, name, _ in found}
        self._chrom_sizes = {name: size for _, name, size in found}
        self._chrom_lens = {cid: size for cid, _, size in found}

    def _leaves(self, cid: int) -> np.ndarray:
        """R-tree leaf items (data blocks) of chromosome ``cid``, sorted by start; the last chromosome's are cached."""
        if self._leaf_cache is not None and self._leaf_cache[0] == cid:
            return self._leaf_cache[1]
        out = []
        seen: set[int] = set()
        stack = [(self.index_offset + _RTREE_HEADER.size, 0)]
        while stack:
            at, depth = stack.pop()
            is_leaf, n = self._node(at, seen, depth, self._rtree_block, "data index")
            kind = _LEAF if is_leaf else _NODE
            raw = self._pread(at + 4, n * kind.itemsize)
            if len(raw) < n * kind.itemsize:
                raise _damaged(self.path, f"data index node at byte {at} is cut short")
            items = np.frombuffer(raw, dtype=kind, count=n)
            items = items[(items["c0"] <= cid) & (items["c1"] >= cid)]
            if is_leaf:
                out.append(items)
            else:
                stack += [(int(o), depth + 1) for o in items["offset"][::-1].tolist()]
        leaves = np.concatenate(out) if out else np.zeros(0, dtype=_LEAF)
        past = (
            (leaves["size"] == 0) | (leaves["offset"] >= self._size) | (leaves["size"] > self._size - leaves["offset"])
        )
        if np.any(past):
            at = int(leaves["offset"][np.flatnonzero(past)[0]])
            raise _damaged(self.path, f"data block at byte {at:,} is empty or lies past the end of the file")
        leaves = leaves[np.argsort(leaves["s0"], kind="stable")]
        self._leaf_cache = (cid, leaves)
        return leaves

    # --- pyBigWig-like interface -------------------------------------------------------------------------------

    def isBigWig(self) -> bool:
        """Return True, as pyBigWig does for a bigWig: the constructor refuses any other file."""
        return True

    def chroms(self, chrom: str | None = None):
        """``{name: length}`` in the file's order, or one chromosome's length (None when absent), as pyBigWig."""
        if chrom is None:
            return dict(self._chrom_sizes)
        return self._chrom_sizes.get(chrom)

    def _range(self, chrom: str, start: int, end: int | None) -> tuple[int, int, int]:
        if chrom not in self._chrom_ids:
            raise KeyError(f"{self.path}: chromosome {chrom} not in this bigWig")
        length = self._chrom_sizes[chrom]
        end = length if end is None else int(end)
        start = int(start)
        if not 0 <= start <= end <= length:
            raise ValueError(f"{self.path}: invalid range {chrom}:{start}-{end} (length {length:,})")
        return self._chrom_ids[chrom], start, end

    def values(
        self, chrom: str, start: int = 0, end: int | None = None, numpy: bool = True, fill: float = np.nan
    ) -> np.ndarray:
        """float32[end - start] of per-base values; bases without data read as ``fill`` (NaN, as pyBigWig)."""
        cid, start, end = self._range(chrom, start, end)
        out = np.full(end - start, fill, dtype=np.float32)
        clean = 0  # the bases of out from here on still hold only the fill
        for kind, decoded in self._batches(cid, start, end):
            clean = _paint(out, start, kind, decoded, fill, clean)
        return out

    def runs(self, chrom: str, start: int = 0, end: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the stored items over ``[start, end)`` as runs.

        The runs are ``starts, ends`` (int64, clipped) and ``values`` (float32),
        sorted and non-overlapping; bases without data lie between runs. A
        per-base track gives one run per base: use :meth:`values` for those.
        """
        cid, start, end = self._range(chrom, start, end)
        starts, ends, values = _join_runs([_as_runs(kind, d) for kind, d in self._batches(cid, start, end)], start, end)
        return starts.astype(np.int64, copy=False), ends.astype(np.int64, copy=False), values

    def runs_at_least(
        self, chrom: str, cutoff: float, start: int = 0, end: int | None = None, max_runs: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Return the runs of :meth:`runs` whose value is ``>= cutoff`` (compared in float32; NaN never is).

        Selected a batch at a time, so memory follows the selected runs, not
        the track: what peaks at a positive cutoff need (bases outside these
        runs can neither be in a peak nor be its summit). None once more than
        ``max_runs`` are selected (e.g. a per-base track mostly above the cutoff).
        """
        cid, start, end = self._range(chrom, start, end)
        cut = np.float32(cutoff)
        parts: list[_Decoded] = []
        selected = 0
        for kind, decoded in self._batches(cid, start, end):
            if kind == FIXEDSTEP:
                for s, _, vals in decoded:
                    idx = np.flatnonzero(vals >= cut)
                    if idx.size:
                        parts.append(_Decoded(s + idx, s + idx + 1, vals[idx].astype(np.float32)))
                        selected += idx.size
            else:
                keep = decoded.values >= cut
                if keep.any():
                    parts.append(_Decoded(decoded.starts[keep], decoded.ends[keep], decoded.values[keep]))
                    selected += parts[-1].starts.size
            if max_runs is not None and selected > max_runs:
                return None
        starts, ends, values = _join_runs(parts, start, end)
        return starts.astype(np.int64, copy=False), ends.astype(np.int64, copy=False), values

    def stats(self, chrom: str, start: int = 0, end: int | None = None, type: str = "sum", exact: bool = True) -> list:
        """Return ``[sum]`` of the values over the range (exact, float64; None without data).

        As pyBigWig's ``stats(type="sum", exact=True)``. Summed a batch at a
        time: memory stays bounded for per-base tracks too.
        """
        if type != "sum":
            raise ValueError("only type='sum' is supported")
        cid, start, end = self._range(chrom, start, end)
        total, seen = 0.0, False
        for kind, decoded in self._batches(cid, start, end):
            if kind == FIXEDSTEP:
                for s, e, vals in decoded:
                    a, b = max(s, start), min(e, end)
                    if a < b:
                        total += float(vals[a - s : b - s].sum(dtype=np.float64))
                        seen = True
            else:
                lo = np.maximum(decoded.starts.astype(np.int64), start)
                hi = np.minimum(decoded.ends.astype(np.int64), end)
                keep = hi > lo
                if keep.any():
                    total += float(np.dot((hi - lo)[keep].astype(np.float64), decoded.values[keep].astype(np.float64)))
                    seen = True
        return [total if seen else None]

    def close(self) -> None:
        """Release the file descriptor and the inflating thread pool."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> BigWigFileReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort when a caller forgets close()
        try:
            if self._fd >= 0:
                os.close(self._fd)
        except Exception:
            pass

    # --- data --------------------------------------------------------------------------------------------------

    def _batches(self, cid: int, start: int, end: int):
        """Yield ``(kind, decoded)`` per batch of the blocks overlapping the range, in genome order.

        ``kind`` FIXEDSTEP: a list of ``(seg_start, seg_end, values_per_base)``,
        one per contiguous fixed-step block; otherwise a :class:`_Decoded` of runs.
        """
        leaves = self._leaves(cid)
        hit = leaves[(leaves["e1"] > start) & (leaves["s0"] < end) & (leaves["c0"] == cid)]
        if not hit.size:
            return
        hit = hit[np.argsort(hit["offset"], kind="stable")]
        offsets = hit["offset"].astype(np.int64)
        sizes = hit["size"].astype(np.int64)
        # batches of blocks whose inflated size is bounded (a block inflates to at most uncompress_buf_size)
        per_block = max(self.uncompress_buf_size, 1)
        per_batch = (
            max(1, BATCH_BYTES // per_block)
            if self.uncompress_buf_size
            else max(1, BATCH_BYTES // max(int(sizes.max()), 1))
        )
        # the next batch is read and handed to the inflating threads before this one is decoded
        lows = list(range(0, hit.size, per_batch))
        pending = self._inflate(self._read_blocks(offsets[:per_batch], sizes[:per_batch]))
        for i in range(len(lows)):
            blocks = pending()
            if i + 1 < len(lows):
                lo, hi = lows[i + 1], min(hit.size, lows[i + 1] + per_batch)
                pending = self._inflate(self._read_blocks(offsets[lo:hi], sizes[lo:hi]))
            yield from _decode_blocks(blocks, cid, self._chrom_lens[cid], self.path)

    def _read_blocks(self, offsets: np.ndarray, sizes: np.ndarray) -> list[memoryview]:
        """Read the raw bytes of each block, with one pread per group of neighbouring blocks."""
        ends = offsets + sizes
        breaks = np.flatnonzero(offsets[1:] - ends[:-1] > _READ_GAP) + 1
        out: list[memoryview] = []
        for a, b in zip(np.concatenate(([0], breaks)).tolist(), np.concatenate((breaks, [offsets.size])).tolist()):
            base = int(offsets[a])
            raw = memoryview(self._pread(base, int(ends[b - 1]) - base))
            if len(raw) < int(ends[b - 1]) - base:
                raise _damaged(self.path, f"data block at byte {int(offsets[b - 1]):,} lies past the end of the file")
            out += [raw[int(o) - base : int(e) - base] for o, e in zip(offsets[a:b], ends[a:b])]
        return out

    def _inflate(self, payloads: list[memoryview]) -> Callable[[], list[bytes]]:
        """Start inflating ``payloads`` on the worker threads; the returned call waits for and returns the blocks."""
        limit = self.uncompress_buf_size
        if self.threads == 1 or len(payloads) < 8 or not limit:
            parts = None
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="bigwig-inflate")
            step = -(-len(payloads) // (4 * self.threads))
            chunks = [payloads[i : i + step] for i in range(0, len(payloads), step)]
            parts = [self._pool.submit(_inflate_all, chunk, limit) for chunk in chunks]

        def collect() -> list[bytes]:
            try:
                if parts is None:
                    return _inflate_all(payloads, limit)
                return [b for part in parts for b in part.result()]
            except _TooLarge:
                raise _damaged(
                    self.path, f"a data block inflates past the header's block size ({limit:,} bytes)"
                ) from None
            except (zlib.error, _inflate_mod.error) as exc:
                raise _damaged(self.path, f"a data block does not inflate ({exc})") from None

        return collect


_SECTION = np.dtype(
    [
        ("chrom", "<u4"),
        ("start", "<u4"),
        ("end", "<u4"),
        ("step", "<u4"),
        ("span", "<u4"),
        ("type", "u1"),
        ("reserved", "u1"),
        ("count", "<u2"),
    ]
)
_RUN_ITEM = np.dtype([("start", "<u4"), ("end", "<u4"), ("value", "<f4")])


def _decode_blocks(blocks: list[bytes], cid: int, chrom_len: int, path: Path):
    """Decode inflated blocks (sections) in order; yields ``(kind, decoded)`` for runs of blocks of one kind.

    Only the 24-byte section headers are gathered; items are viewed in place
    (fixed step) or joined and viewed as records (bedGraph), never indexed item by item.
    """
    lengths = np.fromiter((len(b) for b in blocks), dtype=np.int64, count=len(blocks))
    if np.any(lengths < _SECTION.itemsize):
        raise _damaged(path, "a data block has an impossible size")
    head = np.frombuffer(b"".join([blk[: _SECTION.itemsize] for blk in blocks]), dtype=_SECTION)
    chrom, s, step, span = (head[k].astype(np.int64) for k in ("chrom", "start", "step", "span"))
    kind = head["type"].astype(np.int64)
    count = head["count"].astype(np.int64)
    item_size = np.select([kind == BEDGRAPH, kind == VARSTEP, kind == FIXEDSTEP], [12, 8, 4], 0)
    if np.any(item_size == 0) or np.any(_SECTION.itemsize + count * item_size > lengths):
        raise _damaged(path, "a data block has an unknown section type or too many items")
    mine = (chrom == cid) & (count > 0)
    fixed = mine & (kind == FIXEDSTEP)
    if np.any(fixed & ((span > chrom_len) | (s + step * (count - 1) >= chrom_len))):
        # also bounds the per-base expansion of contiguous fixed-step blocks below (np.repeat by span)
        raise _damaged(path, f"a fixed-step block reaches past the chromosome's end ({chrom_len:,} bp)")
    # contiguous fixed step (span == step): per-base values viewed in place; everything else as runs
    group = np.where(
        mine & (kind == FIXEDSTEP) & (span == step), 1, np.where(mine & (kind == BEDGRAPH), 2, np.where(mine, 3, 0))
    )
    cut = np.flatnonzero(np.diff(group)) + 1
    for a, b in zip(np.concatenate(([0], cut)).tolist(), np.concatenate((cut, [group.size])).tolist()):
        g = int(group[a])
        if g == 1:
            yield (
                FIXEDSTEP,
                [
                    (st, st + sp * n, _floats(blocks[j], n) if sp == 1 else np.repeat(_floats(blocks[j], n), sp))
                    for j, st, sp, n in zip(range(a, b), s[a:b].tolist(), span[a:b].tolist(), count[a:b].tolist())
                ],
            )
        elif g == 2:
            rec = np.frombuffer(
                b"".join([memoryview(blocks[j])[24 : 24 + 12 * n] for j, n in zip(range(a, b), count[a:b].tolist())]),
                dtype=_RUN_ITEM,
            )
            yield BEDGRAPH, _Decoded(rec["start"], rec["end"], rec["value"])  # views; _join_runs copies
        elif g == 3:
            yield BEDGRAPH, _other_runs(blocks[a:b], kind[a:b], s[a:b], step[a:b], span[a:b], count[a:b])


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _floats(block: bytes, n: int) -> np.ndarray:
    return np.frombuffer(block, dtype="<f4", count=n, offset=_SECTION.itemsize)


def _other_runs(blocks: list[bytes], kind, s, step, span, count) -> _Decoded:
    """Items of variable-step and gapped fixed-step blocks as runs."""
    parts = []
    for blk, k, st, sp_step, sp, n in zip(
        blocks, kind.tolist(), s.tolist(), step.tolist(), span.tolist(), count.tolist()
    ):
        if k == VARSTEP:
            rec = np.frombuffer(blk, dtype=[("start", "<u4"), ("value", "<f4")], count=n, offset=_SECTION.itemsize)
            starts = rec["start"].astype(np.int64)
            parts.append((starts, starts + sp, rec["value"].copy()))
        else:
            starts = st + sp_step * np.arange(n, dtype=np.int64)
            parts.append((starts, starts + sp, _floats(blk, n).copy()))
    return _Decoded(*(np.concatenate([p[i] for p in parts]) for i in range(3)))


def _paint(out: np.ndarray, start: int, kind: int, decoded, fill: float, clean: int) -> int:
    """Write one decoded batch into ``out`` (which covers ``[start, start + out.size)``).

    ``clean``: the bases of ``out`` from this index on hold only ``fill`` (nothing painted there yet). Returns it
    for the next batch.
    """
    if kind == FIXEDSTEP:
        end = start + out.size
        for s, e, vals in decoded:
            a, b = max(s, start), min(e, end)
            if a < b:
                out[a - start : b - start] = vals[a - s : b - s]
                clean = max(clean, b - start)
        return clean
    return _paint_runs(out, start, decoded, fill, clean)


def _as_runs(kind: int, decoded) -> _Decoded:
    """Return a decoded batch as runs (fixed-step segments give one run per value)."""
    if kind != FIXEDSTEP:
        return decoded
    if not decoded:
        return _Decoded(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    starts = np.concatenate([s + np.arange(v.size, dtype=np.int64) for s, _, v in decoded])
    vals = np.concatenate([v for _, _, v in decoded]).astype(np.float32, copy=True)
    return _Decoded(starts, starts + 1, vals)


def _join_runs(parts: list[_Decoded], start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate runs of several batches, sorted by start and clipped to ``[start, end)`` (positions as stored)."""
    if not parts:
        z = np.zeros(0, dtype=np.int64)
        return z, z.copy(), np.zeros(0, dtype=np.float32)
    starts = np.concatenate([p.starts for p in parts])
    ends = np.concatenate([p.ends for p in parts])
    vals = np.concatenate([p.values for p in parts]) if len(parts) > 1 else parts[0].values.copy()
    if starts.size > 1 and np.any(starts[1:] < starts[:-1]):
        order = np.argsort(starts, kind="stable")
        starts, ends, vals = starts[order], ends[order], vals[order]
    # sorted, non-overlapping: the runs inside lie between two cut points; only the end runs need clipping
    lo, hi = int(np.searchsorted(ends, start, side="right")), int(np.searchsorted(starts, end, side="left"))
    starts, ends, vals = starts[lo:hi], ends[lo:hi], vals[lo:hi]
    if starts.size:
        starts[0] = max(starts[0], start)
        ends[-1] = min(ends[-1], end)
        if ends[0] <= starts[0] or ends[-1] <= starts[-1]:  # an empty range cut a run to nothing
            keep = ends > starts
            starts, ends, vals = starts[keep], ends[keep], vals[keep]
    return starts, ends, vals


def _paint_runs(out: np.ndarray, start: int, runs: _Decoded, fill: float = np.nan, clean: int | None = None) -> int:
    """Write runs into ``out`` (covering ``[start, start + out.size)``); bases between runs keep their values.

    Where the runs lie at or after ``clean`` (the bases from there on hold only ``fill``: a valid file's batches,
    in order), the bases between them are painted with ``fill`` in the same pass; otherwise (``clean`` None, or a
    file whose blocks overlap) they are put back from ``out``, ~3x slower. Returns the new ``clean``.
    """
    lo = np.clip(runs.starts.astype(np.int64) - start, 0, out.size)
    hi = np.clip(runs.ends.astype(np.int64) - start, 0, out.size)
    keep = hi > lo
    lo, hi, vals = lo[keep], hi[keep], runs.values[keep]
    if not lo.size:
        return clean or 0
    painted_to = max(clean or 0, int(hi.max()))
    gap = lo[1:] - hi[:-1]
    if np.any(gap < 0):  # overlapping items (not a valid bigWig, but readable): paint in order, the last wins
        lengths = hi - lo
        pos = np.repeat(lo - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))
        out[pos] = np.repeat(vals, lengths)
        return painted_to
    seg = out[int(lo[0]) : int(hi[-1])]
    if not gap.any():
        seg[:] = np.repeat(vals, hi - lo)
        return painted_to
    # one np.repeat over runs and the gaps between them
    lengths = np.empty(2 * lo.size - 1, dtype=np.int64)
    lengths[0::2], lengths[1::2] = hi - lo, gap
    both = np.empty(lengths.size, dtype=np.float32)
    both[0::2] = vals
    if clean is not None and int(lo[0]) >= clean:  # the gaps hold the fill
        both[1::2] = fill
        seg[:] = np.repeat(both, lengths)
        return painted_to
    both[1::2] = 0.0  # then the gaps' bases put back
    painted = np.repeat(both, lengths)
    in_gap = np.repeat(np.arange(lengths.size) % 2 == 1, lengths)
    painted[in_gap] = seg[in_gap]
    seg[:] = painted
    return painted_to
