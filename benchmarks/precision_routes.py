r"""Output precision on a real cohort (issue 19.2): how far compact outputs move every metric, beside other routes.

The cohort's own ``infer`` and ``metrics`` commands (as ``snakemake -n -p --forcerun infer`` prints them for
``--config``, default ``config/immune/config.yaml``, whose workflow must have run) are re-run at ``--precision
float32`` three ways, their outputs under ``--work``: natively (the reference), with PyTorch's convolutions
(``ATACDENOISE_NATIVE_CONV=0``: another correct float32 implementation) and with ``--amp bf16`` (what
``--amp auto``, the default, does on a GPU). The workflow's own run at the config's precision (``results/``) is
the fourth. For each route: the largest |delta| from the float32 reference over every input, the ``model`` and
``model_t0.5`` rows and every region. Cached: a route's file that exists is not remade.

    .venv/bin/python benchmarks/precision_routes.py --work /work/scratch-immune/routes [--routes 0 2]

``--routes 0 2`` runs the reference and the bf16 route only (each route re-runs every input's ``infer``: ~1 min
an input on 2 cores).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import common  # noqa: E402
from precision import REFERENCES  # noqa: E402  (the demo's reference routes, benchmarks/precision.py)

log = logging.getLogger("precision_routes")

#: route -> (environment, arguments replacing the rule's --precision): float32 natively, then the demo's references
ROUTES = {
    "float32 (native kernels, the reference)": ({}, "--precision float32"),
    **{name: (env, " ".join(("--precision", "float32", *extra))) for name, (env, extra, _) in REFERENCES.items()},
}
METRICS = ["auprc", "auroc", "spearman", "pearson", "f1", "ece", "peak_precision", "peak_recall", "jaccard"]
KEYS = ["sample", "depth", "rep", "method", "metric", "region"]


def rule_commands(config: Path) -> list[str]:
    """Return the ``infer`` and ``metrics`` shell commands of ``config``'s workflow, as Snakemake would run them."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "--configfile", str(config)]
    cmd += ["--forcerun", "infer"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    found = re.findall(r"Shell command: (atacdenoise (?:infer|metrics) .*)", res.stdout + res.stderr)
    if not found:
        raise SystemExit(f"no infer/metrics commands in the dry run of {config}")
    return [line.split(" 2> ")[0] for line in found]


def rerouted(command: str, work: Path, extra: str) -> tuple[str, Path]:
    """``command`` writing under ``work`` (infer: at ``extra``'s precision), and the file it makes."""
    if command.startswith("atacdenoise infer"):
        prefix = re.search(r"--out-prefix (\S+)", command).group(1)
        new = work / prefix.split("results/denoised/", 1)[1]
        out = command.replace(re.search(r"--precision \S+", command).group(0), extra)
        return out.replace(f"--out-prefix {prefix}", f"--out-prefix {new}"), Path(f"{new}.peaks.narrowPeak")
    prefix = re.search(r"--denoised-prefix (\S+)", command).group(1)
    tsv = re.search(r"--out (\S+)", command).group(1)
    new_tsv = work / "metrics" / tsv.split("per_track/", 1)[1]
    out = re.sub(r" --pr-curves \S+", "", command)
    denoised = work / prefix.split("results/denoised/", 1)[1]
    out = out.replace(f"--denoised-prefix {prefix}", f"--denoised-prefix {denoised}")
    return out.replace(f"--out {tsv}", f"--out {new_tsv}"), new_tsv


def run_route(commands: list[str], work: Path, env: dict[str, str], extra: str) -> list[Path]:
    """Run every command of one route (cached); return its metrics tables."""
    tables = []
    for command in commands:
        cmd, made = rerouted(command, work, extra)
        if command.startswith("atacdenoise metrics"):
            tables.append(made)
        if made.exists():
            continue
        made.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "atacdenoise.cli", *shlex.split(cmd)[1:]]  # the venv's, whatever PATH says
        res = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env={**os.environ, **env})
        if res.returncode != 0:
            raise SystemExit(f"{cmd}\nfailed:\n{res.stderr[-2000:]}")
        log.info("%s", made)
    return tables


def largest_deltas(tables: dict[str, list[Path]]) -> pd.DataFrame:
    """Per route, the largest |value - reference| of each metric over the model's rows."""
    values = {name: pd.concat([pd.read_csv(t, sep="\t") for t in paths]) for name, paths in tables.items()}
    names = list(values)
    base = values[names[0]].set_index(KEYS)["value"]
    rows = []
    for name in names[1:]:
        delta = values[name].set_index(KEYS)["value"].reindex(base.index) - base
        delta = delta[delta.index.get_level_values("method").str.startswith("model")]
        metric = delta.index.get_level_values("metric")
        rows.append({"route": name, **{m: f"{delta[metric == m].abs().max():.4f}" for m in METRICS}})
    return pd.DataFrame(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=Path("config/immune/config.yaml"), help="the cohort's config")
    p.add_argument("--work", type=Path, default=Path("/tmp/atacdenoise-precision-routes"), help="outputs, cached")
    p.add_argument("--out", type=Path, help="also write the Markdown table here")
    p.add_argument(
        "--routes",
        type=int,
        nargs="+",
        choices=range(len(ROUTES)),
        default=list(range(len(ROUTES))),
        help="which routes to run, by their index in ROUTES (0, the float32 reference, always runs); default all",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    commands = rule_commands(args.config)
    work = args.work.resolve()
    tables = {}
    for k, (name, (env, extra)) in enumerate(ROUTES.items()):
        if k == 0 or k in args.routes:
            tables[name] = run_route(commands, work / f"route{k}", env, extra)
    workflow = [REPO / re.search(r"--out (\S+)", c).group(1) for c in commands if c.startswith("atacdenoise metrics")]
    missing = [str(t) for t in workflow if not t.exists()]
    if missing:
        raise SystemExit(f"{missing[:3]}... missing: run the workflow with --configfile {args.config} first")
    tables["the workflow's run (its output_precision)"] = workflow
    deltas = largest_deltas(tables)
    text = common.table(list(deltas.columns), deltas.values.tolist())
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
