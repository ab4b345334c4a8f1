# Stage 3: one evaluation job per cell (variant × evaluation task): greedy generation
# with per-sample latency (evaluate_cell), then scoring from the predictions alone
# (score_cell), so a change of answer extraction or metric re-scores without generating.


def evaluate_inputs(wildcards):
    inputs = {
        "model": model_manifest(wildcards.model),
        "eval": f"data/tasks/{wildcards.eval_task}/eval.jsonl",
    }
    if wildcards.method != "base":
        inputs["trained"] = f"results/train/{variant_of(wildcards).path}/model"
    return inputs


def eval_task_entry(wildcards, keys=("name", "kind", "max_new_tokens")):
    # Only what decides the generations or the scores: a new train_size must not
    # rerun every evaluation (params are one of Snakemake's rerun triggers).
    task = ftmatrix.config.task_entry(config, wildcards.eval_task)
    return {k: task[k] for k in keys}


def evaluate_settings(wildcards):
    model = MODELS[wildcards.model]
    return {
        "cell": f"{variant_of(wildcards).path}/{wildcards.eval_task}",
        "model": {k: v for k, v in model.items() if k not in ("params_b", "finetune")},
        "method": wildcards.method,
        "task": eval_task_entry(wildcards),
        "evaluate": {
            k: v
            for k, v in config["evaluate"].items()
            if not k.startswith("bootstrap") and k != "confidence"
        },
        "enable_thinking": config["enable_thinking"],
    }


def scoring_settings(wildcards):
    return {
        "task": eval_task_entry(wildcards, keys=("name", "kind")),
        "bootstrap_resamples": config["evaluate"]["bootstrap_resamples"],
        "bootstrap_seed": config["evaluate"]["bootstrap_seed"],
        "confidence": config["evaluate"]["confidence"],
    }


def evaluate_mem_mb(wildcards, attempt):
    # Weights, activations and the KV cache of a batch: 3 GB plus 6 GB per billion parameters.
    return int(3_000 + 6_000 * MODELS[wildcards.model]["params_b"]) * attempt


def evaluate_runtime(wildcards, attempt):
    # Minutes: the timed samples one at a time plus the batched quality pass, each at up to
    # max_new_tokens, at about 30 ms per token for a 2B model (more for larger ones).
    task = ftmatrix.config.task_entry(config, wildcards.eval_task)
    ev = config["evaluate"]
    latency = ev["latency_samples"]
    timed = task["eval_size"] if latency is None else min(latency, task["eval_size"])
    per_token_s = 0.03 * max(1.0, MODELS[wildcards.model]["params_b"] / 2)
    tokens = task["max_new_tokens"] * (timed + task["eval_size"] / ev["batch_size"])
    return int(10 + tokens * per_token_s / 60) * attempt


rule evaluate_cell:
    input:
        unpack(evaluate_inputs),
    output:
        generations=f"results/eval/{CELL_DIR}/generations.jsonl",
        info=f"results/eval/{CELL_DIR}/generation.json",
    log:
        f"logs/eval/{CELL_DIR}.log",
    benchmark:
        f"benchmarks/eval/{CELL_DIR}.tsv"
    conda:
        "../envs/evaluate.yaml"
    threads: 4
    resources:
        gpu=1,
        mem_mb=evaluate_mem_mb,
        runtime=evaluate_runtime,
    params:
        settings=evaluate_settings,
        config_hash=CONFIG_HASH,
    script:
        "../workflow_scripts/evaluate_cell.py"


rule score_cell:
    input:
        generations=f"results/eval/{CELL_DIR}/generations.jsonl",
        info=f"results/eval/{CELL_DIR}/generation.json",
        eval="data/tasks/{eval_task}/eval.jsonl",
    output:
        predictions=f"results/eval/{CELL_DIR}/predictions.jsonl",
        metrics=f"results/eval/{CELL_DIR}/metrics.json",
    log:
        f"logs/score/{CELL_DIR}.log",
    conda:
        "../envs/evaluate.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        settings=scoring_settings,
        config_hash=CONFIG_HASH,
    script:
        "../workflow_scripts/score_cell.py"


rule evaluate:
    """Only the evaluation jobs of the study."""
    input:
        expand(
            f"results/eval/{CELL_DIR}/metrics.json",
            zip,
            **ftmatrix.grid.columns(CELLS),
        ),
