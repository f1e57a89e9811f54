"""Writing per-base float tracks (denoised coverage, peak probability) to bigWig, fast and in bounded memory.

:class:`FloatTrackWriter` is :class:`~atacdenoise.io.bigwig.BigWigWriter`, the
atomic front of the native writer (:mod:`atacdenoise.io.bbiwrite`): blocks are
deflated on a thread pool and zoom levels are streamed to disk, so
whole-genome tracks get zoom levels too (libBigWig built them in memory,
~14 bytes a base, and wrote ~9 M bases/s in one thread; see
``benchmarks/bigwig_write.py``).
:class:`TrackWriterProcess` runs one writer in a child process (deflating with
ISA-L: model outputs are not bit-reproducible across devices anyway), so the two
tracks of inference are written in parallel and the process feeding the GPU
is not held up by the writers' Python work under its GIL (whole genome, tiny
model, 2 cores: 238-271 s this way, 257-294 s with the writers as threads of
the main process; ``benchmarks/README.md``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
from pathlib import Path

import numpy as np

from atacdenoise.io.bbiwrite import FIRST_ZOOM
from atacdenoise.io.bigwig import BigWigWriter

log = logging.getLogger(__name__)

#: chunks waiting for a writer process (each up to batch_size·interval floats)
QUEUE_CHUNKS = 4


def default_write_threads() -> int:
    """Deflate threads per track writer: half the usable cores (two tracks are written at once), 1 to 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) // 2))


#: a per-base float track writer is the project's bigWig writer (the name says what the tracks are)
FloatTrackWriter = BigWigWriter


class _Abort(Exception):
    """The parent asked the writer to stop without keeping the file."""


def _write_loop(
    path: str,
    sizes: dict[str, int],
    max_zooms: int,
    threads: int,
    chunks: mp.Queue,
    result: mp.Queue,
    parent: int,
    first_zoom: int = FIRST_ZOOM,
    smallest: bool = False,
) -> None:
    """Child process: write the chunks that arrive until ``None`` (keep the file) or ``"abort"`` (delete it)."""
    try:
        with FloatTrackWriter(
            path, sizes, max_zooms, in_place=True, threads=threads, fast=True, first_zoom=first_zoom, smallest=smallest
        ) as writer:  # the parent named it and renames it
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
    failed); ``abort`` stops the child and leaves no file. ``first_zoom`` (bases per record of the first
    zoom level) and ``smallest`` (step-like chunks encoded both ways, the smaller kept) go to
    :class:`~atacdenoise.io.bbiwrite.BigWigFileWriter`.
    """

    def __init__(
        self,
        path: str | Path,
        sizes: dict[str, int],
        max_zooms: int = 10,
        threads: int | None = None,
        first_zoom: int = FIRST_ZOOM,
        smallest: bool = False,
    ):
        ctx = mp.get_context("spawn")  # no fork of a process that holds CUDA / OpenMP threads
        self.path = Path(path)
        self._chunks = ctx.Queue(maxsize=QUEUE_CHUNKS)
        self._result = ctx.Queue()
        self._proc = ctx.Process(
            target=_write_loop,
            args=(
                str(path),
                dict(sizes),
                max_zooms,
                threads or default_write_threads(),
                self._chunks,
                self._result,
                os.getpid(),
                first_zoom,
                smallest,
            ),
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
            with contextlib.suppress(queue.Full):
                self._chunks.put("abort", timeout=5)
            self._proc.join(timeout=30)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join()
        self._drop_queue()
        self.path.unlink(missing_ok=True)
