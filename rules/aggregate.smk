# Stage 4: every cell into results/matrix.csv, then the derived analysis tables and figures.


rule aggregate_matrix:
    input:
        metrics=expand(
            f"results/eval/{CELL_DIR}/metrics.json", zip, **ftmatrix.grid.columns(CELLS)
        ),
        train_metrics=expand(
            f"results/train/{VARIANT_DIR}/train_metrics.json",
            zip,
            **ftmatrix.grid.columns(TRAINED),
        ),
        task_meta=expand("data/tasks/{task}/meta.json", task=TASKS),
        model_manifests=[model_manifest(name) for name in MODELS],
    output:
        matrix=report(
            "results/matrix.csv",
            caption="../report/captions/matrix.rst",
            category="Matrix",
            labels={"table": "matrix.csv"},
        ),
    params:
        cost=config["cost"],
        config_hash=CONFIG_HASH,
        enable_thinking=config["enable_thinking"],
    log:
        "logs/aggregate/aggregate_matrix.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/aggregate_matrix.py"
