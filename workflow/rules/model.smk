# Stages 5-7: train the ResNet (GPU rule, CPU works) and denoise every noisy track with it.


rule train:
    input:
        datasets=lambda w: [f"results/dataset/{s}/{d}.rep{r}" for s, d, r in training_pairs()],
        clean=lambda w: sorted({f"results/dataset/{s}/clean" for s, _, _ in training_pairs()}),
        sizes=config["genome"]["sizes"],
    output:
        model="results/models/{model}/model.pt",
        history=report(
            "results/models/{model}/history.tsv",
            caption="../report/history.rst",
            category="Training",
        ),
    log:
        "results/logs/train/{model}.log",
    benchmark:
        "results/benchmarks/train/{model}.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: config["model"]["threads"]
    resources:
        gpu=config["model"]["gpus"],
        mem_mb=16000,
        runtime=24 * 60,
    params:
        settings=model_settings(),
        val=region_args("val_chroms"),
        holdout=region_args("holdout_chroms"),
        out_dir="results/models/{model}",
        gpus=config["model"]["gpus"],
    shell:
        "atacdenoise train --datasets {input.datasets:q} --sizes {input.sizes:q} --val {params.val}"
        " --holdout {params.holdout} --settings {params.settings:q} --out-dir {params.out_dir:q}"
        " --gpus {params.gpus} --threads {threads} 2> {log:q}"


# Ensemble members 2..K (model.ensemble; member 1 is model.pt above): the same training with seed x 1000 + k.
rule train_member:
    input:
        datasets=lambda w: [f"results/dataset/{s}/{d}.rep{r}" for s, d, r in training_pairs()],
        clean=lambda w: sorted({f"results/dataset/{s}/clean" for s, _, _ in training_pairs()}),
        sizes=config["genome"]["sizes"],
    output:
        model="results/models/{model}/members/{member}/model.pt",
        history="results/models/{model}/members/{member}/history.tsv",
    log:
        "results/logs/train/{model}.member{member}.log",
    benchmark:
        "results/benchmarks/train/{model}.member{member}.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: config["model"]["threads"]
    resources:
        gpu=config["model"]["gpus"],
        mem_mb=16000,
        runtime=24 * 60,
    params:
        settings=member_settings,
        val=region_args("val_chroms"),
        holdout=region_args("holdout_chroms"),
        out_dir="results/models/{model}/members/{member}",
        gpus=config["model"]["gpus"],
    shell:
        "atacdenoise train --datasets {input.datasets:q} --sizes {input.sizes:q} --val {params.val}"
        " --holdout {params.holdout} --settings {params.settings:q} --out-dir {params.out_dir:q}"
        " --gpus {params.gpus} --threads {threads} 2> {log:q}"


# With model.ensemble K > 1 the input is the K members' model files (`--model A B C`, the same shell text)
# and the per-base spread bigWig is a fifth output.
rule infer:
    input:
        model=infer_models,
        bw="results/coverage/{sample}/{depth}.rep{rep}.bw",
        sizes=config["genome"]["sizes"],
        regions=target_input(),
    output:
        **ensemble_outputs(),
        track="results/denoised/{model}/{sample}/{depth}.rep{rep}.track.bw",
        prob="results/denoised/{model}/{sample}/{depth}.rep{rep}.peakprob.bw",
        peaks="results/denoised/{model}/{sample}/{depth}.rep{rep}.peaks.narrowPeak",
        fitness=report(
            "results/denoised/{model}/{sample}/{depth}.rep{rep}.fitness.tsv",
            caption="../report/fitness.rst",
            category="Model fitness",
        ),
    log:
        "results/logs/infer/{model}/{sample}/{depth}.rep{rep}.log",
    benchmark:
        "results/benchmarks/infer/{model}/{sample}/{depth}.rep{rep}.tsv"
    conda:
        "../../envs/atacdenoise.yaml"
    threads: config["model"]["threads"]
    resources:
        gpu=min(config["model"]["gpus"], 1),
        mem_mb=8000,
        runtime=12 * 60,
    params:
        prefix="results/denoised/{model}/{sample}/{depth}.rep{rep}",
        batch=config["model"]["infer_batch_size"],
        chroms=infer_chroms_arg(),
        target=target_arg(),
        precision=config["model"]["output_precision"],
    shell:
        "atacdenoise infer --model {input.model:q} --input {input.bw:q} --sizes {input.sizes:q} {params.chroms}"
        " {params.target} --batch-size {params.batch} --threads {threads} --precision {params.precision}"
        " --out-prefix {params.prefix:q} 2> {log:q}"
