"""Shared test fixtures: repository paths and the real data beside the checkout; in CI, a skip is a failure.

CI (``.ci/run``) sets ``ATACDENOISE_CI=1``. There the native kernels, MACS3,
deepTools, the SLURM cluster and the data in ``../shared/data`` are required,
so every skip (a ``skipif`` marker, ``pytest.skip`` in a test or a fixture,
``pytest.importorskip`` or a skip while collecting a module) is turned into a
failure that quotes the skip's reason; only tests marked ``gpu`` (CI has no
GPU) may skip. Elsewhere skips stay skips, with their reason in the ``-ra``
summary.
"""

from __future__ import annotations

import os
import shutil
import unittest
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
#: every config shipped in config/ (each must validate and pass `atacdenoise check`)
BUNDLED_CONFIGS = tuple(str(p.relative_to(REPO)) for p in sorted((REPO / "config").glob("**/config.yaml")))
VENV_BIN = REPO / ".venv" / "bin"
#: set (to anything but 0/off/false/no) by .ci/run: a skip fails the run, except in tests marked gpu
CI_ENV = "ATACDENOISE_CI"
SKIPS = (pytest.skip.Exception, unittest.SkipTest)

if VENV_BIN.is_dir():  # tests call the CLIs of the project's venv (macs3, snakemake, atacdenoise)
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"


def in_ci() -> bool:
    """Tell whether this is a CI run (``ATACDENOISE_CI`` set), where skips fail."""
    return os.environ.get(CI_ENV, "").strip().lower() not in ("", "0", "off", "false", "no")


def pytest_report_header(config: pytest.Config) -> str | None:
    if in_ci():
        return f"{CI_ENV} is set: every skip fails the run, except in tests marked gpu"
    return None


def _ci_failure(reason: str) -> str:
    return f"skipped in CI ({CI_ENV} is set; only tests marked gpu may skip): {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In CI, report a skip (marker, test body, fixture) of a test not marked gpu as a failure with its reason."""
    excinfo = call.excinfo
    if in_ci() and excinfo is not None and excinfo.errisinstance(SKIPS) and item.get_closest_marker("gpu") is None:
        reason = getattr(excinfo.value, "msg", None) or str(excinfo.value)
        try:
            raise pytest.fail.Exception(_ci_failure(reason), pytrace=False) from None
        except pytest.fail.Exception:
            call.excinfo = pytest.ExceptionInfo.from_current()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """In CI, report a skip while collecting (``importorskip``, a module-level skip) as a collection error."""
    report = yield
    if in_ci() and report.skipped and collector.get_closest_marker("gpu") is None:
        path, lineno, reason = report.longrepr
        report.outcome = "failed"
        report.longrepr = f"{_ci_failure(reason.removeprefix('Skipped: '))} ({path}:{lineno})"
    return report


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real public ATAC-seq data); tests needing it skip with a reason if absent (fail in CI)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found: the real test data live beside the checkout")
    return SHARED_DATA


def local_snakemake(workdir: Path, configfiles: list[Path], *args: str) -> list[str]:
    """Command line of the repository's workflow in ``workdir`` on the local profile, 2 cores.

    ``args`` (targets and options) come before ``--configfile``, which takes every word after it.
    """
    cmd = ["snakemake", *args, "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    cmd += ["--profile", str(REPO / "profiles" / "local"), "--cores", "2"]
    return [*cmd, "--configfile", *map(str, configfiles)]


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
