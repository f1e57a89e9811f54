"""Config and sample-sheet validation: typos and bad values fail early with a message naming them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO


def _workdir(tmp_path: Path, config_edit=None, sheet: str | None = None) -> Path:
    (tmp_path / "config").mkdir()
    (tmp_path / "resources").symlink_to(REPO / "resources")
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    if config_edit:
        config_edit(cfg)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "config" / "samples.tsv").write_text(
        sheet if sheet is not None else (REPO / "config" / "samples.tsv").read_text()
    )
    return tmp_path


def _dry_run(workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "--cores", "1"],
        capture_output=True,
        text=True,
        cwd=workdir,
    )


def test_default_config_plans_the_whole_workflow(tmp_path):
    res = _dry_run(_workdir(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    for rule in ("coverage", "subsample_bam", "dataset_clean", "dataset", "train", "infer"):
        assert rule in res.stdout


def test_unknown_config_key_is_named(tmp_path):
    res = _dry_run(_workdir(tmp_path, lambda c: c["coverage"].update(smoth_bp=100)))
    assert res.returncode != 0
    assert "smoth_bp" in res.stdout + res.stderr


def test_wrong_type_is_named(tmp_path):
    res = _dry_run(_workdir(tmp_path, lambda c: c.update(replicates="two")))
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "replicates" in out and "two" in out


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("HSC;rm -rf ~", "contains whitespace"),
        ("HSC;rm", "contains ';'"),
        (".", "is a folder name of its own"),
        ("..", "is a folder name of its own"),
        ("-h", "starts with '-'"),
        (".HSC", "starts with '.'"),
    ],
)
def test_unsafe_sample_name_is_rejected(tmp_path, name, why):
    sheet = (REPO / "config" / "samples.tsv").read_text().replace("\nHSC\t", f"\n{name}\t")
    res = _dry_run(_workdir(tmp_path, sheet=sheet))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert f"sample name {name!r} is unsafe in file paths and shell commands: it {why}" in out, out


def test_duplicate_sample_names_are_rejected(tmp_path):
    text = (REPO / "config" / "samples.tsv").read_text()
    lines = text.strip().split("\n")
    res = _dry_run(_workdir(tmp_path, sheet="\n".join([*lines, lines[1]]) + "\n"))
    assert res.returncode != 0
    assert "duplicate sample names ['HSC']" in res.stdout + res.stderr


def test_missing_input_file_is_named(tmp_path):
    sheet = (REPO / "config" / "samples.tsv").read_text().replace("HSC_5M.chr1_chr2.bam", "HSC_5M.missing.bam")
    res = _dry_run(_workdir(tmp_path, sheet=sheet))
    assert res.returncode != 0
    assert "HSC_5M.missing.bam" in res.stdout + res.stderr and "does not exist" in res.stdout + res.stderr


MINIMAL = {
    "samples": "config/samples.tsv",
    "genome": {"sizes": "resources/demo/hg19_first10mb.chr1_chr2.sizes"},
    "split": {"val_chroms": ["chr2:3000000-5000000"], "holdout_chroms": ["chr2:5000000-10000000"]},
}


def test_a_minimal_cohort_config_takes_the_schema_defaults_not_the_demo(tmp_path):
    """--configfile replaces the demo's config/config.yaml: nothing of the demo's leaks into a cohort's run."""
    workdir = _workdir(tmp_path)  # config/config.yaml (the demo's) is present in the working directory
    (workdir / "cohort.yaml").write_text(yaml.safe_dump(MINIMAL))
    cmd = ["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "-p", "--cores", "1"]
    res = subprocess.run(
        [*cmd, "--configfile", str(workdir / "cohort.yaml")],
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "/15000.rep1" not in out and "/60000.rep1" not in out  # the demo's depths are not planned
    assert "results/subsample/" not in out  # depths default to none: only the sheet's real noisy file
    assert """--settings '{"preset": "standard", "seed": 1}'""" in out  # the schema's preset, not the demo's light
    assert "results/models/default/model.pt" in out  # model.name defaults to default, not demo
    assert "take the schema's defaults" in out and "depths=[]" in out and 'model.name="default"' in out


def test_without_a_configfile_the_demo_config_is_used(tmp_path):
    res = _dry_run(_workdir(tmp_path))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "results/models/demo/model.pt" in out and "/15000.rep1" in out


def test_several_real_low_depth_files_each_become_a_benchmarked_track(tmp_path, shared_data):
    """A cohort has several real shallow libraries per cell type: `noisy` takes them separated by ';'."""
    immune = shared_data / "immune"
    clean = immune / "TCD8EM_S_1001_a.fragments.tsv.gz"
    noisy = [immune / "TCD8EM_S_1002_a.fragments.tsv.gz", immune / "TCD8EM_S_1003_b.fragments.tsv.gz"]
    (tmp_path / "samples.tsv").write_text(
        f"sample\tcell_type\tkind\tpath\tnoisy\nEM\tTCD8EM\tfragments\t{clean}\t{noisy[0]}; {noisy[1]}\n"
    )
    config = {
        "samples": "samples.tsv",
        "genome": {"sizes": str(REPO / "resources" / "genomes" / "hg38.chrom.sizes"), "chroms": ["chr21"]},
        "split": {"val_chroms": ["chr21:13000000-20000000"], "holdout_chroms": ["chr21:20000000-31000000"]},
    }
    (tmp_path / "cohort.yaml").write_text(yaml.safe_dump(config))
    cmd = ["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--cores", "1"]
    res = subprocess.run([*cmd, "--configfile", str(tmp_path / "cohort.yaml")], capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for label, path in (("given-TCD8EM_S_1002_a", noisy[0]), ("given-TCD8EM_S_1003_b", noisy[1])):
        assert f"results/coverage/EM/{label}.rep1.bw" in out  # its own coverage, from its own file
        assert f"results/benchmark/default/per_track/EM/{label}.rep1.tsv" in out  # and its own benchmark rows
        assert f"results/dataset/EM/{label}.rep1" in out  # and a training pair
        assert str(path) in out
    assert "results/coverage/EM/given.rep1.bw" not in out


def test_two_noisy_files_that_would_share_a_depth_label_are_refused(tmp_path):
    from atacdenoise.checks import given_labels
    from atacdenoise.errors import InputError

    assert given_labels("a/x.bam") == [("given", "a/x.bam")]
    assert given_labels("a/D2-a.fragments.tsv.gz;b/D3.b.bam") == [
        ("given-D2_a", "a/D2-a.fragments.tsv.gz"),
        ("given-D3_b", "b/D3.b.bam"),
    ]
    with pytest.raises(InputError, match=r"noisy files 'a/D2\.bam' and 'b/D2\.bam' would both be depth 'given-D2'"):
        given_labels("a/D2.bam;b/D2.bam")


def test_a_noisy_library_inside_its_own_pool_is_refused(tmp_path):
    """A real low-depth library scored against a pool that contains it would inflate every figure."""
    import pandas as pd

    from atacdenoise.checks import check_inputs
    from atacdenoise.errors import InputError

    lib = [str(REPO / f"resources/immune/TeffNaive_U_100{d}_a.fragments.tsv.gz") for d in (1, 2)]
    sheet = pd.DataFrame(
        [{"sample": "T", "cell_type": "T", "kind": "fragments", "path": ";".join(lib), "noisy": lib[1], "role": "test"}]
    )
    config = {"samples": "sheet.tsv", "genome": {"sizes": str(REPO / "resources/genomes/hg38.chrom.sizes")}}
    with pytest.raises(InputError, match="is also in the pooled reference") as err:
        check_inputs(sheet, config, results=None)
    assert lib[1] in str(err.value) and "pool the other donors" in str(err.value)
    sheet.loc[0, "kind"] = "bigwig"
    with pytest.raises(InputError, match="kind bigwig cannot be pooled"):
        check_inputs(sheet.assign(noisy=""), config, results=None)
    check_inputs(
        sheet.assign(kind="fragments", noisy=str(REPO / "resources/immune/TeffNaive_U_1004_a.fragments.tsv.gz")),
        config,
        results=None,
    )


def test_split_may_be_empty_when_nothing_is_trained_or_benchmarked(tmp_path):
    """Role apply with model.pretrained needs no split.*; a train sample without val regions is named."""
    sheet = tmp_path / "s.tsv"
    sheet.write_text(
        f"sample\tcell_type\tkind\tpath\trole\nHSC\tHSC\tbam\t{REPO / 'resources/demo/HSC_80M.chr1_chr2.bam'}\ttrain\n"
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {"samples": str(sheet), "genome": {"sizes": str(REPO / "resources/demo/hg19_first10mb.chr1_chr2.sizes")}}
        )
    )
    res = subprocess.run(
        ["snakemake", "-n", "-s", str(REPO / "Snakefile"), "--configfile", str(cfg), "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode != 0 and "split.val_chroms is empty but a model is trained" in res.stdout + res.stderr


# --------------------------------------------------------------------------- config values reaching a shell (issue 17)
@pytest.mark.parametrize(
    ("edit", "key", "value"),
    [
        (lambda c: c["model"].update(infer_chroms=["chr2", "chr2;touch pwned"]), "infer_chroms", "chr2;touch pwned"),
        (lambda c: c["peaks"]["labels"].update({"lambda": {"chr1 $(touch pwned)": 3.0}}), "lambda", "$(touch pwned)"),
        (lambda c: c["genome"].update(macs3_genome_size="hs; touch pwned"), "macs3_genome_size", "hs; touch pwned"),
        (lambda c: c["genome"].update(chroms=["-h"]), "chroms", "-h"),
        (lambda c: c["split"].update(val_chroms=["chr2`touch pwned`"]), "val_chroms", "touch pwned"),
        (lambda c: c["model"].update(name=".."), "model.name", ".."),
        (lambda c: c["model"].update(name="-h"), "model.name", "-h"),
    ],
)
def test_config_values_that_reach_a_shell_must_match_their_pattern(tmp_path, edit, key, value):
    """Chromosome names, λ keys, the genome size and the model name are refused before anything runs."""
    res = _dry_run(_workdir(tmp_path, edit))
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert key in out and value in out, out
    assert not (tmp_path / "pwned").exists()


def test_model_name_that_is_a_path_is_explained(tmp_path):
    res = _dry_run(_workdir(tmp_path, lambda c: c["model"].update(name="..")))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "model.name '..' is unsafe in file paths and shell commands" in out and "outside their folder" in out


@pytest.mark.parametrize("size", ["hs", "mm", "ce", "dm", "2.7e9", "2700000000", "1.87E+9", ".5e9"])
def test_genome_sizes_that_macs3_takes_pass_the_schema(tmp_path, size):
    res = _dry_run(_workdir(tmp_path, lambda c: c["genome"].update(macs3_genome_size=size)))
    assert res.returncode == 0, res.stdout + res.stderr


def test_real_chromosome_names_pass_the_schema():
    """Every name of the bundled hg19/hg38/mm10 sizes files, GRCh38's HLA contigs and PanSN names match the pattern."""
    import re

    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]
    patterns = {
        props["genome"]["properties"]["chroms"]["items"]["pattern"],
        props["model"]["properties"]["infer_chroms"]["items"]["pattern"],
        props["peaks"]["properties"]["labels"]["properties"]["lambda"]["propertyNames"]["pattern"],
    }
    assert len(patterns) == 1
    chrom = re.compile(patterns.pop())
    names = [
        line.split("\t")[0]
        for f in (REPO / "resources" / "genomes").glob("*.sizes")
        for line in f.read_text().split("\n")
    ]
    names = [n for n in names if n] + [
        "1",
        "MT",
        "GL000009.2",
        "chr1_KI270762v1_alt",
        "HLA-A*01:01:01:01",
        "HG002#1#chr1",
    ]
    assert "chrUn_KI270302v1" in names
    assert [n for n in names if not chrom.match(n)] == []
    for bad in ("-h", "..", "chr1;x", "chr 1", "chr1=2", "$(x)", "a/b", "'chr1'"):
        assert not chrom.match(bad), bad


@pytest.mark.parametrize("value", [0, -1, 1.5, "three"])
def test_model_ensemble_must_be_a_positive_integer(tmp_path, value):
    res = _dry_run(_workdir(tmp_path, lambda c: c["model"].update(ensemble=value)))
    assert res.returncode != 0
    assert "ensemble" in res.stdout + res.stderr


def test_model_ensemble_defaults_to_one_model_and_k_plans_members_with_derived_seeds(tmp_path):
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["properties"]["model"]["properties"]["ensemble"]["default"] == 1
    (tmp_path / "one").mkdir()
    (tmp_path / "three").mkdir()
    one = subprocess.run(
        [*_dry_run_cmd(_workdir(tmp_path / "one")), "-p"], capture_output=True, text=True, cwd=tmp_path
    )
    assert one.returncode == 0, one.stdout + one.stderr
    assert "train_member" not in one.stdout and ".spread.bw" not in one.stdout
    assert "atacdenoise infer --model results/models/demo/model.pt --input" in one.stdout  # as before the option
    three = subprocess.run(
        [*_dry_run_cmd(_workdir(tmp_path / "three", lambda c: c["model"].update(ensemble=3))), "-p"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert three.returncode == 0, three.stdout + three.stderr
    out = three.stdout
    members = (
        "results/models/demo/model.pt results/models/demo/members/2/model.pt results/models/demo/members/3/model.pt"
    )
    assert f"atacdenoise infer --model {members} --input" in out
    assert '"seed": 1002' in out and '"seed": 1003' in out and "--out-dir results/models/demo/members/3" in out
    assert "results/denoised/demo/HSC/given.rep1.spread.bw" in out


def test_model_ensemble_with_a_pretrained_model_is_refused(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"a model file")
    res = _dry_run(_workdir(tmp_path, lambda c: c["model"].update(ensemble=2, pretrained=str(tmp_path / "model.pt"))))
    assert res.returncode != 0
    assert "model.ensemble is 2 but model.pretrained is set" in res.stdout + res.stderr


def _dry_run_cmd(workdir: Path) -> list[str]:
    return ["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "--cores", "1"]
