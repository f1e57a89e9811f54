# Stage 1: seeded, pair-aware subsampling of the clean reads to the configured depths.


rule pool:
    input:
        pool_inputs,
    output:
        reads="results/pool/{sample}/full.{ext}",
        meta="results/pool/{sample}/full.{ext}.json",
    log:
        "results/logs/pool/{sample}.{ext}.log",
    benchmark:
        "results/benchmarks/pool/{sample}.{ext}.tsv"
    wildcard_constraints:
        ext=r"bam|tsv\.gz",
    conda:
        "../../envs/atacdenoise.yaml"
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        kind=lambda w: sample_row(w).kind,
        sizes=config["genome"]["sizes"],
        exclude=config["genome"]["exclude"],
    shell:
        "atacdenoise pool --inputs {input:q} --kind {params.kind} --sizes {params.sizes:q} --exclude {params.exclude:q}"
        " --threads {threads} --out {output.reads:q} 2> {log:q}"


rule count_fragments:
    input:
        reads=subsample_source,
        regions=target_input(),
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
        target=target_arg(),
    shell:
        "atacdenoise count --input {input.reads:q} --sizes {params.sizes:q} --min-mapq {params.min_mapq} {params.target}"
        " --threads {threads} --out {output.counts:q} 2> {log:q}"


rule subsample_bam:
    input:
        reads=subsample_source,
        counts="results/subsample/{sample}/usable_fragments.json",
        regions=target_input(),
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
        target=target_arg(),
    shell:
        "atacdenoise subsample --input {input.reads:q} --fragments {wildcards.depth} --seed {params.seed}"
        " --sizes {params.sizes:q} --min-mapq {params.min_mapq} --counts {input.counts:q} {params.target}"
        " --threads {threads} --out {output.bam:q} 2> {log:q}"


rule subsample_fragments:
    input:
        reads=subsample_source,
        regions=target_input(),
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
        sizes=config["genome"]["sizes"],
        target=target_arg(),
    shell:
        "atacdenoise subsample --input {input.reads:q} --fragments {wildcards.depth} --seed {params.seed}"
        " --sizes {params.sizes:q} {params.target} --out {output.frags:q} 2> {log:q}"


ruleorder: subsample_bam > subsample_fragments
