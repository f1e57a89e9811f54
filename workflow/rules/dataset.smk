# Stage 4: per-chromosome training arrays (noisy, clean, labels, blacklist mask) for each pair.


rule dataset:
    input:
        noisy="results/coverage/{sample}/{depth}.rep{rep}.bw",
        clean="results/coverage/{sample}/full.rep1.bw",
        labels=labels_path,
        sizes=config["genome"]["sizes"],
        regions=target_input(),
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
        mem_mb=8000,
        runtime=60,
    params:
        chroms=chroms_arg(),
        blacklist=blacklist_arg(),
        target=target_arg(),
        cell_type=lambda w: sample_row(w).cell_type,
    shell:
        "atacdenoise dataset --noisy {input.noisy:q} --clean {input.clean:q} --labels {input.labels:q}"
        " --sizes {input.sizes:q} {params.chroms} {params.blacklist} {params.target} --sample {wildcards.sample:q}"
        " --cell-type {params.cell_type:q} --depth {wildcards.depth} --rep {wildcards.rep} --out {output:q} 2> {log:q}"
