"""BGZF (the blocked gzip of BAM files) read and written a chunk of blocks at a time, inflated/deflated on threads.

Why: htslib as pysam bundles it inflates and deflates with zlib, one block at
a time in the calling thread unless given threads; reading the blocks
ourselves lets ISA-L inflate them (~2x zlib) on a thread pool while the
caller works on the previous chunk, and lets output blocks deflate in
parallel. Used by the native subsampling pass (:mod:`atacdenoise.reads.subsample`).

Format (SAM specification, section 4.1): a series of gzip members, each with
an extra field ``BC`` holding the member's size - 1, at most 64 KiB of data
each, a CRC32 and the data's size at the end; an empty member marks the end
of file. Every CRC is checked on reading, so a damaged file fails with its
name and the block's offset rather than giving wrong reads.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np

from atacdenoise.errors import InputError

try:
    from isal import isal_zlib as _fast
except ImportError:  # pragma: no cover - isal is a dependency; zlib keeps the reader working without it
    _fast = zlib

#: raw bytes read per chunk (a chunk's blocks inflate together on the pool)
CHUNK_BYTES = 2 << 20
#: data bytes per output block (htslib's BGZF_BLOCK_SIZE: a block and its header always fit in 64 KiB)
BLOCK_DATA = 0xFF00
#: blocks per pool task (one task per block would cost more in scheduling than a small block takes to inflate)
TASK_BLOCKS = 32
#: zlib level of output blocks: zlib's fastest, deterministic (the same bytes every run, for any thread count)
LEVEL = 1
#: the empty block that ends a BGZF file
EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")

_HEAD = struct.Struct("<4sIBBH")  # magic+method+flags, mtime, xfl, os, xlen


class BgzfError(InputError):
    """A file that is not BGZF, or a damaged block."""


def _blocks(raw: memoryview, base: int, path: str | Path) -> tuple[list[tuple[int, int, int]], int]:
    """Whole blocks at the start of ``raw``: (data start, data end, block end) each, and the bytes they take."""
    out, pos, n = [], 0, len(raw)
    while pos + 18 <= n:
        magic, _, _, _, xlen = _HEAD.unpack_from(raw, pos)
        if magic != b"\x1f\x8b\x08\x04":
            raise BgzfError(
                f"{path}: not a BGZF file (bad block header at byte {base + pos:,}); is it a BAM file, and whole?"
            )
        # the BC subfield holds the block size - 1; other subfields may come before it
        sub, bsize = pos + 12, None
        while sub + 4 <= pos + 12 + xlen:
            si, slen = raw[sub : sub + 2].tobytes(), int.from_bytes(raw[sub + 2 : sub + 4], "little")
            if si == b"BC" and slen == 2:
                bsize = int.from_bytes(raw[sub + 4 : sub + 6], "little") + 1
            sub += 4 + slen
        if bsize is None or bsize < 12 + xlen + 8:
            raise BgzfError(f"{path}: damaged BGZF block at byte {base + pos:,} (no block size); is the file whole?")
        if pos + bsize > n:
            break
        out.append((pos + 12 + xlen, pos + bsize - 8, pos + bsize))
        pos += bsize
    return out, pos


def _inflate_into(
    raw: memoryview,
    blocks: list[tuple[int, int, int]],
    out: memoryview,
    offsets: list[int],
    base: int,
    path: str | Path,
) -> None:
    """Inflate ``blocks`` of ``raw`` into ``out`` at ``offsets``, checking each block's size and CRC32."""
    for (start, end, _), off in zip(blocks, offsets):
        crc, size = struct.unpack_from("<II", raw, end)
        try:
            data = _fast.decompress(raw[start:end], -15, size or 1)
        except Exception as exc:  # isal and zlib raise their own error types
            raise BgzfError(
                f"{path}: damaged BGZF block at byte {base + start - 18:,} ({exc}); is the file whole?"
            ) from exc
        if len(data) != size or _fast.crc32(data) != crc:
            raise BgzfError(f"{path}: damaged BGZF block at byte {base + start - 18:,} (size or CRC32 mismatch)")
        out[off : off + size] = data


def read_chunks(
    path: str | Path, pool: ThreadPoolExecutor, chunk_bytes: int | None = None, head_room: int = 0
) -> Iterator[tuple[np.ndarray, int, int]]:
    """The file's data, decompressed, a chunk of blocks at a time: ``(buffer, start, end)``, the data in ``buffer[start:end]``.

    The next chunk inflates on ``pool`` while the caller uses this one. Two
    buffers are reused in turn (fresh memory costs a page fault per 4 KiB, as
    much as inflating it), so a chunk's buffer is valid only until the caller
    asks for the next chunk; ``buffer[:start]`` (``head_room`` bytes) is
    the caller's, e.g. to put the unfinished end of the previous chunk in front
    of this one. Raises :class:`BgzfError` (an ``InputError``) naming the file
    for anything that is not a whole, undamaged BGZF file; a missing
    end-of-file block is allowed (htslib warns about it and reads on).
    """
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    raws = [bytearray(chunk_bytes + (1 << 16)) for _ in range(2)]
    outs = [np.empty(0, np.uint8) for _ in range(2)]

    def load(fh: BinaryIO, carry: bytes, base: int, slot: int) -> tuple[list[Future], int, int, bytes, int, bool]:
        raw = raws[slot]
        raw[: len(carry)] = carry
        got = fh.readinto(memoryview(raw)[len(carry) : len(carry) + chunk_bytes])
        n = len(carry) + got
        view = memoryview(raw)[:n]
        blocks, used = _blocks(view, base, path)
        at_end = got == 0
        if at_end and used < n:
            raise BgzfError(
                f"{path}: truncated BGZF file (a partial block at byte {base + used:,}); is the file whole?"
            )
        sizes = [struct.unpack_from("<I", view, b[1] + 4)[0] for b in blocks]
        offsets = np.cumsum([head_room, *sizes]).tolist()
        if outs[slot].size < offsets[-1]:
            outs[slot] = np.empty(int(offsets[-1] * 1.25) + 1, np.uint8)
        out = memoryview(outs[slot])
        futures = [
            pool.submit(_inflate_into, view, blocks[i : i + TASK_BLOCKS], out, offsets[i : i + TASK_BLOCKS], base, path)
            for i in range(0, len(blocks), TASK_BLOCKS)
        ]
        return futures, head_room, offsets[-1], bytes(view[used:]), base + used, at_end

    with open(path, "rb") as fh:
        slot = 0
        futures, start, end, carry, base, at_end = load(fh, b"", 0, slot)
        while True:
            nxt = None if at_end else load(fh, carry, base, 1 - slot)
            for f in futures:
                f.result()
            yield outs[slot], start, end
            if nxt is None:
                return
            slot = 1 - slot
            futures, start, end, carry, base, at_end = nxt


def _deflate(data: bytes | memoryview) -> bytes:
    body = zlib.compress(data, LEVEL, -15)
    size = 18 + len(body) + 8
    head = struct.pack("<4sIBBHBBHH", b"\x1f\x8b\x08\x04", 0, 0, 0xFF, 6, ord("B"), ord("C"), 2, size - 1)
    return b"".join((head, body, struct.pack("<II", _fast.crc32(data), len(data))))


def _deflate_many(data: memoryview) -> bytes:
    """``data`` as consecutive blocks of :data:`BLOCK_DATA` bytes (the last may be shorter)."""
    return b"".join([_deflate(data[i : i + BLOCK_DATA]) for i in range(0, len(data), BLOCK_DATA)])


class BgzfWriter:
    """Write data as BGZF blocks of :data:`BLOCK_DATA` bytes, deflated on ``pool``, in order; ``close()`` adds the EOF block.

    :meth:`write` does not copy whole blocks: the caller keeps the data
    unchanged until :meth:`wait` for the :meth:`mark` taken after it returns
    (or until ``close``). Block boundaries depend only on the bytes written and
    on :meth:`flush` calls, so the same data gives the same file for any
    thread count.
    """

    def __init__(self, fh: BinaryIO, pool: ThreadPoolExecutor, max_pending: int = 64):
        self.fh, self.pool, self.max_pending = fh, pool, max_pending
        self.buffer = bytearray()
        self.pending: list[Future] = []
        self.written = 0  # tasks whose blocks are in the file

    def write(self, data: bytes | memoryview | np.ndarray) -> None:
        data = memoryview(data).cast("B")
        if self.buffer:
            fill = min(len(data), BLOCK_DATA - len(self.buffer))
            self.buffer += data[:fill]
            data = data[fill:]
            if len(self.buffer) == BLOCK_DATA:
                self._submit(memoryview(bytes(self.buffer)))
                self.buffer.clear()
        whole = len(data) // BLOCK_DATA * BLOCK_DATA
        if whole:
            self._submit(data[:whole])
        self.buffer += data[whole:]

    def flush(self) -> None:
        """End the current block here (e.g. after a BAM header, as htslib does)."""
        if self.buffer:
            self._submit(memoryview(bytes(self.buffer)))
            self.buffer.clear()

    def mark(self) -> int:
        """A point in the stream: :meth:`wait` on it returns once everything written before it is deflated."""
        return self.written + len(self.pending)

    def wait(self, mark: int) -> None:
        """Write out every block up to ``mark`` (so their data may change)."""
        self._drain(max(0, mark - self.written))

    def _submit(self, data: memoryview) -> None:
        step = BLOCK_DATA * TASK_BLOCKS
        for i in range(0, len(data), step):
            self.pending.append(self.pool.submit(_deflate_many, data[i : i + step]))
        if len(self.pending) > self.max_pending:
            self._drain(len(self.pending) - self.max_pending // 2)

    def _drain(self, n: int | None = None) -> None:
        n = len(self.pending) if n is None else min(n, len(self.pending))
        for f in self.pending[:n]:
            self.fh.write(f.result())
        del self.pending[:n]
        self.written += n

    def close(self) -> None:
        self.flush()
        self._drain()
        self.fh.write(EOF_BLOCK)
