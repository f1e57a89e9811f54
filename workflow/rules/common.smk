# Sample sheet, config validation and the helpers that map wildcards to input paths.
import functools
import json
import shlex
from pathlib import Path

import copy

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import validate

from atacdenoise.checks import (
    config_name_problems,
    defaulted_keys,
    given_labels,
    read_sheet,
    sheet_files,
    sheet_name_problems,
)
from atacdenoise.errors import InputError


def _refuse(problems):
    """Stop at parse time with every problem listed (nothing has run)."""
    if problems:
        raise WorkflowError("\n".join(problems))


_GIVEN_CONFIG = copy.deepcopy(config)
_refuse(config_name_problems(config, ", ".join(map(str, workflow.configfiles)) or "config"))
validate(config, "../schemas/config.schema.yaml")
_DEFAULTED = defaulted_keys(_GIVEN_CONFIG, config)
if _DEFAULTED:
    logger.info(
        f"config: {len(_DEFAULTED)} key(s) not set in {', '.join(map(str, workflow.configfiles)) or 'the config'} take the "
        "schema's defaults (workflow/schemas/config.schema.yaml): "
        + "; ".join(f"{k}={json.dumps(v)}" for k, v in _DEFAULTED.items())
    )

try:  # a relative `samples` path is read from the working directory (--directory): say so if it is not there
    SAMPLES = read_sheet(Path(config["samples"]))
except InputError as exc:
    raise WorkflowError(str(exc)) from None
_refuse(sheet_name_problems(SAMPLES, config["samples"]))  # '.', '..', '-h' as names: before the schema's terse pattern
validate(SAMPLES, "../schemas/samples.schema.yaml")


#: the simulated single-cell fixture (rule simulate_cells), which sample sheet rows may name before it exists
FIXTURE_FRAGMENTS = "results/fixture/cells.fragments.tsv.gz"
FIXTURE_BARCODES = "results/fixture/cells.barcodes.tsv"
FIXTURE_INDEX = f"{FIXTURE_FRAGMENTS}.tbi"


def made_by_workflow(path):
    """True for input paths that a rule of this workflow makes (the simulated fixture, when configured)."""
    return bool(config.get("simulate_cells")) and path in (FIXTURE_FRAGMENTS, FIXTURE_BARCODES)


def _sheet_error(msg):
    raise WorkflowError(f"{config['samples']}: {msg}")


def _check_sheet(df):
    dup = df["sample"][df["sample"].duplicated()].unique().tolist()
    if dup:
        _sheet_error(f"duplicate sample names {dup}; every row needs a unique `sample`")
    for row in df.itertuples():
        for col in ("path", "noisy", "peaks", "barcodes"):
            values = sheet_files(getattr(row, col)) if col in ("path", "noisy") else [getattr(row, col)]
            for value in (v for v in values if v and not made_by_workflow(v) and not Path(v).exists()):
                _sheet_error(
                    f"sample {row.sample}: {col} file {value!r} does not exist (paths are relative to the directory "
                    f"snakemake runs in, here {Path.cwd()})"
                )
        if row.barcodes and row.kind != "fragments":
            _sheet_error(f"sample {row.sample}: `barcodes` applies to kind fragments only (kind is {row.kind})")
        if row.role == "apply" and (row.noisy or row.peaks):
            _sheet_error(
                f"sample {row.sample}: role apply takes only `path` (the low-depth data to denoise); remove noisy/peaks or use role test"
            )
    if not (df["role"] != "apply").any() and not config["model"].get("pretrained"):
        _sheet_error(
            "no train/test sample and no model.pretrained: there is nothing to train on; add a train sample or set model.pretrained"
        )
    split = config["split"]
    if (df["role"] == "train").any() and not config["model"].get("pretrained") and not split["val_chroms"]:
        raise WorkflowError(
            "config split.val_chroms is empty but a model is trained (role train samples, no model.pretrained): "
            "give the validation chromosomes or regions that pick the best epoch"
        )
    if (df["role"] != "apply").any() and not split["holdout_chroms"]:
        raise WorkflowError(
            "config split.holdout_chroms is empty but there are role train/test samples to benchmark: "
            "give the holdout chromosomes or regions the benchmark scores"
        )


_check_sheet(SAMPLES)

# Cheap up-front checks of every input (indexes, sort order, chromosome names, peak coordinates, depths,
# cell counts, writable results/): one error listing every problem before any job starts.
from atacdenoise.checks import check_inputs

try:
    check_inputs(SAMPLES, config, made_by_workflow=made_by_workflow)
except InputError as exc:
    raise WorkflowError(str(exc)) from None
SAMPLES = SAMPLES.set_index("sample", drop=False)
MODEL = config["model"]["name"]
DEPTHS = [str(d) for d in config["depths"]]
CELLS = [f"c{n}" for n in config["cells"]]
REPS = [str(r) for r in range(1, config["replicates"] + 1)]
#: models of the ensemble (model.ensemble): 1 = a single model, the default
ENSEMBLE = config["model"]["ensemble"]
if ENSEMBLE > 1 and config["model"]["pretrained"]:
    raise WorkflowError(
        f"config model.ensemble is {ENSEMBLE} but model.pretrained is set: the ensemble trains its members here; "
        "set model.ensemble to 1 to apply a pretrained model, or remove model.pretrained"
    )


# Names are folder names: never '.', '..' or a leading '-' (atacdenoise.checks.SAFE_NAME), never a '/'.
wildcard_constraints:
    sample="[A-Za-z0-9_][A-Za-z0-9._-]*",
    depth=r"full|given(-\w+)?|c\d+|\d+",
    rep=r"\d+",
    caller="bdgpeakcall|callpeak",
    model="[A-Za-z0-9_][A-Za-z0-9._-]*",
    member=r"[2-9]|[1-9]\d+",


def sample_row(wildcards):
    return SAMPLES.loc[wildcards.sample]


def noisy_targets(sample):
    """(depth, rep) of every noisy version of a sample: the given file(s) and the subsampled depths."""
    row = SAMPLES.loc[sample]
    out = []
    if row.role == "apply":
        out.append(("given", "1"))
    out += [(label, "1") for label, _ in given_labels(row.noisy)]
    if row.role != "apply":
        out += [(d, r) for d in DEPTHS for r in REPS]
        if row.barcodes:
            out += [(c, r) for c in CELLS for r in REPS]
    return out


def reference_samples():
    """Samples with clean data (train and test roles)."""
    return [s for s in SAMPLES.index if SAMPLES.loc[s, "role"] != "apply"]


def training_pairs():
    return [(s, d, r) for s in SAMPLES.index if SAMPLES.loc[s, "role"] == "train" for d, r in noisy_targets(s)]


def pooled(row):
    """The files of a sample's `path` cell: one input, or several libraries pooled into its deep reference."""
    return sheet_files(row.path)


def pool_path(row):
    """Where rule pool writes a sample's pooled reference."""
    return f"results/pool/{row.name}/full." + ("bam" if row.kind == "bam" else "tsv.gz")


def clean_source(row):
    """The deep input of a sample: its cell type's pseudobulk, its pooled libraries, or its one `path` file."""
    if row.barcodes:
        return pseudobulk_path(row)
    return pool_path(row) if len(pooled(row)) > 1 else row.path


def pool_inputs(wildcards):
    row = sample_row(wildcards)
    if len(pooled(row)) < 2:
        raise WorkflowError(f"sample {row.name}: one `path` file, nothing to pool")
    return pooled(row)


def reads_input(wildcards):
    """The reads (BAM or fragments) behind coverage/{sample}/{depth}.rep{rep}."""
    row = sample_row(wildcards)
    if wildcards.depth == "full" or (wildcards.depth == "given" and row.role == "apply"):
        return clean_source(row)
    if wildcards.depth.startswith("given"):
        return dict(given_labels(row.noisy))[wildcards.depth]
    ext = "bam" if row.kind == "bam" else "tsv.gz"
    return f"results/subsample/{wildcards.sample}/{wildcards.depth}.rep{wildcards.rep}.{ext}"


def pseudobulk_path(row):
    """All cells of a fragments sample's cell type (rule pseudobulk in cells.smk)."""
    return f"results/cells/{row.name}/full.tsv.gz"


def subsample_source(wildcards):
    row = sample_row(wildcards)
    if row.kind == "bigwig":
        raise WorkflowError(
            f"sample {row.sample}: depths cannot be subsampled from a bigWig; set depths: [] or give a BAM/fragments file"
        )
    return clean_source(row)


def labels_path(wildcards):
    """Clean peak labels: the user's peak file, else bdgpeakcall on the clean track."""
    row = sample_row(wildcards)
    return row.peaks or f"results/peaks/{wildcards.sample}/full.rep1.bdgpeakcall.narrowPeak"


def model_path(wildcards=None):
    return config["model"]["pretrained"] or f"results/models/{MODEL}/model.pt"


def model_settings(seed=None):
    """The JSON settings handed to `atacdenoise train`: preset + architecture + training keys + seed (default: `seed`)."""
    m = config["model"]
    seed = config["seed"] if seed is None else seed
    return json.dumps({"preset": m["preset"], **m["architecture"], **m["training"], "seed": seed}, sort_keys=True)


def member_seed(k):
    """Training seed of ensemble member k (1-based): member 1 is the single model (`seed`), member k >= 2 `seed` × 1000 + k."""
    return config["seed"] if k == 1 else config["seed"] * 1000 + k


def member_settings(wildcards):
    """`atacdenoise train --settings` of ensemble member {member} (>= 2): the model's settings, its own seed."""
    return model_settings(member_seed(int(wildcards.member)))


def infer_models(wildcards=None):
    """The model file(s) inference applies: model.pt alone, or with model.ensemble K > 1 member 1 (the same
    model.pt) and members 2..K (results/models/{model}/members/{k}/model.pt)."""
    if ENSEMBLE == 1:
        return model_path()
    return [model_path()] + [f"results/models/{MODEL}/members/{k}/model.pt" for k in range(2, ENSEMBLE + 1)]


def ensemble_outputs():
    """The infer rule's extra output with model.ensemble K > 1: the per-base spread bigWig (none for K = 1)."""
    if ENSEMBLE == 1:
        return {}
    return {"spread": "results/denoised/{model}/{sample}/{depth}.rep{rep}.spread.bw"}


def region_args(key):
    return " ".join(shlex.quote(r) for r in config["split"][key])


def blacklist_arg():
    b = config["genome"]["blacklist"]
    return f"--blacklist {shlex.quote(b)}" if b else ""


def target_arg():
    """`--target-regions BED` of the commands restricted to genome.regions (nothing without it)."""
    r = config["genome"]["regions"]
    return f"--target-regions {shlex.quote(r)}" if r else ""


def target_input():
    """genome.regions as a rule input (so that a changed BED reruns what depends on it); [] without it."""
    return config["genome"]["regions"] or []


def chroms_arg():
    c = config["genome"]["chroms"]
    return ("--chroms " + " ".join(shlex.quote(x) for x in c)) if c else ""


def infer_chroms_arg():
    """`--chroms` of inference: model.infer_chroms, else genome.chroms (each name shell-quoted)."""
    c = config["model"]["infer_chroms"]
    return ("--chroms " + " ".join(shlex.quote(x) for x in c)) if c else chroms_arg()


def denoised(sample, depth, rep, suffix):
    return f"results/denoised/{MODEL}/{sample}/{depth}.rep{rep}.{suffix}"


def flatten(x):
    """A path or a list of paths as a list."""
    return [x] if isinstance(x, str) else list(x)


def all_targets():
    # the model file(s) themselves: a training killed after its outputs were removed (e.g. a forced retrain) leaves
    # model.pt missing beside the old denoised files; as a target it is always re-made (and resumed) by a rerun
    targets = [] if config["model"]["pretrained"] else list(dict.fromkeys(flatten(infer_models())))
    for s in SAMPLES.index:
        for d, r in noisy_targets(s):
            targets += [denoised(s, d, r, x) for x in ("track.bw", "peakprob.bw", "peaks.narrowPeak", "fitness.tsv")]
            targets += [denoised(s, d, r, "spread.bw")] if ENSEMBLE > 1 else []
    if reference_samples():
        targets += benchmark_targets()
    targets += qc_targets()
    return targets


# --------------------------------------------------------------------------- helpers of benchmark.smk


def benchmark_pairs():
    """(sample, depth, rep) of every noisy track that has clean data to compare with."""
    return [(s, d, r) for s in reference_samples() for d, r in noisy_targets(s)]


def figure_depths(sample):
    """Depths drawn as track snapshots / heatmaps of a sample: every noisy depth, replicate 1."""
    return list(dict.fromkeys(d for d, _ in noisy_targets(sample)))


@functools.cache
def holdout_mb():
    """Megabases of the holdout regions (memory requests of the metrics and plot rules; read once, when a job needs it)."""
    from atacdenoise.io.genome import parse_region, read_chrom_sizes

    sizes = read_chrom_sizes(config["genome"]["sizes"])
    return sum((r.end - r.start) for r in (parse_region(x, sizes) for x in config["split"]["holdout_chroms"])) / 1e6


def baselines(wildcards):
    """(name, narrowPeak, pval bigWig) of the MACS3 baselines of one noisy track: bdgpeakcall always,
    callpeak where there are reads (not for bigWig input)."""
    callers = ["bdgpeakcall"] + (["callpeak"] if sample_row(wildcards).kind != "bigwig" else [])
    prefix = f"results/peaks/{wildcards.sample}/{wildcards.depth}.rep{wildcards.rep}"
    return [(f"macs3_{c}", f"{prefix}.{c}.narrowPeak", f"{prefix}.{c}.pval.bw") for c in callers]


def baseline_args(wildcards):
    return " ".join(
        f"--baseline {name}={shlex.quote(peaks)},{shlex.quote(pval)}" for name, peaks, pval in baselines(wildcards)
    )


def baseline_inputs(wildcards):
    return [path for _, peaks, pval in baselines(wildcards) for path in (peaks, pval)]


def denoised_inputs(wildcards):
    """The denoised outputs the benchmark reads (with an ensemble, the spread too)."""
    names = ("track.bw", "peakprob.bw", "peaks.narrowPeak") + (("spread.bw",) if ENSEMBLE > 1 else ())
    return [denoised(wildcards.sample, wildcards.depth, wildcards.rep, x) for x in names]


def bench(model, *parts):
    return f"results/benchmark/{model}/" + "/".join(parts)


def benchmark_targets():
    tables = ("metrics.tsv", "summary.tsv", "summary_by_cell_type.tsv", "effective_depth.tsv")
    targets = [bench(MODEL, x) for x in (*tables, "effective_depth_by_cell_type.tsv")]
    targets.append(bench(MODEL, "plots", "depth.png"))
    for s in reference_samples():
        targets += [bench(MODEL, "plots", kind, f"{s}.png") for kind in ("pr", "reliability")]
        for d in figure_depths(s):
            targets += [bench(MODEL, "plots", kind, s, f"{d}.rep1.png") for kind in ("tracks", "heatmap")]
    return targets


# --------------------------------------------------------------------------- helpers of cells.smk


def sample_barcodes(wildcards):
    row = sample_row(wildcards)
    if row.kind != "fragments" or not row.barcodes:
        raise WorkflowError(
            f"sample {row.name}: cell pseudobulks need kind fragments and a `barcodes` table in the sample sheet"
        )
    return row.barcodes


def sample_fragments(wildcards):
    sample_barcodes(wildcards)
    return sample_row(wildcards).path


def cell_type(wildcards):
    return sample_row(wildcards).cell_type


# --------------------------------------------------------------------------- helpers of coverage.smk


def coverage_kind(wildcards):
    return sample_row(wildcards).kind


# --------------------------------------------------------------------------- helpers of qc.smk


def qc_inputs():
    """(sample, depth, rep) of every input QC'd: the clean data and noisy tracks of reference samples, the
    apply samples' files."""
    full = [(s, "full", "1") for s in reference_samples()]
    apply = [(s, d, r) for s in SAMPLES.index if SAMPLES.loc[s, "role"] == "apply" for d, r in noisy_targets(s)]
    return list(dict.fromkeys(full + benchmark_pairs() + apply))


def qc_path(sample, depth, rep, suffix="tsv"):
    return f"results/qc/{sample}/{depth}.rep{rep}.{suffix}"


def qc_peaks(wildcards):
    """The clean peaks FRiP is computed against; none for apply samples (no clean data)."""
    return [] if sample_row(wildcards).role == "apply" else [labels_path(wildcards)]


def qc_optional_beds():
    """Target regions (genome.regions) and TSSs (genome.tss), when configured."""
    return {k: config["genome"][k] for k in ("regions", "tss") if config["genome"].get(k)}


def qc_optional_args(wildcards, input):
    args = [f"--peaks {shlex.quote(str(p))}" for p in input.peaks]
    flags = {"regions": "--target-regions", "tss": "--tss"}
    args += [f"{flags[k]} {shlex.quote(str(input[k]))}" for k in qc_optional_beds()]
    return " ".join(args)


def qc_targets():
    return [
        "results/qc/qc.tsv",
        "results/qc/fragment_lengths.png",
        "results/qc/cut_sites_per_mb.png",
    ]


# --------------------------------------------------------------------------- helpers of peaks.smk


def lambda_args(wildcards):
    """Fixed per-chromosome lambda applies to the clean track only (it is depth-specific)."""
    labels = config["peaks"]["labels"]
    if wildcards.depth != "full":
        return ""
    fixed = " ".join(shlex.quote(f"{c}={v}") for c, v in labels["lambda"].items())
    return (f"--lambda {fixed} " if fixed else "") + f"--lambda-scale {shlex.quote(str(labels['lambda_scale']))}"


# --------------------------------------------------------------------------- the commands the jobs run


def check_tools():
    """Stop before the first job when `atacdenoise`, MACS3 or deepTools are not on PATH (onstart, Snakefile).

    Run only when jobs will run (not for --dry-run, --lint or --touch); not with `--sdm conda`, where every job gets
    envs/atacdenoise.yaml.
    """
    from snakemake_interface_executor_plugins.settings import DeploymentMethod

    from atacdenoise.checks import tools_problem

    if workflow.touch or DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
        return
    problem = tools_problem()
    if problem:
        raise WorkflowError(problem)
