"""Read one task's source, normalise to the example format, split, write train/eval/meta."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.data import prepare_task

    prepare_task(
        snakemake.params.task,
        out_dir=Path(snakemake.output.meta).parent,
        data_seed=snakemake.params.data_seed,
        root=Path(snakemake.scriptdir).parent,
    )
