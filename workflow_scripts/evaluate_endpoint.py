"""Generate one cell of a model behind an OpenAI-compatible endpoint; resumes from saved responses."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.config import study_hash
    from ftmatrix.endpoint import evaluate_endpoint_cell
    from ftmatrix.integrity import stamp

    evaluate_endpoint_cell(
        snakemake.params.settings,
        eval_file=snakemake.input.eval,
        generations_file=snakemake.output.generations,
        info_file=snakemake.output.info,
        config_hash=study_hash(snakemake.config),
        state_dir=snakemake.params.state_dir,
        served_manifest=snakemake.input.get("served"),
    )
    # What the generations were made from, and their own sha256: score_cell checks it.
    stamp(
        snakemake.output.info,
        inputs=[snakemake.input.eval, snakemake.input.get("served") or ""],
        outputs=[snakemake.output.generations],
    )
