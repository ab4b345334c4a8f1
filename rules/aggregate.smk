# Stage 4: every cell into results/matrix.csv, then the derived analysis tables (paired
# bootstrap CIs) and the figures. The table and figure names below are those of
# ftmatrix.analysis.TABLES and ftmatrix.figures.FIGURES (a test keeps them in step);
# they are spelt out here so that parsing the workflow imports nothing heavy.

ANALYSIS_TABLES = [
    "vs_base",
    "vs_larger_base",
    "full_vs_lora",
    "lora_rank",
    "rank_correlation",
    "transfer",
    "seeds",
]
FIGURES = [
    "transfer_heatmap",
    "quality_vs_latency",
    "lora_rank",
    "full_vs_lora",
    "latency_split",
]


rule aggregate_matrix:
    input:
        metrics=expand(
            f"results/eval/{CELL_DIR}/metrics.json",
            zip,
            **ftmatrix.grid.columns(CELLS),
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
    log:
        "logs/aggregate/aggregate_matrix.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cost=config["cost"],
    script:
        "../workflow_scripts/aggregate_matrix.py"


rule analyse_matrix:
    input:
        matrix="results/matrix.csv",
        predictions=expand(
            f"results/eval/{CELL_DIR}/predictions.jsonl",
            zip,
            **ftmatrix.grid.columns(CELLS),
        ),
    output:
        **{
            name: report(
                f"results/analysis/{name}.csv",
                caption=f"../report/captions/{name}.rst",
                category="Analysis",
                labels={"table": f"{name}.csv"},
            )
            for name in ANALYSIS_TABLES
        },
    log:
        "logs/aggregate/analyse_matrix.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        resamples=config["evaluate"]["bootstrap_resamples"],
        seed=config["evaluate"]["bootstrap_seed"],
        confidence=config["evaluate"]["confidence"],
    script:
        "../workflow_scripts/analyse_matrix.py"


rule draw_figures:
    input:
        matrix="results/matrix.csv",
        tables=expand("results/analysis/{name}.csv", name=ANALYSIS_TABLES),
    output:
        **{
            name: report(
                f"results/figures/{name}.png",
                caption=f"../report/captions/figure_{name}.rst",
                category="Figures",
                labels={"figure": name.replace("_", " ")},
            )
            for name in FIGURES
        },
        svg=expand("results/figures/{name}.svg", name=FIGURES),
    log:
        "logs/aggregate/draw_figures.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/draw_figures.py"


rule analysis:
    """Only the matrix, the analysis tables and the figures (no journal)."""
    input:
        "results/matrix.csv",
        expand("results/analysis/{name}.csv", name=ANALYSIS_TABLES),
        expand("results/figures/{name}.{ext}", name=FIGURES, ext=["png", "svg"]),
