"""benchmarks/rounding.py: the native compact rounding against NumPy's, a smoke run of the script (issue 23)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_quick_run_compares_both_routes_per_chunk_and_whole(tmp_path):
    out = tmp_path / "rounding.json"
    cmd = [sys.executable, str(REPO / "benchmarks/rounding.py"), "--quick", "--runs", "1", "--cache", str(tmp_path)]
    res = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [r[0].split(" (")[0] for r in data["rows"]] == [
        "one chunk",
        "the writer's encoding of the stored compact values",
        "hand-off of 6.4-M-base chunks to a writer process",
        "input of GPU chunks",
        "peak calls streamed by chunk",
        "peak calls streamed by chunk",
        "whole `infer`, near-free model, 2 Mb",
    ]
    peaks = data["peaks"]  # both cuts timed on both probabilities (the script checks their tables agree)
    assert peaks["bases"] == 2_000_000 and peaks["background peaks"] == 0
    assert all(peaks[f"{kind} {cut}"] > 0 for kind in ("model", "background") for cut in ("windowed", "edges"))
    enc = data["encode"]  # both tracks of the chunk, each rule timed and its bytes counted
    assert enc["bases"] == 4_000_000 and enc["both"] > 0 and enc["fixed-step below 64"] > 0
    assert enc["both bytes"] > 0 and enc["fixed-step below 64 bytes"] > 0
    for route in ("mp.Queue", "raw pipe", "shared memory"):  # each timed, with the CPU of both processes
        assert data["handoff"][route] > 0 and data["handoff"][f"{route} cpu s/GB"] > 0
    assert data["input"]["bases"] == 2_000_000 and min(data["input"][k] for k in ("until now", "now", "now tile")) > 0
    chunk = data["chunk"]
    assert chunk["bases"] == 2_000_000 and chunk["NumPy"] > 0 and chunk["native"] > 0
    for route in ("NumPy", "native"):  # one run each, with the command's own rounding seconds
        assert len(data["tiny"][route]["wall"]) == 1 and data["tiny"][route]["round_s"][0] >= 0
    assert "| one chunk" in res.stdout and "speed-up" in res.stdout
