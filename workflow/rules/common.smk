# Sample sheet, config validation and the helpers that map wildcards to input paths.
import json
import shlex
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

SAMPLES = pd.read_csv(config["samples"], sep="\t", dtype=str, comment="#").fillna("")
SAMPLES.columns = SAMPLES.columns.str.strip()
validate(SAMPLES, "../schemas/samples.schema.yaml")


#: the simulated single-cell fixture (rule simulate_cells), which sample sheet rows may name before it exists
FIXTURE_FRAGMENTS = "results/fixture/cells.fragments.tsv.gz"
FIXTURE_BARCODES = "results/fixture/cells.barcodes.tsv"


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
            value = getattr(row, col)
            if value and not made_by_workflow(value) and not Path(value).exists():
                _sheet_error(f"sample {row.sample}: {col} file {value!r} does not exist (paths are relative to the directory snakemake runs in)")
        if row.barcodes and row.kind != "fragments":
            _sheet_error(f"sample {row.sample}: `barcodes` applies to kind fragments only (kind is {row.kind})")
        if row.role == "apply" and (row.noisy or row.peaks):
            _sheet_error(f"sample {row.sample}: role apply takes only `path` (the low-depth data to denoise); remove noisy/peaks or use role test")
    if not (df["role"] != "apply").any() and not config["model"].get("pretrained"):
        _sheet_error("no train/test sample and no model.pretrained: there is nothing to train on; add a train sample or set model.pretrained")


_check_sheet(SAMPLES)

# Cheap up-front checks of every input (indexes, sort order, chromosome names, peak coordinates, depths,
# cell counts, writable results/): one error listing every problem before any job starts.
from atacdenoise.checks import check_inputs
from atacdenoise.errors import InputError

try:
    check_inputs(SAMPLES, config, made_by_workflow=made_by_workflow)
except InputError as exc:
    raise WorkflowError(str(exc)) from None
SAMPLES = SAMPLES.set_index("sample", drop=False)
MODEL = config["model"]["name"]
DEPTHS = [str(d) for d in config["depths"]]
CELLS = [f"c{n}" for n in config["cells"]]
REPS = [str(r) for r in range(1, config["replicates"] + 1)]


wildcard_constraints:
    sample="[A-Za-z0-9._-]+",
    depth=r"full|given|c\d+|\d+",
    rep=r"\d+",
    caller="bdgpeakcall|callpeak",
    model="[A-Za-z0-9._-]+",


def sample_row(wildcards):
    return SAMPLES.loc[wildcards.sample]


def noisy_targets(sample):
    """(depth, rep) of every noisy version of a sample: the given file and the subsampled depths."""
    row = SAMPLES.loc[sample]
    out = []
    if row.role == "apply" or row.noisy:
        out.append(("given", "1"))
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


def reads_input(wildcards):
    """The reads (BAM or fragments) behind coverage/{sample}/{depth}.rep{rep}."""
    row = sample_row(wildcards)
    if wildcards.depth == "full" or (wildcards.depth == "given" and row.role == "apply"):
        return pseudobulk_path(row) if row.barcodes else row.path
    if wildcards.depth == "given":
        return row.noisy
    ext = "bam" if row.kind == "bam" else "tsv.gz"
    return f"results/subsample/{wildcards.sample}/{wildcards.depth}.rep{wildcards.rep}.{ext}"


def pseudobulk_path(row):
    """All cells of a fragments sample's cell type (rule pseudobulk in cells.smk)."""
    return f"results/cells/{row.name}/full.tsv.gz"


def subsample_source(wildcards):
    row = sample_row(wildcards)
    if row.kind == "bigwig":
        raise WorkflowError(f"sample {row.sample}: depths cannot be subsampled from a bigWig; set depths: [] or give a BAM/fragments file")
    return pseudobulk_path(row) if row.barcodes else row.path


def labels_path(wildcards):
    """Clean peak labels: the user's peak file, else bdgpeakcall on the clean track."""
    row = sample_row(wildcards)
    return row.peaks or f"results/peaks/{wildcards.sample}/full.rep1.bdgpeakcall.narrowPeak"


def model_path(wildcards=None):
    return config["model"]["pretrained"] or f"results/models/{MODEL}/model.pt"


def model_settings():
    """The JSON settings handed to `atacdenoise train`: preset + architecture + training keys + seed."""
    m = config["model"]
    return json.dumps({"preset": m["preset"], **m["architecture"], **m["training"], "seed": config["seed"]}, sort_keys=True)


def region_args(key):
    return " ".join(shlex.quote(r) for r in config["split"][key])


def blacklist_arg():
    b = config["genome"]["blacklist"]
    return f"--blacklist {shlex.quote(b)}" if b else ""


def chroms_arg():
    c = config["genome"]["chroms"]
    return ("--chroms " + " ".join(shlex.quote(x) for x in c)) if c else ""


def denoised(sample, depth, rep, suffix):
    return f"results/denoised/{MODEL}/{sample}/{depth}.rep{rep}.{suffix}"


def all_targets():
    targets = []
    for s in SAMPLES.index:
        for d, r in noisy_targets(s):
            targets += [denoised(s, d, r, x) for x in ("track.bw", "peakprob.bw", "peaks.narrowPeak")]
    if reference_samples():
        targets += benchmark_targets()
    return targets
