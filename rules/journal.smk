# Stage 5: the journal, every number and finding computed from the matrix, the analysis
# tables and the per-sample predictions. HTML first (self-contained), then the PDF from it.
import os

# The config files of this run, relative to the project when inside it (the journal
# shows the commands that reproduce the study).
JOURNAL_CONFIGFILES = [
    (
        os.path.relpath(os.path.abspath(f), workflow.basedir)
        if os.path.abspath(f).startswith(os.path.abspath(workflow.basedir) + os.sep)
        else os.path.abspath(f)
    )
    for f in workflow.configfiles
]


rule build_journal:
    input:
        matrix="results/matrix.csv",
        tables=expand("results/analysis/{name}.csv", name=ANALYSIS_TABLES),
        figures=expand("results/figures/{name}.png", name=FIGURES),
        metrics=expand(
            f"results/eval/{CELL_DIR}/metrics.json",
            zip,
            **ftmatrix.grid.columns(CELLS),
        ),
        predictions=expand(
            f"results/eval/{CELL_DIR}/predictions.jsonl",
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
        templates=[
            os.path.join(workflow.basedir, "report", name)
            for name in ("journal.html.j2", "journal.css")
        ],
    output:
        html=report(
            "results/journal/journal.html",
            caption="../report/captions/journal.rst",
            category="Journal",
            labels={"document": "journal.html"},
        ),
    log:
        "logs/journal/build_journal.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=config,
        config_hash=CONFIG_HASH,
        configfiles=JOURNAL_CONFIGFILES,
    script:
        "../workflow_scripts/build_journal.py"


rule journal_pdf:
    input:
        html="results/journal/journal.html",
    output:
        pdf=report(
            "results/journal/journal.pdf",
            caption="../report/captions/journal_pdf.rst",
            category="Journal",
            labels={"document": "journal.pdf"},
        ),
    log:
        "logs/journal/journal_pdf.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/journal_pdf.py"


rule journal:
    """The journal (HTML and PDF) and everything it needs."""
    input:
        "results/journal/journal.html",
        "results/journal/journal.pdf",
