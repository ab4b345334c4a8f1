# Stage 3: one evaluation job per cell (variant × evaluation task): greedy generation
# with per-sample latency (evaluate_cell), then scoring from the predictions alone
# (score_cell), so a change of answer extraction or metric re-scores without generating.


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
    # Models under ~50M parameters gain nothing from intra-op threads on a CPU and lose
    # much when cores are shared (threads spin on each other): one thread, jobs side by side.
    threads: lambda wildcards: 1 if MODELS[wildcards.model]["params_b"] < 0.05 else 4
    resources:
        gpu=GPU_JOB,
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
