"""Render results/<study>/journal/journal.html from the matrix, analysis, figures and predictions."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.config import study_hash
    from ftmatrix.integrity import verify_matrix
    from ftmatrix.journal import build_journal

    verify_matrix(snakemake.input.record, snakemake.input.matrix, predictions_files=snakemake.input.predictions,
                  metrics_files=snakemake.input.metrics)

    build_journal(
        matrix_file=snakemake.input.matrix,
        analysis_dir=Path(snakemake.input.tables[0]).parent,
        figures_dir=Path(snakemake.input.figures[0]).parent,
        metrics_files=list(snakemake.input.metrics),
        predictions_files=list(snakemake.input.predictions),
        task_meta_files=list(snakemake.input.task_meta),
        model_manifests=list(snakemake.input.model_manifests),
        train_metrics_files=list(snakemake.input.train_metrics),
        config=dict(snakemake.params.config),
        config_hash=study_hash(snakemake.config),
        configfiles=list(snakemake.params.configfiles),
        config_args=list(snakemake.params.config_args),
        decontamination_files=list(snakemake.input.decontamination),
        html_file=snakemake.output.html,
    )
