"""Shared test fixtures: repository paths and the real data beside the checkout."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
#: every config shipped in config/ (each must validate and pass `atacdenoise check`)
BUNDLED_CONFIGS = tuple(str(p.relative_to(REPO)) for p in sorted((REPO / "config").glob("**/config.yaml")))
VENV_BIN = REPO / ".venv" / "bin"

if VENV_BIN.is_dir():  # tests call the CLIs of the project's venv (macs3, snakemake, atacdenoise)
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real public ATAC-seq data); tests needing it skip with a reason if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found: the real test data live beside the checkout")
    return SHARED_DATA


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
