# Stage 8: benchmark of model vs noisy input vs MACS3 against the clean data (holdout regions,
# blacklist masked), the summary tables and the figures of the Snakemake report.


rule metrics:
    input:
        clean="results/coverage/{sample}/full.rep1.bw",
        labels=labels_path,
        noisy="results/coverage/{sample}/{depth}.rep{rep}.bw",
        denoised=denoised_inputs,
        baselines=baseline_inputs,
        sizes=config["genome"]["sizes"],
        regions=target_input(),
    output:
        tsv="results/benchmark/{model}/per_track/{sample}/{depth}.rep{rep}.tsv",
        curves="results/benchmark/{model}/per_track/{sample}/{depth}.rep{rep}.pr.npz",
    log:
        "results/logs/benchmark/{model}/{sample}/{depth}.rep{rep}.metrics.log",
    benchmark:
        "results/benchmarks/benchmark/{model}/{sample}/{depth}.rep{rep}.metrics.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=lambda w: int(1000 + 65 * holdout_mb()),
        runtime=120,
    params:
        prefix=lambda w: denoised(w.sample, w.depth, w.rep, "").rstrip("."),
        baselines=baseline_args,
        regions=region_args("holdout_chroms"),
        blacklist=blacklist_arg(),
        target=target_arg(),
    shell:
        "atacdenoise metrics --clean {input.clean:q} --labels {input.labels:q} --noisy {input.noisy:q}"
        " --denoised-prefix {params.prefix:q} {params.baselines} --sizes {input.sizes:q} --regions {params.regions} {params.target}"
        " {params.blacklist} --model {wildcards.model:q} --sample {wildcards.sample:q} --depth {wildcards.depth}"
        " --rep {wildcards.rep} --out {output.tsv:q} --pr-curves {output.curves:q} 2> {log:q}"


rule benchmark_summary:
    input:
        metrics=lambda w: [bench(w.model, "per_track", s, f"{d}.rep{r}.tsv") for s, d, r in benchmark_pairs()],
        samples=config["samples"],
        model=model_path,
    output:
        metrics=report(
            "results/benchmark/{model}/metrics.tsv",
            caption="../report/metrics.rst",
            category="Benchmark",
            subcategory="Tables",
            labels={"table": "metrics (long format)"},
        ),
        summary=report(
            "results/benchmark/{model}/summary.tsv",
            caption="../report/summary.rst",
            category="Benchmark",
            subcategory="Tables",
            labels={"table": "summary (headline numbers per sample)"},
        ),
        by_cell_type=report(
            "results/benchmark/{model}/summary_by_cell_type.tsv",
            caption="../report/summary_by_cell_type.rst",
            category="Benchmark",
            subcategory="Tables",
            labels={"table": "summary per cell type (seen vs unseen)"},
        ),
        effective="results/benchmark/{model}/effective_depth.tsv",
        effective_by_cell_type="results/benchmark/{model}/effective_depth_by_cell_type.tsv",
        references=report(
            "results/benchmark/{model}/references.tsv",
            caption="../report/references.rst",
            category="Benchmark",
            subcategory="Tables",
            labels={"table": "clean references (pooled libraries)"},
        ),
    log:
        "results/logs/benchmark/{model}/summary.log",
    benchmark:
        "results/benchmarks/benchmark/{model}/summary.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "atacdenoise summary --metrics {input.metrics:q} --samples {input.samples:q} --model {input.model:q}"
        " --out-metrics {output.metrics:q} --out-summary {output.summary:q}"
        " --out-summary-by-cell-type {output.by_cell_type:q} --out-effective-depth {output.effective:q}"
        " --out-effective-depth-by-cell-type {output.effective_by_cell_type:q} --out-references {output.references:q}"
        " 2> {log:q}"


rule plot_pr:
    input:
        lambda w: [bench(w.model, "per_track", w.sample, f"{d}.rep{r}.pr.npz") for d, r in noisy_targets(w.sample)],
    output:
        report(
            "results/benchmark/{model}/plots/pr/{sample}.png",
            caption="../report/pr.rst",
            category="Benchmark",
            subcategory="Precision-recall",
            labels={"sample": "{sample}", "figure": "PR curves"},
        ),
    log:
        "results/logs/benchmark/{model}/{sample}.plot_pr.log",
    benchmark:
        "results/benchmarks/benchmark/{model}/{sample}.plot_pr.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "atacdenoise plots pr --curves {input:q} --out {output:q} 2> {log:q}"


rule plot_reliability:
    input:
        lambda w: [bench(w.model, "per_track", w.sample, f"{d}.rep{r}.pr.npz") for d, r in noisy_targets(w.sample)],
    output:
        report(
            "results/benchmark/{model}/plots/reliability/{sample}.png",
            caption="../report/reliability.rst",
            category="Benchmark",
            subcategory="Calibration",
            labels={"sample": "{sample}", "figure": "reliability diagram"},
        ),
    log:
        "results/logs/benchmark/{model}/{sample}.plot_reliability.log",
    benchmark:
        "results/benchmarks/benchmark/{model}/{sample}.plot_reliability.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    shell:
        "atacdenoise plots reliability --curves {input:q} --out {output:q} 2> {log:q}"


rule plot_depth:
    input:
        metrics="results/benchmark/{model}/metrics.tsv",
        effective="results/benchmark/{model}/effective_depth.tsv",
    output:
        report(
            "results/benchmark/{model}/plots/depth.png",
            caption="../report/depth.rst",
            category="Benchmark",
            subcategory="Quality vs depth",
            labels={"figure": "metrics vs depth / cells"},
        ),
    log:
        "results/logs/benchmark/{model}/plot_depth.log",
    benchmark:
        "results/benchmarks/benchmark/{model}/plot_depth.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        masked="--blacklist-masked" if config["genome"]["blacklist"] else "",
    shell:
        "atacdenoise plots depth --metrics {input.metrics:q} --effective-depth {input.effective:q}"
        " {params.masked} --out {output:q} 2> {log:q}"


rule plot_tracks:
    input:
        clean="results/coverage/{sample}/full.rep1.bw",
        noisy="results/coverage/{sample}/{depth}.rep{rep}.bw",
        labels=labels_path,
        denoised=denoised_inputs,
        baselines=baseline_inputs,
        sizes=config["genome"]["sizes"],
        regions=target_input(),
    output:
        report(
            "results/benchmark/{model}/plots/tracks/{sample}/{depth}.rep{rep}.png",
            caption="../report/tracks.rst",
            category="Benchmark",
            subcategory="Track snapshots",
            labels={"sample": "{sample}", "depth": "{depth}", "figure": "tracks"},
        ),
    log:
        "results/logs/benchmark/{model}/{sample}/{depth}.rep{rep}.plot_tracks.log",
    benchmark:
        "results/benchmarks/benchmark/{model}/{sample}/{depth}.rep{rep}.plot_tracks.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: 1
    resources:
        mem_mb=lambda w: int(1000 + 40 * holdout_mb()),
        runtime=30,
    params:
        prefix=lambda w: denoised(w.sample, w.depth, w.rep, "").rstrip("."),
        baselines=baseline_args,
        regions=region_args("holdout_chroms"),
        blacklist=blacklist_arg(),
        target=target_arg(),
        loci=config["benchmark"]["snapshot_loci"],
    shell:
        "atacdenoise plots tracks --clean {input.clean:q} --noisy {input.noisy:q} --denoised-prefix {params.prefix:q}"
        " --labels {input.labels:q} --sizes {input.sizes:q} --regions {params.regions} {params.target} {params.blacklist} {params.baselines}"
        " --n-loci {params.loci} --sample {wildcards.sample:q} --depth {wildcards.depth} --out {output:q} 2> {log:q}"


rule plot_heatmap:
    input:
        clean="results/coverage/{sample}/full.rep1.bw",
        noisy="results/coverage/{sample}/{depth}.rep{rep}.bw",
        labels=labels_path,
        denoised=denoised_inputs,
        sizes=config["genome"]["sizes"],
        regions=target_input(),
    output:
        report(
            "results/benchmark/{model}/plots/heatmap/{sample}/{depth}.rep{rep}.png",
            caption="../report/heatmap.rst",
            category="Benchmark",
            subcategory="Summit heatmaps",
            labels={"sample": "{sample}", "depth": "{depth}", "figure": "heatmap"},
        ),
    log:
        "results/logs/benchmark/{model}/{sample}/{depth}.rep{rep}.plot_heatmap.log",
    benchmark:
        "results/benchmarks/benchmark/{model}/{sample}/{depth}.rep{rep}.plot_heatmap.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        prefix=lambda w: denoised(w.sample, w.depth, w.rep, "").rstrip("."),
        regions=region_args("holdout_chroms"),
        blacklist=blacklist_arg(),
        target=target_arg(),
    shell:
        "atacdenoise plots heatmap --clean {input.clean:q} --noisy {input.noisy:q} --denoised-prefix {params.prefix:q}"
        " --labels {input.labels:q} --sizes {input.sizes:q} --regions {params.regions} {params.target} {params.blacklist}"
        " --sample {wildcards.sample:q} --depth {wildcards.depth} --threads {threads} --out {output:q} 2> {log:q}"
