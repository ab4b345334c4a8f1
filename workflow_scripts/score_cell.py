"""Score one cell from its generations alone: extracted answers, per-sample scores, metrics with CIs."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.config import study_hash
    from ftmatrix.scoring import score_cell

    score_cell(
        snakemake.params.settings,
        generations_file=snakemake.input.generations,
        info_file=snakemake.input.info,
        eval_file=snakemake.input.eval,
        predictions_file=snakemake.output.predictions,
        metrics_file=snakemake.output.metrics,
        config_hash=study_hash(snakemake.config),
        timing_files=list(snakemake.input.timings),
    )
