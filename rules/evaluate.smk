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


def evaluate_settings(wildcards):
    return {
        "cell": f"{variant_of(wildcards).path}/{wildcards.eval_task}",
        "model": MODELS[wildcards.model],
        "method": wildcards.method,
        "task": ftmatrix.config.task_entry(config, wildcards.eval_task),
        "evaluate": {
            k: v
            for k, v in config["evaluate"].items()
            if not k.startswith("bootstrap") and k != "confidence"
        },
        "enable_thinking": config["enable_thinking"],
    }


def scoring_settings(wildcards):
    return {
        "task": ftmatrix.config.task_entry(config, wildcards.eval_task),
        "bootstrap_resamples": config["evaluate"]["bootstrap_resamples"],
        "bootstrap_seed": config["evaluate"]["bootstrap_seed"],
        "confidence": config["evaluate"]["confidence"],
    }


def evaluate_mem_mb(wildcards, attempt):
    return gb(MODELS[wildcards.model]["params_b"], 6_000, 3_000) * attempt


def evaluate_runtime(wildcards, attempt):
    task = ftmatrix.config.task_entry(config, wildcards.eval_task)
    params_b = MODELS[wildcards.model]["params_b"]
    return int(max(20, params_b * task["eval_size"] * task["max_new_tokens"] / 2000)) * attempt


rule evaluate_cell:
    input:
        unpack(evaluate_inputs),
    output:
        generations=f"results/eval/{CELL_DIR}/generations.jsonl",
        info=f"results/eval/{CELL_DIR}/generation.json",
    params:
        settings=evaluate_settings,
        config_hash=CONFIG_HASH,
    log:
        f"logs/eval/{CELL_DIR}.log",
    benchmark:
        f"benchmarks/eval/{CELL_DIR}.tsv"
    threads: 4
    resources:
        gpu=1,
        mem_mb=evaluate_mem_mb,
        runtime=evaluate_runtime,
    script:
        "../workflow_scripts/evaluate_cell.py"


rule score_cell:
    input:
        generations=f"results/eval/{CELL_DIR}/generations.jsonl",
        info=f"results/eval/{CELL_DIR}/generation.json",
        eval=lambda wc: f"data/tasks/{wc.eval_task}/eval.jsonl",
    output:
        predictions=f"results/eval/{CELL_DIR}/predictions.jsonl",
        metrics=f"results/eval/{CELL_DIR}/metrics.json",
    params:
        settings=scoring_settings,
        config_hash=CONFIG_HASH,
    log:
        f"logs/score/{CELL_DIR}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/score_cell.py"


rule evaluate:
    """Only the evaluation jobs of the study."""
    input:
        expand(
            f"results/eval/{CELL_DIR}/metrics.json", zip, **ftmatrix.grid.columns(CELLS)
        ),
