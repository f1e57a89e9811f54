"""Helpers for the SLURM profile tests: a private single-node cluster, the merged test profile, SLURM's job records.

Not named conftest.py on purpose: the unit tests do ``from conftest import REPO``, and a second
conftest.py in a package-less sub-directory would shadow tests/conftest.py in ``sys.modules``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PROFILE = REPO / "profiles" / "slurm-gpu"
OVERLAY = HERE / "overlay" / "config.yaml"
ETC_CONF = Path("/etc/slurm/slurm.conf")
#: slurm_up.sh exits with this status when apt-get could not install slurm-wlm/munge
EXIT_INSTALL_FAILED = 3
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def unavailable_reason() -> str | None:
    """Why a private SLURM cluster cannot be started here, or None when it can.

    The cluster needs root (slurmd runs jobs as their user; munged and slurmctld bind ports),
    the SLURM and munge binaries or apt-get to install them, and a free /etc/slurm/slurm.conf
    (job steps read the default path; a machine's own SLURM configuration is never replaced).
    The tests skip with this reason; in CI (``ATACDENOISE_CI``) the skip is a failure (tests/conftest.py).
    A private ``SLURM_CONF`` cannot stand in for /etc/slurm/slurm.conf: the jobstep executor removes
    every ``SLURM_*`` variable but the job's identity before its ``srun``.
    """
    if os.environ.get("ATACDENOISE_SKIP_CLUSTER"):
        return "ATACDENOISE_SKIP_CLUSTER is set"
    if not sys.platform.startswith("linux"):
        return f"needs Linux to run slurmctld/slurmd (this is {sys.platform})"
    if os.geteuid() != 0:
        return (
            "needs root to start munged, slurmctld and slurmd (CI runs as root); "
            "run `sudo make test` or see tests/cluster/"
        )
    missing = [exe for exe in DAEMONS if shutil.which(exe) is None]
    if missing and shutil.which("apt-get") is None:
        return f"SLURM/munge not installed ({', '.join(missing)} missing) and no apt-get to install slurm-wlm and munge"
    if (ETC_CONF.exists() or ETC_CONF.is_symlink()) and not _etc_conf_is_ours():
        return (
            f"{ETC_CONF} exists: this machine has its own SLURM configuration, which the test cluster does not replace"
        )
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[workflow]')"
    return None


def _etc_conf_is_ours() -> bool:
    """/etc/slurm/slurm.conf is a link left by slurm_up.sh: dangling, or to a test cluster's config."""
    if not ETC_CONF.is_symlink():
        return False
    target = Path(os.readlink(ETC_CONF))
    return not target.exists() or "ClusterName=atacdenoise-test" in target.read_text().splitlines()


@dataclass
class Cluster:
    """A running private cluster: its state directory and the environment that reaches it."""

    state: Path

    @property
    def conf(self) -> Path:
        return self.state / "slurm.conf"

    def env(self) -> dict[str, str]:
        """os.environ with SLURM_CONF set and this interpreter's bin/ first on PATH (snakemake, atacdenoise)."""
        env = dict(os.environ)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def logs(self) -> str:
        """Return the tails of the daemons' logs, for failure messages."""
        parts = []
        for name in ("slurmctld", "slurmd", "munged"):
            path = self.state / "log" / f"{name}.log"
            if path.exists():
                parts.append(f"== {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-25:]))
        return "\n".join(parts)


def start(state: Path) -> Cluster:
    """Run slurm_up.sh; raise RuntimeError (with its output) when the cluster did not come up."""
    res = subprocess.run(["bash", str(HERE / "slurm_up.sh"), str(state)], capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        err = RuntimeError(f"slurm_up.sh exited with {res.returncode}:\n{res.stdout}\n{res.stderr[-6000:]}")
        err.returncode = res.returncode  # type: ignore[attr-defined]
        raise err
    return Cluster(state)


@contextlib.contextmanager
def running_cluster(state: Path) -> Iterator[Cluster]:
    """Run a private cluster in ``state`` while the block runs; pytest.skip (with the reason) where impossible."""
    import pytest

    reason = unavailable_reason()
    if reason:
        pytest.skip(f"SLURM cluster test skipped: {reason}")
    try:
        cluster = start(state)
    except RuntimeError as err:
        if getattr(err, "returncode", None) == EXIT_INSTALL_FAILED:
            pytest.skip(f"SLURM cluster test skipped: apt-get could not install slurm-wlm/munge: {str(err)[-500:]}")
        raise
    try:
        yield cluster
    finally:
        stop(cluster)


def stop(cluster: Cluster) -> None:
    """Run slurm_down.sh: cancel jobs, stop the three daemons, remove the /etc/slurm link."""
    subprocess.run(
        ["bash", str(HERE / "slurm_down.sh"), str(cluster.state)], capture_output=True, text=True, timeout=120
    )


# --- the test profile ----------------------------------------------------------------------------


def load_profile(path: Path = PROFILE / "config.yaml") -> dict:
    """Load the profile as Snakemake reads it (YTE templating applied: the edit-once definitions filled in)."""
    import yte

    with open(path) as fh:
        return yte.process_yaml(fh, require_use_yte=True)


def merge_overlay(profile: dict, overlay: dict) -> dict:
    """``profile`` updated by ``overlay`` two levels deep.

    Top-level scalars are replaced; mappings (default-resources, set-threads) are updated key by
    key; set-resources is updated rule by rule and, within a rule, resource by resource, so the
    overlay can scale memory without restating the profile's partitions and GPUs.
    """
    merged = copy.deepcopy(profile)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            for k2, v2 in value.items():
                if isinstance(v2, dict) and isinstance(merged[key].get(k2), dict):
                    merged[key][k2] = {**merged[key][k2], **v2}
                else:
                    merged[key][k2] = v2
        else:
            merged[key] = value
    return merged


def write_test_profile(dest: Path, extra: dict | None = None) -> Path:
    """Write profiles/slurm-gpu merged with tests/cluster/overlay (and ``extra``) to ``dest``/config.yaml."""
    overlay = yaml.safe_load(OVERLAY.read_text())
    merged = merge_overlay(load_profile(), overlay)
    if extra:
        merged = merge_overlay(merged, extra)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    return dest


# --- SLURM's own records -------------------------------------------------------------------------


def parse_scontrol_record(line: str) -> dict[str, str]:
    """One ``scontrol -o show job`` line as a dict (values never contain spaces except Comment's tail)."""
    out: dict[str, str] = {}
    for token in line.split():
        if "=" in token:
            key, _, value = token.partition("=")
            out[key] = value
    return out


def job_records(cluster: Cluster, workdir: Path) -> list[dict[str, str]]:
    """SLURM's records (scontrol) of the jobs submitted from ``workdir``, each with its Snakemake rule.

    The slurm plugin puts ``rule_<name>`` (plus ``_wildcards_...``) in the job comment; the test
    cluster keeps finished jobs in slurmctld's memory for 10 minutes (MinJobAge=600).
    """
    res = subprocess.run(
        ["scontrol", "-o", "show", "job"], capture_output=True, text=True, env=cluster.env(), check=True
    )
    records = []
    for line in res.stdout.splitlines():
        rec = parse_scontrol_record(line)
        if Path(rec.get("WorkDir", "")).resolve() != workdir.resolve():
            continue
        comment = rec.get("Comment", "")
        rec["rule"] = comment.removeprefix("rule_").split("_wildcards_")[0]
        records.append(rec)
    return records


def has_gpu(record: dict[str, str]) -> bool:
    """Whether SLURM allocated a GPU to the job (``TresPerJob=gres:gpu:N`` or a gres/gpu TRES)."""
    tres = record.get("TresPerJob", "") + "," + record.get("TresPerNode", "") + "," + record.get("TRES", "")
    return "gpu" in tres


# --- comparing two results/ trees ----------------------------------------------------------------

#: run metadata that legitimately differs between two runs (time, speed, hosts), never results
SKIP_DIRS = {"logs", "benchmarks", "checkpoints"}
SKIP_SUFFIXES = {".html", ".pdf", ".svg", ".png", ".zip"}
VOLATILE_COLUMNS = ("seconds", "_per_s", "gpu_", "time", "host")


def result_files(root: Path) -> set[str]:
    """Relative paths of the files under ``root`` that carry results."""
    out = set()
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.is_dir() or rel.parts[0] in SKIP_DIRS or path.name.startswith(".snakemake"):
            continue
        if any(part in SKIP_DIRS for part in rel.parts):
            continue
        out.add(rel.as_posix())
    return out


def _bigwig_values(path: Path) -> dict[str, np.ndarray]:
    import pyBigWig

    bw = pyBigWig.open(str(path))
    try:
        return {c: np.nan_to_num(np.asarray(bw.values(c, 0, n), dtype=np.float64)) for c, n in bw.chroms().items()}
    finally:
        bw.close()


def _model_state(path: Path) -> dict:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt


def _table(path: Path):
    import pandas as pd

    df = pd.read_csv(path, sep="\t", comment=None)
    keep = [c for c in df.columns if not any(v in str(c).lower() for v in VOLATILE_COLUMNS)]
    return df[keep]


def _content(path: Path) -> bytes | list[str]:
    """Return a file's bytes, or for text its lines without '#' comments (MACS3 writes the command and date there)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    return [line for line in text.splitlines() if not line.startswith("#")]


def differences(a: Path, b: Path) -> list[str]:
    """Where the results under ``a`` and ``b`` differ (empty when equal).

    bigWigs are compared value for value, .npy arrays and models' weights exactly, TSV tables
    without their timing columns, JSON as data, text without '#' comment lines, anything else
    byte for byte; plots and HTML (which embed dates) only by presence.
    """
    files_a, files_b = result_files(a), result_files(b)
    diffs = [f"only in {a}: {p}" for p in sorted(files_a - files_b)]
    diffs += [f"only in {b}: {p}" for p in sorted(files_b - files_a)]
    for rel in sorted(files_a & files_b):
        pa, pb = a / rel, b / rel
        suffix = pa.suffix.lower()
        if suffix in SKIP_SUFFIXES:
            continue
        if suffix in (".bw", ".bigwig"):
            va, vb = _bigwig_values(pa), _bigwig_values(pb)
            if va.keys() != vb.keys() or any(not np.array_equal(va[c], vb[c]) for c in va):
                bad = [c for c in va if c in vb and not np.array_equal(va[c], vb[c])]
                diffs.append(f"{rel}: bigWig values differ on {bad or 'chromosome set'}")
        elif suffix == ".npy":
            if not np.array_equal(np.load(pa, mmap_mode="r"), np.load(pb, mmap_mode="r")):
                diffs.append(f"{rel}: arrays differ")
        elif suffix == ".pt":
            sa, sb = _model_state(pa), _model_state(pb)
            if sa.keys() != sb.keys() or any(not bool((sa[k] == sb[k]).all()) for k in sa):
                diffs.append(f"{rel}: model weights differ")
        elif suffix == ".tsv":
            ta, tb = _table(pa), _table(pb)
            if not ta.equals(tb):
                diffs.append(
                    f"{rel}: tables differ:\n{ta.compare(tb) if ta.shape == tb.shape else (ta.shape, tb.shape)}"
                )
        elif suffix == ".json":
            if json.loads(pa.read_text()) != json.loads(pb.read_text()):
                diffs.append(f"{rel}: JSON differs")
        elif _content(pa) != _content(pb):
            diffs.append(f"{rel}: contents differ")
    return diffs
