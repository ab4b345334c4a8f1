"""Every training run of every variant's learning-rate sweep, in one table: analysis/lr_sweep.csv."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.selection import write_sweep_table

    write_sweep_table(list(snakemake.input.selections), snakemake.output.table)
