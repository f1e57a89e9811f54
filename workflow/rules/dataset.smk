# Stage 4: training arrays. A sample's clean part (deep track, peak labels, mask) is stored once;
# each noisy input adds only its own track beside it (docs/ARCHITECTURE.md, "Training data").


rule dataset_clean:
    input:
        clean="results/coverage/{sample}/full.rep1.bw",
        labels=labels_path,
        sizes=config["genome"]["sizes"],
        regions=target_input(),
    output:
        directory("results/dataset/{sample}/clean"),
    log:
        "results/logs/dataset/{sample}/clean.log",
    benchmark:
        "results/benchmarks/dataset/{sample}/clean.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        chroms=chroms_arg(),
        blacklist=blacklist_arg(),
        target=target_arg(),
        cell_type=lambda w: sample_row(w).cell_type,
    shell:
        "atacdenoise dataset-clean --clean {input.clean:q} --labels {input.labels:q} --sizes {input.sizes:q}"
        " {params.chroms} {params.blacklist} {params.target} --sample {wildcards.sample:q}"
        " --cell-type {params.cell_type:q} --out {output:q} 2> {log:q}"


rule dataset:
    input:
        noisy="results/coverage/{sample}/{depth}.rep{rep}.bw",
        clean="results/dataset/{sample}/clean",
        sizes=config["genome"]["sizes"],
    output:
        directory("results/dataset/{sample}/{depth}.rep{rep}"),
    log:
        "results/logs/dataset/{sample}/{depth}.rep{rep}.log",
    benchmark:
        "results/benchmarks/dataset/{sample}/{depth}.rep{rep}.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "atacdenoise dataset --noisy {input.noisy:q} --clean-dataset {input.clean:q} --sizes {input.sizes:q}"
        " --depth {wildcards.depth} --rep {wildcards.rep} --out {output:q} 2> {log:q}"
