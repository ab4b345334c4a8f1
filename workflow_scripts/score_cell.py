"""Score one cell from its generations alone: extracted answers, per-sample scores, metrics with CIs."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.config import study_hash
    from ftmatrix.errors import DataError
    from ftmatrix.integrity import regenerate_cell, stamp, verify_recorded
    from ftmatrix.io import read_json
    from ftmatrix.scoring import score_cell

    generations = snakemake.input.generations
    regenerate = regenerate_cell(generations)
    # The generations must be the ones evaluate_cell wrote (not edited, truncated or replaced).
    verify_recorded(snakemake.input.info, read_json(snakemake.input.info), generations, "outputs", regenerate)
    try:
        score_cell(
            snakemake.params.settings,
            generations_file=generations,
            info_file=snakemake.input.info,
            eval_file=snakemake.input.eval,
            predictions_file=snakemake.output.predictions,
            metrics_file=snakemake.output.metrics,
            config_hash=study_hash(snakemake.config),
            timing_files=list(snakemake.input.timings),
        )
    except DataError as exc:
        if str(generations) not in str(exc):
            raise
        raise DataError(f"{exc} Regenerate this cell: `{regenerate}`.") from None
    stamp(
        snakemake.output.metrics,
        inputs=[generations, snakemake.input.info, snakemake.input.eval, *snakemake.input.timings],
        outputs=[snakemake.output.predictions],
        seal=True,
    )
