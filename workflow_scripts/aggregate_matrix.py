"""Collect every cell's metrics (and its variant's training metrics) into results/<study>/matrix.csv."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.aggregate import aggregate_matrix
    from ftmatrix.integrity import check_seal, redo_command, verify_cells, write_matrix_record

    # Each cell's metrics.json as score_cell wrote it, with the predictions it was scored from.
    metrics, predictions = verify_cells(snakemake.input.metrics)
    for path in snakemake.input.train_metrics:
        check_seal(path, redo_command("train_variant", path))
    aggregate_matrix(
        metrics_files=list(snakemake.input.metrics),
        train_metrics_files=list(snakemake.input.train_metrics),
        task_meta_files=list(snakemake.input.task_meta),
        model_manifests=list(snakemake.input.model_manifests),
        cost=snakemake.params.cost,
        matrix_file=snakemake.output.matrix,
    )
    write_matrix_record(snakemake.output.record, snakemake.output.matrix, metrics, predictions)
