"""The genome-scale benchmark (issue 19): its smoke size runs every stage and reports positive figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import genome as G  # noqa: E402  (benchmarks/genome.py)


def test_conv_flops_count_every_conv_at_every_position():
    """A 1 -> 4 conv of 5 taps and a 4 -> 2 conv of 3 taps: 2 x (1 x 4 x 5 + 4 x 2 x 3) FLOPs per position."""
    import torch

    net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv1d(4, 2, 3, padding=1))
    assert G.conv_flops_per_position(net) == 2 * (1 * 4 * 5 + 4 * 2 * 3)


def test_reference_shape_flops_match_the_gpu_notes():
    """The standard preset: 0.439 MFLOP per position (../shared/GPU.md), 3x per training position."""
    f = G.training_flops_per_window("standard")
    assert abs(f["forward_flops_per_position"] - 439_000) < 1_000
    assert f["train_flops_per_window"] == 3 * f["forward_flops_per_position"] * (f["interval"] + 2 * f["pad"])


def test_a_chromosome_alone_gets_the_fragments_it_gets_in_the_genome(tmp_path):
    """Fragments are seeded per chromosome: generating chr21 alone gives the genome's chr21 rows, sorted."""
    template = np.sort(np.random.default_rng(0).integers(0, 2 * G.HSC_BLOCK, 5_000))
    a = G.chrom_fragments(template, 20, 3_000_000, 2_000)
    b = G.chrom_fragments(template, 20, 3_000_000, 2_000)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    start, end = a
    assert np.all(np.diff(start) >= 0) and np.all(end > start) and end.max() <= 3_000_000


def test_quick_run_reports_every_stage_with_positive_figures(tmp_path):
    out = tmp_path / "genome.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "genome.py"), "--quick", "--cache", str(tmp_path / "cache"),
           "--work", str(tmp_path / "work"), "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**__import__("os").environ}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    rows = data["rows"]
    for scope in ("largest", "genome"):
        assert {r["stage"] for r in rows if r["scope"] == scope} == set(G.STAGES), scope
    for r in rows:
        assert r["wall"] > 0 and r["rss"] > 0 and r["rate"] > 0, r
        assert r["written"] > 0 or r["stage"] == "loader", r
    # infer reports each bigWig's bytes a base (compact, the default)
    for r in (r for r in rows if r["stage"] == "infer"):
        assert set(r["extra"]["bytes_per_base"]) == {"track", "peakprob"}, r
        assert all(0 < v < 4 for v in r["extra"]["bytes_per_base"].values()), r
        assert "compact outputs" in r["note"] and "peakprob.bw" in r["note"], r
    # the threaded stages ran at 1 and 2 threads on the genome
    for st in G.THREADED:
        assert {r["threads"] for r in rows if r["stage"] == st and r["scope"] == "genome"} == {1, 2}, st
    assert set(data["memory"]) == set(G.STAGES)
    assert all(m["largest"] > 0 and m["genome"] > 0 for m in data["memory"].values())
    assert {int(k) for k in data["loader"]["rates"]} == {0, 1, 2}
    assert all(v > 0 for v in data["loader"]["rates"].values())
    assert all(t > 0 for t in data["cohort"]["totals"])
    text = proc.stdout
    for heading in ("Genome-scale stages", "Peak RSS", "Feeding a GPU", "Extrapolated"):
        assert heading in text, heading
