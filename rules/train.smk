# Stage 2: one training job per fine-tuned variant (model, method, rank, train task, seed).
# Checkpoints live beside the outputs (results/train/<variant>/checkpoints/), not inside
# them, so a killed job resumes instead of starting over when Snakemake reruns it.


def train_inputs(wildcards):
    return {
        "model": model_manifest(wildcards.model),
        "train": f"data/tasks/{wildcards.train_task}/train.jsonl",
        "heldout": f"data/tasks/{wildcards.train_task}/eval.jsonl",
    }


def train_settings(wildcards):
    """Everything that determines the trained weights; a change reruns the job."""
    return {
        "variant": variant_of(wildcards).path,
        "model": MODELS[wildcards.model],
        "method": wildcards.method,
        "rank": int(wildcards.rank),
        "seed": int(wildcards.seed),
        "train": config["train"],
        "lora": {k: v for k, v in config["lora"].items() if k != "ranks"},
        "enable_thinking": config["enable_thinking"],
    }


def train_mem_mb(wildcards, attempt):
    # fp32 weights + Adam states + gradients ≈ 16 bytes per parameter for full FT.
    params_b = MODELS[wildcards.model]["params_b"]
    per_b = 20_000 if wildcards.method == "full" else 8_000
    return gb(params_b, per_b, 4_000) * attempt


def train_runtime(wildcards, attempt):
    # Minutes: scales with model size and the number of training examples.
    params_b = MODELS[wildcards.model]["params_b"]
    examples = ftmatrix.config.task_entry(config, wildcards.train_task)["train_size"]
    epochs = config["train"]["epochs"]
    return int(max(30, params_b * examples * epochs / 50)) * attempt


rule train_variant:
    input:
        unpack(train_inputs),
    output:
        model=directory(f"results/train/{VARIANT_DIR}/model"),
        metrics=f"results/train/{VARIANT_DIR}/train_metrics.json",
    params:
        settings=train_settings,
        checkpoints=lambda wc: f"results/train/{variant_of(wc).path}/checkpoints",
        config_hash=CONFIG_HASH,
    log:
        f"logs/train/{VARIANT_DIR}.log",
    benchmark:
        f"benchmarks/train/{VARIANT_DIR}.tsv"
    wildcard_constraints:
        method="full|lora",
    threads: 4
    resources:
        gpu=1,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    script:
        "../workflow_scripts/train_variant.py"


rule train:
    """Only the training jobs of the study."""
    input:
        expand(
            f"results/train/{VARIANT_DIR}/train_metrics.json",
            zip,
            **ftmatrix.grid.columns(TRAINED),
        ),
