"""The study's figures (PNG and SVG) from the matrix and the analysis tables."""
import sys
from pathlib import Path

# The package sits beside this folder; this finds it in a conda environment too.
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.figures import draw_figures
    from ftmatrix.integrity import verify_matrix

    verify_matrix(snakemake.input.record, snakemake.input.matrix)

    draw_figures(
        snakemake.input.matrix,
        Path(snakemake.input.tables[0]).parent,
        Path(snakemake.output[0]).parent,
    )
