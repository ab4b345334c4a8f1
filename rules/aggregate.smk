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
    "lr_sweep",
]


rule aggregate_matrix:
    input:
        metrics=expand(
            f"{RESULTS}/eval/{CELL_DIR}/metrics.json",
            zip,
            **ftmatrix.grid.columns(CELLS),
        ),
        train_metrics=selected_train_metrics,
        task_meta=[task_file(task, "meta.json") for task in TASKS],
        model_manifests=[model_manifest(name) for name in LOCAL_MODELS],
    output:
        matrix=report(
            f"{RESULTS}/matrix.csv",
            caption="../report/captions/matrix.rst",
            category="Matrix",
            labels={"table": "matrix.csv"},
        ),
        # The sha256 of the matrix and of the cells' files it was built from, which the
        # analysis, the figures and the journal check before they read them.
        record=f"{RESULTS}/matrix.json",
    log:
        f"{LOGS}/aggregate/aggregate_matrix.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cost=cost_settings(),
        code=MATRIX_CODE,
    script:
        "../workflow_scripts/aggregate_matrix.py"


rule analyse_matrix:
    input:
        matrix=f"{RESULTS}/matrix.csv",
        record=f"{RESULTS}/matrix.json",
        predictions=expand(
            f"{RESULTS}/eval/{CELL_DIR}/predictions.jsonl",
            zip,
            **ftmatrix.grid.columns(CELLS),
        ),
    output:
        **{
            name: report(
                f"{RESULTS}/analysis/{name}.csv",
                caption=f"../report/captions/{name}.rst",
                category="Analysis",
                labels={"table": f"{name}.csv"},
            )
            for name in ANALYSIS_TABLES
        },
    log:
        f"{LOGS}/aggregate/analyse_matrix.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=analysis_settings(),
        code=ANALYSIS_CODE,
    script:
        "../workflow_scripts/analyse_matrix.py"


rule draw_figures:
    input:
        matrix=f"{RESULTS}/matrix.csv",
        record=f"{RESULTS}/matrix.json",
        tables=[f"{RESULTS}/analysis/{name}.csv" for name in ANALYSIS_TABLES],
        sweeps=f"{RESULTS}/analysis/lr_sweep.csv",
    output:
        **{
            name: report(
                f"{RESULTS}/figures/{name}.png",
                caption=f"../report/captions/figure_{name}.rst",
                category="Figures",
                labels={"figure": name.replace("_", " ")},
            )
            for name in FIGURES
        },
        svg=[f"{RESULTS}/figures/{name}.svg" for name in FIGURES],
    log:
        f"{LOGS}/aggregate/draw_figures.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=FIGURES_CODE,
    script:
        "../workflow_scripts/draw_figures.py"


rule matrix:
    """Only the matrix (every training and evaluation it needs)."""
    input:
        f"{RESULTS}/matrix.csv",


rule analysis:
    """Only the matrix, the analysis tables and the figures (no journal)."""
    input:
        f"{RESULTS}/matrix.csv",
        [f"{RESULTS}/analysis/{name}.csv" for name in ANALYSIS_TABLES],
        f"{RESULTS}/analysis/lr_sweep.csv",
        [
            f"{RESULTS}/figures/{name}.{ext}"
            for name in FIGURES
            for ext in ("png", "svg")
        ],
