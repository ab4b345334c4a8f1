"""Fine-tune one variant (full or LoRA) with TRL; resumes from its last checkpoint."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.config import TRAIN_BOOKKEEPING_KEYS, study_hash
    from ftmatrix.integrity import stamp
    from ftmatrix.train import train_variant

    # Checkpoint cadence and logging come from the config, not the params: changing them
    # changes no weights, so it must not rerun the job.
    settings = dict(snakemake.params.settings)
    settings["train"] = {
        **settings["train"],
        **{key: snakemake.config["train"][key] for key in TRAIN_BOOKKEEPING_KEYS},
    }
    train_variant(
        settings,
        model_manifest=snakemake.input.model,
        train_file=snakemake.input.train,
        heldout_file=snakemake.input.heldout,
        output_dir=snakemake.output.model,
        metrics_file=snakemake.output.metrics,
        checkpoint_dir=snakemake.params.checkpoints,
        config_hash=study_hash(snakemake.config),
        threads=snakemake.threads,
    )
    # What the weights were trained from, and their sha256.
    stamp(
        snakemake.output.metrics,
        inputs=[snakemake.input.model, snakemake.input.train, snakemake.input.heldout],
        outputs=[snakemake.output.model],
        seal=True,
    )
