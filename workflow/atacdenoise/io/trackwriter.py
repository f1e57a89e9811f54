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
the main process; ``benchmarks/README.md``). The chunks reach it through
:class:`ChunkSender`: copied into shared memory where the platform has it (Linux), else as raw bytes
through a pipe.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Callable, Iterator
from multiprocessing import reduction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from atacdenoise.cpus import cpu_seconds, usable_cores
from atacdenoise.io.bbiwrite import FIRST_ZOOM
from atacdenoise.io.bigwig import BigWigWriter

log = logging.getLogger(__name__)

#: chunks waiting for a writer process (each up to batch_size·interval floats); also its shared-memory slots
QUEUE_CHUNKS = 4

#: values per shared-memory slot (16 MB): a longer chunk goes through the slots in pieces
SLOT_BASES = 4 * 1024 * 1024

#: ``pipe`` sends every chunk through the pipe as raw bytes, even where shared memory is available (A/B runs)
HANDOFF_ENV = "ATACDENOISE_HANDOFF"


def default_write_threads() -> int:
    """Deflate threads per track writer: half the usable cores (two tracks are written at once), 1 to 8."""
    return max(1, min(8, usable_cores() // 2))


#: a per-base float track writer is the project's bigWig writer (the name says what the tracks are)
FloatTrackWriter = BigWigWriter


class _Abort(Exception):
    """The parent asked the writer to stop without keeping the file."""


def shared_slots(count: int, nbytes: int) -> list[int]:
    """Return ``count`` anonymous shared-memory files of ``nbytes`` each (``memfd``), or ``[]`` where there are none.

    Pages are only taken as pieces are copied in (no ``/dev/shm`` file, nothing left behind by a crash). None
    where ``os.memfd_create`` is missing (macOS) or ``ATACDENOISE_HANDOFF=pipe``; the chunks then go through the
    pipe.
    """
    if count <= 0 or nbytes <= 0 or os.environ.get(HANDOFF_ENV, "") == "pipe" or not hasattr(os, "memfd_create"):
        return []
    fds: list[int] = []
    try:
        for k in range(count):
            fds.append(os.memfd_create(f"atacdenoise-chunk-{k}", os.MFD_CLOEXEC))
            os.ftruncate(fds[-1], nbytes)
    except OSError as exc:
        log.warning("no shared memory for the bigWig writers (%s): their chunks go through a pipe", exc)
        for fd in fds:
            os.close(fd)
        return []
    return fds


class ChunkReceiver:
    """The writer process's end of a :class:`ChunkSender`: :meth:`recv` returns the chunks in order.

    Pickled into the child when it starts (its connections and shared-memory files go with it, duplicated for
    the child as the process starts); :meth:`attach` maps the memory there.
    """

    def __init__(self, conn: Connection, acks: Connection, slots: list[int], slot_bases: int):
        self.conn, self.acks, self.slots, self.slot_bases = conn, acks, slots, slot_bases
        self.views: list[np.ndarray] = []

    def __getstate__(self) -> dict:
        return {**self.__dict__, "slots": [reduction.DupFd(fd) for fd in self.slots], "views": []}

    def attach(self) -> None:
        """Map the shared slots (in the child, once)."""
        nbytes = self.slot_bases * 4
        self.views = [np.frombuffer(mmap.mmap(fd.detach(), nbytes), dtype=np.float32) for fd in self.slots]

    def poll(self, timeout: float) -> bool:
        """Whether something arrived within ``timeout`` seconds."""
        return self.conn.poll(timeout)

    def recv(self) -> tuple[str, int, np.ndarray] | str | None:
        """Return the next chunk ``(chrom, start, values)``, ``None`` (the end) or a string (abort).

        A chunk's pieces in shared slots are copied out into one array (the writer keeps its values until their
        blocks are deflated), each slot handed back at once. Raises ``EOFError`` when the parent closed its end.
        """
        values = None
        while True:
            item = self.conn.recv()
            if item is None or isinstance(item, str):
                return item
            chrom, start, n, piece = item
            if piece is None:  # raw bytes follow
                values = np.empty(n, dtype=np.float32)
                if n:
                    self.conn.recv_bytes_into(values)
                return chrom, start, values
            slot, offset, size = piece
            if offset == 0:
                values = np.empty(n, dtype=np.float32)
            values[offset : offset + size] = self.views[slot][:size]
            self.acks.send(slot)
            if offset + size == n:
                return chrom, start, values


class ChunkSender:
    """Hands per-base float32 chunks to one child process, in order, with bounded memory.

    Where there is shared memory (:func:`shared_slots`), each chunk is copied into free slots of ``slot_bases``
    values, piece by piece, and only a header per piece goes through the pipe; the child copies the pieces out
    and hands each slot back. Otherwise the chunk goes through the pipe as raw bytes. Both give the child the
    same chunks. A whole genome is ~12 GB a track: on 2 EPYC cores a pipe moved 0.43 GB/s for 2.4 CPU seconds
    per GB of the two processes, the slots 5.9 GB/s for 0.29 (``benchmarks/rounding.py``).

    :meth:`receiver` is the child's end, to pass as a process argument, and :meth:`started` closes it here once
    the child runs; :meth:`pieces` copies a chunk in, waiting for free slots while ``alive()``, and :meth:`send`
    sends what it yields (one thread calls both: :class:`TrackWriterProcess`'s sender).
    """

    def __init__(self, ctx: Any, slot_bases: int = SLOT_BASES, slots: int = QUEUE_CHUNKS):
        self._recv_conn, self.conn = ctx.Pipe(duplex=False)
        self.acks, self._ack_conn = ctx.Pipe(duplex=False)
        self.slot_bases = int(slot_bases)
        self._fds = shared_slots(slots, self.slot_bases * 4)
        self._maps = [mmap.mmap(fd, self.slot_bases * 4) for fd in self._fds]
        self._views = [np.frombuffer(m, dtype=np.float32) for m in self._maps]
        self._free = list(range(len(self._fds)))

    @property
    def shared(self) -> bool:
        """Whether the chunks go through shared memory (else through the pipe)."""
        return bool(self._fds)

    def receiver(self) -> ChunkReceiver:
        """Return the child's end, to pass as a process argument."""
        return ChunkReceiver(self._recv_conn, self._ack_conn, list(self._fds), self.slot_bases)

    def started(self) -> None:
        """Close the child's ends in this process (after the child started with :meth:`receiver`)."""
        self._recv_conn.close()
        self._ack_conn.close()

    def pieces(self, chrom: str, start: int, values: np.ndarray, alive: Callable[[], bool]) -> Iterator[tuple]:
        """Yield what :meth:`send` sends for one chunk: each piece's header once it is in a slot, else the chunk.

        Raises ``BrokenPipeError`` when the child is gone while this waits for a slot.
        """
        n = values.size
        if not self._fds or not n:
            yield chrom, start, n, values
            return
        for offset in range(0, n, self.slot_bases):
            size = min(self.slot_bases, n - offset)
            slot = self._take(alive)
            np.copyto(self._views[slot][:size], values[offset : offset + size])
            yield chrom, start, n, (slot, offset, size)

    def _take(self, alive: Callable[[], bool]) -> int:
        """Return a free slot: one the child handed back, else wait for one."""
        try:
            while self.acks.poll():
                self._free.append(self.acks.recv())
            while not self._free:
                if self.acks.poll(1):
                    self._free.append(self.acks.recv())
                elif not alive():
                    raise BrokenPipeError("the writer process is gone")
        except EOFError:  # the child closed its end: it is gone
            raise BrokenPipeError("the writer process is gone") from None
        return self._free.pop()

    def send(self, item: Any) -> None:
        """Send a piece's header, a chunk (header, then raw bytes), ``None`` or a string through the pipe."""
        if item is None or isinstance(item, str) or isinstance(item[3], tuple):
            self.conn.send(item)
            return
        chrom, start, n, values = item
        self.conn.send((chrom, start, n, None))
        if n:
            self.conn.send_bytes(memoryview(values).cast("B"))

    def close(self) -> None:
        """Close the pipes and the shared memory (this process's side)."""
        for conn in (self.conn, self.acks):
            conn.close()
        self._views.clear()
        for m in self._maps:
            with contextlib.suppress(BufferError):  # a view still held: unmapped when it goes
                m.close()
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def _write_loop(
    path: str,
    sizes: dict[str, int],
    max_zooms: int,
    threads: int,
    chunks: ChunkReceiver,
    result: mp.Queue,
    parent: int,
    first_zoom: int = FIRST_ZOOM,
    smallest: bool = False,
) -> None:
    """Child process: write the chunks that arrive until ``None`` (keep the file) or ``"abort"`` (delete it).

    Puts the process's CPU seconds on ``result`` when the file is done, else the reason it is not.
    """
    try:
        cpu0 = cpu_seconds()
        chunks.attach()
        with FloatTrackWriter(
            path, sizes, max_zooms, in_place=True, threads=threads, fast=True, first_zoom=first_zoom, smallest=smallest
        ) as writer:  # the parent named it and renames it
            while True:
                if not chunks.poll(5):
                    if os.getppid() != parent:  # the parent died: leave no file behind
                        raise _Abort()
                    continue
                try:
                    item = chunks.recv()
                except EOFError:  # the parent closed its end without finishing: leave no file behind
                    raise _Abort() from None
                if item is None:
                    break
                if isinstance(item, str):
                    raise _Abort()
                writer.add(*item)
        result.put(cpu_seconds() - cpu0)
    except BaseException as exc:  # reported to the parent, which raises it
        result.put(f"{type(exc).__name__}: {exc}")


class TrackWriterProcess:
    """A :class:`FloatTrackWriter` in a child process, fed chunk by chunk.

    ``add`` blocks once :data:`QUEUE_CHUNKS` chunks wait, so memory stays bounded.
    ``close`` waits for the file (written under ``path``; raises if the child
    failed) and sets ``cpu_s``, the child's CPU seconds; ``abort`` stops the child and leaves no file.
    ``first_zoom`` (bases per record of the first zoom level) and ``smallest`` (compact outputs: see
    :func:`~atacdenoise.io.bbiwrite.encode_chunk`) go to :class:`~atacdenoise.io.bbiwrite.BigWigFileWriter`.

    A thread of this process hands the chunks on through a :class:`ChunkSender`: through shared memory in pieces
    of ``slot_bases`` values where there is some (each copied once on either side), else as raw bytes through a
    pipe (no pickling: an ``mp.Queue`` copied each chunk twice more, under the GIL). The file is the same either
    way.
    """

    def __init__(
        self,
        path: str | Path,
        sizes: dict[str, int],
        max_zooms: int = 10,
        threads: int | None = None,
        first_zoom: int = FIRST_ZOOM,
        smallest: bool = False,
        slot_bases: int = SLOT_BASES,
    ):
        ctx = mp.get_context("spawn")  # no fork of a process that holds CUDA / OpenMP threads
        self.path = Path(path)
        self._chunks = ChunkSender(ctx, slot_bases)
        self.threads = threads or default_write_threads()
        #: CPU seconds the child spent on the file (all its threads), known once :meth:`close` returned
        self.cpu_s: float | None = None
        self._result = ctx.Queue()
        self._proc = ctx.Process(
            target=_write_loop,
            args=(
                str(path),
                dict(sizes),
                max_zooms,
                self.threads,
                self._chunks.receiver(),
                self._result,
                os.getpid(),
                first_zoom,
                smallest,
            ),
            name=f"write {self.path.name}",
            daemon=True,
        )
        self._proc.start()
        self._chunks.started()  # the child's ends: this process keeps only its own
        self._pending: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._send_error: BaseException | None = None
        self._sender = threading.Thread(target=self._send_loop, name=f"send {self.path.name}", daemon=True)
        self._sender.start()

    @property
    def shared(self) -> bool:
        """Whether chunks go through shared memory (else through the pipe)."""
        return self._chunks.shared

    def _send_loop(self) -> None:
        """Thread: hand each queued chunk to the child (into shared slots, or through the pipe), in order."""
        try:
            while True:
                item = self._pending.get()
                if item is None or isinstance(item, str):
                    self._chunks.send(item)
                    return
                for piece in self._chunks.pieces(*item, self._proc.is_alive):
                    self._chunks.send(piece)
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
            message = None
        if not isinstance(message, str):
            message = f"exit status {self._proc.exitcode}" if self._send_error is None else str(self._send_error)
        self._chunks.close()
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
        self._chunks.close()
        if isinstance(message, str):
            raise RuntimeError(f"{self.path}: bigWig writer failed: {message}")
        self.cpu_s = float(message)

    def abort(self) -> None:
        """Stop the child without keeping the file (used on errors)."""
        if self._proc.is_alive():
            with contextlib.suppress(queue.Full):
                self._pending.put("abort", timeout=5)
            self._proc.join(timeout=30)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join()
        self._chunks.close()  # a sender still blocked in a send gets an error and ends
        self.path.unlink(missing_ok=True)
