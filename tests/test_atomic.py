"""Atomic outputs: temporaries of killed runs are cleaned up by the next attempt, live ones are kept."""

from __future__ import annotations

import os
import subprocess

from atacdenoise.atomic import atomic_output, remove_stale_temps


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    d = tmp_path / "we[ir]d dir"
    d.mkdir()
    target = d / "S [1].track.bw"
    dead, live = _dead_pid(), os.getpid()
    stale = [
        d / f".S [1].track.tmp-{dead}.bw",
        d / f"..S [1].track.tmp-{dead}.tmp-{dead + 1}.bw",
    ]  # incl. the old doubled name
    keep = [
        d / f".S [1].track.tmp-{live}.bw",
        d / f".S [1].peaks.tmp-{dead}.narrowPeak",
        d / f".other.track.tmp-{dead}.bw",
        target,
    ]
    for p in stale + keep:
        p.write_text("x")
    assert sorted(remove_stale_temps(target)) == sorted(stale)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stale)


def test_atomic_output_cleans_up_before_writing(tmp_path):
    target = tmp_path / "a.tsv"
    left = tmp_path / f".a.tmp-{_dead_pid()}.tsv"
    left.write_text("partial")
    with atomic_output(target) as tmp:
        tmp.write_text("done\n")
    assert target.read_text() == "done\n" and not left.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tsv"]
