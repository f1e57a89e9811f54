# Stage 1: seeded, pair-aware subsampling of the clean reads to the configured depths.


rule count_fragments:
    input:
        reads=subsample_source,
    output:
        counts="results/subsample/{sample}/usable_fragments.json",
    log:
        "results/logs/subsample/{sample}/usable_fragments.log",
    benchmark:
        "results/benchmarks/subsample/{sample}/usable_fragments.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: config["threads"]
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        sizes=config["genome"]["sizes"],
        min_mapq=config["reads"]["min_mapq"],
    shell:
        "atacdenoise count --input {input.reads:q} --sizes {params.sizes:q} --min-mapq {params.min_mapq}"
        " --threads {threads} --out {output.counts:q} 2> {log:q}"


rule subsample_bam:
    input:
        reads=subsample_source,
        counts="results/subsample/{sample}/usable_fragments.json",
    output:
        bam="results/subsample/{sample}/{depth}.rep{rep}.bam",
        bai="results/subsample/{sample}/{depth}.rep{rep}.bam.bai",
    log:
        "results/logs/subsample/{sample}/{depth}.rep{rep}.log",
    benchmark:
        "results/benchmarks/subsample/{sample}/{depth}.rep{rep}.tsv"
    wildcard_constraints:
        depth=r"\d+",
    conda:
        "../../envs/atacdenoise.yaml"
    threads: config["threads"]
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        seed=lambda w: config["seed"] * 1000 + int(w.rep),
        sizes=config["genome"]["sizes"],
        min_mapq=config["reads"]["min_mapq"],
    shell:
        "atacdenoise subsample --input {input.reads:q} --fragments {wildcards.depth} --seed {params.seed}"
        " --sizes {params.sizes:q} --min-mapq {params.min_mapq} --counts {input.counts:q} --threads {threads}"
        " --out {output.bam:q} 2> {log:q}"


rule subsample_fragments:
    input:
        reads=subsample_source,
    output:
        frags="results/subsample/{sample}/{depth}.rep{rep}.tsv.gz",
    log:
        "results/logs/subsample/{sample}/{depth}.rep{rep}.log",
    benchmark:
        "results/benchmarks/subsample/{sample}/{depth}.rep{rep}.tsv"
    wildcard_constraints:
        depth=r"\d+",
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        seed=lambda w: config["seed"] * 1000 + int(w.rep),
    shell:
        "atacdenoise subsample --input {input.reads:q} --fragments {wildcards.depth} --seed {params.seed}"
        " --out {output.frags:q} 2> {log:q}"


ruleorder: subsample_bam > subsample_fragments
