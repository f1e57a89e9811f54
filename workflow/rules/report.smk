# Snakemake HTML report: the workflow description below; figures and tables are report()-tagged in
# benchmark.smk, model.smk and qc.smk (captions in workflow/report/). Built by `make demo` with `snakemake --report`.


report: "../report/workflow.rst"
