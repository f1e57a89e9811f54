"""Writing per-base float tracks (denoised coverage, peak probability) to bigWig, fast and in bounded memory.

Two things make the generic :class:`~atacdenoise.bigwig.BigWigWriter` slow or
memory-hungry for such tracks, where nearly every base has its own value:

* entry lists (chrom, start, end, value per base) cost Python objects per base;
  fixed-step entries take a numpy array straight to libBigWig, ~8x faster and
  4 bytes a base on disk instead of 12;
* libBigWig builds zoom levels in memory when the file is closed, about 14 bytes
  per base of per-base data (some 40 GB for hg38). :class:`FloatTrackWriter`
  therefore takes ``max_zooms``; inference turns zoom levels off above a genome
  size (see ``commands/infer.py``).

libBigWig compresses every block with zlib while holding the GIL, ~8 million
bases a second: :class:`TrackWriterProcess` runs one writer in a child process,
so two tracks are compressed in parallel and the process feeding the GPU is not
held up.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
from pathlib import Path

import numpy as np

from .atomic import remove_stale_temps
from .bigwig import BigWigWriter
from .intervals import intervals_from_mask

log = logging.getLogger(__name__)

#: in a dense chunk, runs of zeros at least this long are left out (shorter ones are written)
DENSE_SKIP_ZEROS = 1024
#: chunks waiting for a writer process (each up to batch_size·interval floats)
QUEUE_CHUNKS = 4


class FloatTrackWriter(BigWigWriter):
    """:class:`BigWigWriter` for per-base float tracks: dense chunks as fixed-step entries, zoom levels optional.

    Chunks that run-length encoding shrinks at least 4-fold go the parent's way
    (bedGraph-like entries, zeros skipped). Others are written as fixed-step
    entries, split only at runs of at least :data:`DENSE_SKIP_ZEROS` zeros (left out;
    a missing base reads as 0). Values are stored as float32, exactly.
    """

    def __init__(self, path: str | Path, sizes: dict[str, int], max_zooms: int = 10, in_place: bool = False):
        super().__init__(path, sizes, skip_zeros=True, in_place=in_place)
        self.max_zooms = max_zooms

    def __enter__(self) -> "FloatTrackWriter":
        import pyBigWig

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.in_place:
            remove_stale_temps(self.path)
        self.bw = pyBigWig.open(str(self.tmp), "w")
        self.bw.addHeader(list(self.sizes.items()), maxZooms=self.max_zooms)
        return self

    def add(self, chrom: str, start: int, values: np.ndarray) -> None:
        """Write ``values`` (float32[n], per base) at ``chrom:start``; calls must move forward along the genome."""
        values = np.asarray(values, dtype=np.float32)
        runs = np.count_nonzero(values[1:] != values[:-1]) + 1 if values.size else 0
        if runs * 4 <= values.size:
            return super().add(chrom, start, values)
        idx = self._order[chrom]
        if (idx, start) < self._last:
            raise ValueError(f"bigWig entries out of order at {chrom}:{start}")
        if start + values.size > self.sizes[chrom]:
            raise ValueError(f"values run past the end of {chrom}")
        starts, ends = intervals_from_mask(values != 0)
        if starts.size:
            opens = np.concatenate(([True], starts[1:] - ends[:-1] >= DENSE_SKIP_ZEROS))
            closes = np.concatenate((opens[1:], [True]))
            for a, b in zip(starts[opens].tolist(), ends[closes].tolist()):  # one call per segment, not per base
                self.bw.addEntries(chrom, start + a, values=values[a:b], span=1, step=1)
        self._last = (idx, start + values.size)


class _Abort(Exception):
    """The parent asked the writer to stop without keeping the file."""


def _write_loop(path: str, sizes: dict[str, int], max_zooms: int, chunks: mp.Queue, result: mp.Queue, parent: int) -> None:
    """Child process: write the chunks that arrive until ``None`` (keep the file) or ``"abort"`` (delete it)."""
    try:
        with FloatTrackWriter(path, sizes, max_zooms, in_place=True) as writer:  # the parent named it and renames it
            while True:
                try:
                    item = chunks.get(timeout=5)
                except queue.Empty:
                    if os.getppid() != parent:  # the parent died: leave no file behind
                        raise _Abort() from None
                    continue
                if item is None:
                    break
                if isinstance(item, str):
                    raise _Abort()
                writer.add(*item)
        result.put(None)
    except BaseException as exc:  # reported to the parent, which raises it
        result.put(f"{type(exc).__name__}: {exc}")


class TrackWriterProcess:
    """A :class:`FloatTrackWriter` in a child process, fed chunk by chunk.

    ``add`` blocks once :data:`QUEUE_CHUNKS` chunks wait, so memory stays bounded.
    ``close`` waits for the file (written under ``path``; raises if the child
    failed); ``abort`` stops the child and leaves no file.
    """

    def __init__(self, path: str | Path, sizes: dict[str, int], max_zooms: int = 10):
        ctx = mp.get_context("spawn")  # no fork of a process that holds CUDA / OpenMP threads
        self.path = Path(path)
        self._chunks = ctx.Queue(maxsize=QUEUE_CHUNKS)
        self._result = ctx.Queue()
        self._proc = ctx.Process(
            target=_write_loop,
            args=(str(path), dict(sizes), max_zooms, self._chunks, self._result, os.getpid()),
            name=f"write {self.path.name}",
            daemon=True,
        )
        self._proc.start()

    def _put(self, item) -> None:
        while True:
            try:
                self._chunks.put(item, timeout=1)
                return
            except queue.Full:
                if not self._proc.is_alive():
                    self._raise_failure()

    def _raise_failure(self) -> None:
        try:
            message = self._result.get(timeout=5)
        except queue.Empty:
            message = f"exit status {self._proc.exitcode}"
        self._drop_queue()
        raise RuntimeError(f"{self.path}: bigWig writer failed: {message}")

    def _drop_queue(self) -> None:
        """Discard chunks not yet sent: with no reader left, the queue's feeder thread would block exit forever."""
        self._chunks.cancel_join_thread()
        self._chunks.close()

    def add(self, chrom: str, start: int, values: np.ndarray) -> None:
        """Queue ``values`` (float32[n]) for ``chrom:start``; calls must move forward along the genome."""
        self._put((chrom, int(start), np.ascontiguousarray(values, dtype=np.float32)))

    def close(self) -> None:
        """Finish the file; raises when the child failed."""
        self._put(None)
        while True:
            try:
                message = self._result.get(timeout=1)
                break
            except queue.Empty:
                if not self._proc.is_alive():
                    self._raise_failure()
        self._proc.join()
        self._chunks.close()
        if message is not None:
            raise RuntimeError(f"{self.path}: bigWig writer failed: {message}")

    def abort(self) -> None:
        """Stop the child without keeping the file (used on errors)."""
        if self._proc.is_alive():
            try:
                self._chunks.put("abort", timeout=5)
            except queue.Full:
                pass
            self._proc.join(timeout=30)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join()
        self._drop_queue()
        self.path.unlink(missing_ok=True)
