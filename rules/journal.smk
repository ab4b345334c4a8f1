# Stage 5: the journal, every number and finding computed from the matrix, the analysis
# tables and the per-sample predictions. HTML first (self-contained), then the PDF from it.
import os

# The study files and --config values of this run, as given on the command line (the
# Snakefile reads config.yaml itself), with paths inside the project made relative to it:
# the journal prints the commands that reproduce the study from the project's root.
JOURNAL_CONFIGFILES = [
    (
        os.path.relpath(os.path.abspath(f), workflow.basedir)
        if os.path.abspath(f).startswith(os.path.abspath(workflow.basedir) + os.sep)
        else os.path.abspath(f)
    )
    for f in workflow.overwrite_configfiles
]
JOURNAL_CONFIG_ARGS = list(workflow.config_settings.config_args or [])
JOURNAL_TEMPLATES = {
    name: ftmatrix.io.file_sha256(os.path.join(workflow.basedir, "report", name))
    for name in ("journal.html.j2", "journal.css")
}
# Every job inherits them: an error that asks to redo a step prints the command for this study.
os.environ[ftmatrix.integrity.STUDY_ARGS_VARIABLE] = (
    ftmatrix.integrity.format_study_arguments(JOURNAL_CONFIGFILES, JOURNAL_CONFIG_ARGS)
)


rule build_journal:
    input:
        matrix=f"{RESULTS}/matrix.csv",
        record=f"{RESULTS}/matrix.json",
        tables=[f"{RESULTS}/analysis/{name}.csv" for name in ANALYSIS_TABLES],
        figures=[f"{RESULTS}/figures/{name}.png" for name in FIGURES],
        sweeps=f"{RESULTS}/analysis/lr_sweep.csv",
        metrics=expand(
            f"{RESULTS}/eval/{CELL_DIR}/metrics.json",
            zip,
            **ftmatrix.grid.columns(CELLS),
        ),
        predictions=expand(
            f"{RESULTS}/eval/{CELL_DIR}/predictions.jsonl",
            zip,
            **ftmatrix.grid.columns(CELLS),
        ),
        train_metrics=selected_train_metrics,
        task_meta=[task_file(task, "meta.json") for task in TASKS],
        model_manifests=[model_manifest(name) for name in LOCAL_MODELS],
        decontamination=[
            decontaminated_file(task, "report.json") for task in TRAIN_TASKS
        ],
    output:
        html=report(
            f"{RESULTS}/journal/journal.html",
            caption="../report/captions/journal.rst",
            category="Journal",
            labels={"document": "journal.html"},
        ),
    log:
        f"{LOGS}/journal/build_journal.log",
    conda:
        "../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        config=journal_settings(),
        configfiles=JOURNAL_CONFIGFILES,
        config_args=JOURNAL_CONFIG_ARGS,
        # The templates by content, not by path: a new template rebuilds the journal, a
        # project folder moved elsewhere does not.
        templates=JOURNAL_TEMPLATES,
        code=JOURNAL_CODE,
    script:
        "../workflow_scripts/build_journal.py"


rule journal_pdf:
    input:
        html=f"{RESULTS}/journal/journal.html",
    output:
        pdf=report(
            f"{RESULTS}/journal/journal.pdf",
            caption="../report/captions/journal_pdf.rst",
            category="Journal",
            labels={"document": "journal.pdf"},
        ),
    log:
        f"{LOGS}/journal/journal_pdf.log",
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
        f"{RESULTS}/journal/journal.html",
        f"{RESULTS}/journal/journal.pdf",
