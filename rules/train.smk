# Stage 2: one training job per run: a fine-tuned variant (model, method, rank, train task,
# seed) at one learning rate of its sweep. A checkpoint then selects one run per variant by
# its validation loss (ftmatrix.selection); only that run is evaluated.
# Checkpoints live beside the outputs (results/<study>/train/<variant>/checkpoints/), not inside
# them: Snakemake deletes a job's declared outputs before rerunning it, and a killed job
# must find its checkpoints to resume instead of starting over. They are deleted once the
# model and train_metrics.json are in place.


# Resources come from ftmatrix.resources, from the model's shape (the published one of a known
# hub id, the configured one of a built model; else estimated from params_b) and the data's size
# (examples × epochs, or max_steps × batch, rows taken as half of max_length):
#
# mem_mb: the job's peak host memory in fp32 (true on CPU; on a GPU node it bounds the host side
#   too), modelled part by part and pinned to measurements at the reference study's real shapes
#   (tests/test_resources.py; docs/performance.md): the runtime, 4 bytes per model parameter,
#   16 per trainable one (weights, gradient, two Adam moments; LoRA's adapters at r = 1024 on
#   Qwen3-0.6B outnumber the model's own weights), and activations per token of a micro-batch.
#   Doubles on each retry (attempt).
# runtime (minutes): the job's FLOPs (forward, backward, LoRA's adapters) at an assumed 20 TFLOP/s
#   sustained (bf16 on an older data-centre GPU, small-model efficiency), plus 10 minutes for
#   loading, tokenising and the held-out losses before and after. Grows on each retry.


rule train_variant:
    input:
        unpack(train_inputs),
    output:
        model=directory(f"{RESULTS}/train/{RUN_DIR}/model"),
        metrics=f"{RESULTS}/train/{RUN_DIR}/train_metrics.json",
    log:
        f"{LOGS}/train/{RUN_DIR}.log",
    benchmark:
        f"{BENCHMARKS}/train/{RUN_DIR}.tsv"
    wildcard_constraints:
        method="full|lora",
    conda:
        "../envs/train.yaml"
    threads: job_threads
    resources:
        gpu=GPU_JOB,
        mem_mb=train_mem_mb,
        runtime=train_runtime,
    params:
        settings=train_settings,
        checkpoints=checkpoint_dir,
    script:
        "../workflow_scripts/train_variant.py"


checkpoint select_learning_rate:
    input:
        metrics=sweep_metrics,
    output:
        selection=f"{RESULTS}/train/{VARIANT_DIR}/selection.json",
    log:
        f"{LOGS}/train/{VARIANT_DIR}/select_learning_rate.log",
    wildcard_constraints:
        method="full|lora",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/select_learning_rate.py"


rule tabulate_sweeps:
    input:
        selections=selection_files(),
    output:
        table=report(
            f"{RESULTS}/analysis/lr_sweep.csv",
            caption="../report/captions/lr_sweep.rst",
            category="Analysis",
            labels={"table": "lr_sweep.csv"},
        ),
    log:
        f"{LOGS}/train/tabulate_sweeps.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/tabulate_sweeps.py"


rule train:
    """Only the training jobs of the study, and the selection of each variant's rate."""
    input:
        expand(
            f"{RESULTS}/train/{RUN_DIR}/train_metrics.json",
            zip,
            **ftmatrix.grid.columns(RUNS),
        ),
        expand(
            f"{RESULTS}/train/{VARIANT_DIR}/selection.json",
            zip,
            **ftmatrix.grid.columns(TRAINED),
        ),
