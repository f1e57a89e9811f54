# atac-denoise: denoise low-depth ATAC-seq coverage and call peaks with a 1-D ResNet.
# Entry point only: configuration, validation, rule files, default target.
from snakemake.utils import min_version

min_version("9.0")


# The config is the files given with --configfile, else the bundled demo's; never a mix of the two, so that
# a cohort's config cannot silently inherit the demo's values. Keys left out take the schema's defaults
# (listed in the log by common.smk).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/reads.smk"
include: "workflow/rules/cells.smk"
include: "workflow/rules/coverage.smk"
include: "workflow/rules/peaks.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/report.smk"


# Before the first job (not for --dry-run or --lint): every rule runs `atacdenoise` by name, which is on PATH
# only in the activated environment (`source .venv/bin/activate`, or `make demo`); say so instead of N exit-127 jobs.
onstart:
    check_tools()


rule all:
    default_target: True
    input:
        all_targets(),
