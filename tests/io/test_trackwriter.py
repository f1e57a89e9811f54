"""The track writer process and its hand-off of chunks (shared memory where there is some, else a pipe)."""

from __future__ import annotations

import filecmp
import hashlib
import multiprocessing as mp
import os

import numpy as np
import pytest

from atacdenoise.io.bigwig import read_bigwig
from atacdenoise.io.trackwriter import HANDOFF_ENV, QUEUE_CHUNKS, ChunkReceiver, ChunkSender, TrackWriterProcess

#: chunk lengths around a slot of 1,000 values: empty, one base, a slot exactly, pieces with a remainder
LENGTHS = [0, 1, 999, 1_000, 1_001, 2_000, 4_321, 7_777, 12]


def _echo(receiver: ChunkReceiver, out) -> None:
    """Child: report each chunk received as (chrom, start, length, sha1 of its bytes), then None."""
    receiver.attach()
    while (item := receiver.recv()) is not None:
        chrom, start, values = item
        out.put((chrom, start, values.size, hashlib.sha1(values.tobytes()).hexdigest()))
    out.put(None)


@pytest.mark.parametrize("route", ["shared", "pipe"])
def test_chunk_hand_off_gives_the_child_every_chunk_exactly_in_order(route, monkeypatch):
    """Chunks longer than a slot go in pieces and come out whole; each route gives the same chunks."""
    if route == "pipe":
        monkeypatch.setenv(HANDOFF_ENV, "pipe")
    ctx = mp.get_context("spawn")
    sender = ChunkSender(ctx, slot_bases=1_000)
    if route == "shared" and not hasattr(os, "memfd_create"):
        pytest.fail("no os.memfd_create on this Linux machine: the shared route is not tested")
    assert sender.shared == (route == "shared")
    out = ctx.Queue()
    child = ctx.Process(target=_echo, args=(sender.receiver(), out), daemon=True)
    child.start()
    sender.started()
    rng = np.random.default_rng(3)
    sent, pos = [], 0
    for n in LENGTHS * 3:  # three rounds: every slot reused
        values = rng.random(n, dtype=np.float32)
        for item in sender.pieces("chrA", pos, values, child.is_alive):
            sender.send(item)
        sent.append(("chrA", pos, n, hashlib.sha1(values.tobytes()).hexdigest()))
        pos += n
    sender.send(None)
    got = list(iter(lambda: out.get(timeout=30), None))
    child.join(timeout=30)
    sender.close()
    assert got == sent


def test_track_writer_process_writes_the_same_file_through_either_route(tmp_path, monkeypatch):
    """Shared memory in pieces (small slots) or the pipe: byte-identical bigWigs with the values as given."""
    sizes = {"chrA": 50_000, "chrB": 20_000}
    rng = np.random.default_rng(5)
    values = {c: np.round(rng.random(n, dtype=np.float32) * 8) / 8 for c, n in sizes.items()}
    for route in ("shared", "pipe"):
        if route == "pipe":
            monkeypatch.setenv(HANDOFF_ENV, "pipe")
        w = TrackWriterProcess(tmp_path / f"{route}.bw", sizes, max_zooms=3, threads=2, slot_bases=3_000)
        assert w.shared == (route == "shared")
        for c, v in values.items():
            for k in range(0, v.size, 7_000):
                w.add(c, k, v[k : k + 7_000])
        w.close()
    assert filecmp.cmp(tmp_path / "shared.bw", tmp_path / "pipe.bw", shallow=False)
    for c, v in values.items():
        assert np.array_equal(read_bigwig(tmp_path / "shared.bw", c), v)


def test_track_writer_process_writes_exactly_and_abort_leaves_no_file(tmp_path):
    values = np.random.default_rng(9).random(30_000, dtype=np.float32)
    w = TrackWriterProcess(tmp_path / "kept.bw", {"chrA": 30_000}, max_zooms=0)
    w.add("chrA", 0, values[:20_000])
    w.add("chrA", 20_000, values[20_000:])
    assert w.cpu_s is None
    w.close()
    assert w.cpu_s > 0  # the child's CPU seconds on the file (infer's "busy per stage")
    assert np.array_equal(read_bigwig(tmp_path / "kept.bw", "chrA"), values)
    w = TrackWriterProcess(tmp_path / "dropped.bw", {"chrA": 30_000}, max_zooms=0)
    w.add("chrA", 0, values[:20_000])
    w.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.bw"]


@pytest.mark.parametrize("slot_bases", [300, 4_000])
def test_track_writer_process_reports_a_failing_child_and_leaves_no_file(tmp_path, slot_bases):
    """A chunk the child's writer refuses (past the chromosome's end): add or close raises with the child's reason.

    Also while the sender waits for a shared slot the child will never hand back (``slot_bases`` 300: pieces).
    """
    values = np.ones(1_000, np.float32)
    w = TrackWriterProcess(tmp_path / "bad.bw", {"chrA": 1_500}, max_zooms=0, slot_bases=slot_bases)
    with pytest.raises(RuntimeError, match=r"bad\.bw: bigWig writer failed: ValueError: values run past the end"):
        w.add("chrA", 0, values)
        w.add("chrA", 1_000, values)  # ends at 2,000 > 1,500
        for k in range(QUEUE_CHUNKS + 2):  # the child is gone: a later add or the close raises
            w.add("chrA", 2_000 + 1_000 * k, values)
        w.close()
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_no_shared_memory_falls_back_to_the_pipe_with_a_warning(tmp_path, monkeypatch, caplog):
    """A machine that refuses the memfd (out of file handles, a sandbox): the chunks go through the pipe."""
    from atacdenoise.io import trackwriter

    def refuse(*args):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(trackwriter.os, "memfd_create", refuse, raising=False)
    assert trackwriter.shared_slots(4, 1024) == []
    assert "no shared memory for the bigWig writers" in caplog.text
    values = np.arange(5_000, dtype=np.float32)
    w = TrackWriterProcess(tmp_path / "piped.bw", {"chrA": 5_000}, max_zooms=0)
    assert not w.shared
    w.add("chrA", 0, values)
    w.close()
    assert np.array_equal(read_bigwig(tmp_path / "piped.bw", "chrA"), values)
