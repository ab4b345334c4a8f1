"""The study's comparisons with paired bootstrap CIs: results/<study>/analysis/*.csv."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.analysis import analyse_matrix
    from ftmatrix.integrity import verify_matrix

    verify_matrix(snakemake.input.record, snakemake.input.matrix, predictions_files=snakemake.input.predictions)

    analyse_matrix(
        snakemake.input.matrix,
        list(snakemake.input.predictions),
        Path(snakemake.output[0]).parent,
        resamples=snakemake.params.settings["bootstrap_resamples"],
        seed=snakemake.params.settings["bootstrap_seed"],
        confidence=snakemake.params.settings["confidence"],
    )
