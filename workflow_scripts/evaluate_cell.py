"""Generate greedily for one cell, timing each sample; resumes from samples already written."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.config import study_hash
    from ftmatrix.evaluate import evaluate_cell
    from ftmatrix.integrity import stamp

    evaluate_cell(
        snakemake.params.settings,
        model_manifest=snakemake.input.model,
        trained_dir=snakemake.input.get("trained"),
        eval_file=snakemake.input.eval,
        generations_file=snakemake.output.generations,
        info_file=snakemake.output.info,
        config_hash=study_hash(snakemake.config),
        threads=snakemake.threads,
    )
    # What the generations were made from, and their own sha256: score_cell checks it.
    stamp(
        snakemake.output.info,
        inputs=[snakemake.input.model, snakemake.input.eval, snakemake.input.get("trained") or ""],
        outputs=[snakemake.output.generations],
    )
