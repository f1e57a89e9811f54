# atac-denoise: denoise low-depth ATAC-seq coverage and call peaks with a 1-D ResNet.
# Entry point only: configuration, validation, rule files, default target.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/reads.smk"
include: "workflow/rules/cells.smk"
include: "workflow/rules/coverage.smk"
include: "workflow/rules/peaks.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/benchmark.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_targets(),
