"""The benchmark helpers that make a ratio like for like (issue 21): pinned cores, deflate level, libraries."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyBigWig
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import common as C  # noqa: E402  (benchmarks/common.py)


def test_run_cmd_pins_the_command_to_the_cores_asked():
    """``cores=1`` runs the command (and its children) on one CPU; without it, on every CPU this process has."""
    code = "import json, os; print(json.dumps(sorted(os.sched_getaffinity(0))))"
    _, out = C.run_cmd([sys.executable, "-c", code], cores=1)
    assert json.loads(out.strip().splitlines()[-1]) == sorted(C.cpus(1))
    assert len(C.cpus(1)) == 1
    _, out = C.run_cmd(f"{sys.executable} -c '{code}'", shell=True)
    assert json.loads(out.strip().splitlines()[-1]) == sorted(os.sched_getaffinity(0))
    sample = C.run_python(
        'import json; print(json.dumps({"seconds": 0.25, "cpus": len(__import__("os").sched_getaffinity(0))}))', cores=1
    )
    assert sample.inner == 0.25 and sample.extra["cpus"] == 1 and sample.wall > 0


def test_cpus_rejects_zero():
    with pytest.raises(ValueError, match="cores 0"):
        C.cpus(0)


def test_deflate_libraries_names_what_each_side_uses():
    libs = C.deflate_libraries()
    assert libs["zlib"].count(".") >= 1
    assert libs["bbiwrite_level"] == "1"  # the writer's own level, which the like-for-like rows change to 6
    assert libs["bbiwrite_fast"] in ("isal", "zlib")
    assert libs["pysam_htslib_deflate"] in ("zlib", "libdeflate")


def test_the_level_6_writer_row_really_writes_at_level_6(tmp_path):
    """bigwig_write.py and coverage.py set ``bbiwrite.DEFLATE_LEVEL = 6`` in the child for the like-for-like row.

    That works only while ``deflate`` reads the module's level at every call: the same track must come out
    smaller at level 6 than at 1, and read back the same.
    """
    sizes = {"chr1": 400_000}
    track = np.repeat(np.arange(4000, dtype=np.float32) % 7, 100)  # step-like, compressible
    code = """
import json, sys
import numpy as np
from atacdenoise.io import bbiwrite
bbiwrite.DEFLATE_LEVEL = {level}
w = bbiwrite.BigWigFileWriter({out!r}, {sizes!r}, zoom_levels=2, threads=1, fast=False)
w.add("chr1", 0, np.repeat(np.arange(4000, dtype=np.float32) % 7, 100))
w.close()
print(json.dumps({{"seconds": 0.0}}))
"""
    env = {"PYTHONPATH": os.pathsep.join([str(REPO / "workflow"), os.environ.get("PYTHONPATH", "")])}
    size = {}
    for level in (1, 6):
        out = tmp_path / f"level{level}.bw"
        C.run_python(code.format(level=level, out=str(out), sizes=sizes), env=env)
        size[level] = out.stat().st_size
        with pyBigWig.open(str(out)) as bw:
            assert np.array_equal(np.nan_to_num(bw.values("chr1", 0, sizes["chr1"], numpy=True)), track)
    assert size[6] < size[1], size
