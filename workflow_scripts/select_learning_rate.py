"""Select one run of a variant's learning-rate sweep by its validation loss: selection.json."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.selection import select_learning_rate

    select_learning_rate(list(snakemake.input.metrics), snakemake.output.selection)
