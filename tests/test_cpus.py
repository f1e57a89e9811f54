"""The cores a process may use, and the thread defaults built on them, with and without an affinity mask."""

from __future__ import annotations

import os

import pytest

from atacdenoise.cpus import usable_cores


def test_usable_cores_is_the_affinity_mask_where_there_is_one():
    assert usable_cores() == len(os.sched_getaffinity(0))


def test_without_an_affinity_mask_the_machine_count_sets_every_default(monkeypatch):
    """On macOS (no os.sched_getaffinity) the defaults of infer, the writers and the loader still work."""
    from atacdenoise.io.trackwriter import default_write_threads
    from atacdenoise.model.infer import round_threads
    from atacdenoise.model.train import resolve_workers

    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert usable_cores() == 12
    assert (round_threads(), default_write_threads()) == (6, 6)
    import torch

    assert resolve_workers("auto", torch.device("cuda"), world=2) == 5
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one core
    assert usable_cores() == 1 and round_threads() == 1


def test_infer_parses_its_arguments_without_an_affinity_mask(monkeypatch):
    """Its --threads default comes from the cores (it raised AttributeError on macOS)."""
    from atacdenoise import cli

    monkeypatch.delattr(os, "sched_getaffinity")
    with pytest.raises(SystemExit) as exc:
        cli.main(["infer", "--help"])
    assert exc.value.code == 0
