"""The study's figures (PNG and SVG) from the matrix and the analysis tables."""
from pathlib import Path

from ftmatrix.workflow import run_step

with run_step(snakemake):
    from ftmatrix.figures import draw_figures

    draw_figures(
        snakemake.input.matrix,
        Path(snakemake.input.tables[0]).parent,
        Path(snakemake.output[0]).parent,
    )
