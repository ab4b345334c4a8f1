# Stage 2: one training job per fine-tuned variant (model, method, rank, train task, seed).
# Checkpoints live beside the outputs (results/<study>/train/<variant>/checkpoints/), not inside
# them: Snakemake deletes a job's declared outputs before rerunning it, and a killed job
# must find its checkpoints to resume instead of starting over. They are deleted once the
# model and train_metrics.json are in place.


# Resources are estimated from the model's size (params_b, billions of parameters) and the
# data's size (examples × epochs, or max_steps × batch, times max_length tokens at most):
#
# mem_mb: everything as if it sat in host memory (true on CPU; on a GPU it bounds the host
#   side too). Full fine-tuning keeps fp32 weights, gradients and two Adam moments, 16 bytes
#   per parameter; LoRA keeps the frozen fp32 weights (4 bytes) plus small adapters.
#   Activations take about 1.5 MB per token of a micro-batch per billion parameters
#   (Qwen3-0.6B: 28 layers × 1024 hidden × ~34 bytes), a quarter of that with gradient
#   checkpointing. 3 GB more cover the runtime, data and TRL's LM-head tiles. Doubles on
#   each retry (attempt).
# runtime (minutes): (6 full | 4 LoRA) × parameters × training tokens floating-point
#   operations at an assumed 20 TFLOP/s sustained (bf16 on one data-centre GPU, small-model
#   efficiency), with sequences taken as half of max_length on average, plus 10 minutes for
#   loading, tokenising and the held-out losses before and after. Grows on each retry.
TRAIN_FLOPS_PER_S = 20e12


rule train_variant:
    input:
        unpack(train_inputs),
    output:
        model=directory(f"{RESULTS}/train/{VARIANT_DIR}/model"),
        metrics=f"{RESULTS}/train/{VARIANT_DIR}/train_metrics.json",
    log:
        f"{LOGS}/train/{VARIANT_DIR}.log",
    benchmark:
        f"{BENCHMARKS}/train/{VARIANT_DIR}.tsv"
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


rule train:
    """Only the training jobs of the study."""
    input:
        expand(
            f"{RESULTS}/train/{VARIANT_DIR}/train_metrics.json",
            zip,
            **ftmatrix.grid.columns(TRAINED),
        ),
