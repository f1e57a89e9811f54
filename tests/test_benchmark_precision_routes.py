"""benchmarks/precision_routes.py: the cohort's own commands, re-routed to other float32 routes (issue 19.2)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import precision_routes as R  # noqa: E402  (benchmarks/precision_routes.py)
from precision import GPU_ROUTE  # noqa: E402  (benchmarks/precision.py)


def test_routes_rewrite_the_cohorts_own_commands(tmp_path):
    """Every infer of the cohort's dry run writes under the route's folder at its precision; metrics read it there."""
    commands = R.rule_commands(REPO / "config/immune/config.yaml")
    infers = [c for c in commands if c.startswith("atacdenoise infer")]
    metrics = [c for c in commands if c.startswith("atacdenoise metrics")]
    assert len(infers) == len(metrics) == 15  # 3 cell states x 5 noisy inputs
    _env, extra = R.ROUTES[GPU_ROUTE]
    made = set()
    for command in infers:
        cmd, done = R.rerouted(command, tmp_path, extra)
        assert "--precision float32 --amp bf16" in cmd and "--precision compact" not in cmd
        prefix = re.search(r"--out-prefix (\S+)", cmd).group(1)
        assert prefix.startswith(str(tmp_path)) and done == Path(f"{prefix}.peaks.narrowPeak")
        assert cmd.split("--out-prefix")[0] == command.split("--precision")[0] + extra + " "
        made.add(prefix)
    for command in metrics:
        cmd, tsv = R.rerouted(command, tmp_path, extra)
        assert re.search(r"--denoised-prefix (\S+)", cmd).group(1) in made  # reads what the route's infer wrote
        assert "--pr-curves" not in cmd and tsv.is_relative_to(tmp_path / "metrics")
        assert f"--out {tsv}" in cmd


def test_largest_deltas_against_the_first_route(tmp_path):
    """The table: per route after the first, the largest |delta| of each metric over the model's rows only."""
    header = "sample\tdepth\trep\tmethod\tmetric\tregion\tvalue\n"
    rows = {
        "ref": [("model", "auroc", 0.90), ("model_t0.5", "f1", 0.50), ("noisy", "auroc", 0.70)],
        "other": [("model", "auroc", 0.9012), ("model_t0.5", "f1", 0.4990), ("noisy", "auroc", 0.80)],
    }
    tables = {}
    for name, values in rows.items():
        path = tmp_path / f"{name}.tsv"
        path.write_text(header + "".join(f"S\t5000\t1\t{m}\t{k}\tall\t{v}\n" for m, k, v in values))
        tables[name] = [path]
    out = R.largest_deltas(tables)
    assert list(out["route"]) == ["other"]
    assert out.loc[0, "auroc"] == "0.0012" and out.loc[0, "f1"] == "0.0010"  # the noisy row (0.10) is not counted
