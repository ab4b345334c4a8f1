"""Fine-tune one variant (full or LoRA) with TRL; resumes from its last checkpoint."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.train import train_variant

    train_variant(
        snakemake.params.settings,
        model_manifest=snakemake.input.model,
        train_file=snakemake.input.train,
        heldout_file=snakemake.input.heldout,
        output_dir=snakemake.output.model,
        metrics_file=snakemake.output.metrics,
        checkpoint_dir=snakemake.params.checkpoints,
        config_hash=snakemake.params.config_hash,
        threads=snakemake.threads,
    )
