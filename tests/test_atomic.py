"""Atomic outputs on a shared file system.

Temporary names carry host and pid; the next attempt at an output deletes what killed runs of *this*
host left (files, index companions, directories, scratch directories) and never touches another host's
temporaries, whose pids mean nothing here; finished files are fsynced before the rename and the
directory after it.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atacdenoise.atomic import (
    atomic_output,
    atomic_output_dir,
    host_name,
    remove_stale_temps,
    scratch_dir,
    temp_dir_for,
    temp_path_for,
)
from builders import fragment_table
from conftest import REPO

DEMO = REPO / "resources" / "demo"


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def node_a(monkeypatch) -> str:
    """Pretend this machine is ``node-a.cluster.example`` (a domain name: dots are not kept)."""
    monkeypatch.setattr(socket, "gethostname", lambda: "node-a.cluster.example")
    return "node-a_cluster_example"


# --- names ------------------------------------------------------------------------------------------


def test_temporary_names_carry_the_sanitised_host_name_and_pid(node_a, tmp_path):
    assert host_name() == node_a
    tmp = temp_path_for(tmp_path / "S.track.bw")
    assert re.fullmatch(rf"\.S\.track\.tmp-{node_a}-{os.getpid()}-[0-9a-f]{{8}}\.bw", tmp.name), tmp.name
    assert tmp.parent == tmp_path
    d = temp_dir_for(tmp_path / "5M.rep1")
    assert re.fullmatch(rf"\.5M\.rep1\.tmp-{node_a}-{os.getpid()}-[0-9a-f]{{8}}", d.name), d.name
    assert temp_path_for(tmp_path / "a.bw") != temp_path_for(tmp_path / "a.bw")  # never shared, not even in-process


def test_odd_and_long_host_names_become_short_safe_tokens(monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "gpu 7/ü.example.org")
    assert host_name() == "gpu_7___example_org"
    long_a, long_b = "n" * 80 + "a", "n" * 80 + "b"
    monkeypatch.setattr(socket, "gethostname", lambda: long_a)
    a = host_name()
    monkeypatch.setattr(socket, "gethostname", lambda: long_b)
    assert len(a) <= 63 and len(host_name()) <= 63 and a != host_name()


# --- reaping ----------------------------------------------------------------------------------------


def test_only_this_hosts_temporaries_of_dead_processes_are_removed(node_a, tmp_path):
    d = tmp_path / "we[ir]d dir"
    d.mkdir()
    target = d / "S [1].track.bw"
    dead, dead2, live = _dead_pid(), _dead_pid(), os.getpid()
    nonce = "0123abcd"
    stale = [
        d / f".S [1].track.tmp-{node_a}-{dead}-{nonce}.bw",
        d / f".S [1].track.tmp-{node_a}-{dead}-{nonce}.bw.bai",  # index written beside a temporary BAM
        d / f".S [1].track.tmp-{dead}.bw",  # the pid-only name of earlier versions: this host's
        d / f"..S [1].track.tmp-{dead}.tmp-{dead2}.bw",  # the old doubled name
    ]
    keep = [
        d / f".S [1].track.tmp-{node_a}-{live}-{nonce}.bw",  # a run in progress here
        d / f".S [1].track.tmp-{live}.bw",
        d / f".S [1].track.tmp-node-b-{dead}-{nonce}.bw",  # another node: its pid says nothing here
        d / f".S [1].track.tmp-node-b-{dead}-{nonce}.bw.bai",
        d / f"..S [1].track.tmp-{node_a}-{dead}-{nonce}.tmp-node-b-{dead2}-{nonce}.bw",  # partly another node's
        d / f".S [1].peaks.tmp-{node_a}-{dead}-{nonce}.narrowPeak",  # another output
        d / f".other.track.tmp-{node_a}-{dead}-{nonce}.bw",
        d / ".S [1].track.tmp-whatever.bw",  # not a name this module makes
        target,
    ]
    for p in stale + keep:
        p.write_text("x")
    assert sorted(remove_stale_temps(target)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def test_a_temporary_of_another_host_with_a_pid_dead_here_is_kept_by_atomic_output(node_a, tmp_path):
    target = tmp_path / "a.tsv"
    theirs = tmp_path / f".a.tmp-node-b-{_dead_pid()}-0123abcd.tsv"
    theirs.write_text("half written on node-b")
    mine = tmp_path / f".a.tmp-{node_a}-{_dead_pid()}-0123abcd.tsv"
    mine.write_text("left by a killed run here")
    with atomic_output(target) as tmp:
        tmp.write_text("done\n")
    assert target.read_text() == "done\n"
    assert theirs.read_text() == "half written on node-b" and not mine.exists()


def test_an_old_temporary_of_another_host_is_logged_once_never_deleted(node_a, tmp_path, caplog):
    target = tmp_path / "a.bw"
    theirs = tmp_path / f".a.tmp-node-b-{_dead_pid()}-0123abcd.bw"
    theirs.write_text("x")
    old = time.time() - 30 * 86400
    os.utime(theirs, (old, old))
    with caplog.at_level(logging.WARNING, logger="atacdenoise.atomic"):
        assert remove_stale_temps(target) == [] and remove_stale_temps(target) == []
    msgs = [r.getMessage() for r in caplog.records if str(theirs) in r.getMessage()]
    assert len(msgs) == 1 and "host node-b" in msgs[0] and "never deleted automatically" in msgs[0], msgs
    assert theirs.exists()


def test_stale_temporary_directories_are_removed_live_and_foreign_ones_kept(node_a, tmp_path):
    target = tmp_path / "5M.rep1"
    dead = _dead_pid()
    stale = tmp_path / f".5M.rep1.tmp-{node_a}-{dead}-0123abcd"
    legacy = tmp_path / f".5M.rep1.tmp-{dead}"  # write_dataset's name before
    live = tmp_path / f".5M.rep1.tmp-{node_a}-{os.getpid()}-0123abcd"
    foreign = tmp_path / f".5M.rep1.tmp-node-b-{dead}-0123abcd"
    for d in (stale, legacy, live, foreign):
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "chr1.noisy.npy").write_bytes(b"\0" * 100)
    assert sorted(remove_stale_temps(target)) == sorted([stale, legacy])
    assert live.is_dir() and foreign.is_dir() and not stale.exists() and not legacy.exists()


# --- directories and scratch ------------------------------------------------------------------------


def test_atomic_output_dir_replaces_the_old_directory_only_when_complete(node_a, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old.npy").write_text("old")
    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        (tmp / "new.npy").write_text("half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == ["old.npy"]
    with atomic_output_dir(out) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "new.npy").write_text("new")
    assert [p.relative_to(out).as_posix() for p in sorted(out.rglob("*.npy"))] == ["sub/new.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary, no old copy left


def test_scratch_directories_of_killed_runs_are_reaped_by_the_next_run(node_a, tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".atacdenoise-callpeak.tmp-{node_a}-{dead}-0123abcd"
    foreign = tmp_path / f".atacdenoise-callpeak.tmp-node-b-{dead}-0123abcd"
    for d in (stale, foreign):
        d.mkdir()
        (d / "cutsites.bed").write_text("chr1\t0\t1\n")
    with scratch_dir("atacdenoise-callpeak", tmp_path) as work:
        assert work.parent == tmp_path and work.stat().st_mode & 0o777 == 0o700
        assert not stale.exists() and foreign.exists()
        (work / "x").write_text("x")
    assert not work.exists() and foreign.exists()


# --- durability -------------------------------------------------------------------------------------


def _record_syncs(monkeypatch) -> list:
    """Record each fsync (what it synced) and os.replace, in order, then do the real call."""
    events: list = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync", st.st_ino, os.path.isdir(f"/proc/self/fd/{fd}") if sys.platform == "linux" else None))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.lstat(src).st_ino, Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_the_temporary_is_fsynced_before_the_rename_and_the_directory_after(monkeypatch, tmp_path):
    target = tmp_path / "model.pt"
    events = _record_syncs(monkeypatch)
    with atomic_output(target) as tmp:
        # another program writes the file (as samtools or pyBigWig do): the fsync must reopen it
        subprocess.run([sys.executable, "-c", f"open({str(tmp)!r}, 'wb').write(b'w' * 1000)"], check=True)
        ino = os.stat(tmp).st_ino
    dir_ino = os.stat(tmp_path).st_ino
    assert [e[:2] for e in events] == [("fsync", ino), ("replace", ino), ("fsync", dir_ino)], events
    assert events[1][2] == target
    assert target.read_bytes() == b"w" * 1000


def test_dataset_directory_files_are_fsynced_before_it_appears(monkeypatch, tmp_path):
    from atacdenoise.model.dataset import write_dataset

    events = _record_syncs(monkeypatch)
    arrays = {k: np.arange(10) for k in ("noisy", "clean", "labels", "mask")}
    write_dataset(tmp_path / "ds", {"sample": "S"}, [("chr1", arrays)])
    # the pair's noisy track and meta.json, its own clean part's folder, clean track, flags and meta.json
    files = {os.stat(p).st_ino for p in (tmp_path / "ds").rglob("*")}
    synced = {e[1] for e in events[: [e[0] for e in events].index("replace")] if e[0] == "fsync"}
    assert files <= synced and len(files) == 6, (files, events)
    assert events[-1] == ("fsync", os.stat(tmp_path).st_ino, True if sys.platform == "linux" else None)


def test_a_failed_fsync_leaves_no_file_under_the_final_name(monkeypatch, tmp_path):
    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    target = tmp_path / "a.tsv"
    with pytest.raises(OSError, match="Input/output"), atomic_output(target) as tmp:
        tmp.write_text("data that never reached the disk\n")
    assert list(tmp_path.iterdir()) == []


def test_file_systems_without_fsync_still_get_the_output(monkeypatch, tmp_path):
    def unsupported(fd):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", unsupported)
    with atomic_output(tmp_path / "a.tsv") as tmp:
        tmp.write_text("x\n")
    assert (tmp_path / "a.tsv").read_text() == "x\n"


def test_a_large_file_written_by_another_process_arrives_whole(tmp_path):
    target = tmp_path / "big.bin"
    payload = np.random.default_rng(0).integers(0, 256, 20_000_000, dtype=np.uint8).tobytes()
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    with atomic_output(target) as tmp:
        subprocess.run(["cp", str(src), str(tmp)], check=True)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(payload).digest()


# --- the writers that used to leave temporaries behind ----------------------------------------------


def _plant(path: Path, host: str, pid: int, companions: tuple[str, ...] = ()) -> list[Path]:
    tmp = path.with_name(f".{path.stem}.tmp-{host}-{pid}-0123abcd{path.suffix}")
    planted = [tmp] + [Path(str(tmp) + c) for c in companions]
    for p in planted:
        p.write_bytes(b"partial")
    return planted


def test_subsample_and_pool_reap_the_bams_and_indexes_of_killed_attempts(node_a, tmp_path):
    from atacdenoise.reads.pool import pool_bams
    from atacdenoise.reads.subsample import subsample_bam

    bam = DEMO / "HSC_5M.chr1_chr2.bam"
    dead = _dead_pid()
    sub, pooled = tmp_path / "sub.bam", tmp_path / "pool.bam"
    mine = _plant(sub, node_a, dead, (".bai",)) + _plant(pooled, node_a, dead, (".bai",))
    theirs = _plant(sub, "node-b", dead, (".bai",))
    subsample_bam(bam, sub, 0.5, 1)
    pool_bams([bam, sub], pooled)
    assert not any(p.exists() for p in mine) and all(p.exists() for p in theirs)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "pool.bam",
        "pool.bam.bai",
        "sub.bam",
        "sub.bam.bai",
    ]


def test_fragments_writer_reaps_a_killed_attempts_file_and_index(node_a, tmp_path):
    from atacdenoise.io.fragments import write_fragments

    out = tmp_path / "f.tsv.gz"
    mine = _plant(out, node_a, _dead_pid(), (".tbi",))
    df = fragment_table(50).sort_values(["chrom", "start"])
    assert write_fragments([df], out) == len(df)
    assert not any(p.exists() for p in mine)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.tsv.gz", "f.tsv.gz.tbi"]


def test_dataset_writer_reaps_a_killed_attempts_directory(node_a, tmp_path):
    from atacdenoise.model.dataset import write_dataset

    out = tmp_path / "5M.rep1"
    stale = tmp_path / f".5M.rep1.tmp-{node_a}-{_dead_pid()}-0123abcd"
    stale.mkdir()
    (stale / "chr1.noisy.npy").write_bytes(b"\0" * 1000)
    arrays = {k: np.arange(10) for k in ("noisy", "clean", "labels", "mask")}
    write_dataset(out, {"sample": "S"}, [("chr1", arrays)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["5M.rep1"]
    assert pd.read_json(out / "meta.json", typ="series")["chroms"] == {"chr1": 10}
