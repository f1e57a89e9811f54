# Input QC: per input file (every noisy track that is benchmarked, the clean data, and the apply samples'
# files) fragment lengths, FRiP against the clean peaks, duplicate and low-MAPQ fractions, cut sites per Mb
# per region and TSS enrichment (genome.tss); gathered into one table and two report figures.
# Helpers (qc_inputs, qc_targets, ...) are in common.smk.


rule qc:
    input:
        unpack(lambda w: qc_optional_beds()),
        reads=reads_input,
        sizes=config["genome"]["sizes"],
        peaks=qc_peaks,
    output:
        tsv="results/qc/{sample}/{depth}.rep{rep}.tsv",
        fraglen="results/qc/{sample}/{depth}.rep{rep}.fraglen.tsv",
    log:
        "results/logs/qc/{sample}/{depth}.rep{rep}.log",
    benchmark:
        "results/benchmarks/qc/{sample}/{depth}.rep{rep}.tsv"
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
        mapq=config["reads"]["min_mapq"],
        dups="--keep-duplicates" if config["reads"]["keep_duplicates"] else "",
        optional=qc_optional_args,
    shell:
        "atacdenoise qc --input {input.reads:q} --kind {params.kind} --sizes {input.sizes:q} {params.chroms}"
        " --exclude {params.exclude:q} {params.optional} --min-mapq {params.mapq} {params.dups}"
        " --sample {wildcards.sample:q} --depth {wildcards.depth} --rep {wildcards.rep} --threads {threads}"
        " --out {output.tsv:q} --out-fraglen {output.fraglen:q} 2> {log:q}"


rule qc_summary:
    input:
        qc=lambda w: [qc_path(s, d, r) for s, d, r in qc_inputs()],
        fraglen=lambda w: [qc_path(s, d, r, "fraglen.tsv") for s, d, r in qc_inputs()],
    output:
        table=report(
            "results/qc/qc.tsv",
            caption="../report/qc_table.rst",
            category="Input QC",
            labels={"table": "input QC"},
        ),
        fraglen=report(
            "results/qc/fragment_lengths.png",
            caption="../report/qc_fraglen.rst",
            category="Input QC",
            labels={"figure": "fragment lengths"},
        ),
        depth=report(
            "results/qc/cut_sites_per_mb.png",
            caption="../report/qc_depth.rst",
            category="Input QC",
            labels={"figure": "cut sites per Mb"},
        ),
    log:
        "results/logs/qc/summary.log",
    benchmark:
        "results/benchmarks/qc/summary.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "atacdenoise qc-summary --qc {input.qc:q} --fraglen {input.fraglen:q} --out-table {output.table:q}"
        " --out-plot {output.fraglen:q} --out-depth-plot {output.depth:q} 2> {log:q}"
