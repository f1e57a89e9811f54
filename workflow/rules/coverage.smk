# Stage 2: Tn5 cut-site coverage bigWig (+ a JSON sidecar with the preprocessing settings).


rule coverage:
    input:
        reads=reads_input,
        sizes=config["genome"]["sizes"],
        regions=target_input(),
    output:
        bw="results/coverage/{sample}/{depth}.rep{rep}.bw",
        meta="results/coverage/{sample}/{depth}.rep{rep}.bw.json",
    log:
        "results/logs/coverage/{sample}/{depth}.rep{rep}.log",
    benchmark:
        "results/benchmarks/coverage/{sample}/{depth}.rep{rep}.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        kind=coverage_kind,
        chroms=chroms_arg(),
        exclude=config["genome"]["exclude"],
        smooth=config["coverage"]["smooth_bp"],
        plus=config["coverage"]["shift_plus"],
        minus=config["coverage"]["shift_minus"],
        mapq=config["reads"]["min_mapq"],
        flags=("--keep-duplicates " if config["reads"]["keep_duplicates"] else "")
        + ("--cpm" if config["coverage"]["cpm"] else ""),
        target=target_arg(),
    shell:
        "atacdenoise coverage --input {input.reads:q} --kind {params.kind} --sizes {input.sizes:q} {params.chroms}"
        " --exclude {params.exclude:q} --smooth-bp {params.smooth} --shift-plus {params.plus} --shift-minus {params.minus}"
        " --min-mapq {params.mapq} {params.flags} {params.target} --threads {threads} --out {output.bw:q} 2> {log:q}"
