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
import threading
from multiprocessing.connection import Connection
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
    conn: Connection,
    result: mp.Queue,
    parent: int,
    first_zoom: int = FIRST_ZOOM,
    smallest: bool = False,
) -> None:
    """Child process: write the chunks that arrive until ``None`` (keep the file) or ``"abort"`` (delete it).

    Each chunk comes as a header ``(chrom, start, n)`` and then its ``n`` float32 values as raw bytes, received
    straight into the array the writer keeps.
    """
    try:
        with FloatTrackWriter(
            path, sizes, max_zooms, in_place=True, threads=threads, fast=True, first_zoom=first_zoom, smallest=smallest
        ) as writer:  # the parent named it and renames it
            while True:
                if not conn.poll(5):
                    if os.getppid() != parent:  # the parent died: leave no file behind
                        raise _Abort()
                    continue
                try:
                    item = conn.recv()
                except EOFError:  # the parent closed its end without finishing: leave no file behind
                    raise _Abort() from None
                if item is None:
                    break
                if isinstance(item, str):
                    raise _Abort()
                chrom, start, n = item
                values = np.empty(n, dtype=np.float32)
                if n:
                    conn.recv_bytes_into(values)
                writer.add(chrom, start, values)
        result.put(None)
    except BaseException as exc:  # reported to the parent, which raises it
        result.put(f"{type(exc).__name__}: {exc}")


class TrackWriterProcess:
    """A :class:`FloatTrackWriter` in a child process, fed chunk by chunk.

    ``add`` blocks once :data:`QUEUE_CHUNKS` chunks wait, so memory stays bounded.
    ``close`` waits for the file (written under ``path``; raises if the child
    failed); ``abort`` stops the child and leaves no file. ``first_zoom`` (bases per record of the first
    zoom level) and ``smallest`` (compact outputs: see :func:`~atacdenoise.io.bbiwrite.encode_chunk`) go to
    :class:`~atacdenoise.io.bbiwrite.BigWigFileWriter`.

    The chunks go through a pipe as raw bytes, sent by a thread of this process: no pickling, which copied
    each chunk twice more and held the GIL while it did (a whole genome is ~12 GB a track; an
    ``mp.Queue`` moved 0.3 GB/s here, the raw pipe 1 GB/s, ``benchmarks/README.md``).
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
        receiver, self._conn = ctx.Pipe(duplex=False)
        self._result = ctx.Queue()
        self._proc = ctx.Process(
            target=_write_loop,
            args=(
                str(path),
                dict(sizes),
                max_zooms,
                threads or default_write_threads(),
                receiver,
                self._result,
                os.getpid(),
                first_zoom,
                smallest,
            ),
            name=f"write {self.path.name}",
            daemon=True,
        )
        self._proc.start()
        receiver.close()  # the child's end: this process keeps only its own
        self._pending: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._send_error: BaseException | None = None
        self._sender = threading.Thread(target=self._send_loop, name=f"send {self.path.name}", daemon=True)
        self._sender.start()

    def _send_loop(self) -> None:
        """Thread: send each queued item to the child (a chunk as its header, then its raw bytes), in order."""
        try:
            while True:
                item = self._pending.get()
                if item is None or isinstance(item, str):
                    self._conn.send(item)
                    return
                chrom, start, values = item
                self._conn.send((chrom, start, values.size))
                if values.size:
                    self._conn.send_bytes(memoryview(values).cast("B"))
        except (OSError, ValueError) as exc:  # the child is gone (broken pipe): add/close report why
            self._send_error = exc

    def _put(self, item) -> None:
        while True:
            if self._send_error is not None or not self._proc.is_alive():
                self._raise_failure()
            try:
                self._pending.put(item, timeout=1)
                return
            except queue.Full:
                continue

    def _raise_failure(self) -> None:
        try:
            message = self._result.get(timeout=5)
        except queue.Empty:
            message = f"exit status {self._proc.exitcode}" if self._send_error is None else str(self._send_error)
        self._conn.close()
        raise RuntimeError(f"{self.path}: bigWig writer failed: {message}")

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
        self._sender.join()
        self._proc.join()
        self._conn.close()
        if message is not None:
            raise RuntimeError(f"{self.path}: bigWig writer failed: {message}")

    def abort(self) -> None:
        """Stop the child without keeping the file (used on errors)."""
        if self._proc.is_alive():
            with contextlib.suppress(queue.Full):
                self._pending.put("abort", timeout=5)
            self._proc.join(timeout=30)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join()
        self._conn.close()  # a sender still blocked in a send gets an error and ends
        self.path.unlink(missing_ok=True)
