"""The GPU benchmark (issue 23): its CPU smoke size runs the real commands of stages C and D and writes gpu.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import common as C  # noqa: E402  (benchmarks/common.py)
import gpu as G  # noqa: E402  (benchmarks/gpu.py)


def test_genome_coverage_chunks_are_the_reference_generator_with_a_narrow_type():
    """A chunk of the parallel generator holds the same counts as synthetic_coverage with the same seed."""
    values, cuts = C.synthetic_coverage_chunk((300_000, 11, 3, 4.0))
    reference = C.synthetic_coverage(300_000, np.random.default_rng((11, 3)), 4.0)
    assert values.dtype == np.uint8 and cuts > 0
    assert np.array_equal(values.astype(np.float32), reference)


def test_genome_input_is_made_once_chunk_by_chunk_and_reused(tmp_path):
    """Two chromosomes, the second after the first's chunk: the values read back are the chunks' own."""
    from atacdenoise.io.bigwig import read_bigwig

    sizes = {"chrA": 50_000, "chrB": 20_000}
    first = C.synthetic_coverage_genome_bigwig(tmp_path / "in.bw", sizes, processes=1, threads=1)
    second = C.synthetic_coverage_genome_bigwig(tmp_path / "in.bw", sizes, processes=2, threads=2)
    assert not first["cached"] and second["cached"] and second["seconds"] == first["seconds"] > 0
    assert first["bases"] == 70_000 and first["bytes"] == (tmp_path / "in.bw").stat().st_size
    for index, (chrom, n) in enumerate(sizes.items()):
        expected, _ = C.synthetic_coverage_chunk((n, 11, index, 4.0))
        assert np.array_equal(read_bigwig(tmp_path / "in.bw", chrom), expected.astype(np.float32)), chrom
    sidecar = json.loads((tmp_path / "in.bw.json").read_text())
    assert sidecar["smooth_bp"] == 200 and set(sidecar["n_cut_sites"]) == set(sizes)


def test_quick_run_of_stages_c_d_and_e_runs_the_real_commands_on_every_chromosome(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--device", "cpu", "--quick", "--stages", "CDE",
           "--budget", "3600", "--out", str(out), "--work", str(work),
           "--results", str(tmp_path / "results" / "gpu.json")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "gpu.json").read_text())
    assert data["complete"] and not data["skipped"], data["skipped"]
    assert json.loads((tmp_path / "results" / "gpu.json").read_text()) == data
    machine = data["machine"]
    for key in ("cpu_count", "ram_bytes", "python", "torch", "cuda", "cudnn", "driver", "cores"):
        assert key in machine, key
    assert data["date_utc"].endswith("+00:00") and data["args"]["stages"] == "CDE"

    # stage C: the real infer over every chromosome of the quick genome (hg38's at 1/1000), measured, not scaled
    hg38 = C.read_sizes(C.chrom_sizes_file("hg38.chrom.sizes"))
    quick = G.quick_genome({c: n for c, n in hg38.items() if c in data["sizes"]})
    assert len(quick) == 24 and data["sizes"] == quick
    cli = data["cli"]
    assert data["cli_sizes"] == quick and cli["chroms"] == 24
    assert cli["bases"] == cli["denoised_bases"] == sum(quick.values())
    assert not cli["extrapolated"] and cli["wall_s"] > cli["denoise_s"] > 0 and cli["rss"] > 0
    assert cli["output_bytes"] == sum(cli["outputs"].values()) > 0
    assert cli["bytes_per_base"] == cli["output_bytes"] / cli["bases"]
    made = data["cli_input"]
    assert made["bases"] == sum(quick.values()) and made["seconds"] > 0 and made["bytes"] > 0
    from atacdenoise.io.bigwig import bigwig_chrom_sizes, open_bigwig

    prefix = work / "run" / "out-cli" / "genome"
    for suffix in ("track.bw", "peakprob.bw"):
        path = Path(f"{prefix}.{suffix}")
        assert path.stat().st_size > 0 and cli["outputs"][path.name] == path.stat().st_size
        assert bigwig_chrom_sizes(path) == quick, suffix
    bw = open_bigwig(f"{prefix}.peakprob.bw")
    try:  # a probability (a sigmoid) at every base of every chromosome: the whole genome was denoised
        for chrom, n in quick.items():
            assert np.all(bw.values(chrom, 0, n, fill=0.0) > 0), chrom
    finally:
        bw.close()
    assert Path(f"{prefix}.peaks.narrowPeak").exists() and "denoised" in (out / "infer.log").read_text()

    # stage D: the dataset from `atacdenoise dataset-clean` + `atacdenoise dataset`, then two epochs (the second timed)
    ds = data["dataset"]
    assert ds["from_command"] and ds["chroms"] == ["chr21", "chr22"]
    for name in ("dataset-clean", "dataset"):
        assert ds[name]["wall_s"] > 0 and ds[name]["bytes"] > 0, name
        assert f"atacdenoise.cli {name} " in ds[name]["command"], name
    assert (work / "run" / "dataset" / "1.rep1" / "meta.json").exists()
    assert [t["tag"] for t in data["train"]] == ["default", "tuned"]
    for t in data["train"]:
        assert t["windows"] > 0 and t["windows_per_s"] > 0 and t["genome_windows"] == 61_765, t
        assert t["first_epoch_windows_per_s"] > 0 and t["genome_epoch_s"] == 61_765 / t["windows_per_s"], t
    assert cli["model"] == "random weights" and cli["stages"].startswith("model ")
    # every stage's busy seconds, and the slowest named (on a CPU, the model's or a writer's)
    assert cli["busy"].startswith("model ") and "input " in cli["busy"] and "track writer " in cli["busy"]
    assert cli["slowest"] in ("model", "input", "rounding", "writer thread", "track writer", "peakprob writer")

    # stage E: the same command with the model stage D trained (default loader), its own outputs and log
    trained = data["cli_trained"]
    assert trained["model"] == "trained for two short epochs by stage D" and trained["bases"] == cli["bases"]
    assert trained["output_bytes"] > 0 and "waited" in trained["stages"]
    assert Path(work / "run" / "out-cli_trained" / "genome.peaks.narrowPeak").exists()
    assert "denoised" in (out / "infer-trained.log").read_text()
    for heading in (
        "C (and E). The real command on every chromosome",
        "model: trained for two short epochs by stage D",
        "D. Training data from the real commands",
    ):
        assert heading in proc.stdout, heading


def test_stage_a_levers_run_and_padded_channels_keep_the_models_outputs():
    """Stage A on the CPU (its GPU-only rows said so); zero-weight channels change no output (issue 23: 1e-5)."""
    import types

    import torch

    import gpu_levers as L
    from atacdenoise.model.network import build_model

    torch.manual_seed(5)
    for hp in ({"preset": "light"}, {"preset": "standard", "reg_blocks": 1, "cls_blocks": 1, "input_skip": True}):
        model = build_model(hp).eval()
        for p in model.parameters():
            p.data += 0.05 * torch.randn_like(p)
        wide = L.pad_filters(model)
        assert wide.hparams["filters"] == 16 and wide.n_parameters > model.n_parameters
        x = torch.rand(2, 3_001) * 4
        with torch.no_grad():
            (t0, l0), (t1, l1) = model(x), wide(x)
        assert float((t1 - t0).abs().max()) <= 1e-5 * float(t0.abs().max()) and float((l1 - l0).abs().max()) < 1e-5
    args = types.SimpleNamespace(preset="light", batch_sizes=[2, 3])
    lev = L.stage_levers(args, torch.device("cpu"), 1000, 2_000, 500, lambda msg: None, lambda: False)
    assert [r["model"] for r in lev["rows"]][:3] == ["torch fp32", "torch bf16", "padded 16"]
    assert {r["batch"] for r in lev["rows"]} == {2, 3} and lev["best"] in lev["rows"]
    assert any("GPU only" in n for n in lev["notes"]) and any("Triton rows skipped" in n for n in lev["notes"])
    table = L.lever_table(lev)
    assert len(table) == 2 + len(lev["rows"]) and all(r["prediction"] in "".join(table) for r in lev["rows"])


def test_a_stage_that_fails_is_recorded_and_the_run_completes(tmp_path):
    """One GPU session must not be lost to one stage: the command's error lands in gpu.json, the run goes on."""
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--device", "cpu", "--quick", "--stages", "C",
           "--infer-batch", "-1", "--budget", "600", "--out", str(out), "--work", str(tmp_path / "work")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((out / "gpu.json").read_text())
    assert data["complete"] and [f["stage"] for f in data["failed"]] == ["C"] and "cli" not in data
    assert "--batch-size" in data["failed"][0]["error"] and data["skipped"][0]["stage"] == "C"


def test_kernel_profile_smoke_run_writes_its_tables(tmp_path):
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "gpu_profile.py"),
        "--device",
        "cpu",
        "--quick",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "gpu-profile.json").read_text())
    assert [c["case"] for c in data["cases"]] == ["inference, torch convs", "training step, torch convs"]
    assert all(c["windows_per_s"] > 0 and c["s"] > 0 for c in data["cases"])
    assert "training step, torch convs" in (tmp_path / "gpu-profile.md").read_text()


def test_training_environment_of_a_stage_d_variant_is_restored(monkeypatch):
    from atacdenoise.model import gpuconv

    monkeypatch.setenv("ATACDENOISE_GPU_CONV", "torch")
    monkeypatch.delenv("ATACDENOISE_TRITON_CONFIG", raising=False)
    gpuconv._train_config.cache_clear()
    with G.training_env("triton", '{"wgrad": "block"}'):
        assert os.environ["ATACDENOISE_GPU_CONV"] == "triton" and gpuconv._train_config()["wgrad"] == "block"
    assert os.environ["ATACDENOISE_GPU_CONV"] == "torch" and "ATACDENOISE_TRITON_CONFIG" not in os.environ
    assert gpuconv._train_config()["wgrad"] == gpuconv.DEFAULT_CONFIG["wgrad"]
