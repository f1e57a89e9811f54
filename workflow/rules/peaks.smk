# Stage 3: MACS3 peaks. bdgpeakcall (clean labels + noisy baseline) on coverage tracks;
# callpeak (noisy baseline, ENCODE ATAC settings) on the noisy reads' Tn5 cut sites.


rule peaks_bdgpeakcall:
    input:
        bw="results/coverage/{sample}/{depth}.rep{rep}.bw",
        sizes=config["genome"]["sizes"],
        regions=target_input(),
    output:
        peaks="results/peaks/{sample}/{depth}.rep{rep}.bdgpeakcall.narrowPeak",
        pval="results/peaks/{sample}/{depth}.rep{rep}.bdgpeakcall.pval.bw",
    log:
        "results/logs/peaks/{sample}/{depth}.rep{rep}.bdgpeakcall.log",
    benchmark:
        "results/benchmarks/peaks/{sample}/{depth}.rep{rep}.bdgpeakcall.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        lam=lambda_args,
        cutoff=config["peaks"]["labels"]["cutoff"],
        min_length=config["peaks"]["labels"]["min_length"],
        max_gap=config["peaks"]["labels"]["max_gap"],
        target=target_arg(),
    shell:
        "atacdenoise peaks --track {input.bw:q} --sizes {input.sizes:q} {params.lam} --cutoff {params.cutoff}"
        " --min-length {params.min_length} --max-gap {params.max_gap} {params.target} --tmpdir {resources.tmpdir:q}"
        " --out-peaks {output.peaks:q} --out-pval {output.pval:q} 2> {log:q}"


rule peaks_callpeak:
    input:
        reads=reads_input,
        sizes=config["genome"]["sizes"],
        regions=target_input(),
    output:
        peaks="results/peaks/{sample}/{depth}.rep{rep}.callpeak.narrowPeak",
        pval="results/peaks/{sample}/{depth}.rep{rep}.callpeak.pval.bw",
    log:
        "results/logs/peaks/{sample}/{depth}.rep{rep}.callpeak.log",
    benchmark:
        "results/benchmarks/peaks/{sample}/{depth}.rep{rep}.callpeak.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        kind=coverage_kind,
        gsize=shlex.quote(config["genome"]["macs3_genome_size"]),
        pvalue=config["peaks"]["callpeak"]["pvalue"],
        shift=config["peaks"]["callpeak"]["shift"],
        extsize=config["peaks"]["callpeak"]["extsize"],
        mapq=config["reads"]["min_mapq"],
        name=lambda w: f"{w.sample}.{w.depth}.rep{w.rep}",
        target=target_arg(),
    shell:
        "atacdenoise callpeak --input {input.reads:q} --kind {params.kind} --sizes {input.sizes:q}"
        " --genome-size {params.gsize} --pvalue {params.pvalue} --shift {params.shift} --extsize {params.extsize}"
        " --min-mapq {params.mapq} --name {params.name:q} {params.target} --tmpdir {resources.tmpdir:q}"
        " --out-peaks {output.peaks:q} --out-pval {output.pval:q} 2> {log:q}"
