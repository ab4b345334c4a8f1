"""Time every cell of the study once, at batch size 1, holding the whole machine (one timing round)."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.config import study_hash
    from ftmatrix.grid import cell_from_path, variant_from_path
    from ftmatrix.timing import time_round

    time_round(
        snakemake.params.settings,
        manifests={Path(p).parent.name: p for p in snakemake.input.models},
        trained={variant_from_path(p).path: p for p in snakemake.input.trained},
        eval_files={Path(p).parent.name: p for p in snakemake.input.evals},
        outputs={cell_from_path(p).path: p for p in snakemake.output.timings},
        config_hash=study_hash(snakemake.config),
        max_threads=snakemake.threads,
    )
