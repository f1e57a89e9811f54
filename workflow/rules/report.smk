# Snakemake HTML report wiring (figures are report()-tagged in benchmark.smk).
