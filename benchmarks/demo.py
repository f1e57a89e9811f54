#!/usr/bin/env python
"""Whole demo: ``snakemake --profile profiles/local`` on the default demo config, timed from a fresh results directory.

Target (issue 9): ``make demo`` in at most 10 minutes on 2 cores after set-up
(the virtual environment already installed).

The working tree's tracked and untracked-but-not-ignored files (Snakefile,
workflow/, config/, resources/, profiles/ ...) are copied into a temporary
directory, so the run starts with no ``results/`` and no ``.snakemake/`` and
leaves the repository's own results alone; the project's venv is first on PATH.
Timed: the workflow itself (``make demo``'s first command), then the HTML report
(its second command). The per-rule times come from the rules' own ``benchmark:``
files (``results/benchmarks/**.tsv``): the slowest rules show where the time goes.

As a user's first ``make demo`` on a 2-core machine: both commands run pinned to
``--cores`` CPUs (``taskset -c``, the first of those this process may use; a
child checks the affinity it gets and the table names it), and with an empty
native compile cache (``ATACDENOISE_CACHE`` set to a fresh directory), so the
native kernels compile inside the timing; the notes list what was compiled.

Usage: ``.venv/bin/python benchmarks/demo.py [--cores 2] [--keep DIR] [--no-report] [--config CONFIG]``;
``--config config/immune/config.yaml`` times the real cohort example instead (target 15 min, issue 18).
"""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C

TARGET_S = 600.0
#: targets of other bundled configs (issue 18: the immune cohort in at most 15 min on 2 cores)
TARGETS = {"config/config.yaml": TARGET_S, "config/immune/config.yaml": 900.0}


def copy_tree(dest: Path) -> int:
    """Copy the working tree's tracked and untracked-not-ignored files to ``dest``; returns the number of files."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=C.REPO, check=True, capture_output=True
    ).stdout
    n = 0
    for rel in files.decode().split("\0"):
        if not rel:
            continue
        src = C.REPO / rel
        if not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
        n += 1
    return n


def pin(cores: int) -> tuple[list[str], list[int]]:
    """Return the command prefix that pins a child to ``cores`` CPUs, and the CPUs a child so pinned gets.

    The CPUs are the first ``cores`` of those this process may use; ``taskset -c`` pins the child (and all its
    descendants: snakemake's jobs). Without taskset this process pins itself, and its children inherit that.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < cores:
        sys.exit(f"--cores {cores}: this process may use only {len(allowed)} CPUs ({allowed})")
    cpus = allowed[:cores]
    taskset = shutil.which("taskset")
    prefix = [taskset, "-c", ",".join(map(str, cpus))] if taskset else []
    if not taskset:
        os.sched_setaffinity(0, cpus)
    probe = [*prefix, sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    seen = subprocess.run(probe, check=True, capture_output=True, text=True).stdout.strip()
    if seen != str(cpus):
        sys.exit(f"pinning to CPUs {cpus} failed: a child pinned with {probe[:-2]} runs on {seen}")
    return prefix, cpus


def rule_times(results: Path) -> list[tuple[str, float, float]]:
    """(rule/job, seconds, max RSS MB) from Snakemake benchmark files, slowest first."""
    out = []
    for f in (results / "benchmarks").rglob("*.tsv") if (results / "benchmarks").exists() else []:
        with open(f) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows:
            rss = rows[0].get("max_rss", "NA")
            out.append(
                (
                    str(f.relative_to(results / "benchmarks").with_suffix("")),
                    float(rows[0]["s"]),
                    float(rss) if rss not in ("NA", "-", "") else float("nan"),
                )
            )
    return sorted(out, key=lambda r: -r[1])


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.set_defaults(runs=1)
    p.add_argument(
        "--cores", type=int, default=2, help="snakemake --cores, and the number of CPUs the run is pinned to"
    )
    p.add_argument("--keep", type=Path, default=None, help="run in this (new) directory and keep it")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report step")
    p.add_argument(
        "--config",
        default="config/config.yaml",
        help="workflow config, relative to the repository (config/immune/config.yaml: the cohort, target 15 min)",
    )
    args = p.parse_args()
    target_s = TARGETS.get(args.config, TARGET_S)
    snakemake = C.tool("snakemake", "install the workflow extras: .venv/bin/pip install -e '.[workflow]'")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    if (work / "results").exists():
        sys.exit(f"{work}/results exists: give a fresh --keep directory")
    n = copy_tree(work)
    C.log(f"copied {n} files to {work}")
    cache = work / "native-cache"  # empty: the native kernels compile on first use, inside the timing
    if cache.exists():
        sys.exit(f"{cache} exists: give a fresh --keep directory")
    env = {"PATH": f"{C.VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "ATACDENOISE_CACHE": str(cache)}
    prefix, cpus = pin(args.cores)
    pinned = f"CPUs {','.join(map(str, cpus))}"
    C.log(f"pinned to {pinned} ({shlex.join(prefix) if prefix else 'os.sched_setaffinity'}), compile cache {cache}")
    rows = []
    try:
        base = [*prefix, snakemake, "--profile", "profiles/local", "--cores", str(args.cores)]
        base += ["--configfile", args.config]  # as make demo: the config given explicitly
        s, _ = C.run_cmd(base, env=env, cwd=work)
        C.log(f"workflow: {s.wall:.0f} s, peak RSS {C.fmt_bytes(s.rss)}")
        rows.append(
            [
                "snakemake --profile profiles/local (the workflow)",
                f"{s.wall:.0f}",
                f"{s.wall / 60:.1f}",
                C.fmt_bytes(s.rss),
            ]
        )
        total = s.wall
        if not args.no_report:
            r, _ = C.run_cmd(
                [*base, "--report", "results/report.html"],
                env=env,
                cwd=work,
            )
            rows.append(
                ["snakemake --report results/report.html", f"{r.wall:.0f}", f"{r.wall / 60:.1f}", C.fmt_bytes(r.rss)]
            )
            total += r.wall
        rows.append(["**make demo after set-up (sum)**", f"{total:.0f}", f"{total / 60:.1f}", ""])
        slow = rule_times(work / "results")
        compiled = sorted(p.name for p in cache.glob("*.so")) if cache.is_dir() else []
        notes = [
            f"Pinned to {pinned} ({shlex.join(prefix) if prefix else 'os.sched_setaffinity'}; affinity checked in a "
            f"child), snakemake --cores {args.cores}.",
            f"Compile cache empty at the start (ATACDENOISE_CACHE={cache}): {len(compiled)} native libraries compiled "
            f"during the run ({', '.join(compiled) or 'none: the native kernels were not built'}).",
            f"Target {target_s / 60:.0f} min: {'met' if total <= target_s else 'missed'} "
            f"({total / target_s:.2f} of the target).",
            f"{len(slow)} jobs with benchmark files; their summed time {sum(t for _, t, _ in slow):.0f} s (jobs run "
            f"{args.cores} at a time). Slowest jobs: "
            + "; ".join(f"{name} {t:.0f} s ({rss:.0f} MB)" for name, t, rss in slow[:8])
            + ".",
        ]
        C.report(
            f"Whole workflow on {args.config} (snakemake --profile profiles/local) after set-up, pinned to {pinned}, "
            "empty compile cache",
            ["step", "wall s", "min", "peak RSS (tree)"],
            rows,
            notes,
            args,
            {"jobs": slow, "work": str(work), "cpus": cpus, "compiled": compiled},
        )
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
