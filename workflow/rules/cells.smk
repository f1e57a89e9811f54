# Few-cell ATAC (fragments samples with a `barcodes` table): the clean profile of a cell type is the
# pseudobulk of all its cells; the noisy profiles (depth "c{N}") are N of its cells drawn with a seed,
# nested across N for one replicate. Optionally, a single-cell test fixture simulated from a bulk BAM.


rule pseudobulk:
    input:
        frags=sample_fragments,
        barcodes=sample_barcodes,
    output:
        frags="results/cells/{sample}/full.tsv.gz",
        tbi="results/cells/{sample}/full.tsv.gz.tbi",
        barcodes="results/cells/{sample}/full.barcodes.txt",
    log:
        "results/logs/cells/{sample}/full.log",
    benchmark:
        "results/benchmarks/cells/{sample}/full.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cell_type=cell_type,
    shell:
        "atacdenoise cells --fragments {input.frags:q} --barcodes {input.barcodes:q} --cell-type {params.cell_type:q}"
        " --out {output.frags:q} --out-barcodes {output.barcodes:q} 2> {log:q}"


rule cells_subsample:
    input:
        frags=sample_fragments,
        barcodes=sample_barcodes,
    output:
        frags="results/subsample/{sample}/c{ncells}.rep{rep}.tsv.gz",
        tbi="results/subsample/{sample}/c{ncells}.rep{rep}.tsv.gz.tbi",
        barcodes="results/subsample/{sample}/c{ncells}.rep{rep}.barcodes.txt",
    log:
        "results/logs/subsample/{sample}/c{ncells}.rep{rep}.log",
    benchmark:
        "results/benchmarks/subsample/{sample}/c{ncells}.rep{rep}.tsv"
    wildcard_constraints:
        ncells=r"\d+",
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        cell_type=cell_type,
        seed=lambda w: config["seed"] * 1000 + int(w.rep),
    shell:
        "atacdenoise cells --fragments {input.frags:q} --barcodes {input.barcodes:q} --cell-type {params.cell_type:q}"
        " --n-cells {wildcards.ncells} --seed {params.seed} --out {output.frags:q} --out-barcodes {output.barcodes:q}"
        " 2> {log:q}"


if config.get("simulate_cells"):

    rule simulate_cells:
        input:
            bam=config["simulate_cells"]["bam"],
            sizes=config["genome"]["sizes"],
        output:
            frags=FIXTURE_FRAGMENTS,
            tbi=FIXTURE_INDEX,
            barcodes=FIXTURE_BARCODES,
        log:
            "results/logs/fixture/simulate_cells.log",
        benchmark:
            "results/benchmarks/fixture/simulate_cells.tsv"
        conda:
            "../../envs/atacdenoise.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            cells=config["simulate_cells"]["cells"],
            types=" ".join(shlex.quote(t) for t in config["simulate_cells"]["cell_types"]),
            sdlog=config["simulate_cells"]["sdlog"],
            max_fragment=config["simulate_cells"]["max_fragment"],
            seed=config["simulate_cells"]["seed"],
            mapq=config["reads"]["min_mapq"],
            chroms=chroms_arg(),
            exclude=config["genome"]["exclude"],
        shell:
            "atacdenoise simulate-cells --bam {input.bam:q} --sizes {input.sizes:q} {params.chroms} --exclude {params.exclude:q}"
            " --cells {params.cells} --cell-types {params.types} --sdlog {params.sdlog} --max-fragment {params.max_fragment} --seed {params.seed}"
            " --min-mapq {params.mapq} --out-fragments {output.frags:q} --out-barcodes {output.barcodes:q} 2> {log:q}"
