"""benchmarks/loader.py: the training loader's hand-off, this tree against the float32 windows of before (issue 23)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_quick_run_reads_the_same_values_in_a_third_of_the_bytes(tmp_path):
    out = tmp_path / "loader.json"
    cmd = [sys.executable, str(REPO / "benchmarks/loader.py"), "--quick", "--cache", str(tmp_path), "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    (case,) = data["cases"].values()
    base, new = case.values()
    assert base["checksum"] == new["checksum"] > 0  # the same windows, the same values once decoded
    assert base["bytes_per_base"] == 16.0 and round(new["bytes_per_base"], 2) == 5.0  # int16 coverage x 2 + flags
    assert min(new["windows_per_s"], new["workers_ms"], new["main_ms"], new["decode_ms"]) > 0
    assert [r[0] for r in data["rows"]] == ["baseline 8075755", "this tree", "ratio (this tree / baseline)"]
    assert "| ratio (this tree / baseline)" in res.stdout
